import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateResetCaches, readWindowCounter } from '../../src/cache/invalidation.js';
import { findScheduleChanges } from '../../src/db/budget-sync.js';
import { discoverBudgetPage } from '../../src/db/discovery.js';
import { existingTables, loadBudgetRow, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { settleSchedule } from '../../src/db/schedule-row.js';
import type { ResetResult } from '../../src/reset-types.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { pythonFloat, pythonIsoFormat } from '../../src/window-id.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  budgetLimitsOf,
  insertKey,
  insertTeam,
  insertWindowSpend,
  setBudgetLimits,
  windowSpendOf,
} from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { services, uniqueName } from '../helpers/services.js';

const HOUR_DUE = '2026-03-01T10:00:00.000Z';
const HOUR_NEXT = '2026-03-01T11:00:00.000Z';
const DAY_LATER = '2026-03-02T00:00:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
let redis: Redis;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
  redis = new Redis(services().redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await db?.drop();
});

const KEYS = 'LiteLLM_VerificationToken' as const;
const TEAMS = 'LiteLLM_TeamTable' as const;

/** A reset of one window, the counter read from Redis under `ns` as the worker does. */
function resetWindow(id: string, ns: string, opts: { rollover?: boolean; due?: string; next?: string } = {}) {
  return resetBudgetTransaction(
    db.pool,
    scheduledReset({ kind: 'window', id }, opts.due ?? HOUR_DUE, opts.next ?? HOUR_NEXT),
    {
      rollover: opts.rollover ?? false,
      readWindowCounter: (key) => readWindowCounter(redis, ns, key),
    },
    tables,
  );
}

async function audit(resetId: string) {
  const { rows } = await db.pool.query<{
    entity_type: string;
    entity_id: string;
    before: number;
    after: number;
  }>(
    `SELECT entity_type, entity_id, spend_before AS before, spend_after AS after
       FROM budget_lifecycle.reset_log_entity WHERE reset_id = $1 ORDER BY entity_type`,
    [resetId],
  );
  return rows;
}

function resetIdOf(result: ResetResult): string {
  if (result.outcome !== 'reset') throw new Error(`expected a reset, got ${result.outcome}`);
  return result.resetId;
}

