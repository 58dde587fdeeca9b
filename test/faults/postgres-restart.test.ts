import { Client, Connection } from '@temporalio/client';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { createLiteLLMDatabase } from '../../dev/provision/litellm-database.js';
import { freePort } from '../../dev/provision/ports.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/provision/postgres.js';
import { LATE_GRACE_MS } from '../../src/reset-plan.js';
import { scheduleChangedSignal, statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { supervisorWorkflowId, syncNowSignal } from '../../workflows/supervisor.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, ONE_RESET_DURATION, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// A PostgreSQL server of this file's own, restarted (fast shutdown: every session is ended and every open
// transaction rolled back) while a reset is in its transaction and while discovery and a schedule reload need it.
// Activities must retry until it is back; nothing may be reset twice, and nothing may be marked invalid.
let scratch: string;
let port: number;
let server: RunningPostgres | undefined;
let url: string;
let pool: pg.Pool;
let connection: Connection;
let client: Client;
let worker: WorkerProcess | undefined;
const taskQueue = uniqueName('pg-restart');

async function startServer(): Promise<void> {
  server = await startEmbeddedPostgres({ dataDir: path.join(scratch, 'pg'), persistent: true, port });
}
async function stopServer(): Promise<void> {
  const stopping = server;
  server = undefined;
  await stopping?.stop();
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'pg-restart-'));
  // As root the server runs as the `postgres` user, which must reach its data directory.
  await chmod(scratch, 0o755);
  port = await freePort();
  await startServer();
  url = await createLiteLLMDatabase(server!.url, 'litellm');
  pool = new pg.Pool({ connectionString: url, max: 4 });
  // The restarts end the pool's idle connections; the pool replaces them.
  pool.on('error', () => undefined);
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
});
afterAll(async () => {
  await worker?.kill();
  for (const id of [supervisorWorkflowId(taskQueue), budgetWorkflowId(tier)]) {
    await client?.workflow
      .getHandle(id)
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await pool?.end();
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const tier: BudgetRef = { kind: 'budget', id: `${taskQueue}-tier` };
const status = (ref: BudgetRef): Promise<BudgetStatus> =>
  client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);

describe('PostgreSQL restarted', () => {
  it('during a reset transaction: the reset retries and commits once, late by the outage, the budget stays active', async () => {
    worker = await startWorkerProcess({
      DATABASE_URL: url,
      REDIS_URL: services().redisUrl,
      LITELLM_REDIS_NAMESPACE: taskQueue,
      TEMPORAL_ADDRESS: services().temporalAddress,
      BUDGET_TASK_QUEUE: taskQueue,
    });
    const boundary = new Date(Math.ceil((Date.now() + 8_000) / 1_000) * 1_000).toISOString();
    // Its one reset in this file (the next test checks it is still the only one).
    await insertBudget(pool, { id: tier.id, duration: ONE_RESET_DURATION, resetAt: boundary });
    await insertTag(pool, { name: `${tier.id}-tag`, spend: 7, budgetId: tier.id });
    // Hold the reset inside its transaction with the tag's row lock, so the restart lands mid-transaction.
    const locker = new pg.Client({ connectionString: url });
    locker.on('error', () => undefined);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query(`SELECT 1 FROM "LiteLLM_TagTable" WHERE budget_id = $1 FOR UPDATE`, [tier.id]);
    await client.workflow.getHandle(supervisorWorkflowId(taskQueue)).signal(syncNowSignal);
    await vi.waitFor(
      async () => {
        const { rows } = await pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = 'litellm' AND wait_event_type = 'Lock' AND state = 'active'`,
        );
        expect(rows).toHaveLength(1);
      },
      { timeout: LIMITS.workflowStep, interval: 100 },
    );
    // The reset is already in its transaction (waiting on the lock above), so the workflow woke before this stop:
    // lateness measured at the wake would fall short of the bound below, lateness measured at the commit cannot.
    await stopServer();
    // Nothing can commit before the server is started again.
    const downUntil = Date.now();
    await startServer();
    await locker.end().catch(() => undefined);

    const s = await vi.waitFor(
      async () => {
        const current = await status(tier);
        if (current.cycle < 1) throw new Error(`not reset yet: ${JSON.stringify(current)}`);
        return current;
      },
      { timeout: LIMITS.workflowStep, interval: 250 },
    );
    expect(s).toMatchObject({ state: 'active', cycle: 1, lastError: null });
    const { rows } = await pool.query(
      `SELECT period_end, entity_count, late_by_ms::float8 AS late_by_ms, trigger
         FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
      [tier.id],
    );
    expect(rows.map((r) => [(r.period_end as Date).toISOString(), r.entity_count])).toEqual([[boundary, 1]]);
    // Lateness is measured as the reset commits, after the outage, not when the workflow woke at the boundary;
    // past the grace period such a reset is a catch-up.
    const lateByMs = rows[0].late_by_ms as number;
    expect(lateByMs).toBeGreaterThanOrEqual(downUntil - Date.parse(boundary));
    expect(rows[0].trigger).toBe(lateByMs > LATE_GRACE_MS ? 'catch_up' : 'schedule');
    expect(s.lastReset).toMatchObject({ lateByMs, trigger: rows[0].trigger });
    expect(await spendOf(pool, 'LiteLLM_TagTable', { tag_name: `${tier.id}-tag` })).toBe(0);
  });

  it('during discovery and a schedule reload: both retry, the new budget is found, nothing turns invalid', async () => {
    const added: BudgetRef = { kind: 'budget', id: `${taskQueue}-added` };
    const later = new Date(Math.ceil((Date.now() + 7_200_000) / 3_600_000) * 3_600_000).toISOString();
    await insertBudget(pool, { id: added.id, duration: '1h', resetAt: later });
    // Each test starts with the server up, whatever the one before it left.
    if (!server) await startServer();
    const supervisor = client.workflow.getHandle(supervisorWorkflowId(taskQueue));
    await stopServer();
    // While the server is down: a discovery pass and a schedule reload, each failing until it is back.
    await supervisor.signal(syncNowSignal);
    await client.workflow.getHandle(budgetWorkflowId(tier)).signal(scheduleChangedSignal);
    await vi.waitFor(
      async () => {
        const { raw } = await supervisor.describe();
        const failing = (raw.pendingActivities ?? []).filter((a) => (a.attempt ?? 0) >= 2);
        expect(failing.length, 'a discovery attempt failed while PostgreSQL was down').toBeGreaterThan(0);
      },
      { timeout: LIMITS.workflowStep, interval: 250 },
    );
    await startServer();

    await vi.waitFor(
      async () => expect((await status(added)).nextResetAt, worker?.output().slice(-2_000)).toBe(later),
      { timeout: LIMITS.workflowStep, interval: 500 },
    );
    expect(await status(added)).toMatchObject({ state: 'active', lastError: null });
    // The reload that failed while the server was down retried; the tier is still active with its one reset.
    await vi.waitFor(
      async () => {
        const history = await client.workflow.getHandle(budgetWorkflowId(tier)).fetchHistory();
        const events = history.events ?? [];
        const signalled = events.map((e) => !!e.workflowExecutionSignaledEventAttributes).lastIndexOf(true);
        const markersAfter = events.slice(signalled).filter((e) => e.markerRecordedEventAttributes);
        expect(markersAfter.length, 'the reload ran after the signal').toBeGreaterThan(0);
      },
      { timeout: LIMITS.workflowStep, interval: 500 },
    );
    expect(await status(tier)).toMatchObject({ state: 'active', cycle: 1, lastError: null });
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM budget_lifecycle.reset_log`);
    expect(rows[0].n).toBe(1);
  });
});
