#!/usr/bin/env node
import { WorkflowNotFoundError } from '@temporalio/client';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import type pg from 'pg';
import { syncAllBudgets } from '../../activities/discovery.js';
import {
  BUDGET_KINDS,
  budgetWorkflowId,
  displayBudgetRef,
  displayText,
  formatBudgetRef,
  parseBudgetRef,
  type BudgetRef,
} from '../budget-ref.js';
import { loadConfig, redactUrl, requireDatabaseUrl, type Config } from '../config.js';
import { findRejection } from '../db/budget-sync.js';
import { resetHistory } from '../db/history.js';
import { migrate } from '../db/migrate.js';
import { createPool } from '../db/pool.js';
import { parseDuration } from '../schedule.js';
import { BUDGET_WORKFLOW_TYPES_CLAUSE } from '../temporal/budget-workflows.js';
import { connectClient, temporalTarget } from '../temporal/connection.js';
import { pauseUpdate, resetNowUpdate, resumeUpdate, statusQuery } from '../temporal/messages.js';
import { registerSearchAttributes } from '../temporal/register-search-attributes.js';
import {
  BudgetIdKey,
  BudgetKindKey,
  BudgetStateKey,
  LastResetAtKey,
  NextResetAtKey,
  ResetCountKey,
} from '../temporal/search-attributes.js';
import { runWorkerProcess } from '../worker-process.js';
import { DatabaseUnreachableError, EXIT, explain, oneLine, RefusedBudgetError } from './errors.js';
import { formatRecord, formatTable } from './output.js';

interface GlobalOptions {
  json?: boolean;
  verbose?: boolean;
}

const program = new Command()
  .name('budgetctl')
  .description('Operate LiteLLM budget resets running as Temporal workflows')
  .option('--json', 'print machine-readable JSON')
  .option('--verbose', 'print stack traces on errors')
  // Every error is one line (usage with `--help`), whatever the offending argument holds.
  .configureOutput({ outputError: (text, write) => write(`${oneLine(text.trimEnd())}\n`) })
  .exitOverride();

const globals = (): GlobalOptions => program.opts<GlobalOptions>();
const print = (data: unknown, human: () => string): void => {
  console.log(globals().json ? JSON.stringify(data, null, 2) : human());
};

