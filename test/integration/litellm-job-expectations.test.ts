/**
 * One seeded database, reset by us, compared row by row with what LiteLLM 1.108.14's `ResetBudgetJob` would
 * leave. The expected rows are DERIVED FROM READING `proxy/common_utils/reset_budget_job.py` (each with the
 * function that decides it), not from running LiteLLM's job: that needs prisma-client-py, whose engines cannot
 * be fetched here. LiteLLM's job is assumed to run right at the boundary (its best case), so its
 * `compute_budget_reset_at` from "now" equals the next boundary. Differences are named, with their reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import type { BudgetKind } from '../../src/budget-ref.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import {
  insertBudget,
  insertEndUser,
  insertKey,
  insertModelAccessGroup,
  insertOrg,
  insertOrgMember,
  insertProject,
  insertTag,
  insertTeam,
  insertTeamMember,
  insertUser,
  resetAtOf,
  spendOf,
} from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';

const BOUNDARY = '2026-03-01T00:00:00.000Z';
/** `compute_budget_reset_at("1d")` at the boundary: the next local midnight (UTC here). */
const NEXT_DAY = '2026-03-02T00:00:00.000Z';
const LATER = '2026-03-20T00:00:00.000Z';
const EXPIRED = '2026-02-15T00:00:00.000Z';

/** Where we knowingly differ from LiteLLM's job (README, "Compatible with LiteLLM 1.108.14"). */
const DIFFERENCES = {
  'org-membership': 'LiteLLM 1.108.14 never resets org memberships of a tier; we zero them with it',
  'expired-linked-key':
    "LiteLLM's tier cascade zeroes linked keys without checking `expires`; we leave expired keys alone",
} as const;

interface Expected {
  readonly what: string;
  readonly table: string;
  readonly where: Record<string, string>;
  readonly before: number;
  /** After LiteLLM's job, without and with `budget_rollover`. */
  readonly litellm: readonly [number, number];
  /** Ours, only where it deliberately differs. */
  readonly ours?: { readonly value: readonly [number, number]; readonly why: keyof typeof DIFFERENCES };
}

let db: TestDatabase;
let tables: Set<string>;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

