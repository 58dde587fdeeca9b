import type { Redis } from 'ioredis';
import type pg from 'pg';
import { LITELLM_REDIS_TTL_SECONDS } from '../config.js';
import { decodeEntityId, entityType } from '../entities.js';
import { SCHEMA } from '../db/migrate.js';
import { WINDOW_COUNTER_ENTITY } from '../db/window-budget.js';
import { parseWindowId, pythonFloat, windowCounterKey } from '../window-id.js';

/** LiteLLM's channel: every proxy pod drops (or overwrites) the named key in its in-memory cache. */
export const INVALIDATION_CHANNEL = 'litellm_proxy.auth_cache_invalidation';

// 500 entities make a pipeline of about 2,000 commands: large enough to keep Redis round trips rare, small enough
// that a 40,000-entity invalidation does not pile up tens of megabytes of short-lived command objects.
const PAGE_SIZE = 500;

export interface InvalidationResult {
  readonly entities: number;
  /** Spend counters deleted, so LiteLLM's next read reseeds each from its committed row. */
  readonly countersDeleted: number;
  /** Window spend counters set to their carried spend (LiteLLM sets these, having no row to reseed from). */
  readonly countersSet: number;
  readonly objectsInvalidated: number;
  readonly messagesPublished: number;
}

/** LiteLLM's Redis namespace (`cache_params.namespace`) prefixes every key and channel as `<namespace>:<key>`. */
export function namespaced(namespace: string | undefined, key: string): string {
  return namespace ? `${namespace}:${key}` : key;
}

/**
 * The message LiteLLM publishes to make every pod drop `cacheKey` from its in-memory caches (the auth objects
 * and the spend counters): `json.dumps({"cache_key": key})` in `auth_cache_invalidation_pubsub.py`, byte for
 * byte (Python's `": "` separator and its `\uXXXX` escapes of everything outside printable ASCII).
 */
export function invalidationMessage(cacheKey: string): string {
  const asciiOnly = JSON.stringify(cacheKey).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return `{"cache_key": ${asciiOnly}}`;
}

/**
 * Tells LiteLLM about committed resets, as its own reset job does after its commit: for each entity a reset
 * changed, deletes the spend counter (never sets it: LiteLLM's next read reseeds it from the committed row,
 * the only value that includes increments that raced the reset) and the cached objects, including the global
 * proxy spend entry after the proxy budget row. Beyond LiteLLM's job, which only clears Redis and its own
 * pod's memory, it publishes a delete for every key so every pod drops its in-memory copy at once. Reads the
 * plan from the audit rows, page by page, so a tier with many thousands of end users needs neither a huge
 * activity payload nor a huge pipeline, and a herd of resets costs a query and a pipeline per page rather than
 * per reset. Keys are built from ids as plain strings (never patterns), so any character is safe. Idempotent:
 * running it twice leaves the same state.
 */
export async function invalidateResetCaches(
  db: pg.Pool,
  redis: Redis,
  namespace: string | undefined,
  resetIds: string | readonly string[],
  /** A reset window's counter expires after this, as LiteLLM's job sets it through its `RedisCache`. */
  counterTtlSeconds = LITELLM_REDIS_TTL_SECONDS,
): Promise<InvalidationResult> {
  const ids = typeof resetIds === 'string' ? [resetIds] : [...resetIds];
  const channel = namespaced(namespace, INVALIDATION_CHANNEL);
  const totals = {
    entities: 0,
    countersDeleted: 0,
    countersSet: 0,
    objectsInvalidated: 0,
    messagesPublished: 0,
  };
  // Pages follow the primary key (reset_id, entity_type, entity_key).
  let after: { reset: string; type: string; key: Buffer } = { reset: '0', type: '', key: Buffer.alloc(0) };
  for (;;) {
    const { rows } = await db.query<{
      reset_id: string;
      entity_type: string;
      entity_key: Buffer;
      entity_id: string;
      spend_after: number;
    }>(
      `SELECT reset_id, entity_type, entity_key, entity_id, spend_after FROM ${SCHEMA}.reset_log_entity
        WHERE reset_id = ANY($1::bigint[]) AND (reset_id, entity_type, entity_key) > ($2::bigint, $3, $4)
        ORDER BY reset_id, entity_type, entity_key LIMIT ${PAGE_SIZE}`,
      [ids, after.reset, after.type, after.key],
    );
    if (rows.length === 0) break;
    const pipeline = redis.pipeline();
    for (const row of rows) {
      if (row.entity_type === WINDOW_COUNTER_ENTITY) {
        // LiteLLM's `_reset_expired_window` SETs the window counter to the carried spend (json.dumps of a float)
        // in Redis, with its cache's expiry, and in its own memory; we set it after the commit and tell every pod
        // to drop its copy.
        const counter = windowCounterKey(parseWindowId(row.entity_id));
        pipeline.set(namespaced(namespace, counter), pythonFloat(row.spend_after), 'EX', counterTtlSeconds);
        pipeline.publish(channel, invalidationMessage(counter));
        totals.countersSet += 1;
        totals.messagesPublished += 1;
        totals.entities += 1;
        continue;
      }
      const type = entityType(row.entity_type);
      if (!type) continue;
      const keys = type.cacheKeys(decodeEntityId(type, row.entity_id));
      const all = keys.counter === undefined ? keys.objects : [keys.counter, ...keys.objects];
      if (all.length > 0) {
        pipeline.del(...all.map((k) => namespaced(namespace, k)));
        for (const key of all) pipeline.publish(channel, invalidationMessage(key));
      }
      totals.countersDeleted += keys.counter === undefined ? 0 : 1;
      totals.objectsInvalidated += keys.objects.length;
      totals.messagesPublished += all.length;
      totals.entities += 1;
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed?.[0]) throw failed[0];
    const last = rows[rows.length - 1];
    if (!last || rows.length < PAGE_SIZE) break;
    after = { reset: last.reset_id, type: last.entity_type, key: last.entity_key };
  }
  return totals;
}

/**
 * A window's spend counter as LiteLLM reads it (a JSON number, `json.dumps` of a float); null when absent or not a
 * number (LiteLLM then carries nothing). Read before the reset, for the carried spend and the audit.
 */
export async function readWindowCounter(
  redis: Redis,
  namespace: string | undefined,
  counterKey: string,
): Promise<number | null> {
  const text = await redis.get(namespaced(namespace, counterKey));
  if (text === null || text.trim() === '') return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

/**
 * Drops LiteLLM's cached copies of the entities a late-spend check corrected (their counters and objects), and
 * tells every proxy pod, as after a reset.
 */
export async function invalidateCorrectedEntities(
  redis: Redis,
  namespace: string | undefined,
  corrections: ReadonlyArray<{ readonly entityType: string; readonly entityId: string }>,
): Promise<void> {
  if (corrections.length === 0) return;
  const channel = namespaced(namespace, INVALIDATION_CHANNEL);
  const pipeline = redis.pipeline();
  for (const c of corrections) {
    const type = entityType(c.entityType);
    if (!type) continue;
    const keys = type.cacheKeys(decodeEntityId(type, c.entityId));
    const all = keys.counter === undefined ? [...keys.objects] : [keys.counter, ...keys.objects];
    if (all.length === 0) continue;
    pipeline.del(...all.map((k) => namespaced(namespace, k)));
    for (const key of all) pipeline.publish(channel, invalidationMessage(key));
  }
  const results = await pipeline.exec();
  const failed = results?.find(([error]) => error);
  if (failed?.[0]) throw failed[0];
}
