import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { reconcileLateSpend } from '../../src/db/late-spend.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget, insertKey, insertSpendLog, insertTag, spendOf } from '../helpers/litellm-rows.js';

// Period [START, BOUNDARY) is reset at BOUNDARY; the proxy flushes spend of requests that started in it later.
const START = '2026-03-01T00:00:00.000Z';
const BOUNDARY = '2026-03-01T00:01:00.000Z';
const NEXT = '2026-03-01T00:02:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
let seq = 0;
let p: string;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});
beforeEach(() => {
  seq += 1;
  p = `ls${seq}`;
});

function spendLog(row: { startTime: string; spend: number; apiKey?: string; tags?: string[] }) {
  return insertSpendLog(db.pool, { ...row, requestId: `${p}-${Math.random()}` });
}

/** The proxy's batched spend write: `spend = spend + x` on the entity row, after our reset. */
async function flush(table: string, column: string, id: string, spend: number) {
  await db.pool.query(`UPDATE "${table}" SET spend = spend + $1 WHERE "${column}" = $2`, [spend, id]);
}

async function resetTier(tier: string, periodStart: string | null = START): Promise<string> {
  const result = await resetBudgetTransaction(
    db.pool,
    scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT, { periodStart }),
    { rollover: false },
    tables,
  );
  if (result.outcome !== 'reset') throw new Error(`expected a reset, got ${result.outcome}`);
  return result.resetId;
}

