import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import {
  pauseUpdate,
  scheduleChangedSignal,
  statusQuery,
  type BudgetStatus,
} from '../../src/temporal/messages.js';
import { createBudgetWorker } from '../../src/worker.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { HISTORIES, RELEASE } from '../helpers/histories.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { bundleWorkflows, installTestRuntime } from '../helpers/temporal.js';

/** Where `RECORD_HISTORIES=1` writes this release's armed history (beside test/workflows/history.test.ts's). */
const RECORD = process.env.RECORD_HISTORIES === '1';

// Arming works on the wall clock, so it is proved on the dev server in real time: a reset armed ahead of its
// boundary is run by the worker at the boundary and collected by its workflow; a pause takes it back.
let db: TestDatabase;
let redis: Redis;
let connection: Connection;
let nativeConnection: NativeConnection;
let bundle: WorkflowBundleWithSourceMap;
/** From now to the boundary at least: room to start both workflows and see them armed. */
const MIN_LEAD_MS = 45_000;
/** The boundary (at most a minute after the least lead), then collecting the reset and the checks after it. */
const TEST_TIMEOUT = MIN_LEAD_MS + 60_000 + 2 * LIMITS.workflowStep;

beforeAll(async () => {
  installTestRuntime();
  [db, bundle] = await Promise.all([createTestDatabase(), bundleWorkflows('workflows/index.ts')]);
  redis = new Redis(services().redisUrl);
  connection = await Connection.connect({ address: services().temporalAddress });
  nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
});
afterAll(async () => {
  redis?.disconnect();
  await connection?.close();
  await nativeConnection?.close();
  await db?.drop();
});

/** A worker with the real activities on this file's database and Redis, its namespace the task queue. */
function armingWorker(taskQueue: string) {
  return createBudgetWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: bundle,
    deps: {
      db: db.pool,
      redis,
      config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace: taskQueue },
    },
  });
}

