import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  patched,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributeUpdatePair } from '@temporalio/common';
import { describe, isNotFound } from './activity-errors.js';
import type { Activities } from '../activities/index.js';
import { budgetIdSearchValue, displayBudgetRef, type BudgetRef } from '../src/budget-ref.js';
import { NON_RETRYABLE_ERROR_TYPES } from '../src/errors.js';
import type { PlannedResetRequest } from '../src/reset-types.js';
import type { BudgetWorkflowInput } from '../src/temporal/budget-workflows.js';
import {
  validateBudgetWorkflowInput,
  validateForceResetArgs,
  validatePauseArgs,
} from '../src/temporal/message-validation.js';
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
} from '../src/temporal/messages.js';
import {
  BudgetIdKey,
  BudgetKindKey,
  BudgetStateKey,
  LastResetAtKey,
  NextResetAtKey,
  ResetCountKey,
} from '../src/temporal/search-attributes.js';

/**
 * A run continues as new once its history passes this many events (or sooner when the server suggests it), at
 * whatever it is waiting for. About 15 events a scheduled reset cycle (see the README): some 70 cycles a run, and a
 * replay after a cache eviction stays cheap.
 */
export const MAX_HISTORY_EVENTS = 1_000;
/**
 * A scheduled reset is armed in the worker between 4 minutes and 10 seconds before its boundary (spread by the
 * workflow id, so 10,000 budgets due at midnight arm at some 40 a second rather than all at once), and the worker
 * runs it at the boundary.
 */
const ARM_LEAD_MIN_MS = 10_000;
const ARM_LEAD_SPREAD_MS = 230_000;
/**
 * A reset the worker armed commits at its boundary without the workflow; the workflow wakes between 5 and 25
 * seconds later (spread by the workflow id) to collect the outcome. Waking at the boundary itself put 10,000
 * workflow tasks in the same seconds as the herd's commits, on the same cores.
 */
const COLLECT_AFTER_MIN_MS = 5_000;
const COLLECT_AFTER_SPREAD_MS = 20_000;
/** The change that moved the collecting wake after the boundary (releases before it woke at the boundary). */
export const COLLECT_AFTER_BOUNDARY_PATCH = 'collect-armed-reset-after-boundary';
/** Answered forced-reset request ids remembered for deduplication (carried across continue-as-new). */
const REMEMBERED_REQUESTS = 200;
/**
 * Release 0.5: a forced reset found already committed answers only the requests it answered when it committed;
 * requests that reached a retried workflow task after that commit get a reset of their own.
 */
const ANSWER_ONLY_COMMITTED_REQUESTS = 'forced-reset-answers-only-committed-requests';

// All database work runs as local activities in the worker that holds the workflow: no task-queue round trip at
// the boundary, and a reset costs a marker event instead of three events and a workflow task. It retries with
// backoff for as long as it takes (a Postgres outage delays resets, it never fails the workflow); errors that
// retrying cannot fix are non-retryable and reported as state `invalid`.
// Retries spaced further apart than `localRetryThreshold` wait on a durable timer instead of in the worker's
// memory, so an outage neither holds a workflow task open nor loses its place if the worker restarts.
const db = proxyLocalActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  localRetryThreshold: '2 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '5 minutes',
    nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
  },
});
// Cache invalidation happens after the commit; if Redis stays down we stop after a few minutes, count it and
// move on (LiteLLM's counters and in-memory copies expire within 60 s anyway).
const caches = proxyLocalActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  localRetryThreshold: '2 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    maximumAttempts: 8,
  },
});

/** Where the budget's schedule stands. */
type Schedule =
  | { readonly kind: 'loading' }
  | {
      readonly kind: 'scheduled';
      readonly duration: string;
      readonly nextResetAt: string;
      readonly timeZone: string;
      readonly resetTime: string;
    }
  /** The row cannot be scheduled as it stands; waits for `scheduleChanged`. */
  | { readonly kind: 'invalid'; readonly duration: string | null; readonly problem: string }
  | { readonly kind: 'removed'; readonly result: BudgetWorkflowResult };

/** Something that went wrong but does not stop the schedule; shown in status and the UI until it clears. */
type Problem =
  | { readonly kind: 'cache_invalidation'; readonly message: string }
  | { readonly kind: 'message_rejected'; readonly message: string };

