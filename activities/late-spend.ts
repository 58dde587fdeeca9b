import { entityType, decodeEntityId } from '../src/entities.js';
import { INVALIDATION_CHANNEL, invalidationMessage, namespaced } from '../src/cache/invalidation.js';
import { reconcileLateSpend, type LateSpendResult } from '../src/db/late-spend.js';
import type { ActivityDeps } from './deps.js';

export function createLateSpendActivities(deps: ActivityDeps) {
  return {
    /**
     * Period-exact spend: run a while after a reset (longer than LiteLLM's spend flush interval), it moves spend
     * of requests that started before the boundary, flushed after the reset, out of the new period, records it
     * in the audit, and drops LiteLLM's cached copies of every corrected entity (as after a reset). Idempotent.
     */
    async reconcileLateSpend(args: { resetId: string }): Promise<LateSpendResult> {
      const result = await reconcileLateSpend(deps.db, args.resetId);
      const redis = deps.redis;
      if (redis && result.corrections.length > 0) {
        const channel = namespaced(deps.config.redisNamespace, INVALIDATION_CHANNEL);
        const pipeline = redis.pipeline();
        for (const c of result.corrections) {
          const type = entityType(c.entityType);
          if (!type) continue;
          const keys = type.cacheKeys(decodeEntityId(type, c.entityId));
          const all = keys.counter === undefined ? [...keys.objects] : [keys.counter, ...keys.objects];
          if (all.length === 0) continue;
          pipeline.del(...all.map((k) => namespaced(deps.config.redisNamespace, k)));
          for (const key of all) pipeline.publish(channel, invalidationMessage(key));
        }
        const results = await pipeline.exec();
        const failed = results?.find(([error]) => error);
        if (failed?.[0]) throw failed[0];
      }
      return result;
    },
  };
}
