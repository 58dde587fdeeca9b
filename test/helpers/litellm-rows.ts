import type pg from 'pg';

/**
 * Inserts rows into LiteLLM's real tables with only the columns a budget test cares about; LiteLLM's NOT NULL
 * columns without defaults get fixed test values. Timestamps are ISO instants, stored as UTC like Prisma does.
 */
type Db = pg.Pool | pg.ClientBase;

/**
 * A `budget_duration` for real-time tests that put a boundary seconds from now and expect that one reset: LiteLLM's
 * `2d` steps to the boundary's own midnight plus two days, so the next boundary is over a day later at any time of
 * day. (`1h` steps to the next full hour: from a boundary at 10:59:50, ten seconds later, within the test.)
 */
export const ONE_RESET_DURATION = '2d';

export async function insertBudget(
  db: Db,
  row: { id: string; maxBudget?: number | null; duration?: string | null; resetAt?: string | null },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     VALUES ($1, $2, $3, $4::timestamptz AT TIME ZONE 'UTC', 'test', 'test')`,
    [row.id, row.maxBudget ?? null, row.duration ?? null, row.resetAt ?? null],
  );
}

export async function insertKey(
  db: Db,
  row: {
    token: string;
    spend?: number;
    budgetId?: string | null;
    duration?: string | null;
    resetAt?: string | null;
    maxBudget?: number | null;
    expires?: string | null;
  },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_id, budget_duration, budget_reset_at, max_budget, expires)
     VALUES ($1, $2, $3, $4, $5::timestamptz AT TIME ZONE 'UTC', $6, $7::timestamptz AT TIME ZONE 'UTC')`,
    [
      row.token,
      row.spend ?? 0,
      row.budgetId ?? null,
      row.duration ?? null,
      row.resetAt ?? null,
      row.maxBudget ?? null,
      row.expires ?? null,
    ],
  );
}

/** A user or team row with an optional schedule of its own (the two tables share these columns). */
interface ScheduledOwnerRow {
  id: string;
  spend?: number;
  duration?: string | null;
  resetAt?: string | null;
  maxBudget?: number | null;
}

async function insertScheduledOwner(
  db: Db,
  table: string,
  keyColumn: string,
  row: ScheduledOwnerRow,
): Promise<void> {
  await db.query(
    `INSERT INTO "${table}" (${keyColumn}, spend, budget_duration, budget_reset_at, max_budget)
     VALUES ($1, $2, $3, $4::timestamptz AT TIME ZONE 'UTC', $5)`,
    [row.id, row.spend ?? 0, row.duration ?? null, row.resetAt ?? null, row.maxBudget ?? null],
  );
}

export const insertUser = (db: Db, row: ScheduledOwnerRow) =>
  insertScheduledOwner(db, 'LiteLLM_UserTable', 'user_id', row);

export const insertTeam = (db: Db, row: ScheduledOwnerRow) =>
  insertScheduledOwner(db, 'LiteLLM_TeamTable', 'team_id', row);

export async function insertTeamMember(
  db: Db,
  row: { userId: string; teamId: string; spend: number; totalSpend?: number; budgetId: string | null },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_TeamMembership" (user_id, team_id, spend, total_spend, budget_id) VALUES ($1, $2, $3, $4, $5)`,
    [row.userId, row.teamId, row.spend, row.totalSpend ?? row.spend, row.budgetId],
  );
}

export async function insertEndUser(
  db: Db,
  row: { id: string; spend: number; budgetId: string | null },
): Promise<void> {
  await db.query(`INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id) VALUES ($1, $2, $3)`, [
    row.id,
    row.spend,
    row.budgetId,
  ]);
}

export async function insertOrg(db: Db, row: { id: string; spend: number; budgetId: string }): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_OrganizationTable" (organization_id, organization_alias, spend, budget_id, created_by, updated_by)
     VALUES ($1, $1, $2, $3, 'test', 'test')`,
    [row.id, row.spend, row.budgetId],
  );
}

export async function insertOrgMember(
  db: Db,
  row: { userId: string; orgId: string; spend: number | null; budgetId: string | null },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_OrganizationMembership" (user_id, organization_id, spend, budget_id) VALUES ($1, $2, $3, $4)`,
    [row.userId, row.orgId, row.spend, row.budgetId],
  );
}

export async function insertTag(
  db: Db,
  row: { name: string; spend: number; budgetId: string | null },
): Promise<void> {
  await db.query(`INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id) VALUES ($1, $2, $3)`, [
    row.name,
    row.spend,
    row.budgetId,
  ]);
}

export async function insertProject(
  db: Db,
  row: { id: string; spend: number; budgetId: string | null },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_ProjectTable" (project_id, spend, budget_id, created_by, updated_by) VALUES ($1, $2, $3, 'test', 'test')`,
    [row.id, row.spend, row.budgetId],
  );
}

