import { Context } from '@temporalio/activity';
import { invalidateResetCaches, type InvalidationResult } from '../src/cache/invalidation.js';
import type { ActivityDeps } from './deps.js';

export type InvalidateCachesResult = InvalidationResult | { readonly skipped: 'redis_not_configured' };

export function createCacheActivities(deps: ActivityDeps) {
  return {
    /** Busts LiteLLM's Redis caches and tells every proxy pod, for one committed reset. */
    async invalidateCaches(args: { resetId: string }): Promise<InvalidateCachesResult> {
      if (!deps.redis) return { skipped: 'redis_not_configured' };
      try {
        return await invalidateResetCaches(
          deps.db,
          deps.redis,
          deps.config.redisNamespace,
          args.resetId,
          deps.config.redisTtlSeconds,
        );
      } catch (error) {
        deps.observer?.onCacheInvalidationFailure?.();
        Context.current().log.warn('invalidateCaches failed; will retry', {
          resetId: args.resetId,
          error: String(error),
        });
        throw error;
      }
    },
  };
}