describe('window budgets', () => {
  it('the pinned LiteLLM schema has budget_limits and LiteLLM_BudgetWindowSpend', () => {
    expect(tables.has('LiteLLM_BudgetWindowSpend')).toBe(true);
  });

  it('resets only the due window of a key: reset_at moved in the JSON, counter set, spend row rolled, fenced, audited', async () => {
    const ns = uniqueName('ns');
    const token = uniqueName('tok');
    await insertKey(db.pool, { token, spend: 7 });
    // Other fields, including ones we do not know, must come back untouched; reset_at as LiteLLM writes it.
    const day = {
      budget_duration: '1d',
      max_budget: 50,
      reset_at: '2026-03-02T00:00:00+00:00',
      note: 'keep',
    };
    await setBudgetLimits(db.pool, { table: KEYS, id: token }, [
      { budget_duration: '1h', max_budget: 5, reset_at: '2026-03-01T10:00:00+00:00', label: 'hourly' },
      day,
    ]);
    await insertWindowSpend(db.pool, {
      entityType: 'key',
      entityId: token,
      duration: '1h',
      windowStart: '2026-03-01T09:00:00.000Z',
      spend: 4.5,
    });
    await insertWindowSpend(db.pool, {
      entityType: 'key',
      entityId: token,
      duration: '1d',
      windowStart: '2026-03-01T00:00:00.000Z',
      spend: 12,
    });
    await redis.set(`${ns}:spend:key:${token}:window:1h`, '4.5');
    await redis.set(`${ns}:spend:key:${token}:window:1d`, '12.0');

    const id = `key:${token}:1h`;
    expect(await loadBudgetRow(db.pool, { kind: 'window', id })).toMatchObject({
      kind: 'window',
      duration: '1h',
      resetAt: HOUR_DUE,
      maxBudget: 5,
    });
    const result = await resetWindow(id, ns);
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 4.5 });
    const resetId = resetIdOf(result);

    expect(await budgetLimitsOf(db.pool, { table: KEYS, id: token })).toEqual([
      { budget_duration: '1h', max_budget: 5, reset_at: '2026-03-01T11:00:00+00:00', label: 'hourly' },
      day,
    ]);
    // LiteLLM's roll: window_start = next reset_at - duration, spend 0; the other window's row is untouched.
    expect(await windowSpendOf(db.pool, { entityType: 'key', entityId: token, duration: '1h' })).toEqual({
      windowStart: '2026-03-01T10:00:00.000Z',
      spend: 0,
    });
    expect(await windowSpendOf(db.pool, { entityType: 'key', entityId: token, duration: '1d' })).toEqual({
      windowStart: '2026-03-01T00:00:00.000Z',
      spend: 12,
    });
    expect(await audit(resetId)).toEqual([
      { entity_type: 'window', entity_id: id, before: 4.5, after: 0 },
      { entity_type: 'window_spend', entity_id: id, before: 4.5, after: 0 },
    ]);

    // After the commit the counter is SET (LiteLLM has no row to reseed it from), the other window's untouched.
    const invalidation = await invalidateResetCaches(db.pool, redis, ns, resetId);
    expect(invalidation).toMatchObject({ entities: 1, countersSet: 1, countersDeleted: 0 });
    expect(await redis.get(`${ns}:spend:key:${token}:window:1h`)).toBe('0.0');
    expect(await redis.get(`${ns}:spend:key:${token}:window:1d`)).toBe('12.0');
    // The key's own spend is not a window's.
    const { rows } = await db.pool.query<{ spend: number }>(
      `SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = $1`,
      [token],
    );
    expect(rows[0]?.spend).toBe(7);

    // Fenced: the same boundary again changes nothing.
    await redis.set(`${ns}:spend:key:${token}:window:1h`, '1.25');
    expect(await resetWindow(id, ns)).toEqual({ outcome: 'already_reset', currentResetAt: HOUR_NEXT });
    expect(await windowSpendOf(db.pool, { entityType: 'key', entityId: token, duration: '1h' })).toEqual({
      windowStart: '2026-03-01T10:00:00.000Z',
      spend: 0,
    });
    const { rows: logs } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM budget_lifecycle.reset_log WHERE budget_kind = 'window' AND budget_id = $1`,
      [id],
    );
    expect(logs[0]?.n).toBe(1);
  });

  it('a team window carries its overage with rollover, like LiteLLM’s _window_carried_spend', async () => {
    const ns = uniqueName('ns');
    const team = `eng:${uniqueName('team')}`; // an owner id may hold the separator
    await insertTeam(db.pool, { id: team });
    await setBudgetLimits(db.pool, { table: TEAMS, id: team }, [
      { budget_duration: '1d', max_budget: 10, reset_at: '2026-03-01T00:00:00' },
      { budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T10:00:00+00:00' },
    ]);
    await redis.set(`${ns}:spend:team:${team}:window:1d`, '12.5');
    const id = `team:${team}:1d`;
    const result = await resetWindow(id, ns, {
      rollover: true,
      due: '2026-03-01T00:00:00.000Z',
      next: DAY_LATER,
    });
    const resetId = resetIdOf(result);
    expect(await budgetLimitsOf(db.pool, { table: TEAMS, id: team })).toEqual([
      { budget_duration: '1d', max_budget: 10, reset_at: '2026-03-02T00:00:00+00:00' },
      { budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T10:00:00+00:00' },
    ]);
    // No LiteLLM_BudgetWindowSpend row yet: nothing to roll, only the counter is audited.
    expect(await audit(resetId)).toEqual([
      { entity_type: 'window', entity_id: id, before: 12.5, after: 2.5 },
    ]);
    await invalidateResetCaches(db.pool, redis, ns, resetId);
    expect(await redis.get(`${ns}:spend:team:${team}:window:1d`)).toBe('2.5');
  });

  it('a window that lost its reset_at gets a first boundary, zeroing nothing', async () => {
    const token = uniqueName('tok');
    await insertKey(db.pool, { token });
    await setBudgetLimits(db.pool, { table: KEYS, id: token }, [{ budget_duration: '1h', max_budget: 2 }]);
    const state = await settleSchedule(
      db.pool,
      { kind: 'window', id: `key:${token}:1h` },
      { now: '2026-03-01T10:20:00.000Z', knownDuration: null, schedule: DEFAULT_SCHEDULE },
    );
    expect(state).toMatchObject({
      outcome: 'scheduled',
      duration: '1h',
      resetAt: '2026-03-01T11:00:00.000Z',
    });
    expect(await budgetLimitsOf(db.pool, { table: KEYS, id: token })).toEqual([
      { budget_duration: '1h', max_budget: 2, reset_at: '2026-03-01T11:00:00+00:00' },
    ]);
  });

  it('a window that is gone ends its budget', async () => {
    const token = uniqueName('tok');
    await insertKey(db.pool, { token });
    await setBudgetLimits(db.pool, { table: KEYS, id: token }, [
      { budget_duration: '1d', reset_at: DAY_LATER },
    ]);
    const state = await settleSchedule(
      db.pool,
      { kind: 'window', id: `key:${token}:1h` },
      { now: '2026-03-01T10:20:00.000Z', knownDuration: '1h', schedule: DEFAULT_SCHEDULE },
    );
    expect(state).toMatchObject({ outcome: 'ended', reason: 'row_deleted' });
  });

  it('discovery lists each window as a budget and notices when LiteLLM moves its reset_at', async () => {
    const token = uniqueName('disc');
    await insertKey(db.pool, { token });
    await setBudgetLimits(db.pool, { table: KEYS, id: token }, [
      { budget_duration: '1h', reset_at: '2026-03-01T10:00:00+00:00' },
      { budget_duration: '1d', reset_at: '2026-03-02T00:00:00Z' },
      { budget_duration: '1h', reset_at: '2026-03-01T10:00:00+00:00' }, // a repeat names the same window
      'not a window',
    ]);
    const ids = [`key:${token}:1d`, `key:${token}:1h`];
    const mine = (changes: Array<{ id: string }>) => changes.filter((c) => c.id.startsWith(`key:${token}:`));
    const changes = mine(await findScheduleChanges(db.pool, 'window', 10_000));
    expect(changes.map((c) => c.id).sort()).toEqual(ids);
    expect(changes.find((c) => c.id.endsWith(':1d'))).toMatchObject({
      live: true,
      known: false,
      duration: '1d',
      resetAt: '2026-03-02 00:00:00',
    });
    const page = await discoverBudgetPage(db.pool, { kind: 'window', afterId: `key:${token}:`, limit: 2 });
    expect(page.items).toEqual(ids.map((id) => ({ kind: 'window', id })));
  });

  it('writes reset_at and counters in LiteLLM’s formats', () => {
    expect(pythonIsoFormat('2026-03-01T11:00:00.000Z')).toBe('2026-03-01T11:00:00+00:00');
    expect(pythonIsoFormat('2026-03-01T11:00:00.250Z')).toBe('2026-03-01T11:00:00.250000+00:00');
    expect([0, 2.5, 3, 1e-5, 1e16, 0.1].map(pythonFloat)).toEqual([
      '0.0',
      '2.5',
      '3.0',
      '1e-05',
      '1e+16',
      '0.1',
    ]);
  });
});
