/** The kinds of budget that have their own schedule, and so their own workflow. */
export const BUDGET_KINDS = ['budget', 'key', 'user', 'team'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

/** A budget named the way operators name it: `<kind>:<id>`. */
export interface BudgetRef {
  readonly kind: BudgetKind;
  readonly id: string;
}

export class InvalidBudgetRefError extends Error {
  override readonly name = 'InvalidBudgetRefError';
}

export function isBudgetKind(value: string): value is BudgetKind {
  return (BUDGET_KINDS as readonly string[]).includes(value);
}

/** Parses `budget:b-42`, `team:eng`, `key:<token>`... The id is everything after the first colon. */
export function parseBudgetRef(text: string): BudgetRef {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon);
  const id = colon < 0 ? '' : text.slice(colon + 1);
  if (!isBudgetKind(kind) || id.length === 0) {
    throw new InvalidBudgetRefError(
      `Invalid budget reference "${text}": expected <kind>:<id> with kind one of ${BUDGET_KINDS.join(', ')} ` +
        '(e.g. budget:b-42, team:eng)',
    );
  }
  return { kind, id };
}

export function formatBudgetRef(ref: BudgetRef): string {
  return `${ref.kind}:${ref.id}`;
}

/**
 * A reference fit for one line of an error or a log: control characters escaped as in JSON (a newline in an id
 * must not split a message) and ids longer than `maxChars` shortened with their length.
 */
export function displayBudgetRef(ref: BudgetRef, maxChars = 120): string {
  return `${ref.kind}:${displayText(ref.id, maxChars)}`;
}

/** `text` on one line: control characters escaped as in JSON, shortened past `maxChars`. */
export function displayText(text: string, maxChars = 120): string {
  const escaped = JSON.stringify(text).slice(1, -1).replaceAll('\\"', '"');
  return escaped.length > maxChars ? `${escaped.slice(0, maxChars)}… (${text.length} characters)` : escaped;
}

/**
 * The workflow id of a budget: `budget/<kind>/<id>`. Ids are opaque strings that may hold `/` or anything else,
 * so the id part is percent-encoded to keep the mapping one-to-one.
 */
export function budgetWorkflowId(ref: BudgetRef): string {
  return `budget/${ref.kind}/${encodeURIComponent(ref.id)}`;
}

export function parseBudgetWorkflowId(workflowId: string): BudgetRef | undefined {
  const match = /^budget\/([a-z]+)\/(.+)$/.exec(workflowId);
  if (!match || !isBudgetKind(match[1] ?? '')) return undefined;
  return { kind: match[1] as BudgetKind, id: decodeURIComponent(match[2] ?? '') };
}
