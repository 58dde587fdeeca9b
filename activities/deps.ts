import type { Client } from '@temporalio/client';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from '../src/config.js';
import type { ResetRequest, ResetResult } from '../src/reset-types.js';

/** Hooks the worker uses to count what activities do (metrics); optional everywhere else. */
export interface ActivityObserver {
  onReset?(request: ResetRequest, result: ResetResult): void;
  onCacheInvalidationFailure?(): void;
}

/** What activities need, handed in by the worker (or by a test, pointed at real test services). */
export interface ActivityDeps {
  readonly db: pg.Pool;
  /** Absent when no Redis is configured: cache invalidation is then skipped. */
  readonly redis?: Redis;
  readonly config: Pick<
    Config,
    'schedule' | 'rollover' | 'defaultEndUserBudgetId' | 'redisNamespace' | 'lateSpendDelayMs'
  > &
    /** LiteLLM's Redis expiry for the window counters a reset sets; LiteLLM's default when absent. */
    Partial<Pick<Config, 'redisTtlSeconds'>>;
  readonly observer?: ActivityObserver;
  /** The client and task queue the supervisor's discovery starts budget workflows with. */
  readonly temporal?: { readonly client: Client; readonly taskQueue: string };
}
