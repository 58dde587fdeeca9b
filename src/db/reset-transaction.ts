import type pg from 'pg';
import type { BudgetRef } from '../budget-ref.js';
import { ENTITY_TYPES, OWNERS, ident, type EntityType, type OwnerTable } from '../entities.js';
import { BudgetNotFoundError, InvalidBudgetDataError } from '../errors.js';
import { lateAtCommit } from '../reset-plan.js';
import type { BudgetRow, ResetRequest, ResetResult, ResetTrigger } from '../reset-types.js';
import { rememberOwnSchedule, rememberOwnSchedules } from './budget-sync.js';
import { claimPeriods } from './reset-claim.js';
import { SCHEMA } from './migrate.js';
import {
  WINDOW_SPEND_TABLE,
  loadWindowRow,
  moveWindowResetAt,
  resetWindowsInTransaction,
  type WindowCounterReader,
} from './window-budget.js';

/** Settings that shape every reset (from configuration). */
export interface ResetOptions {
  /** LiteLLM's `budget_rollover`: carry the overage over the cap into the next period instead of zeroing. */
  readonly rollover: boolean;
  /** LiteLLM's `max_end_user_budget_id`: end users with no budget of their own are reset with this tier. */
  readonly defaultEndUserBudgetId?: string;
  /** How long after the commit each reset's late-spend check is due; undefined: never checked. */
  readonly lateSpendDelayMs?: number;
  /** How long to wait for row locks held by LiteLLM's writers before giving up (and retrying later). */
  readonly lockTimeoutMs?: number;
  /** Reads a window's spend counter (the carried spend of a window comes from it); absent without Redis. */
  readonly readWindowCounter?: WindowCounterReader;
}

// LiteLLM stores `TIMESTAMP(3)` without time zone holding UTC: convert at the SQL boundary so JavaScript only
// ever sees instants.
export const toUtcInstant = (column: string): string => `(${column} AT TIME ZONE 'UTC')`;
export const fromUtcInstant = (param: string): string => `(${param}::timestamptz AT TIME ZONE 'UTC')`;

/** Reads a budget's schedule row; undefined when the row does not exist. */
export async function loadBudgetRow(
  db: pg.ClientBase | pg.Pool,
  ref: BudgetRef,
  options: { forUpdate?: boolean } = {},
): Promise<BudgetRow | undefined> {
  if (ref.kind === 'window') return loadWindowRow(db, ref.id, options);
  const owner = OWNERS[ref.kind];
  const expires = ref.kind === 'key' ? toUtcInstant('"expires"') : 'NULL::timestamptz';
  const { rows } = await db.query<{
    budget_duration: string | null;
    reset_at: Date | null;
    max_budget: number | null;
    expires: Date | null;
  }>(
    `SELECT "budget_duration", ${toUtcInstant('"budget_reset_at"')} AS reset_at, "max_budget", ${expires} AS expires
       FROM ${ident(owner.table)} WHERE ${ident(owner.key)} = $1${options.forUpdate ? ' FOR UPDATE' : ''}`,
    [ref.id],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    kind: ref.kind,
    id: ref.id,
    duration: row.budget_duration,
    resetAt: row.reset_at?.toISOString() ?? null,
    maxBudget: row.max_budget,
    expires: row.expires?.toISOString() ?? null,
  };
}

/**
 * Moves `budget_reset_at` from `expected` to `next` without resetting spend, fenced on the column still holding
 * `expected` (so a concurrent change wins). With `expected` null this gives a budget its first boundary and
 * zeroes nothing: spend that was never scheduled to reset is a period's record, not something to destroy
 * (LiteLLM issue #22013). Returns the row's `budget_reset_at` afterwards. Runs inside the caller's transaction.
 */
export async function moveResetAt(
  client: pg.ClientBase,
  ref: BudgetRef,
  expected: string | null,
  next: string,
): Promise<string | null> {
  if (ref.kind === 'window') return moveWindowResetAt(client, ref.id, expected, next);
  const owner = OWNERS[ref.kind];
  await client.query(
    `UPDATE ${ident(owner.table)} SET "budget_reset_at" = ${fromUtcInstant('$2')}
      WHERE ${ident(owner.key)} = $1
        AND "budget_reset_at" IS NOT DISTINCT FROM ${fromUtcInstant('$3')}`,
    [ref.id, next, expected],
  );
  const row = await loadBudgetRow(client, ref);
  if (!row) throw new BudgetNotFoundError(`${ref.kind} ${JSON.stringify(ref.id)} no longer exists`);
  await rememberOwnSchedule(client, ref);
  return row.resetAt;
}

