import type pg from 'pg';
import { ident } from '../entities.js';
import { BudgetNotFoundError } from '../errors.js';
import { lateAtCommit } from '../reset-plan.js';
import type { BudgetRow, ResetRequest, ResetResult } from '../reset-types.js';
import {
  WINDOW_OWNERS,
  parseWindowId,
  pythonIsoFormat,
  windowCounterKey,
  type WindowId,
} from '../window-id.js';
import { SCHEMA } from './migrate.js';
import { claimPeriods } from './reset-claim.js';

/**
 * Window budgets: the elements of `budget_limits` (JSONB, on keys and teams), each `{"budget_duration": "1h",
 * "max_budget": 10, "reset_at": "2026-11-29T08:00:00+00:00", ...}`. A window resets on its own, exactly as
 * LiteLLM 1.108.14's `reset_budget_windows` does it: its spend counter is set to the carried spend, its
 * `reset_at` moves to its next boundary, and its `LiteLLM_BudgetWindowSpend` row rolls onto the new window. We
 * never touch the other windows or any other field of the JSON: only the `reset_at` of the matching element.
 */

/** LiteLLM's maintained running total of a window's spend (`litellm-proxy-extras` 0.4.110 has it). */
export const WINDOW_SPEND_TABLE = 'LiteLLM_BudgetWindowSpend';

/** Audit entity types of a window reset (`reset_log_entity.entity_type`). */
export const WINDOW_COUNTER_ENTITY = 'window';
export const WINDOW_SPEND_ROW_ENTITY = 'window_spend';

/** Reads a window's spend counter: its value, or null when absent or unreadable (Redis down, not configured). */
export type WindowCounterReader = (counterKey: string) => Promise<number | null>;

const instant = (sql: string): string => `(${sql} AT TIME ZONE 'UTC')`;
const readResetAt = (elem: string): string => `${SCHEMA}.window_reset_at(${elem}->>'reset_at')`;
/** The array of windows, or an empty one for NULL or anything that is not an array (never an error). */
const elements = (column: string): string =>
  `jsonb_array_elements(CASE WHEN jsonb_typeof(${column}) = 'array' THEN ${column} ELSE '[]'::jsonb END)`;
/** An element LiteLLM resets: an object whose `budget_duration` is text (that cannot hold our separator). */
const isWindow = (elem: string): string =>
  `jsonb_typeof(${elem}) = 'object' AND jsonb_typeof(${elem}->'budget_duration') = 'string'
     AND ${elem}->>'budget_duration' <> '' AND strpos(${elem}->>'budget_duration', ':') = 0`;

/**
 * Every window of keys and teams, one row per window id (the first element when a list repeats a duration),
 * with `reset_at` read as `timestamp(3)` holding UTC (NULL when missing or unreadable). With `ownerIds`, only the
 * windows of those keys ($n) and teams ($n+1). Unlike a key's own budget, a window of an expired key still
 * resets: LiteLLM's window job does not look at `expires`.
 */
export function windowRowsSql(ownerIds?: { key: string; team: string }): string {
  const part = (owner: 'key' | 'team'): string => {
    const { table, key } = WINDOW_OWNERS[owner];
    const filter = ownerIds ? ` AND o.${ident(key)} = ANY(${ownerIds[owner]}::text[])` : '';
    return `SELECT '${owner}:' || o.${ident(key)} || ':' || (e.elem->>'budget_duration') AS id,
                   e.elem->>'budget_duration' AS duration, ${readResetAt('e.elem')} AS reset_at, e.ord
              FROM ${ident(table)} o CROSS JOIN LATERAL ${elements('o."budget_limits"')} WITH ORDINALITY AS e(elem, ord)
             WHERE o."budget_limits" IS NOT NULL AND ${isWindow('e.elem')}${filter}`;
  };
  return `SELECT DISTINCT ON (w.id) w.id, w.duration, w.reset_at
            FROM (${part('key')} UNION ALL ${part('team')}) w
           ORDER BY w.id, w.ord`;
}

