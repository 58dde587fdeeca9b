/**
 * How long tests wait for things. Each limit is several times what the operation costs on two cores kept busy by
 * `npm run test:stress` plus other work (measured at load average 12, in the comments), so a limit that runs out
 * means something is wrong, not that the machine is busy. Every wait returns as soon as its condition holds: a
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
} as const;
