import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir, pathExists, pathFromEnv, publishStaged, withCacheLock } from './cache.js';
import { run, which } from './run.js';

/** Pinned: the last Temporal CLI tag whose go.mod has no `replace` directive, so `go install` can build it. */
export const TEMPORAL_CLI_VERSION = '1.5.1';

/**
 * Returns the path of a Temporal CLI: `TEMPORAL_CLI_PATH`, else `temporal` on PATH, else one built once from the
 * official Go module and cached. Building takes a few minutes on two cores and needs Go 1.25 or newer.
 */
export async function ensureTemporalCli(): Promise<string> {
  const configured =
    (await pathFromEnv('TEMPORAL_CLI_PATH', 'a temporal binary')) ?? (await which('temporal'));
  if (configured) return configured;

  const dir = path.join(cacheDir(), `temporal-cli-${TEMPORAL_CLI_VERSION}`);
  const binary = path.join(dir, 'temporal');
  if (await pathExists(binary)) return binary;
  return withCacheLock(`temporal-cli-${TEMPORAL_CLI_VERSION}`, async () => {
    if (await pathExists(binary)) return binary;
    const go = await which('go', ['/usr/local/go/bin', '/usr/lib/go/bin']);
    if (!go) {
      throw new Error(
        'No Temporal CLI found. Install it (https://docs.temporal.io/cli), put `temporal` on PATH or set ' +
          'TEMPORAL_CLI_PATH; or install Go 1.25+ so it can be built with ' +
          `\`go install github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}\``,
      );
    }
    const staging = await mkdtemp(path.join(cacheDir(), '.temporal-cli-'));
    try {
      process.stderr.write(
        `Building the Temporal CLI v${TEMPORAL_CLI_VERSION} with ${go} (a few minutes, once)...\n`,
      );
      await run(
        go,
        [
          'install',
          `-ldflags=-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_VERSION}`,
          `github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}`,
        ],
        { env: { ...process.env, CGO_ENABLED: '0', GOBIN: staging, GOFLAGS: '-mod=mod' } },
      );
      await publishStaged(staging, dir);
      return binary;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}
