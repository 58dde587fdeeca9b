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
  const reset = await client.query<{
    budget_kind: string;
    budget_id: string;
    period_start: Date | null;
    period_end: Date;
  }>(
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
  const entities = await client.query<{ entity_type: string; entity_id: string; spend_before: number }>(
    `SELECT entity_type, entity_id, spend_before FROM ${SCHEMA}.reset_log_entity
      WHERE reset_id = $1 AND entity_type = ANY($2::text[]) ORDER BY entity_type, entity_id`,
    [resetId, Object.keys(MATCH)],
  );
  const seen = new Set(entities.rows.map((r) => `${r.entity_type}\0${r.entity_id}`));
  for (const linked of await linkedEntities(client, period.budget_kind, period.budget_id)) {
    if (!seen.has(`${linked.entity_type}\0${linked.entity_id}`))
      entities.rows.push({ ...linked, spend_before: 0 });
  }
  const corrections: LateSpendCorrection[] = [];
  for (const row of entities.rows) {
    const type = entityType(row.entity_type);
    const match = MATCH[row.entity_type as EntityTypeName];
    if (!type || !match) continue;
    const ids = decodeEntityId(type, row.entity_id);
    const n = ids.length;
    // startTime is TIMESTAMP(3) without time zone holding UTC, like every LiteLLM DateTime.
    const logged = await client.query<{ spend: number }>(
      `SELECT COALESCE(sum(s.spend), 0)::float8 AS spend FROM "LiteLLM_SpendLogs" s
        WHERE ${match}
          AND s."startTime" < ($${n + 1}::timestamptz AT TIME ZONE 'UTC')
          AND s."startTime" >= ($${n + 2}::timestamptz AT TIME ZONE 'UTC')`,
      [...ids, period.period_end, period.period_start],
    );
    const loggedSpend = logged.rows[0]?.spend ?? 0;
    const late = loggedSpend - row.spend_before;
    if (!(late > EPSILON)) continue;
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
      [...ids, late],
    );
    const changed = { before, after: updated.rows[0]?.spend ?? before };
    await client.query(
      `INSERT INTO ${SCHEMA}.late_spend_correction
         (reset_id, entity_type, entity_id, logged_spend, spend_at_reset, late_spend, spend_before, spend_after)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        resetId,
        row.entity_type,
        row.entity_id,
        loggedSpend,
        row.spend_before,
        late,
        changed.before,
        changed.after,
      ],
    );
    corrections.push({
      entityType: row.entity_type,
      entityId: row.entity_id,
      lateSpend: late,
      spendBefore: changed.before,
      spendAfter: changed.after,
    });
  }
  await client.query(
    `UPDATE ${SCHEMA}.late_spend_check SET entities_checked = $2, entities_corrected = $3, late_spend_total = $4
      WHERE reset_id = $1`,
    [resetId, entities.rows.length, corrections.length, corrections.reduce((sum, c) => sum + c.lateSpend, 0)],
  );
  return { checked: true, entitiesChecked: entities.rows.length, corrections };
}

/** Rows of the checked entity types that belong to a budget: linked to a tier by budget_id, or the owner row. */
async function linkedEntities(
  client: pg.ClientBase,
  budgetKind: string,
  budgetId: string,
): Promise<Array<{ entity_type: string; entity_id: string }>> {
  const out: Array<{ entity_type: string; entity_id: string }> = [];
  for (const name of Object.keys(MATCH) as EntityTypeName[]) {
    const type = entityType(name);
    if (!type) continue;
    const owner = budgetKind === name && type.key.length === 1;
    if (!owner && !(budgetKind === 'budget' && type.tierLinked)) continue;
    const column = owner ? type.key[0]! : 'budget_id';
    const { rows } = await client.query<Record<string, string>>(
      `SELECT ${type.key.map(ident).join(', ')} FROM ${ident(type.table)} WHERE ${ident(column)} = $1`,
      [budgetId],
    );
    for (const row of rows) {
      out.push({ entity_type: name, entity_id: encodeEntityId(type.key.map((k) => String(row[k]))) });
    }
  }
  return out;
}
