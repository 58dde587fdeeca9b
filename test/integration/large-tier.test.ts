import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateResetCaches } from '../../src/cache/invalidation.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';

// LiteLLM's own job once built one bind parameter per end user and broke at 32,767; issue 13 asks for 100,000.
const END_USERS = 100_000;
const BOUNDARY = '2026-03-01T00:00:00.000Z';
const NEXT = '2026-03-02T00:00:00.000Z';

let db: TestDatabase;
let redis: Redis;
beforeAll(async () => {
  db = await createTestDatabase();
  redis = new Redis(services().redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await db?.drop();
});

async function resetTier(id: string) {
  const result = await resetBudgetTransaction(
    db.pool,
    scheduledReset({ kind: 'budget', id }, BOUNDARY, NEXT),
    { rollover: false },
    await existingTables(db.pool),
  );
  if (result.outcome !== 'reset') throw new Error(`tier ${id}: outcome ${result.outcome}, expected reset`);
  return result;
}

/** The committed schedule and audit row of a tier: what a reset leaves behind once it has committed. */
async function committed(id: string) {
  const tier = await db.pool.query<{ reset_at: Date }>(
    `SELECT budget_reset_at AT TIME ZONE 'UTC' AS reset_at FROM "LiteLLM_BudgetTable" WHERE budget_id = $1`,
    [id],
  );
  const log = await db.pool.query<{ entity_count: number; entities: number }>(
    `SELECT r.entity_count,
            (SELECT count(*)::int FROM budget_lifecycle.reset_log_entity e WHERE e.reset_id = r.id) AS entities
       FROM budget_lifecycle.reset_log r WHERE r.budget_kind = 'budget' AND r.budget_id = $1`,
    [id],
  );
  return { resetAt: tier.rows[0]?.reset_at.toISOString(), log: log.rows };
}

async function cachedKeys(ns: string): Promise<number> {
  let cached = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 5000);
    cached += keys.length;
    cursor = next;
  } while (cursor !== '0');
  return cached;
}

describe(`a tier with ${END_USERS.toLocaleString('en-US')} end users`, () => {
  it('resets all of them in one transaction, audits each, and invalidates each cache entry', async () => {
    await insertBudget(db.pool, { id: 'big', maxBudget: 1, duration: '1d', resetAt: BOUNDARY });
    await db.pool.query(
      `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
       SELECT 'eu-' || i, (i % 100) / 10.0 + 0.1, 'big' FROM generate_series(1, $1::int) AS i`,
      [END_USERS],
    );
    const expectedTotal = await db.pool.query<{ total: number }>(
      `SELECT sum(spend)::float8 AS total FROM "LiteLLM_EndUserTable" WHERE budget_id = 'big'`,
    );
    const total = expectedTotal.rows[0]!.total;
    const result = await resetTier('big');
    expect(result.entityCount).toBe(END_USERS);
    // Sums of 100,000 doubles taken in different orders agree to rounding, not to the last bit.
    expect(Math.abs(result.spendTotal - total)).toBeLessThan(1e-9 * total);
    const left = await db.pool.query(
      `SELECT count(*)::int AS n FROM "LiteLLM_EndUserTable" WHERE budget_id = 'big' AND spend <> 0`,
    );
    expect(left.rows[0].n).toBe(0);
    const audit = await db.pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT entity_id)::int AS distinct_ids
         FROM budget_lifecycle.reset_log_entity
        WHERE reset_id = $1 AND entity_type = 'end_user' AND spend_after = 0 AND spend_before > 0`,
      [result.resetId],
    );
    expect(audit.rows[0]).toEqual({ n: END_USERS, distinct_ids: END_USERS });
    expect(await committed('big')).toEqual({
      resetAt: NEXT,
      log: [{ entity_count: END_USERS, entities: END_USERS }],
    });

    const ns = uniqueName('big');
    // What a busy proxy leaves in Redis: a spend counter and a cached object for every end user.
    for (let from = 1; from <= END_USERS; from += 10_000) {
      const seed = redis.pipeline();
      for (let i = from; i < from + 10_000 && i <= END_USERS; i++) {
        seed.set(`${ns}:spend:end_user:eu-${i}`, '1.0');
        seed.set(`${ns}:end_user_id:eu-${i}`, '{}');
      }
      await seed.exec();
    }
    expect(await cachedKeys(ns)).toBe(2 * END_USERS);
    const invalidation = await invalidateResetCaches(db.pool, redis, ns, result.resetId);
    expect(invalidation.entities).toBe(END_USERS);
    expect(invalidation.countersDeleted).toBe(END_USERS);
    expect(invalidation.objectsInvalidated).toBe(END_USERS);
    expect(await cachedKeys(ns)).toBe(0);
  });
});

// The workflow-level counterpart (a 0-row tier reset on schedule twice) is in test/workflows/hostile-rows.test.ts.
describe('a tier with no linked rows', () => {
  it('commits its reset, audits zero entities and has nothing to invalidate', async () => {
    await insertBudget(db.pool, { id: 'empty', maxBudget: 1, duration: '1d', resetAt: BOUNDARY });
    const ns = uniqueName('empty');
    // Another tier's end user and its caches: nothing of it may be touched by the empty tier's reset.
    await insertBudget(db.pool, { id: 'neighbour', maxBudget: 1, duration: '1d', resetAt: BOUNDARY });
    await db.pool.query(
      `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id) VALUES ('neighbour-eu', 2.5, 'neighbour')`,
    );
    await redis.set(`${ns}:spend:end_user:neighbour-eu`, '2.5');

    const result = await resetTier('empty');
    expect(result).toMatchObject({ entityCount: 0, spendTotal: 0, nextResetAt: NEXT });
    expect(await committed('empty')).toEqual({ resetAt: NEXT, log: [{ entity_count: 0, entities: 0 }] });

    const invalidation = await invalidateResetCaches(db.pool, redis, ns, result.resetId);
    expect(invalidation).toMatchObject({ entities: 0, countersDeleted: 0, objectsInvalidated: 0 });
    expect(await redis.get(`${ns}:spend:end_user:neighbour-eu`)).toBe('2.5');
    const neighbour = await db.pool.query(
      `SELECT spend FROM "LiteLLM_EndUserTable" WHERE user_id = 'neighbour-eu'`,
    );
    expect(neighbour.rows[0].spend).toBe(2.5);
  });
});
