import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { existingTables, resetBudgetTransaction, zeroSpendSql } from '../../src/db/reset-transaction.js';
import { ENTITY_TYPES } from '../../src/entities.js';
import type { ResetRequest } from '../../src/reset-types.js';
import { withTimeout } from '../lib/lifecycle.js';
import { measureMemory, type MemoryFigures } from '../lib/memory.js';
import type { Services } from '../lib/services.js';
import { median, percentile, round } from '../lib/stats.js';
import { BOUNDARY, endUserId, tierId } from './reset-transaction.js';

const NEXT = '2026-03-02T00:00:00.000Z';

/**
 * LiteLLM 1.108.14's spend writers, as `_commit_spend_updates_to_db` and `ProxyUpdateSpend.update_end_user_spend`
 * issue them: one transaction per flush, one statement per id in sorted order (its deadlock avoidance), retried
 * `n_retry_times` = 3 times (proxy_server.py) after a lock timeout (55P03) or a deadlock (40P01), sleeping a
 * random 2^attempt .. 2^(attempt+1) seconds first (`handle_spend_update_failure`).
 */
const N_RETRY_TIMES = 3;
/** `SPEND_ROLLUP_LOCK_TIMEOUT_MS`: the key, user, team and org flushes set it; the end-user flush does not. */
const SPEND_ROLLUP_LOCK_TIMEOUT_MS = 5_000;
/** Prisma's interactive transaction limit (`db.tx(timeout=timedelta(seconds=60))`) around every flush. */
const PRISMA_TX_TIMEOUT_MS = 60_000;
/** What every flush adds to each of its rows: small and exact enough to account for to the cent. */
const COST = 0.001;
const IDS_PER_FLUSH = 5;
const OTHER_END_USERS = 1_000;
const KEYS = 1_000;
const OTHER_TIER = 'bench-big-tier-other';

// A Prisma `upsert` with one unique field in `where` equal to the created value runs as PostgreSQL's native upsert.
const END_USER_UPSERT = `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, blocked) VALUES ($1, $2, false)
  ON CONFLICT (user_id) DO UPDATE SET spend = "LiteLLM_EndUserTable".spend + $2`;
// `update_many(where={"token": token}, data={spend, total_spend: increment, last_active: now})`.
const KEY_UPDATE = `UPDATE "LiteLLM_VerificationToken"
  SET spend = spend + $2, total_spend = total_spend + $2, last_active = (now() AT TIME ZONE 'UTC') WHERE token = $1`;

export interface BigTierOptions {
  readonly endUsers: number;
  readonly runs: number;
  /** How long the writers run before each reset: their baseline latency. */
  readonly baselineMs: number;
  /** Also write the reset statement's EXPLAIN ANALYZE (an extra, untimed, rolled-back run). */
  readonly profile: boolean;
}

export function bigTierDefaults(endUsers: number, profile: boolean): BigTierOptions {
  return { endUsers, runs: 3, baselineMs: 5_000, profile };
}

