import type { PlannedResetRequest, ResetRequest, ResetTrigger } from './reset-types.js';
import { addPeriod, catchUp, nextBoundary, type BudgetDuration, type ScheduleOptions } from './schedule.js';

/** A scheduled reset that commits later than this after its boundary is recorded as a catch-up. */
export const LATE_GRACE_MS = 60_000;

/**
 * Decides the period a reset closes and the boundary it opens, from the budget's duration and the instant the
 * workflow decided to reset. Scheduled: the latest boundary that has passed (missed ones are counted, not reset
 * one by one), the next from the calendar. Forced: the period ends now; the next boundary stays on the calendar,
 * or starts a full period now with `reanchor`.
 */
export function planReset(
  request: PlannedResetRequest,
  duration: BudgetDuration,
  schedule: ScheduleOptions,
): ResetRequest {
  const now = new Date(request.now);
  const base = {
    kind: request.kind,
    id: request.id,
    expectedResetAt: request.expectedResetAt,
    periodStart: request.periodStart,
  };
  if (request.force) {
    return {
      ...base,
      periodEnd: now.toISOString(),
      nextResetAt: request.force.reanchor
        ? addPeriod(duration, now, schedule).toISOString()
        : request.expectedResetAt,
      trigger: 'forced',
      lateByMs: 0,
      missedPeriods: 0,
      reason: request.force.reason,
      requestedBy: request.force.requestedBy,
      requestId: request.force.requestId,
      requestCount: request.force.requestCount,
    };
  }
  const due = new Date(request.expectedResetAt);
  const { latest, missedPeriods, next } = catchUp(duration, due, now, schedule);
  const lateByMs = Math.max(0, now.getTime() - due.getTime());
  return {
    ...base,
    periodEnd: latest.toISOString(),
    nextResetAt: next.toISOString(),
    trigger: request.catchUp || missedPeriods > 0 ? 'catch_up' : 'schedule',
    lateByMs,
    missedPeriods,
    dueAt: request.expectedResetAt,
  };
}

/**
 * The lateness and trigger recorded when the reset commits: a scheduled reset is as late as the later of the
 * workflow's wake and the commit itself (a database outage delays the commit, not the wake), and one later than
 * {@link LATE_GRACE_MS} is a catch-up.
 */
export function lateAtCommit(
  request: ResetRequest,
  committingAt: number,
): { lateByMs: number; trigger: ResetTrigger } {
  if (request.dueAt === undefined || request.trigger === 'forced') {
    return { lateByMs: Math.max(0, Math.round(request.lateByMs)), trigger: request.trigger };
  }
  const lateByMs = Math.round(Math.max(request.lateByMs, committingAt - Date.parse(request.dueAt), 0));
  return { lateByMs, trigger: lateByMs > LATE_GRACE_MS ? 'catch_up' : request.trigger };
}

/** The first boundary of a budget that has none yet, or the next one after its duration changed. */
export function firstBoundary(duration: BudgetDuration, now: string, schedule: ScheduleOptions): string {
  return nextBoundary(duration, new Date(now), schedule).toISOString();
}