/** A whole number from 1 to `max`: digits only, so `1e21`, `0x10` or `5.0` are refused with the range. */
function wholeNumber(max: number): (value: string) => number {
  return (value: string) => {
    const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
    if (!(n >= 1 && n <= max)) {
      throw new InvalidArgumentError(
        `expected a whole number from 1 to ${max}, got ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

const DAY_MS = 86_400_000;

/** A duration such as `30s`, `10m` or `1h`, at most `maxMs` (longer would overflow timers or mean nothing). */
function durationMs(maxMs: number): (value: string) => number {
  return (value: string) => {
    let ms: number;
    try {
      const d = parseDuration(value);
      // LiteLLM's lenient readings (`1min` is daily at midnight) are for its rows, not for our own flags.
      if (d.note)
        throw new Error(`"${value}" is not a duration: ${d.note}; use <N>s, <N>m, <N>h, <N>d or <N>w`);
      const unitMs = { s: 1_000, m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS, mo: 30 * DAY_MS }[d.unit];
      ms = d.amount * unitMs;
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
    if (!(ms <= maxMs)) {
      throw new InvalidArgumentError(`${JSON.stringify(value)} is too long: at most ${maxMs / DAY_MS} days`);
    }
    return ms;
  };
}

/** Runs `fn` with a pool on DATABASE_URL; a connection failure becomes a one-line error that names the host. */
async function withDatabase<T>(config: Config, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const url = requireDatabaseUrl(config);
  const pool = createPool({ connectionString: url, max: 2, connectionTimeoutMillis: 5_000 }, () => undefined);
  try {
    await pool.query('SELECT 1').catch((error: Error) => {
      throw new DatabaseUnreachableError(
        `Cannot reach PostgreSQL at ${redactUrl(url)}: ${error.message}; check DATABASE_URL`,
        { cause: error },
      );
    });
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

async function withClient<T>(
  fn: (client: Awaited<ReturnType<typeof connectClient>>['client']) => Promise<T>,
): Promise<T> {
  const { client, connection } = await connectClient(temporalTarget());
  try {
    return await fn(client);
  } finally {
    await connection.close();
  }
}

program
  .command('worker')
  .description('run the worker and the supervisor that discovers budgets (until SIGTERM)')
  .option('--task-queue <name>', 'task queue (default BUDGET_TASK_QUEUE or budget-lifecycle)')
  .option('--concurrency <n>', 'activities run at once (1 to 1000)', wholeNumber(1_000))
  .option(
    '--sync-interval <duration>',
    'how often the supervisor looks for schedule changes, e.g. 30s (at most 1d)',
    durationMs(DAY_MS),
  )
  .option(
    '--full-sweep-interval <duration>',
    'how often the supervisor starts any missing workflow (one call per budget), e.g. 24h (at most 7d)',
    durationMs(7 * DAY_MS),
  )
  .option('--no-supervisor', 'do not start the supervisor (another worker runs it)')
  .action(
    async (opts: {
      taskQueue?: string;
      concurrency?: number;
      syncInterval?: number;
      fullSweepInterval?: number;
      supervisor: boolean;
    }) => {
      await runWorkerProcess({
        config: loadConfig(),
        target: temporalTarget(),
        taskQueue: opts.taskQueue,
        maxConcurrentActivities: opts.concurrency,
        supervisor: opts.supervisor,
        supervisorArgs: { syncIntervalMs: opts.syncInterval, fullSweepIntervalMs: opts.fullSweepInterval },
      });
    },
  );

program
  .command('sync')
  .description('tell every budget whose schedule changed now; with --full also start any missing workflow')
  .option('--task-queue <name>', 'task queue new workflows run on')
  .option('--full', 'also check every budget has a running workflow (one start call per budget)')
  .action(async (opts: { taskQueue?: string; full?: boolean }) => {
    const config = loadConfig();
    const taskQueue = opts.taskQueue ?? config.taskQueue;
    const totals = await withDatabase(config, (db) =>
      withClient((client) => syncAllBudgets({ db }, { client, taskQueue }, { full: opts.full ?? false })),
    );
    print(
      totals,
      () =>
        `${totals.changed} budgets changed; started ${totals.started}, signalled ${totals.signalled}, ` +
        `ended ${totals.ended}, rejected ${totals.rejected} workflows`,
    );
  });

/**
 * A budget without a workflow may be one Temporal refused to start (discovery recorded why): say so instead of
 * suggesting a sync that would be refused again. Without a reachable database the caller's error stands.
 */
async function explainRefusal(budget: BudgetRef): Promise<void> {
  const config = loadConfig();
  if (!config.databaseUrl) return;
  const reason = await withDatabase(config, (db) => findRejection(db, budget)).catch(() => undefined);
  if (reason === undefined) return;
  throw new RefusedBudgetError(
    `Temporal refused to start the workflow of ${displayBudgetRef(budget)}: ${oneLine(reason)}; ` +
      'fix the row (a shorter id, for one) and it is tried again when the row changes',
  );
}

program
  .command('status <ref>')
  .description(
    'show a budget: state, next reset, last reset (ref: budget:<id>, key:<token>, user:<id>, team:<id>, window:<key|team>:<owner id>:<duration>)',
  )
  .action(async (ref: string) => {
    const budget = parseBudgetRef(ref);
    const status = await withClient((client) =>
      client.workflow.getHandle(budgetWorkflowId(budget)).query(statusQuery),
    ).catch(async (error: unknown) => {
      if (error instanceof WorkflowNotFoundError) await explainRefusal(budget);
      throw error;
    });
    print(status, () =>
      formatRecord({
        budget: formatBudgetRef(budget),
        state: status.state + (status.paused?.reason ? ` (${status.paused.reason})` : ''),
        duration: status.duration,
        schedule: `${status.timeZone} at ${status.resetTime}`,
        nextResetAt: status.nextResetAt,
        lastReset: status.lastReset
          ? `${status.lastReset.at} ${status.lastReset.trigger}: ${status.lastReset.entityCount} entities, spend ${status.lastReset.spendTotal}, late ${status.lastReset.lateByMs} ms, missed ${status.lastReset.missedPeriods}`
          : null,
        resets: status.cycle,
        cacheInvalidationFailures: status.cacheInvalidationFailures,
        lastError: status.lastError,
      }),
    );
  });

program
  .command('reset <ref>')
  .description('force a reset now and print its result')
  .requiredOption('--reason <text>', 'why (recorded in the audit)')
  .option('--reanchor', 'start a whole new period now instead of keeping the calendar boundary')
  .option('--requested-by <who>', 'who asks (default: the current user)')
  .option('--request-id <id>', 'idempotency key: repeating it applies the reset once')
  .action(
    async (
      ref: string,
      opts: { reason: string; reanchor?: boolean; requestedBy?: string; requestId?: string },
    ) => {
      const budget = parseBudgetRef(ref);
      const result = await withClient((client) =>
        client.workflow.getHandle(budgetWorkflowId(budget)).executeUpdate(resetNowUpdate, {
          args: [
            {
              reason: opts.reason,
              reanchor: opts.reanchor ?? false,
              requestedBy: opts.requestedBy ?? userInfo().username,
              requestId: opts.requestId ?? randomUUID(),
            },
          ],
        }),
      );
      print(result, () =>
        result.outcome === 'reset'
          ? `reset ${displayBudgetRef(budget)}: ${result.entityCount} entities zeroed, spend ${result.spendTotal} recorded (reset ${result.resetId}); next reset ${result.nextResetAt}${result.cachesInvalidated ? '' : '; cache invalidation FAILED'}`
          : `${displayBudgetRef(budget)}: ${result.outcome}: ${result.detail}`,
      );
      if (result.outcome === 'failed') process.exitCode = 1;
    },
  );

program
  .command('pause <ref>')
  .description('stop scheduled resets until resumed')
  .option('--reason <text>', 'why (shown in status and the UI)')
  .action(async (ref: string, opts: { reason?: string }) => {
    const budget = parseBudgetRef(ref);
    const status = await withClient((client) =>
      client.workflow
        .getHandle(budgetWorkflowId(budget))
        .executeUpdate(pauseUpdate, { args: [{ reason: opts.reason }] }),
    );
    print(status, () => `${displayBudgetRef(budget)} is ${status.state}`);
  });

program
  .command('resume <ref>')
  .description('resume scheduled resets (one catch-up reset if a boundary passed while paused)')
  .action(async (ref: string) => {
    const budget = parseBudgetRef(ref);
    const status = await withClient((client) =>
      client.workflow.getHandle(budgetWorkflowId(budget)).executeUpdate(resumeUpdate),
    );
    print(
      status,
      () => `${displayBudgetRef(budget)} is ${status.state}; next reset ${status.nextResetAt ?? '-'}`,
    );
  });

program
  .command('list')
  .description('list budget workflows (a visibility query on their search attributes)')
  .option(
    '--due-within <duration>',
    'only budgets whose next reset is within this duration, e.g. 1h (at most 3650d)',
    durationMs(3_650 * DAY_MS),
  )
  .addOption(
    new Option('--state <state>', 'only budgets in this state').choices([
      'active',
      'paused',
      'invalid',
      'removed',
    ]),
  )
  .addOption(new Option('--kind <kind>', 'only budgets of this kind').choices([...BUDGET_KINDS]))
  .option('--limit <n>', 'at most this many (1 to 10000)', wholeNumber(10_000), 200)
  .action(async (opts: { dueWithin?: number; state?: string; kind?: string; limit: number }) => {
    const clauses = [BUDGET_WORKFLOW_TYPES_CLAUSE];
    clauses.push(opts.state === 'removed' ? `ExecutionStatus != 'Running'` : `ExecutionStatus = 'Running'`);
    if (opts.state && opts.state !== 'removed') clauses.push(`${BudgetStateKey.name} = '${opts.state}'`);
    if (opts.kind) clauses.push(`${BudgetKindKey.name} = '${opts.kind}'`);
    if (opts.dueWithin !== undefined) {
      clauses.push(`${NextResetAtKey.name} <= '${new Date(Date.now() + opts.dueWithin).toISOString()}'`);
    }
    const query = clauses.join(' AND ');
    const rows = await withClient(async (client) => {
      const found: Array<Record<string, unknown>> = [];
      for await (const execution of client.workflow.list({ query })) {
        const attrs = execution.typedSearchAttributes;
        const kind = attrs.get(BudgetKindKey);
        const id = attrs.get(BudgetIdKey);
        found.push({
          budget: kind && id !== undefined ? `${kind}:${id}` : execution.workflowId,
          state: attrs.get(BudgetStateKey) ?? null,
          nextResetAt: attrs.get(NextResetAtKey)?.toISOString() ?? null,
          lastResetAt: attrs.get(LastResetAtKey)?.toISOString() ?? null,
          resets: attrs.get(ResetCountKey) ?? 0,
          workflowId: execution.workflowId,
        });
        if (found.length >= opts.limit) break;
      }
      return found;
    });
    rows.sort((a, b) => String(a.nextResetAt ?? '~').localeCompare(String(b.nextResetAt ?? '~')));
    print({ query, budgets: rows }, () =>
      rows.length === 0
        ? `no budgets match (${query})`
        : formatTable(rows, ['budget', 'state', 'nextResetAt', 'lastResetAt', 'resets']),
    );
  });

program
  .command('history <ref>')
  .description('recent resets of a budget from the audit log, with the entities each changed')
  .option('--limit <n>', 'resets to show (1 to 1000)', wholeNumber(1_000), 10)
  .option(
    '--entities <n>',
    'entities to show per reset, largest spend first (1 to 100000)',
    wholeNumber(100_000),
    20,
  )
  .action(async (ref: string, opts: { limit: number; entities: number }) => {
    const budget = parseBudgetRef(ref);
    const entries = await withDatabase(loadConfig(), (db) =>
      resetHistory(db, budget, { limit: opts.limit, entityLimit: opts.entities }),
    );
    print(entries, () => {
      if (entries.length === 0) return `no resets recorded for ${displayBudgetRef(budget)}`;
      return entries
        .map((e) => {
          const head = `${e.periodEnd}  ${e.trigger}  ${e.entityCount} entities  spend ${e.spendTotal}  late ${e.lateByMs} ms  missed ${e.missedPeriods}${e.reason ? `  reason: ${displayText(e.reason, 200)}` : ''}${e.requestedBy ? ` (${displayText(e.requestedBy, 200)})` : ''}`;
          const table =
            e.entities.length > 0
              ? `\n${formatTable(e.entities, ['type', 'id', 'spendBefore', 'spendAfter']).replace(/^/gm, '    ')}`
              : '';
          return head + table;
        })
        .join('\n\n');
    });
  });

program
  .command('migrate')
  .description(
    'create or upgrade the budget_lifecycle schema (safe to run twice, or from two places at once)',
  )
  .action(async () => {
    const applied = await withDatabase(loadConfig(), (db) => migrate(db));
    print({ applied }, () => (applied.length ? `applied ${applied.join(', ')}` : 'schema is up to date'));
  });

program
  .command('search-attributes')
  .description('manage the custom search attributes budgets are found by')
  .command('register')
  .description('register BudgetKind, BudgetId, NextResetAt, LastResetAt, BudgetState and ResetCount')
  .action(async () => {
    const target = temporalTarget();
    const { connection } = await connectClient(target);
    try {
      const added = await registerSearchAttributes(connection, target.namespace);
      print({ added }, () =>
        added.length ? `registered ${added.join(', ')}` : 'all search attributes already registered',
      );
    } finally {
      await connection.close();
    }
  });

async function main(): Promise<void> {
  await program.parseAsync(process.argv);
}

main().catch((error: unknown) => {
  // Commander has already printed its own message (usage errors, --help).
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : EXIT.usage);
  const { message, code } = explain(error);
  console.error(`budgetctl: ${oneLine(message)}`);
  if (globals().verbose && error instanceof Error) console.error(error.stack);
  process.exit(code);
});
