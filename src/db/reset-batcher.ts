import type pg from 'pg';
import type { BudgetKind } from '../budget-ref.js';
import { Coalescer, type Outcome } from '../coalescer.js';
import type { ResetRequest, ResetResult } from '../reset-types.js';
import { resetBudgetsTransaction, type ResetOptions } from './reset-transaction.js';

/** Budgets in one reset transaction at most. */
const MAX_BATCH = 500;
/** Transactions of one kind in flight at once (each holds a pooled connection). */
const MAX_IN_FLIGHT = 2;

/**
 * Coalesces the resets a worker is asked for at the same moment into a few set-based transactions, one kind per
 * transaction and one request per budget (a second one for the same budget waits for the next). At rest every
 * reset is a batch of one; when a herd of budgets falls due at midnight, hundreds commit per transaction. Each
 * budget keeps its own fence, audit row and outcome. If a batch fails as a whole, its budgets are retried one by
 * one, so one bad row fails only its own reset.
 */
export class ResetBatcher {
  private readonly byKind = new Map<BudgetKind, Coalescer<ResetRequest, ResetResult>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: () => Promise<{ reset: ResetOptions; tables: ReadonlySet<string> }>,
    /** Told the size of every transaction it runs (metrics, tests). */
    private readonly onBatch?: (size: number) => void,
  ) {}

  reset(request: ResetRequest): Promise<ResetResult> {
    let coalescer = this.byKind.get(request.kind);
    if (!coalescer) {
      coalescer = new Coalescer((batch) => this.run(batch), {
        maxBatch: MAX_BATCH,
        maxInFlight: MAX_IN_FLIGHT,
        key: (r) => r.id,
      });
      this.byKind.set(request.kind, coalescer);
    }
    return coalescer.run(request);
  }

  private async run(batch: readonly ResetRequest[]): Promise<ReadonlyArray<Outcome<ResetResult>>> {
    try {
      const { reset, tables } = await this.options();
      this.onBatch?.(batch.length);
      const outcomes = await resetBudgetsTransaction(this.pool, batch, reset, tables);
      return outcomes.map((o) => ('result' in o ? { value: o.result } : { error: o.error }));
    } catch (error) {
      if (batch.length === 1) return [{ error }];
      // Which budget broke the batch is unknown: each gets a transaction of its own.
      return (await Promise.all(batch.map((request) => this.run([request])))).flat();
    }
  }
}
