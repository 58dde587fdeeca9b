import type { BudgetRef } from '../../src/budget-ref.js';
import type { ResetRequest } from '../../src/reset-types.js';

/** An on-time scheduled reset of `ref` at `boundary`, advancing to `next`; override any field. */
export function scheduledReset(
  ref: BudgetRef,
  boundary: string,
  next: string,
  overrides: Partial<ResetRequest> = {},
): ResetRequest {
  return {
    ...ref,
    expectedResetAt: boundary,
    periodEnd: boundary,
    periodStart: null,
    nextResetAt: next,
    trigger: 'schedule',
    lateByMs: 0,
    missedPeriods: 0,
    ...overrides,
  };
}
