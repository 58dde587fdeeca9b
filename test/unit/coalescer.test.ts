import { describe, expect, it } from 'vitest';
import { Coalescer, type Outcome } from '../../src/coalescer.js';

/** A batch runner whose batches finish only when the test says so. */
function gatedRunner() {
  const batches: number[][] = [];
  const gates: Array<() => void> = [];
  const run = async (items: readonly number[]): Promise<Array<Outcome<number>>> => {
    batches.push([...items]);
    await new Promise<void>((resolve) => gates.push(resolve));
    return items.map((n) => (n < 0 ? { error: new Error(`bad ${n}`) } : { value: n * 10 }));
  };
  const openNext = () => gates.shift()?.();
  return { batches, run, openNext };
}

describe('Coalescer', () => {
  it('runs the first call at once and the calls that arrive meanwhile as one batch', async () => {
    const r = gatedRunner();
    const c = new Coalescer(r.run, { maxBatch: 100, maxInFlight: 1 });
    const first = c.run(1);
    const rest = [2, 3, 4].map((n) => c.run(n));
    expect(r.batches).toEqual([[1]]);
    r.openNext();
    expect(await first).toBe(10);
    await expect.poll(() => r.batches.length).toBe(2);
    expect(r.batches[1]).toEqual([2, 3, 4]);
    r.openNext();
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
  });

  it('caps batches, keeps items of one key apart, and settles each item with its own outcome', async () => {
    const r = gatedRunner();
    const c = new Coalescer(r.run, { maxBatch: 2, maxInFlight: 1, key: (n) => String(Math.abs(n)) });
    const blocker = c.run(0);
    const calls = [5, 5, 6, -7].map((n) => c.run(n).then(String, (e: Error) => e.message));
    r.openNext();
    await blocker;
    await expect.poll(() => r.batches.length).toBe(2);
    expect(r.batches[1]).toEqual([5, 6]);
    r.openNext();
    await expect.poll(() => r.batches.length).toBe(3);
    expect(r.batches[2]).toEqual([5, -7]);
    r.openNext();
    expect(await Promise.all(calls)).toEqual(['50', '50', '60', 'bad -7']);
  });

  it('rejects every item of a batch that throws, and keeps serving later calls', async () => {
    let fail = true;
    const c = new Coalescer<number, number>(
      async (items) => {
        if (fail) throw new Error('database down');
        return items.map((n) => ({ value: n }));
      },
      { maxBatch: 10, maxInFlight: 2 },
    );
    await expect(Promise.all([c.run(1), c.run(2)])).rejects.toThrow('database down');
    fail = false;
    expect(await Promise.all([c.run(3), c.run(4)])).toEqual([3, 4]);
  });
});
