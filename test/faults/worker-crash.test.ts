import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';

// Two real worker processes on one task queue (how the service scales out); one is killed without warning before
// the boundary. The survivor must reset every budget exactly once.
const BUDGETS = 20;
let db: TestDatabase;
const workers: ChildProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  for (const worker of workers) await stopProcess(worker, 'SIGKILL');
  await db?.drop();
});

describe('two workers, one killed', () => {
  it('resets every budget exactly once on the surviving worker', async () => {
    const taskQueue = uniqueName('crash');
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: services().redisUrl,
      LITELLM_REDIS_NAMESPACE: taskQueue,
      TEMPORAL_ADDRESS: services().temporalAddress,
      BUDGET_TASK_QUEUE: taskQueue,
    };
    const boundary = new Date(Math.ceil((Date.now() + 25_000) / 1_000) * 1_000);
    for (let i = 0; i < BUDGETS; i += 1) {
      await insertBudget(db.pool, {
        id: `${taskQueue}-${i}`,
        duration: '1h',
        resetAt: boundary.toISOString(),
      });
      await insertTag(db.pool, {
        name: `${taskQueue}-tag-${i}`,
        spend: 1 + i,
        budgetId: `${taskQueue}-${i}`,
      });
    }
    workers.push(spawnBudgetctl(['worker'], env), spawnBudgetctl(['worker'], env));
    await vi.waitFor(
      async () => {
        const listed = await budgetctl(['--json', 'list', '--kind', 'budget'], env);
        const mine = JSON.parse(listed.stdout || '{"budgets":[]}').budgets.filter((b: { budget: string }) =>
          b.budget.startsWith(`budget:${taskQueue}-`),
        );
        expect(mine).toHaveLength(BUDGETS);
      },
      { timeout: 20_000, interval: 500 },
    );
    // The first worker dies before the boundary: no graceful shutdown, its sticky caches are lost.
    await stopProcess(workers[0]!, 'SIGKILL');

    await vi.waitFor(
      async () => {
        const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM budget_lifecycle.reset_log`);
        expect(rows[0].n).toBe(BUDGETS);
      },
      { timeout: 90_000, interval: 500 },
    );
    const { rows } = await db.pool.query<{ budget_id: string; n: number; period_end: Date }>(
      `SELECT budget_id, count(*)::int AS n, min(period_end) AS period_end
         FROM budget_lifecycle.reset_log GROUP BY budget_id`,
    );
    expect(rows).toHaveLength(BUDGETS);
    for (const row of rows) {
      expect(row.n).toBe(1);
      expect(row.period_end.toISOString()).toBe(boundary.toISOString());
    }
    const left = await db.pool.query(`SELECT count(*)::int AS n FROM "LiteLLM_TagTable" WHERE spend <> 0`);
    expect(left.rows[0].n).toBe(0);
  });
});
