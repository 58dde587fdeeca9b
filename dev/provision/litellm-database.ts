import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { databaseUrl } from '../../src/db/url.js';
import { applyLiteLLMSchema } from './litellm-schema.js';

/**
 * (Re)creates database `name` on a PostgreSQL server with LiteLLM's real schema (its own migrations) and ours,
 * for tests, benchmarks and anything else that needs a LiteLLM database from scratch. Returns its URL.
 */
export async function createLiteLLMDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(serverUrl, name);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await applyLiteLLMSchema(client);
  } finally {
    await client.end();
  }
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return url;
}
