import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { Runtime, type LogLevel } from '@temporalio/worker';
import { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import { requireDatabaseUrl, type Config } from './config.js';
import { createHealthServer } from './health-server.js';
import { createLogger, temporalLogger } from './logger.js';
import { migrate } from './db/migrate.js';
import { createPool } from './db/pool.js';
import { LateSpendSweeper } from './late-spend-sweeper.js';
import { BUDGETS_BY_STATE_INTERVAL_MS, createMetricsObserver } from './metrics.js';
import { freePort } from './free-port.js';
import { connectClient, connectWorker, type TemporalTarget } from './temporal/connection.js';
import { BUDGET_WORKFLOW_TYPES_CLAUSE } from './temporal/budget-workflows.js';
import { registerSearchAttributes } from './temporal/register-search-attributes.js';
import { BudgetStateKey } from './temporal/search-attributes.js';
import { createBudgetWorker } from './worker.js';
import {
  budgetSupervisorWorkflow,
  supervisorWorkflowId,
  type SupervisorArgs,
} from '../workflows/supervisor.js';

export interface WorkerProcessOptions {
  readonly config: Config;
  readonly target: TemporalTarget;
  readonly taskQueue?: string;
  readonly maxConcurrentActivities?: number;
  /** Start (or keep) the supervisor that discovers budgets; default true. */
  readonly supervisor?: boolean;
  readonly supervisorArgs?: SupervisorArgs;
  readonly logger?: Logger;
  /** Resolves to stop the worker gracefully (besides SIGTERM and SIGINT). */
  readonly stop?: Promise<void>;
  /** Called once the worker polls. */
  readonly onReady?: (info: { healthPort?: number }) => void;
}

const LOG_LEVEL: Record<Config['logLevel'], LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
};

/** Installs the Temporal runtime once per process: JSON logs through pino, Prometheus metrics on loopback. */
async function installRuntime(
  logger: Logger,
  level: Config['logLevel'],
  publicPort: number | undefined,
): Promise<string | undefined> {
  // The SDK's exporter listens on a private loopback port, never the one our health server is about to take.
  let metricsPort: number | undefined;
  while (publicPort !== undefined && (metricsPort === undefined || metricsPort === publicPort)) {
    metricsPort = await freePort();
  }
  Runtime.install({
    logger: temporalLogger(logger, LOG_LEVEL[level]),
    telemetryOptions: {
      // The SDK core (Rust) prints plain text to the console unless its logs are forwarded: forward them to the
      // same logger, so every line the worker prints is JSON.
      // Core is chatty below WARN (every poll); its warnings and errors are what an operator needs.
      logging: { filter: { core: level === 'error' ? 'ERROR' : 'WARN', other: 'ERROR' }, forward: {} },
      ...(metricsPort ? { metrics: { prometheus: { bindAddress: `127.0.0.1:${metricsPort}` } } } : {}),
    },
  });
  return metricsPort ? `http://127.0.0.1:${metricsPort}/metrics` : undefined;
}

/**
 * Runs the budget worker until SIGTERM/SIGINT (or `stop`): migrates our schema, registers search attributes,
 * starts the supervisor, serves health and metrics, and on shutdown lets in-flight activities finish before
 * closing the pool, Redis and the connection.
 */
