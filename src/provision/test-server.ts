import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir, pathExists, pathFromEnv, publishStaged, withCacheLock } from './cache.js';
import { run, which } from './run.js';

/** Pinned: the newest `io.temporal:temporal-test-server` on Maven Central when this was written. */
export const TEST_SERVER_VERSION = '1.38.0';
const SLF4J_VERSION = '2.0.17';

/**
 * Returns the path of an executable that starts Temporal's time-skipping test server as `<path> <port>`:
 * `TEMPORAL_TEST_SERVER_PATH` when set, else a cached wrapper around the Java server fetched from Maven Central.
 * The wrapper `exec`s the JVM so that the pid the SDK kills on teardown is the server itself.
 */
export async function ensureTestServer(): Promise<string> {
  const configured = await pathFromEnv('TEMPORAL_TEST_SERVER_PATH', 'a test server executable');
  if (configured) return configured;
  const dir = path.join(cacheDir(), `temporal-test-server-${TEST_SERVER_VERSION}`);
  const wrapper = path.join(dir, 'temporal-test-server');
  if (await pathExists(wrapper)) return wrapper;
  return withCacheLock(`temporal-test-server-${TEST_SERVER_VERSION}`, async () => {
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
      const jars = await readdir(path.join(staging, 'lib'));
      if (!jars.some((j) => j.startsWith('temporal-test-server-'))) {
        throw new Error(`Maven finished but no temporal-test-server jar is in ${staging}/lib`);
      }
      await writeFile(path.join(staging, 'temporal-test-server'), wrapperScript(java, dir));
      await chmod(path.join(staging, 'temporal-test-server'), 0o755);
      await publishStaged(staging, dir);
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

// Client JIT (TieredStopAtLevel=1) and class-data sharing make the JVM answer within the SDK's 5 s start-up
// window on two busy cores; the test server's own work is light.
function wrapperScript(java: string, dir: string): string {
  return `#!/bin/sh
# Starts Temporal's time-skipping test server: temporal-test-server <port>
exec "${java}" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss512k -Xshare:auto \\
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \\
  -cp "${dir}/lib/*" io.temporal.testserver.TestServer "$@"
`;
}