/** A forced reset's answer before it is addressed to each request. */
type ResetAnswer = ForcedResetResult extends infer R
  ? R extends unknown
    ? Omit<R, 'requestId'>
    : never
  : never;

interface PendingForce {
  readonly requestId: string;
  readonly args: ForceResetArgs;
  /** An update's caller waits for the answer, so it is answered before continue-as-new; a signal is carried. */
  readonly source: 'signal' | 'update';
}

/** Everything a run hands to the next across continue-as-new. */
export interface CarriedState {
  readonly cycle: number;
  readonly lastReset: LastReset | null;
  readonly paused: { readonly reason: string | null; readonly since: string } | null;
  readonly periodStart: string | null;
  /** Answered requests (for deduplication) and the ids of signals still pending. */
  readonly requests: ReadonlyArray<readonly [string, ForcedResetResult | null]>;
  /** Forced resets asked for by signal and not yet run. */
  readonly pendingForces: ReadonlyArray<{ readonly requestId: string; readonly args: ForceResetArgs }>;
  readonly cacheInvalidationFailures: number;
  readonly catchUpPending: boolean;
  readonly problem: Problem | null;
  /** The last valid duration: a different one on reload takes effect at once. */
  readonly knownDuration: string | null;
  /**
   * Resets still to be checked for late spend, and when: release 0.3 checked them in the workflow; later releases
   * carry only what a 0.3 run left (absent in the carried state of releases before it).
   */
  readonly lateSpendChecks?: readonly LateSpendCheck[];
}

/** A committed reset to check for spend that reached LiteLLM's database after it (see `reconcileLateSpend`). */
interface LateSpendCheck {
  readonly resetId: string;
  readonly at: string;
}

export interface BudgetEntityArgs extends BudgetWorkflowInput {
  /** History events per run before continue-as-new; default {@link MAX_HISTORY_EVENTS}. */
  readonly maxHistoryEvents?: number;
  readonly carried?: CarriedState;
}

/**
 * One budget's reset schedule, for as long as the budget exists: sleep until the boundary (a durable timer that
 * wakes early for a message), reset in one fenced transaction, invalidate LiteLLM's caches, repeat.
 */
export async function budgetEntityWorkflow(args: BudgetEntityArgs): Promise<BudgetWorkflowResult> {
  // A run started by hand with a bad input fails at once, visibly, instead of running with no budget.
  const problem = validateBudgetWorkflowInput(args);
  if (problem)
    throw ApplicationFailure.nonRetryable(`Invalid workflow input: ${problem}`, 'InvalidWorkflowInput');
  return new BudgetEntity(args).run();
}

class BudgetEntity {
  private readonly ref: BudgetRef;
  private readonly maxHistoryEvents: number;
  private schedule: Schedule = { kind: 'loading' };
  private reloadRequested = true;
  private cycle: number;
  private lastReset: LastReset | null;
  private paused: CarriedState['paused'];
  private periodStart: string | null;
  private cacheInvalidationFailures: number;
  private catchUpPending: boolean;
  private problem: Problem | null;
  private knownDuration: string | null;
  private readonly requests: Map<string, ForcedResetResult | null>;
  private readonly pending: PendingForce[];
  private readonly lateSpendChecks: LateSpendCheck[];
  private published = new Map<string, unknown>();
  /** Request ids of the forced resets this run was handed by the previous one. */
  private readonly carriedIds: ReadonlySet<string>;
  /** The boundary whose reset is armed in the worker (not carried: arming again is harmless). */
  private armedFor: string | null = null;
  /** The worker said it will run the armed reset itself (false: too far ahead, clocks apart, arming failed). */
  private armedInWorker = false;
  private readonly armLeadMs: number;
  private readonly collectAfterMs: number;

