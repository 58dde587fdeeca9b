import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { budgetIdSearchValue, budgetWorkflowId, displayBudgetRef, type BudgetRef } from '../budget-ref.js';
import { scheduleChangedSignal } from './messages.js';
import { BudgetIdKey, BudgetKindKey, BudgetStateKey } from './search-attributes.js';

/** The workflow type name of the per-budget workflow (kept as a string so clients need not import workflow code). */
export const BUDGET_WORKFLOW_TYPE = 'budgetWorkflow';

export interface BudgetWorkflowInput {
  readonly kind: BudgetRef['kind'];
  readonly id: string;
}

export interface EnsureResult {
  readonly started: number;
  readonly signalled: number;
}

/**
 * Makes sure each budget has its workflow. A changed row is started-or-signalled in one call (signal-with-start
 * delivers `scheduleChanged` to the running workflow, or starts one that reads the row). An unchanged row is
 * started only if missing, so there are never two workflows for one budget. A row whose duration
 * was removed is signalled if its workflow runs, so it ends cleanly; nothing is started for it.
 */
export async function ensureBudgetWorkflows(
  client: Client,
  taskQueue: string,
  items: ReadonlyArray<BudgetRef & { changed: boolean; hasDuration: boolean }>,
): Promise<EnsureResult> {
  let started = 0;
  let signalled = 0;
  for (const item of items) {
    const ref = { kind: item.kind, id: item.id };
    const workflowId = budgetWorkflowId(ref);
    if (!item.hasDuration) {
      try {
        await client.workflow.getHandle(workflowId).signal(scheduleChangedSignal);
        signalled += 1;
      } catch (error) {
        if (!(error instanceof WorkflowNotFoundError)) throw error;
      }
      continue;
    }
    const options = {
      taskQueue,
      workflowId,
      args: [ref satisfies BudgetWorkflowInput] as [BudgetWorkflowInput],
      typedSearchAttributes: [
        { key: BudgetKindKey, value: ref.kind },
        { key: BudgetIdKey, value: budgetIdSearchValue(ref.id) },
        { key: BudgetStateKey, value: 'active' },
      ],
      // The server limits a summary to 400 bytes: a long id is shortened here (the input carries it whole).
      staticSummary: `Budget reset schedule for ${displayBudgetRef(ref, 60)}`,
    };
    if (item.changed) {
      await client.workflow.signalWithStart(BUDGET_WORKFLOW_TYPE, {
        ...options,
        signal: scheduleChangedSignal,
        signalArgs: [],
      });
      signalled += 1;
    } else {
      try {
        // The default conflict policy refuses a second run of a running id, which is how we know the budget
        // already had its workflow.
        await client.workflow.start(BUDGET_WORKFLOW_TYPE, options);
        started += 1;
      } catch (error) {
        if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      }
    }
  }
  return { started, signalled };
}
