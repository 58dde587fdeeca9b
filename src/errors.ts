/**
 * Errors that retrying cannot fix. Activities throw them; the worker lists their names in
 * `nonRetryableErrorTypes` so Temporal fails the activity at once and the workflow can put the budget in state
 * `invalid` instead of retrying forever.
 */
export class BudgetNotFoundError extends Error {
  override readonly name = 'BudgetNotFoundError';
}

/** The data in LiteLLM's tables cannot be reset as it stands (for example a missing table or a bad value). */
export class InvalidBudgetDataError extends Error {
  override readonly name = 'InvalidBudgetDataError';
}

export const NON_RETRYABLE_ERROR_TYPES = [
  'BudgetNotFoundError',
  'InvalidBudgetDataError',
  'InvalidDurationError',
  'InvalidScheduleOptionsError',
] as const;
