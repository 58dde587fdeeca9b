import { describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { syncPass } from '../helpers/supervisor.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { LIMITS } from '../helpers/limits.js';
import {
  insertBudget,
  insertKey,
  insertTag,
  insertTeam,
  insertUser,
  resetAtOf,
  spendOf,
} from '../helpers/litellm-rows.js';
import { supervisorStatusQuery, supervisorWorkflowId } from '../../workflows/supervisor.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const DAY = 24 * 60 * 60 * 1000;

async function historyLength(ref: BudgetRef): Promise<number> {
  return (await t.env.client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory()).events?.length ?? 0;
}

describe('budgetSupervisorWorkflow (time skipping)', () => {
  it('starts one workflow per budget, signals only schedule changes, and ignores spend flushes', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const resetAt = new Date(Math.floor((await t.now()).getTime() / DAY) * DAY + 20 * DAY).toISOString();
      for (let i = 0; i < 40; i += 1)
        await insertBudget(t.db.pool, { id: `sv-b${i}`, duration: '30d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertKey(t.db.pool, { token: `sv-k${i}`, duration: '1d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertUser(t.db.pool, { id: `sv-u${i}`, duration: '7d', resetAt });
      for (let i = 0; i < 20; i += 1)
        await insertTeam(t.db.pool, { id: `sv-t${i}`, duration: '1h', resetAt });
      // Rows without a duration are not budgets, and a key past `expires` is not reset.
      await insertUser(t.db.pool, { id: 'sv-plain' });
      await insertKey(t.db.pool, {
        token: 'sv-expired',
        duration: '1d',
        resetAt,
        expires: '2020-01-01T00:00:00Z',
      });
      for (let i = 0; i < 5; i += 1)
        await insertTag(t.db.pool, { name: `sv-tag${i}`, spend: 1, budgetId: 'sv-b0' });

      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        // Small batches prove the batching and the paging of the sweep.
        args: [{ syncIntervalMs: 30_000, fullSweepIntervalMs: 10 * 60_000, pageSize: 7 }],
      });
      const first = await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.passes < 1) throw new Error('no pass yet');
          return s;
        },
        { timeout: LIMITS.supervisorPass, interval: 100 },
      );
      // The first full sweep skips the 100 budgets its own sync has just started: no second start call each.
      expect(first.lastPass).toMatchObject({
        full: true,
        changed: 100,
        started: 100,
        swept: 0,
        signalled: 0,
      });
      const watched: BudgetRef[] = [
        { kind: 'budget', id: 'sv-b0' },
        { kind: 'key', id: 'sv-k19' },
        { kind: 'user', id: 'sv-u7' },
        { kind: 'team', id: 'sv-t3' },
      ];
      for (const ref of watched) {
        await t.waitForStatus(ref, (s) => s.nextResetAt === resetAt);
      }
      const before = await Promise.all(watched.map(historyLength));

      // LiteLLM's spend flushes: spend and updated_at on every row, many times. Nothing reaches a workflow.
      for (let flush = 0; flush < 3; flush += 1) {
        for (const table of [
          'LiteLLM_VerificationToken',
          'LiteLLM_UserTable',
          'LiteLLM_TeamTable',
          'LiteLLM_TagTable',
        ])
          await t.db.pool.query(`UPDATE "${table}" SET spend = spend + 0.01, updated_at = now()`);
        const pass = await syncPass(t, supervisor);
        expect(pass.lastPass).toMatchObject({ changed: 0, started: 0, signalled: 0, ended: 0 });
      }
      expect(await Promise.all(watched.map(historyLength))).toEqual(before);

      // Real schedule changes: a new budget, a duration removed, a duration changed, a row deleted, and
      // budget_reset_at moved by someone else. Each costs one start or one signal.
      const moved = new Date(Date.parse(resetAt) + 3 * 60 * 60 * 1000).toISOString();
      await insertTeam(t.db.pool, { id: 'sv-late', duration: '1d', resetAt });
      await t.db.pool.query(`UPDATE "LiteLLM_UserTable" SET budget_duration = NULL WHERE user_id = 'sv-u0'`);
      await t.db.pool.query(`UPDATE "LiteLLM_UserTable" SET budget_duration = '1d' WHERE user_id = 'sv-u1'`);
      await t.db.pool.query(`DELETE FROM "LiteLLM_TeamTable" WHERE team_id = 'sv-t0'`);
      await t.db.pool.query(
        `UPDATE "LiteLLM_TeamTable" SET budget_reset_at = $1::timestamptz AT TIME ZONE 'UTC' WHERE team_id = 'sv-t3'`,
        [moved],
      );
      const changed = await syncPass(t, supervisor);
      expect(changed.lastPass).toMatchObject({ changed: 5, started: 1, signalled: 2, ended: 2 });
      const late = t.env.client.workflow.getHandle(budgetWorkflowId({ kind: 'team', id: 'sv-late' }));
      expect((await late.describe()).status.name).toBe('RUNNING');
      const removed = t.env.client.workflow.getHandle(budgetWorkflowId({ kind: 'user', id: 'sv-u0' }));
      expect(await removed.result()).toMatchObject({ reason: 'duration_removed' });
      const deleted = t.env.client.workflow.getHandle(budgetWorkflowId({ kind: 'team', id: 'sv-t0' }));
      expect(await deleted.result()).toMatchObject({ reason: 'row_deleted' });
      await t.waitForStatus({ kind: 'user', id: 'sv-u1' }, (s) => s.duration === '1d');
      await t.waitForStatus({ kind: 'team', id: 'sv-t3' }, (s) => s.nextResetAt === moved);
      // What the workflows wrote back (a new boundary for the new duration) is theirs: no further signal.
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 0 });

      // A workflow terminated by hand is started again by the next full sweep; the others are left alone.
      await t.env.client.workflow
        .getHandle(budgetWorkflowId({ kind: 'key', id: 'sv-k5' }))
        .terminate('by hand');
      await t.env.sleep(11 * 60_000);
      const later = await vi.waitFor(
        async () => {
          const s = await supervisor.query(supervisorStatusQuery);
          if (s.lastFullSweep?.at === first.lastFullSweep?.at) throw new Error('no later full sweep yet');
          return s;
        },
        { timeout: LIMITS.supervisorPass, interval: 100 },
      );
      expect(later.lastFullSweep).toMatchObject({ full: true, started: 1, swept: 99 });
      await t.waitForStatus({ kind: 'key', id: 'sv-k5' }, (s) => s.nextResetAt === resetAt);
      await supervisor.terminate('test finished');
    });
  });

  it('a reset by the workflow itself is not a schedule change', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From HH:30: the boundary is half an hour away, not within the supervisor's first pass.
      const resetAt = new Date(
        Math.ceil((await t.skipToPhase(3_600_000, 1_800_000)).getTime() / 3_600_000) * 3_600_000,
      ).toISOString();
      await insertTeam(t.db.pool, { id: 'own-reset', duration: '1h', resetAt });
      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        args: [{ syncIntervalMs: 24 * 60 * 60_000 }],
      });
      const ref: BudgetRef = { kind: 'team', id: 'own-reset' };
      await t.waitForStatus(ref, (s) => s.nextResetAt === resetAt);
      await t.sleepUntil(resetAt);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 0, signalled: 0 });
      await supervisor.terminate('test finished');
    });
  });

  it('reads an invalid row once: later passes neither signal it nor log it again', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      await insertUser(t.db.pool, { id: 'bad-duration', duration: '2mo' });
      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        args: [{ syncIntervalMs: 24 * 60 * 60_000 }],
      });
      const ref: BudgetRef = { kind: 'user', id: 'bad-duration' };
      await t.waitForStatus(ref, (s) => s.state === 'invalid');
      const events = await historyLength(ref);
      for (let i = 0; i < 3; i += 1) {
        await t.db.pool.query(
          `UPDATE "LiteLLM_UserTable" SET spend = spend + 1, updated_at = now() WHERE user_id = 'bad-duration'`,
        );
        const pass = await syncPass(t, supervisor);
        const known = (
          await t.db.pool.query(
            'SELECT budget_kind, budget_id, duration, reset_at FROM budget_lifecycle.budget_sync',
          )
        ).rows;
        expect(pass.lastPass, JSON.stringify(known)).toMatchObject({ changed: 0 });
      }
      expect(await historyLength(ref)).toBe(events);
      // Fixing the row is a change: the workflow hears of it once and recovers.
      await t.db.pool.query(
        `UPDATE "LiteLLM_UserTable" SET budget_duration = '1d' WHERE user_id = 'bad-duration'`,
      );
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 1, signalled: 1 });
      await t.waitForStatus(ref, (s) => s.state === 'active' && s.nextResetAt !== null);
      await supervisor.terminate('test finished');
    });
  });

  it('ends the workflow of a key whose expires passes, at the next pass, without resetting it', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const resetAt = new Date(Math.floor((await t.now()).getTime() / DAY) * DAY + 2 * DAY).toISOString();
      const ref: BudgetRef = { kind: 'key', id: 'expiring' };
      await insertKey(t.db.pool, { token: ref.id, spend: 4, duration: '1d', resetAt });
      const supervisor = await t.env.client.workflow.start('budgetSupervisorWorkflow', {
        taskQueue,
        workflowId: supervisorWorkflowId(taskQueue),
        // Passes only when asked, each a full sweep too.
        args: [{ syncIntervalMs: 24 * 60 * 60_000, fullSweepIntervalMs: 1 }],
      });
      await t.waitForStatus(ref, (s) => s.nextResetAt === resetAt);

      // LiteLLM gives the key a lifetime (`/key/update` with a duration sets `expires`): not a schedule change.
      const setLifetime = (seconds: number) =>
        t.db.pool.query(
          `UPDATE "LiteLLM_VerificationToken"
              SET expires = now() AT TIME ZONE 'UTC' + make_interval(secs => $2), updated_at = now()
            WHERE token = $1`,
          [ref.id, seconds],
        );
      await setLifetime(24 * 60 * 60);
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 0, started: 0, ended: 0 });
      // Then a short one, which runs out while the workflow waits for its boundary.
      await setLifetime(2);
      // The supervisor reads `expires` against the database's clock, which skipped time does not move: wait for it.
      await expect
        .poll(
          async () =>
            (
              await t.db.pool.query<{ past: boolean }>(
                `SELECT expires < now() AT TIME ZONE 'UTC' AS past FROM "LiteLLM_VerificationToken" WHERE token = $1`,
                [ref.id],
              )
            ).rows[0]?.past,
          { timeout: LIMITS.workflowStep, interval: 100 },
        )
        .toBe(true);

      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ changed: 1, started: 0, ended: 1 });
      await expect
        .poll(async () => (await t.handle(ref).describe()).status.name, { timeout: LIMITS.workflowStep })
        .toBe('COMPLETED');
      expect(await t.handle(ref).result()).toMatchObject({ ...ref, reason: 'key_expired', cycle: 0 });
      // As LiteLLM's job, which selects only keys not past `expires`: nothing zeroed, budget_reset_at left.
      expect(await spendOf(t.db.pool, 'LiteLLM_VerificationToken', { token: ref.id })).toBe(4);
      expect(await resetAtOf(t.db.pool, 'LiteLLM_VerificationToken', 'token', ref.id)).toBe(resetAt);
      expect(await t.resetLog(ref)).toEqual([]);
      // Told once: the expired key is forgotten, and the full sweep does not start it again.
      expect((await syncPass(t, supervisor)).lastPass).toMatchObject({ full: true, changed: 0, started: 0 });
      await supervisor.terminate('test finished');
    });
  });
});
