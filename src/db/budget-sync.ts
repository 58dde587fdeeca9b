import type pg from 'pg';
import type { BudgetKind, BudgetRef } from '../budget-ref.js';
import { OWNERS, ident } from '../entities.js';
import { SCHEMA } from './migrate.js';
import { rememberOwnWindowSchedules, windowRowsSql } from './window-budget.js';

/**
 * Discovery by comparison, not by `updated_at`: `budget_lifecycle.budget_sync` remembers each budget's
 * `budget_duration` and `budget_reset_at` as its workflow last knew them. A row is a *schedule change* when it
 * appears, disappears (deleted, duration removed, key expired), or its duration or reset time differs from what
 * we remember. Spend flushes change neither, so they cost nothing.
 */

/** One budget whose schedule differs from what its workflow knows. */
export interface ScheduleChange {
  readonly id: string;
  /** The row exists, has a duration and (for a key) has not expired. */
  readonly live: boolean;
  /** We remember this budget (it has, or had, a workflow). */
  readonly known: boolean;
  readonly duration: string | null;
  /** `budget_reset_at` exactly as stored (TIMESTAMP(3) as text), so recording it back is lossless. */
  readonly resetAt: string | null;
}

/**
 * The rows of one kind that are live: a duration, and for a key, not past `expires`; for windows, every element of
 * `budget_limits` with a duration (its `reset_at` read from the JSON).
 */
function liveRowsSql(kind: BudgetKind): string {
  if (kind === 'window') return windowRowsSql();
  const owner = OWNERS[kind];
  const notExpired =
    kind === 'key' ? ` AND (o."expires" IS NULL OR o."expires" > (now() AT TIME ZONE 'UTC'))` : '';
  return `SELECT o.${ident(owner.key)} AS id, o."budget_duration" AS duration, o."budget_reset_at" AS reset_at
            FROM ${ident(owner.table)} o
           WHERE o."budget_duration" IS NOT NULL${notExpired}`;
}

/**
 * Up to `limit` budgets of one kind whose schedule changed. One statement: a hash join of LiteLLM's rows that
 * have a duration with what we remember, so its cost grows with the number of rows, never with spend traffic.
 */
export async function findScheduleChanges(
  db: pg.Pool,
  kind: BudgetKind,
  limit: number,
): Promise<ScheduleChange[]> {
  const { rows } = await db.query<{
    id: string;
    live: boolean;
    known: boolean;
    duration: string | null;
    reset_at: string | null;
  }>(
    `SELECT COALESCE(l.id, s.budget_id) AS id, l.id IS NOT NULL AS live, s.budget_id IS NOT NULL AS known,
            l.duration, l.reset_at::text AS reset_at
       FROM (${liveRowsSql(kind)}) l
       FULL JOIN (SELECT budget_id, duration, reset_at FROM ${SCHEMA}.budget_sync WHERE budget_kind = $1) s
         ON s.budget_id = l.id
      WHERE l.id IS NULL OR s.budget_id IS NULL
         OR l.duration IS DISTINCT FROM s.duration OR l.reset_at IS DISTINCT FROM s.reset_at
      LIMIT $2`,
    [kind, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    live: r.live,
    known: r.known,
    duration: r.duration,
    resetAt: r.reset_at,
  }));
}

/**
 * Remembers what discovery told these budgets' workflows (the values it read, not the row's current ones: a
 * change that lands in between is then still a difference next time). `rejected` says why a budget could not
 * be given a workflow; it is retried only when its row changes.
 */
export async function rememberSchedules(
  db: pg.Pool,
  kind: BudgetKind,
  items: ReadonlyArray<ScheduleChange & { rejected?: string }>,
): Promise<void> {
  if (items.length === 0) return;
  await db.query(
    `INSERT INTO ${SCHEMA}.budget_sync AS s (budget_kind, budget_id, duration, reset_at, rejected)
     SELECT $1, u.id, u.duration, u.reset_at::timestamp(3), u.rejected
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, duration, reset_at, rejected)
     ON CONFLICT (budget_kind, budget_key) DO UPDATE
       SET duration = EXCLUDED.duration, reset_at = EXCLUDED.reset_at, rejected = EXCLUDED.rejected,
           synced_at = now()`,
    [
      kind,
      items.map((i) => i.id),
      items.map((i) => i.duration),
      items.map((i) => i.resetAt),
      items.map((i) => i.rejected ?? null),
    ],
  );
}

/** Why Temporal refused to start this budget's workflow, as discovery recorded it; undefined if it did not. */
export async function findRejection(db: pg.Pool, ref: BudgetRef): Promise<string | undefined> {
  const { rows } = await db.query<{ rejected: string }>(
    `SELECT rejected FROM ${SCHEMA}.budget_sync
      WHERE budget_kind = $1 AND budget_key = ${SCHEMA}.id_key($2) AND rejected IS NOT NULL`,
    [ref.kind, ref.id],
  );
  return rows[0]?.rejected;
}

/** Forgets budgets whose rows are gone or no longer scheduled (their workflows have been told). */
export async function forgetSchedules(db: pg.Pool, kind: BudgetKind, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    `DELETE FROM ${SCHEMA}.budget_sync WHERE budget_kind = $1 AND budget_key = ANY(
       SELECT ${SCHEMA}.id_key(i) FROM unnest($2::text[]) AS i)`,
    [kind, ids],
  );
}

/**
 * Inside the workflow's own transaction (first boundary, reset, new duration): remembers the row's schedule as
 * it now stands, so our own writes are never mistaken for someone else's change.
 */
export async function rememberOwnSchedule(client: pg.ClientBase, ref: BudgetRef): Promise<void> {
  await rememberOwnSchedules(client, ref.kind, [ref.id]);
}

/** {@link rememberOwnSchedule} for several budgets of one kind at once (a batch of resets). */
export async function rememberOwnSchedules(
  client: pg.ClientBase,
  kind: BudgetKind,
  ids: readonly string[],
): Promise<void> {
  if (kind === 'window') return rememberOwnWindowSchedules(client, ids);
  const owner = OWNERS[kind];
  await client.query(
    `INSERT INTO ${SCHEMA}.budget_sync AS s (budget_kind, budget_id, duration, reset_at)
     SELECT $1, o.${ident(owner.key)}, o."budget_duration", o."budget_reset_at"
       FROM ${ident(owner.table)} o WHERE o.${ident(owner.key)} = ANY($2::text[])
     ON CONFLICT (budget_kind, budget_key) DO UPDATE
       SET duration = EXCLUDED.duration, reset_at = EXCLUDED.reset_at, rejected = NULL, synced_at = now()`,
    [kind, ids],
  );
}
