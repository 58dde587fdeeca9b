import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../src/db/migrate.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  budgetLimitsOf,
  insertBudget,
  insertKey,
  insertTag,
  insertTeam,
  insertTeamMember,
  insertWindowSpend,
  setBudgetLimits,
  spendOf,
  windowSpendOf,
} from '../helpers/litellm-rows.js';

// The README's least-privilege grants, applied to a database with LiteLLM's schema but none of ours: the worker's
// role must be able to migrate its own schema and reset budgets, and must not be able to touch anything else.
let db: TestDatabase;
let role: pg.Pool;

beforeAll(async () => {
  db = await createTestDatabase({ from: 'template' });
  await db.pool.query('DROP SCHEMA budget_lifecycle CASCADE');
  const sql = (await readFile(new URL('../../deploy/grants.sql', import.meta.url), 'utf8'))
    .replaceAll('DATABASE litellm', `DATABASE "${db.name}"`)
    .replace("CREATE ROLE budget_lifecycle LOGIN PASSWORD 'change-me';", '');
  await db.pool.query(`DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'budget_lifecycle') THEN
      CREATE ROLE budget_lifecycle LOGIN PASSWORD 'change-me';
    END IF; END $$`);
  await db.pool.query(sql);
  const url = new URL(db.url);
  url.username = 'budget_lifecycle';
  url.password = 'change-me';
  role = new pg.Pool({ connectionString: url.toString(), max: 2 });
});
afterAll(async () => {
  await role?.end();
  await db?.drop();
});

describe('deploy/grants.sql', () => {
  it('lets the worker role migrate its schema and run a full tier reset', async () => {
    expect((await migrate(role)).length).toBeGreaterThan(0);
    await insertBudget(db.pool, { id: 'g-tier', duration: '1d', resetAt: '2026-03-01T00:00:00Z' });
    await insertTag(db.pool, { name: 'g-tag', spend: 2, budgetId: 'g-tier' });
    await insertTeamMember(db.pool, { userId: 'g-u', teamId: 'g-t', spend: 1, budgetId: 'g-tier' });
    const result = await resetBudgetTransaction(
      role,
      scheduledReset(
        { kind: 'budget', id: 'g-tier' },
        '2026-03-01T00:00:00.000Z',
        '2026-03-02T00:00:00.000Z',
      ),
      { rollover: false },
      await existingTables(role),
    );
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 2 });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: 'g-tag' })).toBe(0);
  });

  it('lets the worker role reset a window: reset_at inside budget_limits and the BudgetWindowSpend row', async () => {
    await insertKey(db.pool, { token: 'g-key' });
    await setBudgetLimits(db.pool, { table: 'LiteLLM_VerificationToken', id: 'g-key' }, [
      { budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T10:00:00+00:00' },
    ]);
    await insertWindowSpend(db.pool, {
      entityType: 'key',
      entityId: 'g-key',
      duration: '1h',
      windowStart: '2026-03-01T09:00:00Z',
      spend: 0.8,
    });
    const result = await resetBudgetTransaction(
      role,
      scheduledReset(
        { kind: 'window', id: 'key:g-key:1h' },
        '2026-03-01T10:00:00.000Z',
        '2026-03-01T11:00:00.000Z',
      ),
      { rollover: false },
      await existingTables(role),
    );
    expect(result).toMatchObject({ outcome: 'reset', spendTotal: 0.8 });
    expect(await budgetLimitsOf(db.pool, { table: 'LiteLLM_VerificationToken', id: 'g-key' })).toEqual([
      { budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T11:00:00+00:00' },
    ]);
    expect(await windowSpendOf(db.pool, { entityType: 'key', entityId: 'g-key', duration: '1h' })).toEqual({
      windowStart: '2026-03-01T10:00:00.000Z',
      spend: 0,
    });
  });

  it('does not let the worker role change anything else', async () => {
    await insertTeam(db.pool, { id: 'g-team', spend: 1 });
    await expect(
      role.query(`UPDATE "LiteLLM_TeamTable" SET max_budget = 1000 WHERE team_id = 'g-team'`),
    ).rejects.toThrow(/permission denied/);
    await expect(role.query(`UPDATE "LiteLLM_TeamMembership" SET total_spend = 0`)).rejects.toThrow(
      /permission denied/,
    );
    await expect(role.query(`DELETE FROM "LiteLLM_TagTable"`)).rejects.toThrow(/permission denied/);
    await expect(role.query(`UPDATE "LiteLLM_TeamTable" SET metadata = '{}'`)).rejects.toThrow(
      /permission denied/,
    );
    await expect(role.query(`DELETE FROM "LiteLLM_BudgetWindowSpend"`)).rejects.toThrow(/permission denied/);
    await expect(role.query(`UPDATE "LiteLLM_BudgetWindowSpend" SET entity_id = 'other'`)).rejects.toThrow(
      /permission denied/,
    );
    // Spend logs hold prompts and responses: the role reads only what the late-spend reconciliation needs.
    await expect(role.query(`SELECT * FROM "LiteLLM_SpendLogs" LIMIT 1`)).rejects.toThrow(
      /permission denied/,
    );
    await expect(role.query(`SELECT messages FROM "LiteLLM_SpendLogs" LIMIT 1`)).rejects.toThrow(
      /permission denied/,
    );
    await role.query(`SELECT "startTime", spend, request_tags FROM "LiteLLM_SpendLogs" LIMIT 1`);
    await expect(role.query(`CREATE TABLE public.sneaky (id int)`)).rejects.toThrow(/permission denied/);
  });
});
