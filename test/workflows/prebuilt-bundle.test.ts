import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetWorkflowId } from '../../src/budget-ref.js';

/**
 * The workflow bundle `npm run build` writes for the image (`scripts/build-workflow-bundle.ts`): built here by the
 * same script, then proved to be the real workflow code by replaying every committed history against it, loaded
 * the way the image's workers load it (`workflowBundle: { codePath }`).
 */

const { History } = proto.temporal.api.history.v1;
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const HISTORIES = fileURLToPath(new URL('./histories/', import.meta.url));
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
}, 300_000);

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
    let replayed = 0;
    for (const release of await readdir(HISTORIES)) {
      for (const file of (await readdir(path.join(HISTORIES, release))).filter((f) => f.endsWith('.json'))) {
        const json: unknown = JSON.parse(await readFile(path.join(HISTORIES, release, file), 'utf8'));
        const history = History.fromObject(json as Parameters<typeof History.fromObject>[0]);
        // Recorded as the budget `budget:replay` (the workflow derives its arming time from its id).
        await Worker.runReplayHistory(
          { workflowBundle: { codePath: bundlePath } },
          history,
          budgetWorkflowId({ kind: 'budget', id: 'replay' }),
        );
        replayed += 1;
      }
    }
    expect(replayed).toBeGreaterThanOrEqual(2);
  });
});
