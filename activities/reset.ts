import { Context } from '@temporalio/activity';
import { displayBudgetRef, type BudgetRef } from '../src/budget-ref.js';
import { classifyDatabaseError, InvalidBudgetDataError } from '../src/errors.js';
import { invalidateResetCaches, readWindowCounter } from '../src/cache/invalidation.js';
import {
  existingTables,
  findCommittedReset,
  inTransaction,
  loadBudgetRow,
  moveResetAt,
} from '../src/db/reset-transaction.js';
import { ResetBatcher } from '../src/db/reset-batcher.js';
import { Coalescer } from '../src/coalescer.js';
import { warmPool } from '../src/db/pool.js';
import { settleSchedule, type ScheduleState } from '../src/db/schedule-row.js';
import { ResetArming } from '../src/reset-arming.js';
import { planReset } from '../src/reset-plan.js';
import type { BudgetRow, PlannedResetRequest, ResetRequest, ResetResult } from '../src/reset-types.js';
import { parseDuration, type ScheduleOptions } from '../src/schedule.js';
import type { ActivityDeps } from './deps.js';

/** Armed resets whose caches are invalidated in one pass at most. */
const INVALIDATION_BATCH = 500;
/**
 * Connections opened this long before a boundary with armed resets, and how many at most: the batcher's
 * transactions (two per kind) and the invalidations in flight.
 */
const PREPARE_LEAD_MS = 2_000;
const BOUNDARY_CONNECTIONS = 8;
/**
 * Budgets with a shorter period are not armed: their workflow, which collects an armed reset up to 25 s after its
 * boundary, would sleep past the next boundaries. They reset in their own workflow task at each boundary, as
 * before arming; a herd is a calendar herd (hours, days, months).
 */
const MIN_ARMED_PERIOD_MS = 60_000;

export interface LoadedBudget {
  /** The row, or null when it no longer exists. */
  readonly row: BudgetRow | null;
  /** The worker's reset time zone and time of day (configuration, recorded in history with the row). */
  readonly schedule: ScheduleOptions;
}

