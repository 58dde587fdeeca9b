import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  makeContinueAsNewFunc,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { describe, isNotFound } from '../activity-errors.js';
import type { Activities } from '../../activities/index.js';
import { formatBudgetRef, type BudgetKind } from '../../src/budget-ref.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../../src/errors.js';
import type { BudgetRow, ResetRequest, ResetTrigger } from '../../src/reset-types.js';
import {
  addPeriod,
  catchUp,
  DEFAULT_SCHEDULE,
  nextBoundary,
  parseDuration,
  type BudgetDuration,
  type ScheduleOptions,
} from '../../src/schedule.js';
import type { BudgetWorkflowInput } from '../../src/temporal/budget-workflows.js';
import {
  forceResetSignal,
  pauseUpdate,
  resetNowUpdate,
  resumeUpdate,
  scheduleChangedSignal,
  statusQuery,
  type BudgetState,
  type BudgetStatus,
  type BudgetWorkflowResult,
  type ForceResetArgs,
  type ForcedResetResult,
  type LastReset,
} from '../../src/temporal/messages.js';
import type { budgetEntityWorkflow } from '../budget.js';
import {
  BudgetIdKey,
  BudgetKindKey,
  BudgetStateKey,
  LastResetAtKey,
  NextResetAtKey,
  ResetCountKey,
} from '../../src/temporal/search-attributes.js';

/** The patch that moves release 0.1's runs to the entity workflow (deprecate once none remain, then delete). */
export const MIGRATE_TO_ENTITY_WORKFLOW = 'migrate-to-budget-entity-workflow';
/** Continue-as-new after this many resets (or sooner when the server suggests it), keeping history small. */
export const CYCLES_PER_RUN = 100;
/** A scheduled reset that runs later than this after its boundary is recorded as a catch-up. */
export const LATE_GRACE_MS = 60_000;
/** Forced-reset request ids remembered for deduplication (carried across continue-as-new). */
const REMEMBERED_REQUESTS = 200;

// Database work retries with backoff for as long as it takes: a Postgres or Redis outage delays resets, it never
// fails the workflow. Errors that retrying cannot fix are non-retryable and reported as state `invalid`.
const db = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '5 minutes',
    nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
  },
});
// Cache invalidation happens after the commit; if Redis stays down we stop after a few minutes, count it and
// move on (LiteLLM's counters and in-memory copies expire within 60 s anyway).
const caches = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 8,
  },
});

/** Everything a run hands to the next across continue-as-new. */
export interface CarriedState {
  readonly cycle: number;
  readonly lastReset: LastReset | null;
  readonly lastError: string | null;
  readonly paused: { readonly reason: string | null; readonly since: string } | null;
  readonly periodStart: string | null;
  readonly requests: ReadonlyArray<readonly [string, ForcedResetResult | null]>;
  readonly cacheInvalidationFailures: number;
  readonly catchUpPending: boolean;
}

export interface BudgetWorkflowArgs extends BudgetWorkflowInput {
  /** Resets per run before continue-as-new; default {@link CYCLES_PER_RUN}. */
  readonly cyclesPerRun?: number;
  readonly carried?: CarriedState;
}

interface PendingForce {
  readonly requestId: string;
  readonly args: ForceResetArgs;
}

/**
 * Release 0.1's per-budget workflow, kept only so its running histories replay and move to
 * `budgetEntityWorkflow` (see the README's "Rolling out new workflow code"). Do not change what it does.
 *
 * One budget's reset schedule, for as long as the budget exists: sleep until the boundary (a durable timer that
 * wakes early for a message), reset in one fenced transaction, invalidate LiteLLM's caches, repeat.
 */
