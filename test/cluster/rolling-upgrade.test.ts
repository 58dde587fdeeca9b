import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../src/provision/ports.js';
import { run } from '../../src/provision/run.js';
import { budgetctl, cliEnv, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { waitUntilReady } from './workers.js';

// A rolling deploy on a cluster with running workflows: budgets started by release 0.1 (its own worker, workflow
// code, activities and migrations, checked out of git) keep their state and keep resetting once the worker is
// replaced by the current code. The current code's `patched()` check moves each 0.1 run to the entity workflow at
// its first activation there (README, "Rolling out new workflow code").

const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The last commit of release 0.1: the parent of the commit that introduced release 0.2's entity workflow. */
const RELEASE_0_1 = 'c614b524453d6d97fad74891a45cad11637a6fd8';
const DURATION_S = 10;

let db: TestDatabase;
let oldTree: string;
let env: Record<string, string>;
let connection: Connection;
const workers: ChildProcess[] = [];
const taskQueue = uniqueName('upgrade');

/** Release 0.1's sources, with this checkout's node_modules (its dependencies are the same packages). */
async function checkOutRelease(commit: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-release-'));
  const archive = path.join(dir, 'release.tar');
  try {
    await run('git', [
      '-C',
      REPO,
      'archive',
      '--output',
      archive,
      commit,
      'src',
      'workflows',
      'activities',
      'tsconfig.json',
    ]);
  } catch (error) {
    throw new Error(
      `This test runs release 0.1 from git (commit ${commit}); run it in a full clone, not a shallow one`,
      { cause: error },
    );
  }
  await run('tar', ['-xf', archive, '-C', dir]);
  await rm(archive);
  await symlink(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/** `budgetctl <args>` of release 0.1, as a process. */
function spawnRelease(args: readonly string[], extra: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: oldTree,
    env: cliEnv({ ...env, ...extra }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function exitOf(child: ChildProcess): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, output };
}

beforeAll(async () => {
  [db, oldTree] = await Promise.all([createTestDatabase(), checkOutRelease(RELEASE_0_1)]);
  // A database as release 0.1 left it: LiteLLM's tables and 0.1's own migrations only (its worker applies them;
  // it refuses a schema newer than itself, as a forward-only runner should).
  await db.pool.query('DROP SCHEMA budget_lifecycle CASCADE');
  env = {
    DATABASE_URL: db.url,
    REDIS_URL: services().redisUrl,
    LITELLM_REDIS_NAMESPACE: taskQueue,
    TEMPORAL_ADDRESS: services().temporalAddress,
    BUDGET_TASK_QUEUE: taskQueue,
  };
  connection = await Connection.connect({ address: services().temporalAddress });
});
afterAll(async () => {
  for (const worker of workers) await stopProcess(worker, 'SIGKILL');
  await connection?.close();
  await db?.drop();
  if (oldTree) await rm(oldTree, { recursive: true, force: true });
});

describe('rolling out a new release on a cluster with running workflows', () => {
  it(
    'release 0.1 runs keep their state and keep resetting on the current code',
    { timeout: LIMITS.workerStart * 2 + LIMITS.workflowStep * 4 + LIMITS.cliCommand * 6 },
    async () => {
      const client = new Client({ connection });
      const ticking = `${taskQueue}-ticking`;
      const paused = `${taskQueue}-paused`;
      const step = DURATION_S * 1_000;
      const first = new Date(Math.ceil((Date.now() + LIMITS.cliCommand) / step) * step);
      await insertBudget(db.pool, { id: ticking, duration: `${DURATION_S}s`, resetAt: first.toISOString() });
      await insertTag(db.pool, { name: `${ticking}-tag`, spend: 1, budgetId: ticking });
      const later = new Date(Date.now() + 3_600_000).toISOString();
      await insertBudget(db.pool, { id: paused, duration: '1h', resetAt: later });

      // Release 0.1 is deployed: its worker migrates its schema and starts its supervisor.
      const oldPort = await freePort();
      const oldWorker = spawnRelease(['worker', '--no-supervisor'], { METRICS_PORT: String(oldPort) });
      workers.push(oldWorker);
      await waitUntilReady(oldPort, oldWorker);
      const sync = await exitOf(spawnRelease(['sync']));
      expect(sync.code, sync.output).toBe(0);
      const pause = await exitOf(
        spawnRelease(['pause', `budget:${paused}`, '--reason', 'before the upgrade']),
      );
      expect(pause.code, pause.output).toBe(0);
      const handle = (id: string) => client.workflow.getHandle(`budget/budget/${encodeURIComponent(id)}`);
      expect((await handle(ticking).describe()).type).toBe('budgetWorkflow');

      // Release 0.1 resets the ticking budget at least once.
      const resets = async () =>
        (
          await db.pool.query<{ period_end: Date; trigger: string }>(
            `SELECT period_end, trigger FROM budget_lifecycle.reset_log WHERE budget_id = $1 ORDER BY period_end`,
            [ticking],
          )
        ).rows;
      await vi.waitFor(async () => expect((await resets()).length).toBeGreaterThanOrEqual(1), {
        timeout: LIMITS.cliCommand * 2 + step + LIMITS.workflowStep,
        interval: 500,
      });

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
      expect(await stopProcess(oldWorker)).toBe(0);
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
