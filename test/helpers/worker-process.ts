import type { ChildProcess } from 'node:child_process';
import { expect, vi } from 'vitest';
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
    await waitUntilReady(healthPort, child);
  } catch (error) {
    await worker.kill();
    throw error;
  }
  return worker;
}

/** Resolves once a worker's `/readyz` answers 200; fails at once, with its last output, if the process exits. */
export async function waitUntilReady(port: number, worker: ChildProcess): Promise<void> {
  let output = '';
  worker.stdout?.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4_000)));
  worker.stderr?.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-4_000)));
  await vi.waitFor(
    async () => {
      if (worker.exitCode !== null) throw new Error(`the worker exited with ${worker.exitCode}: ${output}`);
      const response = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(response.status).toBe(200);
    },
    { timeout: LIMITS.workerStart, interval: 250 },
  );
}
