import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { registerSearchAttributes } from '../../src/temporal/register-search-attributes.js';
import { freePort, freePortBetween, waitForPort } from './ports.js';
import { run } from './run.js';
import { ensureTemporalServer, type TemporalServerBinaries } from './temporal-server.js';

const TEMPLATE = fileURLToPath(new URL('./temporal-cluster.yaml', import.meta.url));
const TLS_TEMPLATE = fileURLToPath(new URL('./temporal-cluster-tls.yaml', import.meta.url));

/** Temporal's four services. Each runs as its own process unless the cluster is started as one. */
export const TEMPORAL_SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;

export interface TemporalClusterOptions {
  /** A PostgreSQL superuser's connection string (any database): the cluster creates its own two databases. */
  readonly databaseUrl: string;
  /** Where the rendered configuration and each service's log go. */
  readonly dataDir: string;
  /** Default `temporal` and `temporal_visibility`. */
  readonly persistenceDatabase?: string;
  readonly visibilityDatabase?: string;
  /** `separate` (default): one process per service, as a production cluster runs; `single`: one process. */
  readonly layout?: 'separate' | 'single';
  /** The server's own log level (its logs go to `<dataDir>/<process>.log`); default `warn`. */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Serve the frontend over TLS only (see `temporal-cluster-tls.yaml`); default plaintext. */
  readonly tls?: TemporalClusterTls;
}

/** PEM files for a frontend that serves TLS only, with mutual TLS for clients that name one host. */
export interface TemporalClusterTls {
  /** The frontend's certificate, valid for 127.0.0.1, `localhost` and {@link mutualServerName}, and its key. */
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA that signed it: the cluster's own clients (the worker service, this setup) verify the frontend with it. */
  readonly caFile: string;
  /** A client that names this host (SNI) must present a certificate signed by {@link clientCaFile}. */
  readonly mutualServerName: string;
  readonly clientCaFile: string;
}

export interface RunningTemporalCluster {
  /** The frontend's gRPC address, `127.0.0.1:<port>`, with the `default` namespace and our search attributes. */
  readonly address: string;
  /** What each process runs, e.g. `frontend`, or `frontend,history,matching,worker` when started as one. */
  readonly processes: readonly string[];
  /** Milliseconds spent creating the two databases and applying every schema version with the schema tool. */
  readonly schemaSetupMs: number;
  stop(): Promise<void>;
}

interface Database {
  readonly host: string;
  readonly port: string;
  readonly user: string;
  readonly password: string;
}

function parseDatabaseUrl(url: string): Database {
  const parsed = new URL(url);
  if (!parsed.username || !parsed.port) {
    throw new Error(
      'The Temporal cluster needs a PostgreSQL URL with a user and a port (postgres://user:pw@host:port/db)',
    );
  }
  return {
    host: parsed.hostname,
    port: parsed.port,
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
  };
}

/**
 * Creates a database and brings it to the newest schema version with Temporal's own schema tool, from the schema
 * files that ship with the server (`setup-schema -v 0.0` then `update-schema`, as Temporal's docs prescribe). The
 * password travels in the tool's environment (`SQL_PASSWORD`), never on a command line.
 */
export async function setupTemporalSchema(
  binaries: TemporalServerBinaries,
  db: Database,
  database: string,
  schema: 'temporal' | 'visibility',
): Promise<void> {
  const env = { ...process.env, SQL_PASSWORD: db.password };
  const base = ['--plugin', 'postgres12', '--ep', db.host, '-p', db.port, '-u', db.user, '--db', database];
  await run(binaries.sqlTool, [...base, 'create-database'], { env }).catch((error: Error) => {
    if (!/already exists/.test(error.message)) throw error;
  });
  await run(binaries.sqlTool, [...base, 'setup-schema', '-v', '0.0'], { env });
  await run(
    binaries.sqlTool,
    [...base, 'update-schema', '-d', path.join(binaries.postgresSchemaDir, schema, 'versioned')],
    { env },
  );
}

