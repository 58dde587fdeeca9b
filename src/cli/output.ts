import { displayText } from '../budget-ref.js';

/** The longest cell of a table, and the longest value of a record, shown whole; `--json` prints everything. */
const MAX_CELL_CHARS = 100;
const MAX_FIELD_CHARS = 500;

/**
 * Prints rows as an aligned table for people. Every cell is one line, safe for a terminal (ids are anything
 * LiteLLM's users typed: newlines, escape sequences, 10 kB), and at most {@link MAX_CELL_CHARS} characters.
 */
export function formatTable(
  rows: ReadonlyArray<Record<string, unknown>>,
  columns: readonly string[],
): string {
  const cell = (v: unknown): string =>
    v === null || v === undefined
      ? '-'
      : v instanceof Date
        ? v.toISOString()
        : displayText(String(v), MAX_CELL_CHARS);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((c) => c.toUpperCase())),
    ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
  ].join('\n');
}

/** Prints `key: value` lines for one object, each value on its line (see {@link formatTable}). */
export function formatRecord(record: Record<string, unknown>): string {
  const width = Math.max(...Object.keys(record).map((k) => k.length));
  const value = (v: unknown): string =>
    v === null || v === undefined
      ? '-'
      : displayText(typeof v === 'object' ? JSON.stringify(v) : String(v), MAX_FIELD_CHARS);
  return Object.entries(record)
    .map(([k, v]) => `${k.padEnd(width)}  ${value(v)}`)
    .join('\n');
}
