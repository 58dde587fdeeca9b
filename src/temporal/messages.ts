import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { BudgetKind } from '../budget-ref.js';
import type { ResetTrigger } from '../reset-types.js';

/** Arguments of a forced reset, by signal (`forceReset`) or update (`resetNow`). */
export interface ForceResetArgs {
  /** Why: recorded in the audit. Required. */
  readonly reason: string;
  /** Who asked: recorded in the audit. */
  readonly requestedBy?: string;
  /** true: the new period starts now and lasts one full duration; false (default): keep the calendar boundary. */
  readonly reanchor?: boolean;
  /** Deduplication: a request id seen before is not applied again. */
  readonly requestId?: string;
}

export interface PauseArgs {
  readonly reason?: string;
}

export type BudgetState = 'active' | 'paused' | 'invalid' | 'removed';

export interface LastReset {
  readonly at: string;
  readonly periodEnd: string;
  readonly trigger: ResetTrigger;
  readonly lateByMs: number;
  readonly missedPeriods: number;
  readonly entityCount: number;
  readonly spendTotal: number;
  readonly resetId: string;
}

/** What `status` answers, and what every update returns. */
export interface BudgetStatus {
  readonly kind: BudgetKind;
  readonly id: string;
  readonly duration: string | null;
  readonly state: BudgetState;
  readonly nextResetAt: string | null;
  readonly lastReset: LastReset | null;
  /** Resets this workflow has run, across continue-as-new. */
  readonly cycle: number;
  readonly lastError: string | null;
  readonly paused: { readonly reason: string | null; readonly since: string } | null;
  readonly timeZone: string;
  readonly resetTime: string;
  readonly cacheInvalidationFailures: number;
}

/** The result of a forced reset. */
export type ForcedResetResult =
  | {
      readonly outcome: 'reset';
      readonly requestId: string;
      readonly resetId: string;
      readonly periodEnd: string;
      readonly nextResetAt: string;
      readonly entityCount: number;
      readonly spendTotal: number;
      readonly cachesInvalidated: boolean;
    }
  | {
      readonly outcome: 'already_reset' | 'duplicate' | 'failed';
      readonly requestId: string;
      readonly detail: string;
    };

export const forceResetSignal = defineSignal<[ForceResetArgs]>('forceReset');
export const resetNowUpdate = defineUpdate<ForcedResetResult, [ForceResetArgs]>('resetNow');
export const scheduleChangedSignal = defineSignal('scheduleChanged');
export const pauseUpdate = defineUpdate<BudgetStatus, [PauseArgs]>('pause');
export const resumeUpdate = defineUpdate<BudgetStatus, []>('resume');
export const statusQuery = defineQuery<BudgetStatus>('status');

/** How a budget workflow ended. */
export interface BudgetWorkflowResult {
  readonly kind: BudgetKind;
  readonly id: string;
  readonly reason: 'row_deleted' | 'duration_removed' | 'key_expired';
  readonly detail: string;
  readonly cycle: number;
}
