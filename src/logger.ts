import { DefaultLogger, type LogEntry, type LogLevel } from '@temporalio/worker';
import { pino, type Logger } from 'pino';

/** Structured JSON logs. Fields that can hold secrets are censored wherever they appear. */
export function createLogger(level: string): Logger {
  return pino({
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
  });
}

const PINO_LEVEL: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/**
 * Routes the Temporal runtime's logs (SDK core, workflow and activity loggers) into pino, so every line is JSON
 * and carries the workflow id, run id and activity metadata the SDK attaches.
 */
export function temporalLogger(logger: Logger, level: LogLevel): DefaultLogger {
  return new DefaultLogger(level, (entry: LogEntry) => {
    const { message, meta } = entry;
    logger[PINO_LEVEL[entry.level]]({ ...meta, source: 'temporal' }, message);
  });
}
