import type { ChildProcess } from 'node:child_process';
import { vi } from 'vitest';
import { freePort } from '../../dev/provision/ports.js';
import { spawnBudgetctl, stopProcess } from './cli.js';
import { LIMITS } from './limits.js';

/** A `budgetctl worker` process with its health port and everything it printed. */
export interface WorkerProcess {
  readonly child: ChildProcess;
  readonly healthPort: number;
  /** stdout and stderr so far. */
  output(): string;
  /** SIGKILL: no shutdown, no draining, sticky caches lost. */
  kill(): Promise<void>;
}

/**
 * Spawns `budgetctl worker <args>` with `env` and resolves once its `/readyz` answers 200; fails at once, with its
 * output, if the process exits first.
 */
export async function startWorkerProcess(
  env: Record<string, string>,
  args: readonly string[] = [],
): Promise<WorkerProcess> {
  const healthPort = await freePort();
  const child = spawnBudgetctl(['worker', ...args], { ...env, METRICS_PORT: String(healthPort) });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const worker: WorkerProcess = {
    child,
    healthPort,
    output: () => output,
    kill: async () => {
      await stopProcess(child, 'SIGKILL');
    },
  };
  try {
    await vi.waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`the worker exited with ${child.exitCode}: ${output}`);
        const response = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
        if (response.status !== 200) throw new Error(`readyz answered ${response.status}`);
      },
      { timeout: LIMITS.workerStart, interval: 250 },
    );
  } catch (error) {
    await worker.kill();
    throw error;
  }
  return worker;
}
