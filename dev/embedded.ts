import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, redactUrl } from '../src/config.js';
import { databaseUrl } from '../src/db/url.js';
import { createLogger } from '../src/logger.js';
import { startDevServer } from './provision/dev-server.js';
import { applyLiteLLMSchema } from './provision/litellm-schema.js';
import { freePort } from './provision/ports.js';
import { startEmbeddedPostgres } from './provision/postgres.js';
import { startRedis } from './provision/redis.js';
import { which } from './provision/run.js';
import { temporalTarget } from '../src/temporal/connection.js';
import { searchAttributeFlags } from '../src/temporal/search-attributes.js';
import { runWorkerProcess } from '../src/worker-process.js';
import { DEMO, seedDemo } from './demo.js';

/**
 * Where embedded mode keeps its state: `BUDGET_LIFECYCLE_DATA_DIR`, default `.data/` in the checkout (npm runs
 * `npm start` in the package's root).
 */
function dataDir(): string {
  return process.env.BUDGET_LIFECYCLE_DATA_DIR ?? path.resolve('.data');
}

/**
 * PostgreSQL's data directory. As root the server runs as the `postgres` user, which cannot reach a checkout in a
 * private home directory, so root keeps it under /var/lib/budget-lifecycle, one per data dir.
 */
export async function postgresDataDir(dir: string): Promise<string> {
  if (process.getuid?.() !== 0) return path.join(dir, 'postgres');
  const hash = createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 12);
  await mkdir('/var/lib/budget-lifecycle', { recursive: true, mode: 0o755 });
  return path.join('/var/lib/budget-lifecycle', `pgdata-${hash}`);
}

async function portOr(preferred: number): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => void freePort().then(resolve));
    server.listen(preferred, '127.0.0.1', () => server.close(() => resolve(preferred)));
  });
}

/**
 * `npm start`: everything on this machine, state kept in the data dir across restarts. Starts what is not
 * configured — the Temporal dev server with its Web UI (unless TEMPORAL_ADDRESS), an embedded PostgreSQL with
 * LiteLLM's real schema and a demo (unless DATABASE_URL), Redis when `redis-server` is installed (unless
 * REDIS_URL/REDIS_HOST) — then the worker and the supervisor, until Ctrl-C.
 */
export async function runEmbedded(): Promise<void> {
  const env = { ...process.env };
  const { logLevel, logFormat } = loadConfig(env);
  const logger = createLogger(logLevel, logFormat);
  const dir = dataDir();
  await mkdir(dir, { recursive: true });
  const stops: Array<() => Promise<void>> = [];
  const banner: string[] = [];
  try {
    if (!env.TEMPORAL_ADDRESS) {
      const dev = await startDevServer({
        port: await portOr(7233),
        uiPort: await portOr(8233),
        dbFile: path.join(dir, 'temporal.db'),
        searchAttributes: searchAttributeFlags(),
      });
      stops.push(dev.stop);
      env.TEMPORAL_ADDRESS = dev.address;
      banner.push(`Temporal UI:     ${dev.uiUrl}/namespaces/default/workflows`);
    }
    if (!env.DATABASE_URL) {
      const postgres = await startEmbeddedPostgres({ dataDir: await postgresDataDir(dir), persistent: true });
      stops.push(postgres.stop);
      const admin = new pg.Client({ connectionString: postgres.url });
      await admin.connect();
      const exists = await admin.query(`SELECT 1 FROM pg_database WHERE datname = 'litellm'`);
      if (!exists.rowCount) await admin.query('CREATE DATABASE litellm');
      await admin.end();
      env.DATABASE_URL = databaseUrl(postgres.url, 'litellm');
      const db = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
      try {
        const schema = await db.query(`SELECT to_regclass('public."LiteLLM_BudgetTable"') AS t`);
        if (!schema.rows[0].t) {
          const client = await db.connect();
          try {
            await applyLiteLLMSchema(client);
          } finally {
            client.release();
          }
        }
        if (await seedDemo(db, env.BUDGET_DEMO_DURATION ?? '1m')) logger.info('seeded the demo budgets');
      } finally {
        await db.end();
      }
    }
    if (!env.REDIS_URL && !env.REDIS_HOST) {
      if (await which('redis-server', ['/usr/bin', '/usr/sbin', '/usr/local/bin'])) {
        const redis = await startRedis({ dataDir: path.join(dir, 'redis') });
        stops.push(redis.stop);
        env.REDIS_URL = redis.url;
      } else {
        logger.warn(
          'redis-server is not installed: cache invalidation is off (install redis-server to see it work)',
        );
      }
    }
    env.METRICS_PORT ??= String(await portOr(9464));
    const config = loadConfig(env);
    const target = temporalTarget(env);
    const exports = [
      `export TEMPORAL_ADDRESS=${target.address}`,
      `export DATABASE_URL=${env.DATABASE_URL}`,
      ...(env.REDIS_URL ? [`export REDIS_URL=${env.REDIS_URL}`] : []),
    ];
    await writeFile(path.join(dir, 'env.sh'), `${exports.join('\n')}\n`);
    banner.push(
      `Database:        ${redactUrl(env.DATABASE_URL ?? '')}`,
      `Metrics/health:  http://127.0.0.1:${config.metricsPort}/metrics  /healthz  /readyz`,
      '',
      `Watch: the tag "${DEMO.tag}" is over its budget on the 1-minute tier "${DEMO.tier}"; within a minute`,
      `the workflow budget/budget/${DEMO.tier} resets it (search the UI for BudgetId = "${DEMO.tier}").`,
      `Operate it from another shell:  source ${path.join(dir, 'env.sh')}`,
      `  npm run budgetctl -- status budget:${DEMO.tier}`,
      `  npm run budgetctl -- reset budget:${DEMO.tier} --reason "trying it"`,
      `  npm run budgetctl -- history budget:${DEMO.tier}`,
    );
    await runWorkerProcess({
      config,
      target,
      logger,
      // Short sync intervals so the demo reacts quickly to rows you edit.
      supervisorArgs: { syncIntervalMs: 5_000, fullSweepIntervalMs: 60_000 },
      onReady: () => console.log(`\nbudget-lifecycle is running (Ctrl-C to stop)\n\n${banner.join('\n')}\n`),
    });
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}
