import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { Worker, bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { LEGACY_BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { forceResetSignal, pauseUpdate, resetNowUpdate, resumeUpdate } from '../../src/temporal/messages.js';
import { MIN_HISTORY_EVENTS } from '../../src/temporal/message-validation.js';
import { ensureSupervisor } from '../../src/worker-process.js';
import { MAX_HISTORY_EVENTS } from '../../workflows/budget.js';
import {
  supervisorStatusQuery,
  supervisorWorkflowId,
  type SupervisorPass,
} from '../../workflows/supervisor.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { createTestDatabase } from '../helpers/database.js';
import { committedHistories, RECORDED_WORKFLOW_ID, RELEASE } from '../helpers/histories.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertKey, insertTag } from '../helpers/litellm-rows.js';

const EventType = proto.temporal.api.enums.v1.EventType;
const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
/**
 * The long run of a daily budget beside the supervisor: its span (each day costs a reset cycle), how often the
 * supervisor looks (not a divisor of a day, so its passes fall at every time of day, before and after boundaries)
 * and sweeps, and how long after a pass's interval the test waits for the next one to have run.
 */
const LONG_RUN = {
  days: 365,
  syncIntervalMs: 97 * HOUR,
  fullSweepIntervalMs: 30 * DAY,
  passSlackMs: 10 * 60_000,
} as const;

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const nextHour = (now: Date) => new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);

async function runIds(workflowId: string, seen: Set<string>): Promise<void> {
  seen.add((await t.env.client.workflow.getHandle(workflowId).describe()).runId);
}

async function eventsOf(workflowId: string, runId: string): Promise<number> {
  return (await t.env.client.workflow.getHandle(workflowId, runId).fetchHistory()).events?.length ?? 0;
}

/** Waits (real time) for the supervisor's status once it has made more than `passes` passes. */
async function passAfter(
  supervisor: WorkflowHandle,
  passes: number,
): Promise<{ passes: number; lastPass: SupervisorPass }> {
  return vi.waitFor(
    async () => {
      const { passes: made, lastPass } = await t.env.client.withDeadline(Date.now() + LIMITS.query, () =>
        supervisor.query(supervisorStatusQuery),
      );
      if (made <= passes || !lastPass) throw new Error(`no pass after ${passes} yet`);
      return { passes: made, lastPass };
    },
    { timeout: LIMITS.workflowStep, interval: 50 },
  );
}

/** Holds the budget row locked, so a reset of it waits until `release` is called. */
async function holdRow(budgetId: string): Promise<() => Promise<void>> {
  const client = await t.db.pool.connect();
  await client.query('BEGIN');
  await client.query(`SELECT 1 FROM "LiteLLM_BudgetTable" WHERE budget_id = $1 FOR UPDATE`, [budgetId]);
  return async () => {
    await client.query('COMMIT');
    client.release();
  };
}

/** Waits (real time) until some transaction is blocked on a row lock: the reset has started and waits. */
async function waitForLockWaiter(): Promise<void> {
  await expect
    .poll(
      async () =>
        (
          await t.db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`,
          )
        ).rows[0]?.n,
      { timeout: LIMITS.workflowStep, interval: 50 },
    )
    .toBeGreaterThan(0);
}

describe('budgetEntityWorkflow history', () => {
  it('continues as new past its history bound, at any wait, carrying all its state', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From HH:30: the first boundary is half an hour away, not within the seconds of messages sent before it.
      const first = nextHour(await t.skipToPhase(HOUR, HOUR / 2));
      await insertBudget(t.db.pool, { id: 'can', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'can-tag', spend: 1, budgetId: 'can' });
      const ref: BudgetRef = { kind: 'budget', id: 'can' };
      const handle = await t.start(ref, taskQueue, { maxHistoryEvents: 40 });
      const runs = new Set<string>();
      await runIds(handle.workflowId, runs);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      const forced = await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'before', requestId: 'keep-me' }],
      });
      await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'hold' }] });
      // Messages alone (no reset) grow the history past the bound while the workflow waits: it moves on anyway.
      for (let i = 0; i < 10; i += 1)
        await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'again' }] });
      await expect
        .poll(async () => (await runIds(handle.workflowId, runs), runs.size), {
          timeout: LIMITS.workflowStep,
        })
        .toBe(2);
      expect(await t.status(ref)).toMatchObject({ cycle: 1, state: 'paused', paused: { reason: 'hold' } });
      await handle.executeUpdate(resumeUpdate);

      for (let i = 0; i < 6; i += 1) {
        await t.sleepUntil(new Date(first.getTime() + i * HOUR));
        await t.waitForStatus(ref, (s) => s.cycle === i + 2);
        await runIds(handle.workflowId, runs);
      }
      expect(runs.size).toBeGreaterThan(3);
      const status = await t.status(ref);
      expect(status).toMatchObject({
        cycle: 7,
        state: 'active',
        nextResetAt: new Date(first.getTime() + 6 * HOUR).toISOString(),
      });
      expect(status.lastReset?.periodEnd).toBe(new Date(first.getTime() + 5 * HOUR).toISOString());
      // The request id deduplication survives continue-as-new.
      expect(
        await handle.executeUpdate(resetNowUpdate, { args: [{ reason: 'again', requestId: 'keep-me' }] }),
      ).toEqual(forced);
      expect((await t.status(ref)).cycle).toBe(7);
      // Every run but the current one stopped within a few events of the bound.
      const current = (await handle.describe()).runId;
      for (const runId of runs) {
        if (runId !== current) expect(await eventsOf(handle.workflowId, runId)).toBeLessThan(40 + 25);
      }
    });
  });

  it('carries a forced reset that arrives during the reset that reaches the bound (no deadlock)', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = nextHour(await t.now());
      await insertBudget(t.db.pool, { id: 'dl', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'dl-tag', spend: 1, budgetId: 'dl' });
      const ref: BudgetRef = { kind: 'budget', id: 'dl' };
      const handle = await t.start(ref, taskQueue, { maxHistoryEvents: 15 });
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      const firstRun = (await handle.describe()).runId;

      const release = await holdRow('dl');
      let update: Promise<unknown> | undefined;
      try {
        await t.sleepUntil(first);
        await waitForLockWaiter();
        // Both arrive while the scheduled reset waits on the lock, which takes the run past its bound.
        await handle.signal(forceResetSignal, { reason: 'by signal', requestId: 'sig-1' });
        update = handle.executeUpdate(resetNowUpdate, {
          args: [{ reason: 'by update', requestId: 'upd-1' }],
        });
      } finally {
        await release();
      }

      expect(await update).toMatchObject({ outcome: 'reset', requestId: 'upd-1' });
      await t.waitForStatus(ref, (s) => s.cycle === 2);
      await expect
        .poll(async () => (await handle.describe()).runId, { timeout: LIMITS.workflowStep })
        .not.toBe(firstRun);
      // And the budget keeps its schedule afterwards.
      await t.sleepUntil(new Date(first.getTime() + HOUR));
      await t.waitForStatus(ref, (s) => s.cycle === 3);
      const log = await t.resetLog(ref);
      expect(log.map((r) => r.trigger)).toEqual(['schedule', 'forced', 'schedule']);
      expect(log[1]?.reason).toMatch(/^by (signal|update) \(\+1 more requests\)$/);
    });
  });

  it('carries a signalled forced reset across continue-as-new when no caller waits', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = nextHour(await t.now());
      await insertBudget(t.db.pool, { id: 'carry', duration: '1h', resetAt: first.toISOString() });
      const ref: BudgetRef = { kind: 'budget', id: 'carry' };
      // The smallest bound: any activation after a run's first workflow task is past it.
      const handle = await t.start(ref, taskQueue, { maxHistoryEvents: MIN_HISTORY_EVENTS });
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.waitUntilQuiet();
      const signalled = (await handle.describe()).runId;
      await handle.signal(forceResetSignal, { reason: 'carried', requestId: 'c-1' });

      await expect
        .poll(async () => (await t.resetLog(ref)).map((r) => [r.trigger, r.reason]), {
          timeout: LIMITS.workflowStep,
        })
        .toEqual([['forced', 'carried']]);
      const status = await t.waitForStatus(ref, (s) => s.cycle === 1);
      expect(status).toMatchObject({ lastReset: { trigger: 'forced' }, nextResetAt: first.toISOString() });
      // The run that took the signal continued as new without resetting; a later run ran the reset it was handed.
      const history = await t.env.client.workflow.getHandle(handle.workflowId, signalled).fetchHistory();
      const types = (history.events ?? []).map((e) => e.eventType);
      const signalAt = types.indexOf(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
      expect(signalAt).toBeGreaterThan(0);
      expect(types.at(-1)).toBe(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
      expect(types.slice(signalAt)).not.toContain(EventType.EVENT_TYPE_MARKER_RECORDED);
      const [reset] = await t.resetLog(ref);
      expect(reset?.run_id).not.toBe(signalled);
    });
  });

  it('absorbs a burst of 1,000 forced resets without losing or deadlocking', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = new Date((await t.now()).getTime() + DAY);
      await insertBudget(t.db.pool, { id: 'burst', duration: '1d', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'burst-tag', spend: 1, budgetId: 'burst' });
      const ref: BudgetRef = { kind: 'budget', id: 'burst' };
      const handle = await t.start(ref, taskQueue, { maxHistoryEvents: 200 });
      await t.waitForStatus(ref, (s) => s.nextResetAt !== null);
      const signals = Array.from({ length: 990 }, (_, i) =>
        handle.signal(forceResetSignal, { reason: `burst ${i}`, requestId: `b-${i}` }),
      );
      const updates = Array.from({ length: 10 }, (_, i) =>
        handle.executeUpdate(resetNowUpdate, { args: [{ reason: `wait ${i}`, requestId: `u-${i}` }] }),
      );
      await Promise.all(signals);
      const answers = await Promise.all(updates);
      for (const [i, answer] of answers.entries())
        expect(answer).toMatchObject({ outcome: 'reset', requestId: `u-${i}` });
      // Coalesced: far fewer resets than requests, and every request reached one of them.
      await expect
        .poll(
          async () => {
            const log = await t.resetLog(ref);
            return log.reduce(
              (n, r) => n + 1 + Number(/\(\+(\d+) more requests\)/.exec(r.reason ?? '')?.[1] ?? 0),
              0,
            );
          },
          { timeout: LIMITS.workflowStep, interval: 200 },
        )
        .toBe(1_000);
      expect((await t.resetLog(ref)).length).toBeLessThan(50);
      // Still alive and on schedule.
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.lastReset?.trigger === 'schedule');
    });
  });

  it('moves a release 0.1 workflow to the entity workflow at its first activation', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = nextHour(await t.now());
      await insertBudget(t.db.pool, { id: 'legacy', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'legacy-tag', spend: 2, budgetId: 'legacy' });
      const ref: BudgetRef = { kind: 'budget', id: 'legacy' };
      const handle = await t.env.client.workflow.start(LEGACY_BUDGET_WORKFLOW_TYPE, {
        taskQueue,
        workflowId: budgetWorkflowId(ref),
        args: [{ kind: 'budget', id: 'legacy' }],
      });
      await expect
        .poll(async () => (await t.env.client.workflow.getHandle(handle.workflowId).describe()).type, {
          timeout: LIMITS.workflowStep,
        })
        .toBe('budgetEntityWorkflow');
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      await t.env.client.workflow.getHandle(handle.workflowId).terminate('test finished');
    });
  });

  // LiteLLM flushes spend every few seconds, and Prisma rewrites `updated_at` with every write. The supervisor reads
  // LiteLLM's rows only during a pass, and the budget workflow only when it resets or reloads (nothing wakes it
  // between), so whatever flushes every simulated minute could do, they do through the row's state at a pass:
  // spend and `updated_at` newer than at the pass before, the schedule columns as the workflow's last reset left
  // them. One flush right before every pass leaves the row in exactly that state; the minutes between add only
  // spend, which a reset zeroes whatever its amount. So one write per pass tests what 1,440 a day would, and the
  // span is bounded by the cost of its reset cycles, not of its flushes.
  it('keeps a daily budget bounded while the supervisor runs through a year of spend flushes', async () => {
    // The supervisor starts a workflow for every budget in its database: this one holds only the budget under test.
    const db = await createTestDatabase();
    onTestFinished(() => db.drop());
    const { worker, taskQueue } = await t.worker({ db: db.pool });
    await worker.runUntil(async () => {
      const first = new Date(Math.floor((await t.now()).getTime() / DAY) * DAY + DAY);
      // A key with its own budget: the very row that holds the schedule takes the flushes.
      const ref: BudgetRef = { kind: 'key', id: 'long-lived' };
      await insertKey(db.pool, { token: ref.id, duration: '1d', resetAt: first.toISOString() });
      const flush = () =>
        db.pool.query(
          `UPDATE "LiteLLM_VerificationToken" SET spend = spend + 0.25, updated_at = now() WHERE token = $1`,
          [ref.id],
        );

      // The supervisor as the worker starts it (`--sync-interval`, `--full-sweep-interval`).
      await flush();
      await ensureSupervisor(t.env.client, taskQueue, {
        syncIntervalMs: LONG_RUN.syncIntervalMs,
        fullSweepIntervalMs: LONG_RUN.fullSweepIntervalMs,
      });
      const supervisor = t.env.client.workflow.getHandle(supervisorWorkflowId(taskQueue));
      let seen = await passAfter(supervisor, 0);
      expect(seen.lastPass).toMatchObject({ changed: 1, started: 1, signalled: 0 });
      const firstRun = (await t.handle(ref).describe()).runId;

      const end = first.getTime() + LONG_RUN.days * DAY;
      while (Date.parse(seen.lastPass.at) < end) {
        await flush();
        // The next pass starts one interval after this one ended; the slack covers the pass itself, and is far
        // shorter than an interval, so exactly one pass runs after each flush.
        await t.sleepUntil(
          new Date(Date.parse(seen.lastPass.at) + LONG_RUN.syncIntervalMs),
          LONG_RUN.passSlackMs,
        );
        const pass = await passAfter(supervisor, seen.passes);
        expect(pass.passes).toBe(seen.passes + 1);
        expect(pass.lastPass).toMatchObject({ changed: 0, started: 0, signalled: 0, ended: 0 });
        seen = pass;
      }
      // No supervisor run ended in the span: a run's first pass follows its predecessor's last without a flush.
      expect(seen.passes).toBeLessThan(100);

      // Every boundary passed was reset once, on schedule.
      const now = (await t.now()).getTime();
      const status = await t.waitForStatus(
        ref,
        (s) => s.nextResetAt !== null && Date.parse(s.nextResetAt) > now,
      );
      const boundaries = status.cycle;
      expect(boundaries).toBeGreaterThanOrEqual(LONG_RUN.days);
      expect(status.nextResetAt).toBe(new Date(first.getTime() + boundaries * DAY).toISOString());
      const log = await t.resetLog(ref, db.pool);
      expect(log.map((r) => [r.period_end.toISOString(), r.trigger])).toEqual(
        Array.from({ length: boundaries }, (_, i) => [
          new Date(first.getTime() + i * DAY).toISOString(),
          'schedule',
        ]),
      );

      // Every run of the budget workflow, first to current: under the bound, and never signalled.
      const runs: Array<{ runId: string; events: number; signals: string[] }> = [];
      for (let runId: string | undefined = firstRun; runId !== undefined;) {
        const history = await t.env.client.workflow.getHandle(t.handle(ref).workflowId, runId).fetchHistory();
        const events: proto.temporal.api.history.v1.IHistoryEvent[] = history.events ?? [];
        runs.push({
          runId,
          events: events.length,
          signals: events
            .filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
            .map((e) => e.workflowExecutionSignaledEventAttributes?.signalName ?? '?'),
        });
        runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
      }
      expect(runs.length).toBeGreaterThan(1);
      for (const run of runs) {
        expect(run.signals, run.runId).toEqual([]);
        expect(run.events, run.runId).toBeLessThan(MAX_HISTORY_EVENTS + 25);
      }
    });
  });

  it('replays the committed histories of every release against the current workflow code', async () => {
    const histories = await committedHistories();
    expect(histories.map((h) => h.name)).toContain(`${RELEASE}/budget-scenario.json`);
    for (const { history } of histories) {
      // Throws DeterminismViolationError if the code no longer produces the recorded commands.
      await Worker.runReplayHistory({ workflowBundle: t.bundle }, history, RECORDED_WORKFLOW_ID);
    }
    expect(histories.length).toBeGreaterThanOrEqual(2);
  });

  it('computes no time-zone arithmetic in the entity workflow, so replay never depends on tzdata', async () => {
    const bundle = await bundleWorkflowCode({
      workflowsPath: fileURLToPath(new URL('../../workflows/budget.ts', import.meta.url)),
      logger: new DefaultLogger('WARN'),
    });
    // Boundaries are computed by activities (recorded in history); the workflow only compares instants.
    expect(bundle.code).not.toMatch(/luxon|IANAZone|Intl\.DateTimeFormat|timeZoneName/);
    expect(bundle.code).toContain('budgetEntityWorkflow');
  });
});
