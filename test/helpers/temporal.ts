import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  DefaultLogger,
  Runtime,
  bundleWorkflowCode,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { PAYLOAD_CONVERTER_PATH } from '../../src/worker.js';
import { services } from './services.js';

let runtimeInstalled = false;

/** Keeps the SDK's core logs to warnings; must run before anything creates the runtime. */
export function installTestRuntime(): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

/** Starts a fresh time-skipping test server for this test file (skipped time is global to a server). */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  installTestRuntime();
  return TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: services().testServerPath } },
  });
}

/**
 * Bundles a workflow module once per test file, with the payload converter the worker ships; pass the result as
 * `workflowBundle`.
 */
export async function bundleWorkflows(relativeToRepo: string): Promise<WorkflowBundleWithSourceMap> {
  const workflowsPath = fileURLToPath(new URL(`../../${relativeToRepo}`, import.meta.url));
  return bundleWorkflowCode({
    workflowsPath,
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: new DefaultLogger('WARN'),
  });
}
