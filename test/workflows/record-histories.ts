import { describe, expect, it } from 'vitest';
import { type BudgetRef } from '../../src/budget-ref.js';
import {
  forceResetSignal,
  pauseUpdate,
  resetNowUpdate,
  resumeUpdate,
  scheduleChangedSignal,
} from '../../src/temporal/messages.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { commitHistory, RECORDED_WORKFLOW_ID, RELEASE } from '../helpers/histories.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';

// `npm run record:histories` (vitest.record.config.ts): records this release's scenario history into
// test/workflows/histories/<RELEASE>/, which the suite then replays against every later release's code. A tool for
// maintainers, run when a release changes workflow code; not part of `npm test`.

const HOUR = 60 * 60 * 1000;

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

describe(`the release ${RELEASE} histories`, () => {
  it('records a budget scenario: scheduled, forced, paused, resumed, rescheduled and deleted', async () => {
    // With late-spend checks on: since 0.4 they are committed with the reset, not scheduled by the workflow.
    const { worker, taskQueue } = await t.worker({ config: { lateSpendDelayMs: 30_000 } });
    await worker.runUntil(async () => {
      const now = await t.now();
      const first = new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);
      await insertBudget(t.db.pool, { id: 'replay', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'replay-tag', spend: 3, budgetId: 'replay' });
      const ref: BudgetRef = { kind: 'budget', id: 'replay' };
      const handle = await t.start(ref, taskQueue, { maxHistoryEvents: 10_000 });
      expect(handle.workflowId).toBe(RECORDED_WORKFLOW_ID);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'recorded', requestId: 'r-1', reanchor: true }],
      });
      await handle.signal(forceResetSignal, { reason: 'recorded signal', requestId: 'r-2' });
      await t.waitForStatus(ref, (s) => s.cycle === 3);
      await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'recorded pause' }] });
      await t.env.sleep(2 * HOUR);
      await handle.executeUpdate(resumeUpdate);
      await t.waitForStatus(ref, (s) => s.cycle === 4);
      await t.db.pool.query(
        `UPDATE "LiteLLM_BudgetTable" SET budget_duration = '1d' WHERE budget_id = 'replay'`,
      );
      await handle.signal(scheduleChangedSignal);
      await t.waitForStatus(ref, (s) => s.duration === '1d');
      await t.db.pool.query(`DELETE FROM "LiteLLM_BudgetTable" WHERE budget_id = 'replay'`);
      await handle.signal(scheduleChangedSignal);
      expect(await handle.result()).toMatchObject({ reason: 'row_deleted' });

      const recorded = await commitHistory('budget-scenario.json', await handle.fetchHistory(), t.bundle);
      console.log(`recorded ${recorded}`);
    });
  });
});