/** The seeded rows of one run, prefixed so both runs share the file's database. */
function rows(p: string): Expected[] {
  return [
    // _queue_budget_linked_resets(uow.team_memberships, cascade): every linked membership; under rollover the
    // rows over the tier's cap (10) keep spend - cap, the rest are zeroed.
    {
      what: 'team membership over the cap',
      table: 'LiteLLM_TeamMembership',
      where: { user_id: `${p}-m1`, team_id: `${p}-t` },
      before: 12,
      litellm: [0, 2],
    },
    {
      what: 'team membership under the cap',
      table: 'LiteLLM_TeamMembership',
      where: { user_id: `${p}-m2`, team_id: `${p}-t` },
      before: 4,
      litellm: [0, 0],
    },
    // _LINKED_KEYS_WHERE = {budget_duration: None, spend > 0}: linked keys without a schedule of their own.
    {
      what: 'linked key',
      table: 'LiteLLM_VerificationToken',
      where: { token: `${p}-k-linked` },
      before: 15,
      litellm: [0, 5],
    },
    {
      what: 'linked key with its own schedule (not due)',
      table: 'LiteLLM_VerificationToken',
      where: { token: `${p}-k-own-later` },
      before: 7,
      litellm: [7, 7],
    },
    {
      what: 'expired linked key',
      table: 'LiteLLM_VerificationToken',
      where: { token: `${p}-k-expired-linked` },
      before: 3,
      litellm: [0, 0],
      ours: { value: [3, 3], why: 'expired-linked-key' },
    },
    // Organizations, tags, model access groups, projects: _SPENT_ROWS_WHERE (spend > 0), same rollover rule.
    {
      what: 'org',
      table: 'LiteLLM_OrganizationTable',
      where: { organization_id: `${p}-org` },
      before: 11,
      litellm: [0, 1],
    },
    {
      what: 'org membership',
      table: 'LiteLLM_OrganizationMembership',
      where: { user_id: `${p}-m1`, organization_id: `${p}-org` },
      before: 6,
      litellm: [6, 6],
      ours: { value: [0, 0], why: 'org-membership' },
    },
    {
      what: 'tag of the seed case',
      table: 'LiteLLM_TagTable',
      where: { tag_name: `${p}-tag` },
      before: 0.063,
      litellm: [0, 0],
    },
    {
      what: 'tag on a tier that is not due',
      table: 'LiteLLM_TagTable',
      where: { tag_name: `${p}-tag-other` },
      before: 9,
      litellm: [9, 9],
    },
    {
      what: 'project',
      table: 'LiteLLM_ProjectTable',
      where: { project_id: `${p}-proj` },
      before: 20,
      litellm: [0, 10],
    },
    {
      what: 'model access group',
      table: 'LiteLLM_ModelAccessGroupBudgetTable',
      where: { access_group_name: `${p}-mag` },
      before: 1,
      litellm: [0, 0],
    },
    // _reset_enduser_spend: linked end users, and those with no tier when this is max_end_user_budget_id.
    {
      what: 'linked end user',
      table: 'LiteLLM_EndUserTable',
      where: { user_id: `${p}-eu` },
      before: 13,
      litellm: [0, 3],
    },
    {
      what: 'end user on the default tier',
      table: 'LiteLLM_EndUserTable',
      where: { user_id: `${p}-eu-default` },
      before: 2,
      litellm: [0, 0],
    },
    // _reset_budget_common for owners with their own schedule: spend 0, or max(0, spend - own max_budget).
    {
      what: 'key with its own schedule, due',
      table: 'LiteLLM_VerificationToken',
      where: { token: `${p}-k-own` },
      before: 8,
      litellm: [0, 3],
    },
    {
      what: 'expired key with its own schedule (get_data: expires > now only)',
      table: 'LiteLLM_VerificationToken',
      where: { token: `${p}-k-own-expired` },
      before: 4,
      litellm: [4, 4],
    },
    {
      what: 'user without a cap (rollover carries nothing)',
      table: 'LiteLLM_UserTable',
      where: { user_id: `${p}-user` },
      before: 9,
      litellm: [0, 0],
    },
    {
      what: 'team',
      table: 'LiteLLM_TeamTable',
      where: { team_id: `${p}-team` },
      before: 30,
      litellm: [0, 5],
    },
  ];
}

async function seed(p: string): Promise<void> {
  const pool = db.pool;
  const tier = `${p}-tier`;
  await insertBudget(pool, { id: tier, maxBudget: 10, duration: '1d', resetAt: BOUNDARY });
  await insertBudget(pool, { id: `${p}-other`, maxBudget: 10, duration: '1d', resetAt: LATER });
  await insertTeamMember(pool, { userId: `${p}-m1`, teamId: `${p}-t`, spend: 12, budgetId: tier });
  await insertTeamMember(pool, { userId: `${p}-m2`, teamId: `${p}-t`, spend: 4, budgetId: tier });
  await insertKey(pool, { token: `${p}-k-linked`, spend: 15, budgetId: tier });
  await insertKey(pool, {
    token: `${p}-k-own-later`,
    spend: 7,
    budgetId: tier,
    duration: '30d',
    resetAt: LATER,
  });
  await insertKey(pool, { token: `${p}-k-expired-linked`, spend: 3, budgetId: tier, expires: EXPIRED });
  await insertOrg(pool, { id: `${p}-org`, spend: 11, budgetId: tier });
  await insertUser(pool, { id: `${p}-m1` });
  await insertOrgMember(pool, { userId: `${p}-m1`, orgId: `${p}-org`, spend: 6, budgetId: tier });
  await insertTag(pool, { name: `${p}-tag`, spend: 0.063, budgetId: tier });
  await insertTag(pool, { name: `${p}-tag-other`, spend: 9, budgetId: `${p}-other` });
  await insertProject(pool, { id: `${p}-proj`, spend: 20, budgetId: tier });
  await insertModelAccessGroup(pool, { name: `${p}-mag`, spend: 1, budgetId: tier });
  await insertEndUser(pool, { id: `${p}-eu`, spend: 13, budgetId: tier });
  await insertEndUser(pool, { id: `${p}-eu-default`, spend: 2, budgetId: null });
  await insertKey(pool, { token: `${p}-k-own`, spend: 8, duration: '1d', resetAt: BOUNDARY, maxBudget: 5 });
  await insertKey(pool, {
    token: `${p}-k-own-expired`,
    spend: 4,
    duration: '1d',
    resetAt: BOUNDARY,
    expires: EXPIRED,
  });
  await insertUser(pool, { id: `${p}-user`, spend: 9, duration: '1d', resetAt: BOUNDARY });
  await insertTeam(pool, { id: `${p}-team`, spend: 30, duration: '1d', resetAt: BOUNDARY, maxBudget: 25 });
}

