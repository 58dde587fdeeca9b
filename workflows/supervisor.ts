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

/** One supervisor per namespace and task queue: `budget-supervisor` on the default queue. */
export const SUPERVISOR_WORKFLOW_ID = 'budget-supervisor';
export const DEFAULT_TASK_QUEUE = 'budget-lifecycle';

/** `budget-supervisor`, or `budget-supervisor/<queue>` for another task queue sharing the namespace. */
export function supervisorWorkflowId(taskQueue: string): string {
  return taskQueue === DEFAULT_TASK_QUEUE ? SUPERVISOR_WORKFLOW_ID : `${SUPERVISOR_WORKFLOW_ID}/${taskQueue}`;
}
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
  readonly lastFullSweep?: SupervisorPass | null;
  readonly passes?: number;
}

export interface SupervisorPass {
  readonly at: string;
  readonly full: boolean;
  readonly found: number;
  readonly started: number;
  readonly signalled: number;
}

export interface SupervisorStatus {
  readonly passes: number;
  /** Newest `updated_at` seen: changed rows are looked for after it. */
  readonly watermark: string | null;
  readonly lastFullSweep: SupervisorPass | null;
  readonly lastPass: SupervisorPass | null;
}

export const syncNowSignal = defineSignal('syncNow');
export const supervisorStatusQuery = defineQuery<SupervisorStatus>('supervisorStatus');

const { syncBudgets } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Discovers budgets and makes sure each has its workflow: rows changed since the `updated_at` watermark at every
 * sync (they also get `scheduleChanged`, and a removed duration is noticed), and every row with a duration at
 * each full sweep, the safety net for anything the watermark missed. Runs forever, continuing as new to keep its
 * history small.
 */
export async function budgetSupervisorWorkflow(args: SupervisorArgs = {}): Promise<never> {
  const syncIntervalMs = args.syncIntervalMs ?? 30_000;
  const fullSweepIntervalMs = args.fullSweepIntervalMs ?? 10 * 60_000;
  const pageSize = args.pageSize ?? 500;
  let watermark = args.watermark ?? null;
  let lastFullSweep = args.lastFullSweep ?? null;
  let passes = args.passes ?? 0;
  let runPasses = 0;
  let lastPass: SupervisorPass | null = null;
  let syncRequested = false;

  setHandler(syncNowSignal, () => {
    syncRequested = true;
  });
  setHandler(supervisorStatusQuery, () => ({ passes, watermark, lastFullSweep, lastPass }));

  for (;;) {
    syncRequested = false;
    const now = Date.now();
    const full = lastFullSweep === null || now - Date.parse(lastFullSweep.at) >= fullSweepIntervalMs;
    const changedSince =
      watermark === null ? null : new Date(Date.parse(watermark) - WATERMARK_OVERLAP_MS).toISOString();
    // null = a full sweep. Without a watermark there is nothing to compare against, so a changed pass is a sweep.
    const sweeps = [...new Set<string | null>([...(full ? [null] : []), changedSince])];
    const totals = { found: 0, started: 0, signalled: 0 };
    for (const since of sweeps) {
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
    passes += 1;
    runPasses += 1;
    lastPass = { at: new Date(now).toISOString(), full: sweeps.includes(null), ...totals };
    if (lastPass.full) lastFullSweep = lastPass;

    if (runPasses >= PASSES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof budgetSupervisorWorkflow>({
        syncIntervalMs,
        fullSweepIntervalMs,
        pageSize,
        watermark,
        lastFullSweep,
        passes,
      });
    }
    await condition(() => syncRequested, syncIntervalMs);
  }
}
