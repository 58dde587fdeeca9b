import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { onCleanup, withTimeout } from './lifecycle.js';
import { rssMB } from './proc.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface WorkerProcessSettings {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly temporalAddress: string;
  readonly taskQueue: string;
  readonly redisNamespace: string;
  /** Extra `budgetctl worker` arguments (`--sync-interval 5s`, `--no-supervisor`). */
  readonly args?: readonly string[];
  /** Write a V8 CPU profile of each worker into this folder when it exits (`node --cpu-prof`). */
  readonly cpuProfileDir?: string;
  /**
   * Run the build in `dist/` (`node dist/src/cli/main.js worker`, the image's entry point, with the prebuilt
   * workflow bundle) instead of the source through tsx, which bundles the workflows in the worker at start-up.
   * Call {@link buildWorker} first.
   */
  readonly built?: boolean;
  /** Write a V8 heap snapshot into this folder on SIGUSR2 (`node --heapsnapshot-signal`). */
  readonly heapSnapshotDir?: string;
  /** Serve health and the SDK's Prometheus metrics on this port (`METRICS_PORT`); default off. */
  readonly metricsPort?: number;
}

/** One real `budgetctl worker` process, as an operator runs it. */
export interface WorkerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** performance.now() when it was spawned and when it logged `worker started` (polling). */
  readonly spawnedAt: number;
  readyAt?: number;
  /** Highest RSS seen by {@link sampleRss}. */
  peakRssMB: number;
  /** Lines it wrote at level warn or above (kept for the report; the first few only). */
  readonly warnings: string[];
}

/** `npm run build`: the compiled worker and its prebuilt workflow bundle in `dist/`, as the image ships them. */
export async function buildWorker(): Promise<void> {
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      const child = spawn('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', reject);
      child.once('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`npm run build exited with ${code}: ${stderr.slice(-500)}`)),
      );
    }),
    300_000,
    'building the worker (npm run build)',
  );
}

/**
 * Spawns `budgetctl worker` as node with tsx as a loader, or from `dist/` when `built` (one process, as the tests do,
 * so its pid is the worker's and /proc figures are its own). Production defaults: LOG_LEVEL info, pool of 10,
 * default concurrency.
 */
export async function spawnWorker(settings: WorkerProcessSettings): Promise<WorkerProcess> {
  const nodeArgs = settings.built ? [] : ['--import', 'tsx'];
  if (settings.cpuProfileDir) {
    await mkdir(settings.cpuProfileDir, { recursive: true });
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${settings.cpuProfileDir}`);
  }
  if (settings.heapSnapshotDir) {
    await mkdir(settings.heapSnapshotDir, { recursive: true });
    nodeArgs.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${settings.heapSnapshotDir}`);
  }
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      settings.built ? 'dist/src/cli/main.js' : 'src/cli/main.ts',
      'worker',
      ...(settings.args ?? []),
    ],
    {
      cwd: REPO,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        LOG_LEVEL: 'info',
        DATABASE_URL: settings.databaseUrl,
        REDIS_URL: settings.redisUrl,
        LITELLM_REDIS_NAMESPACE: settings.redisNamespace,
        TEMPORAL_ADDRESS: settings.temporalAddress,
        TEMPORAL_NAMESPACE: 'default',
        BUDGET_TASK_QUEUE: settings.taskQueue,
        ...(settings.metricsPort ? { METRICS_PORT: String(settings.metricsPort) } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  if (child.pid === undefined) throw new Error('could not spawn budgetctl worker');
  const worker: WorkerProcess = {
    child,
    pid: child.pid,
    spawnedAt: performance.now(),
    peakRssMB: 0,
    warnings: [],
  };
  onCleanup(`worker ${child.pid}`, () => stopWorker(worker));
  let buffered = '';
  const onLine = (line: string) => {
    if (worker.readyAt === undefined && line.includes('"worker started"')) worker.readyAt = performance.now();
    const level = /"level":(\d+)/.exec(line)?.[1];
    if ((level === undefined || Number(level) >= 40) && line.trim() && worker.warnings.length < 20)
      worker.warnings.push(line.slice(0, 500));
  };
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) onLine(line);
  });
  return worker;
}

/** Waits until every worker logged `worker started` (it polls its task queue); fails if one exits first. */
export async function waitReady(workers: readonly WorkerProcess[], timeoutMs: number): Promise<void> {
  await withTimeout(
    (async () => {
      while (workers.some((w) => w.readyAt === undefined)) {
        const dead = workers.find((w) => w.child.exitCode !== null || w.child.signalCode !== null);
        if (dead) throw new Error(`worker ${dead.pid} exited at start: ${dead.warnings.join(' | ')}`);
        await sleep(50);
      }
    })(),
    timeoutMs,
    'starting the worker processes',
  );
}

/** Samples every worker's RSS, keeping each one's peak; returns the current total. */
export function sampleRss(workers: readonly WorkerProcess[]): number {
  let total = 0;
  for (const w of workers) {
    const rss = rssMB(w.pid) ?? 0;
    if (rss > w.peakRssMB) w.peakRssMB = rss;
    total += rss;
  }
  return total;
}

/**
 * SIGTERM (graceful: in-flight activities finish, a CPU profile is written), SIGKILL after 20 s: inside the 30 s
 * that the cleanup list allows each stop, so a worker slow to drain is still killed rather than left behind.
 */
export async function stopWorker(worker: WorkerProcess): Promise<void> {
  const { child } = worker;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
}
