import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Run on their own: `npm run test:cluster` against Temporal's own server (vitest.cluster.config.ts), and
    // `npm run test:proxy` against the real LiteLLM proxy (vitest.proxy.config.ts).
    exclude: [...configDefaults.exclude, 'test/cluster/**', 'test/proxy/**'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    pool: 'forks',
    // Two cores: each workflow test file runs its own time-skipping server, so more forks only thrash.
    maxWorkers: 2,
    // Backstops above the sum of any test's own wait limits (test/helpers/limits.ts), so a slow step fails in its
    // own wait, with a message that says what did not happen. A hook starts a time-skipping server (up to 120 s on
    // a busy machine) and bundles the workflows (up to a minute).
    testTimeout: 300_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
