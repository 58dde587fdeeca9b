import { inject } from 'vitest';

/** Addresses of the real services started by the global setup. */
export interface TestServices {
  /** Admin connection to the test PostgreSQL server (database `postgres`). */
  databaseUrl: string;
  redisUrl: string;
  temporalAddress: string;
  temporalUiUrl: string;
  /** Executable that starts the time-skipping test server as `<path> <port>`. */
  testServerPath: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: TestServices;
  }
}

export function services(): TestServices {
  return inject('services');
}

/** A name unique to this test run, usable in workflow ids, task queues, database names and key namespaces. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * The environment of a `budgetctl` process (or of a worker built in the test) on the suite's services: this test's
 * database, Redis under the task queue's namespace, and the suite's Temporal.
 */
export function workerEnv(databaseUrl: string, taskQueue: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_URL: services().redisUrl,
    LITELLM_REDIS_NAMESPACE: taskQueue,
    TEMPORAL_ADDRESS: services().temporalAddress,
    BUDGET_TASK_QUEUE: taskQueue,
  };
}
