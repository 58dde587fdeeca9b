import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Where provisioned binaries live: `BUDGET_LIFECYCLE_CACHE`, default `~/.cache/budget-lifecycle`. */
export function cacheDir(): string {
  return process.env.BUDGET_LIFECYCLE_CACHE ?? path.join(homedir(), '.cache', 'budget-lifecycle');
}

export async function pathExists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** The path an environment variable names, checked to exist; undefined when the variable is not set. */
export async function pathFromEnv(variable: string, what: string): Promise<string | undefined> {
  const value = process.env[variable];
  if (!value) return undefined;
  if (!(await pathExists(value))) {
    throw new Error(`${variable}=${value} does not exist; unset it or point it at ${what}`);
  }
  return value;
}

/** A lock older than this is taken to be left behind by a process that died while holding it. */
const STALE_LOCK_MS = 30 * 60_000;

/**
 * Runs `fn` while holding an exclusive lock file in the cache, so two processes provisioning the same thing
 * at once (parallel test runs, `npm start` beside `npm test`) neither race nor corrupt each other's output.
 * Callers re-check for the finished artifact inside `fn`: the first holder builds it, the rest find it.
 */
export async function withCacheLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  return withLockIn(cacheDir(), name, fn);
}

/** {@link withCacheLock} with the lock file in another directory (for things shared beyond one cache). */
export async function withLockIn<T>(dir: string, name: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true });
  const lockPath = path.join(dir, `${name}.lock`);
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = await stat(lockPath).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > STALE_LOCK_MS) await rm(lockPath, { force: true });
      else await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockPath, { force: true });
  }
}

/** Moves a fully built staging directory to its final place, replacing an older copy. */
export async function publishStaged(staging: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true });
  await rename(staging, dir);
}
