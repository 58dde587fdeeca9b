/**
 * Our window resets against LiteLLM's own job, case by case. The fixture (`generate-window-fixture.py`, run by
 * `npm run parity:fixture`) holds what LiteLLM 1.108.14's real `_reset_windows_for` did to each case with only its
 * database and Redis replaced by recorders: the `budget_limits` it wrote, the counters it SET, and the statements
 * it sent to `LiteLLM_BudgetWindowSpend`. Here every case is seeded in real PostgreSQL and Redis; LiteLLM's
 * recorded statements are replayed on those rows (in a transaction rolled back), then each due window is reset by
 * our code as the reset activity does it, and the whole `budget_limits`, every counter and every window-spend row
 * are compared. A difference must belong to a deliberate difference class (`deliberate-differences.ts`), and
 * every class must explain at least one case.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { invalidateResetCaches, readWindowCounter } from '../../src/cache/invalidation.js';
import { LITELLM_REDIS_TTL_SECONDS } from '../../src/config.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { windowRowsSql } from '../../src/db/window-budget.js';
import { planReset } from '../../src/reset-plan.js';
import { DEFAULT_SCHEDULE, parseDuration } from '../../src/schedule.js';
import { WINDOW_OWNERS } from '../../src/window-id.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  budgetLimitsOf,
  insertKey,
  insertTeam,
  insertWindowSpend,
  setBudgetLimits,
} from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import {
  WINDOW_DELIBERATE_DIFFERENCES,
  type WindowCase,
  type WindowDifference,
} from './deliberate-differences.js';

const LITELLM_VERSION = '1.108.14';
const fixture = JSON.parse(
  readFileSync(new URL(`./fixtures/windows-litellm-${LITELLM_VERSION}.json`, import.meta.url), 'utf8'),
) as { readonly litellm: string; readonly cases: readonly WindowCase[] };

/** What `updated_at` of a seeded window-spend row holds until a statement writes the row. */
const SEEDED_UPDATED_AT = '2000-01-01T00:00:00.000Z';
/** The expiry seeded counters carry, so a SET is seen to replace or keep it. */
const SEEDED_TTL_S = 86_400;

interface SpendRow {
  readonly duration: string;
  readonly windowStart: string;
  readonly spend: number;
  readonly written: boolean;
}
interface Counter {
  readonly value: string | null;
  /** The expiry the counter was last set with, in seconds; null for none. */
  readonly expiresIn: number | null;
}

/** Our counter's expiry as it was set: Redis counts a TTL down, so a seeded one is told from a reset's by size. */
const setExpiry = (ttl: number): number | null =>
  ttl < 0 ? null : ttl > LITELLM_REDIS_TTL_SECONDS ? SEEDED_TTL_S : LITELLM_REDIS_TTL_SECONDS;
/** Everything a window reset may change, for one case. */
interface Outcome {
  readonly limits: unknown;
  readonly counters: Readonly<Record<string, Counter>>;
  readonly spendRows: readonly SpendRow[];
}

let db: TestDatabase;
let tables: Set<string>;
let redis: Redis;
let ns: string;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
  redis = new Redis(services().redisUrl);
  ns = uniqueName('windows');
});
afterAll(async () => {
  vi.useRealTimers();
  redis?.disconnect();
  await db?.drop();
});

const ownerOf = (c: WindowCase) => ({ table: WINDOW_OWNERS[c.owner].table, id: c.id }) as const;

async function seed(c: WindowCase): Promise<void> {
  if (c.owner === 'key') await insertKey(db.pool, { token: c.id });
  else await insertTeam(db.pool, { id: c.id });
  await setBudgetLimits(
    db.pool,
    ownerOf(c) as { table: 'LiteLLM_VerificationToken' | 'LiteLLM_TeamTable'; id: string },
    c.limits,
  );
  for (const [key, value] of Object.entries(c.counters)) {
    await redis.set(`${ns}:${key}`, value, 'EX', SEEDED_TTL_S);
  }
  for (const row of c.spendRows) {
    await insertWindowSpend(db.pool, { entityType: c.owner, entityId: c.id, ...row });
  }
  await db.pool.query(
    `UPDATE "LiteLLM_BudgetWindowSpend" SET updated_at = ($3::timestamptz AT TIME ZONE 'UTC')
      WHERE entity_type = $1 AND entity_id = $2`,
    [c.owner, c.id, SEEDED_UPDATED_AT],
  );
}

