/**
 * Log lines for a person at a terminal: `12:00:03.412 INFO  worker started  taskQueue=budget-lifecycle ...`,
 * made from the JSON line pino has already written (and redacted), so both formats carry the same fields and
 * neither can show a secret the other hides. No dependency: what production runs stays JSON.
 */

/** `json`: one JSON object a line, for log collectors. `pretty`: one readable line, for a terminal. */
export type LogFormat = 'json' | 'pretty';

/** The format to use: the one asked for, else `pretty` on a terminal and `json` anywhere else. */
export function resolveLogFormat(asked: LogFormat | undefined, isTTY: boolean | undefined): LogFormat {
  return asked ?? (isTTY ? 'pretty' : 'json');
}

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[90m' },
  30: { name: 'INFO', color: '\x1b[32m' },
  40: { name: 'WARN', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';

/** Fields every line has (pino's own, and our `base`), shown in the line's head or not at all. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname', 'err']);

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** A value as `key=value` shows it: bare when that reads unambiguously, JSON otherwise. */
function formatValue(value: unknown): string {
  if (typeof value === 'string') return /^[\w.:/@+-]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}

/**
 * One pino JSON line as a readable line (ending in a newline). Errors serialised with a stack get it on the
 * following lines. A line that is not pino's JSON is passed through unchanged.
 */
export function formatLogLine(line: string, options: { color: boolean }): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  if (typeof entry !== 'object' || entry === null) return line.endsWith('\n') ? line : `${line}\n`;
  const paint = (code: string, text: string) => (options.color ? `${code}${text}${RESET}` : text);

  const time = new Date(typeof entry.time === 'number' ? entry.time : Date.now());
  const clock = `${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}.${pad(time.getMilliseconds(), 3)}`;
  const level = LEVELS[entry.level as number] ?? { name: String(entry.level).toUpperCase(), color: '' };
  const fields = Object.entries(entry)
    .filter(([key, value]) => !HEAD_FIELDS.has(key) && value !== undefined)
    .map(([key, value]) => `${paint(DIM, `${key}=`)}${formatValue(value)}`);

  const err = entry.err;
  let stack = '';
  if (typeof err === 'object' && err !== null && typeof (err as { stack?: unknown }).stack === 'string') {
    stack = `\n${(err as { stack: string }).stack.replace(/^/gm, '    ')}`;
  } else if (err !== undefined) {
    fields.unshift(`${paint(DIM, 'err=')}${formatValue(err)}`);
  }

  const head = `${paint(DIM, clock)} ${paint(level.color, level.name.padEnd(5))} ${String(entry.msg ?? '')}`;
  return `${[head, ...fields].join('  ')}${stack}\n`;
}
