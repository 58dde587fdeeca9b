import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALIDATION_CHANNEL, invalidateResetCaches } from '../../src/cache/invalidation.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { GLOBAL_PROXY_SPEND_CACHE_KEY } from '../../src/entities.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  insertBudget,
  insertEndUser,
  insertKey,
  insertModelAccessGroup,
  insertOrg,
  insertOrgMember,
  insertProject,
  insertTag,
  insertTeamMember,
  insertUser,
} from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';

const BOUNDARY = '2026-03-01T00:00:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
let redis: Redis;
let subscriber: Redis;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
  redis = new Redis(services().redisUrl);
  subscriber = new Redis(services().redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  subscriber?.disconnect();
  await db?.drop();
});

const tierReset = (id: string) =>
  scheduledReset({ kind: 'budget', id }, BOUNDARY, '2026-03-01T00:01:00.000Z');

async function resetTier(id: string, opts: { rollover?: boolean } = {}): Promise<string> {
  const result = await resetBudgetTransaction(
    db.pool,
    tierReset(id),
    { rollover: opts.rollover ?? false },
    tables,
  );
  if (result.outcome !== 'reset') throw new Error(`expected a reset, got ${result.outcome}`);
  return result.resetId;
}

/** Collects messages on one channel until `count` arrived. */
async function collect(channel: string, count: number, action: () => Promise<unknown>): Promise<unknown[]> {
  const received: unknown[] = [];
  let done: () => void = () => undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  const onMessage = (ch: string, message: string) => {
    if (ch !== channel) return;
    received.push(JSON.parse(message));
    if (received.length >= count) done();
  };
  subscriber.on('message', onMessage);
  await subscriber.subscribe(channel);
  try {
    await action();
    await all;
    return received;
  } finally {
    subscriber.off('message', onMessage);
    await subscriber.unsubscribe(channel);
  }
}

