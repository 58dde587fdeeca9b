/**
 * A hand-written SVG of lateness distributions: the share of resets committed within x (a CDF), x on a log
 * scale from 10 ms to 20 minutes, so a sub-second herd and a ten-minute tick fit on one axis.
 */
export interface Series {
  readonly label: string;
  readonly color: string;
  /** Lateness values in ms. */
  readonly values: readonly number[];
}

const W = 820;
const H = 440;
const M = { left: 70, right: 30, top: 50, bottom: 70 };
const X_MIN = 10;
const X_MAX = 1_200_000;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function x(ms: number): number {
  const clamped = Math.min(X_MAX, Math.max(X_MIN, ms));
  const f = (Math.log10(clamped) - Math.log10(X_MIN)) / (Math.log10(X_MAX) - Math.log10(X_MIN));
  return M.left + f * (W - M.left - M.right);
}

function y(share: number): number {
  return H - M.bottom - share * (H - M.top - M.bottom);
}

function cdfPath(values: readonly number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const points = 400;
  const parts: string[] = [];
  for (let i = 0; i <= points; i += 1) {
    const index = Math.min(sorted.length - 1, Math.floor((i / points) * (sorted.length - 1)));
    const v = sorted[index] ?? 0;
    parts.push(`${i === 0 ? 'M' : 'L'}${x(v).toFixed(1)},${y((index + 1) / sorted.length).toFixed(1)}`);
  }
  return parts.join(' ');
}

const TICKS: Array<[number, string]> = [
  [10, '10 ms'],
  [100, '100 ms'],
  [1_000, '1 s'],
  [2_000, '2 s'],
  [10_000, '10 s'],
  [60_000, '1 min'],
  [300_000, '5 min'],
  [600_000, '10 min'],
];

export function latencyCdfSvg(title: string, subtitle: string, series: readonly Series[]): string {
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${M.left}" y="40" fill="#555">${esc(subtitle)}</text>`,
  );
  for (const share of [0, 0.25, 0.5, 0.75, 0.95, 0.99, 1]) {
    out.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${y(share)}" y2="${y(share)}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 8}" y="${y(share) + 4}" text-anchor="end">${Math.round(share * 100)}%</text>`,
    );
  }
  for (const [ms, label] of TICKS) {
    out.push(
      `<line x1="${x(ms)}" x2="${x(ms)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#e5e5e5"/>`,
      `<text x="${x(ms)}" y="${H - M.bottom + 16}" text-anchor="middle">${label}</text>`,
    );
  }
  out.push(
    `<line x1="${x(2_000)}" x2="${x(2_000)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#999" stroke-dasharray="4 3"/>`,
    `<text x="${x(2_000) + 4}" y="${M.top + 12}" fill="#666">p99 target 2 s</text>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 28}" text-anchor="middle">lateness: commit time minus the boundary (log scale)</text>`,
    `<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">share of resets committed</text>`,
  );
  series.forEach((s, i) => {
    if (s.values.length === 0) return;
    out.push(`<path d="${cdfPath(s.values)}" fill="none" stroke="${s.color}" stroke-width="2.2"/>`);
    const ly = H - 10 - (series.length - 1 - i) * 0;
    const lx = M.left + i * 360;
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${lx + 30}" y="${ly}">${esc(s.label)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
