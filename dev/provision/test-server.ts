import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir, pathExists, pathFromEnv, publishStaged, withCacheLock } from './cache.js';
import { freePort, waitForPort } from './ports.js';
import { run, which } from './run.js';

/** Pinned: the newest `io.temporal:temporal-test-server` on Maven Central when this was written. */
export const TEST_SERVER_VERSION = '1.38.0';
const SLF4J_VERSION = '2.0.17';
/** Bumped when the cached layout changes (now: explicit class path and a class-data sharing archive). */
const LAYOUT = 2;

/**
 * Returns the path of an executable that starts Temporal's time-skipping test server as `<path> <port>`:
 * `TEMPORAL_TEST_SERVER_PATH` when set, else a cached wrapper around the Java server fetched from Maven Central.
 * The wrapper `exec`s the JVM so that the pid its parent kills is the server itself.
 */
export async function ensureTestServer(): Promise<string> {
  const configured = await pathFromEnv('TEMPORAL_TEST_SERVER_PATH', 'a test server executable');
  if (configured) return configured;
  const name = `temporal-test-server-${TEST_SERVER_VERSION}-${LAYOUT}`;
  const dir = path.join(cacheDir(), name);
  // The wrapper is written last: its presence means the jars and the archive are complete.
  const wrapper = path.join(dir, 'temporal-test-server');
  if (await pathExists(wrapper)) return wrapper;
  return withCacheLock(name, async () => {
    if (await pathExists(wrapper)) return wrapper;
    const [mvn, java] = await Promise.all([which('mvn'), which('java')]);
    if (!mvn || !java) {
      throw new Error(
        'The time-skipping test server needs Java 11+ and Maven (apt-get install default-jdk-headless maven), ' +
          'or set TEMPORAL_TEST_SERVER_PATH to an existing test server executable',
      );
    }
    const staging = await mkdtemp(path.join(cacheDir(), '.test-server-'));
    try {
      await writeFile(path.join(staging, 'pom.xml'), pom());
      await run(
        mvn,
        ['-q', '-B', 'dependency:copy-dependencies', '-DincludeScope=runtime', '-DoutputDirectory=lib'],
        { cwd: staging },
      );
      const jars = (await readdir(path.join(staging, 'lib'))).filter((j) => j.endsWith('.jar')).sort();
      if (!jars.some((j) => j.startsWith('temporal-test-server-'))) {
        throw new Error(`Maven finished but no temporal-test-server jar is in ${staging}/lib`);
      }
      await publishStaged(staging, dir);
      // The archive records the jars' final paths, so it is dumped after they are in place.
      const classPath = jars.map((j) => path.join(dir, 'lib', j)).join(path.delimiter);
      const archive = await dumpClassArchive(java, classPath, path.join(dir, 'classes.jsa'));
      const pending = path.join(dir, 'temporal-test-server.tmp');
      await writeFile(pending, wrapperScript(java, classPath, archive));
      await chmod(pending, 0o755);
      await rename(pending, wrapper);
      return wrapper;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}

function pom(): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>budget-lifecycle</groupId>
  <artifactId>temporal-test-server-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.temporal</groupId>
      <artifactId>temporal-test-server</artifactId>
      <version>${TEST_SERVER_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>${SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
`;
}

// Client JIT only (TieredStopAtLevel=1), a serial GC and, when it could be built, an application class-data sharing
// archive: each test file starts its own server, and on two busy cores loading classes is most of its start-up.
const JVM_FLAGS = [
  '-XX:TieredStopAtLevel=1',
  '-XX:+UseSerialGC',
  '-Xss512k',
  '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
];

function wrapperScript(java: string, classPath: string, archive: string | undefined): string {
  const sharing = archive ? `-XX:SharedArchiveFile="${archive}" -Xshare:auto ` : '';
  return `#!/bin/sh
# Starts Temporal's time-skipping test server: temporal-test-server <port>
exec "${java}" ${sharing}${JVM_FLAGS.join(' ')} \\
  -cp "${classPath}" io.temporal.testserver.TestServer "$@"
`;
}

/**
 * Runs the server once with `-XX:ArchiveClassesAtExit` so later starts map the classes it loaded instead of
 * loading them again (about half of its start-up time). Best effort: without an archive the server starts anyway.
 */
async function dumpClassArchive(
  java: string,
  classPath: string,
  archive: string,
): Promise<string | undefined> {
  const port = await freePort();
  const child = spawn(
    java,
    [
      `-XX:ArchiveClassesAtExit=${archive}`,
      ...JVM_FLAGS,
      '-cp',
      classPath,
      'io.temporal.testserver.TestServer',
      String(port),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const exitedEarly = exited.then(() => Promise.reject(new Error('exited before it was ready')));
  exitedEarly.catch(() => undefined);
  try {
    await Promise.race([waitForPort(port, 300_000), exitedEarly]);
    // The JVM writes the archive while it shuts down after SIGTERM.
    child.kill('SIGTERM');
    await exited;
    return (await pathExists(archive)) ? archive : undefined;
  } catch {
    child.kill('SIGKILL');
    await exited;
    process.stderr.write(
      'Could not build a class-data sharing archive for the test server; it starts without one\n',
    );
    return undefined;
  }
}

export interface RunningTestServer {
  /** gRPC address, `127.0.0.1:<port>`. */
  readonly address: string;
  /** Kills the server and waits until it has exited. */
  stop(): Promise<void>;
}

/** How long a test server may take to accept connections: a cold JVM on two cores kept busy by other work. */
export const TEST_SERVER_READY_MS = 120_000;

/**
 * Starts a time-skipping test server (`executable <port>`, as from {@link ensureTestServer}) on a free port and
 * waits until it accepts connections, for up to `readyTimeoutMs`. We start it ourselves rather than through the
 * SDK, whose start-up window is a fixed 5 s that a loaded machine misses. On Linux the server gets SIGKILL if
 * this process dies without stopping it (`setpriv --pdeathsig`), so a crashed test run leaves no JVM behind.
 */
export async function startTestServer(
  executable: string,
  options: { readyTimeoutMs?: number } = {},
): Promise<RunningTestServer> {
  const readyTimeoutMs = options.readyTimeoutMs ?? TEST_SERVER_READY_MS;
  const port = await freePort();
  const setpriv = process.platform === 'linux' ? await which('setpriv') : undefined;
  const [command, args] = setpriv
    ? [setpriv, ['--pdeathsig', 'KILL', executable, String(port)]]
    : [executable, [String(port)]];
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  // A test process that exits without its teardown (process.exit, an uncaught error) still kills the server.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const exitedEarly = exited.then(() =>
    Promise.reject(new Error(`exited with ${child.exitCode ?? child.signalCode} before it was ready`)),
  );
  exitedEarly.catch(() => undefined);

  const started = Date.now();
  try {
    await Promise.race([waitForPort(port, readyTimeoutMs), exitedEarly]);
  } catch (error) {
    await stop();
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `The time-skipping test server (${executable}) did not start after ${Date.now() - started} ms: ${reason}\n` +
        output.trim(),
      { cause: error },
    );
  }
  return { address: `127.0.0.1:${port}`, stop };
}
