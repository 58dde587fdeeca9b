import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Target {
  readonly id: string;
  /** Dot path into the results' `benchmarks` object. */
  readonly metric: string;
  readonly label: string;
  readonly unit: string;
  readonly max?: number;
  readonly min?: number;
}

export interface Baseline {
  readonly targets: readonly Target[];
}

export interface Verdict {
  readonly id: string;
  readonly label: string;
  readonly metric: string;
  readonly unit: string;
  readonly value: number | null;
  readonly target: string;
  readonly result: 'pass' | 'MISSED' | 'not measured' | 'skipped';
}

export function loadBaseline(file: string): Baseline {
  const baseline = JSON.parse(readFileSync(file, 'utf8')) as Baseline;
  if (!Array.isArray(baseline.targets)) throw new Error(`${file} has no "targets" list`);
  for (const t of baseline.targets) {
    if (typeof t.metric !== 'string' || (t.max === undefined && t.min === undefined)) {
      throw new Error(`${file}: target ${JSON.stringify(t)} needs a metric and a max or min`);
    }
  }
  return baseline;
}

export function lookup(root: unknown, dotPath: string): unknown {
  let current = root;
  for (const part of dotPath.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

/**
 * Holds each measured figure to its target. A figure that is missing counts as a miss (`not measured`) unless
 * its benchmark was deliberately left out of this run (`skipped`).
 */
export function compare(
  baseline: Baseline,
  benchmarks: Record<string, unknown>,
  ran: (metric: string) => boolean,
): Verdict[] {
  return baseline.targets.map((t) => {
    const raw = lookup(benchmarks, t.metric);
    const value = typeof raw === 'number' && Number.isFinite(raw) ? raw : null;
    const target = [t.max !== undefined ? `<= ${t.max}` : '', t.min !== undefined ? `>= ${t.min}` : '']
      .filter(Boolean)
      .join(' and ');
    let result: Verdict['result'];
    if (value === null) result = ran(t.metric) ? 'not measured' : 'skipped';
    else if ((t.max !== undefined && value > t.max) || (t.min !== undefined && value < t.min))
      result = 'MISSED';
    else result = 'pass';
    return { id: t.id, label: t.label, metric: t.metric, unit: t.unit, value, target, result };
  });
}

export function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    memoryGB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function gitInfo(cwd: string): { commit: string; dirty: boolean } | null {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
        cwd,
        encoding: 'utf8',
      }).trim() !== '';
    return { commit, dirty };
  } catch {
    return null;
  }
}

/** A plain-text table; numbers right-aligned. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cells = [headers, ...rows].map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join(
    '\n',
  );
}

export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const digits = Math.abs(n) >= 100 || Number.isInteger(n) ? 0 : Math.abs(n) >= 10 ? 1 : 2;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
