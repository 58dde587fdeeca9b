import { Client } from '@temporalio/client';
import { describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { pauseUpdate, scheduleChangedSignal, statusQuery } from '../../src/temporal/messages.js';
import { useArmingEnv, type ArmingEnv } from '../helpers/arming-env.js';
import { commitHistory, RECORDED_WORKFLOW_ID, RELEASE } from '../helpers/histories.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';
import { uniqueName } from '../helpers/services.js';

// `npm run record:histories`: records this release's armed history. The time-skipping scenario of
// record-histories.ts never arms (its clock is not the worker's), so the path every production run takes (armed in
// the worker, collected by the workflow) is recorded here, on the dev server in real time, for the replay test.

let t: ArmingEnv;
useArmingEnv((env) => (t = env));
/** Two one-minute boundaries, the first at least 45 s away, then the pause and the deletion. */
const TWO_BOUNDARIES_MS = 45_000 + 2 * 60_000 + LIMITS.workflowStep;

describe(`the release ${RELEASE} armed history`, () => {
  it(
    'records two armed resets, a pause and the deletion',
    async () => {
      const client = new Client({ connection: t.connection });
      const taskQueue = uniqueName('armed-record');
      const worker = await t.worker(taskQueue);
      const ref: BudgetRef = { kind: 'budget', id: 'replay' };
      const boundary = new Date(Math.ceil((Date.now() + 45_000) / 60_000) * 60_000);
      await insertBudget(t.db.pool, { id: ref.id, duration: '1m', resetAt: boundary.toISOString() });
      await insertTag(t.db.pool, { name: `${ref.id}-tag`, spend: 3, budgetId: ref.id });
      const handle = client.workflow.getHandle(budgetWorkflowId(ref));
      expect(handle.workflowId).toBe(RECORDED_WORKFLOW_ID);
      await worker.runUntil(async () => {
        await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
          taskQueue,
          workflowId: handle.workflowId,
          args: [ref],
        });
        await vi.waitFor(
          async () => {
            if ((await handle.query(statusQuery)).cycle < 2) throw new Error('not collected yet');
          },
          { timeout: boundary.getTime() - Date.now() + TWO_BOUNDARIES_MS, interval: 500 },
        );
        await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'recorded pause' }] });
        await t.db.pool.query(`DELETE FROM "LiteLLM_BudgetTable" WHERE budget_id = $1`, [ref.id]);
        await handle.signal(scheduleChangedSignal);
        expect(await handle.result()).toMatchObject({ reason: 'row_deleted' });
      });
      console.log(
        `recorded ${await commitHistory('budget-armed.json', await handle.fetchHistory(), t.bundle)}`,
      );
    },
    2 * 45_000 + 2 * 60_000 + 2 * LIMITS.workflowStep,
  );
});
