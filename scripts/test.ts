/**
 * `npm test [-- vitest args]`: the type check and the lint, then the suite. Meanwhile the binaries the suite's
 * services need are provisioned into the cache (the Temporal CLI built from its Go module, the time-skipping test
 * server fetched with Maven): on a fresh machine that is minutes of downloading and compiling, which then overlap
 * the checks instead of following them. On a warm cache it finds both at once. A provisioning failure is left to
 * the suite's global setup, which provisions again and reports it the usual way.
 */
import { spawn } from 'node:child_process';
import { ensureTemporalCli } from '../dev/provision/temporal-cli.js';
import { ensureTestServer } from '../dev/provision/test-server.js';

function run(command: string, args: readonly string[]): Promise<number> {
  const child = spawn(command, args, { stdio: 'inherit' });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

async function main(): Promise<number> {
  const provisioned = Promise.all([ensureTestServer(), ensureTemporalCli()]).catch(() => undefined);
  const checks = (await run('npm', ['run', 'typecheck'])) || (await run('npm', ['run', 'lint']));
  // Waited for even when a check failed: a build interrupted here would only start over on the next run.
  await provisioned;
  if (checks !== 0) return checks;
  return run('npx', ['vitest', 'run', ...process.argv.slice(2)]);
}

process.exitCode = await main();
