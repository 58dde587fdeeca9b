import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResetActivities } from '../../activities/reset.js';
import { resetHistory } from '../../src/db/history.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { InvalidBudgetDataError } from '../../src/errors.js';
import type { ResetRequest } from '../../src/reset-types.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget, insertKey, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

// Rows and messages a hostile (or just unusual) LiteLLM user can produce: each must reset and be audited exactly,
// or fail alone with a non-retryable error; never stop the rest of its tier.
const BOUNDARY = '2026-03-01T00:00:00.000Z';
const NEXT = '2026-04-01T00:00:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

const reset = (r: ResetRequest) => resetBudgetTransaction(db.pool, r, { rollover: false }, tables);

/** 10 kB that LiteLLM's own primary key accepts: PostgreSQL compresses repetitive index entries. */
const longId = (prefix: string) => `${prefix}-${'0123456789abcdef'.repeat(640)}`;
/** Random text just under the btree maximum: it does not compress, and fits LiteLLM's key but not a wider one. */
const incompressibleId = (prefix: string) => `${prefix}-${randomBytes(1_340).toString('hex')}`;

async function auditOf(resetId: string) {
  const { rows } = await db.pool.query<{ entity_type: string; entity_id: string; spend_before: number }>(
    `SELECT entity_type, entity_id, spend_before FROM budget_lifecycle.reset_log_entity
      WHERE reset_id = $1 ORDER BY entity_type, entity_id`,
    [resetId],
  );
  return rows;
}

describe('ids longer than an index entry', () => {
  it('a tier with a 10 kB tag, a 2.7 kB random tag and ordinary rows resets, auditing every full id', async () => {
    const tier = 'long-tags';
    const tags = [longId('tag'), incompressibleId('tag'), 'tenant:acme'];
    expect(Buffer.byteLength(tags[0]!)).toBeGreaterThan(10_000);
    expect(Buffer.byteLength(tags[1]!)).toBe(2_684);
    await insertBudget(db.pool, { id: tier, duration: '1mo', resetAt: BOUNDARY });
    for (const [i, name] of tags.entries()) {
      await insertTag(db.pool, { name, spend: i + 1, budgetId: tier });
    }
    await insertKey(db.pool, { token: 'long-tags-key', spend: 7, budgetId: tier });

    const result = await reset(scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT));
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 4, spendTotal: 13 });
    if (result.outcome !== 'reset') throw new Error('unreachable');
    for (const name of tags) expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: name })).toBe(0);
    expect(await auditOf(result.resetId)).toEqual(
      [
        { entity_type: 'key', entity_id: 'long-tags-key', spend_before: 7 },
        ...tags.map((name, i) => ({ entity_type: 'tag', entity_id: name, spend_before: i + 1 })),
      ].sort((a, b) => (a.entity_type + a.entity_id < b.entity_type + b.entity_id ? -1 : 1)),
    );
  });

  it.each([
    ['a 10 kB', longId('tier')],
    ['a 2.7 kB random', incompressibleId('tier')],
  ])('%s budget id resets once per period and its history reads back', async (_, tier) => {
    await insertBudget(db.pool, { id: tier, duration: '1mo', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${tier.slice(0, 9)}-tag`, spend: 2, budgetId: tier });
    const ref = { kind: 'budget' as const, id: tier };
    expect(await reset(scheduledReset(ref, BOUNDARY, NEXT))).toMatchObject({
      outcome: 'reset',
      entityCount: 1,
    });
    // The period's unique key still fences: a forced reset at the same period end is stopped by the audit.
    await db.pool.query(
      `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = $2::timestamptz AT TIME ZONE 'UTC' WHERE budget_id = $1`,
      [tier, BOUNDARY],
    );
    expect(await reset(scheduledReset(ref, BOUNDARY, NEXT))).toMatchObject({ outcome: 'already_reset' });
    const history = await resetHistory(db.pool, ref, { limit: 5, entityLimit: 5 });
    expect(history).toHaveLength(1);
    expect(history[0]?.entities).toEqual([
      { type: 'tag', id: `${tier.slice(0, 9)}-tag`, spendBefore: 2, spendAfter: 0 },
    ]);
    const { rows } = await db.pool.query(`SELECT budget_id FROM budget_lifecycle.reset_log WHERE id = $1`, [
      history[0]?.id,
    ]);
    expect(rows[0].budget_id).toBe(tier);
  });
});

describe('text PostgreSQL cannot store', () => {
  it('a NUL in a forced reset reason or requester is stored as U+FFFD and the reset commits', async () => {
    await insertBudget(db.pool, { id: 'nul-reason', duration: '1mo', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: 'nul-reason-tag', spend: 1, budgetId: 'nul-reason' });
    const result = await reset(
      scheduledReset({ kind: 'budget', id: 'nul-reason' }, BOUNDARY, BOUNDARY, {
        trigger: 'forced',
        periodEnd: '2026-02-15T00:00:00.000Z',
        reason: 'a\u0000b',
        requestedBy: 'ops\u0000',
        // What a message that skipped validation could carry where text belongs.
        workflowId: { not: 'text' } as unknown as string,
      }),
    );
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 1 });
    const { rows } = await db.pool.query(
      `SELECT reason, requested_by, workflow_id FROM budget_lifecycle.reset_log WHERE budget_id = 'nul-reason'`,
    );
    expect(rows).toEqual([{ reason: 'a\uFFFDb', requested_by: 'ops\uFFFD', workflow_id: '{"not":"text"}' }]);
  });

  it('a PostgreSQL error no retry can fix fails the activity as InvalidBudgetDataError', async () => {
    const activities = createResetActivities({
      db: db.pool,
      config: { schedule: DEFAULT_SCHEDULE, rollover: false },
    });
    // An id with a NUL cannot exist in LiteLLM's tables; a workflow started by hand with one must not retry forever.
    const failure = activities.loadBudget({ kind: 'team', id: 'a\u0000b' });
    await expect(failure).rejects.toBeInstanceOf(InvalidBudgetDataError);
    await expect(failure).rejects.toThrow(/^PostgreSQL cannot process team:a\\u0000b \(SQLSTATE 22021/);
    // A missing row is an answer, not an error.
    expect(await activities.loadBudget({ kind: 'team', id: 'nobody' })).toMatchObject({ row: null });
  });
});
