import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { postgresDataDir } from '../../dev/embedded.js';
import { freePort } from '../../src/free-port.js';
import { budgetctl, spawnStart, stopProcess } from '../helpers/cli.js';
import { LIMITS } from '../helpers/limits.js';

// `npm start` with nothing configured: its own dev server, embedded PostgreSQL, Redis, worker and supervisor.
// The demo tier's period is shortened to 3 s so the first reset comes quickly.
let dataDir = '';
let child: ChildProcess | undefined;
let output = '';

let metricsPort = '';
/** Two starts, the wait for the first reset, three more `budgetctl` commands, and a stop (as long as one). */
const TEST_TIMEOUT = 2 * LIMITS.demoStart + LIMITS.supervisorPass + 5 * LIMITS.cliCommand;

function start(): ChildProcess {
  output = '';
  const proc = spawnStart({
    BUDGET_LIFECYCLE_DATA_DIR: dataDir,
    BUDGET_DEMO_DURATION: '3s',
    LOG_LEVEL: 'warn',
    // Not the demo's 9464: another suite's demo may be starting on this machine at the same moment.
    METRICS_PORT: metricsPort,
  });
  proc.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  return proc;
}

async function embeddedEnv(): Promise<Record<string, string>> {
  const text = await readFile(path.join(dataDir, 'env.sh'), 'utf8');
  return Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map(
        (line) =>
          line
            .replace(/^export /, '')
            .split(/=(.*)/s)
            .slice(0, 2) as [string, string],
      ),
  );
}

afterAll(async () => {
  if (child) await stopProcess(child, 'SIGINT');
  if (dataDir) {
    // As root the demo's PostgreSQL data lives outside the data dir (see postgresDataDir).
    await rm(await postgresDataDir(dataDir), { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  }
});

describe('npm start (embedded mode)', { timeout: TEST_TIMEOUT }, () => {
  it('boots everything, resets the demo tag within its first period, and keeps state across a restart', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'budget-demo-'));
    metricsPort = String(await freePort());
    await chmod(dataDir, 0o755);
    child = start();
    await vi.waitFor(() => expect(output).toMatch(/budget-lifecycle is running/), {
      timeout: LIMITS.demoStart,
      interval: 200,
    });
    expect(output).toMatch(/Temporal UI:\s+http:\/\/127\.0\.0\.1:\d+/);
    const uiUrl = /Temporal UI:\s+(\S+)/.exec(output)![1]!;
    expect((await fetch(uiUrl)).status).toBe(200);
    const env = await embeddedEnv();

    const reset = await vi.waitFor(
      async () => {
        const history = await budgetctl(['--json', 'history', 'budget:demo-tier'], env);
        const entries = JSON.parse(history.stdout || '[]');
        const scheduled = entries.find((e: { trigger: string; entityCount: number }) => e.entityCount > 0);
        if (!scheduled) throw new Error(`no reset yet: ${history.stderr}`);
        return scheduled;
      },
      // The supervisor's first pass starts the demo's workflows, the 3 s period ends; each try is a fresh
      // `budgetctl` process.
      { timeout: LIMITS.supervisorPass + LIMITS.cliCommand, interval: 500 },
    );
    expect(reset.entities).toContainEqual({
      type: 'tag',
      id: 'tenant:acme',
      spendBefore: 0.063,
      spendAfter: 0,
    });
    const status = await budgetctl(['--json', 'status', 'budget:demo-tier'], env);
    const before = JSON.parse(status.stdout);
    expect(before.cycle).toBeGreaterThanOrEqual(1);

    expect(await stopProcess(child, 'SIGINT')).toBe(0);
    child = start();
    await vi.waitFor(() => expect(output).toMatch(/budget-lifecycle is running/), {
      timeout: LIMITS.demoStart,
      interval: 200,
    });
    const after = await embeddedEnv();
    // Same Temporal history and the same audit: the reset count only grows.
    const again = JSON.parse((await budgetctl(['--json', 'status', 'budget:demo-tier'], after)).stdout);
    expect(again.cycle).toBeGreaterThanOrEqual(before.cycle);
    const history = JSON.parse(
      (await budgetctl(['--json', 'history', 'budget:demo-tier', '--limit', '100'], after)).stdout,
    );
    expect(history.map((e: { id: string }) => e.id)).toContain(reset.id);
  });
});
