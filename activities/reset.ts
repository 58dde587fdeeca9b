import { Context } from '@temporalio/activity';
import { displayBudgetRef, type BudgetRef } from '../src/budget-ref.js';
import {
  existingTables,
  loadBudgetRow,
  resetBudgetTransaction,
  setResetAt,
} from '../src/db/reset-transaction.js';
import { classifyDatabaseError } from '../src/errors.js';
import type { BudgetRow, ResetRequest, ResetResult } from '../src/reset-types.js';
import type { ScheduleOptions } from '../src/schedule.js';
import type { ActivityDeps } from './deps.js';

export interface LoadedBudget {
  /** The row, or null when it no longer exists. */
  readonly row: BudgetRow | null;
  /** The worker's reset time zone and time of day (configuration, recorded in history with the row). */
  readonly schedule: ScheduleOptions;
}

export function createResetActivities(deps: ActivityDeps) {
  let tables: Promise<Set<string>> | undefined;
  return {
    /** Reads a budget's schedule row. */
    async loadBudget(ref: BudgetRef): Promise<LoadedBudget> {
      const row = await permanentErrorsFail(ref, () => loadBudgetRow(deps.db, ref));
      return { row: row ?? null, schedule: deps.config.schedule };
    },

    /**
     * Moves `budget_reset_at` from `expected` (null: never scheduled) to `next` without resetting anything;
     * fenced, so a concurrent change wins. Returns the value the row holds afterwards.
     */
    async setResetAt(args: BudgetRef & { expected: string | null; next: string }): Promise<string | null> {
      return permanentErrorsFail(args, () => setResetAt(deps.db, args, args.expected, args.next));
    },

    /** One fenced, audited reset transaction. */
    async resetBudget(request: ResetRequest): Promise<ResetResult> {
      // Cached once known; a failed lookup (database down) is not cached, so the activity's retry can succeed.
      tables ??= existingTables(deps.db).catch((error: unknown) => {
        tables = undefined;
        throw error;
      });
      const execution = Context.current().info.workflowExecution;
      const known = await tables;
      const result = await permanentErrorsFail(request, () =>
        resetBudgetTransaction(
          deps.db,
          { ...request, workflowId: execution?.workflowId, runId: execution?.runId },
          {
            rollover: deps.config.rollover,
            defaultEndUserBudgetId: deps.config.defaultEndUserBudgetId,
          },
          known,
        ),
      );
      deps.observer?.onReset?.(request, result);
      Context.current().log.info('resetBudget finished', {
        budgetKind: request.kind,
        budgetId: request.id,
        outcome: result.outcome,
        ...(result.outcome === 'reset' ? { entityCount: result.entityCount, resetId: result.resetId } : {}),
      });
      return result;
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
