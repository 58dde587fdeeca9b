import { chmod, cp, mkdtemp, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir, pathExists, publishStaged, withCacheLock } from './cache.js';
import { run, which } from './run.js';

/** Pinned: the server the Temporal CLI 1.5.1 embeds (its go.mod requires it), so both run the same code. */
export const TEMPORAL_SERVER_VERSION = '1.29.1';

const MODULE = 'go.temporal.io/server';

export interface TemporalServerBinaries {
  /** `temporal-server`: Temporal's own server (`go.temporal.io/server/cmd/server`). */
  readonly server: string;
  /** `temporal-sql-tool`: its schema tool (`go.temporal.io/server/cmd/tools/sql`). */
  readonly sqlTool: string;
  /** The module's `schema/postgresql/v12` folder: `temporal/` and `visibility/`, each with `versioned/`. */
  readonly postgresSchemaDir: string;
}

/**
 * Returns Temporal's server, its SQL schema tool and the PostgreSQL schema files that ship with them, built once
 * from the official Go module and cached (about 5 minutes on two cores with cold Go caches; needs Go 1.25+).
 * The schema files are copied out of the Go module cache so `go clean -modcache` cannot take them away.
 */
export async function ensureTemporalServer(): Promise<TemporalServerBinaries> {
  const dir = path.join(cacheDir(), `temporal-server-${TEMPORAL_SERVER_VERSION}`);
  const binaries: TemporalServerBinaries = {
    server: path.join(dir, 'temporal-server'),
    sqlTool: path.join(dir, 'temporal-sql-tool'),
    postgresSchemaDir: path.join(dir, 'schema', 'postgresql', 'v12'),
  };
  // The directory appears in one rename once complete (publishStaged), so any file in it means all of it.
  if (await pathExists(binaries.postgresSchemaDir)) return binaries;
  return withCacheLock(`temporal-server-${TEMPORAL_SERVER_VERSION}`, async () => {
    if (await pathExists(binaries.postgresSchemaDir)) return binaries;
    const go = await which('go', ['/usr/local/go/bin', '/usr/lib/go/bin']);
    if (!go) {
      throw new Error(
        'Building the Temporal server needs Go 1.25 or newer on PATH: install Go, then run the command again ' +
          `(it runs \`go install ${MODULE}/cmd/server@v${TEMPORAL_SERVER_VERSION}\` once)`,
      );
    }
    const staging = await mkdtemp(path.join(cacheDir(), '.temporal-server-'));
    try {
      process.stderr.write(
        `Building the Temporal server v${TEMPORAL_SERVER_VERSION} and its SQL tool with ${go} (a few minutes, once)...\n`,
      );
      // Pure Go (the SQLite plugin it links is pure Go too); `-mod=mod` because we build outside any module.
      const env = { ...process.env, CGO_ENABLED: '0', GOBIN: staging, GOFLAGS: '-mod=mod' };
      await run(
        go,
        [
          'install',
          `${MODULE}/cmd/server@v${TEMPORAL_SERVER_VERSION}`,
          `${MODULE}/cmd/tools/sql@v${TEMPORAL_SERVER_VERSION}`,
        ],
        { env },
      );
      await rename(path.join(staging, 'server'), path.join(staging, 'temporal-server'));
      await rename(path.join(staging, 'sql'), path.join(staging, 'temporal-sql-tool'));
      // `go install` has just downloaded the module; `go mod download -json` names the folder it lives in.
      const { Dir: moduleDir } = JSON.parse(
        await run(go, ['mod', 'download', '-json', `${MODULE}@v${TEMPORAL_SERVER_VERSION}`], { env }),
      ) as { Dir: string };
      const schema = path.join(staging, 'schema', 'postgresql', 'v12');
      await cp(path.join(moduleDir, 'schema', 'postgresql', 'v12'), schema, { recursive: true });
      // The module cache is read-only; our copy must be deletable when the cache is cleared.
      await run('chmod', ['-R', 'u+w', path.join(staging, 'schema')]);
      await chmod(staging, 0o755);
      await publishStaged(staging, dir);
      return binaries;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}
