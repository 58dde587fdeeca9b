import { describe, expect, it, vi } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import { pythonIsoFormat } from '../../src/window-id.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { LIMITS } from '../helpers/limits.js';
import {
  budgetLimitsOf,
  insertKey,
  insertWindowSpend,
  setBudgetLimits,
  windowSpendOf,
} from '../helpers/litellm-rows.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const HOUR = 60 * 60 * 1000;
const KEYS = 'LiteLLM_VerificationToken' as const;

async function nextHour(): Promise<Date> {
  return new Date(Math.floor((await t.now()).getTime() / HOUR) * HOUR + HOUR);
}

describe('window budgets (time skipping)', () => {
  it('resets a key’s hourly window over two cycles: only that window, counter set, spend row rolled, audited', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From HH:30: the first boundary is half an hour away, not in the seconds it takes to start the workflow.
      await t.skipToPhase(HOUR, HOUR / 2);
      const first = await nextHour();
      const dayWindow = { budget_duration: '1d', max_budget: 20, reset_at: '2099-01-01T00:00:00+00:00' };
      await insertKey(t.db.pool, { token: 'wc-key', spend: 9 });
      await setBudgetLimits(t.db.pool, { table: KEYS, id: 'wc-key' }, [
        dayWindow,
        { budget_duration: '1h', max_budget: 2, reset_at: pythonIsoFormat(first.toISOString()) },
      ]);
      await insertWindowSpend(t.db.pool, {
        entityType: 'key',
        entityId: 'wc-key',
        duration: '1h',
        windowStart: new Date(first.getTime() - HOUR).toISOString(),
        spend: 1.75,
      });
      const counter = `${t.namespace}:spend:key:wc-key:window:1h`;
      const dayCounter = `${t.namespace}:spend:key:wc-key:window:1d`;
      await t.redis.set(dayCounter, '7.5');
      const ref: BudgetRef = { kind: 'window', id: 'key:wc-key:1h' };
      await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());

      const spends = [1.75, 0.5];
      for (const [index, spend] of spends.entries()) {
        const cycle = index + 1;
        const boundary = new Date(first.getTime() + index * HOUR);
        const next = new Date(boundary.getTime() + HOUR);
        await t.redis.set(counter, String(spend));
        await t.db.pool.query(
          `UPDATE "LiteLLM_BudgetWindowSpend" SET spend = $1 WHERE entity_id = 'wc-key' AND window_duration = '1h'`,
          [spend],
        );
        await t.sleepUntil(boundary);
        const status = await t.waitForStatus(ref, (s) => s.cycle === cycle);
        expect(status.lastReset).toMatchObject({ periodEnd: boundary.toISOString(), entityCount: 1 });
        expect(status.nextResetAt).toBe(next.toISOString());
        expect(await budgetLimitsOf(t.db.pool, { table: KEYS, id: 'wc-key' })).toEqual([
          dayWindow,
          { budget_duration: '1h', max_budget: 2, reset_at: pythonIsoFormat(next.toISOString()) },
        ]);
        expect(
          await windowSpendOf(t.db.pool, { entityType: 'key', entityId: 'wc-key', duration: '1h' }),
        ).toEqual({
          windowStart: boundary.toISOString(),
          spend: 0,
        });
        await vi.waitFor(
          async () => {
            if ((await t.redis.get(counter)) !== '0.0') throw new Error('counter not set yet');
          },
          { timeout: LIMITS.workflowStep, interval: 50 },
        );
      }
      expect(await t.redis.get(dayCounter)).toBe('7.5');
      const log = await t.resetLog(ref);
      expect(log.map((r) => r.period_end.toISOString())).toEqual([
        first.toISOString(),
        new Date(first.getTime() + HOUR).toISOString(),
      ]);
      expect(log.map((r) => r.spend_total)).toEqual(spends);
      expect(log.map((r) => r.trigger)).toEqual(['schedule', 'schedule']);
    });
  });
});