export function createResetActivities(deps: ActivityDeps) {
  let tables: Promise<Set<string>> | undefined;
  // Cached once known; a failed lookup (database down) is not cached, so the activity's retry can succeed.
  const knownTables = (): Promise<Set<string>> =>
    (tables ??= existingTables(deps.db).catch((error: unknown) => {
      tables = undefined;
      throw error;
    }));
  const redis = deps.redis;
  const batcher = new ResetBatcher(deps.db, async () => ({
    reset: {
      rollover: deps.config.rollover,
      defaultEndUserBudgetId: deps.config.defaultEndUserBudgetId,
      // The worker's sweeper checks each reset for late spend this long after it (src/late-spend-sweeper.ts).
      lateSpendDelayMs: deps.config.lateSpendDelayMs,
      // An unreadable counter carries nothing, as in LiteLLM (`_window_carried_spend`); it must not block the reset.
      readWindowCounter: redis
        ? (key) => readWindowCounter(redis, deps.config.redisNamespace, key).catch(() => null)
        : undefined,
    },
    tables: await knownTables(),
  }));
  // Armed resets of a herd commit together; their invalidations go together too (a query and a Redis pipeline per
  // page of entities instead of per reset). A failed batch leaves each workflow to invalidate its own reset.
  const invalidations = redis
    ? new Coalescer<string, true>(
        async (resetIds) => {
          await invalidateResetCaches(
            deps.db,
            redis,
            deps.config.redisNamespace,
            resetIds,
            deps.config.redisTtlSeconds,
          );
          return resetIds.map(() => ({ value: true as const }));
        },
        { maxBatch: INVALIDATION_BATCH, maxInFlight: 2 },
      )
    : undefined;
  const arming = new ResetArming({
    prepare: () => warmPool(deps.db, BOUNDARY_CONNECTIONS),
    prepareLeadMs: PREPARE_LEAD_MS,
  });
  const armKey = (r: PlannedResetRequest) => `${r.kind}/${r.id}@${new Date(r.expectedResetAt).toISOString()}`;

  /**
   * One reset through the batcher; a fence that finds our own committed reset (the same period, or the same
   * forced request) returns that reset, so the workflow goes on to invalidate its caches.
   */
  const reset = async (decided: ResetRequest): Promise<ResetResult> => {
    const result = await permanentErrorsFail(decided, () => batcher.reset(decided));
    return result.outcome !== 'already_reset'
      ? result
      : ((await findCommittedReset(deps.db, decided)) ?? result);
  };

  /** Turns a workflow's request into a decided period with the schedule module (outside workflow code). */
  const decide = (request: PlannedResetRequest | ResetRequest): ResetRequest => {
    if (!('now' in request)) return request;
    try {
      return planReset(request, parseDuration(request.duration), deps.config.schedule);
    } catch (error) {
      throw new InvalidBudgetDataError((error as Error).message, { cause: error });
    }
  };

  return {
    /**
     * Reads a budget's row and settles its schedule: first boundary, a changed duration, or why it ended or is
     * invalid. `now` is workflow time.
     */
    async settleSchedule(
      args: BudgetRef & { now: string; knownDuration: string | null },
    ): Promise<ScheduleState> {
      const ref = { kind: args.kind, id: args.id };
      return permanentErrorsFail(ref, () =>
        settleSchedule(deps.db, ref, {
          now: args.now,
          knownDuration: args.knownDuration,
          schedule: deps.config.schedule,
        }),
      );
    },

    /**
     * Arms a scheduled reset: this worker runs it at `at` (its boundary) and invalidates the caches, so a herd of
     * budgets due together commits at the boundary instead of as Temporal dispatches their workflow tasks.
     */
    async armReset(request: PlannedResetRequest & { at: string }): Promise<boolean> {
      const execution = Context.current().info.workflowExecution;
      const log = Context.current().log;
      // Decided now, not at the boundary: the period depends only on the boundary, and the calendar arithmetic of
      // thousands of resets would otherwise run in the seconds they should commit in. A budget whose period cannot
      // be decided is not armed: its workflow runs the reset when it wakes and reports why it failed.
      let decided: ResetRequest;
      try {
        decided = decide({ ...request, now: request.at });
      } catch {
        return false;
      }
      if (Date.parse(decided.nextResetAt) - Date.parse(decided.periodEnd) < MIN_ARMED_PERIOD_MS) return false;
      return arming.arm(armKey(request), Date.parse(request.at), Date.parse(request.now), async () => {
        const result = await reset({
          ...decided,
          workflowId: execution?.workflowId,
          runId: execution?.runId,
        });
        deps.observer?.onReset?.(decided, result);
        let cachesInvalidated = false;
        if (result.outcome === 'reset' && invalidations) {
          cachesInvalidated = await invalidations.run(result.resetId).then(
            () => true,
            (error: unknown) => {
              log.warn('armed reset: cache invalidation failed; the workflow retries it', {
                error: String(error),
              });
              return false;
            },
          );
        }
        return { result, cachesInvalidated };
      });
    },

    /** Forgets an armed reset that has not run (the budget was paused); true if it had already run. */
    async disarmReset(request: PlannedResetRequest): Promise<boolean> {
      return arming.collect(armKey(request)) !== undefined;
    },

    /** One fenced, audited reset transaction (or the outcome of the reset armed for this boundary). */
    async resetBudget(request: PlannedResetRequest | ResetRequest): Promise<ResetResult> {
      const execution = Context.current().info.workflowExecution;
      const armed = 'now' in request && !request.force ? arming.collect(armKey(request)) : undefined;
      if (armed) {
        const { result, cachesInvalidated } = await armed;
        return result.outcome === 'reset' ? { ...result, cachesInvalidated } : result;
      }
      const decided = decide(request);
      const result = await reset({ ...decided, workflowId: execution?.workflowId, runId: execution?.runId });
      deps.observer?.onReset?.(decided, result);
      Context.current().log.info('resetBudget finished', {
        budgetKind: request.kind,
        budgetId: request.id,
        outcome: result.outcome,
        ...(result.outcome === 'reset' ? { entityCount: result.entityCount, resetId: result.resetId } : {}),
      });
      return result;
    },

    /** Release 0.1's workflows read their row with this; kept until none of them run (see the README). */
    async loadBudget(ref: BudgetRef): Promise<LoadedBudget> {
      const row = await permanentErrorsFail(ref, () => loadBudgetRow(deps.db, ref));
      return { row: row ?? null, schedule: deps.config.schedule };
    },

    /** Release 0.1's workflows set a first boundary with this; kept until none of them run. */
    async setResetAt(args: BudgetRef & { expected: string | null; next: string }): Promise<string | null> {
      return permanentErrorsFail(args, () =>
        inTransaction(deps.db, (client) => moveResetAt(client, args, args.expected, args.next)),
      );
    },
  };
}

/** Runs `work`; a PostgreSQL error no retry can fix becomes non-retryable (see `classifyDatabaseError`). */
async function permanentErrorsFail<T>(ref: BudgetRef, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw classifyDatabaseError(error, displayBudgetRef(ref));
  }
}
