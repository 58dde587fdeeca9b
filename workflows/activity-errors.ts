import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** The activity failed because the budget's row no longer exists. */
export function isNotFound(error: unknown): boolean {
  return (
    error instanceof ActivityFailure &&
    error.cause instanceof ApplicationFailure &&
    error.cause.type === 'BudgetNotFoundError'
  );
}

/** The innermost message along the cause chain, with the error type when there is one. */
export function describe(error: unknown): string {
  let current: unknown = error;
  while (current instanceof ActivityFailure && current.cause) current = current.cause;
  if (current instanceof ApplicationFailure) return `${current.type ?? 'Error'}: ${current.message}`;
  return current instanceof Error ? current.message : String(current);
}