  constructor(private readonly args: BudgetEntityArgs) {
    const carried = args.carried;
    this.ref = { kind: args.kind, id: args.id };
    this.maxHistoryEvents = args.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
    this.cycle = carried?.cycle ?? 0;
    this.lastReset = carried?.lastReset ?? null;
    this.paused = carried?.paused ?? null;
    this.periodStart = carried?.periodStart ?? null;
    this.cacheInvalidationFailures = carried?.cacheInvalidationFailures ?? 0;
    this.catchUpPending = carried?.catchUpPending ?? false;
    this.problem = carried?.problem ?? null;
    this.knownDuration = carried?.knownDuration ?? null;
    this.requests = new Map(carried?.requests ?? []);
    this.pending = (carried?.pendingForces ?? []).map((p) => ({ ...p, source: 'signal' as const }));
    this.lateSpendChecks = [...(carried?.lateSpendChecks ?? [])];
    this.carriedIds = new Set(this.pending.map((p) => p.requestId));
    this.armLeadMs = ARM_LEAD_MIN_MS + (spread(workflowInfo().workflowId) % ARM_LEAD_SPREAD_MS);
    this.collectAfterMs = collectDelayFor(workflowInfo().workflowId);

    setHandler(forceResetSignal, (force) => this.onForceResetSignal(force));
    setHandler(resetNowUpdate, (force) => this.onResetNow(force), {
      validator: (force) => this.validateForce(force),
    });
    setHandler(scheduleChangedSignal, () => {
      this.reloadRequested = true;
    });
    setHandler(pauseUpdate, async (pause) => this.onPause(pause?.reason), {
      validator: (pause) => {
        const problem = validatePauseArgs(pause);
        if (problem) throw new Error(problem);
      },
    });
    setHandler(resumeUpdate, () => this.onResume());
    setHandler(statusQuery, () => this.status());
  }

  // ---- the main loop ----------------------------------------------------------------------------------------
  async run(): Promise<BudgetWorkflowResult> {
    for (;;) {
      // A boundary passed while the workflow slept to collect the reset the worker committed: the collection
      // comes before anything else it is woken for (a forced reset, a reload), so that reset's bookkeeping stands.
      const due = this.dueInMs();
      if (due !== null && due <= 0 && this.collectDelayMs() > 0) {
        await this.runScheduled();
        continue;
      }
      if (this.reloadRequested) {
        await this.reload();
        continue;
      }
      if (this.schedule.kind === 'removed') return this.finish(this.schedule.result);
      if (this.continueAsNewDue() && !this.callerWaits() && !this.carriedForcesWait()) {
        await this.continueAsNewWhenIdle();
        continue;
      }
      if (this.pending.length > 0) {
        await this.runForced();
        continue;
      }
      const checkIn = this.lateSpendCheckInMs();
      if (checkIn !== null && checkIn <= 0) {
        await this.checkLateSpend();
        continue;
      }
      // The reset is the workflow's to run (or, when armed, to collect) this long from now.
      const runIn = due === null ? null : due + this.collectDelayMs();
      if (runIn !== null && runIn <= 0) {
        await this.runScheduled();
        continue;
      }
      if (due !== null && due <= this.armLeadMs && this.schedule.kind === 'scheduled') {
        if (this.armedFor !== this.schedule.nextResetAt) {
          await this.arm();
          continue;
        }
      }
      // The durable timer: wakes to arm the reset, at the boundary, to check a reset for late spend, or early for a
      // message or to continue as new.
      const pausedAtWait = this.paused;
      const woke = () =>
        this.reloadRequested ||
        this.pending.length > 0 ||
        this.paused !== pausedAtWait ||
        this.continueAsNewDue();
      const wakeIn = [
        due === null || runIn === null ? null : due > this.armLeadMs ? due - this.armLeadMs : runIn,
        checkIn,
      ].filter((ms): ms is number => ms !== null);
      if (wakeIn.length === 0) await condition(woke);
      else await condition(woke, Math.min(...wakeIn));
    }
  }

  /**
   * How long after the boundary the workflow wakes for a reset the worker armed and runs itself: 0 when the
   * workflow runs the reset (not armed here, or a run of a release that woke at the boundary, replayed).
   */
  private collectDelayMs(): number {
    if (this.schedule.kind !== 'scheduled' || this.armedFor !== this.schedule.nextResetAt) return 0;
    if (!this.armedInWorker) return 0;
    return patched(COLLECT_AFTER_BOUNDARY_PATCH) ? this.collectAfterMs : 0;
  }

  /** Milliseconds until the earliest late-spend check; null when none is waiting. */
  private lateSpendCheckInMs(): number | null {
    const next = this.lateSpendChecks[0];
    return next ? Date.parse(next.at) - Date.now() : null;
  }

  /** Milliseconds until the scheduled reset; null while nothing is due (no schedule, or paused). */
  private dueInMs(): number | null {
    if (this.schedule.kind !== 'scheduled' || this.paused) return null;
    return Date.parse(this.schedule.nextResetAt) - Date.now();
  }

  private continueAsNewDue(): boolean {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= this.maxHistoryEvents;
  }

