import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { LogFormat } from './log-format.js';
import { DEFAULT_SCHEDULE, validateScheduleOptions, type ScheduleOptions } from './schedule.js';

/**
 * Everything budget-lifecycle reads from the environment, validated once at start-up. Temporal connection
 * settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key, profiles) are read by `@temporalio/envconfig`
 * in `temporal/connection.ts`, not here.
 */
export interface Config {
  /** `DATABASE_URL`: LiteLLM's PostgreSQL. Required by everything that touches the database. */
  readonly databaseUrl?: string;
  /**
   * `REDIS_URL`, or LiteLLM's `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD` (and `REDIS_SSL=true` for TLS); no Redis means
   * cache invalidation is off. `REDIS_TLS_CA_FILE`: the PEM file of the CA that signed Redis's certificate (else the
   * system's CAs).
   */
  readonly redis?: RedisSettings;
  /** `LITELLM_REDIS_NAMESPACE`: LiteLLM's `cache_params.namespace`; default none. */
  readonly redisNamespace?: string;
  /**
   * `LITELLM_REDIS_TTL`: LiteLLM's `litellm_settings.default_redis_ttl` in seconds, default 60 (its `RedisCache`
   * default). A reset window's counter is set with this expiry, as LiteLLM's job sets it; the proxy then reseeds
   * it from `LiteLLM_BudgetWindowSpend`.
   */
  readonly redisTtlSeconds: number;
  /** `BUDGET_TASK_QUEUE`, default `budget-lifecycle`. */
  readonly taskQueue: string;
  /**
   * `BUDGET_RESET_TIMEZONE` (IANA, default `UTC`) and `BUDGET_RESET_TIME` (default `00:00`; `HH:MM` or
   * `HH:MM:SS`, one or two digits each like LiteLLM's `budget_reset_time`, so `7:5` is `07:05`).
   */
  readonly schedule: ScheduleOptions;
  /** `BUDGET_ROLLOVER` (`true`/`false`, default false): LiteLLM's `budget_rollover`. */
  readonly rollover: boolean;
  /** `BUDGET_DEFAULT_END_USER_BUDGET_ID`: LiteLLM's `max_end_user_budget_id`; default none. */
  readonly defaultEndUserBudgetId?: string;
  /**
   * `BUDGET_LATE_SPEND_DELAY` (`30s` by default; seconds or minutes like `45s`, `2m`; `off`): how long after a reset
   * its late spend is checked (spend of requests that started before the boundary and reached LiteLLM's database
   * after the reset). Longer than LiteLLM's spend flush interval (`proxy_batch_write_at`, 10 s) plus the longest
   * request. Absent: no check.
   */
  readonly lateSpendDelayMs?: number;
  /** `METRICS_PORT`: serve Prometheus metrics and health checks on this port; default off. */
  readonly metricsPort?: number;
  /** `LOG_LEVEL`, default `info`. */
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** `LOG_FORMAT` (`json` or `pretty`); default: `pretty` on a terminal, `json` anywhere else. */
  readonly logFormat?: LogFormat;
}

/** TLS to Redis: `ca` is the PEM text of the CA to trust, absent for the system's CAs. */
export interface RedisTls {
  readonly ca?: string;
}

export type RedisSettings =
  | { readonly url: string; readonly tls?: RedisTls }
  | { readonly host: string; readonly port: number; readonly password?: string; readonly tls?: RedisTls };

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** LiteLLM's `RedisCache` expiry when `default_redis_ttl` is not set (`BaseCache(default_ttl=60)`). */
export const LITELLM_REDIS_TTL_SECONDS = 60;

