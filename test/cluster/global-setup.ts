import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { createLiteLLMDatabase } from '../../dev/provision/litellm-database.js';
import { startEmbeddedPostgres } from '../../dev/provision/postgres.js';
import { startRedis } from '../../dev/provision/redis.js';
import { startTemporalCluster } from '../../dev/provision/temporal-cluster.js';
import { ensureTemporalServer } from '../../dev/provision/temporal-server.js';
import { TEMPLATE_DATABASE } from '../helpers/database.js';
import type { TestServices } from '../helpers/services.js';

/**
 * The cluster suite's services: PostgreSQL (embedded unless DATABASE_URL is set) holding both LiteLLM's tables and
 * Temporal's own persistence and visibility databases, Redis, and Temporal's server built from its Go module, its
 * four services in separate processes (TEMPORAL_CLUSTER_LAYOUT=single runs them as one).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const scratch = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-cluster-'));
  // Embedded PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its data dir.
  await chmod(scratch, 0o755);
  const stops: Array<() => Promise<void>> = [];
  const teardown = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error(e));
    await rm(scratch, { recursive: true, force: true });
  };
  try {
    const buildStarted = Date.now();
    await ensureTemporalServer();
    const buildMs = Date.now() - buildStarted;

    const started = Date.now();
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
    await createLiteLLMDatabase(databaseUrl, TEMPLATE_DATABASE);
    const layout = process.env.TEMPORAL_CLUSTER_LAYOUT === 'single' ? 'single' : 'separate';
    const cluster = await startTemporalCluster({
      databaseUrl,
      dataDir: path.join(scratch, 'temporal'),
      layout,
    });
    stops.push(cluster.stop);

    const services: TestServices = {
      databaseUrl,
      redisUrl,
      temporalAddress: cluster.address,
      // This suite runs no Web UI and no time-skipping tests.
      temporalUiUrl: '',
      testServerPath: '',
    };
    project.provide('services', services);
    console.log(
      `[cluster-setup] Temporal server ready (${cluster.processes.length} processes: ${cluster.processes.join(' | ')}); ` +
        `build/cache ${buildMs} ms, schema setup ${cluster.schemaSetupMs} ms, all services ${Date.now() - started} ms`,
    );
    return teardown;
  } catch (error) {
    await teardown();
    throw error;
  }
}