export async function budgetWorkflow(input: BudgetWorkflowArgs): Promise<BudgetWorkflowResult> {
  const kind: BudgetKind = input.kind;
  const id = input.id;
  const ref = { kind, id };
  const carried = input.carried;

  let cycle = carried?.cycle ?? 0;
  let runCycles = 0;
  let lastReset = carried?.lastReset ?? null;
  let lastError = carried?.lastError ?? null;
  let paused = carried?.paused ?? null;
  let periodStart = carried?.periodStart ?? null;
  let cacheInvalidationFailures = carried?.cacheInvalidationFailures ?? 0;
  let catchUpPending = carried?.catchUpPending ?? false;
  const requests = new Map<string, ForcedResetResult | null>(carried?.requests ?? []);

  let invalid = false;
  let removed = false;
  let durationText: string | null = null;
  let duration: BudgetDuration | null = null;
  let schedule: ScheduleOptions = DEFAULT_SCHEDULE;
  let scheduled: string | null = null;
  let reloadRequested = true;
  const pending: PendingForce[] = [];

  const state = (): BudgetState => (removed ? 'removed' : invalid ? 'invalid' : paused ? 'paused' : 'active');
  const status = (): BudgetStatus => ({
    kind,
    id,
    duration: durationText,
    state: state(),
    nextResetAt: scheduled,
    lastReset,
    cycle,
    lastError,
    paused,
    timeZone: schedule.timeZone,
    resetTime: schedule.resetTime,
    cacheInvalidationFailures,
  });

  const publish = (): void => {
    const attributes: SearchAttributeUpdatePair[] = [
      { key: BudgetKindKey, value: kind },
      { key: BudgetIdKey, value: id },
      { key: BudgetStateKey, value: state() },
      { key: ResetCountKey, value: cycle },
      { key: NextResetAtKey, value: scheduled ? new Date(scheduled) : null },
      { key: LastResetAtKey, value: lastReset ? new Date(lastReset.at) : null },
    ];
    upsertSearchAttributes(attributes);
    upsertMemo({
      duration: durationText ?? 'none',
      timeZone: schedule.timeZone,
      resetTime: schedule.resetTime,
    });
    const lines = [
      `**${formatBudgetRef(ref)}** — ${state()}${paused?.reason ? ` (${paused.reason})` : ''}`,
      `Duration: ${durationText ?? 'none'} · zone ${schedule.timeZone} at ${schedule.resetTime}`,
      `Next reset: ${scheduled ?? 'not scheduled'}`,
      lastReset
        ? `Last reset: ${lastReset.at} (${lastReset.trigger}, ${lastReset.entityCount} entities, ` +
          `spend ${lastReset.spendTotal}, late ${lastReset.lateByMs} ms, missed ${lastReset.missedPeriods})`
        : 'Last reset: none yet',
      `Resets: ${cycle}`,
    ];
    if (lastError) lines.push(`Last error: ${lastError}`);
    setCurrentDetails(lines.join('\n'));
  };

  // ---- messages -------------------------------------------------------------------------------------------
  const validateForce = (args: ForceResetArgs): void => {
    if (typeof args?.reason !== 'string' || args.reason.trim() === '') {
      throw new Error('A forced reset needs a reason (recorded in the audit)');
    }
    if (args.reanchor !== undefined && typeof args.reanchor !== 'boolean')
      throw new Error('reanchor must be a boolean');
    if (invalid) throw new Error(`${formatBudgetRef(ref)} is invalid (${lastError}); fix the row first`);
  };
  const enqueue = (args: ForceResetArgs): string => {
    const requestId = args.requestId ?? uuid4();
    if (!requests.has(requestId)) {
      requests.set(requestId, null);
      pending.push({ requestId, args });
    }
    return requestId;
  };

  setHandler(forceResetSignal, (args) => {
    try {
      validateForce(args);
    } catch (error) {
      lastError = `forceReset signal ignored: ${(error as Error).message}`;
      publish();
      return;
    }
    enqueue(args);
  });
  setHandler(
    resetNowUpdate,
    async (args) => {
      const requestId = enqueue(args);
      await condition(() => requests.get(requestId) != null);
      return requests.get(requestId) as ForcedResetResult;
    },
    { validator: validateForce },
  );
  setHandler(scheduleChangedSignal, () => {
    reloadRequested = true;
  });
  setHandler(
    pauseUpdate,
    (args) => {
      if (!paused) paused = { reason: args?.reason?.trim() || null, since: new Date().toISOString() };
      publish();
      return status();
    },
    {
      validator: (args) => {
        if (args?.reason !== undefined && typeof args.reason !== 'string')
          throw new Error('reason must be text');
      },
    },
  );
  setHandler(resumeUpdate, () => {
    if (paused) {
      paused = null;
      // A boundary that passed while paused is reset once, as a catch-up.
      if (scheduled && Date.parse(scheduled) <= Date.now()) catchUpPending = true;
    }
    publish();
    return status();
  });
  setHandler(statusQuery, status);

  // ---- helpers --------------------------------------------------------------------------------------------
  const ended = (reason: BudgetWorkflowResult['reason'], detail: string): BudgetWorkflowResult => {
    durationText = reason === 'duration_removed' ? null : durationText;
    scheduled = null;
    invalid = false;
    removed = true;
    lastError = null;
    const attributes: SearchAttributeUpdatePair[] = [
      { key: BudgetStateKey, value: 'removed' },
      { key: NextResetAtKey, value: null },
    ];
    upsertSearchAttributes(attributes);
    setCurrentDetails(`**${formatBudgetRef(ref)}** — removed: ${detail}`);
    return { kind, id, reason, detail, cycle };
  };
  const markInvalid = (message: string): void => {
    invalid = true;
    lastError = message;
    log.warn('budget is invalid; waiting for scheduleChanged', {
      budget: formatBudgetRef(ref),
      error: message,
    });
    publish();
  };

  /** Ends the run: answers every waiting forced reset, lets handlers finish, returns why it ended. */
  const finish = async (result: BudgetWorkflowResult): Promise<BudgetWorkflowResult> => {
    for (const [requestId, answer] of requests) {
      if (answer === null) requests.set(requestId, { outcome: 'failed', requestId, detail: result.detail });
    }
    pending.length = 0;
    await condition(allHandlersFinished);
    return result;
  };

  /** Re-reads the row. Returns a result when the workflow should end. */
  const reload = async (): Promise<BudgetWorkflowResult | undefined> => {
    reloadRequested = false;
    let row: BudgetRow | null;
    try {
      const loaded = await db.loadBudget(ref);
      row = loaded.row;
      schedule = loaded.schedule;
    } catch (error) {
      markInvalid(describe(error));
      return undefined;
    }
    if (!row) return ended('row_deleted', `the ${kind} row no longer exists`);
    if (row.duration === null)
      return ended('duration_removed', `the ${kind} has no budget_duration any more`);
    let parsed: BudgetDuration;
    try {
      parsed = parseDuration(row.duration);
    } catch (error) {
      durationText = row.duration;
      markInvalid(describe(error));
      return undefined;
    }
    // Only a change from a valid duration moves the boundary; after an invalid one the stored boundary stands.
    const durationChanged = duration !== null && duration.text !== row.duration;
    const now = new Date(Date.now());
    let nextScheduled: string | null;
    try {
      if (row.resetAt === null) {
        // Never scheduled: give it its first boundary and zero nothing.
        const first = nextBoundary(parsed, now, schedule).toISOString();
        nextScheduled = await db.setResetAt({ ...ref, expected: null, next: first });
      } else if (durationChanged) {
        // A new duration takes effect at once: the next boundary comes from the new duration.
        const next = nextBoundary(parsed, now, schedule).toISOString();
        nextScheduled =
          next === row.resetAt ? next : await db.setResetAt({ ...ref, expected: row.resetAt, next });
      } else {
        nextScheduled = row.resetAt;
      }
    } catch (error) {
      if (isNotFound(error)) return ended('row_deleted', `the ${kind} row no longer exists`);
      markInvalid(describe(error));
      return undefined;
    }
    // State changes together, after the last await, so a status query never sees half of a reload.
    durationText = row.duration;
    duration = parsed;
    scheduled = nextScheduled;
    invalid = false;
    if (lastError && !lastError.startsWith('cache invalidation')) lastError = null;
    if (Date.parse(scheduled ?? '') > Date.now()) catchUpPending = false;
    publish();
    return undefined;
  };

  /** Runs one reset and its cache invalidation; returns what happened. */
  const runReset = async (
    trigger: ResetTrigger,
    periodEnd: string,
    nextResetAt: string,
    extra: { lateByMs: number; missedPeriods: number; reason?: string; requestedBy?: string },
  ): Promise<ForcedResetResult | { outcome: 'ended'; result: BudgetWorkflowResult }> => {
    const expected = scheduled as string;
    const request: ResetRequest = {
      ...ref,
      expectedResetAt: expected,
      periodEnd,
      periodStart,
      nextResetAt,
      trigger,
      ...extra,
    };
    let result;
    try {
      result = await db.resetBudget(request);
    } catch (error) {
      if (isNotFound(error))
        return { outcome: 'ended', result: ended('row_deleted', `the ${kind} row no longer exists`) };
      markInvalid(describe(error));
      return { outcome: 'failed', requestId: '', detail: describe(error) };
    }
    if (result.outcome === 'expired') {
      return { outcome: 'ended', result: ended('key_expired', 'the key is past its expires time') };
    }
    if (result.outcome === 'already_reset') {
      // Someone else moved the schedule (our own committed retry, LiteLLM's job, an operator): adopt the row.
      if (result.currentResetAt === expected) {
        markInvalid(
          `period ending ${periodEnd} is already in the audit but budget_reset_at was not advanced; ` +
            'set budget_reset_at to the next boundary, then send scheduleChanged',
        );
      } else {
        reloadRequested = true;
      }
      return {
        outcome: 'already_reset',
        requestId: '',
        detail: `budget_reset_at is now ${result.currentResetAt}`,
      };
    }
    cycle += 1;
    runCycles += 1;
    periodStart = result.periodEnd;
    scheduled = result.nextResetAt;
    lastReset = {
      at: new Date(Date.now()).toISOString(),
      periodEnd: result.periodEnd,
      trigger,
      lateByMs: extra.lateByMs,
      missedPeriods: extra.missedPeriods,
      entityCount: result.entityCount,
      spendTotal: result.spendTotal,
      resetId: result.resetId,
    };
    let cachesInvalidated = false;
    try {
      await caches.invalidateCaches({ resetId: result.resetId });
      cachesInvalidated = true;
      if (lastError?.startsWith('cache invalidation')) lastError = null;
    } catch (error) {
      cacheInvalidationFailures += 1;
      lastError = `cache invalidation failed after retries: ${describe(error)}`;
      log.error('cache invalidation failed; the reset stands', {
        budget: formatBudgetRef(ref),
        error: lastError,
      });
    }
    publish();
    return {
      outcome: 'reset',
      requestId: '',
      resetId: result.resetId,
      periodEnd: result.periodEnd,
      nextResetAt: result.nextResetAt,
      entityCount: result.entityCount,
      spendTotal: result.spendTotal,
      cachesInvalidated,
    };
  };

  // ---- main loop ------------------------------------------------------------------------------------------
  for (;;) {
    // Release 0.2: at its first activation on the new code (never while replaying the old history), a run of
    // this release-0.1 workflow hands its state to `budgetEntityWorkflow` under the same workflow id.
    if (pending.length === 0 && !reloadRequested && patched(MIGRATE_TO_ENTITY_WORKFLOW)) {
      await condition(allHandlersFinished);
      return makeContinueAsNewFunc<typeof budgetEntityWorkflow>({ workflowType: 'budgetEntityWorkflow' })({
        kind,
        id,
        carried: {
          cycle,
          lastReset,
          paused,
          periodStart,
          requests: [...requests.entries()].filter(([, answer]) => answer !== null),
          pendingForces: [],
          cacheInvalidationFailures,
          catchUpPending,
          problem: null,
          knownDuration: (duration as BudgetDuration | null)?.text ?? null,
        },
      });
    }
    if (reloadRequested) {
      const end = await reload();
      if (end) return finish(end);
      continue;
    }
    if (invalid || !duration || !scheduled) {
      await condition(() => reloadRequested);
      continue;
    }

    const force = pending.shift();
    if (force) {
      const now = new Date(Date.now());
      const next = force.args.reanchor ? addPeriod(duration, now, schedule).toISOString() : scheduled;
      const outcome = await runReset('forced', now.toISOString(), next, {
        lateByMs: 0,
        missedPeriods: 0,
        reason: force.args.reason,
        requestedBy: force.args.requestedBy,
      });
      if (outcome.outcome === 'ended') return finish(outcome.result);
      requests.set(force.requestId, { ...outcome, requestId: force.requestId });
      trimRequests(requests);
      continue;
    }

    const due = Date.parse(scheduled);
    if (paused) {
      await condition(() => reloadRequested || pending.length > 0 || !paused);
      continue;
    }
    if (due > Date.now()) {
      // The durable timer: wakes at the boundary, or early for a forced reset, a pause or a schedule change.
      await condition(() => reloadRequested || pending.length > 0 || !!paused, due - Date.now());
      continue;
    }

    // The boundary has passed: reset the latest boundary due, once, and keep the calendar.
    const now = new Date(Date.now());
    const { latest, missedPeriods, next } = catchUp(duration, new Date(scheduled), now, schedule);
    const lateByMs = Math.max(0, now.getTime() - due);
    const trigger: ResetTrigger =
      catchUpPending || missedPeriods > 0 || lateByMs > LATE_GRACE_MS ? 'catch_up' : 'schedule';
    catchUpPending = false;
    const outcome = await runReset(trigger, latest.toISOString(), next.toISOString(), {
      lateByMs,
      missedPeriods,
    });
    if (outcome.outcome === 'ended') return finish(outcome.result);

    if (runCycles >= (input.cyclesPerRun ?? CYCLES_PER_RUN) || workflowInfo().continueAsNewSuggested) {
      await condition(() => allHandlersFinished() && pending.length === 0);
      const carriedState: CarriedState = {
        cycle,
        lastReset,
        lastError,
        paused,
        periodStart,
        requests: [...requests.entries()],
        cacheInvalidationFailures,
        catchUpPending,
      };
      return continueAsNew<typeof budgetWorkflow>({
        kind,
        id,
        cyclesPerRun: input.cyclesPerRun,
        carried: carriedState,
      });
    }
  }
}

function trimRequests(requests: Map<string, unknown>): void {
  for (const key of requests.keys()) {
    if (requests.size <= REMEMBERED_REQUESTS) break;
    requests.delete(key);
  }
}
