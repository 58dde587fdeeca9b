import type pg from 'pg';
import { decodeEntityId, encodeEntityId, entityType, ident, type EntityTypeName } from '../entities.js';
import { SCHEMA } from './migrate.js';
import { inTransaction } from './reset-transaction.js';

/**
 * Period-exact spend. LiteLLM's proxy charges spend to the database in batches (every `proxy_batch_write_at`
 * seconds, 10 by default, plus jitter), so a request that started before a boundary may reach `spend` after the
 * reset and count against the new period. A while after a reset (longer than the flush interval and the longest
 * request), this moves that spend out of the new period, per entity the reset changed:
 *
 *   logged = LiteLLM_SpendLogs spend of the entity's requests with startTime in [period_start, period_end)
 *   late   = logged - spend_before   (what the reset found and zeroed)
 *   if late > 0: spend = GREATEST(spend - late, 0)   (relative, so LiteLLM's concurrent increments survive)
 *
 * Spend logs are the only per-request record with a start time, so this needs them on (LiteLLM's default;
 * `general_settings.disable_spend_logs: true` turns them off). Without them `logged` is 0, `late` never
 * positive, and nothing is corrected: late spend then counts against the new period, as before.
 * A rollover carry is kept as the reset left it; late spend is taken out of the new period, not carried.
 * Only entity types a spend-log row names (MATCH) are checked; org members, projects and model access groups are not.
 */

/** How a spend-log row names each entity (columns of LiteLLM_SpendLogs, alias `s`); ids in key order. */
const MATCH: Partial<Record<EntityTypeName, string>> = {
  key: `s.api_key = $1`,
  user: `s."user" = $1`,
  team: `s.team_id = $1`,
  end_user: `s.end_user = $1`,
  org: `s.organization_id = $1`,
  team_member: `s."user" = $1 AND s.team_id = $2`,
  tag: `s.request_tags @> jsonb_build_array($1::text)`,
};

/** The spend-log column that names an entity of a single-key type: these are checked set-based. */
const LOG_COLUMN: Partial<Record<EntityTypeName, string>> = {
  key: 'api_key',
  user: '"user"',
  team: 'team_id',
  end_user: 'end_user',
  org: 'organization_id',
};

export interface LateSpendCorrection {
  readonly entityType: string;
  readonly entityId: string;
  readonly lateSpend: number;
  readonly spendBefore: number;
  readonly spendAfter: number;
}

export interface LateSpendResult {
  /** False when this reset was already checked (a retry): nothing was changed again. */
  readonly checked: boolean;
  readonly entitiesChecked: number;
  readonly corrections: readonly LateSpendCorrection[];
}

/** Spend below this is float noise from summing many small charges, not late spend. */
const EPSILON = 1e-9;

/** Checks one reset for late spend and corrects it, in one transaction; a second call for the same reset is a no-op. */
export async function reconcileLateSpend(db: pg.Pool, resetId: string): Promise<LateSpendResult> {
  return inTransaction(db, (client) => checkReset(client, resetId));
}