describe('late spend reconciliation', () => {
  it('moves spend of requests that started before the boundary and were flushed after the reset out of the new period', async () => {
    const tier = `${p}-tier`;
    const tag = `${p}:tenant:acme`;
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertKey(db.pool, { token: `${p}-key`, spend: 0.01, budgetId: tier });
    await insertTag(db.pool, { name: tag, spend: 0.01, budgetId: tier });
    // Flushed before the reset: 0.01 at :10. Not yet flushed at the reset: 0.06 started at :58.
    await spendLog({ startTime: '2026-03-01T00:00:10.000Z', spend: 0.01, apiKey: `${p}-key`, tags: [tag] });
    await spendLog({
      startTime: '2026-03-01T00:00:58.000Z',
      spend: 0.06,
      apiKey: `${p}-key`,
      tags: [tag, 'x'],
    });
    const resetId = await resetTier(tier);
    // After the reset: the late flush, and a request of the new period (0.002 at 00:01:03).
    await flush('LiteLLM_TagTable', 'tag_name', tag, 0.06 + 0.002);
    await flush('LiteLLM_VerificationToken', 'token', `${p}-key`, 0.06 + 0.002);
    await spendLog({ startTime: '2026-03-01T00:01:03.000Z', spend: 0.002, apiKey: `${p}-key`, tags: [tag] });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBeCloseTo(0.062, 10);

    const result = await reconcileLateSpend(db.pool, resetId);

    expect(result.checked).toBe(true);
    expect(result.corrections.map((c) => [c.entityType, c.lateSpend])).toEqual([
      ['key', expect.closeTo(0.06, 10)],
      ['tag', expect.closeTo(0.06, 10)],
    ]);
    // Only the new period's spend is left: the tag is under its budget again.
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBeCloseTo(0.002, 10);
    expect(await spendOf(db.pool, 'LiteLLM_VerificationToken', { token: `${p}-key` })).toBeCloseTo(0.002, 10);
    const audit = await db.pool.query(
      `SELECT entity_type, entity_id, logged_spend, spend_at_reset, late_spend, spend_before, spend_after
         FROM budget_lifecycle.late_spend_correction WHERE reset_id = $1 AND entity_type = 'tag'`,
      [resetId],
    );
    expect(audit.rows).toEqual([
      {
        entity_type: 'tag',
        entity_id: tag,
        logged_spend: expect.closeTo(0.07, 10),
        spend_at_reset: expect.closeTo(0.01, 10),
        late_spend: expect.closeTo(0.06, 10),
        spend_before: expect.closeTo(0.062, 10),
        spend_after: expect.closeTo(0.002, 10),
      },
    ]);
    const check = await db.pool.query(
      `SELECT entities_checked, entities_corrected, late_spend_total FROM budget_lifecycle.late_spend_check
        WHERE reset_id = $1`,
      [resetId],
    );
    expect(check.rows).toEqual([
      { entities_checked: 2, entities_corrected: 2, late_spend_total: expect.closeTo(0.12, 10) },
    ]);
  });

  it('applies once: a retried reconciliation changes nothing', async () => {
    const tier = `${p}-tier`;
    const tag = `${p}:t`;
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: tag, spend: 0, budgetId: tier });
    await spendLog({ startTime: '2026-03-01T00:00:59.500Z', spend: 0.05, tags: [tag] });
    const resetId = await resetTier(tier);
    await flush('LiteLLM_TagTable', 'tag_name', tag, 0.05);

    expect((await reconcileLateSpend(db.pool, resetId)).corrections).toHaveLength(1);
    await flush('LiteLLM_TagTable', 'tag_name', tag, 0.01); // new-period spend after the first run
    const again = await reconcileLateSpend(db.pool, resetId);

    expect(again).toEqual({ checked: false, entitiesChecked: 0, corrections: [] });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBeCloseTo(0.01, 10);
  });

  it('changes nothing when every logged request was flushed before the reset, or spend logs are off', async () => {
    const tier = `${p}-tier`;
    const flushed = `${p}:flushed`;
    const unlogged = `${p}:unlogged`;
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: flushed, spend: 0.03, budgetId: tier });
    await insertTag(db.pool, { name: unlogged, spend: 0.03, budgetId: tier });
    await spendLog({ startTime: '2026-03-01T00:00:30.000Z', spend: 0.03, tags: [flushed] });
    // A request of the previous period (before START) and one of the new period do not count for this one.
    await spendLog({ startTime: '2026-02-28T23:59:59.000Z', spend: 0.5, tags: [flushed] });
    const resetId = await resetTier(tier);
    await spendLog({ startTime: '2026-03-01T00:01:00.000Z', spend: 0.04, tags: [flushed] });
    await flush('LiteLLM_TagTable', 'tag_name', flushed, 0.04);
    // Late spend without a spend log (disable_spend_logs): nothing says when it started, so it stays.
    await flush('LiteLLM_TagTable', 'tag_name', unlogged, 0.02);

    const result = await reconcileLateSpend(db.pool, resetId);

    expect(result).toEqual({ checked: true, entitiesChecked: 2, corrections: [] });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: flushed })).toBeCloseTo(0.04, 10);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: unlogged })).toBeCloseTo(0.02, 10);
  });

  it("corrects nothing after a reset whose period start is unknown (a workflow's first reset)", async () => {
    const tier = `${p}-tier`;
    const tag = `${p}:first`;
    await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: tag, spend: 0.01, budgetId: tier });
    // Months of earlier requests: with no period start they would all look late.
    await spendLog({ startTime: '2025-12-01T00:00:00.000Z', spend: 3, tags: [tag] });
    const resetId = await resetTier(tier, null);
    await flush('LiteLLM_TagTable', 'tag_name', tag, 0.02);

    expect(await reconcileLateSpend(db.pool, resetId)).toEqual({
      checked: true,
      entitiesChecked: 0,
      corrections: [],
    });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBeCloseTo(0.02, 10);
  });

  it('checks a tier of 5,000 end users in one pass and corrects only those with late spend, audited or not', async () => {
    const tier = `${p}-big`;
    const id = (i: number) => `${p}-eu-${i}`;
    await insertBudget(db.pool, { id: tier, maxBudget: 1, duration: '1m', resetAt: BOUNDARY });
    // Every second end user had spend at the reset (audited); the others were at 0 (linked, not audited).
    await db.pool.query(
      `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
       SELECT $1 || '-eu-' || i, CASE WHEN i % 2 = 0 THEN 0.01 ELSE 0 END, $2 FROM generate_series(1, 5000) AS i`,
      [p, tier],
    );
    // Logged in the period: every audited one its 0.01 (flushed before the reset); three of them were late.
    await db.pool.query(
      `INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime", "endTime", end_user)
       SELECT $1 || '-log-' || i, 'acompletion', '', 0.01, '2026-03-01T00:00:10', '2026-03-01T00:00:10', $1 || '-eu-' || i
         FROM generate_series(2, 5000, 2) AS i`,
      [p],
    );
    const lateOnes = [id(2), id(3), id(4999)]; // two audited, one found at 0
    for (const user of lateOnes) {
      await db.pool.query(
        `INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime", "endTime", end_user)
         VALUES ($1, 'acompletion', '', 0.05, '2026-03-01T00:00:59', '2026-03-01T00:00:59', $2)`,
        [`${user}-late`, user],
      );
    }
    const resetId = await resetTier(tier);
    for (const user of lateOnes) await flush('LiteLLM_EndUserTable', 'user_id', user, 0.05);

    const result = await reconcileLateSpend(db.pool, resetId);

    expect(result.entitiesChecked).toBe(5_000);
    expect(result.corrections.map((c) => [c.entityId, c.lateSpend]).sort()).toEqual(
      lateOnes.map((u) => [u, expect.closeTo(0.05, 10)]).sort(),
    );
    for (const user of lateOnes) {
      expect(await spendOf(db.pool, 'LiteLLM_EndUserTable', { user_id: user })).toBeCloseTo(0, 10);
    }
    expect(await spendOf(db.pool, 'LiteLLM_EndUserTable', { user_id: id(6) })).toBe(0);
  });
});
