import { readFileSync, readdirSync } from 'node:fs';

/**
 * Linux /proc readers: resident memory and CPU time of the processes this benchmark started (workers, the
 * Temporal dev server, PostgreSQL and its backends, redis-server), so the figures say where the machine's time
 * went without any profiler attached to them.
 */

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

export interface ProcessStat {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** User + system CPU time in ms. */
  readonly cpuMs: number;
}

/** One process's stat, or undefined when it is gone. */
export function processStat(pid: number): ProcessStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may contain spaces; the fields after the last ')' are fixed.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  const ppid = Number(fields[1]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return { pid, ppid, comm, cpuMs: ((utime + stime) * 1000) / TICKS_PER_SECOND };
}

/** Resident set size in MB (VmRSS), or undefined when the process is gone. */
export function rssMB(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Every process below `root` (children, their children...). */
export function descendants(root: number): ProcessStat[] {
  const all: ProcessStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = processStat(Number(entry));
    if (stat) all.push(stat);
  }
  const below = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!below.has(p.pid) && below.has(p.ppid)) {
        below.add(p.pid);
        grew = true;
      }
    }
  }
  return all.filter((p) => p.pid !== root && below.has(p.pid));
}

/**
 * CPU ms per group of this process's descendants (grouped by `group`, default the command name) plus this
 * process itself as `bench`. Take one before and one after a window; {@link cpuDelta} gives the window's use.
 */
export function cpuByGroup(group: (p: ProcessStat) => string = (p) => p.comm): Record<string, number> {
  const totals: Record<string, number> = { bench: processStat(process.pid)?.cpuMs ?? 0 };
  for (const p of descendants(process.pid)) {
    const name = group(p);
    totals[name] = (totals[name] ?? 0) + p.cpuMs;
  }
  return totals;
}

/**
 * CPU used in a window per group, as ms and as a share of one core. A process that exited during the window
 * (a PostgreSQL backend) loses its time, so the figures are lower bounds.
 */
export function cpuDelta(
  before: Record<string, number>,
  after: Record<string, number>,
  windowMs: number,
): Record<string, { cpuMs: number; cores: number }> {
  const out: Record<string, { cpuMs: number; cores: number }> = {};
  for (const [name, ms] of Object.entries(after)) {
    const used = Math.max(0, ms - (before[name] ?? 0));
    out[name] = { cpuMs: Math.round(used), cores: Math.round((used / windowMs) * 100) / 100 };
  }
  return out;
}

/**
 * Resident memory in MB per group of this process's descendants (grouped like {@link cpuByGroup}). Shared pages
 * count once per process (PostgreSQL's shared buffers in every backend), so only groups of unrelated processes or
 * single processes (workers, the dev server) give a meaningful figure.
 */
export function rssByGroup(group: (p: ProcessStat) => string = (p) => p.comm): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const p of descendants(process.pid)) {
    const rss = rssMB(p.pid);
    if (rss === undefined) continue;
    const name = group(p);
    totals[name] = (totals[name] ?? 0) + rss;
  }
  return totals;
}
