import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as activities from '../fixtures/smoke-activities.js';
import { sleeperWorkflow } from '../fixtures/smoke-workflows.js';
import { uniqueName } from '../helpers/services.js';
import { bundleWorkflows, createTimeSkippingEnv } from '../helpers/temporal.js';

const THIRTY_DAYS = 30 * 24 * 60 * 60 * 1000;

describe('time-skipping test server', () => {
  let env: TestWorkflowEnvironment;
  beforeAll(async () => {
    env = await createTimeSkippingEnv();
  });
  afterAll(async () => {
    await env?.teardown();
  });

  it('completes a workflow that sleeps 30 days in seconds of real time', async () => {
    const taskQueue = uniqueName('skip');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await bundleWorkflows('test/fixtures/smoke-workflows.ts'),
      activities,
    });
    const realStart = Date.now();
    const { startedAt, wokeAt } = await worker.runUntil(
      env.client.workflow.execute(sleeperWorkflow, {
        taskQueue,
        workflowId: uniqueName('sleeper'),
        args: [THIRTY_DAYS],
      }),
    );
    expect(wokeAt - startedAt).toBeGreaterThanOrEqual(THIRTY_DAYS);
    // Real time is a fraction of the skipped month; the benchmark measures it precisely.
    expect(Date.now() - realStart).toBeLessThan(THIRTY_DAYS / 1000);
  });
});
