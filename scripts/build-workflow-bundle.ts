import { DefaultLogger } from '@temporalio/worker';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeWorkflowBundle } from '../src/worker.js';

/** Where the built worker (`dist/src/worker.js`) looks for it: PREBUILT_BUNDLE_PATH once compiled. */
const DIST_BUNDLE = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));

/**
 * The build step after `tsc` (`npm run build`, and so the image's build stage): bundles the workflows with our
 * payload converter into `dist/workflow-bundle.js`, which workers running from `dist/` load instead of bundling
 * at start-up. `tsx scripts/build-workflow-bundle.ts <file>` writes it elsewhere.
 */
async function main(): Promise<void> {
  const target = process.argv[2] ? path.resolve(process.argv[2]) : DIST_BUNDLE;
  await writeWorkflowBundle(target, new DefaultLogger('WARN'));
  console.log(`wrote ${path.relative(process.cwd(), target)}`);
}

main().catch((error: unknown) => {
  console.error(`build-workflow-bundle: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