  // ---- messages ---------------------------------------------------------------------------------------------
  private validateForce(force: ForceResetArgs): void {
    const problem = validateForceResetArgs(force);
    if (problem) throw new Error(problem);
    if (this.schedule.kind === 'invalid') {
      throw new Error(
        `${displayBudgetRef(this.ref, 60)} is invalid (${this.schedule.problem}); fix the row first`,
      );
    }
    if (this.schedule.kind === 'removed')
      throw new Error(`${displayBudgetRef(this.ref, 60)} no longer exists`);
  }

  private onForceResetSignal(force: ForceResetArgs): void {
    try {
      this.validateForce(force);
    } catch (error) {
      this.problem = {
        kind: 'message_rejected',
        message: `forceReset signal ignored: ${(error as Error).message}`,
      };
      this.publish();
      return;
    }
    this.enqueue(force, 'signal');
  }

  private async onResetNow(force: ForceResetArgs): Promise<ForcedResetResult> {
    const requestId = this.enqueue(force, 'update');
    await condition(() => this.requests.get(requestId) != null);
    return this.requests.get(requestId) as ForcedResetResult;
  }

  /** Queues a forced reset unless its request id was seen before; returns the id. */
  private enqueue(force: ForceResetArgs, source: PendingForce['source']): string {
    const requestId = force.requestId ?? uuid4();
    if (!this.requests.has(requestId)) {
      this.requests.set(requestId, null);
      this.pending.push({ requestId, args: force, source });
    }
    return requestId;
  }

  private async onPause(reason: string | undefined): Promise<BudgetStatus> {
    if (!this.paused) this.paused = { reason: reason?.trim() || null, since: new Date().toISOString() };
    // A reset armed in the worker must not run while paused; the update returns once it is taken back.
    await this.disarm();
    this.publish();
    return this.status();
  }

  private onResume(): BudgetStatus {
    if (this.paused) {
      this.paused = null;
      // A boundary that passed while paused is reset once, as a catch-up.
      const due = this.dueInMs();
      if (due !== null && due <= 0) this.catchUpPending = true;
    }
    this.publish();
    return this.status();
  }

  // ---- work -------------------------------------------------------------------------------------------------
  /** Re-reads the row and settles the schedule (first boundary, new duration) in an activity. */
  private async reload(): Promise<void> {
    this.reloadRequested = false;
    try {
      const state = await db.settleSchedule({
        ...this.ref,
        now: new Date().toISOString(),
        knownDuration: this.knownDuration,
      });
      if (state.outcome === 'ended') {
        this.end({ ...this.ref, reason: state.reason, detail: state.detail, cycle: this.cycle });
      } else if (state.outcome === 'invalid') {
        this.markInvalid(state.duration, state.problem);
      } else {
        this.schedule = { kind: 'scheduled', ...state, nextResetAt: state.resetAt };
        this.knownDuration = state.duration;
        if (Date.parse(state.resetAt) > Date.now()) this.catchUpPending = false;
      }
    } catch (error) {
      if (isNotFound(error)) this.end(this.removedResult('row_deleted'));
      else
        this.markInvalid(this.schedule.kind === 'scheduled' ? this.schedule.duration : null, describe(error));
    }
    this.publish();
  }

  /** Arms the coming scheduled reset in the worker; an optimisation only, so a failure is just logged. */
  private async arm(): Promise<void> {
    if (this.schedule.kind !== 'scheduled') return;
    const at = this.schedule.nextResetAt;
    this.armedFor = at;
    this.armedInWorker = false;
    try {
      this.armedInWorker = await db.armReset({ ...this.plannedReset({ catchUp: this.catchUpPending }), at });
    } catch (error) {
      log.warn('could not arm the reset; it runs when the workflow wakes', { error: describe(error) });
    }
  }

  /** Takes back an armed reset (the budget was paused before its boundary). */
  private async disarm(): Promise<void> {
    if (this.armedFor === null || this.schedule.kind !== 'scheduled') return;
    const request = this.plannedReset({});
    this.armedFor = null;
    this.armedInWorker = false;
    await db.disarmReset(request).catch(() => undefined);
  }

  private plannedReset(what: Pick<PlannedResetRequest, 'force' | 'catchUp'>): PlannedResetRequest {
    if (this.schedule.kind !== 'scheduled') throw new Error('no schedule to reset');
    return {
      ...this.ref,
      expectedResetAt: this.schedule.nextResetAt,
      now: new Date().toISOString(),
      duration: this.schedule.duration,
      periodStart: this.periodStart,
      ...what,
    };
  }

