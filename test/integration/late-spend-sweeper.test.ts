import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DueCheck } from '../../src/db/late-spend.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { LateSpendSweeper } from '../../src/late-spend-sweeper.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertSpendLog, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

// The worker's late-spend sweeper on real PostgreSQL: each reset's check is due BUDGET_LATE_SPEND_DELAY after it
// (committed with the reset), runs once across any number of workers, and a failing one never blocks the rest.
const START = '2026-03-01T00:00:00.000Z';
const BOUNDARY = '2026-03-01T00:01:00.000Z';
const NEXT = '2026-03-01T00:02:00.000Z';
/** A request that started two seconds before the boundary; its spend reaches the tag after the reset. */
const LATE_START = '2026-03-01T00:00:58.000Z';

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
  p = `sw${seq}`;
});

/** A tier with one tag, reset at BOUNDARY with its check due `delayMs` later, then the late flush of 0.06. */
async function resetWithLateSpend(
  name: string,
  delayMs: number | undefined,
): Promise<{ resetId: string; tag: string }> {
  const tier = `${p}-${name}`;
  const tag = `${tier}:tag`;
  await insertBudget(db.pool, { id: tier, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
  await insertTag(db.pool, { name: tag, spend: 0, budgetId: tier });
  await insertSpendLog(db.pool, {
    requestId: `${tag}-late`,
    startTime: LATE_START,
    spend: 0.06,
    tags: [tag],
  });
  const result = await resetBudgetTransaction(
    db.pool,
    scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT, { periodStart: START }),
    { rollover: false, lateSpendDelayMs: delayMs },
    tables,
  );
  if (result.outcome !== 'reset') throw new Error(`expected a reset, got ${result.outcome}`);
  await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = spend + 0.06 WHERE tag_name = $1`, [tag]);
  return { resetId: result.resetId, tag };
}

async function due(resetId: string): Promise<{ due: Date | null; attempts: number; checked: boolean }> {
  const { rows } = await db.pool.query<{ due: Date | null; attempts: number; checked: boolean }>(
    `SELECT r.late_spend_due_at AS due, r.late_spend_attempts AS attempts,
            EXISTS (SELECT 1 FROM budget_lifecycle.late_spend_check c WHERE c.reset_id = r.id) AS checked
       FROM budget_lifecycle.reset_log r WHERE r.id = $1`,
    [resetId],
  );
  return rows[0]!;
}

function sweeper(extra: Partial<ConstructorParameters<typeof LateSpendSweeper>[0]> = {}): LateSpendSweeper {
  return new LateSpendSweeper({ db: db.pool, intervalMs: 60_000, concurrency: 2, ...extra });
}

describe('the late-spend sweeper', () => {
  it('runs a check only once it is due, corrects the late spend, and clears the due time', async () => {
    const later = await resetWithLateSpend('later', 3_600_000);
    const now = await resetWithLateSpend('now', 0);
    const checks: DueCheck[] = [];
    const s = sweeper({ onCheck: (c) => checks.push(c) });

    await s.sweep();

    expect(checks.map((c) => c.resetId)).toContain(now.resetId);
    expect(checks.map((c) => c.resetId)).not.toContain(later.resetId);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: now.tag })).toBeCloseTo(0, 10);
    expect(await due(now.resetId)).toEqual({ due: null, attempts: 0, checked: true });
    // Not due for an hour: untouched, still due.
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: later.tag })).toBeCloseTo(0.06, 10);
    expect(await due(later.resetId)).toMatchObject({ due: expect.any(Date), checked: false });
    // Nothing is due any more: a second sweep changes nothing.
    await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = spend + 0.01 WHERE tag_name = $1`, [now.tag]);
    checks.length = 0;
    await s.sweep();
    expect(checks.map((c) => c.resetId)).not.toContain(now.resetId);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: now.tag })).toBeCloseTo(0.01, 10);
  });

  it('leaves a reset made with the check off alone', async () => {
    const off = await resetWithLateSpend('off', undefined);
    await sweeper().sweep();
    expect(await due(off.resetId)).toEqual({ due: null, attempts: 0, checked: false });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: off.tag })).toBeCloseTo(0.06, 10);
  });

  it('checks each due reset exactly once when two workers sweep at the same time', async () => {
    const resets: Array<{ resetId: string; tag: string }> = [];
    for (let i = 0; i < 20; i++) resets.push(await resetWithLateSpend(`herd${i}`, 0));
    const seen: string[] = [];
    const onCheck = (c: DueCheck) => seen.push(c.resetId);

    await Promise.all([sweeper({ onCheck }).sweep(), sweeper({ onCheck }).sweep()]);

    const ours = seen.filter((id) => resets.some((r) => r.resetId === id));
    expect(ours.sort()).toEqual(resets.map((r) => r.resetId).sort());
    for (const r of resets) {
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: r.tag })).toBeCloseTo(0, 10);
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM budget_lifecycle.late_spend_correction WHERE reset_id = $1`,
        [r.resetId],
      );
      expect(rows[0].n).toBe(1);
    }
  });

  it('postpones a check that cannot run, goes on with the others, and drops it after its last try', async () => {
    const blocked = await resetWithLateSpend('blocked', 0);
    const free = await resetWithLateSpend('free', 0);
    // LiteLLM's spend writer holding the tag's row for longer than the check waits.
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "LiteLLM_TagTable" WHERE tag_name = $1 FOR UPDATE`, [blocked.tag]);
      const checks: DueCheck[] = [];
      await sweeper({ lockTimeoutMs: 100, onCheck: (c) => checks.push(c) }).sweep();

      const failed = checks.find((c) => c.resetId === blocked.resetId);
      expect(failed && 'error' in failed && failed.error.message).toMatch(/lock timeout/);
      expect(failed && 'retryAt' in failed && failed.retryAt).toBeInstanceOf(Date);
      expect(await due(blocked.resetId)).toMatchObject({
        attempts: 1,
        checked: false,
        due: expect.any(Date),
      });
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: free.tag })).toBeCloseTo(0, 10);

      // Its last try: due again now, with four failures behind it.
      await db.pool.query(
        `UPDATE budget_lifecycle.reset_log SET late_spend_due_at = now(), late_spend_attempts = 4 WHERE id = $1`,
        [blocked.resetId],
      );
      checks.length = 0;
      await sweeper({ lockTimeoutMs: 100, onCheck: (c) => checks.push(c) }).sweep();
      expect(checks.find((c) => c.resetId === blocked.resetId)).toMatchObject({ retryAt: null });
      expect(await due(blocked.resetId)).toEqual({ due: null, attempts: 5, checked: false });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    // Nothing was half-applied by the failed tries.
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: blocked.tag })).toBeCloseTo(0.06, 10);
  });

  it('keeps sweeping on its own once started, and stops cleanly', async () => {
    let looks = 0;
    const checked: string[] = [];
    const s = sweeper({ intervalMs: 50, onLook: () => looks++, onCheck: (c) => checked.push(c.resetId) });
    s.start();
    try {
      const r = await resetWithLateSpend('timer', 0);
      await expect.poll(async () => (await due(r.resetId)).checked, { timeout: LIMITS.database }).toBe(true);
    } finally {
      await s.stop();
    }
    const looksWhenStopped = looks;
    const after = await resetWithLateSpend('stopped', 0);
    // A second sweeper on the same interval, started after the stop, looks three times and checks the new reset:
    // the stopped one had as many chances to look (its timers share this process's event loop), and a look would
    // have found a due check.
    let witnessLooks = 0;
    const witnessed: string[] = [];
    const witness = sweeper({
      intervalMs: 50,
      onLook: () => witnessLooks++,
      onCheck: (c) => witnessed.push(c.resetId),
    });
    witness.start();
    try {
      await expect.poll(() => witnessLooks, { timeout: LIMITS.database }).toBeGreaterThanOrEqual(3);
    } finally {
      await witness.stop();
    }
    expect(looks).toBe(looksWhenStopped);
    expect(checked).not.toContain(after.resetId);
    expect(witnessed).toContain(after.resetId);
  });
});
