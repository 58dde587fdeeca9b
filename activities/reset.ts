import { Context } from '@temporalio/activity';
import type { BudgetRef } from '../src/budget-ref.js';
import { InvalidBudgetDataError } from '../src/errors.js';
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
      return settleSchedule(
        deps.db,
        { kind: args.kind, id: args.id },
        { now: args.now, knownDuration: args.knownDuration, schedule: deps.config.schedule },
      );
    },

    /** One fenced, audited reset transaction. */
    async resetBudget(request: PlannedResetRequest | ResetRequest): Promise<ResetResult> {
      // Cached once known; a failed lookup (database down) is not cached, so the activity's retry can succeed.
      tables ??= existingTables(deps.db).catch((error: unknown) => {
        tables = undefined;
        throw error;
      });
      const decided = await decide(request);
      const execution = Context.current().info.workflowExecution;
      const result = await resetBudgetTransaction(
        deps.db,
        { ...decided, workflowId: execution?.workflowId, runId: execution?.runId },
        {
          rollover: deps.config.rollover,
          defaultEndUserBudgetId: deps.config.defaultEndUserBudgetId,
        },
        await tables,
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
      const row = await loadBudgetRow(deps.db, ref);
      return { row: row ?? null, schedule: deps.config.schedule };
    },

    /** Release 0.1's workflows set a first boundary with this; kept until none of them run. */
    async setResetAt(args: BudgetRef & { expected: string | null; next: string }): Promise<string | null> {
      return inTransaction(deps.db, (client) => moveResetAt(client, args, args.expected, args.next));
    },
  };
}
