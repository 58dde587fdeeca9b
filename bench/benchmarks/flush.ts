import proto from '@temporalio/proto';
import { setTimeout as sleep } from 'node:timers/promises';
import { BUDGET_KINDS, budgetWorkflowId } from '../../src/budget-ref.js';
import { findScheduleChanges } from '../../src/db/budget-sync.js';
import { supervisorWorkflowId, syncNowSignal } from '../../workflows/supervisor.js';
import { countRunning, historyLengths, type DevTemporal } from '../lib/dev-temporal.js';
import { pollUntil } from '../lib/lifecycle.js';
import { cpuByGroup, cpuDelta } from '../lib/proc.js';
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
  sampleRss,
  spawnWorker,
  stopWorker,
  waitReady,
  type WorkerProcess,
} from '../lib/worker-processes.js';

const EventType = proto.temporal.api.enums.v1.EventType;

export interface FlushOptions {
  /** Keys with their own `30d` budget (1,000). */
  readonly budgetKeys: number;
  /** Keys without a duration, flushed too (1,000). */
  readonly plainKeys: number;
  /** Keys with a short duration whose histories give the events per reset cycle (20 x `1m`). */
  readonly cycleKeys: number;
  readonly cycleDuration: string;
  /** Complete reset cycles to wait for on every cycle key (3). */
  readonly cycles: number;
  /** The window without flushes (2 minutes) and the one with them (10 minutes). */
  readonly restMs: number;
  readonly flushMs: number;
  readonly flushEveryMs: number;
  /** Workflows whose history length is sampled before and after each window (100). */
  readonly sampleWorkflows: number;
  /** Budget counts at which one discovery pass is timed. */
  readonly discoveryScale: readonly number[];
  /** Keys without a duration added for the last discovery timing (the table discovery scans grows). */
  readonly discoveryPlainKeys: number;
  /** The supervisor's sync interval (`budgetctl worker --sync-interval`; production default 30s). */
  readonly syncInterval: string;
}

export const FLUSH_DEFAULTS: FlushOptions = {
  budgetKeys: 1_000,
  plainKeys: 1_000,
  cycleKeys: 20,
  cycleDuration: '1m',
  cycles: 2,
  // Ten sync passes at the production interval, so one pass more or less moves the rate by a tenth.
  restMs: 300_000,
  flushMs: 600_000,
  flushEveryMs: 5_000,
  sampleWorkflows: 100,
  discoveryScale: [1_000, 10_000],
  discoveryPlainKeys: 100_000,
  syncInterval: '30s',
};

export const FLUSH_QUICK: FlushOptions = {
  budgetKeys: 200,
  plainKeys: 200,
  cycleKeys: 5,
  cycleDuration: '5s',
  cycles: 1,
  // A 5 s sync interval puts three passes in each short window.
  restMs: 15_000,
  flushMs: 15_000,
  flushEveryMs: 5_000,
  sampleWorkflows: 50,
  discoveryScale: [200, 2_000],
  discoveryPlainKeys: 10_000,
  syncInterval: '5s',
};

export interface FlushFigures {
  readonly options: FlushOptions;
  readonly flushes: number;
  /** Real ms from the worker's spawn (and from its `worker started`) until every budget key had a workflow. */
  readonly discoveryMs: { fromSpawn: number; fromReady: number };
  /** History events added per sampled `30d` workflow during each window (max over the sample). */
  readonly historyEventsAddedAtRest: { max: number; total: number; sampled: number };
  readonly historyEventsAddedByFlushes: { max: number; total: number; sampled: number };
  /** Worker database statements per minute (pg_stat_statements, the workers' own role). */
  readonly workerStatementsAtRest: StatementWindow;
  readonly workerStatementsWithFlushes: StatementWindow;
  /** Flush statements per minute minus rest statements per minute (target: about 0). */
  readonly statementGrowthPerMinute: number;
  readonly workerCpuCores: { atRest: number; withFlushes: number };
  /** Events between consecutive timer firings in the cycle keys' histories (one whole reset cycle). */
  readonly historyEventsPerResetCycle: { max: number; median: number; workflows: number; cycles: number };
  /** One cycle of one workflow, event by event (what the lead can trim). */
  readonly cycleEventTypes: string[];
  /** One discovery pass (every kind compared with budget_sync, nothing changed): median of 5, in ms. */
  readonly discoveryPassMs: Record<string, number>;
  readonly workerPeakRssMB: number;
  readonly workerWarnings: string[];
}

