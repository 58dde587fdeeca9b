import { readFile } from 'node:fs/promises';

/**
 * Reads a V8 `.cpuprofile` (node --cpu-prof) and says where one process spent a window of time: self time per
 * category (workflow code in the SDK's sandbox, the SDK's worker side, pg, Redis, GC, idle...) and the busiest
 * functions. Sample timestamps are CLOCK_MONOTONIC microseconds, the clock `process.hrtime` reads, so a window
 * measured in the benchmark process can be cut out of the worker's profile.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly windowMs: number;
  readonly sampledMs: number;
  /** Self ms per category, busiest first. */
  readonly categories: Array<{ category: string; ms: number; share: number }>;
  readonly topFunctions: Array<{ fn: string; where: string; ms: number }>;
}

function category(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'V8/native (program)';
  if (url.includes('/workflows/') || url.includes('@temporalio/workflow') || url.startsWith('webpack'))
    return 'workflow code (sandbox: our workflow + SDK workflow runtime)';
  if (url.includes('@temporalio/worker')) return 'SDK worker (activations, vm, bridge)';
  if (url.includes('@temporalio/')) return 'SDK other (proto, common, client)';
  if (url.includes('protobufjs') || url.includes('long/')) return 'protobuf encode/decode';
  if (url.includes('/pg') || url.includes('pg-protocol')) return 'pg driver';
  if (url.includes('ioredis') || url.includes('redis-parser')) return 'ioredis';
  if (url.includes('pino')) return 'logging (pino)';
  if (url.includes('/activities/') || url.includes('/src/')) return 'our activities and modules';
  if (url.startsWith('node:') || url === '') return 'Node internals';
  return 'other dependencies';
}

/** A file's place without the machine's paths: package path, our folder, or the bundle's file name. */
function shortUrl(url: string): string {
  return url
    .replace(/^.*node_modules\//, '')
    .replace(/^file:\/\/.*?\/(workflows|src|activities)\//, '$1/')
    .replace(/^file:\/\/.*\/(workflow-bundle-[^/]*)$/, '$1');
}

/** Summarises the samples between `fromUs` and `toUs` (monotonic µs), the whole profile when omitted. */
export async function summariseProfile(
  file: string,
  fromUs?: number,
  toUs?: number,
): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const from = fromUs ?? profile.startTime;
  const to = toUs ?? profile.endTime;
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    // A sample's time is the gap to the next one.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  }
  const categories = new Map<string, number>();
  const functions = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const cat = category(node);
    categories.set(cat, (categories.get(cat) ?? 0) + us);
    const where = `${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
    const key = `${node.callFrame.functionName}@${where}`;
    const f = functions.get(key) ?? { fn: node.callFrame.functionName || '(anonymous)', where, us: 0 };
    f.us += us;
    functions.set(key, f);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  return {
    windowMs: ms(to - from),
    sampledMs: ms(total),
    categories: [...categories.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([c, us]) => ({
        category: c,
        ms: ms(us),
        share: Math.round((us / Math.max(1, total)) * 1000) / 1000,
      })),
    topFunctions: [...functions.values()]
      .filter((f) => f.fn !== '(idle)')
      .sort((a, b) => b.us - a.us)
      .slice(0, 20)
      .map((f) => ({ fn: f.fn, where: f.where, ms: ms(f.us) })),
  };
}

/** CLOCK_MONOTONIC now, in µs, the clock V8's profiler stamps samples with. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
