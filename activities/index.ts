import { createCacheActivities } from './caches.js';
import type { ActivityDeps } from './deps.js';
import { createDiscoveryActivities } from './discovery.js';
import { createLateSpendActivities } from './late-spend.js';
import { createResetActivities } from './reset.js';

export type { ActivityDeps, ActivityObserver } from './deps.js';

/** Every activity, bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createResetActivities(deps),
    ...createCacheActivities(deps),
    ...createDiscoveryActivities(deps),
    ...createLateSpendActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
