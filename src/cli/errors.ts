import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { displayBudgetRef, InvalidBudgetRefError, parseBudgetWorkflowId } from '../budget-ref.js';
import { ConfigError } from '../config.js';
import { TemporalUnreachableError } from '../temporal/connection.js';

/** Exit codes: 0 ok, 1 unexpected failure, 2 bad input, 3 unknown budget, 4 a service cannot be reached. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, unreachable: 4 } as const;

export class UnknownBudgetError extends Error {
  override readonly name = 'UnknownBudgetError';
}

/** A budget without a workflow because Temporal refused to start it; the message says why. */
export class RefusedBudgetError extends Error {
  override readonly name = 'RefusedBudgetError';
}

export class DatabaseUnreachableError extends Error {
  override readonly name = 'DatabaseUnreachableError';
}

/** `text` with line breaks and other control characters escaped, so an error is always one line. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** One line for a person, and the exit code, for any error a command can end with. */
export function explain(error: unknown): { message: string; code: number } {
  if (error instanceof InvalidBudgetRefError || error instanceof ConfigError) {
    return { message: error.message, code: EXIT.usage };
  }
  if (error instanceof UnknownBudgetError || error instanceof RefusedBudgetError) {
    return { message: error.message, code: EXIT.notFound };
  }
  if (error instanceof WorkflowNotFoundError) {
    const ref = parseBudgetWorkflowId(error.workflowId);
    return {
      message:
        `No budget workflow for ${ref ? displayBudgetRef(ref) : error.workflowId}: check the reference; if the row ` +
        'was just created or given a budget_duration, run `budgetctl sync`',
      code: EXIT.notFound,
    };
  }
  if (error instanceof TemporalUnreachableError || error instanceof DatabaseUnreachableError) {
    return { message: error.message, code: EXIT.unreachable };
  }
  if (error instanceof WorkflowUpdateFailedError) {
    const cause = error.cause instanceof Error ? error.cause.message : String(error.cause);
    return { message: `Rejected: ${cause}`, code: EXIT.usage };
  }
  const code = (error as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT') {
    return {
      message: `Cannot reach a service (${code}): check DATABASE_URL and REDIS_URL, and that the servers run`,
      code: EXIT.unreachable,
    };
  }
  return { message: error instanceof Error ? error.message : String(error), code: EXIT.failure };
}
