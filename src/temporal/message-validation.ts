import type { BudgetWorkflowInput } from './budget-workflows.js';
import { BUDGET_KINDS } from '../budget-ref.js';
import type { ForceResetArgs, PauseArgs } from './messages.js';
import { describeUndecodable, isUndecodable } from './payload-converter.js';

// Pure checks of what a person or a script sends a budget workflow, so a bad message is rejected where it arrives
// (an update's validator, a signal handler) with a one-line reason, and never reaches PostgreSQL or the state the
// workflow carries across continue-as-new. Deterministic: safe in workflow code.

/** Longest `reason` accepted (it is stored in the audit and carried in workflow state). */
export const MAX_REASON_CHARS = 1_000;
/** Longest `requestedBy` and `requestId` accepted (request ids are remembered for deduplication). */
export const MAX_NAME_CHARS = 200;

/** Why `value` cannot be stored as text, or null. NUL is the one character PostgreSQL text cannot hold. */
function textProblem(field: string, value: unknown, max: number, required: boolean): string | null {
  if (value === undefined || value === null) return required ? `${field} is required` : null;
  if (typeof value !== 'string') return `${field} must be text`;
  if (required && value.trim() === '') return `${field} must not be empty`;
  if (value.length > max) return `${field} is ${value.length} characters long; the limit is ${max}`;
  if (value.includes('\u0000')) return `${field} contains a NUL character (U+0000), which cannot be stored`;
  return null;
}

function argsProblem(args: unknown): string | null {
  if (isUndecodable(args)) return `rejected: ${describeUndecodable(args)}`;
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return 'expected an object argument';
  return null;
}

/** The problem with a forced reset's arguments (`forceReset` signal, `resetNow` update), or null when valid. */
export function validateForceResetArgs(args: unknown): string | null {
  const shape = argsProblem(args);
  if (shape) return shape;
  const a = args as Partial<Record<keyof ForceResetArgs, unknown>>;
  if (a.reason === undefined || a.reason === null)
    return 'A forced reset needs a reason (recorded in the audit)';
  return (
    textProblem('reason', a.reason, MAX_REASON_CHARS, true) ??
    textProblem('requestedBy', a.requestedBy, MAX_NAME_CHARS, false) ??
    textProblem('requestId', a.requestId, MAX_NAME_CHARS, false) ??
    (a.reanchor !== undefined && typeof a.reanchor !== 'boolean' ? 'reanchor must be true or false' : null)
  );
}

/** The problem with a `pause` update's arguments, or null when valid (the argument itself is optional). */
export function validatePauseArgs(args: unknown): string | null {
  if (args === undefined || args === null) return null;
  const shape = argsProblem(args);
  if (shape) return shape;
  return textProblem(
    'reason',
    (args as Partial<Record<keyof PauseArgs, unknown>>).reason,
    MAX_REASON_CHARS,
    false,
  );
}

/**
 * The smallest history bound a run accepts: a run's first workflow task (start, settle, search attributes, timer)
 * takes about 8 events, so a smaller bound would continue as new at every activation.
 */
export const MIN_HISTORY_EVENTS = 10;
/** Temporal terminates a run at 51,200 events; a bound must leave room below that. */
const MAX_HISTORY_EVENTS_LIMIT = 50_000;

/** The problem with a budget workflow's start input (a workflow started by hand with a bad argument), or null. */
export function validateBudgetWorkflowInput(input: unknown): string | null {
  const shape = argsProblem(input);
  if (shape) return shape;
  const { kind, id } = input as Partial<Record<keyof BudgetWorkflowInput, unknown>>;
  if (typeof kind !== 'string' || !(BUDGET_KINDS as readonly string[]).includes(kind)) {
    return `kind must be one of ${BUDGET_KINDS.join(', ')}`;
  }
  if (typeof id !== 'string' || id === '') return 'id must be non-empty text';
  if (id.includes('\u0000')) return 'id contains a NUL character (U+0000), which no LiteLLM row can hold';
  const { maxHistoryEvents } = input as { maxHistoryEvents?: unknown };
  if (
    maxHistoryEvents !== undefined &&
    !(
      Number.isInteger(maxHistoryEvents) &&
      (maxHistoryEvents as number) >= MIN_HISTORY_EVENTS &&
      (maxHistoryEvents as number) <= MAX_HISTORY_EVENTS_LIMIT
    )
  ) {
    return `maxHistoryEvents must be a whole number from ${MIN_HISTORY_EVENTS} to ${MAX_HISTORY_EVENTS_LIMIT}`;
  }
  return null;
}