/** Runs `fn` in one transaction on a pooled client: commit on success, roll back on any error. */
export async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** One request's outcome in a batch: its result, or the error that concerns it alone. */
export type BatchOutcome = { readonly result: ResetResult } | { readonly error: Error };

/**
 * Resets one budget in one transaction: lock the owner row, fence on `budget_reset_at`, claim the period in the
 * audit, zero (or roll over) spend with one set-based statement per entity type while recording what each row
 * held, advance `budget_reset_at`, commit. Any error rolls all of it back.
 */
export async function resetBudgetTransaction(
  pool: pg.Pool,
  request: ResetRequest,
  options: ResetOptions,
  existingTables: ReadonlySet<string>,
): Promise<ResetResult> {
  const [outcome] = await resetBudgetsTransaction(pool, [request], options, existingTables);
  if (!outcome) throw new Error('a batch of one reset returned no outcome');
  if ('error' in outcome) throw outcome.error;
  return outcome.result;
}

/**
 * Resets several budgets of one kind in one transaction, with the same statements as one budget: each budget keeps
 * its own fence, its own audit row and its own outcome, and the zeroing stays one set-based statement per entity
 * type for the whole batch. This is what lets a herd of budgets due at the same instant commit in a few
 * transactions. Ids must be distinct. A budget whose row is missing or unusable gets its error and is left out;
 * a statement that fails rolls back the whole batch (the caller retries its budgets one by one).
 */