/** Reads one window (the first element with its duration); undefined when the owner row or the element is gone. */
export async function loadWindowRow(
  db: pg.ClientBase | pg.Pool,
  id: string,
  options: { forUpdate?: boolean } = {},
): Promise<BudgetRow | undefined> {
  const window = parseWindowId(id);
  const { table, key } = WINDOW_OWNERS[window.owner];
  const { rows } = await db.query<{ reset_at: Date | null; max_budget: number | null }>(
    `SELECT ${instant(readResetAt('e.elem'))} AS reset_at,
            CASE WHEN jsonb_typeof(e.elem->'max_budget') = 'number' THEN (e.elem->>'max_budget')::float8 END
              AS max_budget
       FROM ${ident(table)} o CROSS JOIN LATERAL ${elements('o."budget_limits"')} WITH ORDINALITY AS e(elem, ord)
      WHERE o.${ident(key)} = $1 AND ${isWindow('e.elem')} AND e.elem->>'budget_duration' = $2
      ORDER BY e.ord LIMIT 1${options.forUpdate ? ' FOR UPDATE OF o' : ''}`,
    [window.ownerId, window.duration],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    kind: 'window',
    id,
    duration: window.duration,
    resetAt: row.reset_at?.toISOString() ?? null,
    maxBudget: row.max_budget,
    expires: null,
  };
}

/**
 * Sets `reset_at` of the window's element(s) to `next` (written as LiteLLM writes it), fenced on it still reading
 * as `expected` (null: missing or unreadable). Rebuilds the array element by element in its order, so the other
 * windows and every other field come back exactly as they were. Returns whether an element changed. Runs inside
 * the caller's transaction.
 */
export async function writeWindowResetAt(
  client: pg.ClientBase,
  window: WindowId,
  expected: string | null,
  next: string,
): Promise<boolean> {
  const { table, key } = WINDOW_OWNERS[window.owner];
  const matches = (elem: string): string =>
    `${isWindow(elem)} AND ${elem}->>'budget_duration' = $2
       AND ${readResetAt(elem)} IS NOT DISTINCT FROM ($3::timestamptz AT TIME ZONE 'UTC')::timestamp(3)`;
  const { rowCount } = await client.query(
    `UPDATE ${ident(table)} o
        SET "budget_limits" = (
          SELECT jsonb_agg(CASE WHEN ${matches('e.elem')} THEN jsonb_set(e.elem, '{reset_at}', to_jsonb($4::text))
                                ELSE e.elem END ORDER BY e.ord)
            FROM jsonb_array_elements(o."budget_limits") WITH ORDINALITY AS e(elem, ord))
      WHERE o.${ident(key)} = $1 AND jsonb_typeof(o."budget_limits") = 'array'
        AND EXISTS (SELECT 1 FROM jsonb_array_elements(o."budget_limits") AS x(elem) WHERE ${matches('x.elem')})`,
    [window.ownerId, window.duration, expected, pythonIsoFormat(next)],
  );
  return (rowCount ?? 0) > 0;
}

/** Remembers windows' schedules as they now stand (inside the transaction that wrote them). */
export async function rememberOwnWindowSchedules(
  client: pg.ClientBase,
  ids: readonly string[],
): Promise<void> {
  const windows = ids.map(parseWindowId);
  const owners = (owner: 'key' | 'team') => windows.filter((w) => w.owner === owner).map((w) => w.ownerId);
  await client.query(
    `INSERT INTO ${SCHEMA}.budget_sync AS s (budget_kind, budget_id, duration, reset_at)
     SELECT 'window', w.id, w.duration, w.reset_at
       FROM (${windowRowsSql({ key: '$1', team: '$2' })}) w WHERE w.id = ANY($3::text[])
     ON CONFLICT (budget_kind, budget_key) DO UPDATE
       SET duration = EXCLUDED.duration, reset_at = EXCLUDED.reset_at, rejected = NULL, synced_at = now()`,
    [owners('key'), owners('team'), ids],
  );
}

/**
 * Moves a window's first boundary into place (a window LiteLLM never gave a `reset_at`, or one we cannot read),
 * zeroing nothing, and returns its `reset_at` afterwards.
 */
export async function moveWindowResetAt(
  client: pg.ClientBase,
  id: string,
  expected: string | null,
  next: string,
): Promise<string | null> {
  await writeWindowResetAt(client, parseWindowId(id), expected, next);
  const row = await loadWindowRow(client, id);
  if (!row) throw new BudgetNotFoundError(`window ${JSON.stringify(id)} no longer exists`);
  await rememberOwnWindowSchedules(client, [id]);
  return row.resetAt;
}

/** One window's outcome in a batch: its result, or the error that concerns it alone. */
type WindowOutcome = { readonly result: ResetResult } | { readonly error: Error };

