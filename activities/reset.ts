import { Context } from '@temporalio/activity';
import { displayBudgetRef, type BudgetRef } from '../src/budget-ref.js';
import { classifyDatabaseError, InvalidBudgetDataError } from '../src/errors.js';
import {
  existingTables,
  inTransaction,
  loadBudgetRow,
  moveResetAt,
  resetBudgetTransaction,
} from '../src/db/reset-transaction.js';
import { settleSchedule, type ScheduleState } from '../src/db/schedule-row.js';
import { planReset } from '../src/reset-plan.js';
import type { BudgetRow, PlannedResetRequest, ResetRequest, ResetResult } from '../src/reset-types.js';
import { parseDuration, type ScheduleOptions } from '../src/schedule.js';
import type { ActivityDeps } from './deps.js';

export interface LoadedBudget {
  /** The row, or null when it no longer exists. */
  readonly row: BudgetRow | null;
  /** The worker's reset time zone and time of day (configuration, recorded in history with the row). */
  readonly schedule: ScheduleOptions;
}

export function createResetActivities(deps: ActivityDeps) {
  let tables: Promise<Set<string>> | undefined;

  /** Turns a workflow's request into a decided period with the schedule module (outside workflow code). */
  const decide = async (request: PlannedResetRequest | ResetRequest): Promise<ResetRequest> => {
    if (!('now' in request)) return request;
    const row = await loadBudgetRow(deps.db, request);
    // A missing row is reported by the transaction itself (BudgetNotFoundError); plan with any duration.
    if (!row?.duration) return planReset(request, parseDuration('1d'), deps.config.schedule);
    try {
      return planReset(request, parseDuration(row.duration), deps.config.schedule);
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

    /** One fenced, audited reset transaction. */
    async resetBudget(request: PlannedResetRequest | ResetRequest): Promise<ResetResult> {
      // Cached once known; a failed lookup (database down) is not cached, so the activity's retry can succeed.
      tables ??= existingTables(deps.db).catch((error: unknown) => {
        tables = undefined;
        throw error;
      });
      const known = await tables;
      const execution = Context.current().info.workflowExecution;
      const decided = await permanentErrorsFail(request, () => decide(request));
      const result = await permanentErrorsFail(request, () =>
        resetBudgetTransaction(
          deps.db,
          { ...decided, workflowId: execution?.workflowId, runId: execution?.runId },
          {
            rollover: deps.config.rollover,
            defaultEndUserBudgetId: deps.config.defaultEndUserBudgetId,
          },
          known,
        ),
      );
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
