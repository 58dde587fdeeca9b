import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../dev/provision/ports.js';
import { DEFAULT_SCHEDULE } from '../../src/schedule.js';
import { registerSearchAttributes } from '../../src/temporal/register-search-attributes.js';
import { BudgetIdKey, BudgetKindKey, BudgetStateKey } from '../../src/temporal/search-attributes.js';
import { createBudgetWorker } from '../../src/worker.js';
import { budgetctl, cliEnv, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';
import { installTestRuntime } from '../helpers/temporal.js';
import { waitUntilReady } from '../helpers/worker-process.js';

// A rolling deploy on a cluster with running workflows: budgets started on release 0.1's workflow code keep their
// state and keep resetting once its worker is replaced by the current code. The current code's `patched()` check
// moves each 0.1 run to the entity workflow at its first activation there (README, "Rolling out new workflow
// code").
//
// Release 0.1's workflows run from a committed bundle (fixtures/release-0.1-workflows.js, built from commit
// c614b52 by scripts/build-release-bundle.ts), so no git history is needed. Its worker runs them with the current
// activities, which keep 0.1's `loadBudget` and `setResetAt` (and `resetBudget`, `invalidateCaches`) for exactly
// these runs, on the current schema: in a real rollout the new release's migrations run first and the old workers
// keep running until they are replaced.

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const RELEASE_0_1_BUNDLE = new URL('./fixtures/release-0.1-workflows.js', import.meta.url);
const DURATION_S = 10;

let db: TestDatabase;
let redis: Redis;
let env: Record<string, string>;
let connection: Connection;
let nativeConnection: NativeConnection;
let releaseBundle: string;
let oldWorker: { worker: Worker; running: Promise<void> } | undefined;
const workers: Array<ReturnType<typeof spawnBudgetctl>> = [];
const taskQueue = uniqueName('upgrade');

/** Release 0.1's worker: its workflow code, the current activities, on this test's task queue. */
async function startRelease01Worker(): Promise<{ worker: Worker; running: Promise<void> }> {
  const worker = await createBudgetWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundle: { code: releaseBundle },
    deps: {
      db: db.pool,
      redis,
      config: { schedule: DEFAULT_SCHEDULE, rollover: false, redisNamespace: taskQueue },
    },
  });
  return { worker, running: worker.run() };
}

/** What release 0.1's `budgetctl sync` did for a budget it found: start its `budgetWorkflow` (0.1's input). */
async function startRelease01Run(client: Client, id: string): Promise<void> {
  await client.workflow.start('budgetWorkflow', {
    taskQueue,
    workflowId: `budget/budget/${encodeURIComponent(id)}`,
    args: [{ kind: 'budget', id }],
    typedSearchAttributes: [
      { key: BudgetKindKey, value: 'budget' },
      { key: BudgetIdKey, value: id },
      { key: BudgetStateKey, value: 'active' },
    ],
  });
}

async function exitOf(child: ReturnType<typeof spawn>): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, output };
}

beforeAll(async () => {
  installTestRuntime();
  [db, releaseBundle] = await Promise.all([createTestDatabase(), readFile(RELEASE_0_1_BUNDLE, 'utf8')]);
  redis = new Redis(services().redisUrl);
  env = workerEnv(db.url, taskQueue);
  connection = await Connection.connect({ address: services().temporalAddress });
  nativeConnection = await NativeConnection.connect({ address: services().temporalAddress });
  // What every worker process does at start-up; 0.1's runs are started with these attributes.
  await registerSearchAttributes(connection, 'default');
});
afterAll(async () => {
  if (oldWorker?.worker.getState() === 'RUNNING') oldWorker.worker.shutdown();
  await oldWorker?.running.catch(() => undefined);
  for (const worker of workers) await stopProcess(worker, 'SIGKILL');
  redis?.disconnect();
  await nativeConnection?.close();
  await connection?.close();
  await db?.drop();
});

