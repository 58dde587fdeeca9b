import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import type { CarriedState } from '../../workflows/budget.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertSpendLog, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const HOUR = 60 * 60 * 1000;
const DELAY = 30_000;

/** What a workflow's local-activity markers record (each names its activity type), from its history. */
async function localActivityMarkers(ref: BudgetRef): Promise<string> {
  const history = await t.handle(ref).fetchHistory();
  return (history.events ?? [])
    .flatMap((e) =>
      (e.markerRecordedEventAttributes?.details?.data?.payloads ?? []).map((p) =>
        Buffer.from(p.data ?? new Uint8Array()).toString('utf8'),
      ),
    )
    .join('\n');
}

describe('late spend (time skipping)', () => {
  it("commits a reset's late-spend due time with the reset and leaves the check to the worker's sweeper", async () => {
    const { worker, taskQueue } = await t.worker({ config: { lateSpendDelayMs: DELAY } });
    await worker.runUntil(async () => {
      // From HH:30: the first boundary is half an hour away, not in the seconds it takes to start the workflow.
      const first = new Date(
        Math.floor((await t.skipToPhase(HOUR, HOUR / 2)).getTime() / HOUR) * HOUR + HOUR,
      );
      await insertBudget(t.db.pool, {
        id: 'swept',
        maxBudget: 1,
        duration: '1h',
        resetAt: first.toISOString(),
      });
      await insertTag(t.db.pool, { name: 'swept-tag', spend: 2, budgetId: 'swept' });
      const ref: BudgetRef = { kind: 'budget', id: 'swept' };
      await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1);

      const { rows } = await t.db.pool.query<{ delay_ms: number }>(
        `SELECT extract(epoch FROM late_spend_due_at - executed_at) * 1000 AS delay_ms
           FROM budget_lifecycle.reset_log WHERE budget_kind = 'budget' AND budget_id = 'swept'`,
      );
      expect(rows.map((r) => Number(r.delay_ms))).toEqual([DELAY]);
      // Well past the check's time, the workflow has scheduled no check of its own: no timer, no activity.
      await t.sleepUntil(new Date(first.getTime() + 2 * DELAY));
      await t.waitUntilQuiet();
      const markers = await localActivityMarkers(ref);
      expect(markers).toContain('resetBudget');
      expect(markers).not.toContain('reconcileLateSpend');
    });
  });

  it('still runs a late-spend check carried over from a release 0.3 run', async () => {
    const { worker, taskQueue } = await t.worker({ config: { lateSpendDelayMs: DELAY } });
    await worker.runUntil(async () => {
      const now = await t.now();
      const boundary = new Date(Math.floor(now.getTime() / HOUR) * HOUR);
      const next = new Date(boundary.getTime() + HOUR);
      const tag = 'carried-tag';
      await insertBudget(t.db.pool, {
        id: 'carried',
        maxBudget: 0.05,
        duration: '1h',
        resetAt: boundary.toISOString(),
      });
      await insertTag(t.db.pool, { name: tag, spend: 0, budgetId: 'carried' });
      // The 0.3 run's reset, and spend of a request that started before it, flushed after it.
      const late = new Date(boundary.getTime() - 2_000).toISOString();
      await insertSpendLog(t.db.pool, { requestId: 'carried-1', startTime: late, spend: 0.06, tags: [tag] });
      const reset = await resetBudgetTransaction(
        t.db.pool,
        scheduledReset({ kind: 'budget', id: 'carried' }, boundary.toISOString(), next.toISOString(), {
          periodStart: new Date(boundary.getTime() - HOUR).toISOString(),
        }),
        { rollover: false },
        await existingTables(t.db.pool),
      );
      if (reset.outcome !== 'reset') throw new Error(`expected a reset, got ${reset.outcome}`);
      await t.db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = spend + 0.06 WHERE tag_name = $1`, [tag]);

      const checkAt = new Date(now.getTime() + DELAY);
      const carried: CarriedState = {
        cycle: 1,
        lastReset: null,
        paused: null,
        periodStart: boundary.toISOString(),
        requests: [],
        pendingForces: [],
        cacheInvalidationFailures: 0,
        catchUpPending: false,
        problem: null,
        knownDuration: '1h',
        lateSpendChecks: [{ resetId: reset.resetId, at: checkAt.toISOString() }],
      };
      const ref: BudgetRef = { kind: 'budget', id: 'carried' };
      await t.start(ref, taskQueue, { carried });
      await t.sleepUntil(checkAt);
      await expect
        .poll(() => spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: tag }), {
          timeout: LIMITS.workflowStep,
        })
        .toBeCloseTo(0, 10);
      // The workflow records the check's marker when the task that ran it completes, just after its commit.
      await expect
        .poll(() => localActivityMarkers(ref), { timeout: LIMITS.workflowStep })
        .toContain('reconcileLateSpend');
      const { rows } = await t.db.pool.query(
        `SELECT entity_id, late_spend FROM budget_lifecycle.late_spend_correction WHERE reset_id = $1`,
        [reset.resetId],
      );
      expect(rows).toEqual([{ entity_id: tag, late_spend: expect.closeTo(0.06, 10) }]);
      expect(await t.status(ref)).toMatchObject({ nextResetAt: next.toISOString() });
    });
  });
});
