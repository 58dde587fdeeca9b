import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../dev/provision/ports.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertKey, insertTag } from '../helpers/litellm-rows.js';
import { uniqueName, workerEnv } from '../helpers/services.js';
import { waitUntilReady } from '../helpers/worker-process.js';

// Two `budgetctl worker` processes on one task queue against Temporal's own server, as a deployment scales out.
const HERD = 50;
/** From two polling workers to the herd's boundary: inserting the rows, one sync, and every workflow listed. */
const HERD_BOUNDARY_AFTER_MS = 30_000;
/** The long-lived budget's duration, and how many of its boundaries the test watches pass. */
const SHORT_DURATION_S = 5;
const CYCLES = 4;

let db: TestDatabase;
let env: Record<string, string>;
const workers: ChildProcess[] = [];
const taskQueue = uniqueName('cluster');

const listed = async (...args: string[]): Promise<Array<Record<string, unknown>>> => {
  const result = await budgetctl(['--json', 'list', ...args], env);
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { budgets: Array<Record<string, unknown>> }).budgets;
};

beforeAll(async () => {
  db = await createTestDatabase();
  env = workerEnv(db.url, taskQueue);
  const ports = [await freePort(), await freePort()];
  for (const port of ports) workers.push(spawnBudgetctl(['worker'], { ...env, METRICS_PORT: String(port) }));
  await Promise.all(ports.map((port, i) => waitUntilReady(port, workers[i]!)));
});
afterAll(async () => {
  for (const worker of workers) await stopProcess(worker);
  await db?.drop();
});

describe('two workers on a Temporal cluster', () => {
  it(
    'resets a herd of budgets due at one instant exactly once each, and visibility shows the new boundary',
    { timeout: HERD_BOUNDARY_AFTER_MS + LIMITS.workflowStep * 2 + LIMITS.cliCommand * 4 },
    async () => {
      const prefix = `${taskQueue}-herd`;
      const boundary = new Date(Math.ceil((Date.now() + HERD_BOUNDARY_AFTER_MS) / 1_000) * 1_000);
      for (let i = 0; i < HERD; i += 1) {
        await insertBudget(db.pool, {
          id: `${prefix}-${i}`,
          duration: '3d',
          resetAt: boundary.toISOString(),
        });
        await insertTag(db.pool, { name: `${prefix}-tag-${i}`, spend: 1 + i, budgetId: `${prefix}-${i}` });
      }
      const sync = await budgetctl(['sync'], env);
      expect(sync.code, sync.stderr).toBe(0);
      const mine = (budgets: Array<Record<string, unknown>>) =>
        budgets.filter((b) => String(b.budget).startsWith(`budget:${prefix}-`));
      // A visibility query on our custom search attributes (SQL visibility on PostgreSQL).
      await vi.waitFor(
        async () => expect(mine(await listed('--kind', 'budget', '--due-within', '1h'))).toHaveLength(HERD),
        {
          timeout: HERD_BOUNDARY_AFTER_MS,
          interval: 500,
        },
      );
      expect(
        Date.now(),
        'the herd must be listed before its boundary, or it was not due at one instant',
      ).toBeLessThan(boundary.getTime());

      await vi.waitFor(
        async () => {
          const { rows } = await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM budget_lifecycle.reset_log WHERE budget_id LIKE $1`,
            [`${prefix}-%`],
          );
          expect(rows[0]!.n).toBe(HERD);
        },
        { timeout: HERD_BOUNDARY_AFTER_MS + LIMITS.workflowStep, interval: 500 },
      );
      const { rows } = await db.pool.query<{ budget_id: string; n: number; period_end: Date }>(
        `SELECT budget_id, count(*)::int AS n, min(period_end) AS period_end
           FROM budget_lifecycle.reset_log WHERE budget_id LIKE $1 GROUP BY budget_id`,
        [`${prefix}-%`],
      );
      expect(rows).toHaveLength(HERD);
      for (const row of rows) {
        expect(row.n, row.budget_id).toBe(1);
        expect(row.period_end.toISOString(), row.budget_id).toBe(boundary.toISOString());
      }
      const left = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "LiteLLM_TagTable" WHERE tag_name LIKE $1 AND spend <> 0`,
        [`${prefix}-%`],
      );
      expect(left.rows[0]!.n).toBe(0);

      // Visibility follows: every budget of the herd is now due at midnight (UTC, the default zone) three days after
      // the boundary's day (`3d`), with one reset.
      const next = new Date(
        Date.UTC(boundary.getUTCFullYear(), boundary.getUTCMonth(), boundary.getUTCDate() + 3),
      ).toISOString();
      await vi.waitFor(
        async () => {
          const budgets = mine(await listed('--kind', 'budget'));
          expect(budgets).toHaveLength(HERD);
          for (const budget of budgets) expect(budget).toMatchObject({ nextResetAt: next, resets: 1 });
        },
        { timeout: LIMITS.workflowStep, interval: 1_000 },
      );
      // Nothing due within a day any more: the Datetime search attribute moved in the visibility store.
      expect(mine(await listed('--kind', 'budget', '--due-within', '1d'))).toHaveLength(0);
    },
  );

  it(
    `runs a ${SHORT_DURATION_S}-second budget through ${CYCLES} cycles, one reset per boundary, on the calendar`,
    { timeout: LIMITS.workflowStep * 2 + SHORT_DURATION_S * 1_000 * (CYCLES + 2) },
    async () => {
      const token = uniqueName('short-key');
      // `Ns` boundaries are counted from the start of the minute: a first boundary on a multiple of N keeps
      // every later one exactly N seconds after the last.
      const step = SHORT_DURATION_S * 1_000;
      const first = new Date(Math.ceil((Date.now() + 10_000) / step) * step);
      await insertKey(db.pool, {
        token,
        spend: 1,
        duration: `${SHORT_DURATION_S}s`,
        resetAt: first.toISOString(),
      });
      const sync = await budgetctl(['sync'], env);
      expect(sync.code, sync.stderr).toBe(0);

      const resets = async () =>
        (
          await db.pool.query<{ period_end: Date }>(
            `SELECT period_end FROM budget_lifecycle.reset_log WHERE budget_kind = 'key' AND budget_id = $1
              ORDER BY period_end`,
            [token],
          )
        ).rows;
      await vi.waitFor(async () => expect((await resets()).length).toBeGreaterThanOrEqual(CYCLES), {
        timeout: LIMITS.workflowStep + SHORT_DURATION_S * 1_000 * (CYCLES + 1),
        interval: 500,
      });
      const done = await resets();
      // Each boundary once, each one duration after the last: no period skipped, none reset twice, no drift.
      done.forEach((reset, i) =>
        expect(reset.period_end.toISOString()).toBe(new Date(first.getTime() + i * step).toISOString()),
      );
      const status = await budgetctl(['--json', 'status', `key:${token}`], env);
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ state: 'active' });
    },
  );
});
