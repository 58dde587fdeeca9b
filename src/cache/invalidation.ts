import type { Redis } from 'ioredis';
import type pg from 'pg';
import { decodeEntityId, entityType } from '../entities.js';
import { SCHEMA } from '../db/migrate.js';

/** LiteLLM's channel: every proxy pod drops (or overwrites) the named key in its in-memory cache. */
export const INVALIDATION_CHANNEL = 'litellm_proxy.auth_cache_invalidation';

/** LiteLLM keeps spend counters and in-memory copies for 60 s; we match that expiry. */
export const COUNTER_TTL_SECONDS = 60;

// 500 entities make a pipeline of about 2,000 commands: large enough to keep Redis round trips rare, small enough
// that a 40,000-entity invalidation does not pile up tens of megabytes of short-lived command objects.
const PAGE_SIZE = 500;

export interface InvalidationResult {
  readonly entities: number;
  readonly countersSet: number;
  readonly objectsInvalidated: number;
  readonly messagesPublished: number;
}

/** LiteLLM's Redis namespace (`cache_params.namespace`) prefixes every key and channel as `<namespace>:<key>`. */
export function namespaced(namespace: string | undefined, key: string): string {
  return namespace ? `${namespace}:${key}` : key;
}

/** Python's float repr for whole numbers (`0.0`), so LiteLLM reads a float back, as it wrote one. */
export function formatSpend(value: number): string {
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}

/**
 * Tells LiteLLM about one committed reset: for each entity it changed, sets the spend counter to the new spend
 * (60 s expiry), deletes the cached objects, and publishes invalidation messages so every proxy pod drops its
 * in-memory copy. Reads the plan from the audit rows, page by page, so a tier with many thousands of end users
 * needs neither a huge activity payload nor a huge pipeline. Keys are built from ids as plain strings (never
 * patterns), so any character is safe. Idempotent: running it twice leaves the same state.
 */
export async function invalidateResetCaches(
  db: pg.Pool,
  redis: Redis,
  namespace: string | undefined,
  resetId: string,
): Promise<InvalidationResult> {
  const channel = namespaced(namespace, INVALIDATION_CHANNEL);
  const totals = { entities: 0, countersSet: 0, objectsInvalidated: 0, messagesPublished: 0 };
  let after: { type: string; id: string } = { type: '', id: '' };
  for (;;) {
    const { rows } = await db.query<{ entity_type: string; entity_id: string; spend_after: number }>(
      `SELECT entity_type, entity_id, spend_after FROM ${SCHEMA}.reset_log_entity
        WHERE reset_id = $1 AND (entity_type, entity_id) > ($2, $3)
        ORDER BY entity_type, entity_id LIMIT ${PAGE_SIZE}`,
      [resetId, after.type, after.id],
    );
    if (rows.length === 0) break;
    const pipeline = redis.pipeline();
    for (const row of rows) {
      const type = entityType(row.entity_type);
      if (!type) continue;
      const keys = type.cacheKeys(decodeEntityId(type, row.entity_id));
      const spend = formatSpend(row.spend_after);
      if (keys.counter) {
        pipeline.set(namespaced(namespace, keys.counter), spend, 'EX', COUNTER_TTL_SECONDS);
        pipeline.publish(
          channel,
          `{"cache_key": ${JSON.stringify(keys.counter)}, "new_value": ${spend}, "ttl": ${COUNTER_TTL_SECONDS}}`,
        );
        totals.countersSet += 1;
        totals.messagesPublished += 1;
      }
      if (keys.objects.length > 0) {
        pipeline.del(...keys.objects.map((k) => namespaced(namespace, k)));
        for (const key of keys.objects) pipeline.publish(channel, JSON.stringify({ cache_key: key }));
        totals.objectsInvalidated += keys.objects.length;
        totals.messagesPublished += keys.objects.length;
      }
      totals.entities += 1;
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed?.[0]) throw failed[0];
    const last = rows[rows.length - 1];
    if (!last || rows.length < PAGE_SIZE) break;
    after = { type: last.entity_type, id: last.entity_id };
  }
  return totals;
}
