import { invalidateCorrectedEntities } from '../src/cache/invalidation.js';
import { reconcileLateSpend, type LateSpendResult } from '../src/db/late-spend.js';
import type { ActivityDeps } from './deps.js';

export function createLateSpendActivities(deps: ActivityDeps) {
  return {
    /**
     * Period-exact spend for a reset of an earlier release, whose workflow checks it itself (this release's
     * resets are checked by the worker's sweeper, src/late-spend-sweeper.ts): it moves spend of requests that
     * started before the boundary, flushed after the reset, out of the new period, records it in the audit, and
     * drops LiteLLM's cached copies of every corrected entity. Idempotent.
     */
    async reconcileLateSpend(args: { resetId: string }): Promise<LateSpendResult> {
      const result = await reconcileLateSpend(deps.db, args.resetId);
      if (deps.redis)
        await invalidateCorrectedEntities(deps.redis, deps.config.redisNamespace, result.corrections);
      return result;
    },
  };
}
