import type { Redis } from 'ioredis';
import type pg from 'pg';
import { invalidateCorrectedEntities } from './cache/invalidation.js';
import { checkNextDueReset, hasDueCheck, type DueCheck } from './db/late-spend.js';

export interface LateSpendSweeperOptions {
  readonly db: pg.Pool;
  readonly redis?: Redis;
  readonly redisNamespace?: string;
  /** How often to look for due checks; a check runs at most this long after it is due. */
  readonly intervalMs: number;
  /** Checks in flight at once (each one transaction on its own connection). */
  readonly concurrency: number;
  /** How long a check waits for a LiteLLM row lock before it fails and is postponed; default 5 s. */
  readonly lockTimeoutMs?: number;
  /** Each due reset: checked, or its check failed and was postponed or dropped. */
  readonly onCheck?: (check: DueCheck) => void;
  /** A sweep that stopped (the database unreachable; the next one starts after `intervalMs`), or Redis failed. */
  readonly onError?: (error: Error) => void;
  /** Each look on the timer, once it has finished: how many due checks it ran (0 when nothing was due). */
  readonly onLook?: (checked: number) => void;
}

/**
 * Runs the late-spend checks of committed resets when they fall due (`reset_log.late_spend_due_at`), in the worker
 * process rather than in each budget's workflow: the checks of a herd of 10,000 resets then cost a few database
 * round trips each, instead of a timer, two workflow tasks and an activity per budget half a minute after the
 * herd. The due time is committed with the reset, so a check is never lost: if this worker stops, any other
 * worker (or this one after its restart) runs it. Workers sweep concurrently without waiting on each other.
 */
export class LateSpendSweeper {
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  private stopped = false;

  constructor(private readonly options: LateSpendSweeperOptions) {}

  start(): void {
    this.schedule();
  }

  /** Stops looking for due checks and waits for the checks in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Runs every check that is due now; returns how many it ran. */
  async sweep(): Promise<number> {
    // Nothing due (almost always): one statement, no transaction.
    if (!(await hasDueCheck(this.options.db))) return 0;
    let checked = 0;
    const lane = async () => {
      for (;;) {
        if (this.stopped) return;
        const next = await checkNextDueReset(this.options.db, { lockTimeoutMs: this.options.lockTimeoutMs });
        if (!next) return;
        checked += 1;
        if ('result' in next && this.options.redis) {
          // Committed already: a Redis failure leaves LiteLLM's copies to expire (60 s), and the sweep goes on.
          await invalidateCorrectedEntities(
            this.options.redis,
            this.options.redisNamespace,
            next.result.corrections,
          ).catch((error: Error) => this.options.onError?.(error));
        }
        this.options.onCheck?.(next);
      }
    };
    await Promise.all(Array.from({ length: this.options.concurrency }, lane));
    return checked;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep();
      this.running
        .then(
          (checked) => this.options.onLook?.(checked),
          (error: Error) => this.options.onError?.(error),
        )
        .finally(() => {
          this.running = undefined;
          this.schedule();
        });
    }, this.options.intervalMs);
    // A sweep never keeps a stopping worker alive: any worker runs the due checks later.
    this.timer.unref();
  }
}
