import { describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId } from '../../src/budget-ref.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { insertBudget, insertKey, insertTeam, insertUser } from '../helpers/litellm-rows.js';
import { supervisorStatusQuery, supervisorWorkflowId, syncNowSignal } from '../../workflows/supervisor.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const DAY = 24 * 60 * 60 * 1000;

describe('budgetSupervisorWorkflow (time skipping)', () => {
  it('discovers 100 budgets, starts one workflow each, then finds one added later and one removed', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const resetAt = new Date(Math.floor((await t.now()).getTime() / DAY) * DAY + DAY).toISOString();
      for (let i = 0; i < 40; i += 1)
        await insertBudget(t.db.pool, { id: `sv-b${i}`, duration: '30d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertKey(t.db.pool, { token: `sv-k${i}`, duration: '1d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertUser(t.db.pool, { id: `sv-u${i}`, duration: '7d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertTeam(t.db.pool, { id: `sv-t${i}`, duration: '1h', resetAt });
      // Rows without a duration are not budgets.
      await insertUser(t.db.pool, { id: 'sv-plain' });

      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        // Small pages prove the keyset paging.
        args: [{ syncIntervalMs: 30_000, fullSweepIntervalMs: 10 * 60_000, pageSize: 7 }],
      });
      const first = await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.passes < 1) throw new Error('no pass yet');
          return s;
        },
        { timeout: 60_000, interval: 100 },
      );
      expect(first.lastPass).toMatchObject({ full: true, found: 100, started: 100 });
      for (const ref of [
        { kind: 'budget', id: 'sv-b0' },
        { kind: 'key', id: 'sv-k19' },
        { kind: 'user', id: 'sv-u7' },
        { kind: 'team', id: 'sv-t3' },
      ] as const) {
        const description = await t.env.client.workflow.getHandle(budgetWorkflowId(ref)).describe();
        expect(description.status.name).toBe('RUNNING');
      }

      // A budget added later, and a duration removed: both noticed through updated_at on the next sync.
      await insertTeam(t.db.pool, { id: 'sv-late', duration: '1d', resetAt });
      await t.db.pool.query(
        `UPDATE "LiteLLM_UserTable" SET budget_duration = NULL, updated_at = now() + interval '1 second' WHERE user_id = 'sv-u0'`,
      );
      await supervisor.signal(syncNowSignal);
      await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.passes < 2) throw new Error('no second pass yet');
        },
        { timeout: 60_000, interval: 100 },
      );
      const late = t.env.client.workflow.getHandle(budgetWorkflowId({ kind: 'team', id: 'sv-late' }));
      expect((await late.describe()).status.name).toBe('RUNNING');
      const removed = t.env.client.workflow.getHandle(budgetWorkflowId({ kind: 'user', id: 'sv-u0' }));
      expect(await removed.result()).toMatchObject({ reason: 'duration_removed' });

      // A later full sweep finds every budget again and starts nothing: never two workflows for one budget.
      await t.env.sleep(11 * 60_000);
      const later = await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.lastFullSweep?.at === first.lastFullSweep?.at) throw new Error('no later full sweep yet');
          return s;
        },
        { timeout: 60_000, interval: 100 },
      );
      expect(later.lastFullSweep).toMatchObject({ full: true, started: 0 });
      // The sweep found all 100 budgets (plus rows changed within the watermark overlap, found again).
      expect(later.lastFullSweep!.found).toBeGreaterThanOrEqual(100);
      await supervisor.terminate('test finished');
    });
  });
});
