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
  readonly workflowId?: string;
  readonly runId?: string;
}

export type ResetResult =
  | {
      readonly outcome: 'reset';
      readonly resetId: string;
      readonly periodEnd: string;
      readonly nextResetAt: string;
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
