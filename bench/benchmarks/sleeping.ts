import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { budgetWorkflowId, type BudgetKind } from '../../src/budget-ref.js';
import { freePort } from '../../src/free-port.js';
import { countRunning, historyLengths, type DevTemporal } from '../lib/dev-temporal.js';
import { summariseHeapSnapshot, waitForFile, type HeapSummary } from '../lib/heap-snapshot.js';
import { pollUntil } from '../lib/lifecycle.js';
import { cpuByGroup, cpuDelta, rssByGroup, type ProcessStat } from '../lib/proc.js';
import type { Services } from '../lib/services.js';
import { median, round } from '../lib/stats.js';
import {
  createWorkerDatabase,
  statementWindow,
  workerStatements,
  type StatementWindow,
  type WorkerDatabase,
} from '../lib/worker-database.js';
import {
  buildWorker,
  spawnWorker,
  stopWorker,
  waitReady,
  type WorkerProcess,
} from '../lib/worker-processes.js';

export interface SleepingOptions {
  /** Budgets whose next boundary is days away (10,000; 100,000 with --sleeping-size=100000). */
  readonly budgets: number;
  /** `budgetctl worker` processes on the task queue (2, as in the herd). */
  readonly workers: number;
  /** Quiet time after every workflow knows its boundary, before the window (in-flight tasks drain). */
  readonly settleMs: number;
  /** The measured window, every workflow asleep. */
  readonly windowMs: number;
  /** Workflows whose history is read before and after the window. */
  readonly sampleWorkflows: number;
  /** Run the workers from `npm run build`'s `dist/`, as the image does (default; --source-worker for tsx). */
  readonly built?: boolean;
  /** Take a heap snapshot of the first worker after the window and summarise it (--heap-snapshot). */
  readonly heapSnapshot?: boolean;
}

export function sleepingDefaults(budgets: number, quick: boolean): SleepingOptions {
  return {
    budgets,
    workers: 2,
    settleMs: quick ? 5_000 : 60_000,
    windowMs: quick ? 15_000 : 300_000,
    sampleWorkflows: Math.min(100, budgets),
  };
}

/** One point of the run's timeline (every 10 s): how discovery progressed and what it cost in memory. */
interface TimelinePoint {
  readonly s: number;
  readonly running: number;
  readonly sleeping: number;
  readonly workerRssMB: number[];
  readonly devServerRssMB: number;
}

interface RssFigures {
  /** Highest sample of the sum over all workers (sampled every second through the whole run). */
  readonly peak: number;
  /** Mean and last sample of the sum over the window. */
  readonly steady: number;
  readonly end: number;
  readonly perWorkerPeak: number[];
  readonly perWorkerSteady: number[];
}

export interface SleepingFigures {
  readonly options: SleepingOptions;
  readonly mix: Record<BudgetKind, number>;
  /** Real ms from spawning the workers until every budget had a running workflow / one that knows its boundary. */
  readonly discovery: {
    readonly runningMs: number;
    readonly sleepingMs: number;
    readonly runningFromReadyMs: number;
    readonly workflowsPerSecond: number;
  };
  readonly workerRssMB: RssFigures;
  /** The sum over the workers, the figure held to issue 9's 1 GB. */
  readonly workerRssSteadyMB: number;
  readonly devServerRssMB: { readonly peak: number; readonly steady: number };
  /** CPU per process group (workers, temporal, postgres, redis-server, bench) in the window, in cores. */
  readonly cpuInWindow: Record<string, { cpuMs: number; cores: number }>;
  readonly cpuDuringDiscovery: Record<string, { cpuMs: number; cores: number }>;
  /** The workers' own statements (pg_stat_statements, their login role) in the window. */
  readonly statements: StatementWindow;
  readonly redisCommandsPerMinute: number;
  /** History length of sampled workflows at the end (one run each: nothing has reset yet). */
  readonly historyEventsPerWorkflow: {
    readonly median: number;
    readonly max: number;
    readonly sampled: number;
  };
  /** Events the sampled workflows gained in the window (0: a sleeping workflow costs the server nothing). */
  readonly historyEventsAddedInWindow: { readonly max: number; readonly total: number };
  /** The SDK's sticky cache per worker (`temporal_sticky_cache_size`), and forced evictions, at the window's end. */
  readonly stickyCache: Array<{ size: number | null; forcedEvictions: number | null }>;
  readonly timeline: TimelinePoint[];
  readonly heap?: HeapSummary;
  readonly workerWarnings: string[];
}

/** Closures whose count in a heap snapshot shows how many copies of a workflow-bundle module a worker holds. */
const MODULE_MARKERS = [
  'budgetEntityWorkflow',
  'budgetWorkflow',
  'budgetSupervisorWorkflow',
  'DateTime',
  'Activator',
];