export async function resetBudgetsTransaction(
  pool: pg.Pool,
  requests: readonly ResetRequest[],
  options: ResetOptions,
  existingTables: ReadonlySet<string>,
): Promise<BatchOutcome[]> {
  const kind = requests[0]?.kind;
  if (kind === undefined) return [];
  if (requests.some((r) => r.kind !== kind)) throw new Error('a reset batch holds budgets of one kind');
  if (new Set(requests.map((r) => r.id)).size !== requests.length)
    throw new Error('a reset batch repeats a budget');
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(options.lockTimeoutMs ?? 15_000)}`);
    const outcomes =
      kind === 'window'
        ? await resetWindowsInTransaction(client, requests, {
            rollover: options.rollover,
            readCounter: options.readWindowCounter,
            spendTableExists: existingTables.has(WINDOW_SPEND_TABLE),
            lateSpendDelayMs: options.lateSpendDelayMs,
          })
        : await resetInTransaction(client, OWNERS[kind], requests, options, existingTables);
    const anyReset = outcomes.some((o) => 'result' in o && o.result.outcome === 'reset');
    await client.query(anyReset ? 'COMMIT' : 'ROLLBACK');
    return outcomes;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

interface Claimed {
  readonly index: number;
  readonly request: ResetRequest;
  readonly resetId: string;
  readonly cap: number | null;
}

async function resetInTransaction(
  client: pg.PoolClient,
  owner: OwnerTable,
  requests: readonly ResetRequest[],
  options: ResetOptions,
  existingTables: ReadonlySet<string>,
): Promise<BatchOutcome[]> {
  const kind = requests[0]?.kind ?? 'budget';
  const outcomes: Array<BatchOutcome | undefined> = requests.map(() => undefined);
  // 1. Lock the owner rows (in key order, so two batches never deadlock) and fence each one. A moved
  //    `budget_reset_at` means that period was already reset (our own committed retry, LiteLLM's job, a second
  //    resetter): that budget changes nothing.
  const expires = kind === 'key' ? toUtcInstant('"expires"') : 'NULL::timestamptz';
  const locked = await client.query<{
    id: string;
    reset_at: Date | null;
    max_budget: number | null;
    expires: Date | null;
  }>(
    `SELECT ${ident(owner.key)} AS id, ${toUtcInstant('"budget_reset_at"')} AS reset_at, "max_budget",
            ${expires} AS expires
       FROM ${ident(owner.table)} WHERE ${ident(owner.key)} = ANY($1::text[])
      ORDER BY ${ident(owner.key)} COLLATE "C"
        FOR UPDATE`,
    [requests.map((r) => r.id)],
  );
  const rows = new Map(locked.rows.map((row) => [row.id, row]));
  const fenced: Array<{ index: number; request: ResetRequest; cap: number | null }> = [];
  for (const [index, request] of requests.entries()) {
    const row = rows.get(request.id);
    if (!row) {
      outcomes[index] = {
        error: new BudgetNotFoundError(
          `${request.kind} ${JSON.stringify(request.id)} does not exist in ${owner.table}`,
        ),
      };
      continue;
    }
    const currentResetAt = row.reset_at?.toISOString() ?? null;
    if (currentResetAt !== new Date(request.expectedResetAt).toISOString()) {
      outcomes[index] = { result: { outcome: 'already_reset', currentResetAt } };
    } else if (row.expires && row.expires.getTime() <= Date.parse(request.periodEnd)) {
      outcomes[index] = { result: { outcome: 'expired' } };
    } else {
      const cap =
        options.rollover && row.max_budget !== null && Number.isFinite(row.max_budget)
          ? row.max_budget
          : null;
      if (cap !== null && cap < 0) {
        outcomes[index] = {
          error: new InvalidBudgetDataError(
            `${request.kind} ${JSON.stringify(request.id)} has a negative max_budget`,
          ),
        };
      } else {
        fenced.push({ index, request, cap });
      }
    }
  }

  // 2. Claim each period. The unique (kind, id, period_end) is a second fence: a forced reset that keeps the
  //    calendar leaves `budget_reset_at` unchanged, so its retry is stopped here instead.
  const claimed: Claimed[] = [];
  if (fenced.length > 0) {
    const byId = await claimPeriods(
      client,
      kind,
      fenced.map((f) => f.request),
      options.lateSpendDelayMs,
    );
    for (const f of fenced) {
      const resetId = byId.get(f.request.id);
      if (resetId === undefined) {
        const row = rows.get(f.request.id);
        outcomes[f.index] = {
          result: { outcome: 'already_reset', currentResetAt: row?.reset_at?.toISOString() ?? null },
        };
      } else {
        claimed.push({ ...f, resetId });
      }
    }
  }
  if (claimed.length === 0) return outcomes.map((o) => o ?? { error: new Error('no outcome') });

  // 3. Zero spend: one set-based statement per entity type, for every claimed budget at once.
  const types: EntityType[] =
    kind === 'budget'
      ? ENTITY_TYPES.filter((t) => t.tierLinked && (!t.optional || existingTables.has(t.table)))
      : owner.entity
        ? [owner.entity]
        : [];
  const params = [
    claimed.map((c) => c.resetId),
    claimed.map((c) => c.request.id),
    claimed.map((c) => c.request.periodEnd),
    claimed.map((c) => c.cap),
    claimed.map((c) => kind === 'budget' && options.defaultEndUserBudgetId === c.request.id),
  ];
  const totals = new Map(
    claimed.map((c) => [c.resetId, { n: 0, spend: 0, byType: {} as Record<string, number> }]),
  );
  for (const type of types) {
    const scope: Scope =
      kind === 'budget' ? { kind: 'tier', includeUnassigned: type.name === 'end_user' } : { kind: 'owner' };
    const { rows: counted } = await client.query<{ reset_id: string; n: number; spend_before: number }>(
      zeroSpendSql(type, scope),
      [...params, type.name],
    );
    for (const row of counted) {
      const total = totals.get(String(row.reset_id));
      if (!total || row.n === 0) continue;
      total.n += row.n;
      total.spend += row.spend_before;
      total.byType[type.name] = row.n;
    }
  }

  // 4. Advance each schedule (and remember it as ours), then finish each audit row with the lateness measured
  //    now, as the transaction commits: after an outage that is the truthful figure, not the workflow's wake.
  await client.query(
    `UPDATE ${ident(owner.table)} o SET "budget_reset_at" = (u.next_reset_at AT TIME ZONE 'UTC')
       FROM unnest($1::text[], $2::timestamptz[]) AS u(id, next_reset_at)
      WHERE o.${ident(owner.key)} = u.id`,
    [claimed.map((c) => c.request.id), claimed.map((c) => c.request.nextResetAt)],
  );
  await rememberOwnSchedules(
    client,
    kind,
    claimed.map((c) => c.request.id),
  );
  const committingAt = Date.now();
  const finals = claimed.map((c) => ({ ...c, ...lateAtCommit(c.request, committingAt) }));
  await client.query(
    `UPDATE ${SCHEMA}.reset_log r
        SET entity_count = u.n, spend_total = u.spend, late_by_ms = u.late, trigger = u.trigger
       FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::bigint[], $5::text[]) AS u(id, n, spend, late, trigger)
      WHERE r.id = u.id`,
    [
      finals.map((f) => f.resetId),
      finals.map((f) => totals.get(f.resetId)?.n ?? 0),
      finals.map((f) => totals.get(f.resetId)?.spend ?? 0),
      finals.map((f) => f.lateByMs),
      finals.map((f) => f.trigger),
    ],
  );
  for (const f of finals) {
    const total = totals.get(f.resetId) ?? { n: 0, spend: 0, byType: {} };
    outcomes[f.index] = {
      result: {
        outcome: 'reset',
        resetId: f.resetId,
        periodEnd: new Date(f.request.periodEnd).toISOString(),
        nextResetAt: new Date(f.request.nextResetAt).toISOString(),
        trigger: f.trigger,
        lateByMs: f.lateByMs,
        missedPeriods: f.request.missedPeriods,
        entityCount: total.n,
        spendTotal: total.spend,
        byType: total.byType,
      },
    };
  }
  return outcomes.map((o) => o ?? { error: new Error('no outcome') });
}

type Scope = { kind: 'tier'; includeUnassigned: boolean } | { kind: 'owner' };

/**
 * One statement that zeroes (or rolls over) every row of one entity type in scope of every budget of a batch and
 * writes each changed row's before/after spend to the audit, returning counts per reset. Parameters, one array
 * element per budget, typed once in `params`: $1 reset ids, $2 budget ids, $3 period ends, $4 rollover caps
 * (NULL: zero), $5 whether the budget is the default end-user tier; $6 the entity type. Identifiers come only
 * from the registry. Rows already at zero are left alone, so the audit holds exactly what the reset changed.
 */
export function zeroSpendSql(type: EntityType, scope: Scope): string {
  const table = ident(type.table);
  const keyCols = type.key.map((k) => `t.${ident(k)}`).join(', ');
  // Rows are locked in byte order of their key, the order LiteLLM's spend writers take the same locks in (Python's
  // `sorted()` of the ids, code point order = UTF-8 byte order): under another collation (en_US, ICU) a flush of two
  // ids and a reset could each hold the lock the other waits for, and the deadlock detector may cancel the reset.
  const lockOrder = type.key.map((k) => `t.${ident(k)} COLLATE "C"`).join(', ');
  const joinOn = type.key.map((k) => `t.${ident(k)} = old.${ident(k)}`).join(' AND ');
  const entityId =
    type.key.length === 1
      ? `t.${ident(type.key[0] ?? '')}`
      : // to_json of a text array prints exactly JSON.stringify's form: ["a","b"]
        `to_json(ARRAY[${type.key.map((k) => `t.${ident(k)}`).join(', ')}]::text[])::text`;
  let where: string;
  // The default end-user tier also owns the end users with no tier. That is a second equality key, not an OR:
  // `budget_id = x OR (default AND budget_id IS NULL)` cannot be hashed, and joined to a batch of 500 tiers it
  // compared every end user with every tier (a nested loop; at 1,000,000 end users, half a billion comparisons).
  const targets = scope.kind === 'tier' && scope.includeUnassigned;
  if (scope.kind === 'owner') {
    where = `t.${ident(type.key[0] ?? '')} = params.budget_id`;
  } else {
    where = targets
      ? `(t."budget_id" IS NULL) = params.unassigned_rows AND COALESCE(t."budget_id", '') = params.match_id`
      : 't."budget_id" = params.budget_id';
    if (type.tierCondition) where += ` AND ${type.tierCondition}`;
  }
  return `
    WITH input AS (
      SELECT u.reset_id, u.budget_id, u.period_end, u.cap, u.unassigned, $6::text AS entity_type
        FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::float8[], $5::bool[])
             AS u(reset_id, budget_id, period_end, cap, unassigned)
    ), params AS (
      SELECT input.*, false AS unassigned_rows, input.budget_id AS match_id FROM input${
        targets
          ? `
      UNION ALL
      SELECT input.*, true, '' FROM input WHERE input.unassigned`
          : ''
      }
    ), old AS (
      SELECT ${keyCols}, t."spend" AS spend_before, params.reset_id, params.cap, params.entity_type
        FROM ${table} t JOIN params ON ${where}
       WHERE t."spend" <> 0
       ORDER BY ${lockOrder}
         FOR UPDATE OF t
    ), changed AS (
      UPDATE ${table} t
         SET "spend" = CASE WHEN old.cap IS NULL THEN 0 ELSE GREATEST(0, old.spend_before - old.cap) END
        FROM old
       WHERE ${joinOn}
      RETURNING ${entityId} AS entity_id, old.spend_before, t."spend" AS spend_after, old.reset_id, old.entity_type
    ), audit AS (
      -- In the primary key's order (reset_id, entity_type, entity_key = id_key(entity_id)): each row then lands
      -- beside the last one in the index instead of on a random leaf, about 15% of a million-row reset's CPU.
      INSERT INTO ${SCHEMA}.reset_log_entity (reset_id, entity_type, entity_id, spend_before, spend_after)
      SELECT reset_id, entity_type, entity_id, spend_before, spend_after FROM changed
       ORDER BY reset_id, ${SCHEMA}.id_key(entity_id)
    )
    SELECT reset_id::text AS reset_id, count(*)::int AS n, COALESCE(sum(spend_before), 0)::float8 AS spend_before
      FROM changed GROUP BY reset_id`;
}

/**
 * The reset a workflow already committed for this budget's period (an armed reset the worker ran at the boundary,
 * or an attempt that committed before its worker died), read back from the audit; undefined if there is none.
 * A forced reset is found by its request id instead: its period ends at the moment it ran, which a retried
 * attempt does not share.
 */
export async function findCommittedReset(
  db: pg.Pool,
  request: Pick<ResetRequest, 'kind' | 'id' | 'periodEnd' | 'workflowId' | 'trigger' | 'requestId'>,
): Promise<ResetResult | undefined> {
  const forced = request.trigger === 'forced';
  if (forced && request.requestId === undefined) return undefined;
  const { rows } = await db.query<{
    id: string;
    period_end: Date;
    next_reset_at: Date;
    trigger: ResetTrigger;
    late_by_ms: string;
    missed_periods: number;
    entity_count: number;
    spend_total: number;
    request_count: number | null;
  }>(
    `SELECT id, period_end, next_reset_at, trigger, late_by_ms, missed_periods, entity_count, spend_total,
            request_count
       FROM ${SCHEMA}.reset_log
      WHERE budget_kind = $1 AND budget_key = ${SCHEMA}.id_key($2) AND workflow_id = $4
        AND ${forced ? `request_id IS NOT NULL AND ${SCHEMA}.id_key(request_id) = ${SCHEMA}.id_key($3)` : 'period_end = $3'}`,
    [request.kind, request.id, forced ? request.requestId : request.periodEnd, request.workflowId ?? null],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    outcome: 'reset',
    resetId: String(row.id),
    periodEnd: row.period_end.toISOString(),
    nextResetAt: row.next_reset_at.toISOString(),
    trigger: row.trigger,
    lateByMs: Number(row.late_by_ms),
    missedPeriods: row.missed_periods,
    entityCount: row.entity_count,
    spendTotal: row.spend_total,
    byType: {},
    ...(forced && row.request_count !== null ? { requestsAnswered: row.request_count } : {}),
  };
}

/** Which optional LiteLLM tables exist in this database (older releases lack some). */
export async function existingTables(db: pg.Pool): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])`,
    [[...ENTITY_TYPES.map((t) => t.table), WINDOW_SPEND_TABLE]],
  );
  return new Set(rows.map((r) => r.name));
}