export interface LatencyFigures {
  readonly flushes: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface WriterFigures {
  /** What it writes and how (the LiteLLM statement it stands for). */
  readonly description: string;
  readonly lockTimeoutMs: number | null;
  /** Flushes that ended before the reset began. */
  readonly baseline: LatencyFigures | null;
  /** Flushes that overlapped the reset. */
  readonly duringReset: LatencyFigures | null;
  /** Statements cancelled by lock_timeout (55P03) and deadlocks (40P01), each retried as LiteLLM does. */
  readonly lockTimeouts: number;
  readonly deadlocks: number;
  /** Flushes that gave up after the last retry (their spend would be lost or requeued by LiteLLM). */
  readonly failedFlushes: number;
  /** Flushes that took longer than Prisma's 60 s transaction limit (LiteLLM would have rolled them back). */
  readonly overPrismaTimeout: number;
}

export interface BigTierRun {
  readonly ms: number;
  readonly rowsPerSecond: number;
  readonly entityCount: number;
  readonly memory: MemoryFigures;
  /** CPU time of every process of the PostgreSQL server while the reset ran (ms), when /proc can tell. */
  readonly postgresCpuMs: number | null;
  /**
   * Rows updated in the end-user table while the run lasted (the reset's, plus the few hundred of the writers), and
   * how many of them were HOT (heap-only: no new index entry). Null if the server had not published them in 15 s.
   */
  readonly tuplesUpdated: number | null;
  readonly hotUpdates: number | null;
  readonly writers: Record<WriterName, WriterFigures>;
  /** Tier end users the writer touched: spend now + spend the audit captured = seeded + every increment. */
  readonly spendAccounted: boolean;
  readonly loadAverage: readonly number[];
}

export interface BigTierFigures {
  readonly endUsers: number;
  readonly runs: readonly BigTierRun[];
  readonly medianMs: number;
  readonly rowsPerSecond: number;
  readonly maxHeapDeltaMB: number;
  readonly maxPeakHeapGrowthMB: number;
  readonly maxRssDeltaMB: number;
  readonly seedMs: number;
  /** Lock timeouts, deadlocks and failed flushes of every writer in every run: what a target holds to 0. */
  readonly writerLockFailures: number;
  /** Worst across the runs, per writer: the figures the lock impact is judged by. */
  readonly writers: Record<
    WriterName,
    {
      baselineP99: number | null;
      duringP99: number | null;
      duringMax: number | null;
      lockTimeouts: number;
      deadlocks: number;
      failedFlushes: number;
    }
  >;
}

type WriterName = 'tierEndUsers' | 'otherEndUsers' | 'keys';

interface Flush {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly ids: readonly string[];
  readonly committed: boolean;
}

/** One LiteLLM pod's flush loop for one table, on its own connection: a flush every 100-200 ms. */
class SpendWriter {
  readonly flushes: Flush[] = [];
  lockTimeouts = 0;
  deadlocks = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly client: pg.Client,
    private readonly sql: string,
    private readonly lockTimeoutMs: number | null,
    private readonly pick: () => string[],
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.flush(this.pick().sort());
      await sleep(100 + Math.random() * 100);
    }
  }

  private async flush(ids: readonly string[]): Promise<void> {
    const startedAt = performance.now();
    for (let attempt = 0; ; attempt += 1) {
      try {
        await this.client.query('BEGIN');
        if (this.lockTimeoutMs !== null)
          await this.client.query("SELECT set_config('lock_timeout', $1::text, true)", [
            `${this.lockTimeoutMs}ms`,
          ]);
        for (const id of ids) await this.client.query(this.sql, [id, COST]);
        await this.client.query('COMMIT');
        this.flushes.push({ startedAt, endedAt: performance.now(), ids, committed: true });
        return;
      } catch (error) {
        await this.client.query('ROLLBACK').catch(() => undefined);
        const code = (error as { code?: string }).code;
        if (code === '55P03') this.lockTimeouts += 1;
        else if (code === '40P01') this.deadlocks += 1;
        else throw error;
        if (attempt >= N_RETRY_TIMES) {
          this.flushes.push({ startedAt, endedAt: performance.now(), ids, committed: false });
          return;
        }
        await sleep(1000 * (2 ** attempt + Math.random() * 2 ** attempt));
      }
    }
  }

  figures(description: string, resetStart: number, resetEnd: number): WriterFigures {
    const latency = (flushes: Flush[]): LatencyFigures | null => {
      if (flushes.length === 0) return null;
      const ms = flushes.map((f) => f.endedAt - f.startedAt);
      return {
        flushes: flushes.length,
        p50: round(percentile(ms, 50), 1),
        p99: round(percentile(ms, 99), 1),
        max: round(Math.max(...ms), 1),
      };
    };
    return {
      description,
      lockTimeoutMs: this.lockTimeoutMs,
      baseline: latency(this.flushes.filter((f) => f.endedAt <= resetStart)),
      duringReset: latency(this.flushes.filter((f) => f.startedAt < resetEnd && f.endedAt > resetStart)),
      lockTimeouts: this.lockTimeouts,
      deadlocks: this.deadlocks,
      failedFlushes: this.flushes.filter((f) => !f.committed).length,
      overPrismaTimeout: this.flushes.filter((f) => f.endedAt - f.startedAt > PRISMA_TX_TIMEOUT_MS).length,
    };
  }
}

// Spend 0.1 .. 10.0 from the end user's number, never 0, so every end user is changed and audited.
const seedSpend = (i: string): string => `((${i} % 100) / 10.0 + 0.1)`;
const seedOf = (i: number): number => (i % 100) / 10 + 0.1;

/**
 * One tier with `endUsers` end users (1,000,000 by default) reset by resetBudgetTransaction, `runs` times, while
 * three LiteLLM spend writers flush from their own connections: one on end users of that tier, one on end users of
 * another tier, one on keys. Their flush latency before the reset is the baseline; during it, the lock impact.
 * Between runs the spend is re-seeded and the period's claim deleted, as in the reset-transaction benchmark.
 */
