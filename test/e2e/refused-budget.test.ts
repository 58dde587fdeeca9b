import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDevServer, type RunningDevServer } from '../../dev/provision/dev-server.js';
import { budgetWorkflowId, formatBudgetRef, type BudgetRef } from '../../src/budget-ref.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { searchAttributeFlags } from '../../src/temporal/search-attributes.js';
import { supervisorStatusQuery, supervisorWorkflowId, syncNowSignal } from '../../workflows/supervisor.js';
import { budgetctl } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget } from '../helpers/litellm-rows.js';
import { uniqueName, workerEnv } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// A budget whose workflow the server refuses to start (here: its id, carried whole in the workflow's input, is
// over the payload size limit this server was given) affects only itself: discovery and the full sweep record
// it and go on, every other budget gets its workflow in the same pass, and later budgets are still discovered.
// Its own dev server, for the lowered limit; real worker process and PostgreSQL.
const BLOB_LIMIT = 20_000;
let server: RunningDevServer;
let db: TestDatabase;
let connection: Connection;
let client: Client;
let worker: WorkerProcess | undefined;
const taskQueue = uniqueName('refused');
const refused: BudgetRef = { kind: 'budget', id: `${taskQueue}-m-${'y'.repeat(BLOB_LIMIT + 10_000)}` };
// Before and after the refused id in discovery's order.
const before: BudgetRef = { kind: 'budget', id: `${taskQueue}-a` };
const after: BudgetRef = { kind: 'budget', id: `${taskQueue}-z` };
const later: BudgetRef = { kind: 'budget', id: `${taskQueue}-later` };

beforeAll(async () => {
  server = await startDevServer({
    searchAttributes: searchAttributeFlags(),
    dynamicConfig: [`limit.blobSize.error=${BLOB_LIMIT}`, `limit.blobSize.warn=${BLOB_LIMIT / 2}`],
  });
  db = await createTestDatabase();
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection });
});
afterAll(async () => {
  await worker?.kill();
  await connection?.close();
  await server?.stop();
  await db?.drop();
});

const status = (ref: BudgetRef): Promise<BudgetStatus> =>
  client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);

describe('a budget whose workflow the server refuses', () => {
  it('is recorded as rejected, and discovery and the full sweep go on to every other budget', async () => {
    const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    for (const ref of [before, refused, after]) {
      await insertBudget(db.pool, { id: ref.id, duration: '1h', resetAt: nextHour });
    }
    worker = await startWorkerProcess({ ...workerEnv(db.url, taskQueue), TEMPORAL_ADDRESS: server.address }, [
      '--sync-interval',
      '1h',
    ]);
    const supervisor = client.workflow.getHandle(supervisorWorkflowId(taskQueue));

    // The first pass (a full sweep too) finishes, having started the others and recorded the refusal.
    const first = await vi.waitFor(
      async () => {
        const s = await supervisor.query(supervisorStatusQuery);
        expect(s.lastFullSweep, worker?.output().slice(-2_000)).not.toBeNull();
        return s;
      },
      { timeout: LIMITS.workflowStep, interval: 500 },
    );
    expect(first.lastFullSweep).toMatchObject({ started: 2, rejected: 1 });
    for (const ref of [before, after]) expect((await status(ref)).nextResetAt).toBe(nextHour);
    const { rows } = await db.pool.query<{ budget_id: string; rejected: string | null }>(
      `SELECT budget_id, rejected FROM budget_lifecycle.budget_sync ORDER BY budget_id COLLATE "C"`,
    );
    expect(rows).toEqual([
      { budget_id: before.id, rejected: null },
      { budget_id: refused.id, rejected: 'Blob data size exceeds limit.' },
      { budget_id: after.id, rejected: null },
    ]);

    // The operator asking for it is told why it has no workflow, in one line, not to run a sync.
    const asked = await budgetctl(['status', formatBudgetRef(refused)], {
      TEMPORAL_ADDRESS: server.address,
      DATABASE_URL: db.url,
    });
    expect(asked.code).toBe(3);
    expect(asked.stderr).toMatch(
      /^budgetctl: Temporal refused to start the workflow of budget:refused-.*… \(\d+ characters\): Blob data size exceeds limit\.; fix the row/m,
    );
    expect(asked.stderr.length).toBeLessThan(1_000);
    // The worker's warning names the budget, shortened: the whole id would fill the log line.
    const warnings = (worker.output().match(/^\{.*"budget rejected by Temporal.*$/gm) ?? []).map(
      (line) => JSON.parse(line) as { budgetId: string },
    );
    expect(warnings.length).toBeGreaterThan(0);
    for (const w of warnings) expect(w.budgetId).toMatch(/^refused-.*… \(\d+ characters\)$/);

    // A budget created later is discovered by the next pass; the refused one is not tried again.
    await insertBudget(db.pool, { id: later.id, duration: '1h', resetAt: nextHour });
    await supervisor.signal(syncNowSignal);
    await vi.waitFor(async () => expect((await status(later)).nextResetAt).toBe(nextHour), {
      timeout: LIMITS.workflowStep,
      interval: 500,
    });
    const second = await supervisor.query(supervisorStatusQuery);
    expect(second.lastPass).toMatchObject({ full: false, started: 1, rejected: 0 });
    // No activity of the supervisor is stuck retrying on the refused budget.
    const { raw } = await supervisor.describe();
    expect((raw.pendingActivities ?? []).filter((a) => (a.attempt ?? 0) >= 2)).toEqual([]);
  });
});