  private async runScheduled(): Promise<void> {
    await this.reset({ catchUp: this.catchUpPending });
  }

  /** Runs the queued forced resets as one: a reset that starts after a request satisfies it. */
  private async runForced(): Promise<void> {
    const first = this.pending[0] as PendingForce;
    const reanchor = first.args.reanchor ?? false;
    const batch = this.pending.filter((p) => (p.args.reanchor ?? false) === reanchor);
    this.pending.splice(0, this.pending.length, ...this.pending.filter((p) => !batch.includes(p)));
    let answer: ResetAnswer;
    let answered = batch;
    if (this.schedule.kind !== 'scheduled') {
      const why = this.schedule.kind === 'invalid' ? this.schedule.problem : 'the budget no longer exists';
      answer = { outcome: 'failed', detail: why };
    } else {
      const more = batch.length > 1 ? ` (+${batch.length - 1} more requests)` : '';
      const done = await this.reset({
        force: {
          reason: `${first.args.reason}${more}`,
          requestedBy: first.args.requestedBy,
          reanchor,
          requestId: first.requestId,
          requestCount: batch.length,
        },
      });
      answer = done.answer;
      // The reset was committed by an earlier attempt of this workflow task, before the later requests of this
      // batch arrived: they go back to the head of the queue for a reset that starts after them.
      const committedFor = done.requestsAnswered;
      if (
        committedFor !== undefined &&
        committedFor < batch.length &&
        patched(ANSWER_ONLY_COMMITTED_REQUESTS)
      ) {
        answered = batch.slice(0, committedFor);
        this.pending.unshift(...batch.slice(committedFor));
      }
    }
    for (const p of answered)
      this.requests.set(p.requestId, { ...answer, requestId: p.requestId } as ForcedResetResult);
    this.trimRequests();
  }

  /**
   * One reset and its cache invalidation; returns what happened, as a forced reset's caller sees it, and for a
   * forced reset found committed by an earlier attempt, how many queued requests that attempt answered.
   */
  private async reset(
    what: Pick<PlannedResetRequest, 'force' | 'catchUp'>,
  ): Promise<{ answer: ResetAnswer; requestsAnswered?: number }> {
    if (this.schedule.kind !== 'scheduled') return { answer: { outcome: 'failed', detail: 'no schedule' } };
    const expected = this.schedule.nextResetAt;
    let result;
    try {
      result = await db.resetBudget(this.plannedReset(what));
    } catch (error) {
      if (isNotFound(error)) this.end(this.removedResult('row_deleted'));
      else this.markInvalid(this.schedule.duration, describe(error));
      return { answer: { outcome: 'failed', detail: describe(error) } };
    }
    if (result.outcome === 'expired') {
      this.end(this.removedResult('key_expired'));
      return { answer: { outcome: 'failed', detail: 'the key is past its expires time' } };
    }
    if (result.outcome === 'already_reset') {
      // Someone else moved the schedule (our own committed retry, LiteLLM's job, an operator): adopt the row.
      if (result.currentResetAt === expected) {
        this.markInvalid(
          this.schedule.duration,
          `the period is already in the audit but budget_reset_at was not advanced; ` +
            'set budget_reset_at to the next boundary, then send scheduleChanged',
        );
      } else {
        this.reloadRequested = true;
      }
      return {
        answer: { outcome: 'already_reset', detail: `budget_reset_at is now ${result.currentResetAt}` },
      };
    }
    this.cycle += 1;
    this.periodStart = result.periodEnd;
    // Only a release 0.3 worker asks for this (replays of its histories too): later workers commit the check's
    // due time with the reset and run it in their late-spend sweeper.
    if (result.lateSpendCheckInMs !== undefined) {
      const at = new Date(Date.now() + result.lateSpendCheckInMs).toISOString();
      this.lateSpendChecks.push({ resetId: result.resetId, at });
    }
    if (!what.force) this.catchUpPending = false;
    this.schedule = { ...this.schedule, nextResetAt: result.nextResetAt };
    this.lastReset = {
      at: new Date().toISOString(),
      periodEnd: result.periodEnd,
      trigger: result.trigger,
      lateByMs: result.lateByMs,
      missedPeriods: result.missedPeriods,
      entityCount: result.entityCount,
      spendTotal: result.spendTotal,
      resetId: result.resetId,
    };
    let cachesInvalidated = result.cachesInvalidated === true;
    try {
      // An armed reset had its caches invalidated by the worker right after its commit.
      if (!cachesInvalidated) await caches.invalidateCaches({ resetId: result.resetId });
      cachesInvalidated = true;
      if (this.problem?.kind === 'cache_invalidation') this.problem = null;
    } catch (error) {
      this.cacheInvalidationFailures += 1;
      this.problem = {
        kind: 'cache_invalidation',
        message: `cache invalidation failed after retries: ${describe(error)}`,
      };
      log.error('cache invalidation failed; the reset stands', {
        budget: displayBudgetRef(this.ref, 60),
        error: this.problem.message,
      });
    }
    this.publish();
    return {
      answer: {
        outcome: 'reset',
        resetId: result.resetId,
        periodEnd: result.periodEnd,
        nextResetAt: result.nextResetAt,
        entityCount: result.entityCount,
        spendTotal: result.spendTotal,
        cachesInvalidated,
      },
      requestsAnswered: result.requestsAnswered,
    };
  }

