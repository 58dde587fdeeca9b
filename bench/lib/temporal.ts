import type { WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, type Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { ActivityDeps } from '../../activities/index.js';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { registerSearchAttributes } from '../../src/temporal/register-search-attributes.js';
import { bundleBudgetWorkflows, createBudgetWorker } from '../../src/worker.js';
import { onCleanup, withTimeout } from './lifecycle.js';
import type { Services } from './services.js';

/** A time-skipping test server with our search attributes, and the workflow bundle, ready for workers. */
export interface TemporalBench {
  readonly env: TestWorkflowEnvironment;
  readonly bundle: WorkflowBundleWithSourceMap;
  readonly setupMs: Record<string, number>;
}

export async function startTemporal(services: Services): Promise<TemporalBench> {
  // Warnings only from the SDK's core; the benchmark's own signal handlers stop everything (not the runtime's).
  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  const setupMs: Record<string, number> = {};
  let t0 = performance.now();
  const env = await withTimeout(
    TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: services.testServerPath } },
    }),
    120_000,
    'starting the time-skipping test server',
  );
  onCleanup('time-skipping test server', () => env.teardown());
  await withTimeout(
    registerSearchAttributes(env.connection, 'default'),
    30_000,
    'registering search attributes',
  );
  setupMs['time-skipping server start'] = Math.round(performance.now() - t0);
  t0 = performance.now();
  const bundle = await withTimeout(
    bundleBudgetWorkflows(new DefaultLogger('WARN')),
    180_000,
    'bundling the workflows',
  );
  setupMs['workflow bundle'] = Math.round(performance.now() - t0);
  return { env, bundle, setupMs };
}

/** A worker with the real activities (services' pool and Redis) on its own task queue, like the production one. */
export async function createWorker(
  temporal: TemporalBench,
  services: Services,
  taskQueue: string,
  redisNamespace: string,
): Promise<Worker> {
  const deps: ActivityDeps = {
    db: services.pool,
    redis: services.redis,
    config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace },
    temporal: { client: temporal.env.client, taskQueue },
  };
  return withTimeout(
    createBudgetWorker({
      connection: temporal.env.nativeConnection,
      taskQueue,
      deps,
      workflowBundle: temporal.bundle,
    }),
    60_000,
    'creating a worker',
  );
}

export async function startBudgetWorkflow(
  temporal: TemporalBench,
  ref: BudgetRef,
  taskQueue: string,
): Promise<WorkflowHandle> {
  return temporal.env.client.workflow.start(BUDGET_WORKFLOW_TYPE, {
    taskQueue,
    workflowId: budgetWorkflowId(ref),
    args: [{ kind: ref.kind, id: ref.id }],
  });
}

export async function status(temporal: TemporalBench, ref: BudgetRef): Promise<BudgetStatus> {
  return temporal.env.client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);
}

/**
 * Terminates the workflows a benchmark started: one left with a pending timer and no worker would hold skipped
 * time still when the timer fires, stalling the next benchmark.
 */
export async function terminateAll(temporal: TemporalBench, refs: readonly BudgetRef[]): Promise<void> {
  const BATCH = 50;
  for (let i = 0; i < refs.length; i += BATCH) {
    await Promise.all(
      refs.slice(i, i + BATCH).map((ref) =>
        temporal.env.client.workflow
          .getHandle(budgetWorkflowId(ref))
          .terminate('benchmark finished')
          .catch(() => undefined),
      ),
    );
  }
}

/** Skips server time until `slackMs` past `instant` (no-op when already there). */
export async function sleepUntil(temporal: TemporalBench, instant: number, slackMs: number): Promise<void> {
  const now = await temporal.env.currentTimeMs();
  const target = instant + slackMs;
  if (target > now) await temporal.env.sleep(target - now);
}
