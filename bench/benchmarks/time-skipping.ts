import type { BudgetRef } from '../../src/budget-ref.js';
import { pollUntil, withTimeout } from '../lib/lifecycle.js';
import type { Services } from '../lib/services.js';
import { median, percentile, round } from '../lib/stats.js';
import {
  createWorker,
  sleepUntil,
  startBudgetWorkflow,
  status,
  terminateAll,
  type TemporalBench,
} from '../lib/temporal.js';

const HOUR = 60 * 60 * 1000;
export const CYCLES = 24 * 7;
const TIER = 'bench-hourly';
const TAGS = 1;
const END_USERS = 10;

export interface TimeSkippingFigures {
  readonly cycles: number;
  readonly duration: string;
  /** Real seconds to drive all CYCLES boundaries, from the first skip to the last cycle observed. */
  readonly realSeconds: number;
  readonly resetsPerSecond: number;
  /** Real ms per boundary: skip to it, reset, observe the new cycle through the status query. */
  readonly cycleMs: { readonly median: number; readonly p95: number; readonly max: number };
  readonly statusQueries: number;
  readonly entitiesPerReset: number;
  readonly workflowRuns: number;
}

/**
 * One `1h` budget workflow on the time-skipping server, driven through a simulated week (168 boundaries) with the
 * real activities against PostgreSQL and Redis. Before each boundary spend is re-accrued on the tier's tag and end
 * users (one UPDATE), so every reset changes and audits something. Time moves only by env.sleep to one second past
 * each boundary; the status query is polled until `cycle` advances.
 */
export async function benchTimeSkipping(
  temporal: TemporalBench,
  services: Services,
): Promise<TimeSkippingFigures> {
  const { control } = services;
  const ref: BudgetRef = { kind: 'budget', id: TIER };
  const taskQueue = `bench-cycles-${process.pid}`;
  const worker = await createWorker(temporal, services, taskQueue, 'bench-cycles');
  const now = await temporal.env.currentTimeMs();
  const first = Math.floor(now / HOUR) * HOUR + HOUR;
  await control.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     VALUES ($1, 1, '1h', $2::timestamptz AT TIME ZONE 'UTC', 'bench', 'bench')`,
    [TIER, new Date(first).toISOString()],
  );
  await control.query(
    `INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id)
     SELECT $1 || '-tag-' || i, 0, $1 FROM generate_series(1, $2::int) AS i`,
    [TIER, TAGS],
  );
  await control.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT $1 || '-eu-' || i, 0, $1 FROM generate_series(1, $2::int) AS i`,
    [TIER, END_USERS],
  );
  const accrue = async (cycle: number): Promise<void> => {
    const spend = 0.5 + (cycle % 10) / 100;
    await control.query(`UPDATE "LiteLLM_TagTable" SET spend = $2 WHERE budget_id = $1`, [TIER, spend]);
    await control.query(`UPDATE "LiteLLM_EndUserTable" SET spend = $2 WHERE budget_id = $1`, [TIER, spend]);
  };

  const cycleMs: number[] = [];
  let queries = 0;
  let realMs = 0;
  await worker.runUntil(async () => {
    try {
      await startBudgetWorkflow(temporal, ref, taskQueue);
      const firstIso = new Date(first).toISOString();
      await pollUntil(
        'the workflow loading its row',
        async () => ((await status(temporal, ref)).nextResetAt === firstIso ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 10 },
      );
      const start = performance.now();
      for (let cycle = 1; cycle <= CYCLES; cycle += 1) {
        const t0 = performance.now();
        await accrue(cycle);
        const boundary = first + (cycle - 1) * HOUR;
        await withTimeout(sleepUntil(temporal, boundary, 1_000), 60_000, `skipping to boundary ${cycle}`);
        const s = await pollUntil(
          `cycle ${cycle}`,
          async () => {
            queries += 1;
            const st = await status(temporal, ref);
            if (st.lastError) throw new Error(`workflow reports an error at cycle ${cycle}: ${st.lastError}`);
            return st.cycle >= cycle ? st : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 2 },
        );
        if (s.cycle !== cycle) throw new Error(`expected cycle ${cycle}, status says ${s.cycle}`);
        if (s.lastReset?.periodEnd !== new Date(boundary).toISOString()) {
          throw new Error(
            `cycle ${cycle} reset ${s.lastReset?.periodEnd}, expected ${new Date(boundary).toISOString()}`,
          );
        }
        cycleMs.push(performance.now() - t0);
      }
      realMs = performance.now() - start;
    } finally {
      await terminateAll(temporal, [ref]);
    }
  });

  const audit = await control.query<{
    n: number;
    schedule: number;
    min_entities: number;
    max_entities: number;
    runs: number;
  }>(
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE trigger = 'schedule' AND missed_periods = 0)::int AS schedule,
            min(entity_count)::int AS min_entities, max(entity_count)::int AS max_entities,
            count(DISTINCT run_id)::int AS runs
       FROM budget_lifecycle.reset_log WHERE budget_kind = 'budget' AND budget_id = $1`,
    [TIER],
  );
  const a = audit.rows[0];
  if (!a || a.n !== CYCLES) throw new Error(`the audit holds ${a?.n} resets, expected ${CYCLES}`);
  if (a.schedule !== CYCLES)
    throw new Error(`${CYCLES - a.schedule} resets were not on-time scheduled resets`);
  if (a.min_entities !== TAGS + END_USERS || a.max_entities !== TAGS + END_USERS) {
    throw new Error(
      `resets changed ${a.min_entities}..${a.max_entities} entities, expected ${TAGS + END_USERS}`,
    );
  }
  return {
    cycles: CYCLES,
    duration: '1h',
    realSeconds: round(realMs / 1000, 2),
    resetsPerSecond: round(CYCLES / (realMs / 1000), 2),
    cycleMs: {
      median: round(median(cycleMs), 1),
      p95: round(percentile(cycleMs, 95), 1),
      max: round(Math.max(...cycleMs), 1),
    },
    statusQueries: queries,
    entitiesPerReset: TAGS + END_USERS,
    workflowRuns: a.runs,
  };
}
