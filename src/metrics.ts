import type { MetricMeter } from '@temporalio/common';
import type { ActivityObserver } from '../activities/deps.js';

/** How often the worker counts running budget workflows by state for the `budget_workflows` gauge. */
export const BUDGETS_BY_STATE_INTERVAL_MS = 60_000;

/**
 * Our metrics, recorded through the Temporal runtime's meter so they are exported on the same Prometheus
 * endpoint as the SDK's own (`temporal_*`) metrics.
 */
export function createMetricsObserver(
  meter: MetricMeter,
): ActivityObserver & { setBudgetsByState(counts: Record<string, number>): void } {
  const resets = meter.createCounter(
    'budget_resets',
    'resets',
    'Reset transactions by budget kind, trigger and outcome',
  );
  const lateness = meter.createHistogram(
    'budget_reset_lateness',
    'int',
    'ms',
    'How late a reset ran after its boundary',
  );
  const entities = meter.createCounter(
    'budget_entities_zeroed',
    'entities',
    'Entities whose spend a reset changed',
  );
  const cacheFailures = meter.createCounter(
    'budget_cache_invalidation_failures',
    'failures',
    'Failed attempts to invalidate LiteLLM caches after a reset',
  );
  const budgets = meter.createGauge(
    'budget_workflows',
    'int',
    'budgets',
    'Running budget workflows by state',
  );
  return {
    onReset(request, result) {
      const trigger = result.outcome === 'reset' ? result.trigger : request.trigger;
      resets.add(1, { kind: request.kind, trigger, outcome: result.outcome });
      if (result.outcome !== 'reset') return;
      // Measured as the transaction committed, so an outage's delay is counted.
      lateness.record(result.lateByMs, { kind: request.kind, trigger });
      for (const [type, count] of Object.entries(result.byType))
        entities.add(count, { kind: request.kind, entity_type: type });
    },
    onCacheInvalidationFailure() {
      cacheFailures.add(1);
    },
    setBudgetsByState(counts) {
      for (const [state, count] of Object.entries(counts)) budgets.set(count, { state });
    },
  };
}
