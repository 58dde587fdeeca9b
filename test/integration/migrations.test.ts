import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ from: 'empty' });
});
afterAll(async () => {
  await db?.drop();
});

describe('migrations', () => {
  it('applies every migration once, even from two processes at once', async () => {
    const second = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const [a, b] = await Promise.all([migrate(db.pool), migrate(second)]);
      const all = (await loadMigrations()).map((m) => m.name);
      expect([...a, ...b].sort()).toEqual(all.sort());
      expect(await migrate(db.pool)).toEqual([]);
    } finally {
      await second.end();
    }
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM budget_lifecycle.migrations');
    expect(rows[0].n).toBe((await loadMigrations()).length);
  });

  it('creates nothing in public, which belongs to LiteLLM', async () => {
    const { rows } = await db.pool.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname LIKE 'reset_log%' OR c.relname = 'migrations'`,
    );
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.schema === 'budget_lifecycle')).toBe(true);
    const publicTables = await db.pool.query(`SELECT 1 FROM pg_tables WHERE schemaname = 'public'`);
    expect(publicTables.rowCount).toBe(0);
  });

  it('refuses a database migrated by a newer release', async () => {
    await db.pool.query(`INSERT INTO budget_lifecycle.migrations (id, name) VALUES (9999, '9999_future')`);
    try {
      await expect(migrate(db.pool)).rejects.toThrow(/newer release/);
    } finally {
      await db.pool.query('DELETE FROM budget_lifecycle.migrations WHERE id = 9999');
    }
  });
});
