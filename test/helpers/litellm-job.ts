import type pg from 'pg';

/**
 * LiteLLM 1.108.14's reset job (`proxy/common_utils/reset_budget_job.py`, `repositories/unit_of_work.py`) as the
 * SQL it sends, on a real connection: pages of `RESET_BUDGET_JOB_BATCH_SIZE` (500) due rows, each page written in
 * one batch transaction, the next boundary computed from the wall clock when the sweep runs. Only the statement
 * pattern is reproduced (LiteLLM itself needs prisma-client-py, whose engines cannot be fetched here); the caches
 * are left out because they do not change what the rows hold.
 */
export const LITELLM_BATCH_SIZE = 500;

/**
 * `compute_budget_reset_at("1d")` for zone UTC at `now`: the next midnight. Computed from the wall clock, like
 * LiteLLM: a sweep that runs late skips the boundaries it missed instead of resetting them.
 */
export function litellmNextDay(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
}

/** Python's `math.ulp` for a positive finite double. */
function ulp(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  view.setBigUint64(0, view.getBigUint64(0) + 1n);
  return view.getFloat64(0) - Math.abs(x);
}

/** What one row's guarded UPDATE did in a sweep: whether it matched, and the spend it subtracted. */
export interface KeyResetWrite {
  readonly token: string;
  readonly matched: boolean;
  readonly decrement: number;
}

/** Runs `fn` again while PostgreSQL aborts it as a deadlock victim, like `_with_db_write_retry`. */
async function retryDeadlock<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01') throw error;
    }
  }
}

/**
 * `reset_budget_for_litellm_keys`: read a page of due keys (`find_many(take=500, where={expires null or future,
 * budget_reset_at < now, budget_duration not null})`), then one guarded `UPDATE` per row in one batch transaction
 * (`_KEY_SPEND_RESET_SQL`: subtract the spend it read, set the wall-clock boundary, only where `budget_reset_at`
 * still holds what it read), until a page comes back short or advanced nothing. `afterRead` runs between a page's
 * read and its write, where the races live. `clock` is the pod's clock (the wall clock unless given).
 */
