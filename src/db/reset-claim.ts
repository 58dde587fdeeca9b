import type pg from 'pg';
import type { BudgetKind } from '../budget-ref.js';
import type { ResetRequest } from '../reset-types.js';
import { SCHEMA } from './migrate.js';

/**
 * Claims each request's period in the audit: one `reset_log` row per budget and boundary. The unique
 * (kind, id, period_end) is a second fence, and a forced reset's request id a third: a forced reset that keeps
 * the calendar leaves the schedule unchanged, so its retry is stopped here instead. Returns the new reset id of each budget id that was claimed (ids are
 * distinct within a batch); a budget missing from the map had its period claimed already.
 */
export async function claimPeriods(
  client: pg.ClientBase,
  kind: BudgetKind,
  requests: readonly ResetRequest[],
  /** When the claimed resets are due for the late-spend sweep, from the transaction's start (undefined: never). */
  lateSpendDelayMs?: number,
): Promise<Map<string, string>> {
  if (requests.length === 0) return new Map();
  const column = <T>(pick: (r: ResetRequest) => T) => requests.map(pick);
  const inserted = await client.query<{ id: string; budget_id: string }>(
    `INSERT INTO ${SCHEMA}.reset_log
       (budget_kind, budget_id, period_start, period_end, next_reset_at, late_by_ms, missed_periods, trigger,
        reason, requested_by, workflow_id, run_id, request_id, request_count, late_spend_due_at)
     SELECT $1, u.budget_id, u.period_start, u.period_end, u.next_reset_at, u.late_by_ms, u.missed_periods,
            u.trigger, u.reason, u.requested_by, u.workflow_id, u.run_id, u.request_id, u.request_count,
            -- Due for the worker's late-spend sweep (src/late-spend-sweeper.ts). A claimed period is always reset
            -- when its transaction commits, so this is written here, once, not by a second update of the row.
            now() + $15::bigint * interval '1 millisecond'
       FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::bigint[],
                   $7::int[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                   $14::int[])
            AS u(budget_id, period_start, period_end, next_reset_at, late_by_ms, missed_periods,
                 trigger, reason, requested_by, workflow_id, run_id, request_id, request_count)
     -- Either key: the period (reset_log_period_unique) or a forced reset's request (reset_log_request_unique).
     ON CONFLICT DO NOTHING
     RETURNING id, budget_id`,
    [
      kind,
      column((r) => r.id),
      column((r) => r.periodStart),
      column((r) => r.periodEnd),
      column((r) => r.nextResetAt),
      column((r) => Math.max(0, Math.round(r.lateByMs))),
      column((r) => r.missedPeriods),
      column((r) => r.trigger),
      column((r) => storableText(r.reason)),
      column((r) => storableText(r.requestedBy)),
      column((r) => storableText(r.workflowId)),
      column((r) => storableText(r.runId)),
      column((r) => (r.trigger === 'forced' ? storableText(r.requestId) : null)),
      column((r) => (r.trigger === 'forced' ? requestCount(r.requestCount) : null)),
      lateSpendDelayMs === undefined ? null : Math.trunc(lateSpendDelayMs),
    ],
  );
  return new Map(inserted.rows.map((row) => [row.budget_id, String(row.id)]));
}

/**
 * Free text as PostgreSQL can store it: NUL (U+0000) is the one character a `text` value cannot hold (it becomes
 * U+FFFD), and one NUL in a forced reset's reason used to fail that reset on every retry. Messages are validated where they arrive;
 * this is the last line, so nothing that slips past a validator can stop a budget.
 */
function storableText(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  // A message that skipped validation may carry a number or an object where text belongs: store it as JSON.
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  // Tested first: a herd passes four texts per reset through here, and almost none holds a NUL.
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

/** A forced reset's request count as the audit stores it: a whole number of at least one (one when absent). */
function requestCount(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 1
    ? Math.min(value, 2 ** 31 - 1)
    : 1;
}