describe('rolling out a new release on a cluster with running workflows', () => {
  it(
    'release 0.1 runs keep their state and keep resetting on the current code',
    { timeout: LIMITS.workerStart + LIMITS.workflowStep * 5 + LIMITS.cliCommand * 6 },
    async () => {
      const client = new Client({ connection });
      const ticking = `${taskQueue}-ticking`;
      const paused = `${taskQueue}-paused`;
      const step = DURATION_S * 1_000;
      // The first boundary leaves the old worker time to start; a boundary it misses is caught up, on the calendar.
      const first = new Date(Math.ceil((Date.now() + step) / step) * step);
      await insertBudget(db.pool, { id: ticking, duration: `${DURATION_S}s`, resetAt: first.toISOString() });
      await insertTag(db.pool, { name: `${ticking}-tag`, spend: 1, budgetId: ticking });
      const later = new Date(Date.now() + 3_600_000).toISOString();
      await insertBudget(db.pool, { id: paused, duration: '1h', resetAt: later });

      // Release 0.1 is deployed: its worker runs, its sync starts both budgets' workflows, one is paused.
      oldWorker = await startRelease01Worker();
      await startRelease01Run(client, ticking);
      await startRelease01Run(client, paused);
      const handle = (id: string) => client.workflow.getHandle(`budget/budget/${encodeURIComponent(id)}`);
      // 0.1's `budgetctl pause`: its `pause` update, answered by 0.1's workflow code with 0.1's status.
      const pausedBy01 = await handle(paused).executeUpdate<{ state: string }, [{ reason: string }]>(
        'pause',
        {
          args: [{ reason: 'before the upgrade' }],
        },
      );
      expect(pausedBy01.state).toBe('paused');
      expect((await handle(ticking).describe()).type).toBe('budgetWorkflow');
      expect((await handle(paused).describe()).type).toBe('budgetWorkflow');

      // Release 0.1 resets the ticking budget at least once.
      const resets = async () =>
        (
          await db.pool.query<{ period_end: Date; trigger: string }>(
            `SELECT period_end, trigger FROM budget_lifecycle.reset_log WHERE budget_id = $1 ORDER BY period_end`,
            [ticking],
          )
        ).rows;
      await vi.waitFor(async () => expect((await resets()).length).toBeGreaterThanOrEqual(1), {
        timeout: step * 2 + LIMITS.workflowStep,
        interval: 500,
      });
      // Still 0.1's run: the current code would have moved it to the entity workflow at its first activation.
      expect((await handle(ticking).describe()).type).toBe('budgetWorkflow');

      // Before the rollout: the running 0.1 histories replay on the current code (the README's pre-deploy check).
      const replay = await exitOf(
        spawn(process.execPath, ['--import', 'tsx', 'scripts/replay-live.ts'], {
          cwd: REPO,
          env: cliEnv(env),
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      expect(replay.code, replay.output).toBe(0);
      // Every running budget workflow of the namespace, the two 0.1 runs among them, replays.
      const replayed = /replayed (\d+) running budget workflow\(s\) from .*: (\d+) ok, 0 failed/.exec(
        replay.output,
      );
      expect(replayed, replay.output).not.toBeNull();
      expect(Number(replayed![1])).toBeGreaterThanOrEqual(2);
      expect(replayed![2]).toBe(replayed![1]);

      // The rollout: the old worker stops gracefully (in-flight activities finish), the new one starts.
      oldWorker.worker.shutdown();
      await oldWorker.running;
      expect(oldWorker.worker.getState()).toBe('STOPPED');
      const resetsBeforeUpgrade = (await resets()).length;
      const newPort = await freePort();
      const newWorker = spawnBudgetctl(['worker'], { ...env, METRICS_PORT: String(newPort) });
      workers.push(newWorker);
      await waitUntilReady(newPort, newWorker);

      // The ticking run moves to the entity workflow under the same id and resets on, on the calendar.
      await vi.waitFor(
        async () => expect((await resets()).length).toBeGreaterThanOrEqual(resetsBeforeUpgrade + 2),
        {
          timeout: LIMITS.workflowStep + step * 3,
          interval: 500,
        },
      );
      expect((await handle(ticking).describe()).type).toBe('budgetEntityWorkflow');
      const done = await resets();
      for (let i = 1; i < done.length; i += 1) {
        const gap = done[i]!.period_end.getTime() - done[i - 1]!.period_end.getTime();
        // Each boundary at most once, all on the calendar; a boundary passed while no worker ran is caught up
        // once, late (the stop and start above may span one).
        expect(gap).toBeGreaterThan(0);
        expect(gap % step).toBe(0);
      }
      expect((done[0]!.period_end.getTime() - first.getTime()) % step).toBe(0);
      const status = await budgetctl(['--json', 'status', `budget:${ticking}`], env);
      expect(status.code, status.stderr).toBe(0);
      const ticked = JSON.parse(status.stdout) as { state: string; cycle: number };
      expect(ticked.state).toBe('active');
      // The cycle count came across with the rest of the state.
      expect(ticked.cycle).toBeGreaterThanOrEqual(done.length);

      // The paused budget is still paused on the new code, with its reason, and resumes there.
      const pausedStatus = await budgetctl(['--json', 'status', `budget:${paused}`], env);
      expect(pausedStatus.code, pausedStatus.stderr).toBe(0);
      expect(JSON.parse(pausedStatus.stdout)).toMatchObject({ state: 'paused' });
      const resume = await budgetctl(['--json', 'resume', `budget:${paused}`], env);
      expect(resume.code, resume.stderr).toBe(0);
      const resumed = JSON.parse(resume.stdout) as { state: string; nextResetAt: string };
      expect(resumed.state).toBe('active');
      expect(Date.parse(resumed.nextResetAt)).toBe(Date.parse(later));
      await vi.waitFor(
        async () => expect((await handle(paused).describe()).type).toBe('budgetEntityWorkflow'),
        {
          timeout: LIMITS.workflowStep,
          interval: 500,
        },
      );

      // A forced reset through the new code's CLI reaches the moved workflow.
      await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 2 WHERE tag_name = $1`, [`${ticking}-tag`]);
      const forced = await budgetctl(['reset', `budget:${ticking}`, '--reason', 'after the upgrade'], env);
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stdout).toMatch(/1 entities zeroed/);
    },
  );
});
