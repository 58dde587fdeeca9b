/**
 * `npx tsx scripts/build-release-bundle.ts <commit> <out.js>`: bundles the workflow code of an earlier release, as
 * its worker would have, into one file a worker runs with `workflowBundle: { code }`. The rolling-upgrade test runs
 * release 0.1's bundle built with this (test/cluster/fixtures/), so it needs no git history:
 *
 *   npx tsx scripts/build-release-bundle.ts c614b524453d6d97fad74891a45cad11637a6fd8 \
 *     test/cluster/fixtures/release-0.1-workflows.js
 *
 * The release's `workflows/` and the modules they import (`src/`, `activities/` for types) come out of git into a
 * scratch directory and are bundled with this checkout's node_modules (same SDK), with the SDK's default payload
 * converter (release 0.1 had no other). The worker insists on an inline source map; it gets line mappings only,
 * without the sources, and every path in the file is relative, so it is a third the SDK's default size and names no
 * machine's directories. Needs a clone that holds `<commit>`.
 */
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../dev/provision/run.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));

async function main(): Promise<void> {
  const [commit, out] = process.argv.slice(2);
  if (!commit || !out) throw new Error('usage: build-release-bundle.ts <commit> <out.js>');
  const scratch = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-release-'));
  try {
    const archive = path.join(scratch, 'release.tar');
    await run('git', [
      '-C',
      REPO,
      'archive',
      '--output',
      archive,
      commit,
      'workflows',
      'activities',
      'src',
    ]).catch((error: unknown) => {
      throw new Error(`git has no commit ${commit} here; fetch the full history (git fetch --unshallow)`, {
        cause: error,
      });
    });
    await run('tar', ['-xf', archive, '-C', scratch]);
    await symlink(path.join(REPO, 'node_modules'), path.join(scratch, 'node_modules'));
    const { code } = await bundleWorkflowCode({
      workflowsPath: path.join(scratch, 'workflows', 'index.ts'),
      logger: new DefaultLogger('WARN'),
      // Module ids and source-map entries are paths relative to the scratch directory (`./workflows/budget.ts`,
      // `./node_modules/...`, not the symlink's target).
      webpackConfigHook: (config) => ({
        ...config,
        devtool: 'inline-nosources-cheap-source-map',
        context: scratch,
        resolve: { ...config.resolve, symlinks: false },
        output: {
          ...config.output,
          // The default name carries a hash of the scratch directory; a fixed one makes the build reproducible.
          filename: 'workflow-bundle.js',
          devtoolModuleFilenameTemplate: (info: { resourcePath: string }) =>
            `webpack:///${info.resourcePath.replaceAll(scratch, '.')}`,
        },
      }),
    });
    const sourceMap = Buffer.from(
      code.slice(code.lastIndexOf('base64,') + 'base64,'.length),
      'base64',
    ).toString();
    for (const local of [scratch, REPO])
      if (code.includes(local) || sourceMap.includes(local))
        throw new Error(`the bundle names ${local}; refusing to write it`);
    await writeFile(out, code);
    console.log(`wrote ${out}: release ${commit.slice(0, 12)}'s workflows, ${code.length} bytes`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
