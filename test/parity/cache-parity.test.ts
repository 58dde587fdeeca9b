/**
 * Our cache invalidation's names and message bytes against LiteLLM's own constants and its own
 * `_cache_invalidation_message_json` (fixture written by `generate-schedule-fixture.sh`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { INVALIDATION_CHANNEL, invalidationMessage } from '../../src/cache/invalidation.js';
import { GLOBAL_PROXY_SPEND_CACHE_KEY, PROXY_BUDGET_USER_ID } from '../../src/entities.js';

interface CacheFixture {
  readonly litellm: string;
  readonly channel: string;
  readonly globalProxySpendCacheKey: string;
  readonly proxyBudgetName: string;
  readonly messages: readonly (readonly [string, string])[];
}

const LITELLM_VERSION = '1.108.14';
const fixture = JSON.parse(
  readFileSync(new URL(`./fixtures/cache-litellm-${LITELLM_VERSION}.json`, import.meta.url), 'utf8'),
) as CacheFixture;

describe(`cache names and messages match LiteLLM ${LITELLM_VERSION}`, () => {
  it('uses its channel, its proxy budget row and its global proxy spend key', () => {
    expect(fixture.litellm).toBe(LITELLM_VERSION);
    expect(INVALIDATION_CHANNEL).toBe(fixture.channel);
    expect(PROXY_BUDGET_USER_ID).toBe(fixture.proxyBudgetName);
    expect(GLOBAL_PROXY_SPEND_CACHE_KEY).toBe(fixture.globalProxySpendCacheKey);
  });

  it('publishes the bytes LiteLLM publishes, for awkward keys too', () => {
    expect(fixture.messages.length).toBeGreaterThan(5);
    for (const [key, message] of fixture.messages) expect(invalidationMessage(key), key).toBe(message);
  });
});
