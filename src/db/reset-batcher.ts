import type pg from 'pg';
import type { BudgetKind } from '../budget-ref.js';
import type { ResetRequest, ResetResult } from '../reset-types.js';
import { resetBudgetsTransaction, type ResetOptions } from './reset-transaction.js';

/** Budgets in one reset transaction at most. */
const MAX_BATCH = 500;
/** Transactions of one kind in flight at once (each holds a pooled connection). */
const MAX_IN_FLIGHT = 2;

interface Waiting {
  readonly request: ResetRequest;
  resolve(result: ResetResult): void;
  reject(error: unknown): void;
}

/**
 * Coalesces the resets a worker is asked for at the same moment into a few set-based transactions. Nothing waits
 * for a batch to fill: a reset runs at once when no transaction of its kind is in flight, and the ones that arrive
 * meanwhile go together in the next. At rest every reset is a batch of one; when a herd of budgets falls due at
 * midnight, hundreds commit per transaction. Each budget keeps its own fence, audit row and outcome. If a batch
 * fails as a whole, its budgets are retried one by one, so one bad row fails only its own reset.
 */
export class ResetBatcher {
  private readonly queues = new Map<BudgetKind, Waiting[]>();
  private readonly inFlight = new Map<BudgetKind, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: () => Promise<{ reset: ResetOptions; tables: ReadonlySet<string> }>,
    /** Told the size of every transaction it runs (metrics, tests). */
    private readonly onBatch?: (size: number) => void,
  ) {}

  reset(request: ResetRequest): Promise<ResetResult> {
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(request.kind) ?? [];
      queue.push({ request, resolve, reject });
      this.queues.set(request.kind, queue);
      this.drain(request.kind);
    });
  }

  private drain(kind: BudgetKind): void {
    const queue = this.queues.get(kind) ?? [];
    while (queue.length > 0 && (this.inFlight.get(kind) ?? 0) < MAX_IN_FLIGHT) {
      // One request per budget per batch: a second one for the same budget waits for the next.
      const ids = new Set<string>();
      const batch: Waiting[] = [];
      for (let i = 0; i < queue.length && batch.length < MAX_BATCH;) {
        const waiting = queue[i] as Waiting;
        if (ids.has(waiting.request.id)) {
          i += 1;
          continue;
        }
        ids.add(waiting.request.id);
        batch.push(waiting);
        queue.splice(i, 1);
      }
      this.inFlight.set(kind, (this.inFlight.get(kind) ?? 0) + 1);
      void this.run(batch).finally(() => {
        this.inFlight.set(kind, (this.inFlight.get(kind) ?? 1) - 1);
        this.drain(kind);
      });
    }
  }

  private async run(batch: readonly Waiting[]): Promise<void> {
    try {
      const { reset, tables } = await this.options();
      this.onBatch?.(batch.length);
      const outcomes = await resetBudgetsTransaction(
        this.pool,
        batch.map((w) => w.request),
        reset,
        tables,
      );
      for (const [i, waiting] of batch.entries()) {
        const outcome = outcomes[i];
        if (outcome && 'result' in outcome) waiting.resolve(outcome.result);
        else waiting.reject(outcome?.error ?? new Error('the reset batch returned no outcome'));
      }
    } catch (error) {
      if (batch.length === 1) {
        batch[0]?.reject(error);
        return;
      }
      // Which budget broke the batch is unknown: each gets a transaction of its own.
      await Promise.all(batch.map((waiting) => this.run([waiting])));
    }
  }
}
