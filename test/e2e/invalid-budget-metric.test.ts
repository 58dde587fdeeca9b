import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { BUDGETS_BY_STATE_INTERVAL_MS } from '../../src/metrics.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { supervisorWorkflowId } from '../../workflows/supervisor.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// An invalid row is loud: besides `status` and the UI, the worker's metrics count its budget as invalid, apart from
// the healthy ones. Real worker process on the dev server, real PostgreSQL.
let db: TestDatabase;
let connection: Connection;
let client: Client;
let worker: WorkerProcess | undefined;
const taskQueue = uniqueName('invalid-metric');
const invalid: BudgetRef = { kind: 'budget', id: `${taskQueue}-invalid` };
const healthy: BudgetRef = { kind: 'budget', id: `${taskQueue}-healthy` };

beforeAll(async () => {
  db = await createTestDatabase();
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
});
afterAll(async () => {
  await worker?.kill();
  for (const id of [supervisorWorkflowId(taskQueue), budgetWorkflowId(invalid), budgetWorkflowId(healthy)]) {
    await client?.workflow
      .getHandle(id)
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await db?.drop();
});

const status = (ref: BudgetRef): Promise<BudgetStatus> =>
  client.workflow.getHandle(budgetWorkflowId(ref)).query(statusQuery);

/** The `budget_workflows` gauge's value for `state` in the worker's Prometheus text, or undefined. */
function gauge(metrics: string, state: string): number | undefined {
  const line = metrics
    .split('\n')
    .find((l) => l.startsWith('budget_workflows{') && l.includes(`state="${state}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('an invalid row', () => {
  it('puts its budget in state invalid and the worker counts it as invalid in budget_workflows', async () => {
    const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
    // LiteLLM cannot schedule `2mo` either (its months are `1mo` only).
    await insertBudget(db.pool, { id: invalid.id, duration: '2mo', resetAt: nextHour });
    await insertBudget(db.pool, { id: healthy.id, duration: '1h', resetAt: nextHour });
    worker = await startWorkerProcess(workerEnv(db.url, taskQueue), ['--sync-interval', '1h']);

    await vi.waitFor(
      async () => {
        expect((await status(invalid)).state, worker?.output().slice(-2_000)).toBe('invalid');
        expect((await status(healthy)).state).toBe('active');
      },
      { timeout: LIMITS.workflowStep, interval: 500 },
    );
    expect((await status(invalid)).lastError).toMatch(/Invalid budget_duration "2mo"/);

    // The gauge is refreshed every BUDGETS_BY_STATE_INTERVAL_MS from visibility.
    await vi.waitFor(
      async () => {
        const metrics = await (await fetch(`http://127.0.0.1:${worker!.healthPort}/metrics`)).text();
        expect(gauge(metrics, 'invalid')).toBe(1);
        expect(gauge(metrics, 'active')).toBe(1);
        expect(gauge(metrics, 'paused')).toBe(0);
      },
      { timeout: BUDGETS_BY_STATE_INTERVAL_MS + LIMITS.visibility + LIMITS.workflowStep, interval: 1_000 },
    );
  });
});