describe('invalidateCaches', () => {
  it('seed case: busts the tag cache so its budget check stops failing, and tells every pod', async () => {
    const ns = uniqueName('ns');
    const tier = uniqueName('tier');
    const tag = 'tenant:acme';
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: tag, spend: 0.063, budgetId: tier });
    await redis.set(`${ns}:tag:${tag}`, JSON.stringify({ tag_name: tag, spend: 0.063 }));
    await redis.set(`${ns}:spend:tag:${tag}`, '0.063');
    const resetId = await resetTier(tier);

    const messages = await collect(`${ns}:${INVALIDATION_CHANNEL}`, 2, async () => {
      const result = await invalidateResetCaches(db.pool, redis, ns, resetId);
      expect(result).toEqual({
        entities: 1,
        countersDeleted: 1,
        countersSet: 0,
        objectsInvalidated: 1,
        messagesPublished: 2,
      });
    });
    expect(await redis.exists(`${ns}:tag:${tag}`)).toBe(0);
    // Deleted, as LiteLLM's job does: its next read reseeds the counter from the committed row.
    expect(await redis.exists(`${ns}:spend:tag:${tag}`)).toBe(0);
    expect(messages).toEqual([{ cache_key: `spend:tag:${tag}` }, { cache_key: `tag:${tag}` }]);
  });

  it('keeps an increment that lands between the commit and the invalidation', async () => {
    const ns = uniqueName('ns');
    const tier = uniqueName('tier');
    const tag = `${tier}-tag`;
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1d', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: tag, spend: 0.063, budgetId: tier });
    await redis.set(`${ns}:spend:tag:${tag}`, '0.063');
    const resetId = await resetTier(tier);

    // A request lands after our commit, before our invalidation: LiteLLM adds its cost to the counter it
    // finds and to the row (its spend writer's `spend = spend + cost`).
    await redis.incrbyfloat(`${ns}:spend:tag:${tag}`, 0.01);
    await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = spend + 0.01 WHERE tag_name = $1`, [tag]);
    await invalidateResetCaches(db.pool, redis, ns, resetId);

    // No counter is left holding a made-up value (setting it to 0.0 would drop the 0.01); LiteLLM's next
    // read reseeds it from the committed row, which has the increment and nothing of the old period.
    expect(await redis.exists(`${ns}:spend:tag:${tag}`)).toBe(0);
    const { rows } = await db.pool.query<{ spend: number }>(
      `SELECT spend FROM "LiteLLM_TagTable" WHERE tag_name = $1`,
      [tag],
    );
    expect(rows[0]?.spend).toBeCloseTo(0.01, 10);
  });

  it('covers the cache keys of every entity type', async () => {
    const ns = uniqueName('ns');
    const tier = uniqueName('tier');
    await insertBudget(db.pool, { id: tier, duration: '1d', resetAt: BOUNDARY });
    await insertKey(db.pool, { token: `${tier}-hash`, spend: 1, budgetId: tier });
    await insertTeamMember(db.pool, { userId: `${tier}-u`, teamId: `${tier}-t`, spend: 1, budgetId: tier });
    await insertEndUser(db.pool, { id: `${tier}-eu`, spend: 1, budgetId: tier });
    await insertOrg(db.pool, { id: `${tier}-org`, spend: 1, budgetId: tier });
    await insertUser(db.pool, { id: `${tier}-m` });
    await insertOrgMember(db.pool, { userId: `${tier}-m`, orgId: `${tier}-org`, spend: 1, budgetId: tier });
    await insertTag(db.pool, { name: `${tier}-tag`, spend: 1, budgetId: tier });
    await insertProject(db.pool, { id: `${tier}-p`, spend: 1, budgetId: tier });
    await insertModelAccessGroup(db.pool, { name: `${tier}-g`, spend: 1, budgetId: tier });
    const objects = [
      `${tier}-hash`,
      `${tier}-t_${tier}-u`,
      `team_membership:${tier}-u:${tier}-t`,
      `end_user_id:${tier}-eu`,
      `org_id:${tier}-org`,
      `org_id:${tier}-org:with_budget`,
      `tag:${tier}-tag`,
      `project_id:${tier}-p`,
      `model_access_group:${tier}-g`,
    ];
    const counters = [
      `spend:key:${tier}-hash`,
      `spend:team_member:${tier}-u:${tier}-t`,
      `spend:end_user:${tier}-eu`,
      `spend:org:${tier}-org`,
      `spend:tag:${tier}-tag`,
      `spend:project:${tier}-p`,
      `spend:model_access_group:${tier}-g`,
    ];
    for (const key of [...objects, ...counters]) await redis.set(`${ns}:${key}`, '"cached"');
    const result = await invalidateResetCaches(db.pool, redis, ns, await resetTier(tier));
    expect(result).toMatchObject({ entities: 8, countersDeleted: 7, objectsInvalidated: 9 });
    for (const key of [...objects, ...counters]) expect(await redis.exists(`${ns}:${key}`), key).toBe(0);
  });

  it('deletes counters under rollover too, so they reseed with the carried-over spend', async () => {
    const ns = uniqueName('ns');
    const tier = uniqueName('tier');
    await insertBudget(db.pool, { id: tier, maxBudget: 10, duration: '1d', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${tier}-tag`, spend: 12.5, budgetId: tier });
    await redis.set(`${ns}:spend:tag:${tier}-tag`, '12.5');
    const resetId = await resetTier(tier, { rollover: true });
    const messages = await collect(`${ns}:${INVALIDATION_CHANNEL}`, 2, () =>
      invalidateResetCaches(db.pool, redis, ns, resetId),
    );
    expect(await redis.exists(`${ns}:spend:tag:${tier}-tag`)).toBe(0);
    expect(messages[0]).toEqual({ cache_key: `spend:tag:${tier}-tag` });
    const { rows } = await db.pool.query<{ spend: number }>(
      `SELECT spend FROM "LiteLLM_TagTable" WHERE tag_name = $1`,
      [`${tier}-tag`],
    );
    expect(rows[0]?.spend).toBe(2.5);
  });

  it('treats ids as opaque bytes: never as patterns, never mangled', async () => {
    const ns = uniqueName('ns');
    const tier = uniqueName('tier');
    const nasty = [`a b "c" 'd'`, 'x:y:z', '*', '%_%', 'ünïcødé 🚀', 'back\\slash'];
    await insertBudget(db.pool, { id: tier, duration: '1d', resetAt: BOUNDARY });
    for (const name of nasty) await insertTag(db.pool, { name, spend: 1, budgetId: tier });
    // Decoys that a pattern-based delete of `tag:*` would take with it.
    await redis.set(`${ns}:tag:decoy`, 'keep');
    await redis.set(`${ns}:spend:tag:decoy`, '1.0');
    for (const name of nasty) await redis.set(`${ns}:tag:${name}`, 'cached');
    for (const name of nasty) await redis.set(`${ns}:spend:tag:${name}`, '1.0');
    const resetId = await resetTier(tier);
    const messages = await collect(`${ns}:${INVALIDATION_CHANNEL}`, 2 * nasty.length, () =>
      invalidateResetCaches(db.pool, redis, ns, resetId),
    );
    for (const name of nasty) {
      expect(await redis.exists(`${ns}:tag:${name}`), name).toBe(0);
      expect(await redis.exists(`${ns}:spend:tag:${name}`), name).toBe(0);
    }
    expect(await redis.get(`${ns}:tag:decoy`)).toBe('keep');
    expect(await redis.get(`${ns}:spend:tag:decoy`)).toBe('1.0');
    // The names arrive intact through Python-style \uXXXX escapes.
    expect(messages).toEqual(
      expect.arrayContaining(
        nasty.flatMap((name) => [{ cache_key: `tag:${name}` }, { cache_key: `spend:tag:${name}` }]),
      ),
    );
  });

  it('also drops the global proxy spend entry when the proxy budget user resets', async () => {
    const ns = uniqueName('ns');
    await insertUser(db.pool, { id: 'litellm-proxy-budget', spend: 99, duration: '30d', resetAt: BOUNDARY });
    await redis.set(`${ns}:default_user_id:spend`, '99');
    await redis.set(`${ns}:spend:user:litellm-proxy-budget`, '99.0');
    const result = await resetBudgetTransaction(
      db.pool,
      { ...tierReset('litellm-proxy-budget'), kind: 'user' },
      { rollover: false },
      tables,
    );
    if (result.outcome !== 'reset') throw new Error(result.outcome);
    const resetId = result.resetId;
    const messages = await collect(`${ns}:${INVALIDATION_CHANNEL}`, 3, () =>
      invalidateResetCaches(db.pool, redis, ns, resetId),
    );
    expect(await redis.exists(`${ns}:default_user_id:spend`)).toBe(0);
    expect(await redis.exists(`${ns}:spend:user:litellm-proxy-budget`)).toBe(0);
    expect(messages).toEqual([
      { cache_key: 'spend:user:litellm-proxy-budget' },
      { cache_key: 'litellm-proxy-budget' },
      { cache_key: GLOBAL_PROXY_SPEND_CACHE_KEY },
    ]);
  });

  it('invalidates a herd of resets in one pass, across pages, and only those resets', async () => {
    const ns = uniqueName('ns');
    const [big, small, other] = [uniqueName('big'), uniqueName('small'), uniqueName('other')];
    for (const tier of [big, small, other])
      await insertBudget(db.pool, { id: tier, duration: '1d', resetAt: BOUNDARY });
    // 600 end users: more than one page of audit rows for a single reset.
    const users = Array.from({ length: 600 }, (_, i) => `${big}-u${i}`);
    await Promise.all(users.map((id) => insertEndUser(db.pool, { id, spend: 1, budgetId: big })));
    await insertTag(db.pool, { name: `${small}-tag`, spend: 2, budgetId: small });
    await insertTag(db.pool, { name: `${other}-tag`, spend: 3, budgetId: other });
    const counters = [
      ...users.map((id) => `${ns}:spend:end_user:${id}`),
      `${ns}:spend:tag:${small}-tag`,
      `${ns}:spend:tag:${other}-tag`,
    ];
    await redis.mset(...counters.flatMap((k) => [k, '1.0']));
    const ids = [await resetTier(big), await resetTier(small), await resetTier(other)];

    const result = await invalidateResetCaches(db.pool, redis, ns, ids.slice(0, 2));
    expect(result).toMatchObject({ entities: 601, countersDeleted: 601 });
    expect(await redis.exists(...counters.slice(0, 601))).toBe(0);
    // A reset not named keeps its caches.
    expect(await redis.exists(`${ns}:spend:tag:${other}-tag`)).toBe(1);
  });

  it('uses bare keys and the bare channel without a namespace, and is idempotent', async () => {
    const tier = uniqueName('tier');
    const user = uniqueName('u');
    await insertBudget(db.pool, { id: tier, duration: '1d', resetAt: BOUNDARY });
    await insertEndUser(db.pool, { id: user, spend: 3, budgetId: tier });
    await redis.set(`end_user_id:${user}`, '{}');
    await redis.set(`spend:end_user:${user}`, '3.0');
    const resetId = await resetTier(tier);
    const messages = await collect(INVALIDATION_CHANNEL, 4, async () => {
      await invalidateResetCaches(db.pool, redis, undefined, resetId);
      await invalidateResetCaches(db.pool, redis, undefined, resetId);
    });
    const mine = messages.filter((m) => JSON.stringify(m).includes(user));
    expect(mine).toHaveLength(4);
    expect(await redis.exists(`end_user_id:${user}`)).toBe(0);
    expect(await redis.exists(`spend:end_user:${user}`)).toBe(0);
  });
});
