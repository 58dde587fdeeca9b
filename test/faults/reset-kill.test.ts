import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { Redis } from 'ioredis';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { freePort } from '../../dev/provision/ports.js';
import { startRedis, type RunningRedis } from '../../dev/provision/redis.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import {
  forceResetSignal,
  resetNowUpdate,
  statusQuery,
  type BudgetStatus,
} from '../../src/temporal/messages.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, ONE_RESET_DURATION, resetAtOf, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// A worker process SIGKILLed at the two moments that matter for a reset: inside its transaction, and between the
// commit and the cache invalidation. Real worker processes, the dev server, PostgreSQL, and a Redis of our own.
let db: TestDatabase;
let connection: Connection;
let client: Client;
let scratch: string;
let redisPort: number;
let redisServer: RunningRedis | undefined;
const workers: WorkerProcess[] = [];
const started: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
  scratch = await mkdtemp(path.join(tmpdir(), 'reset-kill-'));
  redisPort = await freePort();
  redisServer = await startRedis({ dataDir: scratch, port: redisPort });
});
afterAll(async () => {
  for (const worker of workers) await worker.kill();
  for (const id of started) {
    await client?.workflow
      .getHandle(id)
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  if (redisServer) {
    try {
      process.kill(redisServer.pid, 'SIGCONT');
    } catch {
      // already gone
    }
    await redisServer.stop();
  }
  await db?.drop();
  await rm(scratch, { recursive: true, force: true });
});

/** A tier due a few seconds from now with one tag of spend 9, its workflow started on `taskQueue`. */
async function dueTier(taskQueue: string): Promise<{ ref: BudgetRef; tag: string; boundary: string }> {
  const ref: BudgetRef = { kind: 'budget', id: `${taskQueue}-tier` };
  const tag = `${taskQueue}-tag`;
  const boundary = new Date(Math.ceil((Date.now() + 6_000) / 1_000) * 1_000).toISOString();
  await insertBudget(db.pool, { id: ref.id, duration: ONE_RESET_DURATION, resetAt: boundary });
  await insertTag(db.pool, { name: tag, spend: 9, budgetId: ref.id });
  const workflowId = budgetWorkflowId(ref);
  await client.workflow.start(BUDGET_WORKFLOW_TYPE, { taskQueue, workflowId, args: [ref] });
  started.push(workflowId);
  return { ref, tag, boundary };
}

interface AuditRow {
  period_end: Date;
  entity_count: number;
  spend_total: number;
  reason: string | null;
}

async function auditRows(ref: BudgetRef): Promise<AuditRow[]> {
  const { rows } = await db.pool.query<AuditRow>(
    `SELECT period_end, entity_count, spend_total, reason FROM budget_lifecycle.reset_log
      WHERE budget_kind = $1 AND budget_id = $2 ORDER BY id`,
    [ref.kind, ref.id],
  );
  return rows;
}

const status = (ref: BudgetRef): Promise<BudgetStatus> =>
  client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);

function workerEnv(taskQueue: string, redisUrl: string): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    REDIS_URL: redisUrl,
    LITELLM_REDIS_NAMESPACE: taskQueue,
    TEMPORAL_ADDRESS: services().temporalAddress,
    BUDGET_TASK_QUEUE: taskQueue,
  };
}

async function worker(env: Record<string, string>): Promise<WorkerProcess> {
  const w = await startWorkerProcess(env, ['--no-supervisor']);
  workers.push(w);
  return w;
}

/** After a restart: the one reset of `boundary` is committed, the workflow knows it and stays active. */
async function expectResetOnce(ref: BudgetRef, tag: string, boundary: string): Promise<void> {
  const s = await vi.waitFor(
    async () => {
      const current = await status(ref);
      if (current.cycle < 1) throw new Error(`not reset yet: ${JSON.stringify(current)}`);
      return current;
    },
    { timeout: LIMITS.workflowStep, interval: 250 },
  );
  expect(s).toMatchObject({ state: 'active', cycle: 1, lastError: null });
  expect(s.lastReset).toMatchObject({ periodEnd: boundary, entityCount: 1, spendTotal: 9 });
  const rows = await auditRows(ref);
  expect(rows.map((r) => [r.period_end.toISOString(), r.entity_count])).toEqual([[boundary, 1]]);
  expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);
  expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', ref.id)).toBe(s.nextResetAt);
  // `2d` counts from the boundary's own midnight: the next boundary is two days after it.
  expect(Date.parse(s.nextResetAt!)).toBe((Math.floor(Date.parse(boundary) / 86_400_000) + 2) * 86_400_000);
}

