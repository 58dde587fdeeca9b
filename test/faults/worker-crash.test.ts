import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../dev/provision/ports.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { insertBudget, insertTag, ONE_RESET_DURATION } from '../helpers/litellm-rows.js';
import { LIMITS } from '../helpers/limits.js';
import { waitUntilReady } from '../helpers/worker-process.js';
import { services, uniqueName } from '../helpers/services.js';

// Two real worker processes on one task queue (how the service scales out); one is killed without warning before
// the boundary. The survivor must reset every budget exactly once.
const BUDGETS = 20;
/**
 * From a running service to the boundary: room for inserting the rows, one `budgetctl sync` and the listing that
 * shows every workflow started, so the kill lands before the boundary (6.5 s at load average 12 on two cores).
 */
const BOUNDARY_AFTER_MS = 30_000;
const TEST_TIMEOUT = LIMITS.workerStart + BOUNDARY_AFTER_MS + LIMITS.workflowStep + LIMITS.cliCommand;
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
  it('resets every budget exactly once on the surviving worker', { timeout: TEST_TIMEOUT }, async () => {
    const taskQueue = uniqueName('crash');
    const env = {
      DATABASE_URL: db.url,
      REDIS_URL: services().redisUrl,
      LITELLM_REDIS_NAMESPACE: taskQueue,
      TEMPORAL_ADDRESS: services().temporalAddress,
      BUDGET_TASK_QUEUE: taskQueue,
    };
    // Both workers poll before any budget exists, so the boundary below is measured from a running service and
    // not from how long two cold processes take to start on a busy machine.
    const healthPorts = [await freePort(), await freePort()];
    for (const port of healthPorts)
      workers.push(spawnBudgetctl(['worker'], { ...env, METRICS_PORT: String(port) }));
    await Promise.all(healthPorts.map((port, i) => waitUntilReady(port, workers[i]!)));

    const boundary = new Date(Math.ceil((Date.now() + BOUNDARY_AFTER_MS) / 1_000) * 1_000);
    for (let i = 0; i < BUDGETS; i += 1) {
      await insertBudget(db.pool, {
        id: `${taskQueue}-${i}`,
        duration: ONE_RESET_DURATION,
        resetAt: boundary.toISOString(),
      });
      await insertTag(db.pool, {
        name: `${taskQueue}-tag-${i}`,
        spend: 1 + i,
        budgetId: `${taskQueue}-${i}`,
      });
    }
    // Discovery now rather than at the supervisor's next sync (every 30 s).
    const sync = await budgetctl(['sync'], env);
    expect(sync.code, sync.stderr).toBe(0);
    await vi.waitFor(
      async () => {
        const listed = await budgetctl(['--json', 'list', '--kind', 'budget'], env);
        const mine = JSON.parse(listed.stdout || '{"budgets":[]}').budgets.filter((b: { budget: string }) =>
          b.budget.startsWith(`budget:${taskQueue}-`),
        );
        expect(mine).toHaveLength(BUDGETS);
      },
      { timeout: BOUNDARY_AFTER_MS, interval: 500 },
    );
    // The first worker dies before the boundary: no graceful shutdown, its sticky caches are lost.
    await stopProcess(workers[0]!, 'SIGKILL');
    expect(Date.now(), 'the worker must die before the boundary, or this test proves nothing').toBeLessThan(
      boundary.getTime(),
    );

    // The survivor takes over once the dead worker's sticky queue times out (10 s), then runs 20 resets.
    await vi.waitFor(
      async () => {
        const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM budget_lifecycle.reset_log`);
        expect(rows[0].n).toBe(BUDGETS);
      },
      { timeout: BOUNDARY_AFTER_MS + LIMITS.workflowStep, interval: 500 },
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
