import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { createBudgetWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertKey } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { bundleWorkflows, installTestRuntime } from '../helpers/temporal.js';

// The time-skipping server holds time still while a workflow task waits for a worker, so a worker outage is
// proved here, on the real dev server, in real time with a 2-second budget.
let db: TestDatabase;
let redis: Redis;
let connection: Connection;
let nativeConnection: NativeConnection;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  installTestRuntime();
  [db, bundle] = await Promise.all([createTestDatabase(), bundleWorkflows('workflows/index.ts')]);
  redis = new Redis(services().redisUrl);
  connection = await Connection.connect({ address: services().temporalAddress });
  nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
});
afterAll(async () => {
  redis?.disconnect();
  await connection?.close();
  await nativeConnection?.close();
  await db?.drop();
});

describe('a budget workflow whose worker was down', () => {
  it('wakes late, resets once for the latest missed boundary and records how late and how many were missed', async () => {
    const client = new Client({ connection });
    const taskQueue = uniqueName('late');
    const token = uniqueName('late-key');
    const ref: BudgetRef = { kind: 'key', id: token };
    const makeWorker = () =>
      createBudgetWorker({
        connection: nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        deps: {
          db: db.pool,
          redis,
          config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace: taskQueue },
        },
      });
    const status = (): Promise<BudgetStatus> =>
      client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);

    const firstBoundary = new Date(Math.ceil((Date.now() + 3_000) / 2_000) * 2_000);
    await insertKey(db.pool, { token, spend: 5, duration: '2s', resetAt: firstBoundary.toISOString() });
    const handle = await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
      taskQueue,
      workflowId: budgetWorkflowId(ref),
      args: [ref],
    });
    try {
      // No worker runs while three boundaries pass (a worker shutting down under load could still reset the
      // first one on time, so none is started before).
      await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(firstBoundary.getTime() + 4_500), {
        timeout: firstBoundary.getTime() + 4_500 - Date.now() + LIMITS.workflowStep,
        interval: 100,
      });
      const after = await makeWorker();
      const reset = await after.runUntil(
        vi.waitFor(
          async () => {
            const s = await status();
            if (s.cycle < 1) throw new Error('not reset yet');
            return s;
          },
          { timeout: LIMITS.workflowStep, interval: 100 },
        ),
      );
      const { rows } = await db.pool.query(
        `SELECT trigger, missed_periods, late_by_ms::int AS late_by_ms, period_end FROM budget_lifecycle.reset_log
          WHERE budget_kind = 'key' AND budget_id = $1 ORDER BY period_end`,
        [token],
      );
      // One reset stands for every missed boundary. The 2 s calendar goes on, so on a busy machine the next
      // boundaries may already have their own scheduled resets, one each (and the status shows the latest).
      const first = (rows[0].period_end as Date).getTime();
      expect(rows.map((r) => [r.trigger, (r.period_end as Date).getTime() - first])).toEqual(
        rows.map((_, i) => [i === 0 ? 'catch_up' : 'schedule', 2_000 * i]),
      );
      expect(rows[0].missed_periods).toBeGreaterThanOrEqual(2);
      expect(rows[0].late_by_ms).toBeGreaterThanOrEqual(4_500);
      // The calendar is kept: the boundary reset is the latest due one, the next is the one after it.
      expect(first - firstBoundary.getTime()).toBe(2_000 * rows[0].missed_periods);
      // The status read showed its latest reset (one row per cycle), and the boundary after it.
      const shown = rows[reset.cycle - 1];
      expect(reset.lastReset?.trigger).toBe(shown.trigger);
      expect(Date.parse(reset.nextResetAt!) - (shown.period_end as Date).getTime()).toBe(2_000);
    } finally {
      await handle.terminate('test finished').catch(() => undefined);
    }
  });
});
