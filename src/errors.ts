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

/**
 * SQLSTATE classes that retrying cannot fix: 22 (data exception: a value PostgreSQL cannot store or compare, such
 * as a NUL character) and 54 (program limit exceeded, such as an index entry over the btree maximum). Everything
 * else (connection loss, lock timeouts, serialization failures) stays retryable.
 */
const PERMANENT_SQLSTATE_CLASSES = ['22', '54'];

/**
 * Turns a PostgreSQL error that no retry can fix into an {@link InvalidBudgetDataError} naming `subject`, so the
 * activity fails at once and the workflow reports state `invalid` instead of retrying forever; returns any other
 * error unchanged.
 */
export function classifyDatabaseError(error: unknown, subject: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return error;
  if (!PERMANENT_SQLSTATE_CLASSES.includes(code.slice(0, 2))) return error;
  return new InvalidBudgetDataError(
    `PostgreSQL cannot process ${subject} (SQLSTATE ${code}: ${(error as Error).message}); ` +
      'fix the row, then send scheduleChanged',
    { cause: error },
  );
}
