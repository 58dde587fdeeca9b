import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freePort } from '../../dev/provision/ports.js';
import { budgetWorkflowId } from '../../src/budget-ref.js';
import { nextBoundary, parseDuration } from '../../src/schedule.js';
import {
  BudgetIdKey,
  BudgetKindKey,
  BudgetStateKey,
  LastResetAtKey,
  NextResetAtKey,
  ResetCountKey,
} from '../../src/temporal/search-attributes.js';
import { pythonIsoFormat } from '../../src/window-id.js';
import { budgetctl, cliEnv, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import {
  budgetLimitsOf,
  insertBudget,
  insertTag,
  insertTeam,
  insertWindowSpend,
  setBudgetLimits,
  spendOf,
  windowSpendOf,
} from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';

const HOUR = 60 * 60 * 1000;
const API_KEY = 'cli-test-api-key-not-for-logs';
let db: TestDatabase;
let worker: ChildProcess;
let workerLog = '';
let workerStdout = '';
let workerStderr = '';
let env: Record<string, string>;
let metricsPort: number;
const taskQueue = uniqueName('cli');
const tier = uniqueName('cli-tier');
const team = uniqueName('cli-team');
/** A team with two window budgets in `budget_limits` and no budget of its own. */
const windowTeam = uniqueName('cli-win');
const DAY = 24 * HOUR;
let dayReset: string;
let weekReset: string;
let windowLimits: object[];
let redis: Redis;

const run = (...args: string[]) => budgetctl(args, env);
const json = async (...args: string[]) => {
  const result = await run('--json', ...args);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
};

beforeAll(async () => {
  db = await createTestDatabase();
  metricsPort = await freePort();
  env = { ...workerEnv(db.url, taskQueue), METRICS_PORT: String(metricsPort) };
  // The hour after next: at least an hour away, so no scheduled reset runs while the file does (it takes minutes,
  // and the next hour can be seconds away), and within the two hours `list --due-within 2h` looks ahead.
  const resetAt = new Date(Math.floor(Date.now() / HOUR) * HOUR + 2 * HOUR).toISOString();
  await insertBudget(db.pool, { id: tier, maxBudget: 1, duration: '1h', resetAt });
  await insertTag(db.pool, { name: `${tier}-tag`, spend: 0.75, budgetId: tier });
  await insertTeam(db.pool, { id: team, spend: 3, duration: '1d', resetAt });
  // Window budgets as LiteLLM's API leaves them: each reset_at a boundary of its own in Python's isoformat(), its
  // counter in Redis under the worker's namespace, the daily window's LiteLLM_BudgetWindowSpend row a day behind.
  // Each the boundary after next: the next midnight (or Monday) may come while the file runs.
  const afterNext = (duration: string) =>
    nextBoundary(parseDuration(duration), nextBoundary(parseDuration(duration), new Date())).toISOString();
  dayReset = afterNext('1d');
  weekReset = afterNext('7d');
  windowLimits = [
    { budget_duration: '1d', max_budget: 2, reset_at: pythonIsoFormat(dayReset), label: 'daily' },
    { budget_duration: '7d', max_budget: 10, reset_at: pythonIsoFormat(weekReset) },
  ];
  await insertTeam(db.pool, { id: windowTeam });
  await setBudgetLimits(db.pool, { table: 'LiteLLM_TeamTable', id: windowTeam }, windowLimits);
  await insertWindowSpend(db.pool, {
    entityType: 'team',
    entityId: windowTeam,
    duration: '1d',
    windowStart: new Date(Date.parse(dayReset) - 2 * DAY).toISOString(),
    spend: 1.5,
  });
  redis = new Redis(services().redisUrl);
  await redis.set(`${taskQueue}:spend:team:${windowTeam}:window:1d`, '1.5');
  await redis.set(`${taskQueue}:spend:team:${windowTeam}:window:7d`, '4.0');
  worker = spawnBudgetctl(['worker', '--sync-interval', '1h', '--concurrency', '4'], {
    ...env,
    LOG_LEVEL: 'info',
    // The dev server ignores credentials; the worker sends the key (in plain text: TLS off) and must never log it.
    TEMPORAL_API_KEY: API_KEY,
    TEMPORAL_TLS: 'false',
  });
  worker.stdout?.on('data', (c: Buffer) => {
    workerLog += c.toString();
    workerStdout += c.toString();
  });
  worker.stderr?.on('data', (c: Buffer) => {
    workerLog += c.toString();
    workerStderr += c.toString();
  });
  // The supervisor's first full sweep starts both budgets' workflows.
  await vi.waitFor(
    async () => {
      const status = await run('status', `team:${team}`);
      if (status.code !== 0) throw new Error(`${status.stderr}\n${workerLog}`);
    },
    { timeout: LIMITS.workerStart + LIMITS.cliCommand, interval: 500 },
  );
});

afterAll(async () => {
  if (worker) await stopProcess(worker);
  redis?.disconnect();
  await db?.drop();
});

describe('budgetctl against a real worker process and the dev server', () => {
  it('migrate and search-attributes register are idempotent', async () => {
    expect(await json('migrate')).toEqual({ applied: [] });
    const registered = await run('search-attributes', 'register');
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout).toMatch(/already registered/);
  });

  it('status shows a budget for people and for scripts', async () => {
    const human = await run('status', `budget:${tier}`);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/state\s+active/);
    expect(human.stdout).toMatch(/duration\s+1h/);
    const status = await json('status', `budget:${tier}`);
    expect(status).toMatchObject({ kind: 'budget', id: tier, state: 'active', duration: '1h', cycle: 0 });
  });

  it('reset forces a reset, prints its result, and history reads it back with its entities', async () => {
    const reset = await run('reset', `budget:${tier}`, '--reason', 'cli test', '--requested-by', 'e2e');
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(/1 entities zeroed, spend 0.75 recorded/);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${tier}-tag` })).toBe(0);
    const history = await json('history', `budget:${tier}`, '--limit', '5');
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({
      trigger: 'forced',
      reason: 'cli test',
      requestedBy: 'e2e',
      entityCount: 1,
      entities: [{ type: 'tag', id: `${tier}-tag`, spendBefore: 0.75, spendAfter: 0 }],
    });
    const text = await run('history', `budget:${tier}`);
    expect(text.stdout).toMatch(/forced\s+1 entities/);
  });

  it('reset with the same request id applies once', async () => {
    await db.pool.query(`UPDATE "LiteLLM_TeamTable" SET spend = 2 WHERE team_id = $1`, [team]);
    const first = await json('reset', `team:${team}`, '--reason', 'dup', '--request-id', 'same');
    await db.pool.query(`UPDATE "LiteLLM_TeamTable" SET spend = 1 WHERE team_id = $1`, [team]);
    const second = await json('reset', `team:${team}`, '--reason', 'dup', '--request-id', 'same');
    expect(second).toEqual(first);
    expect(await spendOf(db.pool, 'LiteLLM_TeamTable', { team_id: team })).toBe(1);
  });

  it('a window budget: status, list --kind window, a forced reset, its history and its search attributes', async () => {
    const id = `team:${windowTeam}:1d`;
    const ref = `window:${id}`;
    // The supervisor's first sweep starts a workflow for each window, as for any budget.
    await vi.waitFor(
      async () => {
        const status = await run('status', ref);
        if (status.code !== 0) throw new Error(`${status.stderr}\n${workerLog}`);
      },
      { timeout: LIMITS.supervisorPass + LIMITS.cliCommand, interval: 500 },
    );
    expect(await json('status', ref)).toMatchObject({
      kind: 'window',
      id,
      state: 'active',
      duration: '1d',
      nextResetAt: dayReset,
      cycle: 0,
      lastReset: null,
    });
    const human = await run('status', ref);
    expect(human.stdout).toMatch(new RegExp(`^budget\\s+${ref}$`, 'm'));
    expect(human.stdout).toMatch(/duration\s+1d/);

    await vi.waitFor(
      async () => {
        const listed = await json('list', '--kind', 'window');
        expect(listed.query).toMatch(/BudgetKind = 'window'/);
        const budgets: Array<{ budget: string; state: string; nextResetAt: string }> = listed.budgets;
        expect(budgets.filter((b) => !b.budget.startsWith('window:'))).toEqual([]);
        expect(budgets).toEqual(
          expect.arrayContaining([
            expect.objectContaining({ budget: ref, state: 'active', nextResetAt: dayReset }),
            expect.objectContaining({
              budget: `window:team:${windowTeam}:7d`,
              state: 'active',
              nextResetAt: weekReset,
            }),
          ]),
        );
      },
      { timeout: LIMITS.visibility + LIMITS.cliCommand, interval: 250 },
    );

    // A forced reset keeps the calendar boundary: the counter is set, the spend row rolls onto the window that
    // ends at reset_at, and nothing else in budget_limits or Redis changes.
    const reset = await run('reset', ref, '--reason', 'cli window', '--requested-by', 'e2e');
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(
      new RegExp(
        `^reset ${ref}: 1 entities zeroed, spend 1.5 recorded \\(reset \\d+\\); next reset ${dayReset}$`,
        'm',
      ),
    );
    expect(await redis.get(`${taskQueue}:spend:team:${windowTeam}:window:1d`)).toBe('0.0');
    expect(await redis.get(`${taskQueue}:spend:team:${windowTeam}:window:7d`)).toBe('4.0');
    expect(await budgetLimitsOf(db.pool, { table: 'LiteLLM_TeamTable', id: windowTeam })).toEqual(
      windowLimits,
    );
    expect(
      await windowSpendOf(db.pool, { entityType: 'team', entityId: windowTeam, duration: '1d' }),
    ).toEqual({
      windowStart: new Date(Date.parse(dayReset) - DAY).toISOString(),
      spend: 0,
    });

    const history = await json('history', ref);
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({
      trigger: 'forced',
      reason: 'cli window',
      requestedBy: 'e2e',
      nextResetAt: dayReset,
      entityCount: 1,
      spendTotal: 1.5,
      entities: [
        { type: 'window', id, spendBefore: 1.5, spendAfter: 0 },
        { type: 'window_spend', id, spendBefore: 1.5, spendAfter: 0 },
      ],
    });
    expect((await run('history', ref)).stdout).toMatch(/forced\s+1 entities\s+spend 1.5/);
    const status = await json('status', ref);
    expect(status).toMatchObject({ state: 'active', nextResetAt: dayReset, cycle: 1 });
    expect(status.lastReset).toMatchObject({ trigger: 'forced', entityCount: 1, spendTotal: 1.5 });

    // The Temporal UI's view: the workflow's own search attributes, as describe() returns them.
    const connection = await Connection.connect({ address: services().temporalAddress });
    try {
      const handle = new Client({ connection }).workflow.getHandle(budgetWorkflowId({ kind: 'window', id }));
      await vi.waitFor(
        async () => {
          const attributes = (await handle.describe()).typedSearchAttributes;
          expect({
            kind: attributes.get(BudgetKindKey),
            id: attributes.get(BudgetIdKey),
            state: attributes.get(BudgetStateKey),
            nextResetAt: attributes.get(NextResetAtKey)?.toISOString(),
            lastResetAt: attributes.get(LastResetAtKey)?.toISOString(),
            resets: attributes.get(ResetCountKey),
          }).toEqual({
            kind: 'window',
            id,
            state: 'active',
            nextResetAt: dayReset,
            lastResetAt: status.lastReset.at,
            resets: 1,
          });
        },
        { timeout: LIMITS.workflowStep, interval: 250 },
      );
    } finally {
      await connection.close();
    }
  });

  it('pause, list --state, resume', async () => {
    expect((await run('pause', `team:${team}`, '--reason', 'audit')).stdout).toMatch(/paused/);
    await vi.waitFor(
      async () => {
        const listed = await json('list', '--state', 'paused', '--kind', 'team');
        expect(listed.budgets.map((b: { budget: string }) => b.budget)).toContain(`team:${team}`);
      },
      { timeout: LIMITS.visibility + LIMITS.cliCommand, interval: 250 },
    );
    expect((await run('resume', `team:${team}`)).stdout).toMatch(/is active/);
    expect(await json('status', `team:${team}`)).toMatchObject({ state: 'active', paused: null });
  });

  it('list --due-within finds budgets by NextResetAt', async () => {
    await vi.waitFor(
      async () => {
        const due = await json('list', '--kind', 'budget', '--due-within', '2h');
        expect(due.budgets.map((b: { budget: string }) => b.budget)).toContain(`budget:${tier}`);
        expect(due.query).toMatch(/NextResetAt <= '/);
      },
      { timeout: LIMITS.visibility + LIMITS.cliCommand, interval: 250 },
    );
    const table = await run('list', '--kind', 'team');
    expect(table.stdout).toMatch(/BUDGET\s+STATE\s+NEXTRESETAT/);
  });

  it('sync starts a workflow for a budget created after the worker started', async () => {
    const late = uniqueName('cli-late');
    await insertTeam(db.pool, {
      id: late,
      spend: 1,
      duration: '1d',
      resetAt: new Date(Date.now() + HOUR).toISOString(),
    });
    const synced = await json('sync');
    // Only the new row is a schedule change; the budgets the worker already knows cost nothing.
    expect(synced).toMatchObject({ changed: 1, started: 1, signalled: 0 });
    expect(await json('sync')).toMatchObject({ changed: 0, started: 0 });
    expect(await json('status', `team:${late}`)).toMatchObject({ state: 'active' });
  });

  it('answers bad input and missing services with one clear line and a meaningful exit code', async () => {
    const badRef = await run('status', 'nope');
    expect(badRef.code).toBe(2);
    expect(badRef.stderr.trim().split('\n')).toHaveLength(1);
    expect(badRef.stderr).toMatch(/Invalid budget reference "nope"/);

    const unknown = await run('status', 'team:does-not-exist');
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/No budget workflow for team:does-not-exist/);

    const noReason = await run('reset', `budget:${tier}`);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr.trim().split('\n')).toEqual([
      "error: required option '--reason <text>' not specified",
    ]);

    // Numeric flags are bounded and say so, instead of reaching the database.
    for (const limit of ['1e21', '0', '1001', '5.0', '0x10']) {
      const history = await run('history', `budget:${tier}`, '--limit', limit);
      expect(history.code, limit).toBe(2);
      expect(history.stderr.trim().split('\n')).toHaveLength(1);
      expect(history.stderr).toMatch(/expected a whole number from 1 to 1000/);
    }
    const longSync = await run('worker', '--sync-interval', '2d');
    expect(longSync.code).toBe(2);
    expect(longSync.stderr).toMatch(/too long: at most 1 days/);

    // A newline in what a person typed never splits an error over two lines.
    for (const ref of ['team:a\nb', 'nope\nstatus']) {
      const result = await run('status', ref);
      expect(result.code, ref).toBeGreaterThan(1);
      expect(result.stderr.trim().split('\n'), ref).toHaveLength(1);
      expect(result.stderr).toContain(ref.replace('\n', '\\n'));
    }
    const badFlag = await run('history', `budget:${tier}`, '--limit', '1\n2');
    expect(badFlag.stderr.trim().split('\n')).toHaveLength(1);

    const noTemporal = await budgetctl(['status', `budget:${tier}`], {
      ...env,
      TEMPORAL_ADDRESS: '127.0.0.1:1',
    });
    expect(noTemporal.code).toBe(4);
    expect(noTemporal.stderr).toMatch(
      /Cannot reach Temporal at 127.0.0.1:1 .*: nothing accepts connections there \(ECONNREFUSED\): is the server running\? Check TEMPORAL_ADDRESS$/m,
    );
    expect(noTemporal.stderr).not.toMatch(/\n\s+at /);
    // TLS to a server that serves none (the dev server), by name: Node warns about TLS to an IP address.
    const tlsToPlain = await budgetctl(['status', `budget:${tier}`], {
      ...env,
      TEMPORAL_ADDRESS: env.TEMPORAL_ADDRESS!.replace('127.0.0.1', 'localhost'),
      TEMPORAL_TLS: 'true',
    });
    expect(tlsToPlain.code).toBe(4);
    expect(tlsToPlain.stderr.trim().split('\n')).toHaveLength(1);
    expect(tlsToPlain.stderr).toMatch(/auth tls\): the server does not serve TLS: set TEMPORAL_TLS=false/);

    const secret = 's3cr3t-pa55word';
    const noDb = await budgetctl(['history', `budget:${tier}`], {
      ...env,
      DATABASE_URL: `postgres://litellm:${secret}@127.0.0.1:1/litellm`,
    });
    expect(noDb.code).toBe(4);
    expect(noDb.stderr).toMatch(/Cannot reach PostgreSQL at postgres:\/\/litellm:\*\*\*@127.0.0.1:1/);
    expect(noDb.stderr + noDb.stdout).not.toContain(secret);

    const badConfig = await budgetctl(['migrate'], { ...env, BUDGET_RESET_TIMEZONE: 'Mars/Olympus' });
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toMatch(/BUDGET_RESET_TIMEZONE/);

    const verbose = await run('--verbose', 'status', 'team:does-not-exist');
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });

  it('the worker on a terminal prints readable log lines instead of JSON', async () => {
    // `script` gives the worker a pseudo-terminal as stdout, as a person's shell would.
    const command = [process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'worker', '--no-supervisor']
      .map((arg) => `'${arg}'`)
      .join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: fileURLToPath(new URL('../../', import.meta.url)),
      env: cliEnv({
        ...env,
        BUDGET_TASK_QUEUE: uniqueName('cli-tty'),
        METRICS_PORT: '',
        LOG_LEVEL: 'info',
        TEMPORAL_API_KEY: API_KEY,
        TEMPORAL_TLS: 'false',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so the worker under `script` is stopped with it.
      detached: true,
    });
    let output = '';
    child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      // eslint-disable-next-line no-control-regex
      const plain = () => output.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');
      await vi.waitFor(
        () => expect(plain()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}worker started {2}taskQueue=/m),
        {
          timeout: LIMITS.workerStart,
          interval: 200,
        },
      );
      expect(output).toContain('\x1b[32mINFO'); // coloured on a terminal
      expect(plain()).not.toMatch(/^\{"level"/m);
      expect(plain()).not.toContain(API_KEY);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
  });

  it('the worker serves health and metrics, logs JSON, and stops gracefully on SIGTERM', async () => {
    const base = `http://127.0.0.1:${metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    await vi.waitFor(async () => expect((await fetch(`${base}/readyz`)).status).toBe(200), {
      timeout: LIMITS.workflowStep,
    });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(
      /budget_resets\{[^}]*kind="budget"[^}]*outcome="reset"[^}]*trigger="forced"[^}]*\} 1/,
    );
    expect(metrics).toMatch(/temporal_/);
    const code = await stopProcess(worker);
    expect(code).toBe(0);
    // Every line the worker printed, on stdout and stderr, is JSON (the SDK core's logs included).
    const lines = [...workerStdout.split('\n'), ...workerStderr.split('\n')].filter((l) => l.trim() !== '');
    expect(lines.length).toBeGreaterThan(0);
    const entries = lines.map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new Error(`the worker printed a line that is not JSON: ${line}`);
      }
    });
    expect(entries).toContainEqual(expect.objectContaining({ msg: 'worker stopped' }));
    // Activity logs carry the budget and the workflow that ran them.
    expect(entries).toContainEqual(
      expect.objectContaining({
        msg: 'resetBudget finished',
        budgetId: tier,
        workflowId: `budget/budget/${tier}`,
      }),
    );
    // The connection string (and its password) and the Temporal API key never reach the logs.
    expect(workerLog).not.toContain(`:${new URL(db.url).password}@`);
    expect(workerLog).not.toContain(API_KEY);
    expect(entries).toContainEqual(expect.objectContaining({ msg: 'worker started', auth: 'api-key' }));
  });
});