  /**
   * Moves spend that reached LiteLLM's database after a reset, from requests that started before its boundary,
   * out of the new period (an activity; retried like the reset). A check that cannot run is logged and dropped:
   * the late spend then counts against the new period, as it would without the check.
   */
  private async checkLateSpend(): Promise<void> {
    const check = this.lateSpendChecks.shift() as LateSpendCheck;
    try {
      const result = await db.reconcileLateSpend({ resetId: check.resetId });
      if (result.corrections.length > 0) {
        log.info('late spend moved out of the new period', {
          budget: displayBudgetRef(this.ref, 60),
          resetId: check.resetId,
          corrections: result.corrections.length,
        });
      }
    } catch (error) {
      log.warn('late spend check failed; late spend counts against the new period', {
        budget: displayBudgetRef(this.ref, 60),
        resetId: check.resetId,
        error: describe(error),
      });
    }
  }

  // ---- state changes ----------------------------------------------------------------------------------------
  private markInvalid(duration: string | null, problem: string): void {
    this.schedule = { kind: 'invalid', duration, problem };
    log.warn('budget is invalid; waiting for scheduleChanged', {
      budget: displayBudgetRef(this.ref, 60),
      problem,
    });
  }

  private removedResult(reason: BudgetWorkflowResult['reason']): BudgetWorkflowResult {
    const detail =
      reason === 'key_expired'
        ? 'the key is past its expires time'
        : `the ${this.ref.kind} row no longer exists`;
    return { ...this.ref, reason, detail, cycle: this.cycle };
  }

  private end(result: BudgetWorkflowResult): void {
    this.schedule = { kind: 'removed', result };
    this.problem = null;
  }

  /** Ends the workflow: answers every waiting forced reset, lets handlers finish, returns why it ended. */
  private async finish(result: BudgetWorkflowResult): Promise<BudgetWorkflowResult> {
    for (const [requestId, answer] of this.requests) {
      if (answer === null)
        this.requests.set(requestId, { outcome: 'failed', requestId, detail: result.detail });
    }
    this.pending.length = 0;
    this.publish();
    await condition(allHandlersFinished);
    return result;
  }

  /**
   * Forced resets this run was handed and has not run yet: they run before it continues as new again, so a run
   * that starts near its bound still makes progress instead of handing them on forever.
   */
  private carriedForcesWait(): boolean {
    return this.pending.some((p) => this.carriedIds.has(p.requestId));
  }

  /** A `resetNow` caller waits for a reset of this run (it must be answered before the run ends). */
  private callerWaits(): boolean {
    return this.pending.some((p) => p.source === 'update');
  }

  /**
   * Continues as new carrying all state and the forced resets asked for by signal, once every handler has
   * finished. Returns (without continuing) if a `resetNow` arrives meanwhile: the loop answers it first.
   */
  private async continueAsNewWhenIdle(): Promise<void> {
    await condition(() => allHandlersFinished() || this.callerWaits());
    if (this.callerWaits()) return;
    const carried: CarriedState = {
      cycle: this.cycle,
      lastReset: this.lastReset,
      paused: this.paused,
      periodStart: this.periodStart,
      requests: [...this.requests.entries()],
      pendingForces: this.pending.map(({ requestId, args }) => ({ requestId, args })),
      cacheInvalidationFailures: this.cacheInvalidationFailures,
      catchUpPending: this.catchUpPending,
      problem: this.problem,
      knownDuration: this.knownDuration,
      lateSpendChecks: this.lateSpendChecks,
    };
    await continueAsNew<typeof budgetEntityWorkflow>({
      kind: this.ref.kind,
      id: this.ref.id,
      maxHistoryEvents: this.args.maxHistoryEvents,
      carried,
    });
  }