/**
 * A tier two hours from its boundary (no scheduled reset gets in the way of forced ones) with one tag of spend 9,
 * its workflow started on `taskQueue` and settled.
 */
async function idleTier(
  taskQueue: string,
  options: { workflowTaskTimeout?: string } = {},
): Promise<{ ref: BudgetRef; tag: string; handle: WorkflowHandle }> {
  const ref: BudgetRef = { kind: 'budget', id: `${taskQueue}-tier` };
  const tag = `${taskQueue}-tag`;
  const boundary = new Date(Math.ceil((Date.now() + 7_200_000) / 3_600_000) * 3_600_000).toISOString();
  await insertBudget(db.pool, { id: ref.id, duration: '1h', resetAt: boundary });
  await insertTag(db.pool, { name: tag, spend: 9, budgetId: ref.id });
  const handle = await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
    taskQueue,
    workflowId: budgetWorkflowId(ref),
    args: [ref],
    ...options,
  });
  started.push(handle.workflowId);
  await vi.waitFor(async () => expect((await status(ref)).nextResetAt).toBe(boundary), {
    timeout: LIMITS.workflowStep,
    interval: 250,
  });
  return { ref, tag, handle };
}

/** Kills the frozen Redis and starts a fresh one on the same port: what the dead worker sent it is gone. */
async function restartRedis(): Promise<void> {
  process.kill(redisServer!.pid, 'SIGKILL');
  await redisServer!.stop();
  redisServer = await startRedis({ dataDir: scratch, port: redisPort });
}

