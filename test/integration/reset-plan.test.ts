import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { zeroSpendSql } from '../../src/db/reset-transaction.js';
import { ENTITY_TYPES, type EntityType } from '../../src/entities.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

// How PostgreSQL runs a herd's zeroing statement, read from its plan (not timed: speed is the benchmarks' job).
// A batch joins up to 500 budgets to every row of an entity table; a join condition PostgreSQL cannot hash or
// merge makes that a nested loop comparing each row with each budget, which at a million end users is minutes.
let db: TestDatabase;
const TIERS = 500;
beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, created_by, updated_by)
     SELECT 'tier-' || i, 'test', 'test' FROM generate_series(1, $1::int) i`,
    [TIERS],
  );
  // 20,000 end users: most in a tier, every tenth with none (the default tier's).
  await db.pool.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'user-' || i, 1, CASE WHEN i % 10 = 0 THEN NULL ELSE 'tier-' || (i % $1::int + 1) END
       FROM generate_series(1, 20000) i`,
    [TIERS],
  );
  await db.pool.query('ANALYZE "LiteLLM_EndUserTable"');
});
afterAll(async () => {
  await db?.drop();
});

function entityType(name: string): EntityType {
  const type = ENTITY_TYPES.find((t) => t.name === name);
  if (!type) throw new Error(`no entity type ${name}`);
  return type;
}

/** The plan of one batch's zeroing of end users, the first tier being the default end-user tier. */
async function plan(includeUnassigned: boolean): Promise<string> {
  const ids = Array.from({ length: TIERS }, (_, i) => `tier-${i + 1}`);
  const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (COSTS OFF) ${zeroSpendSql(entityType('end_user'), { kind: 'tier', includeUnassigned })}`,
    [
      ids.map((_, i) => String(i + 1)),
      ids,
      ids.map(() => '2026-03-01T00:00:00Z'),
      ids.map(() => null),
      ids.map((_, i) => i === 0),
      'end_user',
    ],
  );
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

describe('the zeroing statement of a batch of tiers', () => {
  it.each([
    ['with the default tier owning the unassigned end users', true],
    ['without a default tier', false],
  ])('joins end users to the batch by equality, %s', async (_, includeUnassigned) => {
    const text = await plan(includeUnassigned);
    // A hash or merge join on the tier id, never a join filter evaluated for every pair of row and tier.
    expect(text).toMatch(/(Hash|Merge) Cond: .*budget_id/);
    expect(text).not.toMatch(/Join Filter: .*budget_id/);
  });
});
