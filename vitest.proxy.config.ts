import { configDefaults, defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The end-to-end suite against the real LiteLLM proxy (`npm run test:proxy`): minutes of real boundaries and a
// cached install of about a gigabyte, so it is not part of `npm test`. Same services as the main suite.
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/proxy/**/*.test.ts'], exclude: configDefaults.exclude },
});
