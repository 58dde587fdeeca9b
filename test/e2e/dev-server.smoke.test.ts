import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as activities from '../fixtures/smoke-activities.js';
import { greetWorkflow } from '../fixtures/smoke-workflows.js';
import { services, uniqueName } from '../helpers/services.js';
import { bundleWorkflows, installTestRuntime } from '../helpers/temporal.js';

describe('Temporal dev server', () => {
  let connection: Connection;
  let nativeConnection: NativeConnection;

  beforeAll(async () => {
    installTestRuntime();
    connection = await Connection.connect({ address: services().temporalAddress });
    nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
  });
  afterAll(async () => {
    await connection?.close();
    await nativeConnection?.close();
  });

  it('runs a workflow with an activity to completion on a real worker', async () => {
    const taskQueue = uniqueName('smoke');
    const worker = await Worker.create({
      connection: nativeConnection,
      taskQueue,
      workflowBundle: await bundleWorkflows('test/fixtures/smoke-workflows.ts'),
      activities,
    });
    const client = new Client({ connection });
    const result = await worker.runUntil(
      client.workflow.execute(greetWorkflow, {
        taskQueue,
        workflowId: uniqueName('greet'),
        args: ['budgets'],
      }),
    );
    expect(result).toBe(`hello budgets from ${hostname()}`);
  });

  it('serves its Web UI over HTTP', async () => {
    const response = await fetch(services().temporalUiUrl);
    expect(response.status).toBe(200);
    expect(await response.text()).toMatch(/<html/i);
  });
});
