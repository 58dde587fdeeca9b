import type pg from 'pg';
import type { BudgetRef } from '../budget-ref.js';
import { SCHEMA } from './migrate.js';

export interface ResetLogEntry {
  readonly id: string;
  readonly periodStart: string | null;
  readonly periodEnd: string;
  readonly nextResetAt: string;
  readonly executedAt: string;
  readonly trigger: string;
  readonly lateByMs: number;
  readonly missedPeriods: number;
  readonly entityCount: number;
  readonly spendTotal: number;
  readonly reason: string | null;
  readonly requestedBy: string | null;
  readonly entities: ReadonlyArray<{ type: string; id: string; spendBefore: number; spendAfter: number }>;
}

/**
 * The latest resets of one budget, newest first, each with the entities it changed (the largest spends first, at
 * most `entityLimit` per reset).
 */
export async function resetHistory(
  db: pg.Pool,
  ref: BudgetRef,
  options: { limit: number; entityLimit: number },
): Promise<ResetLogEntry[]> {
  const { rows } = await db.query(
    `SELECT r.id, r.period_start, r.period_end, r.next_reset_at, r.executed_at, r.trigger, r.late_by_ms,
            r.missed_periods, r.entity_count, r.spend_total, r.reason, r.requested_by,
            COALESCE(e.entities, '[]'::json) AS entities
       FROM ${SCHEMA}.reset_log r
       LEFT JOIN LATERAL (
         SELECT json_agg(json_build_object('type', x.entity_type, 'id', x.entity_id,
                                           'spendBefore', x.spend_before, 'spendAfter', x.spend_after)) AS entities
           FROM (SELECT * FROM ${SCHEMA}.reset_log_entity
                  WHERE reset_id = r.id ORDER BY spend_before DESC, entity_type, entity_id LIMIT $4) x
       ) e ON true
      -- budget_key (the id's SHA-256) is what the index holds: ids may be longer than an index entry.
      WHERE r.budget_kind = $1 AND r.budget_key = ${SCHEMA}.id_key($2) AND r.budget_id = $2
      ORDER BY r.period_end DESC
      LIMIT $3`,
    [ref.kind, ref.id, options.limit, options.entityLimit],
  );
  return rows.map((r) => ({
    id: String(r.id),
    periodStart: r.period_start?.toISOString() ?? null,
    periodEnd: r.period_end.toISOString(),
    nextResetAt: r.next_reset_at.toISOString(),
    executedAt: r.executed_at.toISOString(),
    trigger: r.trigger,
    lateByMs: Number(r.late_by_ms),
    missedPeriods: r.missed_periods,
    entityCount: r.entity_count,
    spendTotal: r.spend_total,
    reason: r.reason,
    requestedBy: r.requested_by,
    entities: r.entities,
  }));
}