export async function litellmKeySweep(
  client: pg.ClientBase,
  options: { afterRead?: (page: number) => Promise<void>; clock?: () => Date } = {},
): Promise<KeyResetWrite[]> {
  const clock = options.clock ?? (() => new Date());
  const writes: KeyResetWrite[] = [];
  for (let page = 0; page < 100; page++) {
    const now = clock();
    const { rows } = await client.query<{ token: string; spend: number; reset_at: string }>(
      `SELECT token, spend, to_char(budget_reset_at, 'YYYY-MM-DD"T"HH24:MI:SS.US') AS reset_at
         FROM "LiteLLM_VerificationToken"
        WHERE (expires IS NULL OR expires > ($1::timestamptz AT TIME ZONE 'UTC'))
          AND budget_reset_at < ($1::timestamptz AT TIME ZONE 'UTC') AND budget_duration IS NOT NULL
        LIMIT ${LITELLM_BATCH_SIZE}`,
      [now.toISOString()],
    );
    await options.afterRead?.(page);
    const next = litellmNextDay(now);
    const nextText = next.toISOString().slice(0, 23).replace('Z', '');
    const pageWrites = await retryDeadlock(async () => {
      const done: KeyResetWrite[] = [];
      await client.query('BEGIN');
      try {
        for (const row of rows) {
          const decrement = Number(row.spend);
          // `_queue_guarded_spend_reset`: a row with nothing to subtract goes through Prisma's update_many with
          // the same fence, setting only the boundary.
          const result =
            decrement === 0
              ? await client.query(
                  `UPDATE "LiteLLM_VerificationToken" SET budget_reset_at = $2::timestamp
                    WHERE token = $1 AND budget_reset_at = $3::timestamp`,
                  [row.token, nextText, row.reset_at],
                )
              : await client.query(
                  `UPDATE "LiteLLM_VerificationToken"
                      SET spend = CASE WHEN ABS(spend - $3::text::double precision) <= $5::text::double precision
                                  THEN 0 ELSE GREATEST(spend - $3::text::double precision, 0) END,
                          budget_reset_at = $2::timestamp, updated_at = (NOW() AT TIME ZONE 'UTC')
                    WHERE token = $1 AND budget_reset_at IS NOT DISTINCT FROM $4::timestamp`,
                  [row.token, nextText, String(decrement), row.reset_at, String(4 * ulp(decrement))],
                );
          done.push({ token: row.token, matched: result.rowCount === 1, decrement });
        }
        await client.query('COMMIT');
        return done;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
    writes.push(...pageWrites);
    // `_phase_is_drained`: a short page, or a full page that advanced nothing, ends the phase.
    if (rows.length < LITELLM_BATCH_SIZE || next <= clock()) break;
  }
  return writes;
}

/** One sweep of the tier cascade, read and not yet written (`_collect_budget_cascade`). */
export interface TierCascade {
  readonly budgetIds: readonly string[];
  readonly nextResetAt: Date;
}

/**
 * `_reset_expired_budget_cascade`, first half: the due tiers (`find_many(take=500, where={budget_duration not null,
 * budget_reset_at null or < now})`) and their wall-clock next boundary.
 */
export async function litellmReadDueTiers(client: pg.ClientBase): Promise<TierCascade> {
  const now = new Date();
  const { rows } = await client.query<{ budget_id: string }>(
    `SELECT budget_id FROM "LiteLLM_BudgetTable"
      WHERE budget_duration IS NOT NULL
        AND (budget_reset_at IS NULL OR budget_reset_at < ($1::timestamptz AT TIME ZONE 'UTC'))
      LIMIT ${LITELLM_BATCH_SIZE}`,
    [now.toISOString()],
  );
  return { budgetIds: rows.map((r) => r.budget_id), nextResetAt: litellmNextDay(now) };
}

/**
 * `_reset_expired_budget_cascade`, second half, without rollover: end users in committed pages of 500
 * (`spend = 0 where user_id in page and spend > 0`), then one batch zeroing every linked table by `budget_id`
 * (`queue_spend_zero`, no fence) and advancing each tier (`queue_window_advance`: `update_many(where={budget_id})`,
 * no fence either). Nothing here checks that the tier is still due: a second sweep that read it before the first
 * committed zeroes whatever was spent since.
 */
export async function litellmCommitTiers(client: pg.ClientBase, cascade: TierCascade): Promise<void> {
  const ids = [...cascade.budgetIds];
  if (ids.length === 0) return;
  for (let cursor = ''; ;) {
    const { rows } = await client.query<{ user_id: string }>(
      `SELECT user_id FROM "LiteLLM_EndUserTable"
        WHERE budget_id = ANY($1::text[]) AND spend > 0 AND user_id > $2 ORDER BY user_id LIMIT ${LITELLM_BATCH_SIZE}`,
      [ids, cursor],
    );
    if (rows.length === 0) break;
    await client.query(
      `UPDATE "LiteLLM_EndUserTable" SET spend = 0 WHERE user_id = ANY($1::text[]) AND spend > 0`,
      [rows.map((r) => r.user_id)],
    );
    if (rows.length < LITELLM_BATCH_SIZE) break;
    cursor = rows.at(-1)?.user_id ?? '';
  }
  await retryDeadlock(async () => {
    await client.query('BEGIN');
    try {
      await client.query(`UPDATE "LiteLLM_TeamMembership" SET spend = 0 WHERE budget_id = ANY($1::text[])`, [
        ids,
      ]);
      await client.query(
        `UPDATE "LiteLLM_VerificationToken" SET spend = 0
          WHERE budget_id = ANY($1::text[]) AND budget_duration IS NULL AND spend > 0`,
        [ids],
      );
      for (const table of [
        'LiteLLM_OrganizationTable',
        'LiteLLM_TagTable',
        'LiteLLM_ModelAccessGroupBudgetTable',
        'LiteLLM_ProjectTable',
      ]) {
        await client.query(
          `UPDATE "${table}" SET spend = 0 WHERE budget_id = ANY($1::text[]) AND spend > 0`,
          [ids],
        );
      }
      for (const id of ids) {
        await client.query(
          `UPDATE "LiteLLM_BudgetTable" SET budget_reset_at = ($2::timestamptz AT TIME ZONE 'UTC') WHERE budget_id = $1`,
          [id, cascade.nextResetAt.toISOString()],
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  });
}

/**
 * LiteLLM's spend writer: `spend = spend + x` on a key; returns the key's `budget_reset_at` the increment landed
 * under (null for a key without a schedule of its own). An increment chosen as a deadlock victim (it waits behind
 * two resetters' batch transactions) was rolled back, and LiteLLM sends it again (`db_write_failure_is_requeue_safe`
 * in its spend writer), so it is retried here until it lands.
 */
export async function litellmAddKeySpend(
  db: pg.Pool | pg.ClientBase,
  token: string,
  amount: number,
): Promise<string | null> {
  const { rows } = await retryDeadlock(() =>
    db.query<{ at: Date | null }>(
      `UPDATE "LiteLLM_VerificationToken" SET spend = spend + $2 WHERE token = $1
       RETURNING budget_reset_at AT TIME ZONE 'UTC' AS at`,
      [token, amount],
    ),
  );
  const [row] = rows;
  if (!row) throw new Error(`no key ${token}`);
  return row.at?.toISOString() ?? null;
}
