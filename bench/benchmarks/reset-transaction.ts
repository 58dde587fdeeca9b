import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import type { ResetRequest } from '../../src/reset-types.js';
import { withTimeout } from '../lib/lifecycle.js';
import { measureMemory, type MemoryFigures } from '../lib/memory.js';
import type { Services } from '../lib/services.js';
import { median, round } from '../lib/stats.js';

export const BOUNDARY = '2026-03-01T00:00:00.000Z';
const NEXT = '2026-03-02T00:00:00.000Z';
const RUNS = 3;

export interface ResetRun {
  readonly ms: number;
  readonly entityCount: number;
  readonly memory: MemoryFigures;
}

export interface ResetTierFigures {
  readonly endUsers: number;
  readonly runs: readonly ResetRun[];
  readonly medianMs: number;
  readonly rowsPerSecond: number;
  /** Largest across the runs (memory is held to a ceiling, so the worst run counts). */
  readonly maxHeapDeltaMB: number;
  readonly maxRssDeltaMB: number;
  readonly maxPeakHeapGrowthMB: number;
  readonly seedMs: number;
  /** Reset id of the last run, whose audit rows the cache-invalidation benchmark replays. */
  readonly lastResetId: string;
}

export function tierId(endUsers: number): string {
  return `bench-tier-${endUsers}`;
}

export function endUserId(endUsers: number, i: number): string {
  return `eu-${endUsers}-${i}`;
}

// Spend 0.1 .. 10.0, never 0, so every end user is changed and audited.
const spend = (i: string): string => `((${i} % 100) / 10.0 + 0.1)`;

/**
 * One tier with `endUsers` end users, reset RUNS times by resetBudgetTransaction. Between runs the spend is
 * re-seeded, `budget_reset_at` is moved back to the boundary and the previous run's claim on that period is
 * deleted from the audit (the (kind, id, period_end) fence would otherwise make the rerun `already_reset`); then
 * VACUUM ANALYZE, so every run starts from the same table state rather than from the last run's dead tuples.
 */
export async function benchResetTier(services: Services, endUsers: number): Promise<ResetTierFigures> {
  const { pool, control } = services;
  const id = tierId(endUsers);
  const t0 = performance.now();
  await control.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     VALUES ($1, 1, '1d', $2::timestamptz AT TIME ZONE 'UTC', 'bench', 'bench')`,
    [id, BOUNDARY],
  );
  await control.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'eu-' || $1::int || '-' || i, ${spend('i')}, $2 FROM generate_series(1, $1::int) AS i`,
    [endUsers, id],
  );
  const seedMs = performance.now() - t0;
  const tables = await existingTables(pool);
  const expected = await control.query<{ total: number }>(
    `SELECT sum(${spend('i')})::float8 AS total FROM generate_series(1, $1::int) AS i`,
    [endUsers],
  );
  const expectedTotal = expected.rows[0]?.total ?? NaN;

  const runs: ResetRun[] = [];
  let lastResetId = '';
  for (let run = 0; run < RUNS; run += 1) {
    if (run > 0) {
      await control.query(
        `DELETE FROM budget_lifecycle.reset_log WHERE budget_kind = 'budget' AND budget_id = $1`,
        [id],
      );
      await control.query(
        `UPDATE "LiteLLM_EndUserTable" SET spend = ${spend("split_part(user_id, '-', 3)::int")}
          WHERE budget_id = $1`,
        [id],
      );
      await control.query(
        `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = $2::timestamptz AT TIME ZONE 'UTC' WHERE budget_id = $1`,
        [id, BOUNDARY],
      );
    }
    await control.query(
      `VACUUM (ANALYZE) "LiteLLM_EndUserTable", "LiteLLM_BudgetTable", budget_lifecycle.reset_log,
         budget_lifecycle.reset_log_entity`,
    );
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
    let ms = 0;
    const { value: result, memory } = await measureMemory(async () => {
      const start = performance.now();
      const r = await withTimeout(
        resetBudgetTransaction(pool, request, { rollover: false }, tables),
        120_000,
        `resetting a tier of ${endUsers} end users`,
      );
      ms = performance.now() - start;
      return r;
    });
    if (result.outcome !== 'reset')
      throw new Error(`run ${run + 1}: outcome ${result.outcome}, expected reset`);
    if (result.entityCount !== endUsers) {
      throw new Error(`run ${run + 1}: reset ${result.entityCount} entities, expected ${endUsers}`);
    }
    if (Math.abs(result.spendTotal - expectedTotal) > 1e-6 * Math.max(1, expectedTotal)) {
      throw new Error(`run ${run + 1}: spend total ${result.spendTotal}, expected ${expectedTotal}`);
    }
    const left = await control.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "LiteLLM_EndUserTable" WHERE budget_id = $1 AND spend <> 0`,
      [id],
    );
    if (left.rows[0]?.n !== 0)
      throw new Error(`run ${run + 1}: ${left.rows[0]?.n} end users still have spend`);
    runs.push({ ms: round(ms, 1), entityCount: result.entityCount, memory });
    lastResetId = result.resetId;
  }
  const medianMs = median(runs.map((r) => r.ms));
  return {
    endUsers,
    runs,
    medianMs: round(medianMs, 1),
    rowsPerSecond: Math.round(endUsers / (medianMs / 1000)),
    maxHeapDeltaMB: round(Math.max(...runs.map((r) => r.memory.heapDeltaMB)), 2),
    maxRssDeltaMB: round(Math.max(...runs.map((r) => r.memory.rssDeltaMB)), 2),
    maxPeakHeapGrowthMB: round(Math.max(...runs.map((r) => r.memory.peakHeapGrowthMB)), 2),
    seedMs: round(seedMs, 0),
    lastResetId,
  };
}
