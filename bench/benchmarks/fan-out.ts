import type { BudgetRef } from '../../src/budget-ref.js';
import { namespaced } from '../../src/cache/invalidation.js';
import { pollUntil, withTimeout } from '../lib/lifecycle.js';
import type { Services } from '../lib/services.js';
import { round } from '../lib/stats.js';
import {
  createWorker,
  sleepUntil,
  startBudgetWorkflow,
  status,
  terminateAll,
  type TemporalBench,
} from '../lib/temporal.js';

const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;
export const BUDGETS = 200;
const NAMESPACE = 'bench-fanout';

export interface FanOutFigures {
  readonly budgets: number;
  /** Real ms from starting the skip to the boundary until the audit holds all resets (committed). */
  readonly allCommittedMs: number;
  /** ... until the first one was committed. */
  readonly firstCommittedMs: number;
  /** ... until every tag's spend counter was rewritten in Redis (caches invalidated). */
  readonly allInvalidatedMs: number;
  readonly resetsPerSecond: number;
  /** Spread of the resets' transaction start times (executed_at) in the database, first to last. */
  readonly executedSpreadMs: number;
  /** Real ms to start the workflows and see every one waiting on the boundary (not part of the figure above). */
  readonly startupMs: number;
  readonly maxLateByMs: number;
}

const tierOf = (i: number): string => `bench-fan-${String(i).padStart(3, '0')}`;
const tagOf = (i: number): string => `${tierOf(i)}-tag`;

/**
 * BUDGETS tiers (kind `budget`, one tag each, duration `1d`) all due at the same midnight, on one worker with the
 * production defaults. Once every workflow is waiting on that boundary, server time is skipped to it and the audit
 * is polled until it holds all the resets.
 */
