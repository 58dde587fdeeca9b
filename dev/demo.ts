import { createHash } from 'node:crypto';
import type pg from 'pg';

/** The demo tier and what hangs off it; `npm start` seeds them once. */
export const DEMO = {
  tier: 'demo-tier',
  tag: 'tenant:acme',
  key: 'sk-budget-lifecycle-demo',
  team: 'demo-team',
  endUser: 'demo-customer',
} as const;

/** LiteLLM stores a virtual key as the sha256 hex of the `sk-` key. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * Seeds the bug report this project was born from: the tag `tenant:acme` over its budget (spend 0.063, max 0.05)
 * on a `1m` tier, with a key and an end user on the same tier, and a team with an hourly budget of its own.
 * Does nothing when the tier already exists, so a restart keeps the state.
 */
export async function seedDemo(db: pg.Pool, duration = '1m'): Promise<boolean> {
  const { rowCount } = await db.query(`SELECT 1 FROM "LiteLLM_BudgetTable" WHERE budget_id = $1`, [
    DEMO.tier,
  ]);
  if (rowCount) return false;
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, created_by, updated_by)
       VALUES ($1, 0.05, $2, 'demo', 'demo')`,
      [DEMO.tier, duration],
    );
    await client.query(`INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id) VALUES ($1, 0.063, $2)`, [
      DEMO.tag,
      DEMO.tier,
    ]);
    await client.query(
      `INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, spend, budget_id) VALUES ($1, 'demo key', 0.02, $2)`,
      [hashKey(DEMO.key), DEMO.tier],
    );
    await client.query(
      `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id) VALUES ($1, 0.01, $2)`,
      [DEMO.endUser, DEMO.tier],
    );
    await client.query(
      `INSERT INTO "LiteLLM_TeamTable" (team_id, team_alias, spend, max_budget, budget_duration)
       VALUES ($1, 'demo team', 1.5, 10, '1h')`,
      [DEMO.team],
    );
    await client.query('COMMIT');
    return true;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}
