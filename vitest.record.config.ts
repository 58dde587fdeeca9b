import { defineConfig } from 'vitest/config';

/**
 * `npm run record:histories`: records this release's workflow histories (test/workflows/record-*.ts) on the
 * same real services as `npm test`. A maintainer's tool, kept out of the suite so the suite runs every test it has.
 */
export default defineConfig({
  test: {
    include: ['test/workflows/record-histories.ts', 'test/workflows/record-armed-history.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
