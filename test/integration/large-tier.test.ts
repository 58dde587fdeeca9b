import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateResetCaches } from '../../src/cache/invalidation.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';

// LiteLLM's own job once built one bind parameter per end user and broke at 32,767.
const END_USERS = 40_000;
const BOUNDARY = '2026-03-01T00:00:00.000Z';

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

describe('a tier with 40,000 end users', () => {
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
    const result = await resetBudgetTransaction(
      db.pool,
      scheduledReset({ kind: 'budget', id: 'big' }, BOUNDARY, '2026-03-02T00:00:00.000Z'),
      { rollover: false },
      await existingTables(db.pool),
    );
    if (result.outcome !== 'reset') throw new Error(result.outcome);
    expect(result.entityCount).toBe(END_USERS);
    expect(result.spendTotal).toBeCloseTo(expectedTotal.rows[0]!.total, 6);
    const left = await db.pool.query(
      `SELECT count(*)::int AS n FROM "LiteLLM_EndUserTable" WHERE budget_id = 'big' AND spend <> 0`,
    );
    expect(left.rows[0].n).toBe(0);
    const audit = await db.pool.query(
      `SELECT count(*)::int AS n, sum(spend_before)::float8 AS total FROM budget_lifecycle.reset_log_entity
        WHERE reset_id = $1 AND entity_type = 'end_user' AND spend_after = 0`,
      [result.resetId],
    );
    expect(audit.rows[0].n).toBe(END_USERS);

    const ns = uniqueName('big');
    // What a busy proxy leaves in Redis: a spend counter and a cached object for every end user.
    const seed = redis.pipeline();
    for (let i = 1; i <= END_USERS; i++) {
      seed.set(`${ns}:spend:end_user:eu-${i}`, '1.0');
      seed.set(`${ns}:end_user_id:eu-${i}`, '{}');
    }
    await seed.exec();
    const invalidation = await invalidateResetCaches(db.pool, redis, ns, result.resetId);
    expect(invalidation.entities).toBe(END_USERS);
    expect(invalidation.countersDeleted).toBe(END_USERS);
    let cached = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${ns}:*`, 'COUNT', 5000);
      cached += keys.length;
      cursor = next;
    } while (cursor !== '0');
    expect(cached).toBe(0);
  });
});
