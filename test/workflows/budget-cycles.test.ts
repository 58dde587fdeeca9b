import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
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

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;

/** The next UTC midnight after `now`. */
function nextUtcMidnight(now: Date): Date {
  return new Date(Math.floor(now.getTime() / DAY) * DAY + DAY);
}

describe('budgetWorkflow over many cycles (time skipping)', () => {
  it('resets every kind at each boundary for three cycles, with spend re-accrued in between', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From noon: the first boundary is hours away, not in the seconds it takes to start four workflows.
      const first = nextUtcMidnight(await t.skipToPhase(DAY, 12 * HOUR));
      const resetAt = first.toISOString();
      await insertBudget(t.db.pool, { id: 'tier-1', maxBudget: 10, duration: '1d', resetAt });
      await insertTag(t.db.pool, { name: 'tier-1-tag', spend: 1.5, budgetId: 'tier-1' });
      await insertKey(t.db.pool, { token: 'key-1', spend: 2.5, duration: '1d', resetAt });
      await insertUser(t.db.pool, { id: 'user-1', spend: 3.5, duration: '1d', resetAt });
      await insertTeam(t.db.pool, { id: 'team-1', spend: 4.5, duration: '1d', resetAt });
      const spends: Array<[BudgetRef, string, Record<string, string>]> = [
        [{ kind: 'budget', id: 'tier-1' }, 'LiteLLM_TagTable', { tag_name: 'tier-1-tag' }],
        [{ kind: 'key', id: 'key-1' }, 'LiteLLM_VerificationToken', { token: 'key-1' }],
        [{ kind: 'user', id: 'user-1' }, 'LiteLLM_UserTable', { user_id: 'user-1' }],
        [{ kind: 'team', id: 'team-1' }, 'LiteLLM_TeamTable', { team_id: 'team-1' }],
      ];
      for (const [ref] of spends) await t.start(ref, taskQueue);
      for (const [ref] of spends) await t.waitForStatus(ref, (s) => s.nextResetAt === resetAt);

      for (let cycle = 1; cycle <= 3; cycle += 1) {
        const boundary = new Date(first.getTime() + (cycle - 1) * DAY);
        await t.sleepUntil(boundary);
        for (const [ref, table, where] of spends) {
          const status = await t.waitForStatus(ref, (s) => s.cycle === cycle);
          expect(status.state).toBe('active');
          expect(status.lastReset).toMatchObject({
            periodEnd: boundary.toISOString(),
            entityCount: 1,
            missedPeriods: 0,
          });
          expect(status.nextResetAt).toBe(new Date(boundary.getTime() + DAY).toISOString());
          expect(await spendOf(t.db.pool, table, where)).toBe(0);
          // Spend accrues again during the next period.
          await t.db.pool.query(
            `UPDATE "${table}" SET spend = $1 WHERE ${Object.keys(where)
              .map((c, i) => `"${c}" = $${i + 2}`)
              .join(' AND ')}`,
            [cycle + 0.25, ...Object.values(where)],
          );
        }
      }
      for (const [ref] of spends) {
        const log = await t.resetLog(ref);
        expect(log.map((r) => r.period_end.toISOString())).toEqual(
          [0, 1, 2].map((i) => new Date(first.getTime() + i * DAY).toISOString()),
        );
        expect(log.map((r) => r.trigger)).toEqual(['schedule', 'schedule', 'schedule']);
        expect(log.map((r) => r.entity_count)).toEqual([1, 1, 1]);
        expect(log.slice(1).map((r) => r.spend_total)).toEqual([1.25, 2.25]);
      }
    });
  });

  it('seed case: a tag over its 1m tier budget is reset every minute, and its cache keys go each time', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const now = await t.now();
      const first = new Date(Math.floor(now.getTime() / 60_000) * 60_000 + 60_000);
      await insertBudget(t.db.pool, {
        id: 'acme-tier',
        maxBudget: 0.05,
        duration: '1m',
        resetAt: first.toISOString(),
      });
      await insertTag(t.db.pool, { name: 'tenant:acme', spend: 0.063, budgetId: 'acme-tier' });
      const ref: BudgetRef = { kind: 'budget', id: 'acme-tier' };
      await t.start(ref, taskQueue);
      const ns = t.namespace;
      for (let cycle = 1; cycle <= 3; cycle += 1) {
        await t.redis.set(`${ns}:tag:tenant:acme`, JSON.stringify({ tag_name: 'tenant:acme', spend: 0.063 }));
        await t.redis.set(`${ns}:spend:tag:tenant:acme`, '0.063');
        await t.sleepUntil(new Date(first.getTime() + (cycle - 1) * 60_000));
        await t.waitForStatus(ref, (s) => s.cycle === cycle);
        expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'tenant:acme' })).toBe(0);
        expect(await t.redis.exists(`${ns}:tag:tenant:acme`)).toBe(0);
        // Deleted, as LiteLLM's job does: its next read reseeds the counter from the committed row.
        expect(await t.redis.exists(`${ns}:spend:tag:tenant:acme`)).toBe(0);
        await t.db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 0.063 WHERE tag_name = 'tenant:acme'`);
      }
      expect((await t.resetLog(ref)).map((r) => r.spend_total)).toEqual([0.063, 0.063, 0.063]);
    });
  });

  it('follows 1mo across January 31 into February and March', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const year = (await t.now()).getUTCFullYear() + 1;
      const jan = new Date(Date.UTC(year, 0, 1));
      await insertKey(t.db.pool, { token: 'monthly', spend: 9, duration: '1mo', resetAt: jan.toISOString() });
      const ref: BudgetRef = { kind: 'key', id: 'monthly' };
      await t.start(ref, taskQueue);
      await t.sleepUntil(jan);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      // January 31st passes without a reset: the next boundary is February 1st.
      await t.sleepUntil(new Date(Date.UTC(year, 0, 31, 12)));
      expect(await t.status(ref)).toMatchObject({
        cycle: 1,
        nextResetAt: new Date(Date.UTC(year, 1, 1)).toISOString(),
      });
      await t.sleepUntil(new Date(Date.UTC(year, 1, 1)));
      await t.waitForStatus(ref, (s) => s.cycle === 2);
      await t.sleepUntil(new Date(Date.UTC(year, 2, 1)));
      await t.waitForStatus(ref, (s) => s.cycle === 3);
      const status = await t.status(ref);
      expect(status.nextResetAt).toBe(new Date(Date.UTC(year, 3, 1)).toISOString());
      expect((await t.resetLog(ref)).map((r) => r.period_end.toISOString())).toEqual([
        new Date(Date.UTC(year, 0, 1)).toISOString(),
        new Date(Date.UTC(year, 1, 1)).toISOString(),
        new Date(Date.UTC(year, 2, 1)).toISOString(),
      ]);
    });
  });

  it('lands 7d resets on Mondays', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const now = await t.now();
      const daysToMonday = (8 - now.getUTCDay()) % 7 || 7;
      const monday = new Date(Math.floor(now.getTime() / DAY) * DAY + daysToMonday * DAY);
      await insertTeam(t.db.pool, { id: 'weekly', spend: 1, duration: '7d', resetAt: monday.toISOString() });
      const ref: BudgetRef = { kind: 'team', id: 'weekly' };
      await t.start(ref, taskQueue);
      for (let cycle = 1; cycle <= 3; cycle += 1) {
        await t.sleepUntil(new Date(monday.getTime() + (cycle - 1) * 7 * DAY));
        await t.waitForStatus(ref, (s) => s.cycle === cycle);
      }
      const log = await t.resetLog(ref);
      expect(log).toHaveLength(3);
      for (const row of log) expect(row.period_end.getUTCDay()).toBe(1);
      for (const row of log) expect(row.next_reset_at.getUTCDay()).toBe(1);
    });
  });

  it('keeps local midnight in a non-UTC zone', async () => {
    const schedule = { timeZone: 'Asia/Kolkata', resetTime: '00:00' };
    const { worker, taskQueue } = await t.worker({ schedule });
    await worker.runUntil(async () => {
      // Kolkata is UTC+05:30 all year: local midnight is 18:30 UTC the day before.
      const now = await t.now();
      let first = new Date(Math.floor(now.getTime() / DAY) * DAY + 18.5 * 60 * 60 * 1000);
      if (first <= now) first = new Date(first.getTime() + DAY);
      await insertUser(t.db.pool, { id: 'kolkata', spend: 1, duration: '1d', resetAt: first.toISOString() });
      const ref: BudgetRef = { kind: 'user', id: 'kolkata' };
      await t.start(ref, taskQueue);
      for (let cycle = 1; cycle <= 3; cycle += 1) {
        await t.sleepUntil(new Date(first.getTime() + (cycle - 1) * DAY));
        await t.waitForStatus(ref, (s) => s.cycle === cycle);
      }
      const status = await t.status(ref);
      expect(status.timeZone).toBe('Asia/Kolkata');
      for (const row of await t.resetLog(ref)) {
        expect(row.period_end.getUTCHours()).toBe(18);
        expect(row.period_end.getUTCMinutes()).toBe(30);
      }
    });
  });

  it('ends a key whose expires passes during a period at its next boundary, leaving its spend', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = new Date(Math.floor((await t.now()).getTime() / HOUR) * HOUR + HOUR);
      const second = new Date(first.getTime() + HOUR);
      const ref: BudgetRef = { kind: 'key', id: 'expiring' };
      const where = { token: ref.id };
      await insertKey(t.db.pool, {
        token: ref.id,
        spend: 2,
        duration: '1h',
        resetAt: first.toISOString(),
        // Halfway through the second period, in workflow time (the time-skipping server's clock).
        expires: new Date(first.getTime() + HOUR / 2).toISOString(),
      });
      const handle = await t.start(ref, taskQueue);
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1 && s.nextResetAt === second.toISOString());
      expect(await spendOf(t.db.pool, 'LiteLLM_VerificationToken', where)).toBe(0);
      // Spent before it expired.
      await t.db.pool.query(`UPDATE "LiteLLM_VerificationToken" SET spend = 3 WHERE token = $1`, [ref.id]);

      await t.sleepUntil(second);
      await expect
        .poll(async () => (await handle.describe()).status.name, { timeout: LIMITS.workflowStep })
        .toBe('COMPLETED');
      expect(await handle.result()).toMatchObject({ ...ref, reason: 'key_expired', cycle: 1 });
      // As LiteLLM's job, which selects only keys not past `expires`: nothing zeroed, budget_reset_at left, no
      // second period in the audit.
      expect(await spendOf(t.db.pool, 'LiteLLM_VerificationToken', where)).toBe(3);
      expect(await resetAtOf(t.db.pool, 'LiteLLM_VerificationToken', 'token', ref.id)).toBe(
        second.toISOString(),
      );
      expect((await t.resetLog(ref)).map((r) => r.period_end.toISOString())).toEqual([first.toISOString()]);
    });
  });
});
