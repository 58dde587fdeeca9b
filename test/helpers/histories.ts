import proto from '@temporalio/proto';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { budgetWorkflowId } from '../../src/budget-ref.js';

const { History } = proto.temporal.api.history.v1;
type History = proto.temporal.api.history.v1.History;

/** Recorded workflow histories, a folder per release; the suite replays every one against the current code. */
export const HISTORIES = fileURLToPath(new URL('../workflows/histories/', import.meta.url));

/** The release whose histories `npm run record:histories` writes. */
export const RELEASE = '0.5.0';

/**
 * Every history is recorded as the budget `budget:replay`, and replayed under that id: the workflow derives its
 * arming time from its id.
 */
export const RECORDED_WORKFLOW_ID = budgetWorkflowId({ kind: 'budget', id: 'replay' });

/** Every committed history, named `<release>/<file>`. */
export async function committedHistories(): Promise<Array<{ name: string; history: History }>> {
  const histories: Array<{ name: string; history: History }> = [];
  for (const release of await readdir(HISTORIES)) {
    for (const file of (await readdir(path.join(HISTORIES, release))).filter((f) => f.endsWith('.json'))) {
      const json: unknown = JSON.parse(await readFile(path.join(HISTORIES, release, file), 'utf8'));
      histories.push({
        name: `${release}/${file}`,
        history: History.fromObject(json as Parameters<typeof History.fromObject>[0]),
      });
    }
  }
  return histories;
}

/**
 * Commits a history this release recorded, as `<RELEASE>/<file>`, after replaying it on the code that recorded it:
 * what is committed must replay.
 */
export async function commitHistory(
  file: string,
  recorded: unknown,
  workflowBundle: WorkflowBundleWithSourceMap,
): Promise<string> {
  const history = History.fromObject(recorded as Parameters<typeof History.fromObject>[0]);
  await Worker.runReplayHistory({ workflowBundle }, history, RECORDED_WORKFLOW_ID);
  const json = History.toObject(history, { longs: String, enums: String, bytes: String });
  await mkdir(path.join(HISTORIES, RELEASE), { recursive: true });
  const target = path.join(HISTORIES, RELEASE, file);
  await writeFile(target, `${JSON.stringify(json, null, 1)}\n`);
  return `${history.events.length} events into ${path.relative(process.cwd(), target)}`;
}