export async function insertModelAccessGroup(
  db: Db,
  row: { name: string; spend: number; budgetId: string | null },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_ModelAccessGroupBudgetTable" (access_group_name, spend, budget_id) VALUES ($1, $2, $3)`,
    [row.name, row.spend, row.budgetId],
  );
}

/** A spend-log row as LiteLLM 1.108.14 writes it (request_tags a JSONB array, timestamps UTC without zone). */
export async function insertSpendLog(
  db: Db,
  row: { requestId: string; startTime: string; spend: number; apiKey?: string; tags?: string[] },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime", "endTime", request_tags)
     VALUES ($1, 'acompletion', $2, $3, $4::timestamptz AT TIME ZONE 'UTC', $4::timestamptz AT TIME ZONE 'UTC',
             $5::jsonb)`,
    [row.requestId, row.apiKey ?? '', row.spend, row.startTime, JSON.stringify(row.tags ?? [])],
  );
}

/** `spend` of one row, by table and primary-key column(s). */
export async function spendOf(db: Db, table: string, where: Record<string, string>): Promise<number | null> {
  const cols = Object.keys(where);
  const { rows } = await db.query<{ spend: number | null }>(
    `SELECT spend FROM "${table}" WHERE ${cols.map((c, i) => `"${c}" = $${i + 1}`).join(' AND ')}`,
    Object.values(where),
  );
  if (rows.length !== 1) throw new Error(`Expected one ${table} row for ${JSON.stringify(where)}`);
  return rows[0]!.spend;
}

/** `budget_reset_at` of a budget owner row as an ISO instant. */
export async function resetAtOf(
  db: Db,
  table: string,
  keyColumn: string,
  id: string,
): Promise<string | null> {
  const { rows } = await db.query<{ at: Date | null }>(
    `SELECT budget_reset_at AT TIME ZONE 'UTC' AS at FROM "${table}" WHERE "${keyColumn}" = $1`,
    [id],
  );
  return rows[0]?.at?.toISOString() ?? null;
}

/** Writes `budget_limits` (window budgets) of a key or team exactly as given (LiteLLM stores a JSON array). */
export async function setBudgetLimits(
  db: Db,
  owner: { table: 'LiteLLM_VerificationToken' | 'LiteLLM_TeamTable'; id: string },
  windows: unknown,
): Promise<void> {
  const key = owner.table === 'LiteLLM_VerificationToken' ? 'token' : 'team_id';
  await db.query(`UPDATE "${owner.table}" SET budget_limits = $2::jsonb WHERE "${key}" = $1`, [
    owner.id,
    JSON.stringify(windows),
  ]);
}

/** `budget_limits` of a key or team as stored. */
export async function budgetLimitsOf(
  db: Db,
  owner: { table: 'LiteLLM_VerificationToken' | 'LiteLLM_TeamTable'; id: string },
): Promise<unknown> {
  const key = owner.table === 'LiteLLM_VerificationToken' ? 'token' : 'team_id';
  const { rows } = await db.query<{ limits: unknown }>(
    `SELECT budget_limits AS limits FROM "${owner.table}" WHERE "${key}" = $1`,
    [owner.id],
  );
  return rows[0]?.limits;
}

/** A `LiteLLM_BudgetWindowSpend` row, as LiteLLM's spend writer keeps it. */
export async function insertWindowSpend(
  db: Db,
  row: { entityType: 'key' | 'team'; entityId: string; duration: string; windowStart: string; spend: number },
): Promise<void> {
  await db.query(
    `INSERT INTO "LiteLLM_BudgetWindowSpend" (entity_type, entity_id, window_duration, window_start, spend, updated_at)
     VALUES ($1, $2, $3, $4::timestamptz AT TIME ZONE 'UTC', $5, now() AT TIME ZONE 'UTC')`,
    [row.entityType, row.entityId, row.duration, row.windowStart, row.spend],
  );
}

/** A `LiteLLM_BudgetWindowSpend` row's window start (ISO instant) and spend. */
export async function windowSpendOf(
  db: Db,
  row: { entityType: 'key' | 'team'; entityId: string; duration: string },
): Promise<{ windowStart: string; spend: number } | undefined> {
  const { rows } = await db.query<{ window_start: Date; spend: number }>(
    `SELECT window_start AT TIME ZONE 'UTC' AS window_start, spend FROM "LiteLLM_BudgetWindowSpend"
      WHERE entity_type = $1 AND entity_id = $2 AND window_duration = $3`,
    [row.entityType, row.entityId, row.duration],
  );
  const found = rows[0];
  return found ? { windowStart: found.window_start.toISOString(), spend: found.spend } : undefined;
}