/** Whether any reset's late-spend check is due: one probe of the partial index, so an idle sweep is one statement. */
export async function hasDueCheck(db: pg.Pool): Promise<boolean> {
  const { rows } = await db.query<{ due: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM ${SCHEMA}.reset_log WHERE late_spend_due_at <= now()) AS due`,
  );
  return rows[0]?.due === true;
}

/** What the sweeper did with one due reset: checked it, or failed and postponed (`retryAt`) or dropped (null) it. */
export type DueCheck =
  | { readonly resetId: string; readonly result: LateSpendResult }
  | { readonly resetId: string; readonly error: Error; readonly retryAt: Date | null };

/** Failed tries before a reset's late-spend check is dropped. */
export const MAX_CHECK_ATTEMPTS = 5;

/**
 * Checks the reset whose late-spend check is most overdue (`reset_log.late_spend_due_at`, set by the reset
 * transaction), in one transaction; undefined when none is due. A reset another worker is checking is skipped,
 * so any number of workers sweep at once without waiting on each other. A check that fails (a LiteLLM row lock
 * held too long, a missing grant) is postponed, so it never holds up the checks due after it.
 */
export async function checkNextDueReset(
  db: pg.Pool,
  options: { lockTimeoutMs?: number } = {},
): Promise<DueCheck | undefined> {
  return inTransaction(db, async (client) => {
    // A LiteLLM writer holding an entity's row fails this try instead of stalling the sweep (LiteLLM's own
    // spend writes wait at most 5 s for a row before they retry).
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(options.lockTimeoutMs ?? 5_000)}`);
    const due = await client.query<{ id: string }>(
      `SELECT id::text FROM ${SCHEMA}.reset_log WHERE late_spend_due_at <= now()
        ORDER BY late_spend_due_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
    );
    const resetId = due.rows[0]?.id;
    if (resetId === undefined) return undefined;
    await client.query('SAVEPOINT late_spend_check');
    try {
      return { resetId, result: await checkReset(client, resetId) };
    } catch (error) {
      await client.query('ROLLBACK TO SAVEPOINT late_spend_check');
      const { rows } = await client.query<{ retry_at: Date | null }>(
        `UPDATE ${SCHEMA}.reset_log SET late_spend_attempts = late_spend_attempts + 1,
                late_spend_due_at = CASE WHEN late_spend_attempts + 1 >= $2 THEN NULL
                                         ELSE now() + (late_spend_attempts + 1) * interval '1 minute' END
          WHERE id = $1 RETURNING late_spend_due_at AS retry_at`,
        [resetId, MAX_CHECK_ATTEMPTS],
      );
      return { resetId, error: error as Error, retryAt: rows[0]?.retry_at ?? null };
    }
  });
}

async function checkReset(client: pg.ClientBase, resetId: string): Promise<LateSpendResult> {
  // The audit row first, locked: a sweeping worker skips a reset being checked here, and one checked by a
  // sweeper is waited for, then found checked below.
  const reset = await client.query<Period>(
    `UPDATE ${SCHEMA}.reset_log SET late_spend_due_at = NULL WHERE id = $1
     RETURNING budget_kind, budget_id, period_start, period_end`,
    [resetId],
  );
  const period = reset.rows[0];
  if (!period) throw new Error(`reset ${resetId} is not in the audit`);
  // The check row first: a concurrent or repeated run waits on it, then finds it and changes nothing.
  const claimed = await client.query(
    `INSERT INTO ${SCHEMA}.late_spend_check (reset_id, entities_checked, entities_corrected, late_spend_total)
     VALUES ($1, 0, 0, 0) ON CONFLICT (reset_id) DO NOTHING`,
    [resetId],
  );
  if (claimed.rowCount === 0) return { checked: false, entitiesChecked: 0, corrections: [] };
  // The first reset a workflow makes does not know when its period began: every earlier request would look
  // late, so nothing is corrected (the check row records 0 entities checked).
  if (period.period_start === null) return { checked: true, entitiesChecked: 0, corrections: [] };

  // The entities the reset changed, with what it zeroed, and those it found at 0 (the audit leaves them out,
  // yet their late spend counts against the new period too): the rows linked to the tier, or the owner row.
  let checked = 0;
  const late: LateEntity[] = [];
  for (const name of Object.keys(MATCH) as EntityTypeName[]) {
    const found = LOG_COLUMN[name]
      ? await lateBySet(client, resetId, name, period)
      : await lateOneByOne(client, resetId, name, period);
    checked += found.checked;
    late.push(...found.late);
  }

  const corrections: LateSpendCorrection[] = [];
  for (const row of late) {
    const type = entityType(row.entityType)!;
    const ids = decodeEntityId(type, row.entityId);
    const n = ids.length;
    const lateSpend = row.logged - row.spendBefore;
    const where = type.key.map((column, i) => `${ident(column)} = $${i + 1}`).join(' AND ');
    // Locked first, so the spend before the correction is exact while LiteLLM keeps adding to it.
    const locked = await client.query<{ spend: number }>(
      `SELECT spend FROM ${ident(type.table)} WHERE ${where} FOR UPDATE`,
      ids,
    );
    const before = locked.rows[0]?.spend;
    if (before === undefined) continue; // the row was deleted since the reset
    const updated = await client.query<{ spend: number }>(
      `UPDATE ${ident(type.table)} SET spend = GREATEST(spend - $${n + 1}, 0) WHERE ${where} RETURNING spend`,
      [...ids, lateSpend],
    );
    const after = updated.rows[0]?.spend ?? before;
    await client.query(
      `INSERT INTO ${SCHEMA}.late_spend_correction
         (reset_id, entity_type, entity_id, logged_spend, spend_at_reset, late_spend, spend_before, spend_after)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [resetId, row.entityType, row.entityId, row.logged, row.spendBefore, lateSpend, before, after],
    );
    corrections.push({
      entityType: row.entityType,
      entityId: row.entityId,
      lateSpend,
      spendBefore: before,
      spendAfter: after,
    });
  }
  await client.query(
    `UPDATE ${SCHEMA}.late_spend_check SET entities_checked = $2, entities_corrected = $3, late_spend_total = $4
      WHERE reset_id = $1`,
    [resetId, checked, corrections.length, corrections.reduce((sum, c) => sum + c.lateSpend, 0)],
  );
  return { checked: true, entitiesChecked: checked, corrections };
}

/** An entity whose logged spend in the period is more than the reset found: the difference is late. */
interface LateEntity {
  readonly entityType: EntityTypeName;
  readonly entityId: string;
  readonly spendBefore: number;
  readonly logged: number;
}

interface Period {
  readonly budget_kind: string;
  readonly budget_id: string;
  readonly period_start: Date | null;
  readonly period_end: Date;
}

