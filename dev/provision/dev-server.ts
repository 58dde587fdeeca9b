import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { ensureTemporalCli } from './temporal-cli.js';
import { freePort, waitForPort } from './ports.js';

export interface RunningDevServer {
  /** gRPC address, `127.0.0.1:<port>`. */
  readonly address: string;
  readonly uiUrl: string;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  /** SQLite file that keeps workflows across restarts; in-memory when omitted. */
  dbFile?: string;
  /** Custom search attributes registered before start-up, as `Name=Type`. */
  searchAttributes?: readonly string[];
  /** More dynamic config, as `key=value` (e.g. a lowered `limit.blobSize.error`). */
  dynamicConfig?: readonly string[];
  onLog?: (chunk: string) => void;
}

/**
 * Starts the Temporal CLI's dev server (with its Web UI) and waits until its frontend answers. We spawn it
 * ourselves rather than through the SDK so start-up may take as long as a cold, busy machine needs.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<RunningDevServer> {
  const cli = await ensureTemporalCli();
  const port = options.port ?? (await freePort());
  const uiPort = options.uiPort ?? (await freePort());
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--namespace',
    'default',
    '--log-format',
    'pretty',
    '--log-level',
    'warn',
    '--dynamic-config-value',
    'frontend.enableUpdateWorkflowExecution=true',
    '--dynamic-config-value',
    'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
  ];
  if (options.dbFile) {
    await mkdir(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  for (const attribute of options.searchAttributes ?? []) args.push('--search-attribute', attribute);
  for (const value of options.dynamicConfig ?? []) args.push('--dynamic-config-value', value);

  const child = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = options.onLog ?? (() => undefined);
  child.stdout.on('data', (c: Buffer) => log(c.toString()));
  child.stderr.on('data', (c: Buffer) => log(c.toString()));
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`temporal server start-dev exited with code ${code}`))),
  );
  exited.catch(() => undefined);
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((resolve) => child.once('exit', resolve));
    // The CLI shuts down cleanly on an interrupt, as from Ctrl-C; SIGKILL only if it hangs.
    child.kill('SIGINT');
    const killed = await Promise.race([done.then(() => true), sleep(5_000).then(() => false)]);
    if (!killed) child.kill('SIGKILL');
  };
  try {
    const address = `127.0.0.1:${port}`;
    await Promise.race([waitUntilServing(address), exited]);
    await Promise.race([waitForPort(uiPort, 30_000), exited]);
    return { address, uiUrl: `http://127.0.0.1:${uiPort}`, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Waits until the frontend serves the `default` namespace, not merely until its port is open. */
async function waitUntilServing(address: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace: 'default' });
        return;
      } finally {
        await connection.close();
      }
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`The Temporal dev server at ${address} did not become ready`, { cause: error });
      }
      await sleep(200);
    }
  }
}
