import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { warmPool } from '../../src/db/pool.js';
import { freePort } from '../../src/free-port.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ from: 'empty' });
});
afterAll(async () => {
  await db?.drop();
});

/** Sessions the server holds for one application name (each one a login). */
async function sessions(applicationName: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
    [applicationName],
  );
  return rows[0]?.n ?? 0;
}

describe('warmPool', () => {
  it('logs in the connections a boundary needs and leaves them idle in the pool', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 10, application_name: 'warm-pool-test' });
    try {
      expect(pool.totalCount).toBe(0);
      await warmPool(pool, 6);
      expect({ total: pool.totalCount, idle: pool.idleCount }).toEqual({ total: 6, idle: 6 });
      expect(await sessions('warm-pool-test')).toBe(6);
      // Work that follows uses them: no new login.
      await Promise.all(Array.from({ length: 6 }, () => pool.query('SELECT pg_sleep(0.05)')));
      expect(pool.totalCount).toBe(6);
      expect(await sessions('warm-pool-test')).toBe(6);
    } finally {
      await pool.end();
    }
  });

  it('opens no more than the pool allows, and resolves when the server cannot be reached', async () => {
    const small = new pg.Pool({ connectionString: db.url, max: 3 });
    try {
      // One connection is held by other work meanwhile: the warm-up must not wait for it.
      const busy = await small.connect();
      await warmPool(small, 6);
      expect({ total: small.totalCount, idle: small.idleCount }).toEqual({ total: 3, idle: 2 });
      busy.release();
    } finally {
      await small.end();
    }
    const url = new URL(db.url);
    url.port = String(await freePort());
    const unreachable = new pg.Pool({ connectionString: url.toString(), connectionTimeoutMillis: 2_000 });
    unreachable.on('error', () => undefined);
    try {
      await expect(warmPool(unreachable, 3)).resolves.toBeUndefined();
      expect(unreachable.totalCount).toBe(0);
    } finally {
      await unreachable.end();
    }
  });
});
