import { Connection } from '@temporalio/client';
// SDK-internal: the option `TestWorkflowEnvironment.createTimeSkipping()` sets to enable the test service (time
// skipping) on its connections. No public API connects time skipping to a server started by someone else.
import { InternalConnectionOptionsSymbol } from '@temporalio/client/lib/connection.js';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  bundleWorkflowCode,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import type { Duration } from '@temporalio/common';
import { startTestServer, type RunningTestServer } from '../../dev/provision/test-server.js';
import { PAYLOAD_CONVERTER_PATH } from '../../src/worker.js';
import { LIMITS } from './limits.js';
import { services } from './services.js';

let runtimeInstalled = false;

/** Keeps the SDK's core logs to warnings; must run before anything creates the runtime. */
export function installTestRuntime(): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

/**
 * A {@link TestWorkflowEnvironment} with time skipping on a test server we started ourselves: what
 * `createTimeSkipping()` gives (`sleep` and `currentTimeMs` move server time, awaiting a result skips time) without
 * the SDK's fixed 5 s start-up window. Teardown kills the server.
 */
class StartedTimeSkippingEnvironment extends TestWorkflowEnvironment {
  private constructor(
    private readonly testServer: RunningTestServer,
    connection: Connection,
    nativeConnection: NativeConnection,
  ) {
    super(
      Runtime.instance(),
      { server: { type: 'existing' }, client: {}, plugins: [] },
      true,
      'existing',
      connection,
      nativeConnection,
      'default',
      testServer.address,
    );
    // Skipped time stops moving while a workflow task or activity is outstanding; bound each sleep so a server
    // whose time is stuck fails here, saying so, instead of in the test's timeout.
    const skip = this.sleep;
    this.sleep = async (duration: Duration): Promise<void> => {
      const from = await this.currentTimeMs();
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const fail = (moved: string) =>
            reject(
              new Error(
                `env.sleep(${String(duration)}) did not finish within ${LIMITS.timeSkip} ms: server time moved ` +
                  `${moved}; something holds time (a workflow task or activity nobody completes)`,
              ),
            );
          this.currentTimeMs().then(
            (now) => fail(`${now - from} ms`),
            () => fail('an unknown amount'),
          );
        }, LIMITS.timeSkip);
      });
      try {
        await Promise.race([skip(duration), stuck]);
      } finally {
        clearTimeout(timer);
      }
    };
  }

  static async start(executable: string): Promise<StartedTimeSkippingEnvironment> {
    const server = await startTestServer(executable);
    const options = {
      address: server.address,
      [InternalConnectionOptionsSymbol]: { supportsTestService: true },
    };
    let nativeConnection: NativeConnection | undefined;
    try {
      nativeConnection = await NativeConnection.connect(options);
      const connection = await Connection.connect(options);
      return new StartedTimeSkippingEnvironment(server, connection, nativeConnection);
    } catch (error) {
      await nativeConnection?.close();
      await server.stop();
      throw error;
    }
  }

  override async teardown(): Promise<void> {
    try {
      await super.teardown();
    } finally {
      await this.testServer.stop();
    }
  }
}

/**
 * Starts a fresh time-skipping test server for this test file (skipped time is global to a server) and waits as
 * long as a busy machine needs for it to accept connections.
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  installTestRuntime();
  return StartedTimeSkippingEnvironment.start(services().testServerPath);
}

/**
 * Bundles a workflow module once per test file, with the payload converter the worker ships; pass the result as
 * `workflowBundle`.
 */
export async function bundleWorkflows(relativeToRepo: string): Promise<WorkflowBundleWithSourceMap> {
  const workflowsPath = fileURLToPath(new URL(`../../${relativeToRepo}`, import.meta.url));
  return bundleWorkflowCode({
    workflowsPath,
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    logger: new DefaultLogger('WARN'),
  });
}