export async function benchBigTier(
  services: Services,
  options: BigTierOptions,
  writePlan: (text: string) => Promise<void>,
): Promise<BigTierFigures> {
  const { pool, control } = services;
  const n = options.endUsers;
  const id = tierId(n);
  const t0 = performance.now();
  await control.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     VALUES ($1, 1, '1d', $2::timestamptz AT TIME ZONE 'UTC', 'bench', 'bench'), ($3, 1, NULL, NULL, 'bench', 'bench')`,
    [id, BOUNDARY, OTHER_TIER],
  );
  await control.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'eu-' || $1::int || '-' || i, ${seedSpend('i')}, $2 FROM generate_series(1, $1::int) AS i`,
    [n, id],
  );
  await control.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'eu-other-' || i, 1, $2 FROM generate_series(1, $1::int) AS i`,
    [OTHER_END_USERS, OTHER_TIER],
  );
  await control.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend) SELECT 'big-tier-key-' || i, 1 FROM generate_series(1, $1::int) AS i`,
    [KEYS],
  );
  const seedMs = performance.now() - t0;
  const tables = await existingTables(pool);
  const random = (count: number, name: (i: number) => string) => () => [
    ...new Set(Array.from({ length: IDS_PER_FLUSH }, () => name(1 + Math.floor(Math.random() * count)))),
  ];

  const runs: BigTierRun[] = [];
  for (let run = 0; run < options.runs; run += 1) {
    if (run > 0) await reseed(control, id);
    await control.query(
      `VACUUM (ANALYZE) "LiteLLM_EndUserTable", "LiteLLM_BudgetTable", "LiteLLM_VerificationToken",
         budget_lifecycle.reset_log, budget_lifecycle.reset_log_entity`,
    );
    const clients = await Promise.all(
      [0, 1, 2].map(async () => {
        const client = new pg.Client({ connectionString: services.databaseUrl });
        client.on('error', () => undefined); // a failed query reports the error; the benchmark stops its clients
        await client.connect();
        return client;
      }),
    );
    const [c0, c1, c2] = clients as [pg.Client, pg.Client, pg.Client];
    const writers: Record<WriterName, SpendWriter> = {
      tierEndUsers: new SpendWriter(
        c0,
        END_USER_UPSERT,
        null,
        random(n, (i) => endUserId(n, i)),
      ),
      otherEndUsers: new SpendWriter(
        c1,
        END_USER_UPSERT,
        null,
        random(OTHER_END_USERS, (i) => `eu-other-${i}`),
      ),
      keys: new SpendWriter(
        c2,
        KEY_UPDATE,
        SPEND_ROLLUP_LOCK_TIMEOUT_MS,
        random(KEYS, (i) => `big-tier-key-${i}`),
      ),
    };
    let resetStart = 0;
    let resetEnd = 0;
    const statsBefore = await tableStats(control);
    try {
      for (const w of Object.values(writers)) w.start();
      await sleep(options.baselineMs);
      const cpuBefore = await postgresTicks(control);
      const request: ResetRequest = {
        kind: 'budget',
        id,
        expectedResetAt: BOUNDARY,
        periodEnd: BOUNDARY,
        periodStart: null,
        nextResetAt: NEXT,
        trigger: 'schedule',
        lateByMs: 0,
        missedPeriods: 0,
        workflowId: 'bench',
      };
      const { value: result, memory } = await measureMemory(async () => {
        resetStart = performance.now();
        try {
          return await withTimeout(
            resetBudgetTransaction(pool, request, { rollover: false }, tables),
            600_000,
            `resetting a tier of ${n} end users`,
          );
        } finally {
          resetEnd = performance.now();
        }
      });
      const cpuMs = cpuMsBetween(cpuBefore, await postgresTicks(control));
      await Promise.all(Object.values(writers).map((w) => w.stop()));

      if (result.outcome !== 'reset')
        throw new Error(`run ${run + 1}: outcome ${result.outcome}, expected reset`);
      if (result.entityCount !== n)
        throw new Error(`run ${run + 1}: reset ${result.entityCount} entities, expected ${n}`);
      const spendAccounted = await checkSpend(control, result.resetId, writers.tierEndUsers.flushes, n);
      if (!spendAccounted) throw new Error(`run ${run + 1}: spend of the tier's end users does not add up`);
      const stats = await settledStats(control, statsBefore, n);
      const ms = resetEnd - resetStart;
      process.stderr.write(
        `[bench] big tier run ${run + 1}/${options.runs}: ${Math.round(ms)} ms, PostgreSQL CPU ${cpuMs ?? '-'} ms\n`,
      );
      runs.push({
        ms: round(ms, 1),
        rowsPerSecond: Math.round(n / (ms / 1000)),
        entityCount: result.entityCount,
        memory,
        postgresCpuMs: cpuMs,
        tuplesUpdated: stats?.updated ?? null,
        hotUpdates: stats?.hot ?? null,
        writers: {
          tierEndUsers: writers.tierEndUsers.figures(
            `LiteLLM's end-user flush (update_end_user_spend: upsert, increment) on ${IDS_PER_FLUSH} end users of the tier`,
            resetStart,
            resetEnd,
          ),
          otherEndUsers: writers.otherEndUsers.figures(
            `the same flush on ${IDS_PER_FLUSH} of ${OTHER_END_USERS} end users of another tier`,
            resetStart,
            resetEnd,
          ),
          keys: writers.keys.figures(
            `LiteLLM's key flush (update_many: spend, total_spend, last_active) on ${IDS_PER_FLUSH} of ${KEYS} keys without a tier`,
            resetStart,
            resetEnd,
          ),
        },
        spendAccounted,
        loadAverage: (await import('node:os')).loadavg().map((l) => round(l, 2)),
      });
    } finally {
      await Promise.all(Object.values(writers).map((w) => w.stop().catch(() => undefined)));
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  }
  if (options.profile) {
    await reseed(control, id);
    await control.query(`VACUUM (ANALYZE) "LiteLLM_EndUserTable", budget_lifecycle.reset_log_entity`);
    await writePlan(await explainEndUserStatement(pool, id));
  }

  const medianMs = median(runs.map((r) => r.ms));
  const worst = (name: WriterName) => {
    const all = runs.map((r) => r.writers[name]);
    const maxOf = (values: Array<number | undefined>) => {
      const known = values.filter((v): v is number => v !== undefined);
      return known.length > 0 ? Math.max(...known) : null;
    };
    return {
      baselineP99: maxOf(all.map((w) => w.baseline?.p99)),
      duringP99: maxOf(all.map((w) => w.duringReset?.p99)),
      duringMax: maxOf(all.map((w) => w.duringReset?.max)),
      lockTimeouts: all.reduce((s, w) => s + w.lockTimeouts, 0),
      deadlocks: all.reduce((s, w) => s + w.deadlocks, 0),
      failedFlushes: all.reduce((s, w) => s + w.failedFlushes, 0),
    };
  };
  return {
    endUsers: n,
    runs,
    medianMs: round(medianMs, 1),
    rowsPerSecond: Math.round(n / (medianMs / 1000)),
    maxHeapDeltaMB: round(Math.max(...runs.map((r) => r.memory.heapDeltaMB)), 2),
    maxPeakHeapGrowthMB: round(Math.max(...runs.map((r) => r.memory.peakHeapGrowthMB)), 2),
    maxRssDeltaMB: round(Math.max(...runs.map((r) => r.memory.rssDeltaMB)), 2),
    seedMs: round(seedMs, 0),
    writerLockFailures: runs.reduce(
      (sum, r) =>
        sum +
        Object.values(r.writers).reduce((s, w) => s + w.lockTimeouts + w.deadlocks + w.failedFlushes, 0),
      0,
    ),
    writers: {
      tierEndUsers: worst('tierEndUsers'),
      otherEndUsers: worst('otherEndUsers'),
      keys: worst('keys'),
    },
  };
}

