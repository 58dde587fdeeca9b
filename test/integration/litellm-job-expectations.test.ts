/**
 * One seeded database, reset by us, compared row by row with what LiteLLM 1.108.14's `ResetBudgetJob` would
 * leave: spend and `budget_reset_at` of every entity kind, and the window budgets (`budget_limits`, their Redis
 * counters, `LiteLLM_BudgetWindowSpend`). The expected rows are DERIVED FROM READING `proxy/common_utils/reset_budget_job.py` (each with the
 * function that decides it), not from running LiteLLM's job: that needs prisma-client-py, whose engines cannot
 * be fetched here. LiteLLM's job is assumed to run right at the boundary (its best case), so its
 * `compute_budget_reset_at` from "now" equals the next boundary. Differences are named, with their reason.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invalidateResetCaches, readWindowCounter } from '../../src/cache/invalidation.js';
import { LITELLM_REDIS_TTL_SECONDS } from '../../src/config.js';
import { existingTables, resetBudgetTransaction } from '../../src/db/reset-transaction.js';
import type { BudgetKind } from '../../src/budget-ref.js';
import { planReset } from '../../src/reset-plan.js';
import { DEFAULT_SCHEDULE, parseDuration } from '../../src/schedule.js';
import { parseWindowId } from '../../src/window-id.js';
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
  insertWindowSpend,
  budgetLimitsOf,
  resetAtOf,
  setBudgetLimits,
  spendOf,
} from '../helpers/litellm-rows.js';
import { scheduledReset } from '../helpers/reset-requests.js';
import { services, uniqueName } from '../helpers/services.js';

const BOUNDARY = '2026-03-01T00:00:00.000Z';
/** `compute_budget_reset_at("1d")` at the boundary: the next local midnight (UTC here). */
const NEXT_DAY = '2026-03-02T00:00:00.000Z';
/** Counters are seeded to expire after a day; a reset sets one to expire after LiteLLM's RedisCache default. */
const SEEDED_TTL_S = 86_400;
const expiryOf = (ttl: number): string =>
  ttl <= 0 ? `none (${ttl})` : ttl <= LITELLM_REDIS_TTL_SECONDS ? "LiteLLM's default" : 'as seeded';
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
let redis: Redis;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
  redis = new Redis(services().redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
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

const KEYS = 'LiteLLM_VerificationToken' as const;
const TEAMS = 'LiteLLM_TeamTable' as const;
/** What `updated_at` of a seeded `LiteLLM_BudgetWindowSpend` row holds until something writes the row. */
const SEEDED_UPDATED_AT = '2000-01-01T00:00:00.000Z';

/** One owner's `budget_limits` as seeded and as LiteLLM's job leaves it. */
interface ExpectedLimits {
  readonly table: typeof KEYS | typeof TEAMS;
  readonly id: string;
  readonly before: readonly object[];
  readonly litellm: readonly object[];
}

/** One window's spend counter (Redis, seeded with an expiry) and what LiteLLM's job leaves in it. */
interface ExpectedCounter {
  readonly key: string;
  readonly before: string;
  /** The value after, without and with `budget_rollover`; undefined: not due, left as it was (expiry included). */
  readonly litellm?: readonly [string, string];
}

/** One `LiteLLM_BudgetWindowSpend` row as seeded, and where LiteLLM's job leaves it (undefined: not written). */
interface ExpectedWindowSpend {
  readonly entityType: 'key' | 'team';
  readonly entityId: string;
  readonly duration: string;
  readonly windowStart: string;
  readonly spend: number;
  readonly litellm?: { readonly windowStart: string; readonly spend: number };
}

/**
 * The window budgets of one run: a key and a team with several windows each (due at the boundary, due before it,
 * not due, never scheduled), other fields in the windows, and a window of the expired key. Derived from
 * `reset_budget_windows` in `reset_budget_job.py` run at the boundary: `_reset_window_page` reads each owner's whole
 * list, runs `_reset_expired_window` on every element and, when one was due, writes the whole list back with
 * `json.dumps(windows)`, so every other element and field comes back as it was read. A window is due when
 * `reset_at <= now`; one without `reset_at` is skipped. Our own key and team resets run on the same owners, and
 * LiteLLM's (`_reset_budget_common`) never look at `budget_limits`.
 */
function windows(p: string) {
  const key = `${p}-k-own`;
  const expiredKey = `${p}-k-own-expired`;
  const team = `${p}-team`;
  const limits: ExpectedLimits[] = [
    {
      table: KEYS,
      id: key,
      before: [
        { budget_duration: '1h', max_budget: 5, reset_at: '2026-03-01T00:00:00+00:00', label: 'hourly' },
        {
          budget_duration: '1d',
          max_budget: 12.5,
          reset_at: '2026-03-01T00:00:00Z',
          meta: { owner: 'ops', tags: ['a', 'b'] },
        },
        { budget_duration: '7d', max_budget: 100, reset_at: '2026-03-02T00:00:00', note: null },
        { budget_duration: '30m', max_budget: 1 },
      ],
      // _reset_expired_window: reset_at = compute_budget_reset_at(duration).isoformat() (zone UTC: `+00:00`),
      // whatever form it was read in; 7d is not due (next Monday); 30m has no reset_at and is skipped.
      litellm: [
        { budget_duration: '1h', max_budget: 5, reset_at: '2026-03-01T01:00:00+00:00', label: 'hourly' },
        {
          budget_duration: '1d',
          max_budget: 12.5,
          reset_at: '2026-03-02T00:00:00+00:00',
          meta: { owner: 'ops', tags: ['a', 'b'] },
        },
        { budget_duration: '7d', max_budget: 100, reset_at: '2026-03-02T00:00:00', note: null },
        { budget_duration: '30m', max_budget: 1 },
      ],
    },
    {
      // _WindowSource.page_query has no `expires` filter: an expired key's windows still reset.
      table: KEYS,
      id: expiredKey,
      before: [{ budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T00:00:00+00:00' }],
      litellm: [{ budget_duration: '1h', max_budget: 1, reset_at: '2026-03-01T01:00:00+00:00' }],
    },
    {
      table: TEAMS,
      id: team,
      before: [
        { budget_duration: '30d', max_budget: 500, reset_at: '2026-04-01T00:00:00+00:00' },
        { budget_duration: '1d', max_budget: 10, reset_at: '2026-03-01T00:00:00+00:00', owner_note: 'café' },
        // Due an hour before the boundary (a late sweep): the next boundary is computed from now, 01:00.
        { budget_duration: '1h', reset_at: '2026-02-28T23:00:00+00:00' },
      ],
      litellm: [
        { budget_duration: '30d', max_budget: 500, reset_at: '2026-04-01T00:00:00+00:00' },
        { budget_duration: '1d', max_budget: 10, reset_at: '2026-03-02T00:00:00+00:00', owner_note: 'café' },
        { budget_duration: '1h', reset_at: '2026-03-01T01:00:00+00:00' },
      ],
    },
  ];
  // _reset_expired_window sets the counter of each due window to _window_carried_spend: 0.0, or with rollover
  // max(0, counter - window max_budget) when max_budget is a finite number (else 0.0); Redis gets json.dumps of the
  // float through async_set_cache, whose RedisCache expires it after its default_ttl: 60 s unless
  // litellm.default_redis_ttl is set (the proxy then reseeds it from LiteLLM_BudgetWindowSpend).
  const counters: ExpectedCounter[] = [
    { key: `spend:key:${key}:window:1h`, before: '7.5', litellm: ['0.0', '2.5'] },
    { key: `spend:key:${key}:window:1d`, before: '20.0', litellm: ['0.0', '7.5'] },
    { key: `spend:key:${key}:window:7d`, before: '40.0' },
    { key: `spend:key:${key}:window:30m`, before: '0.5' },
    { key: `spend:key:${expiredKey}:window:1h`, before: '3.0', litellm: ['0.0', '2.0'] },
    { key: `spend:team:${team}:window:30d`, before: '100.0' },
    { key: `spend:team:${team}:window:1d`, before: '14.0', litellm: ['0.0', '4.0'] },
    { key: `spend:team:${team}:window:1h`, before: '2.0', litellm: ['0.0', '0.0'] },
  ];
  // _roll_window_spend_row -> roll_window_spend_row (_ROLL_WINDOW_SPEND_SQL): window_start = next reset_at -
  // duration_in_seconds(duration), spend 0 (with rollover too), updated_at now, only WHERE window_start is still
  // behind it. Windows without a row (the team's 1h, the expired key's 1h) get none: it is an UPDATE.
  const spendRows: ExpectedWindowSpend[] = [
    {
      entityType: 'key',
      entityId: key,
      duration: '1h',
      windowStart: '2026-02-28T23:00:00.000Z',
      spend: 7.5,
      litellm: { windowStart: BOUNDARY, spend: 0 },
    },
    // Already on the window that starts at the boundary (an increment rolled it): not behind, left alone.
    { entityType: 'key', entityId: key, duration: '1d', windowStart: BOUNDARY, spend: 0.25 },
    { entityType: 'key', entityId: key, duration: '7d', windowStart: '2026-02-23T00:00:00.000Z', spend: 40 },
    {
      entityType: 'team',
      entityId: team,
      duration: '1d',
      windowStart: '2026-02-28T00:00:00.000Z',
      spend: 14,
      litellm: { windowStart: BOUNDARY, spend: 0 },
    },
    {
      entityType: 'team',
      entityId: team,
      duration: '30d',
      windowStart: '2026-03-02T00:00:00.000Z',
      spend: 100,
    },
  ];
  // The windows our workflows reset at the boundary, each with the reset_at it is due at.
  const due: [string, string][] = [
    [`key:${key}:1h`, BOUNDARY],
    [`key:${key}:1d`, BOUNDARY],
    [`key:${expiredKey}:1h`, BOUNDARY],
    [`team:${team}:1d`, BOUNDARY],
    [`team:${team}:1h`, '2026-02-28T23:00:00.000Z'],
  ];
  return { limits, counters, spendRows, due, owners: [key, expiredKey, team] };
}

async function seedWindows(p: string, ns: string): Promise<void> {
  const seeded = windows(p);
  for (const owner of seeded.limits) {
    await setBudgetLimits(db.pool, { table: owner.table, id: owner.id }, owner.before);
  }
  for (const counter of seeded.counters) {
    await redis.set(`${ns}:${counter.key}`, counter.before, 'EX', SEEDED_TTL_S);
  }
  for (const row of seeded.spendRows) await insertWindowSpend(db.pool, row);
  await db.pool.query(
    `UPDATE "LiteLLM_BudgetWindowSpend" SET updated_at = ($2::timestamptz AT TIME ZONE 'UTC')
      WHERE entity_id = ANY($1::text[])`,
    [seeded.owners, SEEDED_UPDATED_AT],
  );
}

/** Orders window-spend rows by their primary key, the same way on both sides of a comparison. */
const byWindow = (a: { entityType: string; entityId: string; duration: string }, b: typeof a): number =>
  a.entityType.localeCompare(b.entityType) ||
  a.entityId.localeCompare(b.entityId) ||
  a.duration.localeCompare(b.duration);

/** Every `LiteLLM_BudgetWindowSpend` row of the given owners, with whether anything wrote it since the seed. */
async function windowSpendRows(owners: readonly string[]) {
  const { rows } = await db.pool.query<{
    entity_type: 'key' | 'team';
    entity_id: string;
    duration: string;
    window_start: Date;
    spend: number;
    written: boolean;
  }>(
    `SELECT entity_type, entity_id, window_duration AS duration, window_start AT TIME ZONE 'UTC' AS window_start,
            spend, updated_at <> ($2::timestamptz AT TIME ZONE 'UTC') AS written
       FROM "LiteLLM_BudgetWindowSpend" WHERE entity_id = ANY($1::text[])`,
    [owners, SEEDED_UPDATED_AT],
  );
  return rows
    .map((r) => ({
      entityType: r.entity_type,
      entityId: r.entity_id,
      duration: r.duration,
      windowStart: r.window_start.toISOString(),
      spend: r.spend,
      written: r.written,
    }))
    .sort(byWindow);
}

describe("one seeded database against LiteLLM 1.108.14's reset job, as read from its code", () => {
  it.each([
    ['without rollover', false, 0],
    ['with budget_rollover', true, 1],
  ] as const)('%s: every row as LiteLLM leaves it, except the named differences', async (_, rollover, i) => {
    const p = rollover ? 'roll' : 'plain';
    const ns = uniqueName(`ns-${p}`);
    await seed(p);
    await seedWindows(p, ns);
    const options = { rollover, defaultEndUserBudgetId: `${p}-tier` };
    const due: [BudgetKind, string][] = [
      ['budget', `${p}-tier`],
      ['key', `${p}-k-own`],
      ['key', `${p}-k-own-expired`],
      ['user', `${p}-user`],
      ['team', `${p}-team`],
    ];
    const outcomes: string[] = [];
    const resetIds: string[] = [];
    for (const [kind, id] of due) {
      const request = scheduledReset({ kind, id }, BOUNDARY, NEXT_DAY);
      const result = await resetBudgetTransaction(db.pool, request, options, tables);
      outcomes.push(result.outcome);
      if (result.outcome === 'reset') resetIds.push(result.resetId);
    }
    expect(outcomes).toEqual(['reset', 'reset', 'expired', 'reset', 'reset']);

    // Each due window as its workflow resets it at the boundary: our schedule decides the period and the next
    // boundary (planReset, as the reset activity does), the counter is read from Redis for the carried spend.
    const seeded = windows(p);
    const windowOutcomes: string[] = [];
    for (const [id, expectedResetAt] of seeded.due) {
      const { duration } = parseWindowId(id);
      const request = planReset(
        { kind: 'window', id, expectedResetAt, now: BOUNDARY, duration, periodStart: null },
        parseDuration(duration),
        DEFAULT_SCHEDULE,
      );
      const result = await resetBudgetTransaction(
        db.pool,
        request,
        { ...options, readWindowCounter: (key) => readWindowCounter(redis, ns, key) },
        tables,
      );
      windowOutcomes.push(result.outcome);
      if (result.outcome === 'reset') resetIds.push(result.resetId);
    }
    expect(windowOutcomes).toEqual(seeded.due.map(() => 'reset'));
    // After the commits, every reset's caches, the owners' own included (theirs never touch a window counter).
    await invalidateResetCaches(db.pool, redis, ns, resetIds);

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

    // Window budgets: the whole budget_limits of each owner, every window's counter and its expiry, and every
    // LiteLLM_BudgetWindowSpend row of the owners (none created, none deleted).
    const limitsOf = async (owners: readonly ExpectedLimits[]) =>
      Object.fromEntries(
        await Promise.all(
          owners.map(async (o) => [`${o.table}:${o.id}`, await budgetLimitsOf(db.pool, o)] as const),
        ),
      );
    expect(await limitsOf(seeded.limits)).toEqual(
      Object.fromEntries(seeded.limits.map((o) => [`${o.table}:${o.id}`, o.litellm])),
    );
    const counters = await Promise.all(
      seeded.counters.map(async (c) => ({
        key: c.key,
        value: await redis.get(`${ns}:${c.key}`),
        expiry: expiryOf(await redis.ttl(`${ns}:${c.key}`)),
      })),
    );
    expect(counters).toEqual(
      seeded.counters.map((c) => ({
        key: c.key,
        value: c.litellm ? c.litellm[i] : c.before,
        expiry: c.litellm === undefined ? 'as seeded' : "LiteLLM's default",
      })),
    );
    expect(await windowSpendRows(seeded.owners)).toEqual(
      seeded.spendRows
        .map((r) => ({
          entityType: r.entityType,
          entityId: r.entityId,
          duration: r.duration,
          windowStart: r.litellm?.windowStart ?? r.windowStart,
          spend: r.litellm?.spend ?? r.spend,
          written: r.litellm !== undefined,
        }))
        .sort(byWindow),
    );
  });

  it('lists each difference it allows with its reason', () => {
    const used = new Set(rows('x').flatMap((r) => (r.ours ? [r.ours.why] : [])));
    expect([...used].sort()).toEqual(Object.keys(DIFFERENCES).sort());
  });
});
