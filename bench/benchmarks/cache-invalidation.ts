import { spawn, type ChildProcess } from 'node:child_process';
import { INVALIDATION_CHANNEL, invalidateResetCaches, namespaced } from '../../src/cache/invalidation.js';
import { onCleanup, pollUntil, withTimeout } from '../lib/lifecycle.js';
import { measureMemory, type MemoryFigures } from '../lib/memory.js';
import type { Services } from '../lib/services.js';
import { median, round } from '../lib/stats.js';
import { endUserId } from './reset-transaction.js';

const RUNS = 3;
const NAMESPACE = 'bench-inv';

export interface InvalidationRun {
  readonly ms: number;
  readonly entities: number;
  readonly countersDeleted: number;
  readonly objectsInvalidated: number;
  readonly messagesPublished: number;
  /** One DEL per entity (its counter and objects) + messagesPublished. */
  readonly commands: number;
  /** What redis-server itself counted (INFO commandstats, reset before the run). */
  readonly serverCalls: Record<string, number>;
  readonly memory: MemoryFigures;
}

export interface InvalidationFigures {
  readonly entities: number;
  readonly runs: readonly InvalidationRun[];
  readonly medianMs: number;
  readonly commandsPerSecond: number;
  /** Highest heapUsed sampled during any run (absolute), and its growth over the heap before that run. */
  readonly maxPeakHeapUsedMB: number;
  readonly maxPeakHeapGrowthMB: number;
  readonly maxHeapDeltaMB: number;
  /**
   * Peak growth of the live heap, from one more (untimed) run with a full GC before every sample: what the
   * invalidation holds at once, without the garbage V8 had not collected yet that the timed runs' peak includes.
   */
  readonly livePeakHeapGrowthMB: number;
  /** Messages the stand-in proxy pod (a redis-cli subscriber) received, over all runs, and how many were sent. */
  readonly subscriber: { readonly received: number; readonly expected: number } | null;
}

/**
 * invalidateResetCaches for the 40,000-end-user reset of the first benchmark, RUNS times (it is idempotent), then
 * once more untimed with a GC before every memory sample to find the live-heap peak.
 * Before each run Redis holds what a busy LiteLLM would: a spend counter and a cached object for every end user,
 * so the DELs delete something; one subscriber on the invalidation channel stands in for a proxy pod, so PUBLISH
 * pays for a delivery as it would in production. The subscriber is a redis-cli child process, so receiving the
 * messages costs this process's heap nothing.
 */
