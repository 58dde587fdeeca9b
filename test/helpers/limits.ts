/**
 * How long tests wait for things. Each limit is several times what the operation costs on two cores kept busy by
 * `npm run test:stress` plus other work (measured at load average 12 unless the comment says otherwise), so a limit
 * that runs out means something is wrong, not that the machine is busy. Every wait returns as soon as its condition holds: a
 * limit never slows a passing run down.
 */
export const LIMITS = {
  /** A workflow reacting to what a test did (a few workflow tasks and activities) and a query seeing it: ≤ 5 s. */
  workflowStep: 60_000,
  /**
   * One query answered (a workflow task on a busy worker): ≤ 2 s. A query past this is asked again; on the
   * time-skipping server one sent as a run continues as new can go unanswered.
   */
  query: 15_000,
  /**
   * One `env.sleep` on the time-skipping server: it waits for every workflow task and activity due in the skipped
   * span (11 minutes with a supervisor syncing every 30 s and 100 budgets: 58 s).
   */
  timeSkip: 180_000,
  /** A `budgetctl worker` process from spawn to `/readyz` (Node with tsx, migrations, bundling workflows): 15 s. */
  workerStart: 120_000,
  /** One `budgetctl` command as a fresh process (Node with tsx, a connection, one request): 3 s. */
  cliCommand: 30_000,
  /** The dev server's visibility (list queries) catching up with a change: 1 s. */
  visibility: 30_000,
  /**
   * A few statements on the suite's PostgreSQL, seen from the test (at load average 20 to 28): a blocked
   * transaction showing in `pg_stat_activity` 1 s, 100 of LiteLLM's spend writes 4 s, a late-spend sweeper's look
   * and check 0.1 s.
   */
  database: 30_000,
  /** A supervisor pass that starts or signals up to 100 budget workflows (load average 20 to 28: 5 s). */
  supervisorPass: 120_000,
  /** Bundling the workflow code with webpack, as `scripts/build-workflow-bundle.ts` does (load average 14 to 25): 21 s. */
  bundle: 120_000,
  /**
   * `npm start` from spawn to "running": the dev server, embedded PostgreSQL, Redis, the worker and the demo's rows
   * (load average 20 to 28: 18 s, 38 s on its restart).
   */
  demoStart: 180_000,
} as const;