  /** Keeps the newest answered request ids; pending ones are never dropped. */
  private trimRequests(): void {
    let answered = [...this.requests.values()].filter((a) => a !== null).length;
    for (const [key, answer] of this.requests) {
      if (answered <= REMEMBERED_REQUESTS) break;
      if (answer === null) continue;
      this.requests.delete(key);
      answered -= 1;
    }
  }

  // ---- what operators see -----------------------------------------------------------------------------------
  private state(): BudgetState {
    if (this.schedule.kind === 'removed') return 'removed';
    if (this.schedule.kind === 'invalid') return 'invalid';
    return this.paused ? 'paused' : 'active';
  }

  private status(): BudgetStatus {
    const s = this.schedule;
    return {
      ...this.ref,
      duration: s.kind === 'scheduled' || s.kind === 'invalid' ? s.duration : null,
      state: this.state(),
      nextResetAt: s.kind === 'scheduled' ? s.nextResetAt : null,
      lastReset: this.lastReset,
      cycle: this.cycle,
      lastError: s.kind === 'invalid' ? s.problem : (this.problem?.message ?? null),
      paused: this.paused,
      timeZone: s.kind === 'scheduled' ? s.timeZone : 'UTC',
      resetTime: s.kind === 'scheduled' ? s.resetTime : '00:00',
      cacheInvalidationFailures: this.cacheInvalidationFailures,
    };
  }

  /**
   * Search attributes, memo and the UI's current details. Only attributes whose value changed are upserted, so
   * a quiet cycle adds one upsert event, not a dozen.
   */
  private publish(): void {
    const status = this.status();
    const attributes: SearchAttributeUpdatePair[] = [
      { key: BudgetKindKey, value: this.ref.kind },
      { key: BudgetIdKey, value: budgetIdSearchValue(this.ref.id) },
      { key: BudgetStateKey, value: status.state },
      { key: ResetCountKey, value: this.cycle },
      { key: NextResetAtKey, value: status.nextResetAt ? new Date(status.nextResetAt) : null },
      { key: LastResetAtKey, value: this.lastReset ? new Date(this.lastReset.at) : null },
    ];
    const changed = attributes.filter((a) => !sameValue(this.published.get(a.key.name), a.value));
    if (changed.length > 0) {
      upsertSearchAttributes(changed);
      for (const a of changed) this.published.set(a.key.name, a.value);
    }
    const memo = {
      duration: status.duration ?? 'none',
      timeZone: status.timeZone,
      resetTime: status.resetTime,
    };
    if (!sameValue(this.published.get('memo'), JSON.stringify(memo))) {
      upsertMemo(memo);
      this.published.set('memo', JSON.stringify(memo));
    }
    const lines = [
      `**${displayBudgetRef(this.ref, 60)}** — ${status.state}${this.paused?.reason ? ` (${this.paused.reason})` : ''}`,
      `Duration: ${status.duration ?? 'none'} · zone ${status.timeZone} at ${status.resetTime}`,
      `Next reset: ${status.nextResetAt ?? 'not scheduled'}`,
      this.lastReset
        ? `Last reset: ${this.lastReset.at} (${this.lastReset.trigger}, ${this.lastReset.entityCount} entities, ` +
          `spend ${this.lastReset.spendTotal}, late ${this.lastReset.lateByMs} ms, missed ${this.lastReset.missedPeriods})`
        : 'Last reset: none yet',
      `Resets: ${this.cycle}`,
    ];
    if (status.lastError) lines.push(`Last error: ${status.lastError}`);
    setCurrentDetails(lines.join('\n'));
  }
}

/** How long after its boundary a workflow collects the reset the worker armed for it (a pure function of its id). */
export function collectDelayFor(workflowId: string): number {
  return COLLECT_AFTER_MIN_MS + (spread(`collect/${workflowId}`) % COLLECT_AFTER_SPREAD_MS);
}

/** A stable spread of a workflow id over non-negative integers (FNV-1a): the same on every replay. */
function spread(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return a === b;
}
