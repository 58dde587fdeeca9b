import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const MB = 1024 * 1024;

// `npm run bench` cannot pass --expose-gc to node (tsx runs it), so turn the flag on at run time; a fresh
// context then exposes `gc`. Collecting before each measurement makes "before" the live heap, not garbage.
setFlagsFromString('--expose-gc');
const gcFunction = runInNewContext('gc') as () => void;

export function collectGarbage(): void {
  gcFunction();
  gcFunction();
}

export interface MemorySnapshot {
  readonly rssMB: number;
  readonly heapUsedMB: number;
}

export function snapshot(): MemorySnapshot {
  const m = process.memoryUsage();
  return { rssMB: m.rss / MB, heapUsedMB: m.heapUsed / MB };
}

/** Figures for one measured operation. */
export interface MemoryFigures {
  /** After a full GC, just before the operation. */
  readonly before: MemorySnapshot;
  /** Right after it, without collecting (what the process holds when it returns). */
  readonly after: MemorySnapshot;
  /** Highest values sampled every 10 ms while it ran (and at its start and end). */
  readonly peak: MemorySnapshot;
  /** heapUsed after - before. */
  readonly heapDeltaMB: number;
  /** rss after - before. */
  readonly rssDeltaMB: number;
  /** Peak heapUsed - before: the figure the heap targets are held to. */
  readonly peakHeapGrowthMB: number;
  readonly samples: number;
}

/**
 * Runs `operation` with `process.memoryUsage()` sampled every `intervalMs` (10 ms). A timer cannot fire while the
 * operation blocks the event loop, so a sample at the end is always included.
 */
export async function measureMemory<T>(
  operation: () => Promise<T>,
  options: { intervalMs?: number; collectEachSample?: boolean } = {},
): Promise<{ value: T; memory: MemoryFigures }> {
  collectGarbage();
  const before = snapshot();
  let peakHeap = before.heapUsedMB;
  let peakRss = before.rssMB;
  let samples = 0;
  const sample = () => {
    // Collecting first turns "heap used" (live objects plus garbage V8 has not collected yet) into the live heap:
    // far slower, so only for an untimed run that asks how much the operation holds at once.
    if (options.collectEachSample) collectGarbage();
    const s = snapshot();
    samples += 1;
    if (s.heapUsedMB > peakHeap) peakHeap = s.heapUsedMB;
    if (s.rssMB > peakRss) peakRss = s.rssMB;
  };
  const timer = setInterval(sample, options.intervalMs ?? 10);
  let value: T;
  try {
    value = await operation();
  } finally {
    clearInterval(timer);
  }
  sample();
  const after = snapshot();
  return {
    value,
    memory: {
      before,
      after,
      peak: { rssMB: peakRss, heapUsedMB: peakHeap },
      heapDeltaMB: after.heapUsedMB - before.heapUsedMB,
      rssDeltaMB: after.rssMB - before.rssMB,
      peakHeapGrowthMB: peakHeap - before.heapUsedMB,
      samples,
    },
  };
}
