import type pg from 'pg';
import type { BudgetKind, BudgetRef } from '../budget-ref.js';
import { OWNERS, ident } from '../entities.js';
import { SCHEMA } from './migrate.js';
import { windowRowsSql } from './window-budget.js';

export interface DiscoveryPage {
  readonly items: BudgetRef[];
  /** Pass as `afterId` for the next page; undefined when this was the last page. */
  readonly nextAfterId?: string;
}

/**
 * One keyset page of the budgets of one kind that have a duration, ordered by id (the full sweep). Expired keys
 * are skipped: LiteLLM does not reset them. With `syncedSince`, so are budgets whose workflow was started,
 * signalled or wrote its schedule since then (their `budget_sync` row says so, and they were not refused): the
 * sweep that follows a discovery pass need not start again the 10,000 workflows that pass has just started.
 */
export async function discoverBudgetPage(
  db: pg.Pool,
  args: { kind: BudgetKind; afterId: string; limit: number; syncedSince?: string },
): Promise<DiscoveryPage> {
  if (args.kind === 'window') return discoverWindowPage(db, args);
  const owner = OWNERS[args.kind];
  const key = ident(owner.key);
  const notExpired =
    args.kind === 'key' ? ` AND ("expires" IS NULL OR "expires" > (now() AT TIME ZONE 'UTC'))` : '';
  const notJustSynced = args.syncedSince
    ? ` AND NOT EXISTS (SELECT 1 FROM ${SCHEMA}.budget_sync s
                         WHERE s.budget_kind = $4 AND s.budget_key = ${SCHEMA}.id_key(${key})
                           AND s.synced_at >= $3::timestamptz AND s.rejected IS NULL)`
    : '';
  const { rows } = await db.query<{ id: string }>(
    `SELECT ${key} AS id FROM ${ident(owner.table)}
      WHERE ${key} COLLATE "C" > $1 AND "budget_duration" IS NOT NULL${notExpired}${notJustSynced}
      ORDER BY ${key} COLLATE "C"
      LIMIT $2`,
    args.syncedSince ? [args.afterId, args.limit, args.syncedSince, args.kind] : [args.afterId, args.limit],
  );
  const items = rows.map((r) => ({ kind: args.kind, id: r.id }));
  const last = items[items.length - 1];
  return { items, nextAfterId: items.length === args.limit && last ? last.id : undefined };
}

/** One keyset page of window ids (every window of every key and team: a scan, as the full sweep runs rarely). */
async function discoverWindowPage(
  db: pg.Pool,
  args: { afterId: string; limit: number },
): Promise<DiscoveryPage> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT w.id FROM (${windowRowsSql()}) w WHERE w.id COLLATE "C" > $1 ORDER BY w.id COLLATE "C" LIMIT $2`,
    [args.afterId, args.limit],
  );
  const items = rows.map((r) => ({ kind: 'window' as const, id: r.id }));
  const last = items[items.length - 1];
  return { items, nextAfterId: items.length === args.limit && last ? last.id : undefined };
}
