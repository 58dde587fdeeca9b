/**
 * LiteLLM's own reset job and its spend writer racing our resets of the same rows, on real PostgreSQL. The job is
 * LiteLLM 1.108.14's statement pattern (test/helpers/litellm-job.ts); ours is the reset transaction the worker's
 * activities run (the fence, the period claim and the zeroing all live in it: the workflow only decides the
 * request). The README tells operators to switch LiteLLM's job off; these tests show what happens when both run.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  existingTables,
  resetBudgetsTransaction,
  resetBudgetTransaction,
} from '../../src/db/reset-transaction.js';
import type { ResetRequest } from '../../src/reset-types.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import {
  LITELLM_BATCH_SIZE,
  litellmAddKeySpend,
  litellmCommitTiers,
  litellmKeySweep,
  litellmReadDueTiers,
} from '../helpers/litellm-job.js';
import { insertBudget, insertKey, resetAtOf, spendOf } from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

const DAY = 86_400_000;
/**
 * The clock LiteLLM's key sweep reads: fixed, so that its next boundary is the day after BOUNDARY like ours, even
 * when the file runs across midnight (on the wall clock the sweep would then move the keys a day further).
 */
const NOW = new Date();
/** Today's midnight (UTC), already passed: due for LiteLLM's sweep and for us. */
const BOUNDARY = new Date(Math.floor(NOW.getTime() / DAY) * DAY).toISOString();
const NEXT = new Date(Date.parse(BOUNDARY) + DAY).toISOString();
const OPTIONS = { rollover: false };

let db: TestDatabase;
let tables: Set<string>;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

/** Runs `fn` on a client of its own (one LiteLLM pod, one writer), released afterwards. */
async function onClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/** Our reset of `requests`, retried like the activity retries a transient error (a deadlock victim here). */
async function ourResets(requests: ResetRequest[]) {
  for (;;) {
    try {
      return await resetBudgetsTransaction(db.pool, requests, OPTIONS, tables);
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01') throw error;
    }
  }
}

async function auditOf(kind: string, prefix: string) {
  const { rows } = await db.pool.query<{ budget_id: string; period_end: Date; spend_before: number | null }>(
    `SELECT l.budget_id, l.period_end, e.spend_before
       FROM budget_lifecycle.reset_log l LEFT JOIN budget_lifecycle.reset_log_entity e ON e.reset_id = l.id
      WHERE l.budget_kind = $1 AND l.budget_id LIKE $2`,
    [kind, `${prefix}%`],
  );
  return rows;
}

