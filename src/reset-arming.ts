import type { ResetResult } from './reset-types.js';

/** A reset the worker runs itself at its boundary, with the cache invalidation that follows it. */
export interface ArmedOutcome {
  readonly result: ResetResult;
  /** The caches were invalidated right after the commit (false: the workflow invalidates them itself). */
  readonly cachesInvalidated: boolean;
}

interface Armed {
  timer?: NodeJS.Timeout;
  outcome?: Promise<ArmedOutcome>;
}

/** How long a fired reset's outcome waits for its workflow to collect it. */
const KEEP_MS = 15 * 60_000;
/**
 * Armed further ahead than this, the workflow's clock and the worker's disagree (a time-skipping test server, a
 * skewed host): the reset is not armed, and the workflow runs it when it wakes.
 */
const MAX_AHEAD_MS = 6 * 60_000;
/** The workflow's clock (Temporal's) and the worker's must agree this closely for the worker to keep time. */
const MAX_SKEW_MS = 60_000;

export interface ArmingOptions {
  /**
   * Runs once per boundary instant with resets armed, `prepareLeadMs` before it (the pool's connections opened
   * ahead, so the boundary's commits do not wait for new logins). A failure is ignored: it only costs time.
   */
  readonly prepare?: () => Promise<unknown>;
  readonly prepareLeadMs?: number;
}

/**
 * Resets armed ahead of their boundary. A budget workflow wakes a little before its boundary and arms its reset
 * here; at the boundary the worker runs it (through the batcher, so a herd commits in a few transactions) without
 * waiting for Temporal to dispatch thousands of workflow tasks at once. The workflow, woken at the boundary,
 * collects the outcome. Nothing here is durable, and nothing needs to be: a reset that was never run (the worker
 * restarted, the workflow woke on another worker) is run by the workflow as usual, and the fence on
 * `budget_reset_at` makes a reset that was run twice commit once.
 */
export class ResetArming {
  private readonly armed = new Map<string, Armed>();
  /** Boundary instants (epoch ms) whose preparation is scheduled and has not run yet. */
  private readonly preparing = new Map<number, NodeJS.Timeout>();

  constructor(private readonly options: ArmingOptions = {}) {}

  /**
   * Runs `run` at `at` (epoch ms) unless the reset is collected first; arming the same key again does nothing.
   * False when not armed: too far ahead, or the workflow's clock (`workflowNow`) and the worker's disagree (a
   * time-skipping test server, a skewed host), so the workflow runs the reset itself when it wakes.
   */
  arm(key: string, at: number, workflowNow: number, run: () => Promise<ArmedOutcome>): boolean {
    if (this.armed.has(key)) return true;
    if (at - Date.now() > MAX_AHEAD_MS || Math.abs(workflowNow - Date.now()) > MAX_SKEW_MS) return false;
    const entry: Armed = {};
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined;
        entry.outcome = run();
        // A failed run is forgotten: the workflow runs the reset itself, with its retries.
        entry.outcome.catch(() => this.armed.delete(key));
        setTimeout(() => this.armed.delete(key), KEEP_MS).unref();
      },
      Math.max(0, at - Date.now()),
    );
    // An armed reset never keeps a stopping worker alive: its workflow runs it after the restart.
    entry.timer.unref();
    this.armed.set(key, entry);
    this.prepareFor(at);
    return true;
  }

  /** Schedules the boundary's preparation once, however many resets are armed for it. */
  private prepareFor(at: number): void {
    const prepare = this.options.prepare;
    if (!prepare || this.preparing.has(at)) return;
    const timer = setTimeout(
      () => {
        this.preparing.delete(at);
        prepare().catch(() => undefined);
      },
      Math.max(0, at - (this.options.prepareLeadMs ?? 0) - Date.now()),
    );
    timer.unref();
    this.preparing.set(at, timer);
  }

  /**
   * The outcome of an armed reset that has started, or undefined: a reset armed but not yet due is disarmed (the
   * caller runs it now), and one never armed here is the caller's to run.
   */
  collect(key: string): Promise<ArmedOutcome> | undefined {
    const entry = this.armed.get(key);
    if (!entry) return undefined;
    this.armed.delete(key);
    if (entry.timer) {
      clearTimeout(entry.timer);
      return undefined;
    }
    return entry.outcome;
  }

  /** Armed resets not collected yet (a gauge for operators and tests). */
  get size(): number {
    return this.armed.size;
  }
}
