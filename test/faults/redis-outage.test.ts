import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { freePort } from '../../dev/provision/ports.js';
import { startRedis, type RunningRedis } from '../../dev/provision/redis.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { resetNowUpdate, statusQuery } from '../../src/temporal/messages.js';
import { createBudgetWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { bundleWorkflows, installTestRuntime } from '../helpers/temporal.js';

// A Redis of our own that we stop and start again on the same port, on the real dev server in real time: the
// reset must commit while Redis is down, and cache invalidation must retry until Redis is back.
let db: TestDatabase;
let scratch: string;
let port: number;
let redisServer: RunningRedis | undefined;
let connection: Connection;
let nativeConnection: NativeConnection;

beforeAll(async () => {
  installTestRuntime();
  db = await createTestDatabase();
  scratch = await mkdtemp(path.join(tmpdir(), 'redis-outage-'));
  port = await freePort();
  redisServer = await startRedis({ dataDir: scratch, port });
  connection = await Connection.connect({ address: services().temporalAddress });
  nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
});
afterAll(async () => {
  await redisServer?.stop();
  await connection?.close();
  await nativeConnection?.close();
  await db?.drop();
  await rm(scratch, { recursive: true, force: true });
});

describe('Redis down during a reset', () => {
  it('commits the reset at once and invalidates the caches once Redis is back', async () => {
    const client = new Client({ connection });
    const taskQueue = uniqueName('outage');
    const tier = uniqueName('outage-tier');
    const ref: BudgetRef = { kind: 'budget', id: tier };
    const redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    redis.on('error', () => undefined);
    const worker = await createBudgetWorker({
      connection: nativeConnection,
      taskQueue,
      workflowBundle: await bundleWorkflows('workflows/index.ts'),
      deps: {
        db: db.pool,
        redis,
        config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace: taskQueue },
      },
    });
    await insertBudget(db.pool, {
      id: tier,
      duration: '30d',
      resetAt: new Date(Date.now() + 86_400_000).toISOString(),
    });
    await insertTag(db.pool, { name: `${tier}-tag`, spend: 9, budgetId: tier });
    const handle = await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
      taskQueue,
      workflowId: budgetWorkflowId(ref),
      args: [ref],
    });
    try {
      await worker.runUntil(async () => {
        await redis.set(`${taskQueue}:tag:${tier}-tag`, 'stale');
        await redisServer!.stop();
        const update = handle.executeUpdate(resetNowUpdate, {
          args: [{ reason: 'outage drill', requestId: 'o-1' }],
        });
        // The database side does not wait for Redis.
        await expect
          .poll(() => spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${tier}-tag` }), {
            timeout: LIMITS.workflowStep,
          })
          .toBe(0);
        redisServer = await startRedis({ dataDir: scratch, port });
        const result = await update;
        expect(result).toMatchObject({ outcome: 'reset', entityCount: 1, cachesInvalidated: true });
        // A fresh server lost the stale keys anyway; its own command counts prove the invalidation ran on it.
        const stats = await redis.info('commandstats');
        expect(stats).toMatch(/cmdstat_del:calls=[1-9]/);
        expect(stats).toMatch(/cmdstat_publish:calls=[1-9]/);
        const status = await handle.query(statusQuery);
        expect(status).toMatchObject({ state: 'active', cacheInvalidationFailures: 0, lastError: null });
      });
    } finally {
      redis.disconnect();
      await handle.terminate('test finished').catch(() => undefined);
    }
  });
});