function log(line: string): void {
  process.stderr.write(`[bench] sleeping: ${line}\n`);
}

const pad = (i: number) => String(i).padStart(6, '0');
const DAY_MS = 86_400_000;

/**
 * Issue 9: `budgets` budgets whose boundaries are days away, discovered by real worker processes on the dev
 * server; then, with every workflow asleep, what the workers, the dev server and the database spend on them.
 */
export async function benchSleeping(
  services: Services,
  temporal: DevTemporal,
  options: SleepingOptions,
  profileDir: string,
): Promise<SleepingFigures> {
  if (options.budgets > 999_999) throw new Error('--sleeping-size must be below 1,000,000');
  const db = await createWorkerDatabase(services, 'budget_bench_sleeping', { statementStats: true });
  if (!(await hasStatementStats(db)))
    throw new Error('pg_stat_statements is not loaded; start the services with statementStats');
  const taskQueue = `bench-sleeping-${process.pid}`;
  const mix = await seedSleeping(db, options.budgets, Date.now() + 2 * DAY_MS);
  log(`seeded ${options.budgets} budgets (${JSON.stringify(mix)}), boundaries 2 to 7 days ahead`);

  if (options.built) {
    log('npm run build');
    await buildWorker();
  }
  const heapFolder = options.heapSnapshot ? path.join(profileDir, `sleeping-${options.budgets}`) : undefined;
  if (heapFolder) await rm(heapFolder, { recursive: true, force: true });
  const workers: WorkerProcess[] = [];
  const ports: number[] = [];
  const group = (p: ProcessStat) => (workers.some((w) => w.pid === p.pid) ? 'workers' : p.comm);
  const cpuStart = cpuByGroup();
  for (let i = 0; i < options.workers; i += 1) {
    const metricsPort = await freePort();
    ports.push(metricsPort);
    workers.push(
      await spawnWorker({
        databaseUrl: db.workerUrl,
        redisUrl: services.redisUrl,
        temporalAddress: temporal.address,
        taskQueue,
        redisNamespace: taskQueue,
        metricsPort,
        heapSnapshotDir: heapFolder,
        built: options.built,
      }),
    );
  }
  const spawnedAt = workers[0]!.spawnedAt;
  // RSS every second through the whole run (peaks), kept per sample while the window is open (steady figures).
  let peakSum = 0;
  const perWorkerPeak = workers.map(() => 0);
  let devServerPeak = 0;
  let inWindow: Array<{ workers: number[]; devServer: number }> | undefined;
  const sampleMemory = () => {
    const rss = rssByGroup((p) => (workers.some((w) => w.pid === p.pid) ? `worker:${p.pid}` : p.comm));
    const each = workers.map((w) => rss[`worker:${w.pid}`] ?? 0);
    const devServer = rss.temporal ?? 0;
    each.forEach((mb, i) => (perWorkerPeak[i] = Math.max(perWorkerPeak[i]!, mb)));
    peakSum = Math.max(
      peakSum,
      each.reduce((a, b) => a + b, 0),
    );
    devServerPeak = Math.max(devServerPeak, devServer);
    inWindow?.push({ workers: each, devServer });
    return { each, devServer };
  };
  const memoryTimer = setInterval(sampleMemory, 1_000);
  const timeline: TimelinePoint[] = [];
  let counts = { running: 0, sleeping: 0 };
  const timelineTimer = setInterval(() => {
    const { each, devServer } = sampleMemory();
    timeline.push({
      s: round((performance.now() - spawnedAt) / 1000, 0),
      ...counts,
      workerRssMB: each.map((mb) => round(mb, 0)),
      devServerRssMB: round(devServer, 0),
    });
  }, 10_000);

  try {
    await waitReady(workers, 300_000);
    const readyAt = Math.min(...workers.map((w) => w.readyAt ?? spawnedAt));
    let runningAt: number | undefined;
    let lastLog = performance.now();
    await pollUntil(
      'every budget has a running workflow that knows its boundary',
      async () => {
        counts = {
          running: runningAt === undefined ? await countRunning(temporal, taskQueue) : options.budgets,
          sleeping: await countRunning(temporal, taskQueue, ' AND NextResetAt IS NOT NULL'),
        };
        if (runningAt === undefined && counts.running >= options.budgets) runningAt = performance.now();
        if (performance.now() - lastLog > 60_000) {
          lastLog = performance.now();
          const { each, devServer } = sampleMemory();
          log(
            `${counts.running} running, ${counts.sleeping} asleep after ${round((lastLog - spawnedAt) / 1000, 0)} s; ` +
              `worker RSS ${each.map((mb) => round(mb, 0)).join(' + ')} MB, dev server ${round(devServer, 0)} MB`,
          );
        }
        return counts.sleeping >= options.budgets ? performance.now() : undefined;
      },
      // About 25 ms of worker CPU and as much of the dev server's per workflow: some 40 a second with both cores
      // free, 20 on a shared machine. Counting a large visibility store is not free either: poll it less often.
      {
        timeoutMs: 300_000 + options.budgets * 60,
        intervalMs: Math.min(10_000, Math.max(2_000, options.budgets / 10)),
      },
    );
    const sleepingAt = performance.now();
    const cpuDiscovery = cpuDelta(cpuStart, cpuByGroup(group), sleepingAt - spawnedAt);
    const runningMs = (runningAt ?? sleepingAt) - spawnedAt;
    log(
      `running after ${round(runningMs / 1000)} s, all asleep after ${round((sleepingAt - spawnedAt) / 1000)} s; ` +
        `settling ${options.settleMs / 1000} s, then a ${options.windowMs / 1000} s window`,
    );
    await sleep(options.settleMs);

    const sampleIds = sampleRefs(options).map((r) => budgetWorkflowId(r));
    const historyBefore = await historyLengths(temporal, sampleIds);
    const statementsBefore = await workerStatements(db);
    const redisBefore = await redisCommands(services);
    const cpuBefore = cpuByGroup(group);
    const windowStart = performance.now();
    inWindow = [];
    await sleep(options.windowMs);
    const windowMs = performance.now() - windowStart;
    const cpuInWindow = cpuDelta(cpuBefore, cpuByGroup(group), windowMs);
    const redisAfter = await redisCommands(services);
    const statements = statementWindow(statementsBefore, await workerStatements(db), windowMs);
    const samples = inWindow;
    inWindow = undefined;
    const historyAfter = await historyLengths(temporal, sampleIds);
    const stickyCache = await Promise.all(ports.map((port) => stickyCacheOf(port)));
    const heap = heapFolder ? await snapshotHeap(workers[0]!, heapFolder) : undefined;

    const added: number[] = [];
    for (const [id, after] of historyAfter) {
      const before = historyBefore.get(id);
      if (before) added.push(before.runId === after.runId ? after.historyLength - before.historyLength : NaN);
    }
    const lengths = [...historyAfter.values()].map((h) => h.historyLength);
    const sums = samples.map((s) => s.workers.reduce((a, b) => a + b, 0));
    const mean = (xs: number[]) => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
    const workerRssMB: RssFigures = {
      peak: round(peakSum, 0),
      steady: round(mean(sums), 0),
      end: round(sums.at(-1) ?? NaN, 0),
      perWorkerPeak: perWorkerPeak.map((mb) => round(mb, 0)),
      perWorkerSteady: workers.map((_, i) => round(mean(samples.map((s) => s.workers[i] ?? 0)), 0)),
    };
    log(
      `window: workers ${workerRssMB.steady} MB steady (${workerRssMB.perWorkerSteady.join(' + ')}), ` +
        `peak ${workerRssMB.peak} MB; ${statements.perMinute} statements/min; ` +
        `sticky cache ${stickyCache.map((c) => c.size).join(' + ')}`,
    );
    return {
      options,
      mix,
      discovery: {
        runningMs: round(runningMs, 0),
        sleepingMs: round(sleepingAt - spawnedAt, 0),
        runningFromReadyMs: round((runningAt ?? sleepingAt) - readyAt, 0),
        workflowsPerSecond: round(options.budgets / ((sleepingAt - readyAt) / 1000), 1),
      },
      workerRssMB,
      workerRssSteadyMB: workerRssMB.steady,
      devServerRssMB: {
        peak: round(devServerPeak, 0),
        steady: round(mean(samples.map((s) => s.devServer)), 0),
      },
      cpuInWindow,
      cpuDuringDiscovery: cpuDiscovery,
      statements,
      redisCommandsPerMinute: round((redisAfter - redisBefore - 1) / (windowMs / 60_000), 1),
      historyEventsPerWorkflow: {
        median: lengths.length > 0 ? median(lengths) : NaN,
        max: lengths.length > 0 ? Math.max(...lengths) : NaN,
        sampled: lengths.length,
      },
      historyEventsAddedInWindow: {
        max: added.length > 0 ? Math.max(...added) : NaN,
        total: added.reduce((a, b) => a + b, 0),
      },
      stickyCache,
      timeline,
      heap,
      workerWarnings: workers.flatMap((w) => w.warnings).slice(0, 20),
    };
  } finally {
    clearInterval(memoryTimer);
    clearInterval(timelineTimer);
    for (const w of workers) await stopWorker(w);
  }
}

