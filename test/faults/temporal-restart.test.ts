import { Client, Connection } from '@temporalio/client';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { startDevServer, type RunningDevServer } from '../../dev/provision/dev-server.js';
import { freePort } from '../../dev/provision/ports.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { searchAttributeFlags } from '../../src/temporal/search-attributes.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertKey } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// A Temporal dev server of this file's own, on a SQLite file, stopped while a budget sleeps and started again on
// the same file and port. The worker process stays up throughout and reconnects by itself.
/** How long Temporal stays down: three of the budget's 2 s boundaries, and a second. */
const OUTAGE_MS = 7_000;
let scratch: string;
let db: TestDatabase;
let ports: { port: number; uiPort: number };
let server: RunningDevServer | undefined;
let connection: Connection | undefined;
let worker: WorkerProcess | undefined;

async function startServer(): Promise<RunningDevServer> {
  server = await startDevServer({
    ...ports,
    dbFile: path.join(scratch, 'temporal.db'),
    searchAttributes: searchAttributeFlags(),
  });
  return server;
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'temporal-restart-'));
  ports = { port: await freePort(), uiPort: await freePort() };
  db = await createTestDatabase();
  await startServer();
});
afterAll(async () => {
  await worker?.kill();
  await connection?.close();
  await server?.stop();
  await db?.drop();
  await rm(scratch, { recursive: true, force: true });
});

describe('the Temporal server restarted on its persisted database', () => {
  it('keeps every timer: the boundaries missed while it was down are reset once, as a catch-up', async () => {
    const taskQueue = uniqueName('temporal-restart');
    const address = server!.address;
    worker = await startWorkerProcess(
      {
        DATABASE_URL: db.url,
        REDIS_URL: services().redisUrl,
        LITELLM_REDIS_NAMESPACE: taskQueue,
        TEMPORAL_ADDRESS: address,
        BUDGET_TASK_QUEUE: taskQueue,
      },
      ['--no-supervisor'],
    );
    connection = await Connection.connect({ address });
    const client = new Client({ connection });
    const ref: BudgetRef = { kind: 'key', id: uniqueName('restart-key') };
    // A 2 s budget: several boundaries pass during the outage, so the catch-up has missed periods to record.
    const first = new Date(Math.ceil((Date.now() + 4_000) / 2_000) * 2_000);
    await insertKey(db.pool, { token: ref.id, spend: 5, duration: '2s', resetAt: first.toISOString() });
    await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
      taskQueue,
      workflowId: budgetWorkflowId(ref),
      args: [ref],
    });
    const status = (): Promise<BudgetStatus> =>
      client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);
    await vi.waitFor(async () => expect((await status()).cycle).toBeGreaterThanOrEqual(1), {
      timeout: LIMITS.workflowStep,
      interval: 250,
    });

    await server!.stop();
    const downAt = Date.now();
    // Spend accrues while Temporal is down; the outage spans at least three boundaries.
    await db.pool.query(`UPDATE "LiteLLM_VerificationToken" SET spend = 3 WHERE token = $1`, [ref.id]);
    await vi.waitFor(() => expect(Date.now() - downAt).toBeGreaterThan(OUTAGE_MS), {
      // A wait for the clock alone, which load does not slow down: the limit only has to exceed the outage.
      timeout: OUTAGE_MS * 2,
      interval: 200,
    });
    await startServer();
    const upAt = Date.now();

    // The catch-up, and the calendar going on after it: the timers survived the restart.
    await vi.waitFor(
      async () => {
        const { rows } = await db.pool.query<{ trigger: string; executed_at: Date }>(
          `SELECT trigger, executed_at FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
          [ref.id],
        );
        const catchUps = rows.filter((r) => r.trigger === 'catch_up');
        expect(catchUps.length, JSON.stringify(rows)).toBeGreaterThanOrEqual(1);
        const afterwards = rows.filter((r) => r.trigger === 'schedule' && r.executed_at.getTime() > upAt);
        expect(afterwards.length).toBeGreaterThanOrEqual(1);
      },
      { timeout: LIMITS.workflowStep, interval: 250 },
    );
    const { rows } = await db.pool.query<{
      trigger: string;
      period_end: Date;
      executed_at: Date;
      missed_periods: number;
      late_by_ms: string;
    }>(
      `SELECT trigger, period_end, executed_at, missed_periods, late_by_ms FROM budget_lifecycle.reset_log
        WHERE budget_id = $1 ORDER BY period_end`,
      [ref.id],
    );
    // Never a period twice, and periods only move forward on the 2 s calendar.
    const ends = rows.map((r) => r.period_end.getTime());
    expect(new Set(ends).size).toBe(ends.length);
    for (const end of ends) expect((end - first.getTime()) % 2_000).toBe(0);
    // Exactly one reset stands for the boundaries that passed while the server was down: a catch-up that records
    // how many it covered and how late it ran (a reset armed in the worker before the outage may have committed
    // its own boundary on time; the boundaries after it were nobody's until the server came back).
    const catchUp = rows.find((r) => r.trigger === 'catch_up')!;
    const coveredByCatchUp = rows.filter(
      (r) =>
        r.period_end.getTime() > downAt + 2_000 && r.period_end.getTime() <= catchUp.period_end.getTime(),
    );
    expect(coveredByCatchUp).toEqual([catchUp]);
    expect(catchUp.missed_periods).toBeGreaterThanOrEqual(1);
    expect(Number(catchUp.late_by_ms)).toBeGreaterThan(0);
    expect(catchUp.executed_at.getTime()).toBeGreaterThanOrEqual(upAt);
    const s = await status();
    expect(s).toMatchObject({ state: 'active', lastError: null });
    expect(worker.child.exitCode).toBeNull();
  });
});