interface WindowResetOptions {
  readonly rollover: boolean;
  readonly readCounter?: WindowCounterReader;
  readonly spendTableExists: boolean;
  /** When the reset is due for the late-spend sweep (undefined: never). */
  readonly lateSpendDelayMs?: number;
}

/**
 * Resets windows inside the caller's transaction, each as LiteLLM's `_reset_expired_window` does: the carried
 * spend is read from the window's counter (`max(0, counter - max_budget)` with rollover, else 0), the
 * `LiteLLM_BudgetWindowSpend` row rolls to `window_start = next reset_at - duration` with spend 0 (only if it is
 * still behind, as `roll_window_spend_row`), and `reset_at` moves to the next boundary. Fenced like any budget:
 * on the element's `reset_at` (locked with its row) and on the audit's unique period. The counter itself is set
 * after the commit, from the audit (see `cache/invalidation.ts`).
 */
export async function resetWindowsInTransaction(
  client: pg.ClientBase,
  requests: readonly ResetRequest[],
  options: WindowResetOptions,
): Promise<WindowOutcome[]> {
  const outcomes: WindowOutcome[] = [];
  // Lock owner rows in one fixed order (keys, then teams, by id) so two batches never deadlock.
  const order = requests
    .map((request, index) => ({ request, index, window: parseWindowId(request.id) }))
    .sort((a, b) => (a.request.id < b.request.id ? -1 : a.request.id > b.request.id ? 1 : 0));
  const results = new Map<number, WindowOutcome>();
  for (const { request, index, window } of order) {
    results.set(index, await resetOneWindow(client, request, window, options));
  }
  for (const [index] of requests.entries()) {
    outcomes.push(results.get(index) ?? { error: new Error('no outcome') });
  }
  return outcomes;
}

async function resetOneWindow(
  client: pg.ClientBase,
  request: ResetRequest,
  window: WindowId,
  options: WindowResetOptions,
): Promise<WindowOutcome> {
  const row = await loadWindowRow(client, request.id, { forUpdate: true });
  if (!row) {
    const { table } = WINDOW_OWNERS[window.owner];
    return {
      error: new BudgetNotFoundError(
        `window ${JSON.stringify(request.id)} does not exist in ${table}.budget_limits`,
      ),
    };
  }
  if (row.resetAt !== new Date(request.expectedResetAt).toISOString()) {
    return { result: { outcome: 'already_reset', currentResetAt: row.resetAt } };
  }
  const resetId = (await claimPeriods(client, 'window', [request], options.lateSpendDelayMs)).get(request.id);
  if (resetId === undefined) return { result: { outcome: 'already_reset', currentResetAt: row.resetAt } };

  // LiteLLM: "Per-window spend lives only in the counter, so the carried overage is read from it".
  const counter = options.readCounter ? await options.readCounter(windowCounterKey(window)) : null;
  const cap =
    options.rollover && row.maxBudget !== null && Number.isFinite(row.maxBudget) ? row.maxBudget : null;
  const carried = cap === null || counter === null ? 0 : Math.max(0, counter - cap);

  const rolled = options.spendTableExists
    ? await rollWindowSpendRow(client, window, windowStart(window.duration, request.nextResetAt))
    : undefined;
  await writeWindowResetAt(client, window, request.expectedResetAt, request.nextResetAt);

  // The window's spend as the proxy enforces it: the counter; without one, the maintained row.
  const spendBefore = counter ?? rolled?.spendBefore ?? 0;
  const audit: Array<[string, number, number]> = [[WINDOW_COUNTER_ENTITY, spendBefore, carried]];
  if (rolled) audit.push([WINDOW_SPEND_ROW_ENTITY, rolled.spendBefore, 0]);
  await client.query(
    `INSERT INTO ${SCHEMA}.reset_log_entity (reset_id, entity_type, entity_id, spend_before, spend_after)
     SELECT $1, u.entity_type, $2, u.spend_before, u.spend_after
       FROM unnest($3::text[], $4::float8[], $5::float8[]) AS u(entity_type, spend_before, spend_after)`,
    [resetId, request.id, audit.map((a) => a[0]), audit.map((a) => a[1]), audit.map((a) => a[2])],
  );
  await rememberOwnWindowSchedules(client, [request.id]);
  const final = lateAtCommit(request, Date.now());
  await client.query(
    `UPDATE ${SCHEMA}.reset_log SET entity_count = 1, spend_total = $2, late_by_ms = $3, trigger = $4
      WHERE id = $1`,
    [resetId, spendBefore, final.lateByMs, final.trigger],
  );
  return {
    result: {
      outcome: 'reset',
      resetId,
      periodEnd: new Date(request.periodEnd).toISOString(),
      nextResetAt: new Date(request.nextResetAt).toISOString(),
      trigger: final.trigger,
      lateByMs: final.lateByMs,
      missedPeriods: request.missedPeriods,
      entityCount: 1,
      spendTotal: spendBefore,
      byType: { [WINDOW_COUNTER_ENTITY]: 1 },
    },
  };
}

