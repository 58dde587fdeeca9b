import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetBatcher } from '../../src/db/reset-batcher.js';
import { existingTables, resetBudgetsTransaction } from '../../src/db/reset-transaction.js';
import type { ResetResult } from '../../src/reset-types.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  insertBudget,
  insertEndUser,
  insertKey,
  insertTag,
  resetAtOf,
  spendOf,
} from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

const BOUNDARY = '2026-03-01T00:00:00.000Z';
const NEXT = '2026-03-02T00:00:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

async function auditCount(budgetId: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
    [budgetId],
  );
  return rows[0]?.n ?? 0;
}

describe('resets in batches', () => {
  it('gives every budget of a batch its own fence, audit row and outcome', async () => {
    for (let i = 0; i < 50; i += 1) {
      await insertBudget(db.pool, { id: `b-${i}`, duration: '1d', resetAt: BOUNDARY });
      await insertTag(db.pool, { name: `b-${i}-tag`, spend: i + 1, budgetId: `b-${i}` });
      await insertEndUser(db.pool, { id: `b-${i}-eu`, spend: 2, budgetId: `b-${i}` });
    }
    // One already moved on (someone reset it), one gone.
    await db.pool.query(
      `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = $1::timestamptz AT TIME ZONE 'UTC' WHERE budget_id = 'b-7'`,
      [NEXT],
    );
    const requests = [...Array.from({ length: 50 }, (_, i) => `b-${i}`), 'b-missing'].map((id) =>
      scheduledReset({ kind: 'budget', id }, BOUNDARY, NEXT),
    );
    const outcomes = await resetBudgetsTransaction(db.pool, requests, { rollover: false }, tables);
    expect(outcomes).toHaveLength(51);
    for (const [i, outcome] of outcomes.entries()) {
      if (i === 7) expect(outcome).toEqual({ result: { outcome: 'already_reset', currentResetAt: NEXT } });
      else if (i === 50) expect('error' in outcome && outcome.error.name).toBe('BudgetNotFoundError');
      else {
        expect(outcome).toMatchObject({ result: { outcome: 'reset', entityCount: 2, spendTotal: i + 3 } });
        expect(await auditCount(`b-${i}`)).toBe(1);
        expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', `b-${i}`)).toBe(NEXT);
      }
    }
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: 'b-7-tag' })).toBe(8);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: 'b-8-tag' })).toBe(0);
    // Each entity's audit row belongs to its own budget's reset.
    const { rows } = await db.pool.query<{ budget_id: string; entity_id: string }>(
      `SELECT r.budget_id, e.entity_id FROM budget_lifecycle.reset_log r
         JOIN budget_lifecycle.reset_log_entity e ON e.reset_id = r.id
        WHERE r.budget_id LIKE 'b-%' AND e.entity_type = 'tag'`,
    );
    expect(rows).toHaveLength(49);
    for (const row of rows) expect(row.entity_id).toBe(`${row.budget_id}-tag`);
  });

  it('coalesces concurrent resets, and one budget that fails its batch fails alone', async () => {
    for (let i = 0; i < 30; i += 1) {
      await insertKey(db.pool, { token: `k-${i}`, spend: 1, duration: '1d', resetAt: BOUNDARY });
    }
    const batches: number[] = [];
    const batcher = new ResetBatcher(
      db.pool,
      async () => ({ reset: { rollover: false, lockTimeoutMs: 300 }, tables }),
      (size) => batches.push(size),
    );
    // Another writer holds key k-3's row: a batch that includes it times out on the lock as a whole.
    const holder = await db.pool.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM "LiteLLM_VerificationToken" WHERE token = 'k-3' FOR UPDATE`);
    const settled = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        batcher.reset(scheduledReset({ kind: 'key', id: `k-${i}` }, BOUNDARY, NEXT)),
      ),
    );
    await holder.query('ROLLBACK');
    holder.release();
    for (const [i, s] of settled.entries()) {
      if (i === 3) expect(s.status === 'rejected' && String(s.reason)).toMatch(/lock timeout/);
      else expect(s.status === 'fulfilled' && (s.value as ResetResult).outcome).toBe('reset');
    }
    // Fewer transactions than resets: the ones that queued behind the first went together.
    expect(batches.some((size) => size > 1)).toBe(true);
    expect(await spendOf(db.pool, 'LiteLLM_VerificationToken', { token: 'k-3' })).toBe(1);
    expect(await auditCount('k-3')).toBe(0);
    expect(await auditCount('k-4')).toBe(1);
  });
});
