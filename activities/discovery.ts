import type { Client } from '@temporalio/client';
import { BUDGET_KINDS, type BudgetKind } from '../src/budget-ref.js';
import { discoverBudgetPage } from '../src/db/discovery.js';
import { ensureBudgetWorkflows } from '../src/temporal/budget-workflows.js';
import type { ActivityDeps } from './deps.js';

export interface SyncPageArgs {
  readonly kind: BudgetKind;
  readonly afterId: string;
  readonly limit: number;
  /** Only rows changed since this instant (they also get `scheduleChanged`); null for a full sweep. */
  readonly changedSince: string | null;
}

export interface SyncPageResult {
  readonly found: number;
  readonly started: number;
  readonly signalled: number;
  readonly nextAfterId?: string;
  /** Newest `updated_at` on the page: the supervisor's next watermark. */
  readonly maxUpdatedAt: string | null;
}

/** Discovers one page of budgets and makes sure each has its workflow. */
export async function syncBudgetPage(
  deps: Pick<ActivityDeps, 'db'>,
  temporal: { client: Client; taskQueue: string },
  args: SyncPageArgs,
): Promise<SyncPageResult> {
  const page = await discoverBudgetPage(deps.db, args);
  const changed = args.changedSince !== null;
  const { started, signalled } = await ensureBudgetWorkflows(
    temporal.client,
    temporal.taskQueue,
    page.items.map((item) => ({ ...item, changed })),
  );
  const maxUpdatedAt = page.items.reduce<string | null>(
    (max, item) => (item.updatedAt && (!max || item.updatedAt > max) ? item.updatedAt : max),
    null,
  );
  return { found: page.items.length, started, signalled, nextAfterId: page.nextAfterId, maxUpdatedAt };
}

/** Runs one whole discovery pass (every kind, every page): what `budgetctl sync` does. */
export async function syncAllBudgets(
  deps: Pick<ActivityDeps, 'db'>,
  temporal: { client: Client; taskQueue: string },
  options: { changedSince: string | null; pageSize?: number },
): Promise<{ found: number; started: number; signalled: number }> {
  const totals = { found: 0, started: 0, signalled: 0 };
  for (const kind of BUDGET_KINDS) {
    let afterId: string | undefined = '';
    while (afterId !== undefined) {
      const page: SyncPageResult = await syncBudgetPage(deps, temporal, {
        kind,
        afterId,
        limit: options.pageSize ?? 500,
        changedSince: options.changedSince,
      });
      totals.found += page.found;
      totals.started += page.started;
      totals.signalled += page.signalled;
      afterId = page.nextAfterId;
    }
  }
  return totals;
}

export function createDiscoveryActivities(deps: ActivityDeps) {
  return {
    /** One page of discovery for the supervisor. */
    async syncBudgets(args: SyncPageArgs): Promise<SyncPageResult> {
      if (!deps.temporal) throw new Error('syncBudgets needs a Temporal client in the activity dependencies');
      return syncBudgetPage(deps, deps.temporal, args);
    },
  };
}
