import type pg from 'pg';
import type { BudgetRef } from '../budget-ref.js';
import { ENTITY_TYPES, OWNERS, ident, type EntityType, type OwnerTable } from '../entities.js';
import { BudgetNotFoundError, InvalidBudgetDataError } from '../errors.js';
import { lateAtCommit } from '../reset-plan.js';
import type { BudgetRow, ResetRequest, ResetResult } from '../reset-types.js';
import { rememberOwnSchedule } from './budget-sync.js';
import { SCHEMA } from './migrate.js';

/** Settings that shape every reset (from configuration). */
export interface ResetOptions {
  /** LiteLLM's `budget_rollover`: carry the overage over the cap into the next period instead of zeroing. */
  readonly rollover: boolean;
  /** LiteLLM's `max_end_user_budget_id`: end users with no budget of their own are reset with this tier. */
  readonly defaultEndUserBudgetId?: string;
  /** How long to wait for row locks held by LiteLLM's writers before giving up (and retrying later). */
  readonly lockTimeoutMs?: number;
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
  const owner = OWNERS[request.kind];
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(options.lockTimeoutMs ?? 15_000)}`);
    const result = await resetInTransaction(client, owner, request, options, existingTables);
    await client.query(result.outcome === 'reset' ? 'COMMIT' : 'ROLLBACK');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

async function resetInTransaction(
  client: pg.PoolClient,
  owner: OwnerTable,
  request: ResetRequest,
  options: ResetOptions,
  existingTables: ReadonlySet<string>,
): Promise<ResetResult> {
  // 1. Lock the owner row and fence. A moved `budget_reset_at` means this period was already reset (our own
  //    committed retry, LiteLLM's job, a second resetter): change nothing.
  const expires = request.kind === 'key' ? toUtcInstant('"expires"') : 'NULL::timestamptz';
  const locked = await client.query<{
    reset_at: Date | null;
    max_budget: number | null;
    expires: Date | null;
  }>(
    `SELECT ${toUtcInstant('"budget_reset_at"')} AS reset_at, "max_budget", ${expires} AS expires
       FROM ${ident(owner.table)} WHERE ${ident(owner.key)} = $1 FOR UPDATE`,
    [request.id],
  );
  const row = locked.rows[0];
  if (!row) {
    throw new BudgetNotFoundError(
      `${request.kind} ${JSON.stringify(request.id)} does not exist in ${owner.table}`,
    );
  }
  const currentResetAt = row.reset_at?.toISOString() ?? null;
  if (currentResetAt !== new Date(request.expectedResetAt).toISOString()) {
    return { outcome: 'already_reset', currentResetAt };
  }
  if (row.expires && row.expires.getTime() <= Date.parse(request.periodEnd)) return { outcome: 'expired' };
  const cap =
    options.rollover && row.max_budget !== null && Number.isFinite(row.max_budget) ? row.max_budget : null;
  if (cap !== null && cap < 0) {
    throw new InvalidBudgetDataError(
      `${request.kind} ${JSON.stringify(request.id)} has a negative max_budget`,
    );
  }

  // 2. Claim the period. The unique (kind, id, period_end) is a second fence: a forced reset that keeps the
  //    calendar leaves `budget_reset_at` unchanged, so its retry is stopped here instead.
  const claimed = await client.query<{ id: string }>(
    `INSERT INTO ${SCHEMA}.reset_log
       (budget_kind, budget_id, period_start, period_end, next_reset_at, late_by_ms, missed_periods, trigger,
        reason, requested_by, workflow_id, run_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT ON CONSTRAINT reset_log_period_unique DO NOTHING
     RETURNING id`,
    [
      request.kind,
      request.id,
      request.periodStart,
      request.periodEnd,
      request.nextResetAt,
      Math.max(0, Math.round(request.lateByMs)),
      request.missedPeriods,
      request.trigger,
      storableText(request.reason),
      storableText(request.requestedBy),
      storableText(request.workflowId),
      storableText(request.runId),
    ],
  );
  const resetId = claimed.rows[0]?.id;
  if (resetId === undefined) return { outcome: 'already_reset', currentResetAt };

  // 3. Zero spend, one set-based statement per entity type.
  const scopes: Array<{ type: EntityType; scope: Scope }> =
    request.kind === 'budget'
      ? ENTITY_TYPES.filter((t) => t.tierLinked && (!t.optional || existingTables.has(t.table))).map(
          (type) => ({
            type,
            scope: {
              kind: 'tier',
              includeUnassigned: type.name === 'end_user' && options.defaultEndUserBudgetId === request.id,
            },
          }),
        )
      : owner.entity
        ? [{ type: owner.entity, scope: { kind: 'owner' } }]
        : [];
  let entityCount = 0;
  let spendTotal = 0;
  const byType: Record<string, number> = {};
  for (const { type, scope } of scopes) {
    const { rows } = await client.query<{ n: number; spend_before: number }>(zeroSpendSql(type, scope), [
      resetId,
      type.name,
      request.id,
      request.periodEnd,
      cap,
    ]);
    const n = rows[0]?.n ?? 0;
    entityCount += n;
    spendTotal += rows[0]?.spend_before ?? 0;
    if (n > 0) byType[type.name] = n;
  }

  // 4. Advance the schedule (and remember it as ours), then finish the audit row with the lateness measured
  //    now, as the transaction commits: after an outage that is the truthful figure, not the workflow's wake.
  await client.query(
    `UPDATE ${ident(owner.table)} SET "budget_reset_at" = ${fromUtcInstant('$2')} WHERE ${ident(owner.key)} = $1`,
    [request.id, request.nextResetAt],
  );
  await rememberOwnSchedule(client, request);
  const { lateByMs, trigger } = lateAtCommit(request, Date.now());
  await client.query(
    `UPDATE ${SCHEMA}.reset_log SET entity_count = $2, spend_total = $3, late_by_ms = $4, trigger = $5
      WHERE id = $1`,
    [resetId, entityCount, spendTotal, lateByMs, trigger],
  );
  return {
    outcome: 'reset',
    resetId: String(resetId),
    periodEnd: new Date(request.periodEnd).toISOString(),
    nextResetAt: new Date(request.nextResetAt).toISOString(),
    trigger,
    lateByMs,
    missedPeriods: request.missedPeriods,
    entityCount,
    spendTotal,
    byType,
  };
}

/**
 * Free text as PostgreSQL can store it: NUL (U+0000) is the one character a `text` value cannot hold (it becomes
 * U+FFFD), and one NUL in a forced reset's reason used to fail that reset on every retry. Messages are validated where they arrive;
 * this is the last line, so nothing that slips past a validator can stop a budget.
 */
function storableText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  // A message that skipped validation may carry a number or an object where text belongs: store it as JSON.
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return text.replaceAll('\u0000', '\uFFFD');
}

type Scope = { kind: 'tier'; includeUnassigned: boolean } | { kind: 'owner' };

/**
 * One statement that zeroes (or rolls over) every row of one entity type in scope and writes each changed row's
 * before/after spend to the audit. Parameters, typed once in `params`: $1 reset id, $2 entity type, $3 budget id,
 * $4 period end, $5 rollover cap (NULL: zero). Identifiers come only from the registry. Rows already at zero are
 * left alone, so the audit holds exactly what the reset changed.
 */
export function zeroSpendSql(type: EntityType, scope: Scope): string {
  const table = ident(type.table);
  const keyCols = type.key.map((k) => `t.${ident(k)}`).join(', ');
  const joinOn = type.key.map((k) => `t.${ident(k)} = old.${ident(k)}`).join(' AND ');
  const entityId =
    type.key.length === 1
      ? `t.${ident(type.key[0] ?? '')}`
      : // to_json of a text array prints exactly JSON.stringify's form: ["a","b"]
        `to_json(ARRAY[${type.key.map((k) => `t.${ident(k)}`).join(', ')}]::text[])::text`;
  let where: string;
  if (scope.kind === 'owner') {
    where = `t.${ident(type.key[0] ?? '')} = params.budget_id`;
  } else {
    where = scope.includeUnassigned
      ? '(t."budget_id" = params.budget_id OR t."budget_id" IS NULL)'
      : 't."budget_id" = params.budget_id';
    if (type.tierCondition) where += ` AND ${type.tierCondition}`;
  }
  return `
    WITH params AS (
      SELECT $1::bigint AS reset_id, $2::text AS entity_type, $3::text AS budget_id,
             $4::timestamptz AS period_end, $5::float8 AS cap
    ), old AS (
      SELECT ${keyCols}, t."spend" AS spend_before
        FROM ${table} t, params
       WHERE ${where} AND t."spend" <> 0
       ORDER BY ${keyCols}
         FOR UPDATE OF t
    ), changed AS (
      UPDATE ${table} t
         SET "spend" = CASE WHEN params.cap IS NULL THEN 0 ELSE GREATEST(0, old.spend_before - params.cap) END
        FROM old, params
       WHERE ${joinOn}
      RETURNING ${entityId} AS entity_id, old.spend_before, t."spend" AS spend_after
    ), audit AS (
      INSERT INTO ${SCHEMA}.reset_log_entity (reset_id, entity_type, entity_id, spend_before, spend_after)
      SELECT params.reset_id, params.entity_type, changed.entity_id, changed.spend_before, changed.spend_after
        FROM changed, params
    )
    SELECT count(*)::int AS n, COALESCE(sum(spend_before), 0)::float8 AS spend_before FROM changed`;
}

/** Which optional LiteLLM tables exist in this database (older releases lack some). */
export async function existingTables(db: pg.Pool): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])`,
    [ENTITY_TYPES.map((t) => t.table)],
  );
  return new Set(rows.map((r) => r.name));
}
