import type pg from 'pg';
import type { BudgetKind } from '../budget-ref.js';
import { OWNERS, ident } from '../entities.js';

export interface DiscoveredBudget {
  readonly kind: BudgetKind;
  readonly id: string;
  /** False for a row whose duration was removed (found only when looking for changes). */
  readonly hasDuration: boolean;
  readonly updatedAt: string | null;
}

export interface DiscoveryPage {
  readonly items: DiscoveredBudget[];
  /** Pass as `afterId` for the next page; undefined when this was the last page. */
  readonly nextAfterId?: string;
}

/**
 * One keyset page of budgets of one kind, ordered by id. Without `changedSince`: every row with a duration (a full
 * sweep). With it: rows whose `updated_at` is newer, with or without a duration, so that removing a duration is
 * noticed too. Expired keys are skipped: LiteLLM does not reset them.
 */
export async function discoverBudgetPage(
  db: pg.Pool,
  args: { kind: BudgetKind; afterId: string; limit: number; changedSince?: string | null },
): Promise<DiscoveryPage> {
  const owner = OWNERS[args.kind];
  const key = ident(owner.key);
  const conditions = [`${key} COLLATE "C" > $1`];
  if (args.changedSince) conditions.push(`"updated_at" > ($3::timestamptz AT TIME ZONE 'UTC')`);
  else conditions.push('"budget_duration" IS NOT NULL');
  if (args.kind === 'key') conditions.push(`("expires" IS NULL OR "expires" > (now() AT TIME ZONE 'UTC'))`);
  const params: unknown[] = [args.afterId, args.limit];
  if (args.changedSince) params.push(args.changedSince);
  const { rows } = await db.query<{ id: string; has_duration: boolean; updated_at: Date | null }>(
    `SELECT ${key} AS id, "budget_duration" IS NOT NULL AS has_duration,
            ("updated_at" AT TIME ZONE 'UTC') AS updated_at
       FROM ${ident(owner.table)}
      WHERE ${conditions.join(' AND ')}
      ORDER BY ${key} COLLATE "C"
      LIMIT $2`,
    params,
  );
  const items = rows.map((r) => ({
    kind: args.kind,
    id: r.id,
    hasDuration: r.has_duration,
    updatedAt: r.updated_at?.toISOString() ?? null,
  }));
  const last = items[items.length - 1];
  return { items, nextAfterId: items.length === args.limit && last ? last.id : undefined };
}
