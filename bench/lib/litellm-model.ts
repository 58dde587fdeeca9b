import type pg from 'pg';
import { percentile, round } from './stats.js';

/**
 * LiteLLM's own reset job, as a lateness model for the same herd (litellm 1.108.14,
 * `proxy/proxy_server.py` and `proxy/common_utils/reset_budget_job.py`):
 * - an APScheduler interval job whose interval is fixed per proxy process at start-up:
 *   PROXY_BUDGET_RESCHEDULER_MIN_TIME (597 s) + randint(0, min(30, MAX - MIN)) with MAX 605 s;
 * - a start stagger of up to 300 s before the first tick (as the issue states it);
 * - each tick sweeps the due rows in pages of RESET_BUDGET_JOB_BATCH_SIZE (500): a page is read, then written
 *   by a Prisma batch (one transaction, one UPDATE per row), so a row's reset commits with its page.
 * The sweep part is timed on the same PostgreSQL for the same rows; the tick part is simulated.
 */
export const LITELLM_TICK = { minS: 597, maxS: 605, maxJitterS: 30, staggerMaxS: 300, pageSize: 500 };

export interface SweepTiming {
  /** Real ms from the sweep's start until each row's page committed, in sweep order. */
  readonly commitOffsetsMs: number[];
  readonly totalMs: number;
  readonly pages: number;
}

interface SweepTable {
  readonly table: string;
  readonly key: string;
  readonly prefix: string;
  /** A tier row has no spend of its own (it lives on the linked rows). */
  readonly noSpend?: boolean;
  /** Rows linked by budget_id, zeroed with their tier (LiteLLM: one update_many per linked table per page). */
  readonly linked?: ReadonlyArray<{ table: string }>;
}

/**
 * Times LiteLLM's per-row write pattern on the herd's rows: for each owner table in the job's order (keys, users,
 * tiers), pages of 500 read by primary key, then one transaction per page with one UPDATE per row (spend and
 * budget_reset_at), plus one UPDATE per linked table for a page of tiers. Rows are first put back to "due" (not
 * timed). Returns when each row's page committed.
 */
export async function timeLiteLLMSweep(
  pool: pg.Pool,
  tables: readonly SweepTable[],
  due: string,
  next: string,
): Promise<SweepTiming> {
  for (const t of tables) {
    await pool.query(
      `UPDATE "${t.table}" SET ${t.noSpend ? '' : 'spend = 1, '}budget_reset_at = $1::timestamptz AT TIME ZONE 'UTC'
        WHERE "${t.key}" LIKE $2`,
      [due, `${t.prefix}%`],
    );
  }
  const client = await pool.connect();
  const offsets: number[] = [];
  let pages = 0;
  const t0 = performance.now();
  try {
    for (const t of tables) {
      let cursor = '';
      for (;;) {
        const { rows } = await client.query<{ id: string }>(
          `SELECT "${t.key}" AS id FROM "${t.table}"
            WHERE "${t.key}" LIKE $1 AND "${t.key}" > $2
              AND budget_reset_at <= now() AT TIME ZONE 'UTC' AND budget_duration IS NOT NULL
            ORDER BY "${t.key}" LIMIT ${LITELLM_TICK.pageSize}`,
          [`${t.prefix}%`, cursor],
        );
        if (rows.length === 0) break;
        pages += 1;
        await client.query('BEGIN');
        for (const row of rows) {
          await client.query(
            `UPDATE "${t.table}" SET ${t.noSpend ? '' : 'spend = 0, '}budget_reset_at = $2::timestamptz AT TIME ZONE 'UTC',
                    updated_at = now() AT TIME ZONE 'UTC'
              WHERE "${t.key}" = $1`,
            [row.id, next],
          );
        }
        for (const linked of t.linked ?? []) {
          await client.query(`UPDATE "${linked.table}" SET spend = 0 WHERE budget_id = ANY($1::text[])`, [
            rows.map((r) => r.id),
          ]);
        }
        await client.query('COMMIT');
        const at = performance.now() - t0;
        for (let i = 0; i < rows.length; i += 1) offsets.push(at);
        cursor = rows[rows.length - 1]!.id;
      }
    }
  } finally {
    client.release();
  }
  return { commitOffsetsMs: offsets, totalMs: round(performance.now() - t0, 0), pages };
}

/** A small seeded generator, so the modelled distribution is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Wait from a boundary to the job's first tick after it: a proxy started at a random time in the day before the
 * boundary, its first tick `stagger` after start plus one interval, then one every interval.
 */
export function tickWaitMs(random: () => number): number {
  const { minS, maxS, maxJitterS, staggerMaxS } = LITELLM_TICK;
  const intervalS = minS + Math.floor(random() * (Math.min(maxJitterS, maxS - minS) + 1));
  const boundaryS = 86_400;
  const startS = random() * boundaryS;
  const firstS = startS + random() * staggerMaxS + intervalS;
  const ticks = Math.max(0, Math.ceil((boundaryS - firstS) / intervalS));
  return (firstS + ticks * intervalS - boundaryS) * 1000;
}

export interface LatenessSummary {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly count: number;
}

export function summarise(values: readonly number[]): LatenessSummary {
  return {
    p50: round(percentile(values, 50), 0),
    p95: round(percentile(values, 95), 0),
    p99: round(percentile(values, 99), 0),
    max: round(
      values.reduce((m, v) => (v > m ? v : m), -Infinity),
      0,
    ),
    count: values.length,
  };
}

/**
 * LiteLLM's lateness for the herd: `trials` independent boundaries, each a tick wait plus every row's commit
 * offset in the measured sweep; returns `samples` draws of (trial, row) pairs.
 */
export function simulateLiteLLM(sweep: SweepTiming, samples = 200_000): number[] {
  const random = mulberry32(0x5eed);
  const out: number[] = [];
  for (let i = 0; i < samples; i += 1) {
    const row = sweep.commitOffsetsMs[Math.floor(random() * sweep.commitOffsetsMs.length)] ?? 0;
    out.push(tickWaitMs(random) + row);
  }
  return out;
}
