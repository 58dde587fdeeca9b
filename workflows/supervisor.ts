import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { SweepPageResult, SyncResult } from '../activities/discovery.js';
import type { Activities } from '../activities/index.js';
import { BUDGET_KINDS } from '../src/budget-ref.js';

/** One supervisor per namespace and task queue: `budget-supervisor` on the default queue. */
export const SUPERVISOR_WORKFLOW_ID = 'budget-supervisor';
export const DEFAULT_TASK_QUEUE = 'budget-lifecycle';

/** `budget-supervisor`, or `budget-supervisor/<queue>` for another task queue sharing the namespace. */
export function supervisorWorkflowId(taskQueue: string): string {
  return taskQueue === DEFAULT_TASK_QUEUE ? SUPERVISOR_WORKFLOW_ID : `${SUPERVISOR_WORKFLOW_ID}/${taskQueue}`;
}
const PASSES_PER_RUN = 100;

export interface SupervisorArgs {
  /** How often to look for schedule changes; default 30 s. */
  readonly syncIntervalMs?: number;
  /** How often to start any missing workflow (one start call per budget); default 24 hours. */
  readonly fullSweepIntervalMs?: number;
  /** Rows per discovery batch; default 500. */
  readonly pageSize?: number;
  /** Carried across continue-as-new. */
  readonly lastFullSweep?: SupervisorPass | null;
  readonly passes?: number;
}

export interface SupervisorPass {
  readonly at: string;
  readonly full: boolean;
  /** Budgets whose schedule differed from what their workflow knew. */
  readonly changed: number;
  /**
   * Budgets the full sweep checked (0 when the pass was not full), not counting those the same pass's sync had just
   * started or signalled.
   */
  readonly swept: number;
  readonly started: number;
  readonly signalled: number;
  readonly ended: number;
  readonly rejected: number;
}

export interface SupervisorStatus {
  readonly passes: number;
  readonly lastFullSweep: SupervisorPass | null;
  readonly lastPass: SupervisorPass | null;
}

export const syncNowSignal = defineSignal('syncNow');
export const supervisorStatusQuery = defineQuery<SupervisorStatus>('supervisorStatus');

const { syncBudgets, sweepBudgets } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Keeps one workflow per budget. Every pass compares LiteLLM's schedule columns with what each workflow was
 * last told (one set-based query per kind) and signals only the differences; spend flushes never reach a
 * workflow. Now and then a full sweep starts any workflow that went missing. Runs forever, continuing as new.
 */
export async function budgetSupervisorWorkflow(args: SupervisorArgs = {}): Promise<never> {
  const syncIntervalMs = args.syncIntervalMs ?? 30_000;
  const fullSweepIntervalMs = args.fullSweepIntervalMs ?? 24 * 60 * 60_000;
  const pageSize = args.pageSize ?? 500;
  let lastFullSweep = args.lastFullSweep ?? null;
  let passes = args.passes ?? 0;
  let runPasses = 0;
  let lastPass: SupervisorPass | null = null;
  let syncRequested = false;

  setHandler(syncNowSignal, () => {
    syncRequested = true;
  });
  setHandler(supervisorStatusQuery, () => ({ passes, lastFullSweep, lastPass }));

  for (;;) {
    syncRequested = false;
    const now = Date.now();
    const totals = { changed: 0, swept: 0, started: 0, signalled: 0, ended: 0, rejected: 0 };
    let more = true;
    while (more) {
      const result: SyncResult = await syncBudgets({ batchSize: pageSize });
      totals.changed += result.changed;
      totals.started += result.started;
      totals.signalled += result.signalled;
      totals.ended += result.ended;
      totals.rejected += result.rejected;
      more = result.more;
    }
    const full = lastFullSweep === null || now - Date.parse(lastFullSweep.at) >= fullSweepIntervalMs;
    if (full) {
      for (const kind of BUDGET_KINDS) {
        let afterId: string | undefined = '';
        while (afterId !== undefined) {
          // Budgets this pass's sync has just started or signalled have a workflow: the sweep skips them.
          const page: SweepPageResult = await sweepBudgets({
            kind,
            afterId,
            limit: pageSize,
            syncedSince: new Date(now).toISOString(),
          });
          totals.swept += page.found;
          totals.started += page.started;
          afterId = page.nextAfterId;
        }
      }
    }
    passes += 1;
    runPasses += 1;
    lastPass = { at: new Date(now).toISOString(), full, ...totals };
    if (full) lastFullSweep = lastPass;

    if (runPasses >= PASSES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof budgetSupervisorWorkflow>({
        syncIntervalMs,
        fullSweepIntervalMs,
        pageSize,
        lastFullSweep,
        passes,
      });
    }
    await condition(() => syncRequested, syncIntervalMs);
  }
}
