import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { freePort, waitForPort } from './ports.js';
import { installDebianPackage, which } from './run.js';

export interface RunningRedis {
  readonly url: string;
  /** Process id of the server (fault tests pause and kill it). */
  readonly pid: number;
  stop(): Promise<void>;
}

const REDIS_DIRS = ['/usr/bin', '/usr/sbin', '/usr/local/bin'];

/**
 * Returns a `redis-server` binary: from PATH, else installs Debian's package when running as root with apt,
 * else fails with what to install.
 */
export async function ensureRedisServer(): Promise<string> {
  const found = await which('redis-server', REDIS_DIRS);
  if (found) return found;
  if (await installDebianPackage('redis-server')) {
    const installed = await which('redis-server', REDIS_DIRS);
    if (installed) return installed;
  }
  throw new Error(
    'redis-server is not installed: install it (apt-get install redis-server, brew install redis) or set REDIS_URL',
  );
}

/**
 * Starts a throwaway `redis-server` on a free loopback port (no persistence). `extraArgs` are appended and win
 * over the defaults (a TLS test passes `--tls-port <port> --port 0` to serve only TLS on `port`).
 */
export async function startRedis(options: {
  dataDir: string;
  port?: number;
  extraArgs?: readonly string[];
}): Promise<RunningRedis> {
  const binary = await ensureRedisServer();
  const port = options.port ?? (await freePort());
  await mkdir(options.dataDir, { recursive: true });
  const child = spawn(
    binary,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      options.dataDir,
      ...(options.extraArgs ?? []),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) =>
      reject(new Error(`redis-server exited with code ${code} before it was ready`)),
    ),
  );
  await Promise.race([waitForPort(port, 10_000), exited]);
  exited.catch(() => undefined);
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await done;
    },
  };
}
