import { runEmbedded } from './embedded.js';

/** `npm start`: everything on this machine, until Ctrl-C (see embedded.ts). Development only: not in the image. */
async function main(): Promise<void> {
  await runEmbedded();
}

main().catch((error: unknown) => {
  console.error(`npm start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
