/** One item's outcome in a batch. */
export type Outcome<R> = { readonly value: R } | { readonly error: unknown };

export interface CoalescerOptions<T> {
  /** Items in one batch at most. */
  readonly maxBatch: number;
  /** Batches running at once. */
  readonly maxInFlight: number;
  /** Items with the same key never share a batch (the later one waits for the next). */
  readonly key?: (item: T) => string;
}

/**
 * Runs the calls that arrive at the same moment as a few batches. Nothing waits for a batch to fill: an item runs
 * at once when fewer than `maxInFlight` batches are running, and the items that arrive meanwhile go together in
 * the next. At rest every batch is of one item; under a burst, up to `maxBatch`.
 */
export class Coalescer<T, R> {
  private queue: Array<{ item: T; settle: (outcome: Outcome<R>) => void }> = [];
  private inFlight = 0;

  constructor(
    private readonly runBatch: (items: readonly T[]) => Promise<ReadonlyArray<Outcome<R>>>,
    private readonly options: CoalescerOptions<T>,
  ) {}

  run(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({
        item,
        settle: (outcome) => ('value' in outcome ? resolve(outcome.value) : reject(outcome.error)),
      });
      this.drain();
    });
  }

  private drain(): void {
    while (this.queue.length > 0 && this.inFlight < this.options.maxInFlight) {
      const batch = this.take();
      this.inFlight += 1;
      void this.runAndSettle(batch).finally(() => {
        this.inFlight -= 1;
        this.drain();
      });
    }
  }

  /** Removes the next batch from the queue: in arrival order, one item per key. */
  private take(): typeof this.queue {
    const key = this.options.key;
    if (!key) return this.queue.splice(0, this.options.maxBatch);
    // One pass over the queue (a herd queues thousands; taking items out one by one was quadratic).
    const keys = new Set<string>();
    const batch: typeof this.queue = [];
    const rest: typeof this.queue = [];
    for (const waiting of this.queue) {
      const k = batch.length < this.options.maxBatch ? key(waiting.item) : undefined;
      if (k === undefined || keys.has(k)) {
        rest.push(waiting);
      } else {
        keys.add(k);
        batch.push(waiting);
      }
    }
    this.queue = rest;
    return batch;
  }

  private async runAndSettle(batch: typeof this.queue): Promise<void> {
    let outcomes: ReadonlyArray<Outcome<R>>;
    try {
      outcomes = await this.runBatch(batch.map((w) => w.item));
    } catch (error) {
      outcomes = batch.map(() => ({ error }));
    }
    for (const [i, waiting] of batch.entries())
      waiting.settle(outcomes[i] ?? { error: new Error('the batch returned no outcome for this item') });
  }
}
