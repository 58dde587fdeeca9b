import { sha256Hex } from './sha256.js';
import { InvalidWindowIdError, parseWindowId } from './window-id.js';

/**
 * The kinds of budget that have their own schedule, and so their own workflow. A `window` is one element of a key's
 * or team's `budget_limits` (see `window-id.ts`); the others are rows with `budget_duration` and `budget_reset_at`.
 */
export const BUDGET_KINDS = ['budget', 'key', 'user', 'team', 'window'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];
/** The kinds whose schedule is a row's `budget_duration` and `budget_reset_at` columns. */
export type RowBudgetKind = Exclude<BudgetKind, 'window'>;

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
      `Invalid budget reference "${displayText(text)}": expected <kind>:<id> with kind one of ${BUDGET_KINDS.join(', ')} ` +
        '(e.g. budget:b-42, team:eng, window:team:eng:1d)',
    );
  }
  if (kind === 'window') {
    try {
      parseWindowId(id);
    } catch (error) {
      if (error instanceof InvalidWindowIdError) throw new InvalidBudgetRefError(error.message);
      throw error;
    }
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

/** Escapes for `\\`, `\n`, `\r` and `\t`, as JSON writes them; other unsafe characters become `\uXXXX`. */
const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

/**
 * One character (code point) as it may be shown: escaped if it could split a line or steer a terminal (C0 and C1
 * controls, DEL, the line and paragraph separators, bidirectional overrides and isolates, a lone surrogate), and
 * the backslash, so that every escape is unambiguous. Everything else, quotes and `*` and `%` included, as is.
 */
function displayChar(char: string): string {
  const short = SHORT_ESCAPES[char];
  if (short) return short;
  const code = char.codePointAt(0)!;
  const unsafe =
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x2028 ||
    code === 0x2029 ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069) ||
    (code >= 0xd800 && code <= 0xdfff);
  return unsafe ? `\\u${code.toString(16).padStart(4, '0')}` : char;
}

/**
 * `text` on one line, safe to print to a terminal: unsafe characters escaped (see {@link displayChar}), and text
 * longer than `maxChars` shortened with its length. It is cut between characters, never inside a surrogate pair
 * or an escape.
 */
export function displayText(text: string, maxChars = 120): string {
  let shown = '';
  for (const char of text) {
    const escaped = displayChar(char);
    if (shown.length + escaped.length > maxChars) return `${shown}… (${text.length} characters)`;
    shown += escaped;
  }
  return shown;
}

/** Temporal's default `limit.maxIDLength`: longer workflow ids are refused ("Failed to start Workflow"). */
export const MAX_WORKFLOW_ID_LENGTH = 1_000;
/** Longest `BudgetId` search attribute value kept whole (SQL visibility stores keywords as VARCHAR(255)). */
export const MAX_SEARCH_ID_CHARS = 200;

/**
 * The workflow id of a budget: `budget/<kind>/<id>`, the id percent-encoded (ids are opaque strings that may hold
 * `/` or anything else). When that would exceed {@link MAX_WORKFLOW_ID_LENGTH}, it is
 * `budget/<kind>/sha256:<hex of the id's UTF-8 bytes>` instead; the full id travels in the workflow's input. The
 * two forms never collide: percent-encoding always escapes `:`. Every id that fits keeps its readable form.
 */
export function budgetWorkflowId(ref: BudgetRef): string {
  const readable = `budget/${ref.kind}/${encodeURIComponent(ref.id)}`;
  return readable.length <= MAX_WORKFLOW_ID_LENGTH
    ? readable
    : `budget/${ref.kind}/sha256:${sha256Hex(ref.id)}`;
}

/** The budget a workflow id names; undefined for other ids and for the hashed form (which cannot be reversed). */
export function parseBudgetWorkflowId(workflowId: string): BudgetRef | undefined {
  const match = /^budget\/([a-z]+)\/(.+)$/.exec(workflowId);
  if (!match || !isBudgetKind(match[1] ?? '') || match[2]?.startsWith('sha256:')) return undefined;
  try {
    return { kind: match[1] as BudgetKind, id: decodeURIComponent(match[2] ?? '') };
  } catch {
    return undefined; // not our encoding
  }
}

/**
 * The `BudgetId` search attribute value: the id itself up to {@link MAX_SEARCH_ID_CHARS} characters, else its
 * first characters and `…` (find it with `BudgetId STARTS_WITH "..."`; the workflow id is exact). Keyword values
 * are limited in size by every visibility store.
 */
export function budgetIdSearchValue(id: string): string {
  const chars = Array.from(id);
  return chars.length <= MAX_SEARCH_ID_CHARS ? id : `${chars.slice(0, MAX_SEARCH_ID_CHARS - 1).join('')}…`;
}