/** A value for a placeholder inside single quotes in YAML, where a quote is written twice. */
const quoted = (value: string): string => value.replaceAll("'", "''");

async function renderConfig(file: string, values: Record<string, string>): Promise<string> {
  const template = await readFile(file, 'utf8');
  const rendered = template.replace(/\$\{(\w+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${path.basename(file)} names \${${name}}, which has no value`);
    return value;
  });
  return rendered;
}

/**
 * Starts Temporal's own server (built from the official Go module) on PostgreSQL persistence and SQL visibility:
 * creates and migrates its databases with the schema tool, renders our configuration, starts the services and
 * waits until a workflow can be started; then registers the `default` namespace and our search attributes through
 * the frontend and operator APIs, as an operator would on a fresh cluster.
 */
export async function startTemporalCluster(options: TemporalClusterOptions): Promise<RunningTemporalCluster> {
  const binaries = await ensureTemporalServer();
  const db = parseDatabaseUrl(options.databaseUrl);
  const persistenceDatabase = options.persistenceDatabase ?? 'temporal';
  const visibilityDatabase = options.visibilityDatabase ?? 'temporal_visibility';

  const schemaStarted = Date.now();
  await setupTemporalSchema(binaries, db, persistenceDatabase, 'temporal');
  await setupTemporalSchema(binaries, db, visibilityDatabase, 'visibility');
  const schemaSetupMs = Date.now() - schemaStarted;

  const configDir = path.join(options.dataDir, 'config');
  await mkdir(configDir, { recursive: true });
  const dynamicConfigFile = path.join(configDir, 'dynamic.yaml');
  // Custom search attributes registered by the setup are usable at once (the CLI's dev server does the same);
  // a production cluster sees them within its cache refresh interval.
  await writeFile(
    dynamicConfigFile,
    'system.forceSearchAttributesCacheRefreshOnRead:\n  - value: true\n    constraints: {}\n',
  );
  const ports: Record<string, string> = {};
  for (const name of [
    'frontendPort',
    'frontendHttpPort',
    'frontendMembershipPort',
    'historyPort',
    'historyMembershipPort',
    'matchingPort',
    'matchingMembershipPort',
    'workerPort',
    'workerMembershipPort',
  ]) {
    // Temporal keeps membership ports in a PostgreSQL smallint: they must be below 32768.
    ports[name] = String(
      name.endsWith('MembershipPort') ? await freePortBetween(20_000, 32_767) : await freePort(),
    );
  }
  await writeFile(
    path.join(configDir, 'development.yaml'),
    await renderConfig(TEMPLATE, {
      ...ports,
      logLevel: options.logLevel ?? 'warn',
      persistenceDatabase,
      visibilityDatabase,
      dbHost: db.host,
      dbPort: db.port,
      dbUser: db.user,
      dbPassword: quoted(db.password),
      dynamicConfigFile,
    }),
    { mode: 0o600 },
  );
  const { tls } = options;
  if (tls) {
    await writeFile(
      path.join(configDir, 'development_tls.yaml'),
      await renderConfig(TLS_TEMPLATE, {
        certFile: quoted(tls.certFile),
        keyFile: quoted(tls.keyFile),
        caFile: quoted(tls.caFile),
        mutualServerName: quoted(tls.mutualServerName),
        clientCaFile: quoted(tls.clientCaFile),
      }),
    );
  }
  // How this setup reaches the frontend: over TLS when it serves TLS, verifying it with the CA, by the name the
  // system worker uses too (Node warns about a TLS connection that names an IP address).
  const connectOptions: ConnectionOptions = tls
    ? { tls: { serverRootCACertificate: await readFile(tls.caFile), serverNameOverride: 'localhost' } }
    : {};

  const groups: string[][] =
    options.layout === 'single' ? [[...TEMPORAL_SERVICES]] : TEMPORAL_SERVICES.map((service) => [service]);
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = async (): Promise<void> => {
    // Frontend first, so clients see the cluster go away before the services behind it do.
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      if (!(await Promise.race([done.then(() => true), sleep(10_000).then(() => false)])))
        child.kill('SIGKILL');
    }
  };
  let failure: Error | undefined;
  const startProcess = (services: readonly string[]): void => {
    const name = services.join('+');
    const logFile = path.join(options.dataDir, `${name}.log`);
    logs.push(logFile);
    const child = spawn(
      binaries.server,
      [
        '--root',
        options.dataDir,
        '--config',
        'config',
        '--env',
        'development',
        ...(tls ? ['--zone', 'tls'] : []),
        '--allow-no-auth',
        'start',
        ...services.flatMap((service) => ['--service', service]),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const out = createWriteStream(logFile);
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    child.once('exit', (code, signal) => {
      failure ??= new Error(`temporal-server (${name}) exited with ${code ?? signal}; see ${logFile}`);
    });
    children.push(child);
  };

  const address = `127.0.0.1:${ports.frontendPort}`;
  try {
    // Every process writes the cluster's metadata on first start, and all but one lose that race and exit: start
    // the frontend alone until it serves (it has written the metadata by then), then the others.
    const [first, ...rest] = groups;
    startProcess(first!);
    const deadline = Date.now() + 120_000;
    while (
      !(await waitForPort(Number(ports.frontendPort), 250).then(
        () => true,
        () => false,
      ))
    ) {
      if (failure) throw failure;
      if (Date.now() > deadline) throw new Error('the frontend did not open its port within 120 s');
    }
    for (const services of rest) startProcess(services);
    await waitUntilServing(address, connectOptions, () => failure);
    const connection = await Connection.connect({ ...connectOptions, address });
    try {
      await registerSearchAttributes(connection, 'default');
    } finally {
      await connection.close();
    }
  } catch (error) {
    await stop();
    const tails = await Promise.all(logs.map(async (file) => tail(file)));
    throw new Error(
      `The Temporal cluster at ${address} did not start: ${(error as Error).message}\n${tails.join('\n')}`,
      {
        cause: error,
      },
    );
  }
  return { address, processes: groups.map((g) => g.join(',')), schemaSetupMs, stop };
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const lines = text.trim().split('\n').slice(-5);
  return `${path.basename(file)}: ${lines.map((line) => line.slice(0, 400)).join('\n  ')}`;
}

/**
 * Registers `default` (one day's retention) and waits until it takes a workflow: the frontend answering is not
 * enough, since history and matching join the membership ring and load the namespace on their own schedule.
 */
async function waitUntilServing(
  address: string,
  connectOptions: ConnectionOptions,
  failed: () => Error | undefined,
  timeoutMs = 180_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const probe = `cluster-ready-probe-${process.pid}`;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const early = failed();
    if (early) throw early;
    try {
      const connection = await Connection.connect({ ...connectOptions, address, connectTimeout: 2_000 });
      try {
        await connection.workflowService
          .registerNamespace({ namespace: 'default', workflowExecutionRetentionPeriod: msToTs('1 day') })
          .catch((error: { code?: number }) => {
            if (error.code !== status.ALREADY_EXISTS) throw error;
          });
        await connection.workflowService.startWorkflowExecution({
          namespace: 'default',
          workflowId: probe,
          workflowType: { name: 'readinessProbe' },
          taskQueue: { name: probe },
          requestId: probe,
        });
        await connection.workflowService.terminateWorkflowExecution({
          namespace: 'default',
          workflowExecution: { workflowId: probe },
          reason: 'readiness probe',
        });
        return;
      } finally {
        await connection.close();
      }
    } catch (error) {
      lastError = error;
      await sleep(500);
    }
  }
  throw new Error(`not serving within ${timeoutMs / 1_000} s: ${(lastError as Error | undefined)?.message}`);
}
