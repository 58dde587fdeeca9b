import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  existingTables,
  findCommittedReset,
  loadBudgetRow,
  resetBudgetTransaction,
} from '../../src/db/reset-transaction.js';
import { BudgetNotFoundError } from '../../src/errors.js';
import type { ResetRequest } from '../../src/reset-types.js';
import { scheduledReset } from '../helpers/reset-requests.js';
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

const BOUNDARY = '2026-03-01T00:00:00.000Z';
const NEXT = '2026-04-01T00:00:00.000Z';

let db: TestDatabase;
let tables: Set<string>;
let seq = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  tables = await existingTables(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

/** Every test works on its own tier/owner ids in the shared file database. */
let p: string;
beforeEach(() => {
  seq += 1;
  p = `t${seq}`;
});

function request(overrides: Partial<ResetRequest> & Pick<ResetRequest, 'kind' | 'id'>): ResetRequest {
  const ref = { kind: overrides.kind, id: overrides.id };
  return scheduledReset(ref, BOUNDARY, NEXT, { periodStart: '2026-02-01T00:00:00.000Z', ...overrides });
}

const reset = (r: ResetRequest, opts: { rollover?: boolean; defaultEndUserBudgetId?: string } = {}) =>
  resetBudgetTransaction(db.pool, r, { rollover: opts.rollover ?? false, ...opts }, tables);

async function auditEntities(resetId: string) {
  const { rows } = await db.pool.query<{
    entity_type: string;
    entity_id: string;
    spend_before: number;
    spend_after: number;
  }>(
    `SELECT entity_type, entity_id, spend_before, spend_after FROM budget_lifecycle.reset_log_entity
      WHERE reset_id = $1 ORDER BY entity_type, entity_id`,
    [resetId],
  );
  return rows;
}

describe('resetBudget transaction', () => {
  it('has every optional LiteLLM table in the pinned schema', () => {
    expect(tables.has('LiteLLM_ProjectTable')).toBe(true);
    expect(tables.has('LiteLLM_ModelAccessGroupBudgetTable')).toBe(true);
  });

  it('resets the seed case: a tag over its 1m tier budget is zeroed and the tier advances', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, maxBudget: 0.05, duration: '1m', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${p}:tenant:acme`, spend: 0.063, budgetId: `${p}-tier` });
    const result = await reset(
      request({ kind: 'budget', id: `${p}-tier`, nextResetAt: '2026-03-01T00:01:00.000Z' }),
    );
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 0.063, byType: { tag: 1 } });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}:tenant:acme` })).toBe(0);
    expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', `${p}-tier`)).toBe(
      '2026-03-01T00:01:00.000Z',
    );
    if (result.outcome !== 'reset') throw new Error('unreachable');
    expect(await auditEntities(result.resetId)).toEqual([
      { entity_type: 'tag', entity_id: `${p}:tenant:acme`, spend_before: 0.063, spend_after: 0 },
    ]);
  });

  it('zeroes every entity type linked to a tier and leaves everything else alone', async () => {
    const tier = `${p}-tier`;
    const other = `${p}-other`;
    await insertBudget(db.pool, { id: tier, maxBudget: 100, duration: '30d', resetAt: BOUNDARY });
    await insertBudget(db.pool, { id: other, maxBudget: 100, duration: '30d', resetAt: BOUNDARY });
    await insertKey(db.pool, { token: `${p}-key`, spend: 1, budgetId: tier });
    await insertKey(db.pool, {
      token: `${p}-own-key`,
      spend: 2,
      budgetId: tier,
      duration: '1d',
      resetAt: NEXT,
    });
    await insertKey(db.pool, {
      token: `${p}-expired`,
      spend: 3,
      budgetId: tier,
      expires: '2026-02-15T00:00:00Z',
    });
    await insertKey(db.pool, { token: `${p}-other-key`, spend: 4, budgetId: other });
    await insertTeamMember(db.pool, {
      userId: `${p}-u`,
      teamId: `${p}-t`,
      spend: 5,
      totalSpend: 50,
      budgetId: tier,
    });
    await insertEndUser(db.pool, { id: `${p}-eu`, spend: 6, budgetId: tier });
    await insertEndUser(db.pool, { id: `${p}-eu-free`, spend: 6.5, budgetId: null });
    await insertOrg(db.pool, { id: `${p}-org`, spend: 7, budgetId: tier });
    await insertUser(db.pool, { id: `${p}-member`, spend: 0 });
    await insertOrgMember(db.pool, { userId: `${p}-member`, orgId: `${p}-org`, spend: 8, budgetId: tier });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 9, budgetId: tier });
    await insertTag(db.pool, { name: `${p}-idle-tag`, spend: 0, budgetId: tier });
    await insertProject(db.pool, { id: `${p}-proj`, spend: 10, budgetId: tier });
    await insertModelAccessGroup(db.pool, { name: `${p}-mag`, spend: 11, budgetId: tier });

    const result = await reset(request({ kind: 'budget', id: tier }));
    expect(result).toMatchObject({
      outcome: 'reset',
      entityCount: 8,
      spendTotal: 1 + 5 + 6 + 7 + 8 + 9 + 10 + 11,
      byType: {
        key: 1,
        team_member: 1,
        end_user: 1,
        org: 1,
        org_member: 1,
        tag: 1,
        project: 1,
        model_access_group: 1,
      },
    });
    const spend = (table: string, where: Record<string, string>) => spendOf(db.pool, table, where);
    expect(await spend('LiteLLM_VerificationToken', { token: `${p}-key` })).toBe(0);
    expect(await spend('LiteLLM_VerificationToken', { token: `${p}-own-key` })).toBe(2);
    expect(await spend('LiteLLM_VerificationToken', { token: `${p}-expired` })).toBe(3);
    expect(await spend('LiteLLM_VerificationToken', { token: `${p}-other-key` })).toBe(4);
    expect(await spend('LiteLLM_TeamMembership', { user_id: `${p}-u`, team_id: `${p}-t` })).toBe(0);
    const { rows } = await db.pool.query(
      'SELECT total_spend FROM "LiteLLM_TeamMembership" WHERE user_id = $1',
      [`${p}-u`],
    );
    expect(rows[0].total_spend).toBe(50);
    expect(await spend('LiteLLM_EndUserTable', { user_id: `${p}-eu` })).toBe(0);
    expect(await spend('LiteLLM_EndUserTable', { user_id: `${p}-eu-free` })).toBe(6.5);
    expect(await spend('LiteLLM_OrganizationTable', { organization_id: `${p}-org` })).toBe(0);
    expect(
      await spend('LiteLLM_OrganizationMembership', { user_id: `${p}-member`, organization_id: `${p}-org` }),
    ).toBe(0);
    expect(await spend('LiteLLM_TagTable', { tag_name: `${p}-tag` })).toBe(0);
    expect(await spend('LiteLLM_ProjectTable', { project_id: `${p}-proj` })).toBe(0);
    expect(await spend('LiteLLM_ModelAccessGroupBudgetTable', { access_group_name: `${p}-mag` })).toBe(0);

    if (result.outcome !== 'reset') throw new Error('unreachable');
    const audit = await auditEntities(result.resetId);
    expect(audit.map((a) => [a.entity_type, a.entity_id, a.spend_before, a.spend_after])).toEqual([
      ['end_user', `${p}-eu`, 6, 0],
      ['key', `${p}-key`, 1, 0],
      ['model_access_group', `${p}-mag`, 11, 0],
      ['org', `${p}-org`, 7, 0],
      ['org_member', JSON.stringify([`${p}-member`, `${p}-org`]), 8, 0],
      ['project', `${p}-proj`, 10, 0],
      ['tag', `${p}-tag`, 9, 0],
      ['team_member', JSON.stringify([`${p}-u`, `${p}-t`]), 5, 0],
    ]);
    const log = await db.pool.query(
      `SELECT budget_kind, budget_id, period_start, period_end, next_reset_at, trigger, entity_count, spend_total
         FROM budget_lifecycle.reset_log WHERE id = $1`,
      [result.resetId],
    );
    expect(log.rows[0]).toMatchObject({
      budget_kind: 'budget',
      budget_id: tier,
      period_start: new Date('2026-02-01T00:00:00Z'),
      period_end: new Date(BOUNDARY),
      next_reset_at: new Date(NEXT),
      trigger: 'schedule',
      entity_count: 8,
    });
  });

  it('resets end users without a budget with the configured default end-user tier', async () => {
    const tier = `${p}-default`;
    await insertBudget(db.pool, { id: tier, maxBudget: 1, duration: '1d', resetAt: BOUNDARY });
    await insertEndUser(db.pool, { id: `${p}-anon`, spend: 0.7, budgetId: null });
    const result = await reset(request({ kind: 'budget', id: tier }), { defaultEndUserBudgetId: tier });
    expect(result).toMatchObject({ outcome: 'reset', byType: { end_user: expect.any(Number) } });
    expect(await spendOf(db.pool, 'LiteLLM_EndUserTable', { user_id: `${p}-anon` })).toBe(0);
  });

  it.each([
    ['key', 'LiteLLM_VerificationToken', 'token', insertKey, (id: string) => ({ token: id })],
    ['user', 'LiteLLM_UserTable', 'user_id', insertUser, (id: string) => ({ id })],
    ['team', 'LiteLLM_TeamTable', 'team_id', insertTeam, (id: string) => ({ id })],
  ] as const)('resets a %s with its own schedule', async (kind, table, keyColumn, insert, identity) => {
    const id = `${p}-${kind}`;
    await (insert as (db: unknown, row: object) => Promise<void>)(db.pool, {
      ...identity(id),
      spend: 42.5,
      duration: '1d',
      resetAt: BOUNDARY,
    });
    const result = await reset(request({ kind, id }));
    expect(result).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 42.5 });
    expect(await spendOf(db.pool, table, { [keyColumn]: id })).toBe(0);
    expect(await resetAtOf(db.pool, table, keyColumn, id)).toBe(NEXT);
  });

  it('does not reset an expired key, and says so', async () => {
    await insertKey(db.pool, {
      token: `${p}-k`,
      spend: 5,
      duration: '1d',
      resetAt: BOUNDARY,
      expires: '2026-02-28T00:00:00Z',
    });
    expect(await reset(request({ kind: 'key', id: `${p}-k` }))).toEqual({ outcome: 'expired' });
    expect(await spendOf(db.pool, 'LiteLLM_VerificationToken', { token: `${p}-k` })).toBe(5);
  });

  it('fences: a moved budget_reset_at changes nothing and reports already_reset', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, duration: '1d', resetAt: NEXT });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: `${p}-tier` });
    expect(await reset(request({ kind: 'budget', id: `${p}-tier` }))).toEqual({
      outcome: 'already_reset',
      currentResetAt: NEXT,
    });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-tag` })).toBe(3);
    const { rowCount } = await db.pool.query(
      'SELECT 1 FROM budget_lifecycle.reset_log WHERE budget_id = $1',
      [`${p}-tier`],
    );
    expect(rowCount).toBe(0);
  });

  it('records lateness as the reset commits, not as the workflow woke (an outage delayed it)', async () => {
    // The workflow woke 195 ms after the boundary, then PostgreSQL was down: the commit comes 16 s after it.
    const due16s = new Date(Date.now() - 16_000).toISOString();
    await insertBudget(db.pool, { id: `${p}-a`, duration: '1d', resetAt: due16s });
    const a = await reset(
      request({
        kind: 'budget',
        id: `${p}-a`,
        expectedResetAt: due16s,
        periodEnd: due16s,
        lateByMs: 195,
        dueAt: due16s,
      }),
    );
    expect(a).toMatchObject({ outcome: 'reset', trigger: 'schedule' });
    expect(a.outcome === 'reset' && a.lateByMs).toBeGreaterThanOrEqual(16_000);
    // Past the grace the same reset is a catch-up, in the result and in the audit.
    const due90s = new Date(Date.now() - 90_000).toISOString();
    await insertBudget(db.pool, { id: `${p}-b`, duration: '1d', resetAt: due90s });
    const b = await reset(
      request({
        kind: 'budget',
        id: `${p}-b`,
        expectedResetAt: due90s,
        periodEnd: due90s,
        lateByMs: 195,
        dueAt: due90s,
      }),
    );
    expect(b).toMatchObject({ outcome: 'reset', trigger: 'catch_up' });
    const { rows } = await db.pool.query<{ trigger: string; late_by_ms: string }>(
      `SELECT trigger, late_by_ms FROM budget_lifecycle.reset_log WHERE budget_id = $1`,
      [`${p}-b`],
    );
    expect(rows[0]?.trigger).toBe('catch_up');
    expect(Number(rows[0]?.late_by_ms)).toBeGreaterThanOrEqual(90_000);
  });

  it('lets exactly one of two concurrent resets of the same boundary win', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, duration: '1d', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: `${p}-tier` });
    const results = await Promise.all([
      reset(request({ kind: 'budget', id: `${p}-tier` })),
      reset(request({ kind: 'budget', id: `${p}-tier` })),
      reset(request({ kind: 'budget', id: `${p}-tier` })),
    ]);
    expect(results.map((r) => r.outcome).sort()).toEqual(['already_reset', 'already_reset', 'reset']);
    const { rows } = await db.pool.query(
      'SELECT entity_count FROM budget_lifecycle.reset_log WHERE budget_id = $1',
      [`${p}-tier`],
    );
    expect(rows).toEqual([{ entity_count: 1 }]);
  });

  it('is idempotent on retry: spend accrued after the commit survives a repeated request', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, duration: '1d', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: `${p}-tier` });
    expect((await reset(request({ kind: 'budget', id: `${p}-tier` }))).outcome).toBe('reset');
    await db.pool.query('UPDATE "LiteLLM_TagTable" SET spend = 0.25 WHERE tag_name = $1', [`${p}-tag`]);
    expect((await reset(request({ kind: 'budget', id: `${p}-tier` }))).outcome).toBe('already_reset');
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-tag` })).toBe(0.25);
  });

  it('stops a repeated forced reset that keeps the calendar through the audit unique key', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, duration: '30d', resetAt: NEXT });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: `${p}-tier` });
    const forced = request({
      kind: 'budget',
      id: `${p}-tier`,
      expectedResetAt: NEXT,
      periodEnd: '2026-03-10T12:00:00.000Z',
      nextResetAt: NEXT,
      trigger: 'forced',
      reason: 'incident 7',
      requestedBy: 'ops@example.com',
    });
    expect((await reset(forced)).outcome).toBe('reset');
    await db.pool.query('UPDATE "LiteLLM_TagTable" SET spend = 1 WHERE tag_name = $1', [`${p}-tag`]);
    expect((await reset(forced)).outcome).toBe('already_reset');
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-tag` })).toBe(1);
    expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', `${p}-tier`)).toBe(NEXT);
  });

  it('finds a forced request committed by an earlier attempt, with the number of requests it answered', async () => {
    await insertBudget(db.pool, { id: `${p}-tier`, duration: '30d', resetAt: NEXT });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: `${p}-tier` });
    const attempt = (periodEnd: string, requestCount: number) =>
      request({
        kind: 'budget',
        id: `${p}-tier`,
        expectedResetAt: NEXT,
        periodEnd,
        nextResetAt: NEXT,
        trigger: 'forced',
        reason: 'drill',
        requestId: `${p}-r1`,
        workflowId: `budget/${p}-tier`,
        requestCount,
      });
    const first = attempt('2026-03-10T12:00:00.000Z', 2);
    expect((await reset(first)).outcome).toBe('reset');
    // The retried workflow task decides again: a later instant, and more requests queued behind the first.
    const retried = attempt('2026-03-10T12:00:40.000Z', 5);
    expect((await reset(retried)).outcome).toBe('already_reset');
    expect(await findCommittedReset(db.pool, retried)).toMatchObject({
      outcome: 'reset',
      periodEnd: first.periodEnd,
      entityCount: 1,
      spendTotal: 3,
      requestsAnswered: 2,
    });
  });

  it('rolls everything back when one statement fails', async () => {
    const tier = `${p}-tier`;
    await insertBudget(db.pool, { id: tier, duration: '1d', resetAt: BOUNDARY });
    await insertKey(db.pool, { token: `${p}-key`, spend: 2, budgetId: tier });
    await insertTag(db.pool, { name: `${p}-tag`, spend: 3, budgetId: tier });
    // A real constraint violation on the tag update, after the key update already ran in the same transaction.
    await db.pool.query(
      `ALTER TABLE "LiteLLM_TagTable" ADD CONSTRAINT "${p}_no_zero" CHECK (tag_name <> '${p}-tag' OR spend > 0)`,
    );
    try {
      await expect(reset(request({ kind: 'budget', id: tier }))).rejects.toThrow(/check constraint/);
    } finally {
      await db.pool.query(`ALTER TABLE "LiteLLM_TagTable" DROP CONSTRAINT "${p}_no_zero"`);
    }
    expect(await spendOf(db.pool, 'LiteLLM_VerificationToken', { token: `${p}-key` })).toBe(2);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-tag` })).toBe(3);
    expect(await resetAtOf(db.pool, 'LiteLLM_BudgetTable', 'budget_id', tier)).toBe(BOUNDARY);
    const { rowCount } = await db.pool.query(
      'SELECT 1 FROM budget_lifecycle.reset_log WHERE budget_id = $1',
      [tier],
    );
    expect(rowCount).toBe(0);
  });

  it('applies rollover: the overage over a finite cap carries into the next period', async () => {
    const tier = `${p}-tier`;
    await insertBudget(db.pool, { id: tier, maxBudget: 10, duration: '1d', resetAt: BOUNDARY });
    await insertTag(db.pool, { name: `${p}-over`, spend: 12.5, budgetId: tier });
    await insertTag(db.pool, { name: `${p}-under`, spend: 7, budgetId: tier });
    const result = await reset(request({ kind: 'budget', id: tier }), { rollover: true });
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-over` })).toBe(2.5);
    expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: `${p}-under` })).toBe(0);
    if (result.outcome !== 'reset') throw new Error('unreachable');
    expect(
      (await auditEntities(result.resetId)).map((a) => [a.entity_id, a.spend_before, a.spend_after]),
    ).toEqual([
      [`${p}-over`, 12.5, 2.5],
      [`${p}-under`, 7, 0],
    ]);

    const uncapped = `${p}-uncapped`;
    await insertUser(db.pool, {
      id: uncapped,
      spend: 12.5,
      duration: '1d',
      resetAt: BOUNDARY,
      maxBudget: null,
    });
    await reset(request({ kind: 'user', id: uncapped }), { rollover: true });
    expect(await spendOf(db.pool, 'LiteLLM_UserTable', { user_id: uncapped })).toBe(0);
  });

  it('fails with BudgetNotFoundError for a missing row', async () => {
    await expect(reset(request({ kind: 'team', id: `${p}-nobody` }))).rejects.toBeInstanceOf(
      BudgetNotFoundError,
    );
  });

  it('loads a budget row with instants in UTC', async () => {
    await insertKey(db.pool, {
      token: `${p}-k`,
      duration: '7d',
      resetAt: '2026-03-02T00:00:00Z',
      maxBudget: 5,
    });
    expect(await loadBudgetRow(db.pool, { kind: 'key', id: `${p}-k` })).toEqual({
      kind: 'key',
      id: `${p}-k`,
      duration: '7d',
      resetAt: '2026-03-02T00:00:00.000Z',
      maxBudget: 5,
      expires: null,
    });
    expect(await loadBudgetRow(db.pool, { kind: 'key', id: `${p}-none` })).toBeUndefined();
  });
});