/** Asks a worker for a heap snapshot (SIGUSR2), waits until it is written and summarises it. */
async function snapshotHeap(worker: WorkerProcess, folder: string): Promise<HeapSummary> {
  log(`heap snapshot of worker ${worker.pid}`);
  worker.child.kill('SIGUSR2');
  const file = await waitForFile(async () => {
    const names = await readdir(folder).catch(() => []);
    const found = names.find((n) => n.endsWith('.heapsnapshot') && n.includes(`.${worker.pid}.`));
    return found ? path.join(folder, found) : undefined;
  }, 300_000);
  return summariseHeapSnapshot(file, MODULE_MARKERS);
}

async function hasStatementStats(db: WorkerDatabase): Promise<boolean> {
  const { rows } = await db.pool.query<{ loaded: boolean }>(
    `SELECT 'pg_stat_statements' = ANY(string_to_array(current_setting('shared_preload_libraries'), ',')) AS loaded`,
  );
  return rows[0]?.loaded === true;
}

/**
 * The herd's mix with durations of a week or a month: 4 in 10 tiers (`30d`, a tag and two end users each),
 * 4 in 10 keys (`7d`) and 2 in 10 users (`30d`), their boundaries spread over five days from `fromMs`.
 */
async function seedSleeping(
  db: WorkerDatabase,
  n: number,
  fromMs: number,
): Promise<Record<BudgetKind, number>> {
  const series = `FROM generate_series(0, $2::int - 1) AS i`;
  const resetAt = `($1::timestamptz + (i % 432000) * interval '1 second') AT TIME ZONE 'UTC'`;
  const from = new Date(fromMs).toISOString();
  await db.pool.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     SELECT 'sleep-t-' || lpad(i::text, 6, '0'), 100, '30d', ${resetAt}, 'bench', 'bench'
       ${series} WHERE i % 10 < 4`,
    [from, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id)
     SELECT 'sleep-t-' || lpad(i::text, 6, '0') || '-tag', 1 + random(), 'sleep-t-' || lpad(i::text, 6, '0')
       FROM generate_series(0, $1::int - 1) AS i WHERE i % 10 < 4`,
    [n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'sleep-t-' || lpad(i::text, 6, '0') || '-eu-' || j, 1 + random(), 'sleep-t-' || lpad(i::text, 6, '0')
       FROM generate_series(0, $1::int - 1) AS i CROSS JOIN generate_series(1, 2) AS j WHERE i % 10 < 4`,
    [n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, budget_reset_at, max_budget)
     SELECT 'sleep-k-' || lpad(i::text, 6, '0'), 1 + random(), '7d', ${resetAt}, 100
       ${series} WHERE i % 10 BETWEEN 4 AND 7`,
    [from, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_UserTable" (user_id, spend, budget_duration, budget_reset_at, max_budget)
     SELECT 'sleep-u-' || lpad(i::text, 6, '0'), 1 + random(), '30d', ${resetAt}, 100
       ${series} WHERE i % 10 >= 8`,
    [from, n],
  );
  await db.pool.query('ANALYZE');
  const count = (pred: (r: number) => boolean) =>
    Array.from({ length: 10 }, (_, r) => r)
      .filter(pred)
      .reduce((sum, r) => sum + Math.floor(n / 10) + (r < n % 10 ? 1 : 0), 0);
  return {
    budget: count((r) => r < 4),
    key: count((r) => r >= 4 && r <= 7),
    user: count((r) => r >= 8),
    team: 0,
    window: 0,
  };
}

function refOf(i: number): { kind: BudgetKind; id: string } {
  const r = i % 10;
  if (r < 4) return { kind: 'budget', id: `sleep-t-${pad(i)}` };
  if (r < 8) return { kind: 'key', id: `sleep-k-${pad(i)}` };
  return { kind: 'user', id: `sleep-u-${pad(i)}` };
}

function sampleRefs(options: SleepingOptions): Array<{ kind: BudgetKind; id: string }> {
  const step = Math.max(1, Math.floor(options.budgets / options.sampleWorkflows));
  const out = [];
  for (let i = 0; i < options.budgets && out.length < options.sampleWorkflows; i += step) out.push(refOf(i));
  return out;
}

/** redis-server's count of commands processed (this call's INFO included). */
async function redisCommands(services: Services): Promise<number> {
  const info = await services.redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
}

/** The worker's sticky cache as the SDK reports it on its Prometheus endpoint (summed over label sets). */
async function stickyCacheOf(port: number): Promise<{ size: number | null; forcedEvictions: number | null }> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  const sum = (name: string): number | null => {
    const values = text
      .split('\n')
      .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
      .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
    return values.length > 0 ? values.reduce((a, b) => a + b, 0) : null;
  };
  return {
    size: sum('temporal_sticky_cache_size'),
    forcedEvictions: sum('temporal_sticky_cache_total_forced_eviction'),
  };
}
