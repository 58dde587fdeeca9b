import { Connection } from '@temporalio/client';
import { NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { createBudgetWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { services } from './services.js';
import { bundleWorkflows, installTestRuntime } from './temporal.js';

/**
 * Arming works on the wall clock, so it is proved (and its history recorded) on the dev server in real time, by an
 * in-process worker with the real activities on a database and Redis of the file's own.
 */
export interface ArmingEnv {
  readonly db: TestDatabase;
  readonly redis: Redis;
  readonly connection: Connection;
  readonly bundle: WorkflowBundleWithSourceMap;
  /** A worker on `taskQueue`, which is also its LiteLLM Redis namespace. */
  worker(taskQueue: string): ReturnType<typeof createBudgetWorker>;
}

/** Registers the file's setup and teardown; `use` receives the environment once it is up. */
export function useArmingEnv(use: (env: ArmingEnv) => void): void {
  let db: TestDatabase | undefined;
  let redis: Redis | undefined;
  let connection: Connection | undefined;
  let nativeConnection: NativeConnection | undefined;
  beforeAll(async () => {
    installTestRuntime();
    const [database, bundle] = await Promise.all([
      createTestDatabase(),
      bundleWorkflows('workflows/index.ts'),
    ]);
    db = database;
    redis = new Redis(services().redisUrl);
    connection = await Connection.connect({ address: services().temporalAddress });
    nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
    const env = { db, redis, connection, bundle };
    const native = nativeConnection;
    use({
      ...env,
      worker: (taskQueue) =>
        createBudgetWorker({
          connection: native,
          taskQueue,
          workflowBundle: bundle,
          deps: {
            db: database.pool,
            redis: env.redis,
            config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace: taskQueue },
          },
        }),
    });
  });
  afterAll(async () => {
    redis?.disconnect();
    await connection?.close();
    await nativeConnection?.close();
    await db?.drop();
  });
}
