import { defineConfig } from 'vitest/config';

/**
 * `npm run test:cluster`: the end-to-end and fault tests, plus the cluster's own scenarios, against Temporal's own
 * server (four service processes on PostgreSQL persistence and SQL visibility) instead of the CLI's dev server.
 */
export default defineConfig({
  test: {
    include: [
      'test/cluster/**/*.test.ts',
      'test/e2e/cli.test.ts',
      'test/e2e/armed-reset.test.ts',
      'test/e2e/late-wakeup.test.ts',
      'test/faults/worker-crash.test.ts',
    ],
    globalSetup: ['test/cluster/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    pool: 'forks',
    // Two cores shared with four server processes and each file's worker processes: one file at a time.
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
