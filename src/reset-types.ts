import type { BudgetKind } from './budget-ref.js';

/** Why a reset ran. */
export type ResetTrigger = 'schedule' | 'forced' | 'catch_up';

/**
 * One reset of one budget, fully decided by the workflow: every instant here comes from workflow time and the
 * schedule, never from the activity's clock, so a retry or a late worker resets exactly the same period.
 */
export interface ResetRequest {
  readonly kind: BudgetKind;
  readonly id: string;
  /** Fence: `budget_reset_at` must still hold this value (ISO instant), or the reset does nothing. */
  readonly expectedResetAt: string;
  /** The boundary being reset: the scheduled one, or the moment of a forced reset (ISO instant). */
  readonly periodEnd: string;
  /** The boundary that opened the period being closed, when known. */
  readonly periodStart: string | null;
  /** The new `budget_reset_at` (ISO instant). */
  readonly nextResetAt: string;
  readonly trigger: ResetTrigger;
  readonly lateByMs: number;
  readonly missedPeriods: number;
  readonly reason?: string;
  readonly requestedBy?: string;
  /** A forced reset's request id: its retry finds the committed reset by it (unique per budget in the audit). */
  readonly requestId?: string;
  /** A forced reset: how many queued requests it answers (the first is `requestId`); recorded in the audit. */
  readonly requestCount?: number;
  /**
   * The boundary a scheduled reset was due at. When set, lateness is measured again when the transaction
   * commits (the truthful figure after an outage), and a reset later than the grace becomes a catch-up.
   */
  readonly dueAt?: string;
  readonly workflowId?: string;
  readonly runId?: string;
}

/**
 * A reset as the budget workflow asks for it: what happened and when, in workflow time. The activity turns it
 * into a {@link ResetRequest} with the schedule module, so no time-zone arithmetic runs in workflow code (its
 * results would depend on the worker's time-zone data during replay); the decided period is recorded in history
 * as the activity's result.
 */
export interface PlannedResetRequest {
  readonly kind: BudgetKind;
  readonly id: string;
  /** Fence: `budget_reset_at` as the workflow knows it (ISO instant). */
  readonly expectedResetAt: string;
  /** Workflow time when the reset was decided (ISO instant). */
  readonly now: string;
  /** `budget_duration` as the workflow last read it (a later change reaches it as `scheduleChanged`). */
  readonly duration: string;
  readonly periodStart: string | null;
  /** A forced reset; absent for a scheduled one. */
  readonly force?: {
    readonly reason: string;
    readonly requestedBy?: string;
    readonly reanchor: boolean;
    /** The request this reset answers (the first of a batch); makes a retried attempt commit once. */
    readonly requestId?: string;
    /** How many queued requests the reset answers, the first one included (absent: one). */
    readonly requestCount?: number;
  };
  /** A boundary passed while paused: record the scheduled reset as a catch-up. */
  readonly catchUp?: boolean;
}

export type ResetResult =
  | {
      readonly outcome: 'reset';
      readonly resetId: string;
      readonly periodEnd: string;
      readonly nextResetAt: string;
      readonly trigger: ResetTrigger;
      /** How late the reset committed after its boundary (0 for a forced reset). */
      readonly lateByMs: number;
      readonly missedPeriods: number;
      /** Set when the worker ran this reset at its boundary and invalidated the caches right after it. */
      readonly cachesInvalidated?: boolean;
      /**
       * Set by release 0.3 workers only: the workflow checks this reset for late spend this long after it. Later
       * releases commit the check's due time with the reset and the worker's sweeper runs it; the workflow keeps
       * honouring the field for histories and carried checks of 0.3.
       */
      readonly lateSpendCheckInMs?: number;
      /**
       * Set when a forced reset was found already committed by an earlier attempt of the same request: how many of
       * the queued requests that attempt answered. A retried workflow task may hold more, which arrived after it.
       */
      readonly requestsAnswered?: number;
      readonly entityCount: number;
      readonly spendTotal: number;
      /** Entities changed per entity type. */
      readonly byType: Readonly<Record<string, number>>;
    }
  | {
      /** The fence failed: someone (a retry that committed, LiteLLM's own job) already moved the schedule. */
      readonly outcome: 'already_reset';
      readonly currentResetAt: string | null;
    }
  | {
      /** A key past `expires`: LiteLLM does not reset expired keys, and neither do we. */
      readonly outcome: 'expired';
    };

/** A budget's schedule row as the workflow needs it. */
export interface BudgetRow {
  readonly kind: BudgetKind;
  readonly id: string;
  /** `budget_duration` as stored; null means the budget has no schedule. */
  readonly duration: string | null;
  /** `budget_reset_at` as an ISO instant, or null when never scheduled. */
  readonly resetAt: string | null;
  readonly maxBudget: number | null;
  /** Keys only: `expires` as an ISO instant. */
  readonly expires: string | null;
}