describe("one seeded database against LiteLLM 1.108.14's reset job, as read from its code", () => {
  it.each([
    ['without rollover', false, 0],
    ['with budget_rollover', true, 1],
  ] as const)('%s: every row as LiteLLM leaves it, except the named differences', async (_, rollover, i) => {
    const p = rollover ? 'roll' : 'plain';
    await seed(p);
    const options = { rollover, defaultEndUserBudgetId: `${p}-tier` };
    const due: [BudgetKind, string][] = [
      ['budget', `${p}-tier`],
      ['key', `${p}-k-own`],
      ['key', `${p}-k-own-expired`],
      ['user', `${p}-user`],
      ['team', `${p}-team`],
    ];
    const outcomes: string[] = [];
    for (const [kind, id] of due) {
      const request = scheduledReset({ kind, id }, BOUNDARY, NEXT_DAY);
      outcomes.push((await resetBudgetTransaction(db.pool, request, options, tables)).outcome);
    }
    expect(outcomes).toEqual(['reset', 'reset', 'expired', 'reset', 'reset']);

    const mismatches: string[] = [];
    for (const row of rows(p)) {
      const actual = await spendOf(db.pool, row.table, row.where);
      const expected = row.ours ? row.ours.value[i] : row.litellm[i];
      if (actual === null || Math.abs(actual - expected) > 1e-9) {
        mismatches.push(`${row.what}: ${actual} (LiteLLM ${row.litellm[i]}, expected ${expected})`);
      }
    }
    expect(mismatches).toEqual([]);

    // budget_reset_at: compute_budget_reset_at for the due owners and the tier; untouched elsewhere.
    expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', `${p}-tier`)).toBe(NEXT_DAY);
    expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', `${p}-other`)).toBe(LATER);
    expect(await resetAtOf(db.pool, 'LiteLLM_VerificationToken', 'token', `${p}-k-own`)).toBe(NEXT_DAY);
    expect(await resetAtOf(db.pool, 'LiteLLM_VerificationToken', 'token', `${p}-k-own-expired`)).toBe(
      BOUNDARY,
    );
    expect(await resetAtOf(db.pool, 'LiteLLM_VerificationToken', 'token', `${p}-k-own-later`)).toBe(LATER);
    expect(await resetAtOf(db.pool, 'LiteLLM_UserTable', 'user_id', `${p}-user`)).toBe(NEXT_DAY);
    expect(await resetAtOf(db.pool, 'LiteLLM_TeamTable', 'team_id', `${p}-team`)).toBe(NEXT_DAY);
  });

  it('lists each difference it allows with its reason', () => {
    const used = new Set(rows('x').flatMap((r) => (r.ours ? [r.ours.why] : [])));
    expect([...used].sort()).toEqual(Object.keys(DIFFERENCES).sort());
  });
});
