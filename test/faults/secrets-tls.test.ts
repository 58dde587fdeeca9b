import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { budgetWorkflowId, type BudgetRef } from '../../src/budget-ref.js';
import { createLiteLLMDatabase } from '../../dev/provision/litellm-database.js';
import { freePort } from '../../dev/provision/ports.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/provision/postgres.js';
import { startRedis, type RunningRedis } from '../../dev/provision/redis.js';
import { BUDGET_WORKFLOW_TYPE } from '../../src/temporal/budget-workflows.js';
import { statusQuery, type BudgetStatus } from '../../src/temporal/messages.js';
import { createCa, issueCertificate } from '../helpers/certificates.js';
import { budgetctl } from '../helpers/cli.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, ONE_RESET_DURATION, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// PostgreSQL and Redis of this file's own, both serving TLS only with a certificate signed by a throwaway CA, both
// behind a password; a worker reaches them through configuration alone (DATABASE_URL's `sslmode`/`sslrootcert`,
// REDIS_SSL and REDIS_TLS_CA_FILE) and resets a budget. Every secret it was given is then looked for in everything
// it and the CLI print, and in what the workflow shows in Temporal. The CLI dev server serves no TLS, so the API key
// is sent in plaintext here (TEMPORAL_TLS=false), so that it too is looked for; Temporal over TLS and mutual TLS are
// tested against Temporal's own server in test/cluster/temporal-tls.test.ts.
const SECRETS = {
  postgres: 'pg-pw-Zq81xTv',
  redis: 'redis-pw-Hk29Lm',
  temporal: 'temporal-key-Mw73Pq',
} as const;
const taskQueue = uniqueName('secrets-tls');

let scratch: string;
let ca: string;
let postgres: RunningPostgres | undefined;
let redisServer: RunningRedis | undefined;
let redisPort: number;
let databaseUrl: string;
let pool: pg.Pool;
let connection: Connection;
let client: Client;
let worker: WorkerProcess | undefined;
const started: string[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'secrets-tls-'));
  // As root the server runs as the `postgres` user, which must reach its data directory.
  await chmod(scratch, 0o755);
  const caFiles = await createCa(scratch, 'ca');
  const tls = await issueCertificate(scratch, caFiles, 'server', { server: ['127.0.0.1', 'localhost'] });
  ca = caFiles.cert;

  postgres = await startEmbeddedPostgres({
    dataDir: path.join(scratch, 'pg'),
    persistent: false,
    tls: { certFile: tls.cert, keyFile: tls.key },
  });
  const adminUrl = `${postgres.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`;
  const owner = await createLiteLLMDatabase(adminUrl, 'litellm');
  const admin = new pg.Client({ connectionString: owner });
  await admin.connect();
  await admin.query(`CREATE ROLE budget_tls LOGIN SUPERUSER PASSWORD '${SECRETS.postgres}'`);
  await admin.end();
  const url = new URL(owner);
  url.username = 'budget_tls';
  url.password = SECRETS.postgres;
  databaseUrl = url.toString();
  pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });

  redisPort = await freePort();
  redisServer = await startRedis({
    dataDir: path.join(scratch, 'redis'),
    port: redisPort,
    extraArgs: [
      ...['--port', '0', '--tls-port', String(redisPort)],
      ...['--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', ca],
      ...['--tls-auth-clients', 'no', '--requirepass', SECRETS.redis],
    ],
  });
  connection = await Connection.connect({ address: services().temporalAddress });
  client = new Client({ connection });
});
afterAll(async () => {
  await worker?.kill();
  for (const id of started) {
    await client?.workflow
      .getHandle(id)
      .terminate('test finished')
      .catch(() => undefined);
  }
  await connection?.close();
  await pool?.end();
  await redisServer?.stop();
  await postgres?.stop();
  await rm(scratch, { recursive: true, force: true });
});

/** Every variable that holds a secret, in the forms LiteLLM's deployments set them. */
function secretEnv(): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_HOST: '127.0.0.1',
    REDIS_PORT: String(redisPort),
    REDIS_PASSWORD: SECRETS.redis,
    REDIS_SSL: 'true',
    REDIS_TLS_CA_FILE: ca,
    LITELLM_REDIS_NAMESPACE: taskQueue,
    TEMPORAL_ADDRESS: services().temporalAddress,
    TEMPORAL_API_KEY: SECRETS.temporal,
    TEMPORAL_TLS: 'false',
    BUDGET_TASK_QUEUE: taskQueue,
  };
}

function expectNoSecret(where: string, text: string): void {
  for (const [name, secret] of Object.entries(SECRETS)) {
    expect(text.includes(secret), `the ${name} secret appears in ${where}:\n${text}`).toBe(false);
  }
}