describe("LiteLLM's key sweep and spend writer racing our key resets", () => {
  it('resets every key exactly once, and no spend written after a key was reset is erased', async () => {
    // Two of LiteLLM's pages, so its sweep reads, writes and reads again while we reset the same keys.
    const count = LITELLM_BATCH_SIZE + 100;
    const tokens = Array.from({ length: count }, (_, i) => `race-key-${String(i).padStart(4, '0')}`);
    await db.pool.query(
      `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, budget_reset_at)
       SELECT t, 10, '1d', $2::timestamptz AT TIME ZONE 'UTC' FROM unnest($1::text[]) AS t`,
      [tokens, BOUNDARY],
    );

    // LiteLLM's spend writer: `spend = spend + x` on keys picked in turn, each increment remembering whether it
    // landed before the key's reset (budget_reset_at still the boundary) or after it (the new period).
    const old = new Map<string, number>();
    const fresh = new Map<string, number>();
    let stop = false;
    let freshDuringRace = 0;
    let writes = 0;
    let racing = true;
    const writer = onClient(async (client) => {
      for (let i = 0; !stop; i++) {
        const token = tokens[(i * 7919) % count] as string;
        const amount = 1 + (i % 5);
        const landedBefore = await litellmAddKeySpend(client, token, amount);
        const bucket = landedBefore === BOUNDARY ? old : fresh;
        bucket.set(token, (bucket.get(token) ?? 0) + amount);
        if (bucket === fresh && racing) freshDuringRace++;
        writes++;
      }
    });
    await expect.poll(() => writes, { timeout: LIMITS.database }).toBeGreaterThan(50);

    // Ours: every key, in batches of 25 (as the batcher groups a herd), in an order of its own; LiteLLM's: its
    // pages, in the order PostgreSQL returns them. Half of our batches commit between LiteLLM's read of its first
    // page and its write (so its guarded updates meet keys we reset), and the writer bills new-period spend on them
    // meanwhile; the other half race the rest of its sweep.
    const requests = tokens.map((token) => scheduledReset({ kind: 'key', id: token }, BOUNDARY, NEXT));
    const shuffled = requests.map((_, i) => requests[(i * 263) % count] as ResetRequest);
    const batches = Array.from({ length: Math.ceil(count / 25) }, (_, i) =>
      shuffled.slice(i * 25, i * 25 + 25),
    );
    const ours: Awaited<ReturnType<typeof ourResets>> = [];
    const runOurs = async (n: number) => {
      for (const batch of batches.splice(0, n)) ours.push(...(await ourResets(batch)));
    };
    const litellm = await onClient(async (client) => {
      let rest: Promise<void> | undefined;
      const sweep = await litellmKeySweep(client, {
        clock: () => NOW,
        afterRead: async (page) => {
          if (page !== 0) return;
          await runOurs(batches.length / 2);
          await expect.poll(() => freshDuringRace, { timeout: LIMITS.database }).toBeGreaterThan(0);
          rest = runOurs(batches.length);
        },
      });
      await rest;
      return sweep;
    });
    racing = false;
    // Some spend of the new period after both resetters are done, too.
    const settled = writes;
    await expect.poll(() => writes, { timeout: LIMITS.database }).toBeGreaterThan(settled + 100);
    stop = true;
    await writer;

    expect(ours.every((o) => 'result' in o)).toBe(true);
    const audit = await auditOf('key', 'race-key-');
    const oursById = new Map(audit.map((row) => [row.budget_id, row]));
    const litellmMatched = new Map(litellm.filter((w) => w.matched).map((w) => [w.token, w]));
    // Both resetters did part of the work, and LiteLLM's fence turned some of its writes into no-ops.
    expect(ours).toHaveLength(count);
    expect(oursById.size).toBeGreaterThan(0);
    expect(litellmMatched.size).toBeGreaterThan(0);
    expect(litellm.some((w) => !w.matched)).toBe(true);

    const { rows } = await db.pool.query<{ token: string; spend: number; reset_at: Date }>(
      `SELECT token, spend, budget_reset_at AT TIME ZONE 'UTC' AS reset_at
         FROM "LiteLLM_VerificationToken" WHERE token LIKE 'race-key-%'`,
    );
    expect(rows).toHaveLength(count);
    for (const row of rows) {
      const mine = oursById.get(row.token);
      const theirs = litellmMatched.get(row.token);
      // Exactly one of the two reset this key's period, and it moved on to the next day.
      expect([mine !== undefined, theirs !== undefined], row.token).toSatisfy(([a, b]) => a !== b);
      expect(row.reset_at.toISOString()).toBe(NEXT);
      const newSpend = fresh.get(row.token) ?? 0;
      const oldSpend = old.get(row.token) ?? 0;
      if (mine) {
        // We erased exactly the old period's spend (the seed and what landed before our lock), nothing after.
        expect(mine.spend_before, row.token).toBe(10 + oldSpend);
        expect(row.spend, row.token).toBe(newSpend);
      } else {
        // LiteLLM subtracted what it read; old-period spend that landed after its read is carried over. Either
        // way nothing of the new period is lost, and every unit of spend is accounted for.
        expect(row.spend, row.token).toBeGreaterThanOrEqual(newSpend);
        expect(row.spend + (theirs?.decrement ?? 0), row.token).toBe(10 + oldSpend + newSpend);
      }
    }
  });
});

