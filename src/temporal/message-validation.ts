import type { ForceResetArgs } from './messages.js';

/** Longest reason or requester kept: they are recorded in the audit and carried across continue-as-new. */
export const MAX_REASON_LENGTH = 1_000;
const MAX_REQUEST_ID_LENGTH = 200;

/**
 * What is wrong with a forced reset's arguments, or null when they are fine. Pure, so the workflow's validators
 * and signal handlers use it; anything it accepts can be stored by PostgreSQL (no NUL) and stays small.
 */
export function validateForceResetArgs(args: ForceResetArgs): string | null {
  if (typeof args !== 'object' || args === null) return 'expected an object like {"reason": "..."}';
  if (typeof args.reason !== 'string' || args.reason.trim() === '') {
    return 'A forced reset needs a reason (recorded in the audit)';
  }
  const text = [
    ['reason', args.reason, MAX_REASON_LENGTH],
    ['requestedBy', args.requestedBy, MAX_REASON_LENGTH],
    ['requestId', args.requestId, MAX_REQUEST_ID_LENGTH],
  ] as const;
  for (const [name, value, max] of text) {
    if (value === undefined) continue;
    if (typeof value !== 'string') return `${name} must be text`;
    if (value.length > max) return `${name} is longer than ${max} characters`;
    if (value.includes('\u0000')) return `${name} must not contain NUL characters`;
  }
  if (args.reanchor !== undefined && typeof args.reanchor !== 'boolean') return 'reanchor must be a boolean';
  return null;
}