export async function runWorkerProcess(options: WorkerProcessOptions): Promise<void> {
  const { config, target } = options;
  const logger = options.logger ?? createLogger(config.logLevel, config.logFormat);
  const taskQueue = options.taskQueue ?? config.taskQueue;
  const metricsUrl = await installRuntime(logger, config.logLevel, config.metricsPort);

  const pool = createPool({ connectionString: requireDatabaseUrl(config), max: 10 }, (error) =>
    logger.warn({ err: error.message }, 'PostgreSQL connection lost; activities retry on a new one'),
  );
  const redis = config.redis ? createRedis(config.redis) : undefined;
  redis?.on('error', (error: Error) => logger.warn({ err: error.message }, 'Redis connection problem'));
  if (!redis)
    logger.warn(
      'No REDIS_URL or REDIS_HOST: cache invalidation is off; LiteLLM may serve stale spend for up to 60 s',
    );

  const cleanups: Array<() => Promise<unknown>> = [() => pool.end()];
  if (redis) cleanups.push(async () => redis.disconnect());
  try {
    const applied = await migrate(pool);
    if (applied.length > 0) logger.info({ applied }, 'applied budget_lifecycle migrations');
    const { client, connection } = await connectClient(target);
    cleanups.push(() => connection.close());
    await registerSearchAttributes(connection, target.namespace).then(
      (added) => added.length > 0 && logger.info({ added }, 'registered search attributes'),
      (error: Error) =>
        logger.warn(
          { err: error.message },
          'could not register search attributes; run `budgetctl search-attributes register` with operator rights',
        ),
    );
    const nativeConnection = await connectWorker(target);
    cleanups.push(() => nativeConnection.close());

    const observer = createMetricsObserver(Runtime.instance().metricMeter);
    const worker = await createBudgetWorker({
      connection: nativeConnection,
      namespace: target.namespace,
      taskQueue,
      deps: { db: pool, redis, config, observer, temporal: { client, taskQueue } },
      maxConcurrentActivityTaskExecutions: options.maxConcurrentActivities,
    });

    let health: { port: number; close(): Promise<void> } | undefined;
    if (config.metricsPort !== undefined) {
      health = await createHealthServer({
        port: config.metricsPort,
        metricsUrl,
        ready: async () =>
          worker.getState() === 'RUNNING' &&
          (await pool.query('SELECT 1').then(
            () => true,
            () => false,
          )),
      });
      cleanups.push(() => health!.close());
    }

    if (config.lateSpendDelayMs !== undefined) {
      const sweeper = startLateSpendSweeper(pool, redis, config, logger);
      cleanups.push(() => sweeper.stop());
    }

    if (options.supervisor ?? true) await ensureSupervisor(client, taskQueue, options.supervisorArgs ?? {});
    const gauge = setInterval(
      () => void countBudgetsByState(client, taskQueue).then(observer.setBudgetsByState, () => undefined),
      BUDGETS_BY_STATE_INTERVAL_MS,
    );
    cleanups.push(async () => clearInterval(gauge));

    const shutdown = () => {
      if (worker.getState() === 'RUNNING') {
        logger.info('shutting down: finishing in-flight activities');
        worker.shutdown();
      }
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
    void options.stop?.then(shutdown);
    logger.info(
      {
        taskQueue,
        namespace: target.namespace,
        address: target.address,
        auth: target.auth,
        healthPort: health?.port,
      },
      'worker started',
    );
    const running = worker.run();
    options.onReady?.({ healthPort: health?.port });
    await running;
    process.off('SIGTERM', shutdown);
    process.off('SIGINT', shutdown);
    logger.info('worker stopped');
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  }
}

/** Checks committed resets for late spend as they fall due (`BUDGET_LATE_SPEND_DELAY` after each). */
function startLateSpendSweeper(
  pool: pg.Pool,
  redis: Redis | undefined,
  config: Config,
  logger: Logger,
): LateSpendSweeper {
  const sweeper = new LateSpendSweeper({
    db: pool,
    redis,
    redisNamespace: config.redisNamespace,
    // A check runs at most half its delay late (15 s at most); an idle look is one statement, 4 a minute.
    intervalMs: Math.min(15_000, Math.max(1_000, (config.lateSpendDelayMs ?? 0) / 2)),
    concurrency: 2,
    onCheck: (check) => {
      if ('error' in check) {
        logger.warn(
          { resetId: check.resetId, err: check.error.message, retryAt: check.retryAt?.toISOString() ?? null },
          check.retryAt
            ? 'late spend check failed; tried again later'
            : 'late spend check failed for the last time; late spend counts against the new period',
        );
      } else if (check.result.corrections.length > 0) {
        logger.info(
          { resetId: check.resetId, corrections: check.result.corrections.length },
          'late spend moved out of the new period',
        );
      }
    },
    onError: (error) => logger.warn({ err: error.message }, 'late spend sweep failed; tried again shortly'),
  });
  sweeper.start();
  return sweeper;
}

/** The supervisor's code release, kept in its memo. */
export const SUPERVISOR_RELEASE = '0.2';

/**
 * Starts the supervisor unless it already runs (one per namespace and task queue). The supervisor keeps no state
 * worth carrying (what it knows lives in `budget_sync`), so a supervisor of an older release, whose history the
 * current code may not replay, is replaced rather than migrated: bump {@link SUPERVISOR_RELEASE} whenever its
 * code changes what it does.
 */
export async function ensureSupervisor(
  client: Client,
  taskQueue: string,
  args: SupervisorArgs,
): Promise<void> {
  const workflowId = supervisorWorkflowId(taskQueue);
  const running = await client.workflow
    .getHandle(workflowId)
    .describe()
    .catch((error: unknown) => {
      if (error instanceof WorkflowNotFoundError) return undefined;
      throw error;
    });
  if (running?.status.name === 'RUNNING') {
    const memo = await running.memo;
    if (memo?.release === SUPERVISOR_RELEASE) return;
    await client.workflow
      .getHandle(workflowId)
      .terminate(`replaced by the release ${SUPERVISOR_RELEASE} supervisor`)
      .catch((error: unknown) => {
        if (!(error instanceof WorkflowNotFoundError)) throw error;
      });
  }
  await client.workflow.start(budgetSupervisorWorkflow, {
    taskQueue,
    workflowId,
    args: [args],
    workflowIdConflictPolicy: 'USE_EXISTING',
    memo: { release: SUPERVISOR_RELEASE },
    staticSummary: 'Discovers LiteLLM budgets and keeps one reset workflow per budget',
  });
}

async function countBudgetsByState(client: Client, taskQueue: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const state of ['active', 'paused', 'invalid']) {
    const { count } = await client.workflow.count(
      `${BUDGET_WORKFLOW_TYPES_CLAUSE} AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}' AND ${BudgetStateKey.name} = '${state}'`,
    );
    counts[state] = count;
  }
  return counts;
}

/** A Redis client for LiteLLM's Redis, from either REDIS_URL or REDIS_HOST/PORT/PASSWORD. */
export function createRedis(settings: NonNullable<Config['redis']>): Redis {
  // Commands fail fast while Redis is down (activities retry them) instead of queueing without bound.
  const common = { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false };
  // A rediss:// URL turns TLS on by itself; `tls` adds the CA to trust (ioredis keeps the options we pass).
  return 'url' in settings
    ? new Redis(settings.url, { ...common, ...(settings.tls && { tls: settings.tls }) })
    : new Redis({ ...settings, ...common });
}
