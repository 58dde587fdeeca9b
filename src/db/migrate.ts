import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/** Our schema. Nothing of ours goes in `public`. */
export const SCHEMA = 'budget_lifecycle';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** Arbitrary but fixed: every process that migrates takes this advisory lock first. */
const MIGRATION_LOCK_KEY = 7_304_195_211;

export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
}

/** The numbered `NNNN_name.sql` files shipped beside this module, in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{4}_.+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(`${MIGRATIONS_DIR}${file}`, 'utf8'),
    })),
  );
}

/**
 * Applies the migrations not yet applied, each in its own transaction, forward only. A session advisory lock
 * serialises concurrent runs (two workers starting at once): the second waits, then finds nothing to do.
 * Returns the names it applied.
 */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const migrations = await loadMigrations();
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      // Look before creating: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
      // exists, which a least-privilege role given its schema by the DBA does not have.
      const schema = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [SCHEMA]);
      if (schema.rowCount === 0) await client.query(`CREATE SCHEMA ${SCHEMA}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${SCHEMA}.migrations (
           id integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await client.query<{ id: number }>(`SELECT id FROM ${SCHEMA}.migrations`);
      const done = new Set(rows.map((r) => r.id));
      const latestDone = Math.max(0, ...done);
      const known = new Set(migrations.map((m) => m.id));
      const unknown = [...done].filter((id) => !known.has(id));
      if (unknown.length > 0) {
        throw new Error(
          `The database has budget-lifecycle migrations this build does not know (${unknown.join(', ')}): ` +
            'run a newer release of budget-lifecycle against it',
        );
      }
      const applied: string[] = [];
      for (const migration of migrations) {
        if (done.has(migration.id)) continue;
        if (migration.id < latestDone) {
          throw new Error(
            `Migration ${migration.name} is older than applied migration ${latestDone}; refusing`,
          );
        }
        await client.query('BEGIN');
        try {
          await client.query(migration.sql);
          await client.query(`INSERT INTO ${SCHEMA}.migrations (id, name) VALUES ($1, $2)`, [
            migration.id,
            migration.name,
          ]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw new Error(
            `Migration ${migration.name} failed and was rolled back: ${(error as Error).message}`,
            {
              cause: error,
            },
          );
        }
        applied.push(migration.name);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}
