import type { NativeConnection } from '@temporalio/worker';
import { Worker, type WorkerOptions } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createActivities, type ActivityDeps } from '../activities/index.js';

/** The workflow entry module, bundled by the SDK for its sandbox (`.ts` from source, `.js` once built). */
export const WORKFLOWS_PATH = fileURLToPath(
  new URL(`../workflows/index.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url),
);

export interface BudgetWorkerOptions {
  readonly connection: NativeConnection;
  readonly namespace?: string;
  readonly taskQueue: string;
  readonly deps: ActivityDeps;
  /** A pre-built bundle (tests bundle once per file); otherwise the workflows are bundled at start-up. */
  readonly workflowBundle?: WorkerOptions['workflowBundle'];
  readonly maxConcurrentActivityTaskExecutions?: number;
  readonly maxConcurrentWorkflowTaskExecutions?: number;
}

/** A worker that runs the budget workflows and the supervisor with activities bound to real dependencies. */
export async function createBudgetWorker(options: BudgetWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    ...(options.workflowBundle
      ? { workflowBundle: options.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(options.deps),
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivityTaskExecutions,
    maxConcurrentWorkflowTaskExecutions: options.maxConcurrentWorkflowTaskExecutions,
    // Budget workflows sleep for days: keep only the busiest in the sticky cache.
    maxCachedWorkflows: 1_000,
  });
}