export async function benchInvalidation(
  services: Services,
  resetId: string,
  endUsers: number,
): Promise<InvalidationFigures> {
  const { pool, redis } = services;
  const channel = namespaced(NAMESPACE, INVALIDATION_CHANNEL);
  const subscriber = await startSubscriber(services, channel);
  const runs: InvalidationRun[] = [];
  let expectedMessages = 0;
  try {
    for (let run = 0; run < RUNS; run += 1) {
      await redis.flushdb();
      await populateCaches(services, endUsers);
      await redis.config('RESETSTAT');
      let ms = 0;
      const { value: result, memory } = await measureMemory(async () => {
        const start = performance.now();
        const r = await withTimeout(
          invalidateResetCaches(pool, redis, NAMESPACE, resetId),
          120_000,
          `invalidating ${endUsers} entities`,
        );
        ms = performance.now() - start;
        return r;
      });
      const serverCalls = parseCommandStats(await redis.info('commandstats'));
      if (result.entities !== endUsers)
        throw new Error(`invalidated ${result.entities}, expected ${endUsers}`);
      const [size, first, last] = await Promise.all([
        redis.dbsize(),
        redis.exists(namespaced(NAMESPACE, `spend:end_user:${endUserId(endUsers, 1)}`)),
        redis.exists(namespaced(NAMESPACE, `spend:end_user:${endUserId(endUsers, endUsers)}`)),
      ]);
      // Counters and cached objects were all deleted (LiteLLM reseeds the counters from the database).
      if (size !== 0) throw new Error(`Redis holds ${size} keys after invalidation, expected none`);
      if (first !== 0 || last !== 0) throw new Error('spend counters survived the invalidation');
      expectedMessages += result.messagesPublished;
      runs.push({
        ms: round(ms, 1),
        ...result,
        commands: result.entities + result.messagesPublished,
        serverCalls,
        memory,
      });
    }
    await redis.flushdb();
    await populateCaches(services, endUsers);
    const live = await measureMemory(
      () =>
        withTimeout(
          invalidateResetCaches(pool, redis, NAMESPACE, resetId),
          300_000,
          `invalidating ${endUsers} entities (live-heap run)`,
        ),
      { collectEachSample: true },
    );
    expectedMessages += live.value.messagesPublished;
    let received: number | null = null;
    if (subscriber) {
      received = await pollUntil(
        'the subscriber receiving every invalidation message',
        async () => (subscriber.received() >= expectedMessages ? subscriber.received() : undefined),
        { timeoutMs: 30_000, intervalMs: 20 },
      ).catch(() => subscriber.received());
    }
    const medianMs = median(runs.map((r) => r.ms));
    const commands = runs[0]?.commands ?? 0;
    return {
      entities: endUsers,
      runs,
      medianMs: round(medianMs, 1),
      commandsPerSecond: Math.round(commands / (medianMs / 1000)),
      maxPeakHeapUsedMB: round(Math.max(...runs.map((r) => r.memory.peak.heapUsedMB)), 2),
      maxPeakHeapGrowthMB: round(Math.max(...runs.map((r) => r.memory.peakHeapGrowthMB)), 2),
      maxHeapDeltaMB: round(Math.max(...runs.map((r) => r.memory.heapDeltaMB)), 2),
      livePeakHeapGrowthMB: round(live.memory.peakHeapGrowthMB, 2),
      subscriber: received === null ? null : { received, expected: expectedMessages },
    };
  } finally {
    await subscriber?.stop();
    await redis.flushdb();
  }
}

/** What LiteLLM would have cached for the tier's end users: a spend counter and the end-user object. */
async function populateCaches(services: Services, endUsers: number): Promise<void> {
  const CHUNK = 5_000;
  for (let from = 1; from <= endUsers; from += CHUNK) {
    const pipeline = services.redis.pipeline();
    for (let i = from; i < Math.min(from + CHUNK, endUsers + 1); i += 1) {
      const userId = endUserId(endUsers, i);
      pipeline.set(namespaced(NAMESPACE, `spend:end_user:${userId}`), '4.2', 'EX', 3600);
      pipeline.set(
        namespaced(NAMESPACE, `end_user_id:${userId}`),
        JSON.stringify({ user_id: userId, spend: 4.2, litellm_budget_table: { max_budget: 1 } }),
        'EX',
        3600,
      );
    }
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error);
    if (failed?.[0]) throw failed[0];
  }
}

function parseCommandStats(info: string): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const match of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
    const [, name, n] = match;
    if (name && name !== 'config' && name !== 'info') calls[name] = Number(n);
  }
  return calls;
}

interface Subscriber {
  received(): number;
  stop(): Promise<void>;
}

/** `redis-cli SUBSCRIBE`, counting messages from its raw output (three lines each); null without redis-cli. */
async function startSubscriber(services: Services, channel: string): Promise<Subscriber | null> {
  let child: ChildProcess;
  try {
    child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(services.redisPort), 'SUBSCRIBE', channel], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch {
    process.stderr.write('[bench] redis-cli not found: invalidation runs without a subscriber\n');
    return null;
  }
  let lines = 0;
  child.stdout?.on('data', (chunk: Buffer) => {
    for (const byte of chunk) if (byte === 10) lines += 1;
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
  onCleanup('redis-cli subscriber', stop);
  await pollUntil(
    'the redis-cli subscriber',
    async () => {
      const reply = (await services.redis.pubsub('NUMSUB', channel)) as [string, number];
      return Number(reply[1]) >= 1 ? true : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
  // The first three lines confirm the subscription; each message is `message`, channel, payload.
  return { received: () => Math.max(0, Math.floor(lines / 3) - 1), stop };
}