describe('over TLS to PostgreSQL and Redis, with passwords and an API key', () => {
  it('both servers refuse a connection without TLS', async () => {
    const plain = new URL(databaseUrl);
    plain.search = '?sslmode=disable';
    const refused = new pg.Client({ connectionString: plain.toString() });
    await expect(refused.connect()).rejects.toThrow(/no encryption/);
    // Redis answers a plaintext PING by dropping the connection (its TLS handshake fails).
    const answer = await new Promise<string>((resolve) => {
      let received = '';
      const socket = connect(redisPort, '127.0.0.1', () => socket.write('PING\r\n'));
      socket.on('data', (chunk) => (received += chunk.toString('latin1')));
      socket.on('close', () => resolve(received));
      socket.on('error', () => undefined);
    });
    expect(answer).not.toContain('PONG');
  });

  it('the worker resets a budget and invalidates its cache; no secret in logs, status, history, memo or search attributes', async () => {
    const ref: BudgetRef = { kind: 'budget', id: `${taskQueue}-tier` };
    const tag = `${taskQueue}-tag`;
    const boundary = new Date(Math.ceil((Date.now() + 6_000) / 1_000) * 1_000).toISOString();
    await insertBudget(pool, { id: ref.id, duration: ONE_RESET_DURATION, resetAt: boundary });
    await insertTag(pool, { name: tag, spend: 9, budgetId: ref.id });
    const redis = new Redis({
      host: '127.0.0.1',
      port: redisPort,
      password: SECRETS.redis,
      tls: { ca: await readFile(ca, 'utf8') },
    });
    try {
      const cached = `${taskQueue}:tag:${tag}`;
      await redis.set(cached, 'stale object from before the reset');

      worker = await startWorkerProcess({ ...secretEnv(), LOG_LEVEL: 'debug' }, ['--no-supervisor']);
      const workflowId = budgetWorkflowId(ref);
      await client.workflow.start(BUDGET_WORKFLOW_TYPE, { taskQueue, workflowId, args: [ref] });
      started.push(workflowId);
      const handle = client.workflow.getHandle(workflowId);
      const status = await vi.waitFor(
        async () => {
          const current = await handle.query(statusQuery);
          if (current.cycle < 1) throw new Error(`not reset yet: ${JSON.stringify(current)}`);
          return current;
        },
        { timeout: LIMITS.workflowStep, interval: 250 },
      );
      expect(status).toMatchObject<Partial<BudgetStatus>>({ state: 'active', lastError: null });
      expect(status.lastReset).toMatchObject({ periodEnd: boundary, entityCount: 1, spendTotal: 9 });
      expect(await spendOf(pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);
      await vi.waitFor(async () => expect(await redis.exists(cached)).toBe(0), {
        timeout: LIMITS.workflowStep,
        interval: 100,
      });

      const shown = await budgetctl(['status', `budget:${ref.id}`], secretEnv());
      expect(shown.code, shown.stderr).toBe(0);
      expectNoSecret('`budgetctl status`', shown.stdout + shown.stderr);
      const json = await budgetctl(['status', `budget:${ref.id}`, '--json'], secretEnv());
      expect(json.code, json.stderr).toBe(0);
      expectNoSecret('`budgetctl status --json`', json.stdout + json.stderr);

      const description = await handle.describe();
      expectNoSecret('the search attributes', JSON.stringify(description.searchAttributes));
      expectNoSecret('the memo', JSON.stringify((await description.memo) ?? {}));
      expectNoSecret('the workflow history', JSON.stringify(await handle.fetchHistory()));
      expectNoSecret("the worker's output", worker.output());
    } finally {
      redis.disconnect();
    }
  });

  it('failing commands say what is wrong without printing a secret', async () => {
    const closed = String(await freePort());
    const cases: Array<{ what: string; args: string[]; env: Record<string, string>; says: RegExp }> = [
      {
        what: 'PostgreSQL unreachable',
        args: ['history', 'budget:x'],
        env: { ...secretEnv(), DATABASE_URL: databaseUrl.replace(/:\d+\//, `:${closed}/`) },
        says: /Cannot reach PostgreSQL at postgres:\/\/budget_tls:\*\*\*@.*ECONNREFUSED/,
      },
      {
        what: 'a wrong PostgreSQL password',
        args: ['history', 'budget:x'],
        env: {
          ...secretEnv(),
          DATABASE_URL: databaseUrl.replace(SECRETS.postgres, `${SECRETS.postgres}-wrong`),
        },
        says: /password authentication failed/,
      },
      {
        what: 'PostgreSQL certificate not trusted',
        args: ['history', 'budget:x'],
        env: {
          ...secretEnv(),
          DATABASE_URL: databaseUrl.replace(/sslrootcert=[^&]+/, 'sslrootcert=/etc/hostname'),
        },
        says: /Cannot reach PostgreSQL .*unable to verify the first certificate/,
      },
      {
        what: 'Temporal unreachable',
        args: ['status', 'budget:x'],
        env: { ...secretEnv(), TEMPORAL_ADDRESS: `127.0.0.1:${closed}` },
        says: /Cannot reach Temporal/,
      },
      {
        what: 'an unreadable Redis CA file',
        args: ['worker', '--no-supervisor'],
        env: {
          ...secretEnv(),
          REDIS_HOST: '',
          REDIS_URL: `rediss://:${SECRETS.redis}@127.0.0.1:${redisPort}`,
          REDIS_TLS_CA_FILE: path.join(scratch, 'missing-ca.pem'),
        },
        says: /REDIS_TLS_CA_FILE: cannot read .*missing-ca\.pem \(ENOENT\)/,
      },
    ];
    for (const { what, args, env, says } of cases) {
      const result = await budgetctl(args, env);
      expect(result.code, what).not.toBe(0);
      expect(result.stderr, what).toMatch(says);
      expectNoSecret(`the error of ${what}`, result.stdout + result.stderr);
    }
  });
});
