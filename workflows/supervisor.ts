import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { SyncPageResult } from '../activities/discovery.js';
import type { Activities } from '../activities/index.js';
import { BUDGET_KINDS } from '../src/budget-ref.js';

/** Fixed id: there is one supervisor per namespace and task queue. */
export const SUPERVISOR_WORKFLOW_ID = 'budget-supervisor';
/** Re-read rows changed this long before the watermark: a transaction may commit after a later one. */
const WATERMARK_OVERLAP_MS = 60_000;
const PASSES_PER_RUN = 50;

export interface SupervisorArgs {
  /** How often to look for changed rows; default 30 s. */
  readonly syncIntervalMs?: number;
  /** How often to sweep every row as a safety net; default 10 minutes. */
  readonly fullSweepIntervalMs?: number;
  /** Rows per discovery page; default 500. */
  readonly pageSize?: number;
  /** Carried across continue-as-new. */
  readonly watermark?: string | null;
  readonly lastFullSweepAt?: string | null;
  readonly passes?: number;
}

export interface SupervisorStatus {
  readonly passes: number;
  readonly watermark: string | null;
  readonly lastFullSweepAt: string | null;
  readonly lastPass: {
    readonly at: string;
    readonly full: boolean;
    readonly found: number;
    readonly started: number;
    readonly signalled: number;
  } | null;
}

export const syncNowSignal = defineSignal('syncNow');
export const supervisorStatusQuery = defineQuery<SupervisorStatus>('supervisorStatus');

const { syncBudgets } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Discovers budgets with a duration and makes sure each has its workflow: changed rows (by `updated_at`) every
 * sync interval, and every row at each full sweep. Runs forever, continuing as new to keep its history small.
 */
export async function budgetSupervisorWorkflow(args: SupervisorArgs = {}): Promise<never> {
  const syncIntervalMs = args.syncIntervalMs ?? 30_000;
  const fullSweepIntervalMs = args.fullSweepIntervalMs ?? 10 * 60_000;
  const pageSize = args.pageSize ?? 500;
  let watermark = args.watermark ?? null;
  let lastFullSweepAt = args.lastFullSweepAt ?? null;
  let passes = args.passes ?? 0;
  let runPasses = 0;
  let lastPass: SupervisorStatus['lastPass'] = null;
  let syncRequested = false;

  setHandler(syncNowSignal, () => {
    syncRequested = true;
  });
  setHandler(supervisorStatusQuery, () => ({ passes, watermark, lastFullSweepAt, lastPass }));

  for (;;) {
    syncRequested = false;
    const now = Date.now();
    const full = lastFullSweepAt === null || now - Date.parse(lastFullSweepAt) >= fullSweepIntervalMs;
    const changedSince =
      full || watermark === null
        ? null
        : new Date(Date.parse(watermark) - WATERMARK_OVERLAP_MS).toISOString();
    const totals = { found: 0, started: 0, signalled: 0 };
    // A full sweep finds rows with a duration; the changed pass also finds rows whose duration was removed.
    const passesToRun: Array<string | null> =
      full && watermark !== null
        ? [null, new Date(Date.parse(watermark) - WATERMARK_OVERLAP_MS).toISOString()]
        : [changedSince];
    for (const since of passesToRun) {
      for (const kind of BUDGET_KINDS) {
        let afterId: string | undefined = '';
        while (afterId !== undefined) {
          const page: SyncPageResult = await syncBudgets({
            kind,
            afterId,
            limit: pageSize,
            changedSince: since,
          });
          totals.found += page.found;
          totals.started += page.started;
          totals.signalled += page.signalled;
          if (page.maxUpdatedAt && (!watermark || page.maxUpdatedAt > watermark))
            watermark = page.maxUpdatedAt;
          afterId = page.nextAfterId;
        }
      }
    }
    if (full) lastFullSweepAt = new Date(now).toISOString();
    passes += 1;
    runPasses += 1;
    lastPass = { at: new Date(now).toISOString(), full, ...totals };

    if (runPasses >= PASSES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof budgetSupervisorWorkflow>({
        syncIntervalMs,
        fullSweepIntervalMs,
        pageSize,
        watermark,
        lastFullSweepAt,
        passes,
      });
    }
    await condition(() => syncRequested, syncIntervalMs);
  }
}
