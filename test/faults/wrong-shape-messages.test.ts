import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId } from '../../src/budget-ref.js';
import { ensureTemporalCli } from '../../dev/provision/temporal-cli.js';
import { scheduleChangedSignal, statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, ONE_RESET_DURATION } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';

// Signals and updates of the wrong shape, sent straight through the Temporal CLI (as anyone with access to the
// namespace could, bypassing budgetctl's checks): updates are rejected with the reason before they are accepted,
// signals are ignored and recorded in lastError, and the workflow goes on as if nothing happened.
let db: TestDatabase;
let connection: Connection;
let client: Client;
let temporalCli: string;
let worker: ChildProcess | undefined;
let log = '';
const taskQueue = uniqueName('wrong-shape');
const ref = { kind: 'budget' as const, id: `${taskQueue}-tier` };
const nulRef = { kind: 'budget' as const, id: `${taskQueue}-nul` };
type Ref = typeof ref;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  temporalCli = await ensureTemporalCli();
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
  env = workerEnv(db.url, taskQueue);
});
afterAll(async () => {
  if (worker) await stopProcess(worker, 'SIGKILL');
  for (const r of [ref, nulRef]) {
    await client?.workflow
      .getHandle(budgetWorkflowId(r))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await db?.drop();
});

/** Starts the worker once; it discovers the budgets in the database as it starts (later ones: `budgetctl sync`). */
function startWorker(): void {
  if (worker) return;
  worker = spawnBudgetctl(['worker', '--sync-interval', '1h'], env);
  worker.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  worker.stderr?.on('data', (c: Buffer) => (log += c.toString()));
}

/** The Temporal CLI against the test server; resolves with its exit code and output, whatever the code. */
function temporal(args: string[], target: Ref = ref): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      temporalCli,
      [...args, '--address', services().temporalAddress, '--workflow-id', budgetWorkflowId(target)],
      (error, stdout, stderr) =>
        resolve({
          code: error ? Number((error as { code?: unknown }).code ?? 1) : 0,
          output: stdout + stderr,
        }),
    );
  });
}

const status = (target: Ref = ref): Promise<BudgetStatus> =>
  client.workflow.getHandle(budgetWorkflowId(target)).query(statusQuery);

