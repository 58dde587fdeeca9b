/**
 * `npm run replay:live [-- --limit N]`: before deploying new workflow code, replays the histories of the budget
 * workflows running on the Temporal server that TEMPORAL_ADDRESS (and the rest of `@temporalio/envconfig`) names
 * against the workflow code of this checkout. Exits 1 naming every run the new code would not replay (a change that
 * needs a `patched()` branch); 0 when every run replays. Read-only: it lists and reads histories, nothing else.
 */
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { connectClient, temporalTarget } from '../src/temporal/connection.js';
import { BUDGET_WORKFLOW_TYPES_CLAUSE } from '../src/temporal/budget-workflows.js';
import { bundleBudgetWorkflows } from '../src/worker.js';

function limitArg(argv: readonly string[]): number {
  const at = argv.indexOf('--limit');
  if (at === -1) return 1_000;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 1)
    throw new Error('--limit takes a whole number of runs, e.g. --limit 200');
  return value;
}

async function main(): Promise<void> {
  const limit = limitArg(process.argv.slice(2));
  // The bundler and the replay workers log every step at INFO; only problems matter here.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const target = temporalTarget();
  const { client, connection } = await connectClient(target);
  try {
    const workflowBundle = await bundleBudgetWorkflows(Runtime.instance().logger);
    const query = `${BUDGET_WORKFLOW_TYPES_CLAUSE} AND ExecutionStatus = 'Running'`;
    const histories = async function* () {
      let n = 0;
      for await (const execution of client.workflow.list({ query })) {
        if (n >= limit) return;
        n += 1;
        yield {
          workflowId: execution.workflowId,
          history: await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory(),
        };
      }
    };
    let replayed = 0;
    const failed: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle }, histories())) {
      replayed += 1;
      if (result.error) failed.push(`${result.workflowId}: ${result.error.message}`);
    }
    for (const line of failed) process.stderr.write(`does not replay: ${line}\n`);
    process.stdout.write(
      `replayed ${replayed} running budget workflow(s) from ${target.address}: ${replayed - failed.length} ok, ${failed.length} failed\n`,
    );
    if (failed.length > 0) process.exitCode = 1;
  } finally {
    await connection.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`replay:live: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
