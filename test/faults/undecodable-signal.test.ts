import type { ChildProcess } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId } from '../../src/budget-ref.js';
import { ensureTemporalCli } from '../../dev/provision/temporal-cli.js';
import { run } from '../../dev/provision/run.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';

// A signal whose payload the data converter cannot decode (sent with the Temporal CLI, as a person could from a
// shell) must be rejected by the budget it was sent to, and must never touch any other budget: in SDK 1.24 a
// decode error thrown in the middle of an activation leaves that workflow's pending continuations in the shared V8
// context, where the next workflow's activation ran them (another budget scheduled the wedged one's activities).
const HEALTHY = 6;
let db: TestDatabase;
let connection: Connection;
let client: Client;
let temporalCli: string;
const workers: ChildProcess[] = [];
const taskQueue = uniqueName('poison');
const victim = { kind: 'budget' as const, id: `${taskQueue}-victim` };
const healthy = Array.from({ length: HEALTHY }, (_, i) => ({
  kind: 'budget' as const,
  id: `${taskQueue}-${i}`,
}));
let env: Record<string, string>;
let log = '';

function startWorker(): ChildProcess {
  const worker = spawnBudgetctl(['worker', '--sync-interval', '1h'], env);
  worker.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  worker.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  workers.push(worker);
  return worker;
}

async function status(ref: { kind: 'budget'; id: string }): Promise<BudgetStatus> {
  return client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);
}

/** Workflow task failures in a workflow's history: each is a failed activation, retried by the server. */
async function workflowTaskFailures(ref: { kind: 'budget'; id: string }): Promise<string[]> {
  const history = await client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.workflowTaskFailedEventAttributes)
    .map((e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? '');
}

beforeAll(async () => {
  db = await createTestDatabase();
  temporalCli = await ensureTemporalCli();
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
  env = workerEnv(db.url, taskQueue);
});

afterAll(async () => {
  for (const worker of workers) await stopProcess(worker, 'SIGKILL');
  for (const ref of [victim, ...healthy]) {
    await client?.workflow
      .getHandle(budgetWorkflowId(ref))
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await db?.drop();
});

describe('a signal payload nobody can decode', () => {
  it('is rejected by its budget, and every other budget keeps resetting with its own activities', async () => {
    const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    for (const ref of [victim, ...healthy]) {
      await insertBudget(db.pool, { id: ref.id, duration: '1h', resetAt: nextHour });
      await insertTag(db.pool, { name: `${ref.id}-tag`, spend: 5, budgetId: ref.id });
    }
    const first = startWorker();
    await vi.waitFor(
      async () => {
        for (const ref of [victim, ...healthy]) expect((await status(ref)).nextResetAt).toBe(nextHour);
      },
      { timeout: LIMITS.workerStart + LIMITS.workflowStep, interval: 500 },
    );
    // The worker goes away; while it is down every budget gets a message, and the victim a schedule change
    // followed by a forced reset whose payload claims an encoding no converter knows. The restarted worker
    // replays them all from history, in one activation each.
    expect(await stopProcess(first)).toBe(0);
    for (const ref of [victim, ...healthy]) {
      await client.workflow.getHandle(budgetWorkflowId(ref)).signal('scheduleChanged');
    }
    await run(temporalCli, [
      'workflow',
      'signal',
      '--address',
      services().temporalAddress,
      '--workflow-id',
      budgetWorkflowId(victim),
      '--name',
      'forceReset',
      '--input',
      '{"reason":"x"}',
      '--input-meta',
      'encoding=binary/garbage',
    ]);
    startWorker();

    // The victim rejects the message and says why; it is not wedged.
    await vi.waitFor(
      async () => {
        const s = await status(victim);
        expect(s.state, log).toBe('active');
        expect(s.lastError).toBe(
          'forceReset signal ignored: rejected: its payload cannot be decoded ' +
            '(unknown encoding "binary/garbage"); send JSON (encoding json/plain)',
        );
      },
      { timeout: LIMITS.workerStart + LIMITS.workflowStep, interval: 500 },
    );

    // Every budget, the victim included, resets on demand with its own activities.
    for (const ref of [victim, ...healthy]) {
      const reset = await budgetctl(
        ['--json', 'reset', `budget:${ref.id}`, '--reason', 'after the poison signal'],
        env,
      );
      expect(reset.code, reset.stderr + log).toBe(0);
      expect(JSON.parse(reset.stdout)).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 5 });
    }
    const { rows } = await db.pool.query<{ budget_id: string; workflow_id: string; entity_id: string }>(
      `SELECT r.budget_id, r.workflow_id, e.entity_id
         FROM budget_lifecycle.reset_log r JOIN budget_lifecycle.reset_log_entity e ON e.reset_id = r.id`,
    );
    expect(rows).toHaveLength(HEALTHY + 1);
    for (const row of rows) {
      expect(row.workflow_id).toBe(budgetWorkflowId({ kind: 'budget', id: row.budget_id }));
      expect(row.entity_id).toBe(`${row.budget_id}-tag`);
    }
    // No activation failed anywhere: not in the victim, and nothing leaked into another budget.
    for (const ref of [victim, ...healthy]) expect(await workflowTaskFailures(ref)).toEqual([]);
  });
});