const optionalText = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const port = (name: string) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a port number`)
    .transform(Number)
    .pipe(
      z
        .number()
        .int(`${name} must be a whole number`)
        .min(1, `${name} must be between 1 and 65535`)
        .max(65535, `${name} must be between 1 and 65535`),
    );

const postgresUrl = z
  .string()
  .refine((v) => /^postgres(ql)?:\/\//.test(v), 'DATABASE_URL must be a postgres:// or postgresql:// URL');

const redisUrl = z
  .string()
  .refine((v) => /^rediss?:\/\//.test(v), 'REDIS_URL must be a redis:// or rediss:// URL');

const EnvSchema = z.object({
  DATABASE_URL: optionalText.pipe(postgresUrl.optional()),
  REDIS_URL: optionalText.pipe(redisUrl.optional()),
  REDIS_HOST: optionalText,
  REDIS_PORT: optionalText.pipe(port('REDIS_PORT').optional()),
  REDIS_PASSWORD: optionalText,
  REDIS_SSL: optionalText
    .pipe(z.enum(['true', 'false', 'True', 'False'], { error: 'REDIS_SSL must be true or false' }).optional())
    .transform((v) => v?.toLowerCase() === 'true'),
  REDIS_TLS_CA_FILE: optionalText,
  LITELLM_REDIS_NAMESPACE: optionalText,
  LITELLM_REDIS_TTL: optionalText
    .pipe(
      z
        .string()
        .regex(/^[1-9]\d{0,8}$/, 'LITELLM_REDIS_TTL must be a whole number of seconds, e.g. 60')
        .optional(),
    )
    .transform((v) => (v === undefined ? LITELLM_REDIS_TTL_SECONDS : Number(v))),
  BUDGET_TASK_QUEUE: optionalText.default('budget-lifecycle'),
  BUDGET_RESET_TIMEZONE: optionalText.default(DEFAULT_SCHEDULE.timeZone),
  BUDGET_RESET_TIME: optionalText.default(DEFAULT_SCHEDULE.resetTime),
  BUDGET_ROLLOVER: optionalText
    .pipe(z.enum(['true', 'false', '1', '0'], { error: 'BUDGET_ROLLOVER must be true or false' }).optional())
    .transform((v) => v === 'true' || v === '1'),
  BUDGET_DEFAULT_END_USER_BUDGET_ID: optionalText,
  BUDGET_LATE_SPEND_DELAY: optionalText
    .pipe(
      z
        .string()
        .regex(/^(off|\d{1,4}[sm])$/, 'BUDGET_LATE_SPEND_DELAY must be off or a delay like 30s or 2m')
        .optional(),
    )
    .transform((v) => lateSpendDelayMs(v ?? '30s')),
  METRICS_PORT: optionalText.pipe(port('METRICS_PORT').optional()),
  LOG_LEVEL: optionalText
    .pipe(
      z
        .enum(['trace', 'debug', 'info', 'warn', 'error'], {
          error: 'LOG_LEVEL must be one of trace, debug, info, warn, error',
        })
        .optional(),
    )
    .transform((v) => v ?? 'info'),
  LOG_FORMAT: optionalText.pipe(
    z.enum(['json', 'pretty'], { error: 'LOG_FORMAT must be json or pretty' }).optional(),
  ),
});

function lateSpendDelayMs(text: string): number | undefined {
  if (text === 'off') return undefined;
  const amount = Number(text.slice(0, -1));
  return text.endsWith('m') ? amount * 60_000 : amount * 1_000;
}

/**
 * Validates the environment. Errors name the variable and say what is expected; they never echo a value, so a
 * password in a URL cannot leak into a log.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const variable = issue.path.join('.');
      return issue.message.includes(variable) ? issue.message : `${variable}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  let schedule: ScheduleOptions;
  try {
    schedule = validateScheduleOptions({ timeZone: e.BUDGET_RESET_TIMEZONE, resetTime: e.BUDGET_RESET_TIME });
  } catch (error) {
    throw new ConfigError(
      `Invalid configuration: BUDGET_RESET_TIMEZONE/BUDGET_RESET_TIME: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (e.REDIS_URL && e.REDIS_HOST) {
    throw new ConfigError('Invalid configuration: set REDIS_URL or REDIS_HOST, not both');
  }
  const tls = redisTls(
    e.REDIS_URL?.startsWith('rediss://') || (!e.REDIS_URL && e.REDIS_SSL),
    e.REDIS_TLS_CA_FILE,
  );
  const redis: RedisSettings | undefined = e.REDIS_URL
    ? { url: e.REDIS_URL, ...(tls && { tls }) }
    : e.REDIS_HOST
      ? { host: e.REDIS_HOST, port: e.REDIS_PORT ?? 6379, password: e.REDIS_PASSWORD, ...(tls && { tls }) }
      : undefined;
  return {
    databaseUrl: e.DATABASE_URL,
    redis,
    redisNamespace: e.LITELLM_REDIS_NAMESPACE,
    redisTtlSeconds: e.LITELLM_REDIS_TTL,
    taskQueue: e.BUDGET_TASK_QUEUE,
    schedule,
    rollover: e.BUDGET_ROLLOVER,
    defaultEndUserBudgetId: e.BUDGET_DEFAULT_END_USER_BUDGET_ID,
    lateSpendDelayMs: e.BUDGET_LATE_SPEND_DELAY,
    metricsPort: e.METRICS_PORT,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
  };
}

/**
 * TLS settings for Redis, reading the CA file now so a wrong path fails at start-up, not at the first reset. A CA
 * file without TLS is refused: it would silently protect nothing.
 */
function redisTls(enabled: boolean | undefined, caFile: string | undefined): RedisTls | undefined {
  if (caFile && !enabled) {
    throw new ConfigError(
      'Invalid configuration: REDIS_TLS_CA_FILE is set but Redis is not reached over TLS: use a rediss:// REDIS_URL ' +
        'or REDIS_SSL=true',
    );
  }
  if (!enabled) return undefined;
  if (!caFile) return {};
  try {
    return { ca: readFileSync(caFile, 'utf8') };
  } catch (error) {
    throw new ConfigError(
      `Invalid configuration: REDIS_TLS_CA_FILE: cannot read ${caFile} (${(error as NodeJS.ErrnoException).code ?? 'error'}): ` +
        "point it at the PEM file of the CA that signed Redis's certificate",
      { cause: error },
    );
  }
}

/** Like {@link loadConfig}, for commands that cannot run without the database. */
export function requireDatabaseUrl(config: Config): string {
  if (!config.databaseUrl) {
    throw new ConfigError('DATABASE_URL is not set: point it at the PostgreSQL database LiteLLM uses');
  }
  return config.databaseUrl;
}

/** Replaces the password in a connection URL, for anything that prints one. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable URL>';
  }
}
