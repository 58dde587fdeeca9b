/**
 * Smoke check of the pinned LiteLLM schema: applies every migration to an EMPTY database and lists its tables.
 * Usage: npx tsx dev/provision/litellm-schema-check.ts <DATABASE_URL>
 */
import pg from 'pg';
import { applyLiteLLMSchema, litellmMigrationFiles, LITELLM_PROXY_EXTRAS_VERSION } from './litellm-schema.js';

const url = process.argv[2];
if (!url) {
  console.error('usage: tsx dev/provision/litellm-schema-check.ts <DATABASE_URL of an empty database>');
  process.exit(2);
}

// Resolve (and on first use download) the migrations before timing, so the time shown is the apply alone.
const files = await litellmMigrationFiles();
const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  const started = performance.now();
  await applyLiteLLMSchema(client);
  const ms = Math.round(performance.now() - started);
  const { rows } = await client.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const { rows: version } = await client.query<{ server_version: string }>('SHOW server_version');
  console.log(
    `litellm-proxy-extras ${LITELLM_PROXY_EXTRAS_VERSION}: ${files.length} migrations applied in ${ms} ms ` +
      `on PostgreSQL ${version[0]?.server_version ?? '?'}; ${rows.length} tables:`,
  );
  for (const row of rows) console.log(`  ${row.table_name}`);
} finally {
  await client.end();
}