/**
 * The late entities of one type whose spend-log rows name them in one column, in one statement: the period's
 * spend logs of every candidate (audited, or linked and found at 0) summed per entity and compared with what
 * the reset zeroed. Only the late ones reach Node, so a tier of a million end users costs one query and no memory
 * per entity.
 */
async function lateBySet(
  client: pg.ClientBase,
  resetId: string,
  name: EntityTypeName,
  period: Period,
): Promise<{ checked: number; late: LateEntity[] }> {
  const type = entityType(name)!;
  const linked = linkedRows(name, period.budget_kind);
  const { rows } = await client.query<{ checked: number; late: LateEntity[] }>(
    `WITH audited AS (
       SELECT entity_id AS id, spend_before FROM ${SCHEMA}.reset_log_entity WHERE reset_id = $1 AND entity_type = $2
     ), candidates AS (
       SELECT id, spend_before FROM audited
       ${
         linked
           ? `UNION ALL
       SELECT t.${ident(type.key[0]!)}::text, 0 FROM ${ident(type.table)} t
        WHERE t.${ident(linked)} = $6
          AND NOT EXISTS (SELECT 1 FROM audited a WHERE a.id = t.${ident(type.key[0]!)}::text)`
           : ''
       }
     ), logged AS (
       SELECT s.${LOG_COLUMN[name]} AS id, sum(s.spend)::float8 AS spend FROM "LiteLLM_SpendLogs" s
        WHERE s.${LOG_COLUMN[name]} IN (SELECT id FROM candidates)
          AND s."startTime" < ($3::timestamptz AT TIME ZONE 'UTC')
          AND s."startTime" >= ($4::timestamptz AT TIME ZONE 'UTC')
        GROUP BY 1
     )
     SELECT (SELECT count(*) FROM candidates)::int AS checked,
            COALESCE(json_agg(json_build_object('entityType', $2::text, 'entityId', c.id,
                                                'spendBefore', c.spend_before, 'logged', l.spend)
                              ORDER BY c.id), '[]') AS late
       FROM candidates c JOIN logged l ON l.id = c.id
      WHERE l.spend - c.spend_before > $5`,
    [resetId, name, period.period_end, period.period_start, EPSILON, ...(linked ? [period.budget_id] : [])],
  );
  return rows[0] ?? { checked: 0, late: [] };
}

/** The late entities of one type matched by an expression over several columns or a JSON array, one by one. */
async function lateOneByOne(
  client: pg.ClientBase,
  resetId: string,
  name: EntityTypeName,
  period: Period,
): Promise<{ checked: number; late: LateEntity[] }> {
  const type = entityType(name)!;
  const audited = await client.query<{ entity_id: string; spend_before: number }>(
    `SELECT entity_id, spend_before FROM ${SCHEMA}.reset_log_entity
      WHERE reset_id = $1 AND entity_type = $2 ORDER BY entity_id`,
    [resetId, name],
  );
  const candidates = audited.rows.map((r) => ({ entityId: r.entity_id, spendBefore: r.spend_before }));
  const seen = new Set(candidates.map((c) => c.entityId));
  const linked = linkedRows(name, period.budget_kind);
  if (linked) {
    const { rows } = await client.query<Record<string, string>>(
      `SELECT ${type.key.map(ident).join(', ')} FROM ${ident(type.table)} WHERE ${ident(linked)} = $1`,
      [period.budget_id],
    );
    for (const row of rows) {
      const entityId = encodeEntityId(type.key.map((k) => String(row[k])));
      if (!seen.has(entityId)) candidates.push({ entityId, spendBefore: 0 });
    }
  }
  const late: LateEntity[] = [];
  for (const candidate of candidates) {
    const ids = decodeEntityId(type, candidate.entityId);
    const n = ids.length;
    // startTime is TIMESTAMP(3) without time zone holding UTC, like every LiteLLM DateTime.
    const logged = await client.query<{ spend: number }>(
      `SELECT COALESCE(sum(s.spend), 0)::float8 AS spend FROM "LiteLLM_SpendLogs" s
        WHERE ${MATCH[name]}
          AND s."startTime" < ($${n + 1}::timestamptz AT TIME ZONE 'UTC')
          AND s."startTime" >= ($${n + 2}::timestamptz AT TIME ZONE 'UTC')`,
      [...ids, period.period_end, period.period_start],
    );
    const spend = logged.rows[0]?.spend ?? 0;
    if (spend - candidate.spendBefore > EPSILON) late.push({ entityType: name, ...candidate, logged: spend });
  }
  return { checked: candidates.length, late };
}

/**
 * The column that links rows of a type to the budget being checked: its own key for the owner row of a budget of
 * that kind, `budget_id` for rows linked to a tier; undefined when no row of the type belongs to it.
 */
function linkedRows(name: EntityTypeName, budgetKind: string): string | undefined {
  const type = entityType(name);
  if (!type) return undefined;
  if (budgetKind === name && type.key.length === 1) return type.key[0];
  return budgetKind === 'budget' && type.tierLinked ? 'budget_id' : undefined;
}
