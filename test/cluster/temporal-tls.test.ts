import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTemporalCluster, type RunningTemporalCluster } from '../../dev/provision/temporal-cluster.js';
import { createCa, issueCertificate, type CertificateFiles } from '../helpers/certificates.js';
import { budgetctl, spawnBudgetctl, stopProcess } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { LIMITS } from '../helpers/limits.js';
import { insertBudget, insertTag, ONE_RESET_DURATION, spendOf } from '../helpers/litellm-rows.js';
import { services, uniqueName, workerEnv } from '../helpers/services.js';
import { startWorkerProcess, type WorkerProcess } from '../helpers/worker-process.js';

// A Temporal server of this file's own (Temporal's server, the four services in one process, on the suite's
// PostgreSQL) whose frontend serves TLS only, with a certificate from a CA made here with openssl. Clients that dial
// it by address get server TLS; clients that name MUTUAL_HOST (SNI) must present a certificate from a second CA
// (mutual TLS), as a cluster can for one host name (`hostOverrides`). A `budgetctl worker` and `budgetctl` reach it
// through TEMPORAL_TLS_* alone; a wrong setting fails with one line that names the setting to change.
const MUTUAL_HOST = 'mtls.budget-lifecycle.test';
/** A short name: Temporal's schema tool creates these databases on the suite's PostgreSQL, and we drop them after. */
const SERVER_DATABASES = [`temporal_tls_${process.pid}`, `temporal_tls_visibility_${process.pid}`] as const;

let scratch: string;
let server: RunningTemporalCluster | undefined;
let db: TestDatabase;
let ca: CertificateFiles;
let clientCert: CertificateFiles;
let strayClientCert: CertificateFiles;
let untrustedCa: CertificateFiles;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'temporal-tls-'));
  ca = await createCa(scratch, 'server-ca');
  const serverCert = await issueCertificate(scratch, ca, 'frontend', {
    server: ['127.0.0.1', 'localhost', MUTUAL_HOST],
  });
  const clientCa = await createCa(scratch, 'client-ca');
  clientCert = await issueCertificate(scratch, clientCa, 'budget-worker', { client: true });
  untrustedCa = await createCa(scratch, 'untrusted-ca');
  strayClientCert = await issueCertificate(scratch, untrustedCa, 'stray-client', { client: true });

  server = await startTemporalCluster({
    databaseUrl: services().databaseUrl,
    dataDir: path.join(scratch, 'temporal'),
    layout: 'single',
    persistenceDatabase: SERVER_DATABASES[0],
    visibilityDatabase: SERVER_DATABASES[1],
    tls: {
      certFile: serverCert.cert,
      keyFile: serverCert.key,
      caFile: ca.cert,
      mutualServerName: MUTUAL_HOST,
      clientCaFile: clientCa.cert,
    },
  });
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const worker of workers) await stopProcess(worker.child);
  await server?.stop();
  await db?.drop();
  const admin = new pg.Client({ connectionString: services().databaseUrl });
  await admin.connect();
  try {
    for (const name of SERVER_DATABASES) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  await rm(scratch, { recursive: true, force: true });
});

/** The frontend's port: `localhost:<port>` is a name on its certificate (an IP address is too, but Node warns). */
const port = () => server!.address.split(':')[1]!;

/** A worker's or budgetctl's environment: this file's database, the suite's Redis, and the TLS server. */
function tlsEnv(taskQueue: string, tls: Record<string, string>): Record<string, string> {
  return { ...workerEnv(db.url, taskQueue), TEMPORAL_ADDRESS: `localhost:${port()}`, ...tls };
}
const serverTls = (): Record<string, string> => ({
  TEMPORAL_TLS: 'true',
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca.cert,
});
const mutualTls = (cert: CertificateFiles | undefined): Record<string, string> => ({
  TEMPORAL_TLS: 'true',
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca.cert,
  TEMPORAL_TLS_SERVER_NAME: MUTUAL_HOST,
  ...(cert ? { TEMPORAL_TLS_CLIENT_CERT_PATH: cert.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: cert.key } : {}),
});

