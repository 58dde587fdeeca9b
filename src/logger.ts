import { DefaultLogger, type LogEntry, type LogLevel } from '@temporalio/worker';
import { pino, type Logger } from 'pino';
import { formatLogLine, resolveLogFormat, type LogFormat } from './log-format.js';

/**
 * Structured logs on stdout: JSON lines, or readable lines on a terminal (`format` unset) or when asked for
 * `pretty`. Fields that can hold secrets are censored wherever they appear, before either format sees them.
 */
export function createLogger(level: string, format?: LogFormat): Logger {
  const pretty = resolveLogFormat(format, process.stdout.isTTY) === 'pretty';
  // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
  const color = pretty && process.stdout.isTTY === true && !process.env.NO_COLOR;
  if (!pretty) return pino(loggerOptions(level));
  return pino(loggerOptions(level), {
    write: (line: string) => void process.stdout.write(formatLogLine(line, { color })),
  });
}

/** pino's options: level, our `service` field, and the censored paths. */
export function loggerOptions(level: string): pino.LoggerOptions {
  return {
    level,
    base: { service: 'budget-lifecycle' },
    redact: {
      paths: [
        'password',
        '*.password',
        'apiKey',
        '*.apiKey',
        'databaseUrl',
        '*.databaseUrl',
        'redisUrl',
        '*.redisUrl',
      ],
      censor: '[redacted]',
    },
  };
}

const PINO_LEVEL: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * Routes the Temporal runtime's logs (SDK core, workflow and activity loggers) into pino, so every line has the
 * logger's format and carries the workflow id, run id and activity metadata the SDK attaches.
 */
export function temporalLogger(logger: Logger, level: LogLevel): DefaultLogger {
  return new DefaultLogger(level, (entry: LogEntry) => {
    const { message, meta } = entry;
    logger[PINO_LEVEL[entry.level]]({ ...meta, source: 'temporal' }, message);
  });
}
