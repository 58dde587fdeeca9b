import { Redis } from 'ioredis';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { databaseUrl } from '../../src/db/url.js';
import { createLiteLLMDatabase } from '../../dev/provision/litellm-database.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/provision/postgres.js';
import { startRedis } from '../../dev/provision/redis.js';
import { ensureTestServer } from '../../dev/provision/test-server.js';
import { onCleanup, withTimeout } from './lifecycle.js';

export const BENCH_DATABASE = 'budget_bench';

export interface Services {
  readonly scratch: string;
  /** Server URL (database `postgres`) and the benchmark database's URL. */
  readonly postgresUrl: string;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly redisPort: number;
  readonly testServerPath: string;
  /** Sized like the worker's (src/worker-process.ts: max 10); activities and measured calls use it. */
  readonly pool: pg.Pool;
  /** A separate small pool for the benchmark's own polling and seeding, so it never queues behind the work. */
  readonly control: pg.Pool;
  readonly redis: Redis;
  readonly versions: { postgres: string; redis: string };
  readonly setupMs: Record<string, number>;
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

async function timed<T>(setupMs: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const value = await fn();
  setupMs[name] = Math.round(performance.now() - t0);
  log(`${name}: ${setupMs[name]} ms`);
  return value;
}

/**
 * Starts the real services every benchmark uses: an embedded PostgreSQL holding LiteLLM's schema (its own
 * migrations from litellm-proxy-extras) plus ours, a throwaway redis-server, and the time-skipping test server's
 * executable (fetched once into the cache). Each registers its stop with onCleanup before anything else runs.
 */
export async function startServices(options: { statementStats?: boolean } = {}): Promise<Services> {
  const setupMs: Record<string, number> = {};
  const scratch = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-bench-'));
  // Embedded PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its data dir.
  await chmod(scratch, 0o755);
  onCleanup('scratch directory', () => rm(scratch, { recursive: true, force: true }));

  const testServerPath = await timed(setupMs, 'test server executable', () =>
    withTimeout(ensureTestServer(), 600_000, 'fetching the time-skipping test server'),
  );
  // pg_stat_statements must be loaded at server start; only the flush benchmark reads it (it counts the
  // worker's own statements), so the other benchmarks run without its small per-statement cost.
  const settings = options.statementStats ? { shared_preload_libraries: 'pg_stat_statements' } : undefined;
  const postgres = await timed(setupMs, 'embedded PostgreSQL start', () => startPostgres(scratch, settings));
  onCleanup('embedded PostgreSQL', () => postgres.stop());
  const redisServer = await timed(setupMs, 'redis-server start', () =>
    withTimeout(startRedis({ dataDir: path.join(scratch, 'redis') }), 60_000, 'starting redis-server'),
  );
  onCleanup('redis-server', () => redisServer.stop());

  const url = databaseUrl(postgres.url, BENCH_DATABASE);
  await timed(setupMs, 'LiteLLM schema + migrations', () =>
    withTimeout(
      createLiteLLMDatabase(postgres.url, BENCH_DATABASE),
      300_000,
      'building the benchmark database',
    ),
  );

  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', (error) => log(`idle PostgreSQL connection failed: ${error.message}`));
  onCleanup('PostgreSQL pool', () => pool.end());
  const control = new pg.Pool({ connectionString: url, max: 3 });
  control.on('error', (error) => log(`idle PostgreSQL connection failed: ${error.message}`));
  onCleanup('PostgreSQL control pool', () => control.end());
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 3 });
  redis.on('error', (error: Error) => log(`Redis connection problem: ${error.message}`));
  onCleanup('Redis client', async () => redis.disconnect());

  const pgVersion =
    (await control.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ??
    'unknown';
  const redisInfo = await redis.info('server');
  const redisVersion = /redis_version:(\S+)/.exec(redisInfo)?.[1] ?? 'unknown';
  return {
    scratch,
    postgresUrl: postgres.url,
    databaseUrl: url,
    redisUrl: redisServer.url,
    redisPort: Number(new URL(redisServer.url).port),
    testServerPath,
    pool,
    control,
    redis,
    versions: { postgres: pgVersion, redis: redisVersion },
    setupMs,
  };
}

/**
 * Starts the embedded PostgreSQL, once more (in a fresh data directory) if the first attempt fails: its
 * binaries are shared by every checkout on the machine, and a concurrent run re-provisioning them can fail a
 * start (seen once while developing this benchmark).
 */
async function startPostgres(
  scratch: string,
  settings: Record<string, string> | undefined,
): Promise<RunningPostgres> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await withTimeout(
        startEmbeddedPostgres({ dataDir: path.join(scratch, `pg-${attempt}`), persistent: false, settings }),
        120_000,
        'starting embedded PostgreSQL',
      );
    } catch (error) {
      if (attempt >= 2) throw error;
      log(`embedded PostgreSQL did not start (${String(error)}); trying once more in 3 s`);
      await sleep(3_000);
    }
  }
}
