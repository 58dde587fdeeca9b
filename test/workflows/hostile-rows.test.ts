import { describe, expect, it } from 'vitest';
import type { BudgetRef } from '../../src/budget-ref.js';
import { useBudgetTestEnv, type BudgetTestEnv } from '../helpers/budget-env.js';
import { insertBudget, insertTag, insertTeam, spendOf } from '../helpers/litellm-rows.js';

let t: BudgetTestEnv;
useBudgetTestEnv((env) => (t = env));

const DAY = 86_400_000;
const nextUtcMidnight = (now: Date) => new Date(Math.floor(now.getTime() / DAY) * DAY + DAY);

/** A workflow's history so far: a crash loop shows up as failed tasks or as a history that keeps growing. */
async function historyCounts(ref: BudgetRef): Promise<{ failedTasks: number; events: number }> {
  const history = await t.env.client.workflow.getHandle(`budget/${ref.kind}/${ref.id}`).fetchHistory();
  const events = history.events ?? [];
  return {
    failedTasks: events.filter((e) => e.workflowTaskFailedEventAttributes).length,
    events: events.length,
  };
}

describe('hostile rows through the budget workflow (time skipping)', () => {
  it('reads SQL-looking, empty and 10 kB durations as LiteLLM does, and an unusable 10 kB one as invalid, without crash-looping', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      // From noon: the first boundary is hours away, not in the seconds it takes to start five workflows.
      const boundary = nextUtcMidnight(await t.skipToPhase(DAY, DAY / 2));
      const rows = {
        sql: '1d; drop table x',
        empty: '',
        text: `1${'x'.repeat(10_240)}`,
        huge: `${'9'.repeat(10_240)}d`,
      } as const;
      const refs = new Map<keyof typeof rows, BudgetRef>();
      for (const [name, duration] of Object.entries(rows) as Array<[keyof typeof rows, string]>) {
        await insertTeam(t.db.pool, {
          id: `dur-${name}`,
          spend: 3,
          duration,
          resetAt: boundary.toISOString(),
        });
        const ref: BudgetRef = { kind: 'team', id: `dur-${name}` };
        refs.set(name, ref);
        await t.start(ref, taskQueue);
      }
      // A healthy tier beside them, to show they block nobody.
      await insertBudget(t.db.pool, { id: 'dur-healthy', duration: '1d', resetAt: boundary.toISOString() });
      await insertTag(t.db.pool, { name: 'dur-healthy-tag', spend: 3, budgetId: 'dur-healthy' });
      const healthy: BudgetRef = { kind: 'budget', id: 'dur-healthy' };
      await t.start(healthy, taskQueue);

      // A number past what a double holds: LiteLLM cannot compute it either. Invalid, with an error that quotes the start of the value.
      const huge = await t.waitForStatus(refs.get('huge')!, (s) => s.state === 'invalid');
      expect(huge.lastError).toMatch(
        /^Invalid budget_duration "9{60}…" \(10241 characters\): not a whole number;/,
      );
      expect(huge.lastError!.length).toBeLessThan(400);
      const invalidHistory = await historyCounts(refs.get('huge')!);
      // The rest are read as LiteLLM's job reads them: `1d` (the text after it ignored), and daily at midnight.
      for (const name of ['sql', 'empty', 'text'] as const) {
        const s = await t.waitForStatus(refs.get(name)!, (st) => st.nextResetAt === boundary.toISOString());
        expect(s).toMatchObject({ state: 'active', lastError: null, duration: rows[name] });
      }

      await t.sleepUntil(new Date(boundary.getTime() + DAY + 60_000));
      for (const name of ['sql', 'empty', 'text'] as const) {
        const s = await t.waitForStatus(refs.get(name)!, (st) => st.cycle === 2);
        expect(s.state).toBe('active');
        expect(s.lastError).toBeNull();
      }
      for (const name of ['sql', 'empty', 'text'] as const)
        expect(await spendOf(t.db.pool, 'LiteLLM_TeamTable', { team_id: `dur-${name}` })).toBe(0);
      // The invalid one waited a day without touching its row and without a single workflow task more.
      expect(await spendOf(t.db.pool, 'LiteLLM_TeamTable', { team_id: 'dur-huge' })).toBe(3);
      expect((await t.status(refs.get('huge')!)).state).toBe('invalid');
      expect(await historyCounts(refs.get('huge')!)).toEqual({
        failedTasks: 0,
        events: invalidHistory.events,
      });
      expect(await t.db.pool.query(`SELECT to_regclass('public.x') AS x`)).toMatchObject({
        rows: [{ x: null }],
      });
      expect((await t.waitForStatus(healthy, (s) => s.cycle === 2)).state).toBe('active');
      expect(await spendOf(t.db.pool, 'LiteLLM_TagTable', { tag_name: 'dur-healthy-tag' })).toBe(0);
    });
  });

  it('resets a tier with no linked rows on schedule, auditing zero entities', async () => {
    const { worker, taskQueue } = await t.worker();
    await worker.runUntil(async () => {
      const boundary = nextUtcMidnight(await t.now());
      await insertBudget(t.db.pool, { id: 'empty-tier', duration: '1d', resetAt: boundary.toISOString() });
      const ref: BudgetRef = { kind: 'budget', id: 'empty-tier' };
      await t.start(ref, taskQueue);
      await t.waitForStatus(ref, (s) => s.nextResetAt === boundary.toISOString());
      await t.sleepUntil(new Date(boundary.getTime() + DAY + 60_000));
      const s = await t.waitForStatus(ref, (st) => st.cycle === 2);
      expect(s).toMatchObject({ state: 'active', lastError: null });
      expect(s.lastReset).toMatchObject({ entityCount: 0, spendTotal: 0 });
      expect((await t.resetLog(ref)).map((r) => r.entity_count)).toEqual([0, 0]);
    });
  });
});
