import type pg from 'pg';
import type { BudgetRef } from '../budget-ref.js';
import { firstBoundary } from '../reset-plan.js';
import { parseDuration, type BudgetDuration, type ScheduleOptions } from '../schedule.js';
import { rememberOwnSchedule } from './budget-sync.js';
import { inTransaction, loadBudgetRow, moveResetAt } from './reset-transaction.js';

/** What a budget's row says about its schedule, once the workflow has (re)read it. */
export type ScheduleState =
  | {
      readonly outcome: 'ended';
      readonly reason: 'row_deleted' | 'duration_removed' | 'key_expired';
      readonly detail: string;
    }
  | { readonly outcome: 'invalid'; readonly duration: string; readonly problem: string }
  | {
      readonly outcome: 'scheduled';
      readonly duration: string;
      readonly resetAt: string;
      readonly timeZone: string;
      readonly resetTime: string;
    };

/**
 * Reads a budget's row and settles its schedule in one transaction, with the schedule module (never in workflow
 * code): a row never scheduled gets its first boundary and nothing is zeroed; a duration that changed from
 * `knownDuration` (the last valid one the workflow had) takes effect at once, the next boundary coming from the
 * new duration; otherwise the stored boundary stands. `now` is workflow time.
 */
export async function settleSchedule(
  pool: pg.Pool,
  ref: BudgetRef,
  args: { now: string; knownDuration: string | null; schedule: ScheduleOptions },
): Promise<ScheduleState> {
  return inTransaction(pool, async (client) => {
    const row = await loadBudgetRow(client, ref, { forUpdate: true });
    if (!row)
      return { outcome: 'ended', reason: 'row_deleted', detail: `the ${ref.kind} row no longer exists` };
    if (row.duration === null) {
      return {
        outcome: 'ended',
        reason: 'duration_removed',
        detail: `the ${ref.kind} has no budget_duration any more`,
      };
    }
    if (row.expires !== null && Date.parse(row.expires) <= Date.parse(args.now)) {
      return { outcome: 'ended', reason: 'key_expired', detail: 'the key is past its expires time' };
    }
    let duration: BudgetDuration;
    try {
      duration = parseDuration(row.duration);
    } catch (error) {
      await rememberOwnSchedule(client, ref);
      return { outcome: 'invalid', duration: row.duration, problem: (error as Error).message };
    }
    let resetAt = row.resetAt;
    if (resetAt === null || (args.knownDuration !== null && args.knownDuration !== row.duration)) {
      const next = firstBoundary(duration, args.now, args.schedule);
      resetAt = next === resetAt ? resetAt : await moveResetAt(client, ref, resetAt, next);
    }
    await rememberOwnSchedule(client, ref);
    return {
      outcome: 'scheduled',
      duration: row.duration,
      resetAt: resetAt ?? '',
      timeZone: args.schedule.timeZone,
      resetTime: args.schedule.resetTime,
    };
  });
}