export async function benchFanOut(temporal: TemporalBench, services: Services): Promise<FanOutFigures> {
  const { control, redis } = services;
  const refs: BudgetRef[] = Array.from({ length: BUDGETS }, (_, i) => ({ kind: 'budget', id: tierOf(i) }));
  const taskQueue = `bench-fanout-${process.pid}`;
  const worker = await createWorker(temporal, services, taskQueue, NAMESPACE);
  // The next midnight at least an hour ahead, so every workflow has loaded its row long before it.
  const boundary = Math.floor(((await temporal.env.currentTimeMs()) + HOUR) / DAY) * DAY + DAY;
  const boundaryIso = new Date(boundary).toISOString();
  await control.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     SELECT 'bench-fan-' || lpad(i::text, 3, '0'), 5, '1d', $1::timestamptz AT TIME ZONE 'UTC', 'bench', 'bench'
       FROM generate_series(0, $2::int - 1) AS i`,
    [boundaryIso, BUDGETS],
  );
  await control.query(
    `INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id)
     SELECT 'bench-fan-' || lpad(i::text, 3, '0') || '-tag', 2.5, 'bench-fan-' || lpad(i::text, 3, '0')
       FROM generate_series(0, $1::int - 1) AS i`,
    [BUDGETS],
  );
  const counterKeys = Array.from({ length: BUDGETS }, (_, i) =>
    namespaced(NAMESPACE, `spend:tag:${tagOf(i)}`),
  );

  let figures: FanOutFigures | undefined;
  await worker.runUntil(async () => {
    try {
      const t0 = performance.now();
      for (let i = 0; i < refs.length; i += 50) {
        await Promise.all(refs.slice(i, i + 50).map((ref) => startBudgetWorkflow(temporal, ref, taskQueue)));
      }
      // Every workflow has loaded its row and sleeps until the boundary.
      const waiting = new Set(refs.map((r) => r.id));
      await pollUntil(
        'all workflows waiting on the boundary',
        async () => {
          const checked = await Promise.all(
            refs
              .filter((r) => waiting.has(r.id))
              .map(async (r) => ((await status(temporal, r)).nextResetAt === boundaryIso ? r.id : undefined)),
          );
          for (const id of checked) if (id) waiting.delete(id);
          return waiting.size === 0 ? true : undefined;
        },
        { timeoutMs: 120_000, intervalMs: 50 },
      );
      const startupMs = performance.now() - t0;
      // Counters as a busy proxy holds them; an invalidated one is deleted (LiteLLM reseeds it from the row).
      await redis.mset(...counterKeys.flatMap((key) => [key, '2.5']));

      const start = performance.now();
      const skipping = withTimeout(
        sleepUntil(temporal, boundary, 1_000),
        180_000,
        'skipping to the boundary',
      );
      skipping.catch(() => undefined);
      let firstCommittedMs: number | undefined;
      let allCommittedMs: number | undefined;
      let allInvalidatedMs: number | undefined;
      await pollUntil(
        `${BUDGETS} resets committed and invalidated`,
        async () => {
          if (allCommittedMs === undefined) {
            const { rows } = await control.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM budget_lifecycle.reset_log
                WHERE budget_kind = 'budget' AND budget_id LIKE 'bench-fan-%' AND period_end = $1`,
              [boundaryIso],
            );
            const n = rows[0]?.n ?? 0;
            const at = performance.now() - start;
            if (n > 0 && firstCommittedMs === undefined) firstCommittedMs = at;
            if (n >= BUDGETS) allCommittedMs = at;
          }
          if (allInvalidatedMs === undefined) {
            const values = await redis.mget(...counterKeys);
            if (values.every((v) => v === null)) allInvalidatedMs = performance.now() - start;
          }
          return allCommittedMs !== undefined && allInvalidatedMs !== undefined ? true : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 5 },
      );
      await skipping;

      // Every workflow recorded its reset and moved on to the next boundary. (A query waits for a workflow task
      // in flight, so this also lets the last tasks finish before the workflows are terminated.)
      const nextIso = new Date(boundary + DAY).toISOString();
      for (let i = 0; i < refs.length; i += 50) {
        const statuses = await Promise.all(refs.slice(i, i + 50).map((ref) => status(temporal, ref)));
        const wrong = statuses.find(
          (st) =>
            st.cycle !== 1 ||
            st.lastReset?.periodEnd !== boundaryIso ||
            st.nextResetAt !== nextIso ||
            st.lastError !== null,
        );
        if (wrong) throw new Error(`unexpected status after the boundary: ${JSON.stringify(wrong)}`);
      }

      const audit = await control.query<{ n: number; spread_ms: number; max_late: number; entities: number }>(
        `SELECT count(*)::int AS n,
                (extract(epoch FROM max(executed_at) - min(executed_at)) * 1000)::float8 AS spread_ms,
                max(late_by_ms)::float8 AS max_late, sum(entity_count)::int AS entities
           FROM budget_lifecycle.reset_log
          WHERE budget_kind = 'budget' AND budget_id LIKE 'bench-fan-%' AND period_end = $1`,
        [boundaryIso],
      );
      const a = audit.rows[0];
      if (!a || a.n !== BUDGETS || a.entities !== BUDGETS) {
        throw new Error(
          `the audit holds ${a?.n} resets of ${a?.entities} tags, expected ${BUDGETS} of ${BUDGETS}`,
        );
      }
      const left = await control.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "LiteLLM_TagTable" WHERE tag_name LIKE 'bench-fan-%' AND spend <> 0`,
      );
      if (left.rows[0]?.n !== 0) throw new Error(`${left.rows[0]?.n} tags still have spend`);
      const committed = allCommittedMs ?? NaN;
      figures = {
        budgets: BUDGETS,
        allCommittedMs: round(committed, 0),
        firstCommittedMs: round(firstCommittedMs ?? NaN, 0),
        allInvalidatedMs: round(allInvalidatedMs ?? NaN, 0),
        resetsPerSecond: round(BUDGETS / (committed / 1000), 1),
        executedSpreadMs: round(a.spread_ms, 0),
        startupMs: round(startupMs, 0),
        maxLateByMs: a.max_late,
      };
    } finally {
      await terminateAll(temporal, refs);
    }
  });
  if (!figures) throw new Error('fan-out produced no figures');
  return figures;
}
