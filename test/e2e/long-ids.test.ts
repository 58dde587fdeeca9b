import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, MAX_WORKFLOW_ID_LENGTH } from '../../src/budget-ref.js';
import { invalidationMessage } from '../../src/cache/invalidation.js';
import { budgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, insertTeam, ONE_RESET_DURATION, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// Budget ids longer than a workflow id can be (LiteLLM accepts them) get a hashed workflow id instead of stopping
// discovery; ids that fit keep their readable one; ids of anything a person can type travel whole from LiteLLM's
// rows to the audit, Redis and `budgetctl`, and print on one line. Real worker process, dev server, PostgreSQL,
// Redis.
let db: TestDatabase;
let worker: WorkerProcess;
let env: Record<string, string>;
const taskQueue = uniqueName('long');
/** 10 kB: its readable workflow id would be ten times Temporal's limit. */
const longTier = `${taskQueue}-${'0123456789abcdef'.repeat(640)}`;
/** Exactly as long as a readable workflow id may be. */
const edgeTier = `${taskQueue}-`.padEnd(MAX_WORKFLOW_ID_LENGTH - 'budget/budget/'.length, 'e');
const ordinary = `${taskQueue}-ordinary`;

const run = (...args: string[]) => budgetctl(args, env);

/**
 * What LiteLLM's users can put in an id: quotes, line breaks (and U+2028), a tab and other control characters (no
 * NUL: PostgreSQL text cannot hold it), a terminal escape sequence, a C1 control and a bidirectional override, `*`,
 * `%`, `_`, `?`, `[`, `/`, `:`, a backslash, and unicode beyond the BMP.
 */
const HOSTILE = `'"\n\r\t\u0001\u001b[2J\u009b\u2028\u202e*%_?[]/:\\ é€😀`;
/** `prefix` and HOSTILE repeated past 10 kB (LiteLLM's btree primary key holds it compressed). */
const hostile = (prefix: string) =>
  `${prefix}${HOSTILE.repeat(Math.ceil(10_240 / Buffer.byteLength(HOSTILE)))}`;
/** Output that a terminal shows as it is: no character that breaks a line or steers the terminal but `\n`. */
// eslint-disable-next-line no-control-regex
const UNSAFE_OUTPUT = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

beforeAll(async () => {
  db = await createTestDatabase();
  env = workerEnv(db.url, taskQueue);
  const nextHour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000).toISOString();
  for (const id of [longTier, edgeTier, ordinary]) {
    await insertBudget(db.pool, { id, duration: '1h', resetAt: nextHour });
    await insertTag(db.pool, { name: `${id.slice(-20)}-tag`, spend: 4, budgetId: id });
  }
  worker = await startWorkerProcess(env, ['--no-supervisor']);
});

afterAll(async () => {
  if (worker) await stopProcess(worker.child);
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
          expect(status.code, status.stderr + worker.output()).toBe(0);
          expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'active', duration: '1h' });
        },
        // Each try is a fresh `budgetctl` process.
        { timeout: LIMITS.workflowStep + LIMITS.cliCommand, interval: 500 },
      );
      const reset = await run('--json', 'reset', ref, '--reason', 'long ids');
      expect(reset.code, reset.stderr + worker.output()).toBe(0);
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
      // Each try is a fresh `budgetctl` process.
      { timeout: LIMITS.visibility + LIMITS.cliCommand, interval: 500 },
    );
  });
});

