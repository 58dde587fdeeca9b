import pg from 'pg';
import { databaseUrl } from '../../src/db/url.js';
import { services, uniqueName } from './services.js';

/** Database cloned by every test file: LiteLLM's real schema plus our migrations (built by the global setup). */
export const TEMPLATE_DATABASE = 'budget_lifecycle_template';

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  readonly pool: pg.Pool;
  drop(): Promise<void>;
}

/**
 * A fresh database for one test file, cloned from the template (or empty with `from: 'empty'`), so files never
 * see each other's rows and may run in parallel.
 */
export async function createTestDatabase(
  options: { from?: 'template' | 'empty' } = {},
): Promise<TestDatabase> {
  const name = uniqueName('t').replaceAll('-', '_').toLowerCase();
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  try {
    const template = options.from === 'empty' ? 'template0' : TEMPLATE_DATABASE;
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(services().databaseUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // Dropping the database ends idle connections from the server side; that is expected, not a failure.
  pool.on('error', () => undefined);
  return {
    url,
    name,
    pool,
    drop: async () => {
      await pool.end();
      const client = new pg.Client({ connectionString: services().databaseUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