describe('a worker SIGKILLed during a reset', () => {
  it('inside the transaction: nothing is committed, and the restarted worker commits the reset once', async () => {
    const taskQueue = uniqueName('kill-tx');
    const env = workerEnv(taskQueue, `redis://127.0.0.1:${redisPort}`);
    const first = await worker(env);
    // The test takes the tag's row lock first (as a LiteLLM spend write would), so the worker's reset transaction
    // locks the tier, claims the period in the audit, and then waits on this lock, mid-transaction.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      const { ref, tag, boundary } = await dueTier(taskQueue);
      await locker.query('BEGIN');
      await locker.query(`SELECT spend FROM "LiteLLM_TagTable" WHERE tag_name = $1 FOR UPDATE`, [tag]);
      const blocked = await vi.waitFor(
        async () => {
          const { rows } = await db.pool.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND state = 'active'
                AND query LIKE '%LiteLLM_TagTable%'`,
          );
          if (rows.length !== 1) throw new Error(`${rows.length} reset transactions wait on the tag lock`);
          return rows[0]!.pid;
        },
        { timeout: LIMITS.workflowStep, interval: 100 },
      );
      await first.kill();
      // Releasing the lock lets the orphaned statement finish; its client is gone, so PostgreSQL rolls it back.
      await locker.query('ROLLBACK');
      await vi.waitFor(
        async () => {
          const { rows } = await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [blocked]);
          expect(rows).toHaveLength(0);
        },
        { timeout: LIMITS.workflowStep, interval: 100 },
      );
      expect(await auditRows(ref)).toEqual([]);
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(9);
      expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', ref.id)).toBe(boundary);

      await worker(env);
      await expectResetOnce(ref, tag, boundary);
    } finally {
      await locker.end();
    }
  });

  it('after the commit, before cache invalidation: one audit row, and the restarted worker invalidates', async () => {
    const taskQueue = uniqueName('kill-cache');
    const env = workerEnv(taskQueue, `redis://127.0.0.1:${redisPort}`);
    const first = await worker(env);
    // Redis frozen (SIGSTOP): the worker's connection stays open and its invalidation hangs right after the commit.
    process.kill(redisServer!.pid, 'SIGSTOP');
    const { ref, tag, boundary } = await dueTier(taskQueue);
    await vi.waitFor(async () => expect(await auditRows(ref)).toHaveLength(1), {
      timeout: LIMITS.workflowStep,
      interval: 100,
    });
    await first.kill();
    // A fresh Redis on the same port: commands the dead worker left in the frozen server's socket are gone with
    // it, so whatever invalidates the keys below is the restarted worker.
    await restartRedis();
    const redis = new Redis({ port: redisPort, host: '127.0.0.1' });
    try {
      const cached = `${taskQueue}:tag:${tag}`;
      await redis.set(cached, 'stale object from before the reset');

      await worker(env);
      await expectResetOnce(ref, tag, boundary);
      await vi.waitFor(async () => expect(await redis.exists(cached)).toBe(0), {
        timeout: LIMITS.workflowStep,
        interval: 100,
      });
      expect(await status(ref)).toMatchObject({ cacheInvalidationFailures: 0, lastError: null });
    } finally {
      redis.disconnect();
    }
  });

  it('a forced reset, after the commit and before the workflow recorded it: committed once, caches invalidated', async () => {
    const taskQueue = uniqueName('kill-forced');
    const env = workerEnv(taskQueue, `redis://127.0.0.1:${redisPort}`);
    const first = await worker(env);
    const { ref, tag, handle } = await idleTier(taskQueue);
    const boundary = (await status(ref)).nextResetAt;
    // The invalidation after the commit hangs on a frozen Redis, so the workflow task that ran the reset is still
    // open (nothing recorded in history) when the worker dies.
    process.kill(redisServer!.pid, 'SIGSTOP');
    const answer = handle
      .executeUpdate(resetNowUpdate, { args: [{ reason: 'drill', requestId: 'kill-forced-1' }] })
      .catch((error: unknown) => error);
    await vi.waitFor(async () => expect(await auditRows(ref)).toHaveLength(1), {
      timeout: LIMITS.workflowStep,
      interval: 100,
    });
    await first.kill();
    await restartRedis();
    // Spend of the new period, written after the commit: the retried attempt must not erase it.
    await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 4 WHERE tag_name = $1`, [tag]);
    const redis = new Redis({ port: redisPort, host: '127.0.0.1' });
    try {
      const cached = `${taskQueue}:tag:${tag}`;
      await redis.set(cached, 'stale object from before the reset');
      await worker(env);
      expect(await answer).toMatchObject({
        outcome: 'reset',
        requestId: 'kill-forced-1',
        entityCount: 1,
        spendTotal: 9,
        cachesInvalidated: true,
      });
      const rows = await auditRows(ref);
      expect(rows.map((r) => r.entity_count)).toEqual([1]);
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(4);
      expect(await redis.exists(cached)).toBe(0);
      expect(await status(ref)).toMatchObject({
        state: 'active',
        cycle: 1,
        nextResetAt: boundary,
        lastError: null,
      });
    } finally {
      redis.disconnect();
    }
  });

  it('forced requests that arrive after a forced reset committed and before the workflow recorded it get a reset of their own', async () => {
    const taskQueue = uniqueName('kill-forced-more');
    const env = workerEnv(taskQueue, `redis://127.0.0.1:${redisPort}`);
    const first = await worker(env);
    // A workflow task timeout longer than the default 10 s: the worker reports a long task as alive (recording what
    // it has so far) at 80% of it, and the worker must die before that, with the reset committed but not recorded.
    const { ref, tag, handle } = await idleTier(taskQueue, { workflowTaskTimeout: '30s' });
    process.kill(redisServer!.pid, 'SIGSTOP');
    await handle.signal(forceResetSignal, { reason: 'before', requestId: 'more-1' });
    await vi.waitFor(async () => expect(await auditRows(ref)).toHaveLength(1), {
      timeout: LIMITS.workflowStep,
      interval: 100,
    });
    // Spend of the new period, then a second request, both after the first reset committed: the retried workflow
    // task sees both requests at once, and only the first was answered by the committed reset.
    await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 4 WHERE tag_name = $1`, [tag]);
    await handle.signal(forceResetSignal, { reason: 'after', requestId: 'more-2' });
    await first.kill();
    await restartRedis();
    await worker(env);
    const s = await vi.waitFor(
      async () => {
        const current = await status(ref);
        if (current.cycle < 2) throw new Error(`not reset twice yet: ${JSON.stringify(current)}`);
        return current;
      },
      { timeout: LIMITS.workflowStep * 2, interval: 250 },
    );
    expect(s).toMatchObject({ state: 'active', cycle: 2, lastError: null });
    const rows = await auditRows(ref);
    expect(rows.map((r) => [r.reason, r.entity_count, r.spend_total])).toEqual([
      ['before', 1, 9],
      ['after', 1, 4],
    ]);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);
  });
});
