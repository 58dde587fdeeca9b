import type { ChildProcess } from 'node:child_process';
import { expect, vi } from 'vitest';
import { LIMITS } from '../helpers/limits.js';

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
