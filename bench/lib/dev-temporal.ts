import { Client, Connection } from '@temporalio/client';
import { startDevServer } from '../../dev/provision/dev-server.js';
import { TEMPORAL_CLI_VERSION } from '../../dev/provision/temporal-cli.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { searchAttributeFlags } from '../../src/temporal/search-attributes.js';
import { onCleanup, withTimeout } from './lifecycle.js';

/** The Temporal CLI's dev server (in memory, our search attributes registered) and a client on it. */
export interface DevTemporal {
  readonly address: string;
  readonly client: Client;
  readonly version: string;
  readonly startMs: number;
}

export async function startDevTemporal(): Promise<DevTemporal> {
  const t0 = performance.now();
  const server = await withTimeout(
    startDevServer({ searchAttributes: searchAttributeFlags() }),
    // The first run on a machine builds the CLI from source (a few minutes on two cores).
    900_000,
    'starting the Temporal dev server',
  );
  onCleanup('Temporal dev server', () => server.stop());
  const connection = await Connection.connect({ address: server.address });
  onCleanup('Temporal client connection', () => connection.close());
  return {
    address: server.address,
    client: new Client({ connection, namespace: 'default' }),
    version: TEMPORAL_CLI_VERSION,
    startMs: Math.round(performance.now() - t0),
  };
}

/** Running budget workflows on one task queue, as the dev server's visibility store counts them. */
export async function countRunning(temporal: DevTemporal, taskQueue: string, extra = ''): Promise<number> {
  const { count } = await temporal.client.workflow.count(
    `WorkflowType = '${BUDGET_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}'${extra}`,
  );
  return count;
}

export interface HistorySample {
  readonly workflowId: string;
  readonly runId: string;
  readonly historyLength: number;
}

/** Each workflow's current run and its history length (describe: one call each, `concurrency` at a time). */
export async function historyLengths(
  temporal: DevTemporal,
  workflowIds: readonly string[],
  concurrency = 20,
): Promise<Map<string, HistorySample>> {
  const out = new Map<string, HistorySample>();
  for (let i = 0; i < workflowIds.length; i += concurrency) {
    const described = await Promise.all(
      workflowIds.slice(i, i + concurrency).map((id) => temporal.client.workflow.getHandle(id).describe()),
    );
    for (const d of described)
      out.set(d.workflowId, { workflowId: d.workflowId, runId: d.runId, historyLength: d.historyLength });
  }
  return out;
}
