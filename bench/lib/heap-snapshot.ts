import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Summarises a V8 heap snapshot (`node --heapsnapshot-signal`) without loading it as one string: a worker's
 * snapshot runs to hundreds of MB, past V8's string limit. Self sizes are grouped by node type and name (the
 * constructor for objects, the function name for closures), which is enough to tell what a cached workflow costs
 * and whose copies there are (counts of a named closure = instances of the module that defines it).
 */
export interface HeapSummary {
  readonly file: string;
  readonly totalMB: number;
  readonly nodes: number;
  /** The largest groups by self size. */
  readonly top: Array<{ group: string; count: number; mb: number }>;
  /** How many closures carry each of the names asked for. */
  readonly closures: Record<string, number>;
}

const MB = 1024 * 1024;

export async function summariseHeapSnapshot(
  file: string,
  closureNames: readonly string[],
  topN = 30,
): Promise<HeapSummary> {
  const buf = await readFile(file);
  const nodesAt = buf.indexOf('"nodes":[');
  const edgesAt = buf.indexOf('"edges":[', nodesAt);
  const stringsAt = buf.lastIndexOf('"strings":[');
  if (nodesAt < 0 || edgesAt < 0 || stringsAt < 0) throw new Error(`${file} is not a V8 heap snapshot`);
  const header = JSON.parse(`${buf.subarray(0, nodesAt).toString('utf8').replace(/,\s*$/, '')}}`) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  };
  const { node_fields: fields, node_types: nodeTypes } = header.snapshot.meta;
  const strings = JSON.parse(
    buf.subarray(stringsAt + '"strings":'.length, buf.lastIndexOf(']') + 1).toString('utf8'),
  ) as string[];

  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const types = nodeTypes[0];
  const named = new Set(closureNames);
  const closures: Record<string, number> = Object.fromEntries(closureNames.map((n) => [n, 0]));
  const groups = new Map<string, { count: number; size: number }>();
  let total = 0;
  let nodes = 0;
  // Walk the nodes array's integers in place: `width` fields per node.
  const row: number[] = [];
  let value = 0;
  let inNumber = false;
  for (let i = nodesAt + '"nodes":['.length; i < edgesAt; i += 1) {
    const c = buf[i]!;
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      inNumber = true;
      continue;
    }
    if (!inNumber) continue;
    row.push(value);
    value = 0;
    inNumber = false;
    if (row.length < width) continue;
    const type = types[row[iType]!] ?? 'unknown';
    const name = strings[row[iName]!] ?? '';
    const size = row[iSize]!;
    row.length = 0;
    nodes += 1;
    total += size;
    const group = ['object', 'closure', 'native', 'hidden'].includes(type)
      ? `${type} ${name.slice(0, 60)}`
      : type;
    const g = groups.get(group) ?? { count: 0, size: 0 };
    g.count += 1;
    g.size += size;
    groups.set(group, g);
    if (type === 'closure' && named.has(name)) closures[name] = (closures[name] ?? 0) + 1;
  }
  const top = [...groups]
    .sort((a, b) => b[1].size - a[1].size)
    .slice(0, topN)
    .map(([group, g]) => ({ group, count: g.count, mb: Math.round((g.size / MB) * 10) / 10 }));
  return { file, totalMB: Math.round((total / MB) * 10) / 10, nodes, top, closures };
}

/** Waits until a file exists and its size stopped changing for a few seconds (V8 writes a snapshot in pieces). */
export async function waitForFile(
  find: () => Promise<string | undefined>,
  timeoutMs: number,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let stableSince = 0;
  for (;;) {
    const file = await find();
    const size = file ? await stat(file).then((s) => s.size) : -1;
    if (file && size > 0 && size === last) {
      if (Date.now() - stableSince > 3_000) return file;
    } else {
      last = size;
      stableSince = Date.now();
    }
    if (Date.now() > deadline) throw new Error(`no complete heap snapshot within ${timeoutMs} ms`);
    await sleep(500);
  }
}