/** Puts the tier back where a run starts: seeded spend, `budget_reset_at` at the boundary, the period unclaimed. */
async function reseed(control: pg.Pool, id: string): Promise<void> {
  await control.query(
    `DELETE FROM budget_lifecycle.reset_log WHERE budget_kind = 'budget' AND budget_id = $1`,
    [id],
  );
  const client = await control.connect();
  try {
    await client.query(
      `UPDATE "LiteLLM_EndUserTable" SET spend = ${seedSpend("split_part(user_id, '-', 3)::int")} WHERE budget_id = $1`,
      [id],
    );
    // Publish this backend's row counts now rather than when it next idles, so they are not mistaken for the reset's.
    await client.query('SELECT pg_stat_force_next_flush()');
  } finally {
    client.release();
  }
  await control.query(
    `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = $2::timestamptz AT TIME ZONE 'UTC' WHERE budget_id = $1`,
    [id, BOUNDARY],
  );
}

/**
 * Nothing lost, nothing erased: for every tier end user the writer flushed, the spend it holds now plus what the
 * reset captured in the audit equals its seeded spend plus every increment committed. An increment that committed
 * while the reset held the row lands after the zeroing, in the new period.
 */
async function checkSpend(
  control: pg.Pool,
  resetId: string,
  flushes: readonly Flush[],
  n: number,
): Promise<boolean> {
  const added = new Map<string, number>();
  for (const f of flushes)
    if (f.committed) for (const id of f.ids) added.set(id, (added.get(id) ?? 0) + COST);
  if (added.size === 0) return true;
  const { rows } = await control.query<{ user_id: string; spend: number; before: number | null }>(
    `SELECT e.user_id, e.spend, a.spend_before AS before
       FROM "LiteLLM_EndUserTable" e
       LEFT JOIN budget_lifecycle.reset_log_entity a
         ON a.reset_id = $2 AND a.entity_type = 'end_user' AND a.entity_id = e.user_id
      WHERE e.user_id = ANY($1::text[])`,
    [[...added.keys()], resetId],
  );
  const prefix = `eu-${n}-`;
  return (
    rows.length === added.size &&
    rows.every((r) => {
      const seeded = seedOf(Number(r.user_id.slice(prefix.length)));
      return Math.abs(r.spend + (r.before ?? 0) - seeded - (added.get(r.user_id) ?? 0)) < 1e-6;
    })
  );
}