const budgetToken = (i: number) => `flush-b-${String(i).padStart(6, '0')}`;

function log(line: string): void {
  process.stderr.write(`[bench] flush: ${line}\n`);
}

/**
 * Issue 8 item 5: keys with a `30d` budget and keys without one, a LiteLLM-style spend flush (spend and
 * `updated_at` on every key, as Prisma writes them) every few seconds; the workers must not notice.
 */
export async function benchFlush(
  services: Services,
  temporal: DevTemporal,
  options: FlushOptions,
): Promise<FlushFigures> {
  const db = await createWorkerDatabase(services, 'budget_bench_flush', { statementStats: true });
  const taskQueue = `bench-flush-${process.pid}`;
  await seedKeys(db, options);
  const budgetIds = Array.from({ length: options.budgetKeys }, (_, i) =>
    budgetWorkflowId({ kind: 'key', id: budgetToken(i) }),
  );
  const sample = budgetIds.filter((_, i) => i % Math.ceil(budgetIds.length / options.sampleWorkflows) === 0);

  const worker = await spawnWorker({
    databaseUrl: db.workerUrl,
    redisUrl: services.redisUrl,
    temporalAddress: temporal.address,
    taskQueue,
    redisNamespace: taskQueue,
    args: ['--sync-interval', options.syncInterval],
  });
  const workers = [worker];
  const rss = setInterval(() => sampleRss(workers), 1_000);
  try {
    await waitReady(workers, 300_000);
    await pollUntil(
      'every budget key has a running workflow',
      async () => ((await countRunning(temporal, taskQueue)) >= options.budgetKeys ? true : undefined),
      { timeoutMs: 600_000, intervalMs: 250 },
    );
    const discovered = performance.now();
    log(
      `${options.budgetKeys} workflows running ${round((discovered - worker.spawnedAt) / 1000)} s after spawn`,
    );
    // Settled: every workflow has read its row and published its next reset.
    await pollUntil(
      'every workflow knows its next reset',
      async () =>
        (await countRunning(temporal, taskQueue, ' AND NextResetAt IS NOT NULL')) >= options.budgetKeys
          ? true
          : undefined,
      { timeoutMs: 600_000, intervalMs: 500 },
    );

    // The window without flushes, then the window with them.
    const rest = await measureWindow(db, temporal, worker, sample, options.restMs, undefined);
    log(`rest: ${rest.statements.perMinute} worker statements/min, ${rest.events.max} events max`);
    const flusher = startFlusher(db, options.flushEveryMs);
    const flushed = await measureWindow(db, temporal, worker, sample, options.flushMs, flusher);
    log(
      `flushes: ${flusher.count()} flushes, ${flushed.statements.perMinute} worker statements/min, ` +
        `${flushed.events.max} events max`,
    );

    // Reset cycles of short budgets, with the flushes still running (they flush these keys too).
    const cycle = await measureCycles(db, temporal, taskQueue, options);
    await flusher.stop();
    await stopWorker(worker);
    const discoveryPassMs = await timeDiscoveryPasses(db, options);
    return {
      options,
      flushes: flusher.count(),
      discoveryMs: {
        fromSpawn: round(discovered - worker.spawnedAt, 0),
        fromReady: round(discovered - (worker.readyAt ?? worker.spawnedAt), 0),
      },
      historyEventsAddedAtRest: rest.events,
      historyEventsAddedByFlushes: flushed.events,
      workerStatementsAtRest: rest.statements,
      workerStatementsWithFlushes: flushed.statements,
      statementGrowthPerMinute: round(flushed.statements.perMinute - rest.statements.perMinute, 1),
      workerCpuCores: { atRest: rest.workerCores, withFlushes: flushed.workerCores },
      historyEventsPerResetCycle: cycle.perCycle,
      cycleEventTypes: cycle.eventTypes,
      discoveryPassMs,
      workerPeakRssMB: round(worker.peakRssMB, 0),
      workerWarnings: worker.warnings,
    };
  } finally {
    clearInterval(rss);
    await stopWorker(worker);
  }
}

