import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, vi } from 'vitest';
import type { ActivityDeps } from '../../activities/index.js';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { DEFAULT_SCHEDULE, type ScheduleOptions } from '../../src/schedule.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { registerSearchAttributes } from '../../src/temporal/register-search-attributes.js';
import { createBudgetWorker } from '../../src/worker.js';
import type { CarriedState } from '../../workflows/budget.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { services, uniqueName } from './services.js';
import { LIMITS } from './limits.js';
import { bundleWorkflows, createTimeSkippingEnv } from './temporal.js';

const EventType = proto.temporal.api.enums.v1.EventType;

/**
 * Everything a workflow test file needs, all real: its own time-skipping server, a database cloned from LiteLLM's
 * schema, Redis under a namespace of its own, and a worker with the real activities.
 */
export class BudgetTestEnv {
  private constructor(
    readonly env: TestWorkflowEnvironment,
    readonly db: TestDatabase,
    readonly redis: Redis,
    readonly namespace: string,
    readonly bundle: WorkflowBundleWithSourceMap,
  ) {}

  static async create(): Promise<BudgetTestEnv> {
    const [env, db, bundle] = await Promise.all([
      createTimeSkippingEnv(),
      createTestDatabase(),
      bundleWorkflows('workflows/index.ts'),
    ]);
    await registerSearchAttributes(env.connection, 'default');
    return new BudgetTestEnv(env, db, new Redis(services().redisUrl), uniqueName('ns'), bundle);
  }

  async teardown(): Promise<void> {
    this.redis.disconnect();
    await this.env.teardown();
    await this.db.drop();
  }

  deps(
    overrides: Partial<ActivityDeps['config']> = {},
    schedule: ScheduleOptions = DEFAULT_SCHEDULE,
  ): ActivityDeps {
    return {
      db: this.db.pool,
      redis: this.redis,
      config: { schedule, rollover: false, redisNamespace: this.namespace, ...overrides },
    };
  }

  /** A worker on a fresh task queue; run the test body inside `worker.runUntil`. */
  async worker(
    options: {
      config?: Partial<ActivityDeps['config']>;
      schedule?: ScheduleOptions;
      taskQueue?: string;
      /** Another Redis client for the activities (e.g. one that cannot connect). */
      redis?: Redis;
      /** Another database for the activities (a test that needs one to itself). */
      db?: pg.Pool;
    } = {},
  ): Promise<{ worker: Worker; taskQueue: string }> {
    const taskQueue = options.taskQueue ?? uniqueName('tq');
    const deps = {
      ...this.deps(options.config, options.schedule),
      ...(options.redis ? { redis: options.redis } : {}),
      ...(options.db ? { db: options.db } : {}),
    };
    const worker = await createBudgetWorker({
      connection: this.env.nativeConnection,
      taskQueue,
      deps: { ...deps, temporal: { client: this.env.client, taskQueue } },
      workflowBundle: this.bundle,
    });
    this.settleBeforeShutdown(worker);
    return { worker, taskQueue };
  }

  /**
   * Makes `worker.runUntil` end a test body on a quiet server: before the worker stops, it waits until no open
   * workflow has a workflow task or an activity outstanding (`terminateAll` then ends them after the test). The
   * Java test server holds a time-skipping lock for each outstanding task and releases it only when
   * the task completes, fails or times out, never on termination: a workflow terminated mid-task would freeze
   * skipped time for every later test on this server. On a busy machine a test body often ends with such a task
   * still in flight (the invalidation after a reset, the workflow task after a query's answer).
   */
  private settleBeforeShutdown(worker: Worker): void {
    const runUntil = worker.runUntil.bind(worker);
    worker.runUntil = async <R>(fnOrPromise: Promise<R> | (() => Promise<R>)): Promise<R> =>
      runUntil(async () => {
        let result: R;
        try {
          result = await (typeof fnOrPromise === 'function' ? fnOrPromise() : fnOrPromise);
        } catch (error) {
          // A failing test settles too (as far as it can), so it does not freeze time for the tests after it.
          await this.waitUntilQuiet().catch(() => undefined);
          throw error;
        }
        await this.waitUntilQuiet();
        return result;
      });
  }

  /** Waits until no open workflow on the server has a workflow task or activity outstanding. */
  async waitUntilQuiet(): Promise<void> {
    await vi.waitFor(
      async () => {
        for (const workflowId of await this.openWorkflowIds()) {
          const handle = this.env.client.workflow.getHandle(workflowId);
          const description = await handle.describe();
          if (description.status.name !== 'RUNNING') continue;
          const activities = description.raw.pendingActivities?.length ?? 0;
          if (activities > 0) throw new Error(`${workflowId} still has ${activities} activities in flight`);
          if (hasOutstandingWorkflowTask(await handle.fetchHistory())) {
            throw new Error(`${workflowId} still has a workflow task in flight`);
          }
        }
      },
      { timeout: LIMITS.workflowStep, interval: 50 },
    );
  }

  async start(
    ref: BudgetRef,
    taskQueue: string,
    options: { maxHistoryEvents?: number; carried?: CarriedState } = {},
  ): Promise<WorkflowHandle> {
    return this.env.client.workflow.start(BUDGET_WORKFLOW_TYPE, {
      taskQueue,
      workflowId: budgetWorkflowId(ref),
      args: [{ kind: ref.kind, id: ref.id, ...options }],
    });
  }

