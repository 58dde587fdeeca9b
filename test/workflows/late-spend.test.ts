import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { insertBudget, insertSpendLog, insertTag, spendOf } from '../helpers/litellm-rows.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const HOUR = 60 * 60 * 1000;
const DELAY = 30_000;

describe('late spend (time skipping)', () => {
  it('moves spend flushed after a reset, of requests that started before its boundary, out of the new period', async () => {
    const { worker, taskQueue } = await t.worker({ config: { lateSpendDelayMs: DELAY } });
    await worker.runUntil(async () => {
      const now = await t.now();
      const first = new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);
      const second = new Date(first.getTime() + HOUR);
      const tag = 'late-tag';
      await insertBudget(t.db.pool, {
        id: 'late',
        maxBudget: 0.05,
        duration: '1h',
        resetAt: first.toISOString(),
      });
      await insertTag(t.db.pool, { name: tag, spend: 0, budgetId: 'late' });
      const ref: BudgetRef = { kind: 'budget', id: 'late' };
      await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1);

      // A request that starts 2 s before the second boundary; the proxy writes its spend after our reset.
      const late = new Date(second.getTime() - 2_000).toISOString();
      await insertSpendLog(t.db.pool, { requestId: 'late-1', startTime: late, spend: 0.06, tags: [tag] });
      await t.sleepUntil(second);
      await t.waitForStatus(ref, (s) => s.cycle === 2);
      const [, reset] = await t.resetLog(ref);
      await t.db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = spend + 0.06 WHERE tag_name = $1`, [tag]);
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBeCloseTo(0.06, 10);

      await t.sleepUntil(new Date(second.getTime() + DELAY));
      await expect
        .poll(() => spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: tag }), { timeout: 60_000 })
        .toBeCloseTo(0, 10);
      const { rows } = await t.db.pool.query(
        `SELECT entity_id, late_spend FROM budget_lifecycle.late_spend_correction WHERE reset_id = $1`,
        [reset?.id],
      );
      expect(rows).toEqual([{ entity_id: tag, late_spend: expect.closeTo(0.06, 10) }]);
      // The workflow carries on with its schedule.
      expect(await t.status(ref)).toMatchObject({
        cycle: 2,
        nextResetAt: new Date(second.getTime() + HOUR).toISOString(),
      });
    });
  });
});