/** `budgetctl status` with `env`: it must fail to connect, with exit 4 and one line matching `says`. */
async function expectRefused(env: Record<string, string>, says: RegExp): Promise<void> {
  const result = await budgetctl(['status', 'budget:anything'], env);
  expect(result.code, result.stderr).toBe(4);
  expect(result.stderr.trimEnd().split('\n'), result.stderr).toHaveLength(1);
  expect(result.stderr).toMatch(says);
}

/** Text that must never appear in what a process prints: the private keys' PEM, whole or its base64 body. */
async function keyMaterial(files: readonly CertificateFiles[]): Promise<string[]> {
  const pems = await Promise.all(files.map((f) => readFile(f.key, 'utf8')));
  return [
    'PRIVATE KEY',
    ...pems.flatMap((pem) => pem.split('\n').filter((line) => line.length > 20 && !line.startsWith('-'))),
  ];
}

function expectNoKeyMaterial(where: string, text: string, material: readonly string[]): void {
  for (const secret of material) expect(text.includes(secret), `key material in ${where}`).toBe(false);
}

/**
 * A budget due in a few seconds with one tag carrying spend; `budgetctl sync` starts its workflow, the worker resets
 * it at the boundary, and `budgetctl reset` forces a second reset: both audited, the spend zeroed each time.
 */
async function resetEndToEnd(env: Record<string, string>, prefix: string): Promise<void> {
  const id = `${prefix}-tier`;
  const tag = `${prefix}-tag`;
  const boundary = new Date(Math.ceil((Date.now() + 8_000) / 1_000) * 1_000);
  await insertBudget(db.pool, { id, duration: ONE_RESET_DURATION, resetAt: boundary.toISOString() });
  await insertTag(db.pool, { name: tag, spend: 7, budgetId: id });
  const sync = await budgetctl(['--json', 'sync'], env);
  expect(sync.code, sync.stderr).toBe(0);
  expect(JSON.parse(sync.stdout)).toMatchObject({ started: 1 });

  const audited = async () =>
    (
      await db.pool.query<{ trigger: string; spend_total: number }>(
        `SELECT trigger, spend_total FROM budget_lifecycle.reset_log WHERE budget_id = $1 ORDER BY executed_at`,
        [id],
      )
    ).rows;
  await vi.waitFor(async () => expect(await audited()).toHaveLength(1), {
    timeout: LIMITS.workflowStep,
    interval: 500,
  });
  expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);

  await db.pool.query(`UPDATE "LiteLLM_TagTable" SET spend = 3 WHERE tag_name = $1`, [tag]);
  const reset = await budgetctl(['--json', 'reset', `budget:${id}`, '--reason', 'over TLS'], env);
  expect(reset.code, reset.stderr).toBe(0);
  expect(JSON.parse(reset.stdout)).toMatchObject({ outcome: 'reset', entityCount: 1, spendTotal: 3 });
  expect(await spendOf(db.pool, 'LiteLLM_TagTable', { tag_name: tag })).toBe(0);
  expect(await audited()).toEqual([
    { trigger: 'schedule', spend_total: 7 },
    { trigger: 'forced', spend_total: 3 },
  ]);

  const status = await budgetctl(['--json', 'status', `budget:${id}`], env);
  expect(status.code, status.stderr).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'active', lastError: null });
}