  /**
   * Terminates every open workflow on the server: those the test started, and those the supervisor started for it.
   * Call after each test: a workflow whose worker is gone would otherwise hold skipped time still when its next
   * timer fires, in whichever later test skips time past it.
   */
  async terminateAll(): Promise<void> {
    for (const workflowId of await this.openWorkflowIds()) {
      await this.env.client.workflow
        .getHandle(workflowId)
        .terminate('test finished')
        .catch(() => undefined);
    }
  }

  /** The ids of every workflow open on this file's server (it serves this file's tests only). */
  private async openWorkflowIds(): Promise<string[]> {
    const ids: string[] = [];
    let nextPageToken: Uint8Array | undefined;
    do {
      const page = await this.env.client.workflowService.listOpenWorkflowExecutions({
        namespace: this.env.client.options.namespace,
        maximumPageSize: 1000,
        nextPageToken,
      });
      for (const execution of page.executions ?? []) {
        if (execution.execution?.workflowId) ids.push(execution.execution.workflowId);
      }
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken);
    return ids;
  }

  handle(ref: BudgetRef): WorkflowHandle {
    return this.env.client.workflow.getHandle(budgetWorkflowId(ref));
  }

  /**
   * The budget's status query, with a deadline of its own. On the Java test server a query that reaches a run at
   * the moment it continues as new can stay unanswered (buffered behind that run's last workflow task, then sent
   * to the closed run); without a deadline it would hang the test, with one `waitForStatus` simply asks again.
   */
  async status(ref: BudgetRef): Promise<BudgetStatus> {
    return this.env.client.withDeadline(Date.now() + LIMITS.query, () => this.handle(ref).query(statusQuery));
  }

  /** Polls the status query (real time; workflow time does not move) until `predicate` holds. */
  async waitForStatus(
    ref: BudgetRef,
    predicate: (s: BudgetStatus) => boolean,
    timeout = LIMITS.workflowStep,
  ): Promise<BudgetStatus> {
    return vi.waitFor(
      async () => {
        const s = await this.status(ref);
        if (!predicate(s)) throw new Error(`status not reached yet: ${JSON.stringify(s)}`);
        return s;
      },
      { timeout, interval: 50 },
    );
  }

  /** Server (workflow) time now. */
  async now(): Promise<Date> {
    return new Date(await this.env.currentTimeMs());
  }

  /**
   * Skips server time to the next instant `offsetMs` into a UTC period of `periodMs` and returns it
   * (`skipToPhase(HOUR, HOUR / 2)`: the next HH:30:00). The server starts at the wall-clock time, so a test
   * that anchors boundaries on "now" would otherwise start wherever CI happens to run: a second before the
   * hour its first boundary is, that boundary passes (in real time) before the workflow has started. Call it
   * before the test starts a workflow: skipped time fires the timers of every open workflow.
   */
  async skipToPhase(periodMs: number, offsetMs: number): Promise<Date> {
    const now = await this.env.currentTimeMs();
    let target = Math.floor(now / periodMs) * periodMs + offsetMs;
    if (target <= now) target += periodMs;
    await this.env.sleep(target - now);
    return this.now();
  }

  /** Skips server time until just past `instant`. */
  async sleepUntil(instant: Date | string, slackMs = 1_000): Promise<void> {
    const target = new Date(instant).getTime() + slackMs;
    const now = await this.env.currentTimeMs();
    if (target > now) await this.env.sleep(target - now);
  }

  /** The budget's audited resets, oldest first (from the file's database unless given another). */
  async resetLog(ref: BudgetRef, db: pg.Pool = this.db.pool) {
    const { rows } = await db.query<{
      id: string;
      period_end: Date;
      next_reset_at: Date;
      trigger: string;
      late_by_ms: string;
      missed_periods: number;
      entity_count: number;
      spend_total: number;
      reason: string | null;
      requested_by: string | null;
      workflow_id: string | null;
      run_id: string | null;
    }>(
      `SELECT id, period_end, next_reset_at, trigger, late_by_ms, missed_periods, entity_count, spend_total, reason,
              requested_by, workflow_id, run_id
         FROM budget_lifecycle.reset_log WHERE budget_kind = $1 AND budget_id = $2 ORDER BY period_end`,
      [ref.kind, ref.id],
    );
    return rows;
  }
}

/**
 * Registers a workflow test file's hooks: one environment for the file, every open workflow terminated
 * after it, everything torn down at the end. `receive` gets the environment once it exists.
 */
export function useBudgetTestEnv(receive: (env: BudgetTestEnv) => void): void {
  let env: BudgetTestEnv | undefined;
  beforeAll(async () => {
    env = await BudgetTestEnv.create();
    receive(env);
  });
  afterEach(async () => {
    await env?.terminateAll();
  });
  afterAll(async () => {
    await env?.teardown();
  });
}

/** Whether the history's last workflow task event leaves a task to run (scheduled, started, or to be retried). */
function hasOutstandingWorkflowTask(history: proto.temporal.api.history.v1.IHistory): boolean {
  const events = history.events ?? [];
  for (let i = events.length - 1; i >= 0; i -= 1) {
    switch (events[i]!.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
      case EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
      case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: // retried
      case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: // retried
        return true;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        return false;
    }
  }
  return false;
}
