import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { services } from '../helpers/services.js';

describe('real backing services', () => {
  it('answers a query on PostgreSQL', async () => {
    const client = new pg.Client({ connectionString: services().databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number; version: string }>(
        'SELECT 40 + 2 AS n, current_setting($1) AS version',
        ['server_version'],
      );
      expect(rows[0]?.n).toBe(42);
      expect(rows[0]?.version).toMatch(/^\d+/);
    } finally {
      await client.end();
    }
  });

  it('answers PING on Redis', async () => {
    const redis = new Redis(services().redisUrl);
    try {
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });
});
