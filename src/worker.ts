import type { NativeConnection } from '@temporalio/worker';
import {
  Runtime,
  Worker,
  bundleWorkflowCode,
  type Logger,
  type WorkerOptions,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createActivities, type ActivityDeps } from '../activities/index.js';

/** `.ts` from source, `.js` once built. */
const sourceExtension = import.meta.url.endsWith('.ts') ? 'ts' : 'js';

/** The workflow entry module, bundled by the SDK for its sandbox. */
export const WORKFLOWS_PATH = fileURLToPath(
  new URL(`../workflows/index.${sourceExtension}`, import.meta.url),
);

/** The payload converter bundled with the workflows: decoding a hostile payload never fails an activation. */
export const PAYLOAD_CONVERTER_PATH = fileURLToPath(
  new URL(`./temporal/payload-converter.${sourceExtension}`, import.meta.url),
);

/**
 * Bundles the budget workflows with our payload converter (once per process, or once per test file). Logs go to
 * the Temporal runtime's logger (pino in the worker process) unless another is given.
 */
export async function bundleBudgetWorkflows(logger?: Logger): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: logger ?? Runtime.instance().logger,
  });
}

export interface BudgetWorkerOptions {
  readonly connection: NativeConnection;
  readonly namespace?: string;
  readonly taskQueue: string;
  readonly deps: ActivityDeps;
  /**
   * A bundle from {@link bundleBudgetWorkflows} (tests bundle once per file); otherwise the workflows are bundled
   * at start-up. A bundle without our payload converter lets one undecodable signal disturb other workflows.
   */
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
    // Bundled here rather than through `workflowsPath` so the payload converter is set for workflow code only:
    // activities receive what our own workflows encoded.
    workflowBundle: options.workflowBundle ?? (await bundleBudgetWorkflows()),
    activities: createActivities(options.deps),
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivityTaskExecutions,
    maxConcurrentWorkflowTaskExecutions: options.maxConcurrentWorkflowTaskExecutions,
    // Budget workflows sleep for days: keep only the busiest in the sticky cache.
    maxCachedWorkflows: 1_000,
  });
}
