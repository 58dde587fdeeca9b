import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatLogLine, resolveLogFormat } from '../../src/log-format.js';
import { loggerOptions } from '../../src/logger.js';

/** Lines written by a real pino logger with the worker's options (level, base fields, redaction). */
function jsonLines(log: (logger: pino.Logger) => void): string[] {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const logger = pino(loggerOptions('debug'), sink);
  log(logger);
  return lines;
}

const clock = (ms: number) => {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
};

describe('resolveLogFormat', () => {
  it.each([
    [undefined, true, 'pretty'],
    [undefined, false, 'json'],
    [undefined, undefined, 'json'],
    ['json', true, 'json'],
    ['pretty', false, 'pretty'],
  ] as const)('LOG_FORMAT=%s on a terminal=%s: %s', (asked, isTTY, expected) => {
    expect(resolveLogFormat(asked, isTTY)).toBe(expected);
  });
});

describe('formatLogLine', () => {
  it('turns a JSON line into time, level, message and key=value fields', () => {
    const time = Date.UTC(2026, 0, 2, 3, 4, 5, 67);
    const line = JSON.stringify({
      level: 30,
      time,
      service: 'budget-lifecycle',
      msg: 'worker started',
      taskQueue: 'budget-lifecycle',
      namespace: 'billing.a1b2c',
      address: 'billing.a1b2c.tmprl.cloud:7233',
      healthPort: 9464,
      note: 'two words',
    });
    expect(formatLogLine(line, { color: false })).toBe(
      `${clock(time)} INFO  worker started  taskQueue=budget-lifecycle  namespace=billing.a1b2c  ` +
        'address=billing.a1b2c.tmprl.cloud:7233  healthPort=9464  note="two words"\n',
    );
  });

  it('shows each level, colours only when asked, and puts a stack under its line', () => {
    const [warn, error, debug] = jsonLines((logger) => {
      logger.warn({ err: 'connection reset' }, 'Redis connection problem');
      logger.error({ err: new Error('boom') }, 'reset failed');
      logger.debug({ budget: { kind: 'team', id: 'eng' } }, 'armed');
    });
    expect(formatLogLine(warn!, { color: false })).toMatch(
      /^\d\d:\d\d:\d\d\.\d{3} WARN {2}Redis connection problem {2}err="connection reset"\n$/,
    );
    const failed = formatLogLine(error!, { color: false }).split('\n');
    expect(failed[0]).toMatch(/ERROR reset failed$/);
    expect(failed[1]).toBe('    Error: boom');
    expect(failed[2]).toMatch(/^ {4}\s*at /);
    expect(formatLogLine(debug!, { color: false })).toMatch(
      /DEBUG armed {2}budget=\{"kind":"team","id":"eng"\}\n$/,
    );

    expect(formatLogLine(warn!, { color: false })).not.toContain('\x1b[');
    expect(formatLogLine(warn!, { color: true })).toContain('\x1b[33mWARN \x1b[0m');
  });

  it('shows what redaction left: a secret logged by mistake stays hidden', () => {
    const [line] = jsonLines((logger) =>
      logger.info({ config: { databaseUrl: 'postgres://u:hunter2@db/x', apiKey: 'key-123' } }, 'loaded'),
    );
    const pretty = formatLogLine(line!, { color: false });
    expect(pretty).toContain('"databaseUrl":"[redacted]"');
    expect(pretty).not.toContain('hunter2');
    expect(pretty).not.toContain('key-123');
  });

  it('passes through a line that is not JSON', () => {
    expect(formatLogLine('plain text', { color: false })).toBe('plain text\n');
    expect(formatLogLine('42\n', { color: false })).toBe('42\n');
  });
});
