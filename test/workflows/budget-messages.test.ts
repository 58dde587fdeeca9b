import { WorkflowUpdateFailedError } from '@temporalio/client';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import {
  forceResetSignal,
  pauseUpdate,
  resetNowUpdate,
  resumeUpdate,
  scheduleChangedSignal,
} from '../../src/temporal/messages.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import {
  insertBudget,
  insertKey,
  insertTag,
  insertTeam,
  insertUser,
  resetAtOf,
  spendOf,
} from '../helpers/litellm-rows.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;
const nextUtcMidnight = (now: Date) => new Date(Math.floor(now.getTime() / DAY) * DAY + DAY);

describe('budgetWorkflow messages (time skipping)', () => {
  it('forces a reset by update and by signal, with and without reanchor, applying a request id once', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // The midnight after next: the two hours this test skips must not reach the scheduled boundary, whatever
      // the time of day it runs at (from 22:00 UTC the next midnight was within them, and reset on schedule).
      const boundary = new Date(nextUtcMidnight(await t.now()).getTime() + DAY);
      await insertBudget(t.db.pool, { id: 'forced', duration: '1d', resetAt: boundary.toISOString() });
      await insertTag(t.db.pool, { name: 'forced-tag', spend: 5, budgetId: 'forced' });
      const ref: BudgetRef = { kind: 'budget', id: 'forced' };
      const handle = await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === boundary.toISOString());

      // Update, keeping the calendar: spend zeroed now, the boundary stays.
      const first = await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'incident 42', requestedBy: 'ops@example.com', requestId: 'req-1' }],
      });
      expect(first).toMatchObject({ outcome: 'reset', requestId: 'req-1', entityCount: 1, spendTotal: 5 });
      expect(first.outcome === 'reset' && first.nextResetAt).toBe(boundary.toISOString());
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'forced-tag' })).toBe(0);

      // The same request id again: the first result, nothing reset twice.
      await t.db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 2 WHERE tag_name = 'forced-tag'`);
      const again = await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'incident 42', requestId: 'req-1' }],
      });
      expect(again).toEqual(first);
      await handle.signal(forceResetSignal, { reason: 'incident 42', requestId: 'req-1' });
      expect((await t.status(ref)).cycle).toBe(1);
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'forced-tag' })).toBe(2);

      // Signal with reanchor: a full period from now.
      await t.env.sleep(2 * HOUR);
      const now = await t.now();
      await handle.signal(forceResetSignal, { reason: 'new contract', reanchor: true, requestId: 'req-2' });
      const status = await t.waitForStatus(ref, (s) => s.cycle === 2);
      expect(Date.parse(status.nextResetAt!)).toBeGreaterThanOrEqual(now.getTime() + DAY - 60_000);
      expect(Date.parse(status.nextResetAt!)).toBeLessThanOrEqual(now.getTime() + DAY + 60_000);
      expect(await resetAtOf(t.db.pool, 'LiteLLM_BudgetTable', 'budget_id', 'forced')).toBe(
        status.nextResetAt,
      );

      const log = await t.resetLog(ref);
      expect(log.map((r) => [r.trigger, r.reason, r.requested_by])).toEqual([
        ['forced', 'incident 42', 'ops@example.com'],
        ['forced', 'new contract', null],
      ]);
      expect(log[0]!.workflow_id).toBe('budget/budget/forced');

      // Validators reject a forced reset without a reason before anything changes.
      await expect(handle.executeUpdate(resetNowUpdate, { args: [{ reason: ' ' }] })).rejects.toBeInstanceOf(
        WorkflowUpdateFailedError,
      );
      expect((await t.status(ref)).cycle).toBe(2);
    });
  });

  it('takes a schedule change mid-period at once', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From HH:30: neither midnight nor the next hour is within the seconds between this test reading the clock
      // and the workflow reading its own (each computes the next hour below).
      const boundary = nextUtcMidnight(await t.skipToPhase(HOUR, HOUR / 2));
      await insertUser(t.db.pool, {
        id: 'changer',
        spend: 1,
        duration: '1d',
        resetAt: boundary.toISOString(),
      });
      const ref: BudgetRef = { kind: 'user', id: 'changer' };
      const handle = await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === boundary.toISOString());
      await t.db.pool.query(
        `UPDATE "LiteLLM_UserTable" SET budget_duration = '1h' WHERE user_id = 'changer'`,
      );
      await handle.signal(scheduleChangedSignal);
      const now = await t.now();
      const nextHour = new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);
      const status = await t.waitForStatus(ref, (s) => s.duration === '1h');
      expect(status.nextResetAt).toBe(nextHour.toISOString());
      expect(status.cycle).toBe(0);
      expect(await resetAtOf(t.db.pool, 'LiteLLM_UserTable', 'user_id', 'changer')).toBe(
        nextHour.toISOString(),
      );
      await t.sleepUntil(nextHour);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      expect(await spendOf(t.db.pool, 'LiteLLM_UserTable', { user_id: 'changer' })).toBe(0);
    });
  });

  it('does not reset while paused, then runs exactly one catch-up reset on resume', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const boundary = nextUtcMidnight(await t.now());
      await insertTeam(t.db.pool, {
        id: 'paused',
        spend: 7,
        duration: '1d',
        resetAt: boundary.toISOString(),
      });
      const ref: BudgetRef = { kind: 'team', id: 'paused' };
      const handle = await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === boundary.toISOString());
      const paused = await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'billing dispute' }] });
      expect(paused.state).toBe('paused');
      expect(paused.paused?.reason).toBe('billing dispute');

      await t.sleepUntil(new Date(boundary.getTime() + DAY + HOUR));
      expect((await t.status(ref)).cycle).toBe(0);
      expect(await spendOf(t.db.pool, 'LiteLLM_TeamTable', { team_id: 'paused' })).toBe(7);

      const resumed = await handle.executeUpdate(resumeUpdate);
      expect(resumed.state).toBe('active');
      const status = await t.waitForStatus(ref, (s) => s.cycle === 1);
      expect(status.lastReset).toMatchObject({
        trigger: 'catch_up',
        missedPeriods: 1,
        periodEnd: new Date(boundary.getTime() + DAY).toISOString(),
      });
      expect(status.nextResetAt).toBe(new Date(boundary.getTime() + 2 * DAY).toISOString());
      const log = await t.resetLog(ref);
      expect(log).toHaveLength(1);
      expect(log[0]).toMatchObject({ trigger: 'catch_up', missed_periods: 1 });
      expect(Number(log[0]!.late_by_ms)).toBeGreaterThanOrEqual(DAY + HOUR - 5_000);
    });
  });

  it('gives a never-scheduled budget its first boundary without zeroing its spend', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      await insertBudget(t.db.pool, { id: 'fresh', duration: '1d', resetAt: null });
      await insertTag(t.db.pool, { name: 'fresh-tag', spend: 4, budgetId: 'fresh' });
      const ref: BudgetRef = { kind: 'budget', id: 'fresh' };
      await t.start(ref, taskQueue);
      const expected = nextUtcMidnight(await t.now()).toISOString();
      await t.waitForStatus(ref, (s) => s.nextResetAt === expected);
      expect(await resetAtOf(t.db.pool, 'LiteLLM_BudgetTable', 'budget_id', 'fresh')).toBe(expected);
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'fresh-tag' })).toBe(4);
      expect(await t.resetLog(ref)).toHaveLength(0);
    });
  });

  it('ends cleanly when the row is deleted or its duration removed', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const boundary = nextUtcMidnight(await t.now()).toISOString();
      await insertKey(t.db.pool, { token: 'doomed', spend: 1, duration: '1d', resetAt: boundary });
      await insertUser(t.db.pool, { id: 'unbudgeted', spend: 1, duration: '1d', resetAt: boundary });
      const deleted = await t.start({ kind: 'key', id: 'doomed' }, taskQueue);
      const unbudgeted = await t.start({ kind: 'user', id: 'unbudgeted' }, taskQueue);
      await t.waitForStatus({ kind: 'key', id: 'doomed' }, (s) => s.nextResetAt === boundary);
      await t.waitForStatus({ kind: 'user', id: 'unbudgeted' }, (s) => s.nextResetAt === boundary);

      await t.db.pool.query(`DELETE FROM "LiteLLM_VerificationToken" WHERE token = 'doomed'`);
      await deleted.signal(scheduleChangedSignal);
      expect(await deleted.result()).toMatchObject({ kind: 'key', id: 'doomed', reason: 'row_deleted' });

      await t.db.pool.query(
        `UPDATE "LiteLLM_UserTable" SET budget_duration = NULL WHERE user_id = 'unbudgeted'`,
      );
      await unbudgeted.signal(scheduleChangedSignal);
      expect(await unbudgeted.result()).toMatchObject({ reason: 'duration_removed' });
      // A closed workflow still answers its status query, and says why it is gone.
      expect(await t.status({ kind: 'user', id: 'unbudgeted' })).toMatchObject({
        state: 'removed',
        nextResetAt: null,
      });
    });
  });

  it('goes invalid on a bad duration without crash-looping, and recovers once fixed', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const boundary = nextUtcMidnight(await t.now());
      await insertTeam(t.db.pool, { id: 'bad', spend: 2, duration: '2mo', resetAt: boundary.toISOString() });
      const ref: BudgetRef = { kind: 'team', id: 'bad' };
      const handle = await t.start(ref, taskQueue);
      const invalid = await t.waitForStatus(ref, (s) => s.state === 'invalid');
      expect(invalid.lastError).toMatch(/2mo/);
      await t.sleepUntil(new Date(boundary.getTime() + HOUR));
      expect(await spendOf(t.db.pool, 'LiteLLM_TeamTable', { team_id: 'bad' })).toBe(2);
      expect((await handle.describe()).status.name).toBe('RUNNING');

      await t.db.pool.query(`UPDATE "LiteLLM_TeamTable" SET budget_duration = '1d' WHERE team_id = 'bad'`);
      await handle.signal(scheduleChangedSignal);
      // The stored boundary already passed: it is reset at once, then the calendar goes on.
      const fixed = await t.waitForStatus(ref, (s) => s.cycle === 1);
      expect(fixed.state).toBe('active');
      expect(fixed.lastError).toBeNull();
      expect(await spendOf(t.db.pool, 'LiteLLM_TeamTable', { team_id: 'bad' })).toBe(0);
    });
  });

  it('keeps a committed reset when Redis stays down, and counts the failed invalidation', async () => {
    // Nothing listens on port 1: every Redis command fails at once (no offline queue).
    const deadRedis = new Redis({ port: 1, host: '127.0.0.1', enableOfflineQueue: false, lazyConnect: true });
    deadRedis.on('error', () => undefined);
    const { worker, taskQueue } = await t.worker({ redis: deadRedis });
    try {
      await worker.runUntil(async () => {
        const boundary = nextUtcMidnight(await t.now());
        await insertBudget(t.db.pool, { id: 'no-redis', duration: '1d', resetAt: boundary.toISOString() });
        await insertTag(t.db.pool, { name: 'no-redis-tag', spend: 6, budgetId: 'no-redis' });
        const ref: BudgetRef = { kind: 'budget', id: 'no-redis' };
        await t.start(ref, taskQueue);
        await t.waitForStatus(ref, (s) => s.nextResetAt === boundary.toISOString());
        await t.sleepUntil(boundary);
        await t.waitForStatus(ref, (s) => s.cycle === 1);
        expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'no-redis-tag' })).toBe(0);
        // Skip through the invalidation's retry backoff.
        await t.env.sleep(30 * 60_000);
        const status = await t.waitForStatus(ref, (s) => s.cacheInvalidationFailures === 1);
        expect(status.state).toBe('active');
        expect(status.lastError).toMatch(/cache invalidation failed/);
        expect(await t.resetLog(ref)).toHaveLength(1);
      });
    } finally {
      deadRedis.disconnect();
    }
  });
});
