import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startDevServer } from '../dev/provision/dev-server.js';
import { createLiteLLMDatabase } from '../dev/provision/litellm-database.js';
import { startEmbeddedPostgres } from '../dev/provision/postgres.js';
import { startRedis } from '../dev/provision/redis.js';
import { ensureTemporalCli } from '../dev/provision/temporal-cli.js';
import { ensureTestServer } from '../dev/provision/test-server.js';
import type { TestServices } from './helpers/services.js';
import { TEMPLATE_DATABASE } from './helpers/database.js';
import { searchAttributeFlags } from '../src/temporal/search-attributes.js';

/**
 * Starts every real service the suite needs once per run: PostgreSQL (embedded unless DATABASE_URL is set),
 * Redis (a local redis-server unless REDIS_URL is set) and the Temporal dev server with its Web UI. Each workflow
 * test file starts its own time-skipping server, since skipped time is global to a server.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const scratch = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-test-'));
  // Embedded PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its data dir.
  await chmod(scratch, 0o755);
  const stops: Array<() => Promise<void>> = [];
  const teardown = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error(e));
    await rm(scratch, { recursive: true, force: true });
  };
  try {
    const [testServerPath] = await Promise.all([ensureTestServer(), ensureTemporalCli()]);

    let databaseUrl = process.env.DATABASE_URL;
    if (!databaseUrl) {
      const pg = await startEmbeddedPostgres({ dataDir: path.join(scratch, 'pg'), persistent: false });
      stops.push(pg.stop);
      databaseUrl = pg.url;
    }
    let redisUrl = process.env.REDIS_URL;
    if (!redisUrl) {
      const redis = await startRedis({ dataDir: path.join(scratch, 'redis') });
      stops.push(redis.stop);
      redisUrl = redis.url;
    }
    // LiteLLM's real schema plus ours, once per run; test files clone it in milliseconds.
    await createLiteLLMDatabase(databaseUrl, TEMPLATE_DATABASE);
    const dev = await startDevServer({ searchAttributes: searchAttributeFlags() });
    stops.push(dev.stop);

    const services: TestServices = {
      databaseUrl,
      redisUrl,
      temporalAddress: dev.address,
      temporalUiUrl: dev.uiUrl,
      testServerPath,
    };
    project.provide('services', services);
    console.log(`[global-setup] services ready in ${Date.now() - started} ms`);
    return teardown;
  } catch (error) {
    await teardown();
    throw error;
  }
}
