import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import {
  pauseUpdate,
  resetNowUpdate,
  resumeUpdate,
  scheduleChangedSignal,
} from '../../src/temporal/messages.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';

const { History } = proto.temporal.api.history.v1;
const HISTORIES = fileURLToPath(new URL('./histories/', import.meta.url));
const HOUR = 60 * 60 * 1000;
/** `RECORD_HISTORIES=1 npx vitest run test/workflows/history.test.ts` rewrites the committed histories. */
const RECORD = process.env.RECORD_HISTORIES === '1';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const nextHour = (now: Date) => new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);

describe('budgetWorkflow history', () => {
  it('continues as new every N cycles carrying all its state', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = nextHour(await t.now());
      await insertBudget(t.db.pool, { id: 'can', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'can-tag', spend: 1, budgetId: 'can' });
      const ref: BudgetRef = { kind: 'budget', id: 'can' };
      const handle = await t.start(ref, taskQueue, { cyclesPerRun: 2 });
      const firstRun = (await handle.describe()).runId;
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      const forced = await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'before', requestId: 'keep-me' }],
      });

      for (let i = 0; i < 3; i += 1) {
        await t.sleepUntil(new Date(first.getTime() + i * HOUR));
        await t.waitForStatus(ref, (s) => s.cycle === i + 2);
      }
      const description = await handle.describe();
      expect(description.runId).not.toBe(firstRun);
      const status = await t.status(ref);
      expect(status).toMatchObject({
        cycle: 4,
        state: 'active',
        nextResetAt: new Date(first.getTime() + 3 * HOUR).toISOString(),
      });
      expect(status.lastReset?.periodEnd).toBe(new Date(first.getTime() + 2 * HOUR).toISOString());
      // The request id deduplication survives continue-as-new.
      expect(
        await handle.executeUpdate(resetNowUpdate, { args: [{ reason: 'again', requestId: 'keep-me' }] }),
      ).toEqual(forced);
      expect((await t.status(ref)).cycle).toBe(4);
      // So does a pause.
      await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'hold' }] });
      await t.sleepUntil(new Date(first.getTime() + 3 * HOUR));
      expect(await t.status(ref)).toMatchObject({ cycle: 4, state: 'paused' });
    });
  });

  // A tool for maintainers, not a check: it runs only with RECORD_HISTORIES=1.
  it.runIf(RECORD)('records a scenario history', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const first = nextHour(await t.now());
      await insertBudget(t.db.pool, { id: 'replay', duration: '1h', resetAt: first.toISOString() });
      await insertTag(t.db.pool, { name: 'replay-tag', spend: 3, budgetId: 'replay' });
      const ref: BudgetRef = { kind: 'budget', id: 'replay' };
      const handle = await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === first.toISOString());
      await t.sleepUntil(first);
      await t.waitForStatus(ref, (s) => s.cycle === 1);
      await handle.executeUpdate(resetNowUpdate, {
        args: [{ reason: 'recorded', requestId: 'r-1', reanchor: true }],
      });
      await handle.executeUpdate(pauseUpdate, { args: [{ reason: 'recorded pause' }] });
      await t.env.sleep(2 * HOUR);
      await handle.executeUpdate(resumeUpdate);
      await t.waitForStatus(ref, (s) => s.cycle === 3);
      await t.db.pool.query(
        `UPDATE "LiteLLM_BudgetTable" SET budget_duration = '1d' WHERE budget_id = 'replay'`,
      );
      await handle.signal(scheduleChangedSignal);
      await t.waitForStatus(ref, (s) => s.duration === '1d');
      await t.db.pool.query(`DELETE FROM "LiteLLM_BudgetTable" WHERE budget_id = 'replay'`);
      await handle.signal(scheduleChangedSignal);
      expect(await handle.result()).toMatchObject({ reason: 'row_deleted' });
      const history = History.toObject(History.fromObject(await handle.fetchHistory()), {
        longs: String,
        enums: String,
        bytes: String,
      });
      await writeFile(`${HISTORIES}budget-scenario.json`, `${JSON.stringify(history, null, 1)}\n`);
    });
  });

  it('replays every committed history against the current workflow code', async () => {
    const files = (await readdir(HISTORIES)).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const history = History.fromObject(JSON.parse(await readFile(`${HISTORIES}${file}`, 'utf8')));
      // Throws DeterminismViolationError if the code no longer produces the recorded commands.
      await Worker.runReplayHistory({ workflowBundle: t.bundle }, history, file);
    }
  });
});