async function seedKeys(db: WorkerDatabase, options: FlushOptions): Promise<void> {
  // 30d budgets fall on the 1st of the month; at least a day away so nothing is due during the run.
  const now = new Date();
  let next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  if (next - now.getTime() < 86_400_000) next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 1);
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, budget_reset_at, max_budget)
     SELECT 'flush-b-' || lpad(i::text, 6, '0'), random() * 10, '30d', $1::timestamptz AT TIME ZONE 'UTC', 100
       FROM generate_series(0, $2::int - 1) AS i`,
    [new Date(next).toISOString(), options.budgetKeys],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend)
     SELECT 'flush-n-' || lpad(i::text, 6, '0'), random() * 10 FROM generate_series(0, $1::int - 1) AS i`,
    [options.plainKeys],
  );
  await db.pool.query('VACUUM ANALYZE "LiteLLM_VerificationToken"');
}

interface Flusher {
  count(): number;
  stop(): Promise<void>;
}

/**
 * LiteLLM's spend flush, as its DB spend-update writer leaves the rows: `spend` incremented and, because Prisma
 * sets `@updatedAt` on every write, `updated_at` rewritten, on every key (one set-based statement per flush).
 */
function startFlusher(db: WorkerDatabase, everyMs: number): Flusher {
  let flushes = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now();
      await db.pool.query(
        `UPDATE "LiteLLM_VerificationToken"
            SET spend = spend + (random() * 0.01), updated_at = now() AT TIME ZONE 'UTC'
          WHERE token LIKE 'flush-%'`,
      );
      flushes += 1;
      const wait = everyMs - (performance.now() - t0);
      if (wait > 0 && !stopped) await sleep(wait);
    }
  })();
  return {
    count: () => flushes,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function measureWindow(
  db: WorkerDatabase,
  temporal: DevTemporal,
  worker: WorkerProcess,
  sample: readonly string[],
  windowMs: number,
  flusher: Flusher | undefined,
): Promise<{
  statements: StatementWindow;
  events: { max: number; total: number; sampled: number };
  workerCores: number;
}> {
  const historyBefore = await historyLengths(temporal, sample);
  const statementsBefore = await workerStatements(db);
  const cpuBefore = cpuByGroup((p) => (p.pid === worker.pid ? 'worker' : p.comm));
  const t0 = performance.now();
  await sleep(windowMs);
  const statementsAfter = await workerStatements(db);
  const elapsed = performance.now() - t0;
  const cpu = cpuDelta(
    cpuBefore,
    cpuByGroup((p) => (p.pid === worker.pid ? 'worker' : p.comm)),
    elapsed,
  );
  const historyAfter = await historyLengths(temporal, sample);
  let max = 0;
  let total = 0;
  for (const [id, after] of historyAfter) {
    const before = historyBefore.get(id);
    // A new run (continue-as-new) would restart the count: report it rather than hide it.
    const added =
      before && before.runId === after.runId ? after.historyLength - before.historyLength : Infinity;
    max = Math.max(max, added);
    total += added;
  }
  void flusher;
  return {
    statements: statementWindow(statementsBefore, statementsAfter, elapsed),
    events: { max, total, sampled: historyAfter.size },
    workerCores: cpu.worker?.cores ?? 0,
  };
}

/** Short budgets reset every `cycleDuration`; their histories give the events one reset cycle costs. */
async function measureCycles(
  db: WorkerDatabase,
  temporal: DevTemporal,
  taskQueue: string,
  options: FlushOptions,
): Promise<{
  perCycle: FlushFigures['historyEventsPerResetCycle'];
  eventTypes: string[];
}> {
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, max_budget)
     SELECT 'flush-c-' || lpad(i::text, 6, '0'), 1, $1, 100 FROM generate_series(0, $2::int - 1) AS i`,
    [options.cycleDuration, options.cycleKeys],
  );
  await temporal.client.workflow.getHandle(supervisorWorkflowId(taskQueue)).signal(syncNowSignal);
  const ids = Array.from({ length: options.cycleKeys }, (_, i) =>
    budgetWorkflowId({ kind: 'key', id: `flush-c-${String(i).padStart(6, '0')}` }),
  );
  // The first boundary is set, not reset; then `cycles` + 1 resets give `cycles` whole cycles between them.
  const want = options.cycles + 1;
  await pollUntil(
    `${options.cycleKeys} short budgets reset ${want} times`,
    async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (
           SELECT budget_id FROM budget_lifecycle.reset_log WHERE budget_id LIKE 'flush-c-%'
            GROUP BY budget_id HAVING count(*) >= $1) t`,
        [want],
      );
      return (rows[0]?.n ?? 0) >= options.cycleKeys ? true : undefined;
    },
    { timeoutMs: 60_000 + want * 2 * durationMs(options.cycleDuration), intervalMs: 1_000 },
  );
  const perWorkflow: number[] = [];
  let cycles = 0;
  let eventTypes: string[] = [];
  for (const id of ids) {
    const history = await temporal.client.workflow.getHandle(id).fetchHistory();
    const events = history.events ?? [];
    const fired = events.flatMap((e, i) => (e.eventType === EventType.EVENT_TYPE_TIMER_FIRED ? [i] : []));
    if (fired.length < 2) continue;
    const first = fired[0]!;
    const last = fired[fired.length - 1]!;
    perWorkflow.push((last - first) / (fired.length - 1));
    cycles += fired.length - 1;
    if (eventTypes.length === 0) {
      eventTypes = events
        .slice(first, fired[1]!)
        .map((e) => (EventType[e.eventType ?? 0] ?? String(e.eventType)).replace('EVENT_TYPE_', ''));
    }
  }
  if (perWorkflow.length === 0) throw new Error('no cycle key history holds two timer firings');
  return {
    perCycle: {
      max: round(Math.max(...perWorkflow), 1),
      median: round(median(perWorkflow), 1),
      workflows: perWorkflow.length,
      cycles,
    },
    eventTypes,
  };
}