describe('a reset armed in the worker', { timeout: TEST_TIMEOUT }, () => {
  it('commits at the boundary, is collected by its workflow, and a pause takes it back', async () => {
    const client = new Client({ connection });
    const taskQueue = uniqueName('armed');
    const worker = await armingWorker(taskQueue);
    // Within the arming lead (at most 4 minutes), so both arm as soon as they start; on a minute boundary.
    const boundary = new Date(Math.ceil((Date.now() + MIN_LEAD_MS) / 60_000) * 60_000);
    const armed: BudgetRef = { kind: 'budget', id: uniqueName('armed') };
    const paused: BudgetRef = { kind: 'budget', id: uniqueName('paused') };
    for (const ref of [armed, paused]) {
      await insertBudget(db.pool, { id: ref.id, duration: '1m', resetAt: boundary.toISOString() });
      await insertTag(db.pool, { name: `${ref.id}-tag`, spend: 3, budgetId: ref.id });
      await redis.set(`${taskQueue}:spend:tag:${ref.id}-tag`, '3.0');
    }
    const status = (ref: BudgetRef): Promise<BudgetStatus> =>
      client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);
    await worker.runUntil(async () => {
      for (const ref of [armed, paused]) {
        await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
          taskQueue,
          workflowId: budgetWorkflowId(ref),
          args: [ref],
        });
      }
      // Both arm between 30 and 10 s before the boundary: their histories show the armReset marker.
      await vi.waitFor(
        async () => {
          for (const ref of [armed, paused]) {
            const history = await client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory();
            // A local activity's marker carries its activity type in its `data` payload.
            const markers = (history.events ?? []).flatMap((e) =>
              (e.markerRecordedEventAttributes?.details?.data?.payloads ?? []).map((p) =>
                Buffer.from(p.data ?? new Uint8Array()).toString('utf8'),
              ),
            );
            expect(markers.join('\n')).toContain('armReset');
          }
        },
        // Armed before the boundary, or it is no armed reset.
        { timeout: boundary.getTime() - Date.now(), interval: 250 },
      );
      expect(Date.now()).toBeLessThan(boundary.getTime());
      await client.workflow
        .getHandle(budgetWorkflowId(paused))
        .executeUpdate(pauseUpdate, { args: [{ reason: 'hold' }] });

      const reset = await vi.waitFor(
        async () => {
          const s = await status(armed);
          if (s.cycle < 1) throw new Error('not collected yet');
          return s;
        },
        { timeout: boundary.getTime() - Date.now() + LIMITS.workflowStep, interval: 250 },
      );
      const { rows } = await db.pool.query<{
        id: string;
        executed_at: Date;
        period_end: Date;
        trigger: string;
      }>(
        `SELECT id::text, executed_at, period_end, trigger FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
        [armed.id],
      );
      expect(rows).toHaveLength(1);
      // The worker ran it: it did not start before the boundary, and the workflow recorded that very reset.
      expect(rows[0]?.executed_at.getTime()).toBeGreaterThanOrEqual(boundary.getTime());
      expect(rows[0]?.period_end.toISOString()).toBe(boundary.toISOString());
      expect(reset.lastReset).toMatchObject({ resetId: rows[0]?.id, trigger: 'schedule' });
      expect(reset.cacheInvalidationFailures).toBe(0);
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${armed.id}-tag` })).toBe(0);
      expect(await redis.exists(`${taskQueue}:spend:tag:${armed.id}-tag`)).toBe(0);

      // The paused budget's armed reset never ran.
      expect(await status(paused)).toMatchObject({ state: 'paused', cycle: 0 });
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${paused.id}-tag` })).toBe(3);
      for (const ref of [armed, paused])
        await client.workflow.getHandle(budgetWorkflowId(ref)).terminate('test finished');
    });
  });
});

describe('an armed history', () => {
  // A tool for maintainers, not a check: it runs only with RECORD_HISTORIES=1. The time-skipping scenario of
  // test/workflows/history.test.ts never arms (its clock is not the worker's), so the path every production run
  // takes (armed in the worker, collected by the workflow) is recorded here, in real time, for the replay test.
  it.runIf(RECORD)(
    'records an armed reset of this release',
    async () => {
      const client = new Client({ connection });
      const taskQueue = uniqueName('armed-record');
      const worker = await armingWorker(taskQueue);
      // The replay test replays every history under this id: the arming time is derived from it.
      const ref: BudgetRef = { kind: 'budget', id: 'replay' };
      const boundary = new Date(Math.ceil((Date.now() + 45_000) / 60_000) * 60_000);
      await insertBudget(db.pool, { id: ref.id, duration: '1m', resetAt: boundary.toISOString() });
      await insertTag(db.pool, { name: `${ref.id}-tag`, spend: 3, budgetId: ref.id });
      const handle = client.workflow.getHandle(budgetWorkflowId(ref));
      await worker.runUntil(async () => {
        await client.workflow.start(BUDGET_WORKFLOW_TYPE, {
          taskQueue,
          workflowId: budgetWorkflowId(ref),
          args: [ref],
        });
        // Two boundaries: each armed, run by the worker and collected.
        await vi.waitFor(
          async () => {
            if ((await handle.query(statusQuery)).cycle < 2) throw new Error('not collected yet');
          },
          { timeout: 240_000, interval: 500 },
        );
        await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'recorded pause' }] });
        await db.pool.query(`DELETE FROM "LiteLLM_BudgetTable" WHERE budget_id = $1`, [ref.id]);
        await handle.signal(scheduleChangedSignal);
        expect(await handle.result()).toMatchObject({ reason: 'row_deleted' });
      });
      const { History } = proto.temporal.api.history.v1;
      const history = History.toObject(History.fromObject(await handle.fetchHistory()), {
        longs: String,
        enums: String,
        bytes: String,
      });
      await mkdir(path.join(HISTORIES, RELEASE), { recursive: true });
      await writeFile(
        path.join(HISTORIES, RELEASE, 'budget-armed.json'),
        `${JSON.stringify(history, null, 1)}\n`,
      );
    },
    360_000,
  );
});