/**
 * CPU ticks of every process of the PostgreSQL server this pool talks to, by pid: the postmaster and its children
 * (backends, WAL writer, checkpointer, autovacuum). Undefined where /proc cannot tell (not Linux).
 */
async function postgresTicks(control: pg.Pool): Promise<Map<number, number> | undefined> {
  try {
    const { rows } = await control.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const stat = (pid: number | string) =>
      readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const postmaster = Number(stat(rows[0]?.pid ?? 0)[1]);
    const ticks = (fields: string[]) => Number(fields[11]) + Number(fields[12]);
    const byPid = new Map([[postmaster, ticks(stat(postmaster))]]);
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const fields = stat(entry);
        if (Number(fields[1]) === postmaster) byPid.set(Number(entry), ticks(fields));
      } catch {
        // the process ended between the listing and the read
      }
    }
    return byPid;
  } catch {
    return undefined;
  }
}

/**
 * CPU ms the server's processes spent between two readings. Counted per process, so a backend that exits in between
 * (the pool closes idle connections) drops out instead of subtracting its whole life's CPU from the total.
 */
function cpuMsBetween(before: Map<number, number> | undefined, after: Map<number, number> | undefined) {
  if (!before || !after) return null;
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return Number.isFinite(ticks) ? ticks * 10 : null; // USER_HZ is 100 on Linux
}

interface TableStats {
  readonly updated: number;
  readonly hot: number;
}

async function tableStats(control: pg.Pool): Promise<TableStats> {
  const { rows } = await control.query<{ updated: string; hot: string }>(
    `SELECT n_tup_upd AS updated, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'LiteLLM_EndUserTable'`,
  );
  return { updated: Number(rows[0]?.updated ?? 0), hot: Number(rows[0]?.hot ?? 0) };
}

/** The reset's row counts, once the server has published them (a backend reports its statistics when idle). */
async function settledStats(
  control: pg.Pool,
  before: TableStats,
  n: number,
): Promise<TableStats | undefined> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    await control.query('SELECT pg_stat_clear_snapshot()');
    const now = await tableStats(control);
    if (now.updated - before.updated >= n)
      return { updated: now.updated - before.updated, hot: now.hot - before.hot };
    await sleep(250);
  }
  return undefined;
}

/** EXPLAIN (ANALYZE, BUFFERS) of the end-user zeroing statement, in a transaction that is rolled back. */
async function explainEndUserStatement(pool: pg.Pool, id: string): Promise<string> {
  const endUser = ENTITY_TYPES.find((t) => t.name === 'end_user');
  if (!endUser) throw new Error('no end_user entity type');
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO budget_lifecycle.reset_log (budget_kind, budget_id, period_end, next_reset_at, trigger)
       VALUES ('budget', $1, $2, $3, 'schedule') RETURNING id`,
      [id, BOUNDARY, NEXT],
    );
    const plan = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (ANALYZE, BUFFERS, VERBOSE) ${zeroSpendSql(endUser, { kind: 'tier', includeUnassigned: false })}`,
      [[rows[0]?.id], [id], [BOUNDARY], [null], [false], 'end_user'],
    );
    return plan.rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}
