import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { BUDGET_KINDS, displayText, type BudgetKind } from '../src/budget-ref.js';
import { findScheduleChanges, forgetSchedules, rememberSchedules } from '../src/db/budget-sync.js';
import { discoverBudgetPage } from '../src/db/discovery.js';
import {
  applyScheduleChanges,
  forEachConcurrently,
  refusal,
  startIfMissing,
} from '../src/temporal/budget-workflows.js';
import type { ActivityDeps } from './deps.js';

export interface SyncResult {
  /** Budgets whose schedule differed from what their workflow knew. */
  readonly changed: number;
  readonly started: number;
  readonly signalled: number;
  readonly ended: number;
  readonly rejected: number;
  /** More changes are waiting: call again. */
  readonly more: boolean;
}

export interface SweepPageArgs {
  readonly kind: BudgetKind;
  readonly afterId: string;
  readonly limit: number;
  /**
   * Skip budgets synced since this instant (the start of the pass whose sync just ran): their workflows were
   * started or signalled by it. Absent in the arguments of supervisors before it: nothing is skipped.
   */
  readonly syncedSince?: string;
}

export interface SweepPageResult {
  readonly found: number;
  /** Workflows that were missing (terminated by hand, lost) and were started again. */
  readonly started: number;
  readonly nextAfterId?: string;
}

type Temporal = { client: Client; taskQueue: string };
type Log = { warn(message: string, meta: object): void };

/**
 * Finds the budgets whose schedule changed and tells their workflows, `batchSize` at a time, until none are left
 * or `maxBatches` were handled (then `more` is true). What each workflow was told is remembered in the same
 * pass, so a change costs one signal and spend traffic costs nothing.
 */
export async function syncScheduleChanges(
  deps: Pick<ActivityDeps, 'db'> & { log?: Log },
  temporal: Temporal,
  options: { batchSize?: number; maxBatches?: number; heartbeat?: () => void } = {},
): Promise<SyncResult> {
  const batchSize = options.batchSize ?? 500;
  const maxBatches = options.maxBatches ?? 20;
  const totals = { changed: 0, started: 0, signalled: 0, ended: 0, rejected: 0 };
  let batches = 0;
  for (const kind of BUDGET_KINDS) {
    for (;;) {
      if (batches >= maxBatches) return { ...totals, more: true };
      const changes = await findScheduleChanges(deps.db, kind, batchSize);
      if (changes.length === 0) break;
      batches += 1;
      const applied = await applyScheduleChanges(temporal.client, temporal.taskQueue, kind, changes);
      const rejected = new Map(applied.rejected.map((r) => [r.id, r.reason]));
      const gone = new Set(applied.ended);
      await rememberSchedules(
        deps.db,
        kind,
        changes.filter((c) => !gone.has(c.id)).map((c) => ({ ...c, rejected: rejected.get(c.id) })),
      );
      await forgetSchedules(deps.db, kind, applied.ended);
      for (const { id, reason } of applied.rejected) {
        deps.log?.warn('budget rejected by Temporal; it is retried when its row changes', {
          budgetKind: kind,
          // An id long enough to be refused would otherwise fill the log line.
          budgetId: displayText(id),
          reason,
        });
      }
      totals.changed += changes.length;
      totals.started += applied.started;
      totals.signalled += applied.signalled;
      totals.ended += applied.ended.length;
      totals.rejected += applied.rejected.length;
      options.heartbeat?.();
      if (changes.length < batchSize) break;
    }
  }
  return { ...totals, more: false };
}

/**
 * The safety net: one page of every live budget, starting a workflow for any that has none (one terminated by
 * hand, say). Costs a start call per budget, so it runs rarely (the supervisor's full-sweep interval).
 */
export async function sweepBudgetPage(
  deps: Pick<ActivityDeps, 'db'> & { log?: Log },
  temporal: Temporal,
  args: SweepPageArgs,
): Promise<SweepPageResult> {
  const page = await discoverBudgetPage(deps.db, args);
  let started = 0;
  await forEachConcurrently(page.items, 16, async (item) => {
    try {
      if (await startIfMissing(temporal.client, temporal.taskQueue, item)) started += 1;
    } catch (error) {
      // A budget Temporal refuses (discovery recorded why) must not fail the page: the sweep would retry it
      // forever and never reach the budgets after it, nor let the supervisor's next pass run.
      const reason = refusal(error);
      if (reason === undefined) throw error;
      deps.log?.warn('budget rejected by Temporal; the sweep goes on without it', {
        budgetKind: item.kind,
        budgetId: displayText(item.id),
        reason,
      });
    }
  });
  return { found: page.items.length, started, nextAfterId: page.nextAfterId };
}

export function createDiscoveryActivities(deps: ActivityDeps) {
  const temporal = (): Temporal => {
    if (!deps.temporal) throw new Error('discovery needs a Temporal client in the activity dependencies');
    return deps.temporal;
  };
  return {
    /** Tells the workflows of budgets whose schedule changed (the supervisor's every pass). */
    async syncBudgets(args: { batchSize?: number; maxBatches?: number } = {}): Promise<SyncResult> {
      return syncScheduleChanges({ db: deps.db, log: Context.current().log }, temporal(), {
        ...args,
        heartbeat: () => Context.current().heartbeat(),
      });
    },
    /** One page of the full sweep. */
    async sweepBudgets(args: SweepPageArgs): Promise<SweepPageResult> {
      return sweepBudgetPage({ db: deps.db, log: Context.current().log }, temporal(), args);
    },
  };
}

/** A whole discovery pass outside a workflow (what `budgetctl sync` runs): every change, and with `full` a sweep. */
export async function syncAllBudgets(
  deps: Pick<ActivityDeps, 'db'>,
  temporal: Temporal,
  options: { full: boolean; pageSize?: number },
): Promise<{ changed: number; started: number; signalled: number; ended: number; rejected: number }> {
  const totals = { changed: 0, started: 0, signalled: 0, ended: 0, rejected: 0 };
  let more = true;
  while (more) {
    const result = await syncScheduleChanges(deps, temporal, { batchSize: options.pageSize });
    totals.changed += result.changed;
    totals.started += result.started;
    totals.signalled += result.signalled;
    totals.ended += result.ended;
    totals.rejected += result.rejected;
    more = result.more;
  }
  if (!options.full) return totals;
  for (const kind of BUDGET_KINDS) {
    let afterId: string | undefined = '';
    while (afterId !== undefined) {
      const page = await sweepBudgetPage(deps, temporal, { kind, afterId, limit: options.pageSize ?? 500 });
      totals.started += page.started;
      afterId = page.nextAfterId;
    }
  }
  return totals;
}
