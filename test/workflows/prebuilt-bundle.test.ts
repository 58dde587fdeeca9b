import { Worker } from '@temporalio/worker';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { committedHistories, RECORDED_WORKFLOW_ID } from '../helpers/histories.js';
import { LIMITS } from '../helpers/limits.js';

/**
 * The workflow bundle `npm run build` writes for the image (`scripts/build-workflow-bundle.ts`): built here by the
 * same script, then proved to be the real workflow code by replaying every committed history against it, loaded
 * the way the image's workers load it (`workflowBundle: { codePath }`).
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;
let bundlePath: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-bundle-'));
  bundlePath = path.join(dir, 'workflow-bundle.js');
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/build-workflow-bundle.ts', bundlePath], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code, output).toBe(0);
  expect(output).toContain('wrote ');
}, LIMITS.bundle);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the prebuilt workflow bundle', () => {
  it('holds every workflow type and our payload converter', async () => {
    const code = await readFile(bundlePath, 'utf8');
    for (const name of ['budgetEntityWorkflow', 'budgetSupervisorWorkflow', 'budgetWorkflow']) {
      expect(code).toContain(name);
    }
    // The tolerant converter: one undecodable payload must not fail other workflows' activations.
    expect(code).toContain('TolerantPayloadConverter');
  });

  it('replays the committed histories of every release, loaded from its file as the image loads it', async () => {
    const histories = await committedHistories();
    for (const { history } of histories) {
      await Worker.runReplayHistory(
        { workflowBundle: { codePath: bundlePath } },
        history,
        RECORDED_WORKFLOW_ID,
      );
    }
    expect(histories.length).toBeGreaterThanOrEqual(2);
  });
});
