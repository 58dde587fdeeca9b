/**
 * A worker's SDK metrics from its Prometheus endpoint (`METRICS_PORT`): every `temporal_*` series summed over its
 * label sets (a histogram as its `_count` and `_sum`), so two scrapes can be subtracted.
 */
export async function scrapeWorkerMetrics(port: number): Promise<Record<string, number>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('temporal_') || line.includes('_bucket')) continue;
    const name = /^[a-z_]+/.exec(line)?.[0];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (name && Number.isFinite(value)) out[name] = (out[name] ?? 0) + value;
  }
  return out;
}

/** Several workers' metrics added up. */
export async function scrapeAll(ports: readonly number[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of await Promise.all(ports.map((p) => scrapeWorkerMetrics(p)))) {
    for (const [k, v] of Object.entries(m)) out[k] = (out[k] ?? 0) + v;
  }
  return out;
}

/** `after − before` for every series in either (gauges subtract too: read them from `after`). */
export function metricsDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)]))
    out[k] = Math.round(((after[k] ?? 0) - (before[k] ?? 0)) * 1000) / 1000;
  return out;
}