async function spendRowsOf(client: Pick<TestDatabase['pool'], 'query'>, c: WindowCase): Promise<SpendRow[]> {
  const { rows } = await client.query<{
    duration: string;
    window_start: Date;
    spend: number;
    written: boolean;
  }>(
    `SELECT window_duration AS duration, window_start AT TIME ZONE 'UTC' AS window_start, spend,
            updated_at <> ($3::timestamptz AT TIME ZONE 'UTC') AS written
       FROM "LiteLLM_BudgetWindowSpend" WHERE entity_type = $1 AND entity_id = $2 ORDER BY window_duration`,
    [c.owner, c.id, SEEDED_UPDATED_AT],
  );
  return rows.map((r) => ({
    duration: r.duration,
    windowStart: r.window_start.toISOString(),
    spend: r.spend,
    written: r.written,
  }));
}

/** LiteLLM's outcome: its recorded statements replayed on the seeded rows (rolled back), its writes as recorded. */
async function litellmOutcome(c: WindowCase): Promise<Outcome> {
  const client = await db.pool.connect();
  let spendRows: SpendRow[];
  try {
    await client.query('BEGIN');
    for (const s of c.litellm.spendStatements) await client.query(s.sql, [...s.params]);
    spendRows = await spendRowsOf(client, c);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
  const counters: Record<string, Counter> = {};
  for (const [key, value] of Object.entries(c.counters)) counters[key] = { value, expiresIn: SEEDED_TTL_S };
  for (const [key, value, ex] of c.litellm.counterSets) counters[key] = { value, expiresIn: ex };
  return { limits: c.litellm.limits ?? c.limits, counters, spendRows };
}

/** Ours: each window our discovery reads as due at `now`, reset as the reset activity does it, then its caches. */
async function ourOutcome(c: WindowCase): Promise<Outcome> {
  vi.setSystemTime(new Date(c.now));
  const { rows } = await db.pool.query<{ id: string; duration: string; reset_at: Date | null }>(
    `SELECT w.id, w.duration, w.reset_at AT TIME ZONE 'UTC' AS reset_at
       FROM (${windowRowsSql({ key: '$1', team: '$2' })}) w ORDER BY w.id`,
    [c.owner === 'key' ? [c.id] : [], c.owner === 'team' ? [c.id] : []],
  );
  const resetIds: string[] = [];
  for (const row of rows) {
    if (row.reset_at === null || row.reset_at.getTime() > Date.parse(c.now)) continue;
    let duration;
    try {
      duration = parseDuration(row.duration);
    } catch {
      continue; // invalid here: never reset (the schedule parity test covers which durations)
    }
    const request = planReset(
      {
        kind: 'window',
        id: row.id,
        expectedResetAt: row.reset_at.toISOString(),
        now: c.now,
        duration: row.duration,
        periodStart: null,
      },
      duration,
      DEFAULT_SCHEDULE,
    );
    const result = await resetBudgetTransaction(
      db.pool,
      request,
      {
        rollover: c.rollover,
        readWindowCounter: (key) => readWindowCounter(redis, ns, key).catch(() => null),
      },
      tables,
    );
    if (result.outcome === 'reset') resetIds.push(result.resetId);
  }
  if (resetIds.length > 0) await invalidateResetCaches(db.pool, redis, ns, resetIds);

  const counters: Record<string, Counter> = {};
  const keys = new Set([...Object.keys(c.counters), ...c.litellm.counterSets.map(([key]) => key)]);
  for (const key of keys) {
    const value = await redis.get(`${ns}:${key}`);
    counters[key] = { value, expiresIn: setExpiry(await redis.ttl(`${ns}:${key}`)) };
  }
  return {
    limits: await budgetLimitsOf(db.pool, ownerOf(c) as Parameters<typeof budgetLimitsOf>[1]),
    counters,
    spendRows: await spendRowsOf(db.pool, c),
  };
}

const durationOf = (element: unknown): string | null =>
  typeof element === 'object' && element !== null && 'budget_duration' in element
    ? String((element as { budget_duration: unknown }).budget_duration)
    : null;

/** The differences of one case, one per window element, counter and window-spend row. */
function differences(c: WindowCase, litellm: Outcome, ours: Outcome): WindowDifference[] {
  const found: WindowDifference[] = [];
  const theirs = Array.isArray(litellm.limits) ? litellm.limits : [litellm.limits];
  const mine = Array.isArray(ours.limits) ? ours.limits : [ours.limits];
  for (let i = 0; i < Math.max(theirs.length, mine.length); i++) {
    if (!isDeepStrictEqual(theirs[i], mine[i])) {
      found.push({ aspect: 'limits', duration: durationOf(c.limits[i]), litellm: theirs[i], ours: mine[i] });
    }
  }
  for (const key of new Set([...Object.keys(litellm.counters), ...Object.keys(ours.counters)])) {
    const [a, b] = [litellm.counters[key], ours.counters[key]];
    if (!isDeepStrictEqual(a, b)) {
      found.push({
        aspect: 'counter',
        duration: key.slice(key.lastIndexOf(':window:') + 8),
        litellm: a,
        ours: b,
      });
    }
  }
  const durations = new Set([...litellm.spendRows, ...ours.spendRows].map((r) => r.duration));
  for (const duration of durations) {
    const [a, b] = [litellm.spendRows, ours.spendRows].map((rows) =>
      rows.find((r) => r.duration === duration),
    );
    if (!isDeepStrictEqual(a, b)) found.push({ aspect: 'spendRow', duration, litellm: a, ours: b });
  }
  return found;
}

interface Compared {
  readonly c: WindowCase;
  readonly diffs: readonly { readonly d: WindowDifference; readonly explainedBy: string | null }[];
}
const compared: Compared[] = [];

const describeDiff = (c: WindowCase, d: WindowDifference): string =>
  `${c.name} (${c.owner} ${c.id} at ${c.now}${c.rollover ? ', rollover' : ''}) ${d.aspect} ${d.duration}: ` +
  `LiteLLM ${JSON.stringify(d.litellm)}, ours ${JSON.stringify(d.ours)}`;

describe(`window resets match LiteLLM ${LITELLM_VERSION}'s own job`, () => {
  it('has a fixture written by the LiteLLM version we claim, over hundreds of cases', () => {
    expect(fixture.litellm).toBe(LITELLM_VERSION);
    expect(fixture.cases.length).toBeGreaterThan(300);
    const resets = fixture.cases.reduce((n, c) => n + c.litellm.counterSets.length, 0);
    expect(resets).toBeGreaterThan(300);
  });

  it('leaves every budget_limits, counter and window-spend row as LiteLLM does, but for the deliberate differences', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      for (const c of fixture.cases) {
        await seed(c);
        const litellm = await litellmOutcome(c);
        const ours = await ourOutcome(c);
        compared.push({
          c,
          diffs: differences(c, litellm, ours).map((d) => ({
            d,
            explainedBy: WINDOW_DELIBERATE_DIFFERENCES.find((cls) => cls.explains(c, d))?.name ?? null,
          })),
        });
      }
    } finally {
      vi.useRealTimers();
    }
    const unexplained = compared.flatMap(({ c, diffs }) =>
      diffs.filter((x) => x.explainedBy === null).map((x) => describeDiff(c, x.d)),
    );
    expect(
      unexplained.slice(0, 30),
      `${unexplained.length} differences from LiteLLM with no deliberate reason`,
    ).toEqual([]);
  });

  it.each(WINDOW_DELIBERATE_DIFFERENCES.map((d) => [d.name] as const))(
    'the deliberate difference %s explains at least one case',
    (name) => {
      expect(compared.length, 'the comparison ran').toBe(fixture.cases.length);
      expect(
        compared.filter(({ diffs }) => diffs.some((x) => x.explainedBy === name)).length,
      ).toBeGreaterThan(0);
    },
  );

  it('agrees with LiteLLM on the values of most cases, not only within the deliberate differences', () => {
    // Counters included (value and expiry): most cases need no deliberate difference at all.
    const same = compared.filter(({ diffs }) => diffs.length === 0);
    expect(same.length).toBeGreaterThan(fixture.cases.length / 2);
  });
});