/**
 * LiteLLM's `roll_window_spend_row`: the row moves onto the window that just started and its spend goes to 0,
 * only while its `window_start` is still behind (a row already rolled, or fed by increments of the new window,
 * is left alone). Returns the spend it held, or undefined when no row rolled.
 */
async function rollWindowSpendRow(
  client: pg.ClientBase,
  window: WindowId,
  start: Date | undefined,
): Promise<{ spendBefore: number } | undefined> {
  if (start === undefined) return undefined;
  const { rows } = await client.query<{ spend_before: number }>(
    `WITH old AS (
       SELECT entity_type, entity_id, window_duration, spend FROM ${ident(WINDOW_SPEND_TABLE)}
        WHERE entity_type = $1 AND entity_id = $2 AND window_duration = $3
          AND window_start < ($4::timestamptz AT TIME ZONE 'UTC')
          FOR UPDATE)
     UPDATE ${ident(WINDOW_SPEND_TABLE)} t
        SET window_start = ($4::timestamptz AT TIME ZONE 'UTC'), spend = 0, updated_at = (now() AT TIME ZONE 'UTC')
       FROM old
      WHERE t.entity_type = old.entity_type AND t.entity_id = old.entity_id AND t.window_duration = old.window_duration
     RETURNING old.spend AS spend_before`,
    [WINDOW_OWNERS[window.owner].entityType, window.ownerId, window.duration, start.toISOString()],
  );
  const row = rows[0];
  return row ? { spendBefore: row.spend_before } : undefined;
}

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3_600, d: 86_400, w: 604_800 };
/** `_BUDGET_DURATION_WORD_ALIASES` of LiteLLM's `duration_parser.py`. */
const WORD_ALIASES: Readonly<Record<string, string>> = {
  hourly: '1h',
  daily: '24h',
  weekly: '7d',
  monthly: '30d',
};

/**
 * A duration as LiteLLM's `duration_in_seconds` reads it, which is not how its scheduler reads it: a word alias
 * (trimmed, any case), else `re.match(r"(\d+)(mo|[smhdw]?)")` on the text as stored, case-sensitive, so `5min`
 * is 5 minutes (the scheduler cannot read it) and `1Mo` is no duration at all (no unit: it raises).
 */
function measuredDuration(text: string): { amount: number; unit: string } | undefined {
  const match = /^(\d+)(mo|[smhdw]?)/.exec(WORD_ALIASES[text.trim().toLowerCase()] ?? text);
  if (!match?.[1] || !match[2]) return undefined;
  return { amount: Number(match[1]), unit: match[2] };
}

/**
 * LiteLLM's new `window_start`: `next reset_at - duration_in_seconds(duration)`, where `Nmo` counts the seconds
 * from now to N months from now. Undefined for a duration `duration_in_seconds` cannot measure (LiteLLM then
 * skips the row).
 */
export function windowStart(durationText: string, nextResetAt: string, now = new Date()): Date | undefined {
  const duration = measuredDuration(durationText);
  if (duration === undefined) return undefined;
  const next = Date.parse(nextResetAt);
  if (duration.unit === 'mo') {
    const later = new Date(now);
    const day = later.getUTCDate();
    later.setUTCDate(1);
    later.setUTCMonth(later.getUTCMonth() + duration.amount);
    const lastDay = new Date(Date.UTC(later.getUTCFullYear(), later.getUTCMonth() + 1, 0)).getUTCDate();
    later.setUTCDate(Math.min(day, lastDay));
    return new Date(next - (later.getTime() - now.getTime()));
  }
  const unit = UNIT_SECONDS[duration.unit];
  return unit === undefined ? undefined : new Date(next - duration.amount * unit * 1_000);
}