describe('two overlapping sweeps of the same tier', () => {
  /** A tier due at the boundary with one linked key of spend 10 (no schedule of its own). */
  async function tierWithKey(name: string): Promise<{ tier: string; key: string }> {
    const tier = `tier-${name}`;
    const key = `tier-key-${name}`;
    await insertBudget(db.pool, { id: tier, maxBudget: 100, duration: '1d', resetAt: BOUNDARY });
    await insertKey(db.pool, { token: key, spend: 10, budgetId: tier });
    return { tier, key };
  }
  const keySpend = (key: string) => spendOf(db.pool, 'LiteLLM_VerificationToken', { token: key });
  const tierResetAt = (tier: string) => resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', tier);

  it("LiteLLM's: the second sweep zeroes the spend of the new period", async () => {
    const { tier, key } = await tierWithKey('litellm');
    await onClient(async (podA) =>
      onClient(async (podB) => {
        // Two pods (the lease lost, or "sweeping unguarded rather than skipping the tick") both read the tier.
        const first = await litellmReadDueTiers(podA);
        const second = await litellmReadDueTiers(podB);
        expect(first.budgetIds).toContain(tier);
        expect(second.budgetIds).toContain(tier);
        await litellmCommitTiers(podA, first);
        expect(await keySpend(key)).toBe(0);
        // A request of the new period is billed...
        await litellmAddKeySpend(db.pool, key, 7);
        // ...and the second sweep, which read the tier before the first committed, erases it.
        await litellmCommitTiers(podB, second);
      }),
    );
    expect(await keySpend(key)).toBe(0);
  });

  it('ours: the second reset of the same period changes nothing, whether it overlaps or comes late', async () => {
    const { tier, key } = await tierWithKey('ours');
    const request = scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT);
    // Overlapping: a LiteLLM writer holds the tier row, both resets queue behind it; one wins.
    const outcomes = await onClient(async (holder) => {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "LiteLLM_BudgetTable" WHERE budget_id = $1 FOR UPDATE`, [tier]);
      const both = Promise.all([
        resetBudgetTransaction(db.pool, request, OPTIONS, tables),
        resetBudgetTransaction(db.pool, request, OPTIONS, tables),
      ]);
      await expect
        .poll(
          async () => {
            const { rows } = await db.pool.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'`,
            );
            return rows[0]?.n;
          },
          { timeout: LIMITS.database },
        )
        .toBe(2);
      await holder.query('COMMIT');
      return both;
    });
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(['already_reset', 'reset']);
    // Late: the same period reset again after new-period spend was billed (a retry, a second worker).
    await litellmAddKeySpend(db.pool, key, 7);
    const late = await resetBudgetTransaction(db.pool, request, OPTIONS, tables);
    expect(late.outcome).toBe('already_reset');
    expect(await keySpend(key)).toBe(7);
    expect(await tierResetAt(tier)).toBe(NEXT);
    expect((await auditOf('budget', tier)).map((row) => row.spend_before)).toEqual([10]);
  });

  it("ours after LiteLLM's sweep: the fence sees the moved boundary and leaves the new period's spend", async () => {
    const { tier, key } = await tierWithKey('litellm-first');
    await onClient(async (pod) => litellmCommitTiers(pod, await litellmReadDueTiers(pod)));
    await litellmAddKeySpend(db.pool, key, 7);
    const ours = await resetBudgetTransaction(
      db.pool,
      scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT),
      OPTIONS,
      tables,
    );
    expect(ours.outcome).toBe('already_reset');
    expect(await keySpend(key)).toBe(7);
    expect(await auditOf('budget', tier)).toEqual([]);
  });

  it("LiteLLM's sweep after ours, having read the tier before we committed: LiteLLM erases the new period", async () => {
    // Why LiteLLM's job must be off (README, step 1): its tier cascade has no fence, so ours cannot stop it.
    const { tier, key } = await tierWithKey('ours-first');
    await onClient(async (pod) => {
      const cascade = await litellmReadDueTiers(pod);
      const ours = await resetBudgetTransaction(
        db.pool,
        scheduledReset({ kind: 'budget', id: tier }, BOUNDARY, NEXT),
        OPTIONS,
        tables,
      );
      expect(ours.outcome).toBe('reset');
      await litellmAddKeySpend(db.pool, key, 7);
      await litellmCommitTiers(pod, cascade);
    });
    expect(await keySpend(key)).toBe(0);
  });
});
