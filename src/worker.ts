import type { NativeConnection } from '@temporalio/worker';
import {
  Runtime,
  Worker,
  bundleWorkflowCode,
  type Logger,
  type WorkerOptions,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
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

/**
 * Where `npm run build` writes the workflow bundle: `dist/workflow-bundle.js`, beside `dist/src/` (Temporal's
 * `production` sample does the same), so the image's workers start without bundling: webpack and swc take
 * seconds of CPU and a few hundred MB at their peak in every worker that bundles at start-up.
 */
export const PREBUILT_BUNDLE_PATH = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));

/** Writes the bundle of {@link bundleBudgetWorkflows} to `file` (the build step). */
export async function writeWorkflowBundle(file: string, logger?: Logger): Promise<void> {
  const { code } = await bundleBudgetWorkflows(logger);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, code);
}

/**
 * The workflow code a worker runs: the bundle prebuilt by `npm run build` when running from `dist/` and it is
 * there; else the workflows bundled now. Never a prebuilt bundle when running from source (tsx, tests): it could be
 * older than the source beside it.
 */
export async function budgetWorkflowBundle(): Promise<NonNullable<WorkerOptions['workflowBundle']>> {
  if (sourceExtension === 'js' && existsSync(PREBUILT_BUNDLE_PATH)) return { codePath: PREBUILT_BUNDLE_PATH };
  return bundleBudgetWorkflows();
}

export interface BudgetWorkerOptions {
  readonly connection: NativeConnection;
  readonly namespace?: string;
  readonly taskQueue: string;
  readonly deps: ActivityDeps;
  /**
   * A bundle from {@link bundleBudgetWorkflows} (tests bundle once per file); otherwise
   * {@link budgetWorkflowBundle}'s. A bundle without our payload converter lets one undecodable signal disturb
   * other workflows.
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
    workflowBundle: options.workflowBundle ?? (await budgetWorkflowBundle()),
    activities: createActivities(options.deps),
    maxConcurrentActivityTaskExecutions: options.maxConcurrentActivityTaskExecutions,
    maxConcurrentWorkflowTaskExecutions: options.maxConcurrentWorkflowTaskExecutions,
    // Budget workflows sleep for days, so the cache, not the number of budgets, sets the worker's memory: about
    // 0.2 MB of RSS per cached workflow above a ~270 MB base (`npm run bench -- --only=sleeping`). A sleeping
    // workflow need not be cached: when it wakes to arm its reset, minutes before the boundary, an evicted one
    // replays its short history (about ten events), and the reset itself runs from the armed batch at the boundary.
    maxCachedWorkflows: 250,
  });
}
