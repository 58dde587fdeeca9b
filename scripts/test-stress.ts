/**
 * `npm run test:stress [-- --runs N] [-- vitest args]`: runs `npm test` while stress-ng keeps every core busy, the
 * way a laptop with a build running or a shared CI runner is. Runs stop at the first failure; each prints its wall
 * time. stress-ng comes from Debian's packages (installed when missing, as root with apt).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { installDebianPackage, which } from '../dev/provision/run.js';

const STRESS_NG_DIRS = ['/usr/bin', '/usr/local/bin'];

async function ensureStressNg(): Promise<string> {
  const found = await which('stress-ng', STRESS_NG_DIRS);
  if (found) return found;
  if (await installDebianPackage('stress-ng')) {
    const installed = await which('stress-ng', STRESS_NG_DIRS);
    if (installed) return installed;
  }
  throw new Error('stress-ng is not installed: apt-get install stress-ng (or brew install stress-ng)');
}

/** One CPU stressor per core at normal priority, so the suite competes for the CPU instead of having it. */
async function startLoad(): Promise<{ cores: number; stop(): Promise<void> }> {
  const stressNg = await ensureStressNg();
  const cores = availableParallelism();
  // --timeout: a stressor left behind by a killed run stops on its own; setpriv: it dies with this process.
  const args = ['--cpu', String(cores), '--timeout', '3h', '--quiet'];
  const setpriv = process.platform === 'linux' ? await which('setpriv') : undefined;
  const child = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'TERM', stressNg, ...args], { stdio: 'ignore' })
    : spawn(stressNg, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    cores,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function runNpmTest(vitestArgs: readonly string[]): Promise<number> {
  const args = ['test', ...(vitestArgs.length > 0 ? ['--', ...vitestArgs] : [])];
  const child: ChildProcess = spawn('npm', args, { stdio: 'inherit' });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

function parseArgs(argv: readonly string[]): { runs: number; vitestArgs: string[] } {
  const vitestArgs: string[] = [];
  let runs = 1;
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--runs') {
      runs = Number(argv[i + 1]);
      if (!Number.isInteger(runs) || runs < 1)
        throw new Error('--runs takes a whole number of runs, e.g. --runs 3');
      i += 1;
    } else {
      vitestArgs.push(argv[i]!);
    }
  }
  return { runs, vitestArgs };
}

async function main(): Promise<void> {
  const { runs, vitestArgs } = parseArgs(process.argv.slice(2));
  const load = await startLoad();
  const stopOnSignal = (): void => void load.stop().finally(() => process.exit(130));
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  const times: string[] = [];
  let code = 0;
  try {
    for (let run = 1; run <= runs && code === 0; run += 1) {
      console.log(
        `\n[test:stress] run ${run} of ${runs}: npm test with ${load.cores} CPU stressors (stress-ng)`,
      );
      const started = Date.now();
      code = await runNpmTest(vitestArgs);
      const seconds = ((Date.now() - started) / 1000).toFixed(0);
      times.push(`run ${run}: ${code === 0 ? 'passed' : 'FAILED'} in ${seconds} s`);
      console.log(`[test:stress] ${times.at(-1)}`);
    }
  } finally {
    await load.stop();
  }
  console.log(`\n[test:stress] under load on ${load.cores} cores: ${times.join('; ')}`);
  process.exitCode = code;
}

main().catch((error: unknown) => {
  console.error(`test:stress: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