describe('signals and updates of the wrong shape, sent with the Temporal CLI', () => {
  it('rejects the updates with a reason, ignores and records the signals, and keeps working', async () => {
    const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    await insertBudget(db.pool, { id: ref.id, duration: '1h', resetAt: nextHour });
    await insertTag(db.pool, { name: `${ref.id}-tag`, spend: 5, budgetId: ref.id });
    startWorker();
    await vi.waitFor(async () => expect((await status()).nextResetAt).toBe(nextHour), {
      timeout: LIMITS.workerStart,
      interval: 500,
    });

    const updates: Array<[string, string | null, RegExp]> = [
      ['resetNow', '42', /expected an object argument/],
      ['resetNow', '{"reason":5}', /reason must be text/],
      ['resetNow', '{"reason":""}', /reason must not be empty/],
      ['resetNow', '{"reason":"x","requestedBy":["a"]}', /requestedBy must be text/],
      ['resetNow', '{"reason":"x","reanchor":"yes"}', /reanchor must be true or false/],
      ['resetNow', null, /expected an object argument/],
      ['resetNow', '{"requestedBy":"someone"}', /A forced reset needs a reason/],
      ['pause', '"a string"', /expected an object argument/],
      ['pause', '{"reason":{"nested":true}}', /reason must be text/],
    ];
    for (const [name, input, reason] of updates) {
      const result = await temporal([
        'workflow',
        'update',
        'execute',
        '--name',
        name,
        ...(input === null ? [] : ['--input', input]),
      ]);
      expect(result.code, `${name} ${input}: ${result.output}`).not.toBe(0);
      expect(result.output, `${name} ${input}`).toMatch(reason);
    }

    const signals: Array<[string, string | null]> = [
      ['scheduleChanged', '{"evil":"; drop table x"}'],
      ['noSuchSignal', '{"reason":"x"}'],
      ['forceReset', '42'],
      ['forceReset', '{"reason":5}'],
      ['forceReset', 'null'],
      ['forceReset', '{"requestedBy":"someone"}'],
    ];
    for (const [name, input] of signals) {
      const result = await temporal([
        'workflow',
        'signal',
        '--name',
        name,
        ...(input === null ? [] : ['--input', input]),
      ]);
      expect(result.code, result.output).toBe(0);
    }

    // The signals were read and ignored: why the last forceReset was is recorded, nothing was reset.
    await vi.waitFor(
      async () =>
        expect((await status()).lastError).toMatch(
          /forceReset signal ignored: A forced reset needs a reason/,
        ),
      { timeout: LIMITS.workflowStep, interval: 250 },
    );
    const after = await status();
    expect(after).toMatchObject({ state: 'active', cycle: 0, nextResetAt: nextHour, paused: null });
    const { rows } = await db.pool.query(`SELECT 1 FROM budget_lifecycle.reset_log WHERE budget_id = $1`, [
      ref.id,
    ]);
    expect(rows).toEqual([]);

    // And it still does what it is asked properly.
    const reset = await budgetctl(
      ['--json', 'reset', `budget:${ref.id}`, '--reason', 'after the bad messages'],
      env,
    );
    expect(reset.code, reset.stderr + log).toBe(0);
    expect(JSON.parse(reset.stdout)).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 5 });
    const history = await client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory();
    const events = history.events ?? [];
    expect(events.filter((e) => e.workflowTaskFailedEventAttributes)).toEqual([]);
    // The validators turned every bad update away before it was accepted: the only accepted one is budgetctl's.
    expect(events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toHaveLength(1);
  });

  // The case: a NUL in a forced reset's reason (possible from the UI or the CLI) used to reach PostgreSQL,
  // which cannot store it, and the reset failed forever with the scheduled resets queued behind it.
  it('ignores a forceReset and rejects a resetNow whose reason holds NUL; the budget still resets on schedule and on demand', async () => {
    const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    // The boundary moved to seconds from now below is the only one reached while the test runs.
    await insertBudget(db.pool, { id: nulRef.id, duration: ONE_RESET_DURATION, resetAt: nextHour });
    await insertTag(db.pool, { name: `${nulRef.id}-tag`, spend: 5, budgetId: nulRef.id });
    startWorker();
    await vi.waitFor(
      async () => {
        const sync = await budgetctl(['sync'], env);
        expect(sync.code, sync.stderr).toBe(0);
        expect((await status(nulRef)).nextResetAt).toBe(nextHour);
      },
      { timeout: LIMITS.workerStart, interval: 1_000 },
    );

    // The JSON escape \u0000 reaches the workflow as the NUL character itself.
    const signal = await temporal(
      ['workflow', 'signal', '--name', 'forceReset', '--input', '{"reason":"a\\u0000b","requestedBy":"cli"}'],
      nulRef,
    );
    expect(signal.code, signal.output).toBe(0);
    await vi.waitFor(
      async () =>
        expect((await status(nulRef)).lastError).toBe(
          'forceReset signal ignored: reason contains a NUL character (U+0000), which cannot be stored',
        ),
      { timeout: LIMITS.workflowStep, interval: 250 },
    );
    const update = await temporal(
      ['workflow', 'update', 'execute', '--name', 'resetNow', '--input', '{"reason":"a\\u0000b"}'],
      nulRef,
    );
    expect(update.code, update.output).not.toBe(0);
    expect(update.output).toMatch(/reason contains a NUL character \(U\+0000\), which cannot be stored/);
    expect(await status(nulRef)).toMatchObject({ state: 'active', cycle: 0, nextResetAt: nextHour });

    // The scheduled reset behind them commits: the boundary moved to a few seconds from now, and the workflow told.
    const boundary = new Date(Math.ceil((Date.now() + 3_000) / 1_000) * 1_000).toISOString();
    await db.pool.query(
      `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = $2::timestamptz AT TIME ZONE 'UTC' WHERE budget_id = $1`,
      [nulRef.id, boundary],
    );
    await client.workflow.getHandle(budgetWorkflowId(nulRef)).signal(scheduleChangedSignal);
    const audit = async () =>
      (
        await db.pool.query<{
          trigger: string;
          period_end: Date;
          reason: string | null;
          spend_total: number;
        }>(
          `SELECT trigger, period_end, reason, spend_total FROM budget_lifecycle.reset_log
            WHERE budget_id = $1 ORDER BY id`,
          [nulRef.id],
        )
      ).rows.map((r) => [r.trigger, r.period_end.toISOString(), r.reason, r.spend_total]);
    await vi.waitFor(async () => expect(await audit()).toEqual([['schedule', boundary, null, 5]]), {
      timeout: LIMITS.workflowStep,
      interval: 250,
    });

    // And so does a forced reset with a proper reason.
    await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 2 WHERE tag_name = $1`, [`${nulRef.id}-tag`]);
    const reset = await budgetctl(
      ['--json', 'reset', `budget:${nulRef.id}`, '--reason', 'after the NUL'],
      env,
    );
    expect(reset.code, reset.stderr + log).toBe(0);
    expect(JSON.parse(reset.stdout)).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 2 });
    expect((await audit()).map(([trigger, , reason]) => [trigger, reason])).toEqual([
      ['schedule', null],
      ['forced', 'after the NUL'],
    ]);
    const history = await client.workflow.getHandle(budgetWorkflowId(nulRef)).fetchHistory();
    expect((history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes)).toEqual([]);
  });
});
