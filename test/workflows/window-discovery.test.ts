import { describe, expect, it, vi } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import { pythonIsoFormat } from '../../src/window-id.js';
import { supervisorStatusQuery, supervisorWorkflowId } from '../../workflows/supervisor.js';
import { syncPass } from '../helpers/supervisor.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { LIMITS } from '../helpers/limits.js';
import { budgetLimitsOf, insertKey, insertTeam, setBudgetLimits } from '../helpers/litellm-rows.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const KEYS = 'LiteLLM_VerificationToken' as const;
const TEAMS = 'LiteLLM_TeamTable' as const;

async function nextHour(): Promise<Date> {
  return new Date(Math.floor((await t.now()).getTime() / HOUR) * HOUR + HOUR);
}

describe('window budgets found by the supervisor (time skipping)', () => {
  it('discovery starts one workflow per window of keys and teams and follows LiteLLM’s changes to them', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From HH:30: the hourly window's boundary is half an hour away, not within the supervisor's first pass.
      await t.skipToPhase(HOUR, HOUR / 2);
      const hour = await nextHour();
      const day = new Date(Math.floor(hour.getTime() / DAY) * DAY + 10 * DAY);
      await insertKey(t.db.pool, { token: 'wd-key' });
      await setBudgetLimits(t.db.pool, { table: KEYS, id: 'wd-key' }, [
        { budget_duration: '1h', max_budget: 1, reset_at: pythonIsoFormat(hour.toISOString()) },
        { budget_duration: '1d', max_budget: 20, reset_at: pythonIsoFormat(day.toISOString()) },
      ]);
      await insertTeam(t.db.pool, { id: 'wd-team' });
      await setBudgetLimits(t.db.pool, { table: TEAMS, id: 'wd-team' }, [
        { budget_duration: '1d', max_budget: 100, reset_at: pythonIsoFormat(day.toISOString()) },
      ]);
      const hourly: BudgetRef = { kind: 'window', id: 'key:wd-key:1h' };
      const daily: BudgetRef = { kind: 'window', id: 'key:wd-key:1d' };
      const teamDaily: BudgetRef = { kind: 'window', id: 'team:wd-team:1d' };

      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        args: [{ syncIntervalMs: 24 * 60 * 60_000 }],
      });
      const first = await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.passes < 1) throw new Error('no pass yet');
          return s;
        },
        { timeout: LIMITS.supervisorPass, interval: 100 },
      );
      expect(first.lastPass).toMatchObject({ changed: 3, started: 3, rejected: 0 });
      await t.waitForStatus(hourly, (s) => s.nextResetAt === hour.toISOString());
      await t.waitForStatus(daily, (s) => s.nextResetAt === day.toISOString());
      expect(await t.waitForStatus(teamDaily, (s) => s.nextResetAt === day.toISOString())).toMatchObject({
        kind: 'window',
        id: 'team:wd-team:1d',
        duration: '1d',
        state: 'active',
      });

      // The hourly window resets on its own; its own write is not a schedule change.
      await t.sleepUntil(hour);
      await t.waitForStatus(hourly, (s) => s.cycle === 1);
      expect(await t.status(daily)).toMatchObject({ cycle: 0, nextResetAt: day.toISOString() });
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 0, signalled: 0 });

      // LiteLLM moves a window's reset_at (its API restarted the window): one signal. Removing a window ends it.
      const moved = new Date(day.getTime() + 3 * HOUR);
      await setBudgetLimits(t.db.pool, { table: TEAMS, id: 'wd-team' }, [
        { budget_duration: '1d', max_budget: 100, reset_at: moved.toISOString() },
      ]);
      const limits = (await budgetLimitsOf(t.db.pool, { table: KEYS, id: 'wd-key' })) as unknown[];
      await setBudgetLimits(t.db.pool, { table: KEYS, id: 'wd-key' }, limits.slice(0, 1));
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 2, signalled: 1, ended: 1 });
      await t.waitForStatus(teamDaily, (s) => s.nextResetAt === moved.toISOString());
      expect(await t.handle(daily).result()).toMatchObject({ reason: 'row_deleted' });
      await supervisor.terminate('test finished');
      // The supervisor's workflows would hold skipped time still once this worker is gone.
      for (const ref of [hourly, teamDaily]) await t.handle(ref).terminate('test finished');
    });
  });
});
