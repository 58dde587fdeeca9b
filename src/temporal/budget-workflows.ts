import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  isGrpcServiceError,
  type Client,
} from '@temporalio/client';
import { status as grpcStatus } from '@grpc/grpc-js';
import {
  budgetIdSearchValue,
  budgetWorkflowId,
  displayBudgetRef,
  type BudgetKind,
  type BudgetRef,
} from '../budget-ref.js';
import type { ScheduleChange } from '../db/budget-sync.js';
import { scheduleChangedSignal } from './messages.js';
import { BudgetIdKey, BudgetKindKey, BudgetStateKey } from './search-attributes.js';

/** The workflow type name of the per-budget workflow (kept as a string so clients need not import workflow code). */
export const BUDGET_WORKFLOW_TYPE = 'budgetEntityWorkflow';
/** Release 0.1's per-budget workflow type; its runs move to {@link BUDGET_WORKFLOW_TYPE} by continue-as-new. */
export const LEGACY_BUDGET_WORKFLOW_TYPE = 'budgetWorkflow';
/** Visibility clause for per-budget workflows of either type (release 0.1 runs until they continue as new). */
export const BUDGET_WORKFLOW_TYPES_CLAUSE = `WorkflowType IN ('${BUDGET_WORKFLOW_TYPE}', '${LEGACY_BUDGET_WORKFLOW_TYPE}')`;
/** Start and signal calls in flight at once during discovery: 10,000 new budgets start in seconds, not minutes. */
const CONCURRENT_CALLS = 16;

export interface BudgetWorkflowInput {
  readonly kind: BudgetRef['kind'];
  readonly id: string;
}

/** What discovery did with a batch of schedule changes. */
export interface AppliedChanges {
  readonly started: number;
  readonly signalled: number;
  /** Budgets gone from LiteLLM (deleted, duration removed, key expired) whose workflow was told, or had ended. */
  readonly ended: string[];
  /** Budgets Temporal refused a workflow for, with the reason (e.g. an id it cannot hold). */
  readonly rejected: Array<{ readonly id: string; readonly reason: string }>;
}

function startOptions(ref: BudgetRef, taskQueue: string) {
  return {
    taskQueue,
    workflowId: budgetWorkflowId(ref),
    args: [{ kind: ref.kind, id: ref.id }] as [BudgetWorkflowInput],
    typedSearchAttributes: [
      { key: BudgetKindKey, value: ref.kind },
      { key: BudgetIdKey, value: budgetIdSearchValue(ref.id) },
      { key: BudgetStateKey, value: 'active' },
    ],
    // The server limits a summary to 400 bytes: a long id is shortened here (the input carries it whole).
    staticSummary: `Budget reset schedule for ${displayBudgetRef(ref, 60)}`,
  };
}

/**
 * Temporal's answer that no retry can change (an id or payload it refuses); anything else is transient. A search
 * attribute the namespace does not know yet is transient too: a frontend learns of one just registered only when
 * it refreshes its cache, and a budget marked refused would not be tried again until its row changes.
 */
export function refusal(error: unknown): string | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (!isGrpcServiceError(e) || e.code !== grpcStatus.INVALID_ARGUMENT) continue;
    const reason = e.details || e.message;
    return UNKNOWN_SEARCH_ATTRIBUTE.test(reason) ? undefined : reason;
  }
  return undefined;
}

/**
 * The server's words for a search attribute it does not know: its validator's, and those of a SQL visibility
 * store's mapping (the dev server's).
 */
const UNKNOWN_SEARCH_ATTRIBUTE =
  /search attribute \S+ is not defined|no mapping defined for search attribute/;

/**
 * Acts on schedule changes: a new budget gets its workflow; a changed one gets `scheduleChanged` (started again
 * if its workflow is gone); a budget gone from LiteLLM gets `scheduleChanged` so its workflow reads the row and
 * ends. Nothing else is ever sent, so spend traffic never reaches a workflow.
 */
export async function applyScheduleChanges(
  client: Client,
  taskQueue: string,
  kind: BudgetKind,
  changes: readonly ScheduleChange[],
): Promise<AppliedChanges> {
  const result = {
    started: 0,
    signalled: 0,
    ended: [] as string[],
    rejected: [] as AppliedChanges['rejected'],
  };
  await forEachConcurrently(changes, CONCURRENT_CALLS, async (change) => {
    const ref = { kind, id: change.id };
    try {
      if (!change.live) {
        await client.workflow
          .getHandle(budgetWorkflowId(ref))
          .signal(scheduleChangedSignal)
          .catch((error: unknown) => {
            if (!(error instanceof WorkflowNotFoundError)) throw error;
          });
        result.ended.push(change.id);
      } else if (!change.known && (await startIfMissing(client, taskQueue, ref))) {
        result.started += 1;
      } else {
        await client.workflow.signalWithStart(BUDGET_WORKFLOW_TYPE, {
          ...startOptions(ref, taskQueue),
          signal: scheduleChangedSignal,
          signalArgs: [],
        });
        result.signalled += 1;
      }
    } catch (error) {
      const reason = refusal(error);
      if (reason === undefined) throw error;
      result.rejected.push({ id: change.id, reason });
    }
  });
  return result;
}

/** Starts the budget's workflow unless one is running; true when it started one. */
export async function startIfMissing(client: Client, taskQueue: string, ref: BudgetRef): Promise<boolean> {
  try {
    // The default conflict policy refuses a second run of a running id, which is how we know it had one.
    await client.workflow.start(BUDGET_WORKFLOW_TYPE, startOptions(ref, taskQueue));
    return true;
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw error;
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; the first error rejects. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
