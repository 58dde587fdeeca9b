import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Runs a command to completion, folding its output into the error when it fails. */
export async function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, {
      ...options,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${output}`, { cause: error });
  }
}

/** The absolute path of `command` on PATH (or in `extraDirs`), or undefined. */
export async function which(command: string, extraDirs: readonly string[] = []): Promise<string | undefined> {
  const { access, constants } = await import('node:fs/promises');
  const path = await import('node:path');
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), ...extraDirs].filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/**
 * Installs a Debian package when running as root with apt-get; returns false (installing nothing) otherwise, so
 * the caller can fail with its own advice.
 */
export async function installDebianPackage(name: string): Promise<boolean> {
  const apt = await which('apt-get');
  if (!apt || process.getuid?.() !== 0) return false;
  process.stderr.write(`Installing Debian package ${name}...\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Another install may be running (a second test run, the system's own updates): wait for its lock.
  const wait = ['-o', 'DPkg::Lock::Timeout=600'];
  await run(apt, [...wait, 'update', '-qq'], { env });
  await run(apt, [...wait, 'install', '-y', '-qq', '--no-install-recommends', name], { env });
  return true;
}