describe('Temporal over TLS (its own server, TLS only)', () => {
  it('refuses a plaintext client and one that does not trust its CA, with one line naming what to set', async () => {
    const taskQueue = uniqueName('tls-refused');
    await expectRefused(
      tlsEnv(taskQueue, {}),
      /^budgetctl: Cannot reach Temporal at localhost:\d+ \(namespace default, auth none\): the server requires TLS: set TEMPORAL_TLS=true, and TEMPORAL_TLS_SERVER_CA_CERT_PATH/,
    );
    // The machine's trust store, then a CA that did not sign the server's certificate.
    await expectRefused(
      tlsEnv(taskQueue, { TEMPORAL_TLS: 'true' }),
      /auth tls\): the server's certificate is not trusted \(.+\): set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA certificate that signed it$/m,
    );
    await expectRefused(
      tlsEnv(taskQueue, { TEMPORAL_TLS: 'true', TEMPORAL_TLS_SERVER_CA_CERT_PATH: untrustedCa.cert }),
      /the server's certificate is not trusted .*: set TEMPORAL_TLS_SERVER_CA_CERT_PATH/,
    );
    // The right CA, but a name the certificate was not issued for.
    await expectRefused(
      tlsEnv(taskQueue, { ...serverTls(), TEMPORAL_TLS_SERVER_NAME: 'temporal.example' }),
      /the server's certificate is not valid for the name temporal\.example: set TEMPORAL_TLS_SERVER_NAME/,
    );
    // And the other way round: TLS to the suite's own cluster, which serves plaintext (by name: Node warns on
    // a TLS connection to an IP address, on stderr).
    await expectRefused(
      {
        ...tlsEnv(taskQueue, { TEMPORAL_TLS: 'true' }),
        TEMPORAL_ADDRESS: services().temporalAddress.replace('127.0.0.1', 'localhost'),
      },
      /the server does not serve TLS: set TEMPORAL_TLS=false/,
    );

    // A worker started without TLS stops at once with the same line (it never polls, nothing is started).
    const worker = spawnBudgetctl(['worker', '--no-supervisor'], tlsEnv(taskQueue, {}));
    let output = '';
    worker.stderr?.on('data', (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number | null>((resolve) => worker.once('exit', resolve));
    expect(code, output).toBe(4);
    expect(output).toMatch(
      /^budgetctl: Cannot reach Temporal at .*: the server requires TLS: set TEMPORAL_TLS=true/m,
    );
  });

  it('a worker and budgetctl that verify the server with the CA reset a budget end to end', async () => {
    const taskQueue = uniqueName('tls');
    const env = tlsEnv(taskQueue, serverTls());
    const worker = await startWorkerProcess({ ...env, LOG_LEVEL: 'info' }, ['--no-supervisor']);
    workers.push(worker);
    expect(worker.output()).toMatch(/"auth":"tls".*"msg":"worker started"/);
    await resetEndToEnd(env, taskQueue);
  });

  it('mutual TLS: refused without a client certificate or with one from another CA; a worker with one resets a budget', async () => {
    const taskQueue = uniqueName('mtls');
    await expectRefused(
      tlsEnv(taskQueue, mutualTls(undefined)),
      /auth tls\): the server requires a client certificate \(mutual TLS\): set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH$/m,
    );
    await expectRefused(
      tlsEnv(taskQueue, mutualTls(strayClientCert)),
      /auth mtls\): the server refused the client certificate \(unknown ca\): set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH to a certificate signed by a CA the server trusts$/m,
    );

    const env = tlsEnv(taskQueue, mutualTls(clientCert));
    const worker = await startWorkerProcess({ ...env, LOG_LEVEL: 'debug' }, ['--no-supervisor']);
    workers.push(worker);
    expect(worker.output()).toMatch(/"auth":"mtls".*"msg":"worker started"/);
    await resetEndToEnd(env, taskQueue);

    const material = await keyMaterial([clientCert, strayClientCert]);
    const status = await budgetctl(['status', `budget:${taskQueue}-tier`], env);
    expectNoKeyMaterial('`budgetctl status`', status.stdout + status.stderr, material);
    expectNoKeyMaterial("the worker's output", worker.output(), material);
    const refused = await budgetctl(
      ['status', 'budget:anything'],
      tlsEnv(taskQueue, mutualTls(strayClientCert)),
    );
    expectNoKeyMaterial('a refused command', refused.stdout + refused.stderr, material);
  });
});
