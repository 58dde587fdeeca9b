import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    pool: 'forks',
    // Two cores: each workflow test file runs its own time-skipping server, so more forks only thrash.
    maxWorkers: 2,
    // Server start-up and workflow bundling take longer than vitest's defaults.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
