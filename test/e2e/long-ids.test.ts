import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, MAX_WORKFLOW_ID_LENGTH } from '../../src/budget-ref.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget, insertTag, spendOf } from '../helpers/litellm-rows.js';
import { uniqueName, workerEnv } from '../helpers/services.js';

// Budget ids longer than a workflow id can be (LiteLLM accepts them) get a hashed workflow id instead of stopping
// discovery; ids that fit keep their readable one. Real worker process, dev server, PostgreSQL.
let db: TestDatabase;
let worker: ChildProcess;
let env: Record<string, string>;
let log = '';
const taskQueue = uniqueName('long');
/** 10 kB: its readable workflow id would be ten times Temporal's limit. */
const longTier = `${taskQueue}-${'0123456789abcdef'.repeat(640)}`;
/** Exactly as long as a readable workflow id may be. */
const edgeTier = `${taskQueue}-`.padEnd(MAX_WORKFLOW_ID_LENGTH - 'budget/budget/'.length, 'e');
const ordinary = `${taskQueue}-ordinary`;

const run = (...args: string[]) => budgetctl(args, env);

beforeAll(async () => {
  db = await createTestDatabase();
  env = workerEnv(db.url, taskQueue);
  const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
  for (const id of [longTier, edgeTier, ordinary]) {
    await insertBudget(db.pool, { id, duration: '1h', resetAt: nextHour });
    await insertTag(db.pool, { name: `${id.slice(-20)}-tag`, spend: 4, budgetId: id });
  }
  worker = spawnBudgetctl(['worker', '--no-supervisor'], env);
  worker.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  worker.stderr?.on('data', (c: Buffer) => (log += c.toString()));
});

afterAll(async () => {
  if (worker) await stopProcess(worker);
  await db?.drop();
});

describe('budget ids too long for a workflow id', () => {
  it('maps to a hashed workflow id only past the limit', () => {
    expect(budgetWorkflowId({ kind: 'budget', id: edgeTier })).toHaveLength(MAX_WORKFLOW_ID_LENGTH);
    expect(budgetWorkflowId({ kind: 'budget', id: longTier })).toMatch(
      /^budget\/budget\/sha256:[0-9a-f]{64}$/,
    );
  });

  it('sync starts every workflow, and status, reset and history work with the full id', async () => {
    const sync = await run('--json', 'sync');
    expect(sync.code, sync.stderr).toBe(0);
    expect(JSON.parse(sync.stdout)).toMatchObject({ changed: 3, started: 3 });

    for (const id of [longTier, edgeTier, ordinary]) {
      const ref = `budget:${id}`;
      await vi.waitFor(
        async () => {
          const status = await run('--json', 'status', ref);
          expect(status.code, status.stderr + log).toBe(0);
          expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'active', duration: '1h' });
        },
        { timeout: 60_000, interval: 500 },
      );
      const reset = await run('--json', 'reset', ref, '--reason', 'long ids');
      expect(reset.code, reset.stderr + log).toBe(0);
      expect(JSON.parse(reset.stdout)).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 4 });
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${id.slice(-20)}-tag` })).toBe(0);
      const history = await run('--json', 'history', ref);
      expect(history.code, history.stderr).toBe(0);
      expect(JSON.parse(history.stdout)).toMatchObject([{ trigger: 'forced', entityCount: 1 }]);
    }
    const { rows } = await db.pool.query<{ budget_id: string }>(
      `SELECT budget_id FROM budget_lifecycle.reset_log ORDER BY length(budget_id)`,
    );
    expect(rows.map((r) => r.budget_id)).toEqual([ordinary, edgeTier, longTier]);

    // A second pass finds every workflow already there: nothing started twice.
    const again = await run('--json', 'sync');
    expect(JSON.parse(again.stdout)).toMatchObject({ changed: 0, started: 0 });
  });

  it('list shows the long budget with a bounded BudgetId', async () => {
    await vi.waitFor(
      async () => {
        const listed = await run('--json', 'list', '--kind', 'budget');
        const budgets: Array<{ budget: string; workflowId: string }> = JSON.parse(listed.stdout).budgets;
        const long = budgets.find((b) => b.workflowId === budgetWorkflowId({ kind: 'budget', id: longTier }));
        expect(long?.budget).toMatch(/^budget:.{199}…$/u);
      },
      { timeout: 20_000, interval: 500 },
    );
  });
});
