import { Client } from '@temporalio/client';
import type proto from '@temporalio/proto';
import { describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { pauseUpdate, resetNowUpdate, statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { collectDelayFor } from '../../workflows/budget.js';
import { useArmingEnv, type ArmingEnv } from '../helpers/arming-env.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { uniqueName } from '../helpers/services.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** The payloads a marker records, as text (a local activity's type, a patch's id). */
function markerText(event: HistoryEvent): string {
  const details = event.markerRecordedEventAttributes?.details ?? {};
  return Object.values(details)
    .flatMap((d) => d.payloads ?? [])
    .map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8'))
    .join('\n');
}

/** A protobuf timestamp or duration in milliseconds. */
function protoMs(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  return Number(String(t?.seconds ?? 0)) * 1000 + (t?.nanos ?? 0) / 1e6;
}

// Arming works on the wall clock, so it is proved on the dev server in real time: a reset armed ahead of its
// boundary is run by the worker at the boundary and collected by its workflow; a pause takes it back. Its history
// is recorded by `npm run record:histories` (test/workflows/record-armed-history.ts).
let t: ArmingEnv;
useArmingEnv((env) => (t = env));
/** From now to the boundary at least: room to start both workflows and see them armed. */
const MIN_LEAD_MS = 45_000;
/** The boundary (at most a minute after the least lead), then collecting the reset and the checks after it. */
const TEST_TIMEOUT = MIN_LEAD_MS + 60_000 + 2 * LIMITS.workflowStep;

describe('a reset armed in the worker', { timeout: TEST_TIMEOUT }, () => {
  it('commits at the boundary, is collected by its workflow, and a pause takes it back', async () => {
    const client = new Client({ connection: t.connection });
    const taskQueue = uniqueName('armed');
    const worker = await t.worker(taskQueue);
    // Within the arming lead (at most 4 minutes), so both arm as soon as they start; on a minute boundary.
    const boundary = new Date(Math.ceil((Date.now() + MIN_LEAD_MS) / 60_000) * 60_000);
    const armed: BudgetRef = { kind: 'budget', id: uniqueName('armed') };
    const paused: BudgetRef = { kind: 'budget', id: uniqueName('paused') };
    // Forced between the worker's commit and its workflow's collecting wake: an id whose wake is at least 20 s
    // after the boundary leaves room for that on a busy machine.
    let forced: BudgetRef;
    do forced = { kind: 'budget', id: uniqueName('forced') };
    while (collectDelayFor(budgetWorkflowId(forced)) < 20_000);
    const all = [armed, paused, forced];
    for (const ref of all) {
      await insertBudget(t.db.pool, { id: ref.id, duration: '1m', resetAt: boundary.toISOString() });
      await insertTag(t.db.pool, { name: `${ref.id}-tag`, spend: 3, budgetId: ref.id });
      await t.redis.set(`${taskQueue}:spend:tag:${ref.id}-tag`, '3.0');
    }
    const status = (ref: BudgetRef): Promise<BudgetStatus> =>
      client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);
    await worker.runUntil(async () => {
      for (const ref of all) {
        await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
          taskQueue,
          workflowId: budgetWorkflowId(ref),
          args: [ref],
        });
      }
      // All arm within their lead before the boundary: their histories show the armReset marker.
      await vi.waitFor(
        async () => {
          for (const ref of all) {
            const history = await client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory();
            // A local activity's marker carries its activity type in its `data` payload.
            const markers = (history.events ?? []).flatMap((e) =>
              (e.markerRecordedEventAttributes?.details?.data?.payloads ?? []).map((p) =>
                Buffer.from(p.data ?? new Uint8Array()).toString('utf8'),
              ),
            );
            expect(markers.join('\n')).toContain('armReset');
          }
        },
        // Armed before the boundary, or it is no armed reset.
        { timeout: boundary.getTime() - Date.now(), interval: 250 },
      );
      expect(Date.now()).toBeLessThan(boundary.getTime());
      // The armed workflow sleeps past the boundary (5 to 25 s): the worker commits without it, and a herd's
      // commits do not share their seconds with every workflow's task. The wake went in behind a patch marker.
      const events = (await client.workflow.getHandle(budgetWorkflowId(armed)).fetchHistory()).events ?? [];
      const armedAt = events.findIndex((e) => markerText(e).includes('armReset'));
      const wake = events.slice(armedAt).find((e) => e.timerStartedEventAttributes);
      expect(wake).toBeDefined();
      const wakeAt =
        protoMs(wake?.eventTime) + protoMs(wake?.timerStartedEventAttributes?.startToFireTimeout);
      expect(wakeAt).toBeGreaterThanOrEqual(boundary.getTime() + 5_000);
      expect(events.map(markerText).join('\n')).toContain('collect-armed-reset-after-boundary');
      await client.workflow
        .getHandle(budgetWorkflowId(paused))
        .executeUpdate(pauseUpdate, { args: [{ reason: 'hold' }] });

      // A forced reset that arrives after the worker committed the scheduled one but before the workflow woke to
      // collect it: the workflow collects the scheduled reset first (its bookkeeping stands), then runs the force
      // against the new schedule. Without that order the force met a moved budget_reset_at and was refused.
      const forcedWakeAt = boundary.getTime() + collectDelayFor(budgetWorkflowId(forced));
      await vi.waitFor(
        async () => {
          const { rowCount } = await t.db.pool.query(
            `SELECT 1 FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
            [forced.id],
          );
          expect(rowCount).toBe(1);
        },
        { timeout: boundary.getTime() - Date.now() + LIMITS.workflowStep, interval: 100 },
      );
      const forcedHandle = client.workflow.getHandle(budgetWorkflowId(forced));
      const answer = await forcedHandle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'operator', requestedBy: 'armed-reset test' }],
      });
      const forcedEvents = (await forcedHandle.fetchHistory()).events ?? [];
      const accepted = forcedEvents.find((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
      // The update reached the workflow before its collecting wake; otherwise this test proves nothing.
      expect(protoMs(accepted?.eventTime)).toBeLessThan(forcedWakeAt);
      expect(answer).toMatchObject({ outcome: 'reset' });
      const triggers = await t.db.pool.query<{ trigger: string }>(
        `SELECT trigger FROM budget_lifecycle.reset_log WHERE budget_id = $1 ORDER BY id`,
        [forced.id],
      );
      expect(triggers.rows.map((r) => r.trigger)).toEqual(['schedule', 'forced']);
      expect(await status(forced)).toMatchObject({ cycle: 2, lastReset: { trigger: 'forced' } });

      const reset = await vi.waitFor(
        async () => {
          const s = await status(armed);
          if (s.cycle < 1) throw new Error('not collected yet');
          return s;
        },
        { timeout: boundary.getTime() - Date.now() + LIMITS.workflowStep, interval: 250 },
      );
      const { rows } = await t.db.pool.query<{
        id: string;
        executed_at: Date;
        period_end: Date;
        trigger: string;
      }>(
        `SELECT id::text, executed_at, period_end, trigger FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
        [armed.id],
      );
      expect(rows).toHaveLength(1);
      // The worker ran it: it did not start before the boundary, and the workflow recorded that very reset.
      expect(rows[0]?.executed_at.getTime()).toBeGreaterThanOrEqual(boundary.getTime());
      expect(rows[0]?.executed_at.getTime()).toBeLessThan(wakeAt);
      expect(rows[0]?.period_end.toISOString()).toBe(boundary.toISOString());
      expect(reset.lastReset).toMatchObject({ resetId: rows[0]?.id, trigger: 'schedule' });
      expect(reset.cacheInvalidationFailures).toBe(0);
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: `${armed.id}-tag` })).toBe(0);
      expect(await t.redis.exists(`${taskQueue}:spend:tag:${armed.id}-tag`)).toBe(0);

      // The paused budget's armed reset never ran.
      expect(await status(paused)).toMatchObject({ state: 'paused', cycle: 0 });
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: `${paused.id}-tag` })).toBe(3);
      for (const ref of all)
        await client.workflow.getHandle(budgetWorkflowId(ref)).terminate('test finished');
    });
  });
});