describe('ids and tag names of anything a person can type', () => {
  it('10 kB of quotes, line breaks, control characters, `*`, `%` and unicode: discovered, reset on schedule, audited, caches invalidated; status, history and list show them on one line', async () => {
    const tier = hostile(`${taskQueue}-tier-`);
    const tag = hostile(`${taskQueue}-tag-`);
    const team = hostile(`${taskQueue}-team-`);
    // Short enough for a readable (percent-encoded) workflow id.
    const shortTier = `${taskQueue}-short-${HOSTILE}`;
    for (const id of [tier, tag, team]) expect(Buffer.byteLength(id)).toBeGreaterThan(10_000);
    expect(budgetWorkflowId({ kind: 'budget', id: shortTier })).not.toMatch(/sha256:/);

    // Room for the sync (one `budgetctl` command, 3 s) and the workflows' first tasks (5 s) before the boundary, or
    // they reset it late, as a catch-up.
    const boundary = new Date(Math.ceil((Date.now() + LIMITS.cliCommand) / 1_000) * 1_000).toISOString();
    // The one reset each, whatever the hour: the checks below look at the status a minute after the boundary.
    const duration = ONE_RESET_DURATION;
    await insertBudget(db.pool, { id: tier, duration, resetAt: boundary });
    await insertTag(db.pool, { name: tag, spend: 5, budgetId: tier });
    await insertBudget(db.pool, { id: shortTier, duration, resetAt: boundary });
    await insertTag(db.pool, { name: `${shortTier}-tag`, spend: 2, budgetId: shortTier });
    await insertTeam(db.pool, { id: team, spend: 6, duration, resetAt: boundary });

    const redis = new Redis(services().redisUrl);
    const subscriber = new Redis(services().redisUrl);
    try {
      // What a LiteLLM proxy caches for the tag and the team, and the messages that make every pod drop them.
      const cached = [`tag:${tag}`, `spend:tag:${tag}`, `team_id:${team}`, `spend:team:${team}`].map(
        (key) => `${taskQueue}:${key}`,
      );
      for (const key of cached) await redis.set(key, 'cached before the reset');
      const published: string[] = [];
      await subscriber.subscribe(`${taskQueue}:litellm_proxy.auth_cache_invalidation`);
      subscriber.on('message', (_channel: string, message: string) => published.push(message));

      const sync = await run('--json', 'sync');
      expect(sync.code, sync.stderr + worker.output()).toBe(0);
      // Three more started than before (the file's first test syncs the others, unless run alone).
      expect(JSON.parse(sync.stdout).started).toBeGreaterThanOrEqual(3);

      // Each reset at its boundary, audited under its full id and its entities' full ids.
      const audited = async (kind: string, id: string) =>
        (
          await db.pool.query<{ id: string; trigger: string; entity_count: number; spend_total: number }>(
            `SELECT id, trigger, entity_count, spend_total FROM budget_lifecycle.reset_log
              WHERE budget_kind = $1 AND budget_id = $2 AND period_end = $3`,
            [kind, id, boundary],
          )
        ).rows;
      await vi.waitFor(
        async () => {
          expect(await audited('budget', tier)).toHaveLength(1);
          expect(await audited('budget', shortTier)).toHaveLength(1);
          expect(await audited('team', team)).toHaveLength(1);
        },
        { timeout: Date.parse(boundary) - Date.now() + LIMITS.workflowStep, interval: 500 },
      );
      const [tierReset] = await audited('budget', tier);
      expect(tierReset).toMatchObject({ trigger: 'schedule', entity_count: 1, spend_total: 5 });
      const entities = await db.pool.query<{ entity_type: string; entity_id: string; spend_before: number }>(
        `SELECT entity_type, entity_id, spend_before FROM budget_lifecycle.reset_log_entity WHERE reset_id = $1`,
        [tierReset!.id],
      );
      expect(entities.rows).toEqual([{ entity_type: 'tag', entity_id: tag, spend_before: 5 }]);
      expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);
      expect(await spendOf(db.pool, 'LiteLLM_TeamTable', { team_id: team })).toBe(0);

      await vi.waitFor(
        async () => {
          for (const key of cached) expect(await redis.exists(key), key).toBe(0);
          for (const key of [`tag:${tag}`, `team_id:${team}`]) {
            expect(published).toContain(invalidationMessage(key));
          }
        },
        { timeout: LIMITS.workflowStep, interval: 250 },
      );

      for (const [kind, id] of [
        ['budget', tier],
        ['budget', shortTier],
        ['team', team],
      ] as const) {
        const ref = `${kind}:${id}`;
        // The worker committed the armed reset at the boundary; the workflow records it when it wakes to collect
        // it, 5 to 25 s later (README, "At the boundary").
        await vi.waitFor(
          async () => {
            const status = await run('--json', 'status', ref);
            expect(status.code, status.stderr).toBe(0);
            expect(JSON.parse(status.stdout)).toMatchObject({
              kind,
              id,
              state: 'active',
              lastError: null,
              lastReset: { periodEnd: boundary, entityCount: 1 },
            });
          },
          { timeout: LIMITS.workflowStep, interval: 1_000 },
        );
        const text = await run('status', ref);
        expect(text.code, text.stderr).toBe(0);
        expect(text.stdout).not.toMatch(UNSAFE_OUTPUT);
        // One line per field (budget, state, duration, schedule, next reset, last reset, resets, failures, error).
        expect(text.stdout.trim().split('\n')).toHaveLength(9);
        expect(text.stdout).toMatch(new RegExp(`^budget +${kind}:${taskQueue}-`, 'm'));
        expect(text.stdout).toMatch(/^state +active$/m);

        const history = await run('--json', 'history', ref);
        expect(history.code, history.stderr).toBe(0);
        const [entry] = JSON.parse(history.stdout) as Array<{
          trigger: string;
          entities: Array<{ id: string }>;
        }>;
        expect(entry?.trigger).toBe('schedule');
        if (id === tier) expect(entry?.entities).toMatchObject([{ type: 'tag', id: tag }]);
        const historyText = await run('history', ref);
        expect(historyText.code, historyText.stderr).toBe(0);
        expect(historyText.stdout).not.toMatch(UNSAFE_OUTPUT);
        // The period's line and the table's header and one row: the entity's id is one shortened cell.
        expect(historyText.stdout.trim().split('\n')).toHaveLength(3);
      }

      // Other files' budgets share the dev server: ours are the lines that name this file's task queue.
      const list = await run('list', '--kind', 'budget');
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).not.toMatch(UNSAFE_OUTPUT);
      expect(list.stdout.split('\n').filter((line) => line.includes(`budget:${taskQueue}-`))).toHaveLength(5);

      // Nothing crash-looped: no workflow task failed in any of the three workflows.
      const connection = await Connection.connect({ address: services().temporalAddress });
      try {
        const client = new Client({ connection });
        for (const ref of [
          { kind: 'budget', id: tier },
          { kind: 'budget', id: shortTier },
          { kind: 'team', id: team },
        ] as const) {
          const { events } = await client.workflow.getHandle(budgetWorkflowId(ref)).fetchHistory();
          expect(events?.filter((e) => e.workflowTaskFailedEventAttributes) ?? []).toEqual([]);
        }
      } finally {
        await connection.close();
      }
    } finally {
      redis.disconnect();
      subscriber.disconnect();
    }
  });
});
