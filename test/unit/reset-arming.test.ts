import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ResetArming, type ArmedOutcome } from '../../src/reset-arming.js';

const OUTCOME: ArmedOutcome = { result: { outcome: 'expired' }, cachesInvalidated: false };

// The arming keeps wall-clock time with timers, so these tests drive Node's timers and clock by hand.
beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse('2026-12-01T00:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('ResetArming', () => {
  it('runs an armed reset at its boundary, and its workflow collects the outcome', async () => {
    const arming = new ResetArming();
    const run = vi.fn(async () => OUTCOME);
    const at = Date.now() + 60_000;
    expect(arming.arm('k', at, Date.now(), run)).toBe(true);
    expect(arming.arm('k', at, Date.now(), run)).toBe(true);
    await vi.advanceTimersByTimeAsync(59_999);
    expect(run).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(run).toHaveBeenCalledTimes(1);
    await expect(arming.collect('k')).resolves.toBe(OUTCOME);
    expect(arming.size).toBe(0);
  });

  it('gives back a reset collected before its boundary, which then never runs', async () => {
    const arming = new ResetArming();
    const run = vi.fn(async () => OUTCOME);
    arming.arm('k', Date.now() + 10_000, Date.now(), run);
    expect(arming.collect('k')).toBeUndefined();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(run).not.toHaveBeenCalled();
  });

  it('refuses a boundary too far ahead or a workflow clock far from the worker', () => {
    const prepare = vi.fn(async () => undefined);
    const arming = new ResetArming({ prepare, prepareLeadMs: 2_000 });
    expect(arming.arm('far', Date.now() + 7 * 60_000, Date.now(), async () => OUTCOME)).toBe(false);
    expect(arming.arm('skewed', Date.now() + 60_000, Date.now() - 120_000, async () => OUTCOME)).toBe(false);
    expect(arming.size).toBe(0);
    vi.runAllTimers();
    expect(prepare).not.toHaveBeenCalled();
  });

  it('prepares each boundary once, its lead before it, however many resets are armed for it', async () => {
    const prepared: number[] = [];
    const prepare = vi.fn(async () => {
      prepared.push(Date.now());
    });
    const arming = new ResetArming({ prepare, prepareLeadMs: 2_000 });
    const first = Date.now() + 60_000;
    const second = Date.now() + 120_000;
    for (let i = 0; i < 100; i += 1) arming.arm(`a${i}`, first, Date.now(), async () => OUTCOME);
    arming.arm('b', second, Date.now(), async () => OUTCOME);
    await vi.advanceTimersByTimeAsync(57_999);
    expect(prepared).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(prepared).toEqual([first - 2_000]);
    // Armed again for the same boundary after its preparation ran: prepared once more, at once.
    arming.arm('late', first, Date.now(), async () => OUTCOME);
    await vi.advanceTimersByTimeAsync(0);
    expect(prepared).toEqual([first - 2_000, first - 2_000]);
    await vi.advanceTimersByTimeAsync(62_000);
    expect(prepared).toEqual([first - 2_000, first - 2_000, second - 2_000]);
  });

  it('ignores a preparation that fails: the armed reset still runs', async () => {
    const arming = new ResetArming({
      prepare: async () => {
        throw new Error('database down');
      },
      prepareLeadMs: 2_000,
    });
    const run = vi.fn(async () => OUTCOME);
    arming.arm('k', Date.now() + 10_000, Date.now(), run);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(run).toHaveBeenCalledTimes(1);
  });
});
