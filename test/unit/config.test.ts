import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactUrl } from '../../src/config.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({})).toEqual({
      databaseUrl: undefined,
      redis: undefined,
      redisNamespace: undefined,
      redisTtlSeconds: 60,
      taskQueue: 'budget-lifecycle',
      schedule: { timeZone: 'UTC', resetTime: '00:00' },
      rollover: false,
      defaultEndUserBudgetId: undefined,
      lateSpendDelayMs: 30_000,
      metricsPort: undefined,
      logLevel: 'info',
      logFormat: undefined,
    });
  });

  it('reads every variable', () => {
    expect(
      loadConfig({
        DATABASE_URL: 'postgresql://u:p@db:5432/litellm',
        REDIS_HOST: 'cache',
        REDIS_PORT: '6380',
        REDIS_PASSWORD: 'pw',
        LITELLM_REDIS_NAMESPACE: 'prod',
        LITELLM_REDIS_TTL: '300',
        BUDGET_TASK_QUEUE: 'budgets-eu',
        BUDGET_RESET_TIMEZONE: 'Europe/London',
        BUDGET_RESET_TIME: '09:30',
        BUDGET_ROLLOVER: 'true',
        BUDGET_DEFAULT_END_USER_BUDGET_ID: 'free-tier',
        BUDGET_LATE_SPEND_DELAY: '2m',
        METRICS_PORT: '9464',
        LOG_LEVEL: 'debug',
        LOG_FORMAT: 'pretty',
      }),
    ).toEqual({
      databaseUrl: 'postgresql://u:p@db:5432/litellm',
      redis: { host: 'cache', port: 6380, password: 'pw' },
      redisNamespace: 'prod',
      redisTtlSeconds: 300,
      taskQueue: 'budgets-eu',
      schedule: { timeZone: 'Europe/London', resetTime: '09:30' },
      rollover: true,
      defaultEndUserBudgetId: 'free-tier',
      lateSpendDelayMs: 120_000,
      metricsPort: 9464,
      logLevel: 'debug',
      logFormat: 'pretty',
    });
    expect(loadConfig({ LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(loadConfig({ REDIS_URL: 'rediss://cache:6379/0' }).redis).toEqual({
      url: 'rediss://cache:6379/0',
      tls: {},
    });
    expect(loadConfig({ REDIS_HOST: 'cache' }).redis).toEqual({
      host: 'cache',
      port: 6379,
      password: undefined,
    });
    expect(loadConfig({ BUDGET_ROLLOVER: '0', METRICS_PORT: '' }).rollover).toBe(false);
  });

  it('reads TLS to Redis: rediss:// or REDIS_SSL, with the CA file read at start-up', () => {
    const caFile = fileURLToPath(new URL('../../package.json', import.meta.url));
    const ca = readFileSync(caFile, 'utf8');
    expect(loadConfig({ REDIS_URL: 'rediss://cache:6379', REDIS_TLS_CA_FILE: caFile }).redis).toEqual({
      url: 'rediss://cache:6379',
      tls: { ca },
    });
    expect(loadConfig({ REDIS_HOST: 'cache', REDIS_SSL: 'True' }).redis).toEqual({
      host: 'cache',
      port: 6379,
      password: undefined,
      tls: {},
    });
    expect(loadConfig({ REDIS_HOST: 'cache', REDIS_SSL: 'false' }).redis).toEqual({
      host: 'cache',
      port: 6379,
      password: undefined,
    });
    expect(() =>
      loadConfig({ REDIS_URL: 'rediss://u:hunter2@cache', REDIS_TLS_CA_FILE: '/nonexistent/ca.pem' }),
    ).toThrow(
      "Invalid configuration: REDIS_TLS_CA_FILE: cannot read /nonexistent/ca.pem (ENOENT): point it at the PEM file of the CA that signed Redis's certificate",
    );
    expect(() => loadConfig({ REDIS_URL: 'redis://cache', REDIS_TLS_CA_FILE: caFile })).toThrow(
      'REDIS_TLS_CA_FILE is set but Redis is not reached over TLS',
    );
  });

  it('turns the late-spend check off, or says what a delay looks like', () => {
    expect(loadConfig({ BUDGET_LATE_SPEND_DELAY: 'off' }).lateSpendDelayMs).toBeUndefined();
    expect(loadConfig({ BUDGET_LATE_SPEND_DELAY: '45s' }).lateSpendDelayMs).toBe(45_000);
    for (const bad of ['30', '1h', '-5s', 'soon'])
      expect(() => loadConfig({ BUDGET_LATE_SPEND_DELAY: bad })).toThrow(
        'Invalid configuration: BUDGET_LATE_SPEND_DELAY must be off or a delay like 30s or 2m',
      );
  });

  it.each([
    ['7:5', '07:05'],
    ['09:05:30', '09:05:30'],
    ['00:00:00', '00:00'],
    ['', '00:00'],
  ])("accepts BUDGET_RESET_TIME %j like LiteLLM's budget_reset_time, as %s", (value, resetTime) => {
    expect(loadConfig({ BUDGET_RESET_TIME: value }).schedule).toEqual({ timeZone: 'UTC', resetTime });
  });

  it.each([
    [{ DATABASE_URL: 'mysql://u:hunter2@db/x' }, /DATABASE_URL must be a postgres/],
    [{ REDIS_URL: 'http://u:hunter2@cache' }, /REDIS_URL must be a redis/],
    [{ REDIS_URL: 'redis://a', REDIS_HOST: 'b' }, /REDIS_URL or REDIS_HOST, not both/],
    [{ METRICS_PORT: 'ninety' }, /METRICS_PORT must be a port number/],
    [{ METRICS_PORT: '70000' }, /METRICS_PORT must be between 1 and 65535/],
    [{ REDIS_HOST: 'x', REDIS_PORT: '0' }, /REDIS_PORT must be between 1 and 65535/],
    [{ BUDGET_ROLLOVER: 'yes' }, /BUDGET_ROLLOVER must be true or false/],
    [{ REDIS_HOST: 'x', REDIS_SSL: 'yes' }, /REDIS_SSL must be true or false/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
    [{ LITELLM_REDIS_TTL: '0' }, /LITELLM_REDIS_TTL must be a whole number of seconds/],
    [{ LITELLM_REDIS_TTL: '1.5' }, /LITELLM_REDIS_TTL must be a whole number of seconds/],
    [{ LOG_FORMAT: 'text' }, /LOG_FORMAT must be json or pretty/],
    [{ BUDGET_RESET_TIMEZONE: 'Mars/Olympus' }, /BUDGET_RESET_TIMEZONE.*Mars\/Olympus/],
    [{ BUDGET_RESET_TIME: '25:00' }, /BUDGET_RESET_TIME.*HH:MM or HH:MM:SS/],
    [{ BUDGET_RESET_TIME: '09:05:60' }, /BUDGET_RESET_TIME.*HH:MM or HH:MM:SS/],
  ])('rejects %j with an error that names the variable', (env, message) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    // A value is never echoed: a password in a URL cannot leak into a log.
    expect((error as Error).message).not.toContain('hunter2');
  });
});

describe('redactUrl', () => {
  it('hides the password and keeps the rest', () => {
    expect(redactUrl('postgres://litellm:s3cret@db:5432/litellm')).toBe(
      'postgres://litellm:***@db:5432/litellm',
    );
    expect(redactUrl('redis://cache:6379')).toBe('redis://cache:6379');
    expect(redactUrl('not a url')).toBe('<unparseable URL>');
  });
});