function durationMs(duration: string): number {
  const match = /^(\d+)([smh])$/.exec(duration);
  if (!match) throw new Error(`cycle duration ${duration} must be seconds, minutes or hours (e.g. 1m)`);
  return Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000 }[match[2] as 's' | 'm' | 'h'];
}

/**
 * One steady-state discovery pass (what the supervisor runs every sync interval: every kind compared with
 * budget_sync, nothing changed), timed at several budget counts. Rows are added with their budget_sync rows, as
 * if their workflows had been told, so no pass finds changes.
 */
async function timeDiscoveryPasses(
  db: WorkerDatabase,
  options: FlushOptions,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  // The short keys' rows keep changing (their worker is gone); drop them so the pass compares equal rows.
  await db.pool.query(`DELETE FROM "LiteLLM_VerificationToken" WHERE token LIKE 'flush-c-%'`);
  await db.pool.query(`DELETE FROM budget_lifecycle.budget_sync WHERE budget_id LIKE 'flush-c-%'`);
  let have = options.budgetKeys;
  const pass = async () => {
    let changes = 0;
    for (const kind of BUDGET_KINDS) changes += (await findScheduleChanges(db.pool, kind, 500)).length;
    return changes;
  };
  const timePasses = async (label: string) => {
    await db.pool.query('VACUUM ANALYZE "LiteLLM_VerificationToken"');
    await db.pool.query('VACUUM ANALYZE budget_lifecycle.budget_sync');
    const runs: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const t0 = performance.now();
      const changes = await pass();
      runs.push(performance.now() - t0);
      if (changes !== 0)
        throw new Error(`discovery pass at ${label} found ${changes} changes, expected none`);
    }
    out[label] = round(median(runs), 1);
    log(`discovery pass at ${label}: ${out[label]} ms`);
  };
  for (const target of options.discoveryScale) {
    if (target > have) {
      await db.pool.query(
        `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, budget_reset_at, max_budget)
         SELECT 'flush-b-' || lpad(i::text, 6, '0'), 1, '30d',
                (SELECT budget_reset_at FROM "LiteLLM_VerificationToken" WHERE token = 'flush-b-000000'), 100
           FROM generate_series($1::int, $2::int - 1) AS i`,
        [have, target],
      );
      await db.pool.query(
        `INSERT INTO budget_lifecycle.budget_sync (budget_kind, budget_id, duration, reset_at)
         SELECT 'key', token, budget_duration, budget_reset_at FROM "LiteLLM_VerificationToken"
          WHERE token LIKE 'flush-b-%' AND token >= 'flush-b-' || lpad($1::text, 6, '0')`,
        [have],
      );
      have = target;
    }
    await timePasses(`${target} budgets`);
  }
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend)
     SELECT 'flush-x-' || lpad(i::text, 7, '0'), 1 FROM generate_series(0, $1::int - 1) AS i`,
    [options.discoveryPlainKeys],
  );
  await timePasses(`${have} budgets + ${options.discoveryPlainKeys + options.plainKeys} keys without`);
  return out;
}
