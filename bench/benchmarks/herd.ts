import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { budgetWorkflowId, type BudgetKind } from '../../src/budget-ref.js';
import { namespaced } from '../../src/cache/invalidation.js';
import { decodeEntityId, entityType } from '../../src/entities.js';
import { statusQuery } from '../../src/temporal/messages.js';
import { monotonicUs, summariseProfile, type ProfileSummary } from '../lib/cpu-profile.js';
import { countRunning, historyLengths, type DevTemporal } from '../lib/dev-temporal.js';
import { pollUntil } from '../lib/lifecycle.js';
import {
  simulateLiteLLM,
  summarise,
  timeLiteLLMSweep,
  type LatenessSummary,
  LITELLM_TICK,
} from '../lib/litellm-model.js';
import { cpuByGroup, cpuDelta } from '../lib/proc.js';
import { freePort } from '../../src/free-port.js';
import { metricsDelta, scrapeAll } from '../lib/worker-metrics.js';
import proto from '@temporalio/proto';
import type { Services } from '../lib/services.js';
import { median, round } from '../lib/stats.js';
import {
  createWorkerDatabase,
  statementTimeWindow,
  workerStatementTimes,
  type WorkerDatabase,
} from '../lib/worker-database.js';
import {
  sampleRss,
  buildWorker,
  spawnWorker,
  stopWorker,
  waitReady,
  type WorkerProcess,
} from '../lib/worker-processes.js';

export interface HerdOptions {
  /** Budgets due at one instant (1,000; 10,000 with --herd-size=10000). */
  readonly budgets: number;
  /** `budgetctl worker` processes on the task queue (2: one per core). */
  readonly workers: number;
  /** How far ahead of the worker's spawn the boundary lies; long enough for discovery to arm every workflow. */
  readonly leadMs: number;
  /** Workflows whose history is sampled around the boundary. */
  readonly sampleWorkflows: number;
  /** Write and summarise a CPU profile of every worker (node --cpu-prof). */
  readonly profile: boolean;
  /** Run the workers from `npm run build`'s `dist/`, as the image does (default; --source-worker for tsx). */
  readonly built?: boolean;
}

export function herdDefaults(budgets: number, quick: boolean): Omit<HerdOptions, 'profile'> {
  return {
    budgets,
    workers: 2,
    // Discovery plus arming measured at about 10-30 budgets/s on a loaded two-core machine, plus start-up.
    leadMs: quick ? 45_000 : Math.max(120_000, 60_000 + budgets * 60),
    sampleWorkflows: Math.min(100, budgets),
  };
}

/** The mix: 4 in 10 budgets are tiers with a tag and two end users, 4 are keys, 2 are users (own `1d`). */
const TIER_LINKS = { tags: 1, endUsers: 2 };

export interface HerdFigures {
  readonly options: HerdOptions;
  readonly boundary: string;
  readonly mix: Record<BudgetKind, number>;
  readonly entities: number;
  /** Real ms from spawning the workers until every budget had a running workflow / every one knew its boundary. */
  readonly discovery: {
    readonly runningMs: number;
    readonly armedMs: number;
    readonly runningFromReadyMs: number;
    readonly armedBeforeBoundary: boolean;
    readonly marginMs: number;
  };
  /** Commit lateness as observed: when the audit row became visible (polled every 20 ms) minus the boundary. */
  readonly lateness: LatenessSummary;
  /** executed_at (transaction start) minus period_end, from the audit. */
  readonly executedLateness: LatenessSummary;
  /** late_by_ms as the reset recorded it. */
  readonly recordedLateByMs: LatenessSummary;
  readonly resetsPerSecond: number;
  readonly firstCommitMs: number;
  readonly lastCommitMs: number;
  readonly triggers: Record<string, number>;
  readonly resetExactlyOnce: boolean;
  /** The same as a number, so a baseline can hold it (1: every budget reset exactly once). */
  readonly resetExactlyOnceFlag: number;
  readonly cachesInvalidated: {
    readonly counters: number;
    readonly allZero: boolean;
    readonly lastMs: number;
  };
  readonly historyEventsPerReset: { readonly median: number; readonly max: number; readonly sampled: number };
  readonly workerRssMB: { readonly armed: number; readonly peak: number; readonly perWorkerPeak: number[] };
  /** CPU per process group from the boundary to the last commit, in cores (1 = one core busy all the time). */
  readonly cpuAtBoundary: Record<string, { cpuMs: number; cores: number }>;
  /** The workers' statements by executor time from the boundary to the last commit (pg_stat_statements). */
  readonly statementsAtBoundary?: ReturnType<typeof statementTimeWindow>;
  /**
   * The late-spend checks that follow every reset (BUDGET_LATE_SPEND_DELAY, 30 s): when the first and last of
   * them were recorded (from the boundary) and the CPU while they ran (from the audit checks to the last). The herd's resets
   * are each workflow's first, so the checks find no period start and read no spend logs: this is their Temporal
   * cost (a timer, two workflow tasks and an activity per budget), not the database cost of a real check.
   */
  readonly lateSpendChecks: {
    readonly checked: number;
    readonly firstMs: number;
    readonly lastMs: number;
    readonly cpu: Record<string, { cpuMs: number; cores: number }>;
  };
  readonly cpuDuringDiscovery: Record<string, { cpuMs: number; cores: number }>;
  /**
   * The workers' SDK metrics (both added up, from their Prometheus endpoints) gained from spawn until every
   * workflow knew its boundary, and from then until the last commit: workflow tasks, sticky-cache hits, misses
   * and forced evictions, local activities.
   */
  readonly workerMetrics: {
    readonly discovery: Record<string, number>;
    readonly boundary: Record<string, number>;
  };
  /** History events by type of the sampled workflows once every workflow knew its boundary (all samples added). */
  readonly discoveryHistory: { readonly sampled: number; readonly events: Record<string, number> };
  readonly litellm: {
    readonly sweepMs: number;
    readonly sweepPages: number;
    readonly sweepLateness: LatenessSummary;
    readonly modelled: LatenessSummary;
    readonly model: typeof LITELLM_TICK;
  };
  readonly profiles?: ProfileSummary[];
  readonly workerWarnings: string[];
  /** For the plot, not written to JSON. */
  readonly latenessValues: number[];
  readonly litellmValues: number[];
}

function log(line: string): void {
  process.stderr.write(`[bench] herd: ${line}\n`);
}

const pad = (i: number) => String(i).padStart(6, '0');

/**
 * Issue 9: `budgets` budgets due at one instant, discovered and reset by real worker processes on the dev server.
 * Lateness is measured from the audit; LiteLLM's job is modelled beside it for the same rows.
 */
export async function benchHerd(
  services: Services,
  temporal: DevTemporal,
  options: HerdOptions,
  profileDir: string,
): Promise<HerdFigures> {
  if (options.built) {
    // Before the boundary is set: the build must not eat into the lead discovery needs.
    log('npm run build');
    await buildWorker();
  }
  const db = await createWorkerDatabase(services, 'budget_bench_herd', { statementStats: true });
  const taskQueue = `bench-herd-${process.pid}`;
  const boundaryMs = Math.ceil((Date.now() + options.leadMs) / 1000) * 1000;
  const boundary = new Date(boundaryMs).toISOString();
  const mix = await seedHerd(db, options.budgets, boundary);
  await seedCounters(services, db, taskQueue);
  log(`seeded ${options.budgets} budgets (${JSON.stringify(mix)}) due at ${boundary}`);

  const profileFolder = options.profile ? path.join(profileDir, `herd-${options.budgets}`) : undefined;
  if (profileFolder) await rm(profileFolder, { recursive: true, force: true });
  const cpuGroup = (workers: WorkerProcess[]) => (p: { pid: number; comm: string }) =>
    workers.some((w) => w.pid === p.pid) ? 'workers' : p.comm;
  const workers: WorkerProcess[] = [];
  const ports: number[] = [];
  const cpuStart = cpuByGroup();
  for (let i = 0; i < options.workers; i += 1) {
    const metricsPort = await freePort();
    ports.push(metricsPort);
    workers.push(
      await spawnWorker({
        databaseUrl: db.workerUrl,
        redisUrl: services.redisUrl,
        temporalAddress: temporal.address,
        taskQueue,
        redisNamespace: taskQueue,
        cpuProfileDir: profileFolder,
        metricsPort,
        built: options.built,
      }),
    );
  }
  let rssTotalPeak = 0;
  const rss = setInterval(() => {
    rssTotalPeak = Math.max(rssTotalPeak, sampleRss(workers));
  }, 500);
  try {
    const spawnedAt = workers[0]!.spawnedAt;
    await waitReady(workers, 300_000);
    const readyAt = Math.min(...workers.map((w) => w.readyAt ?? spawnedAt));
    let runningAt: number | undefined;
    // Every 10 s: workflows running, the workers' workflow tasks and sticky cache, and CPU since spawn (ms).
    const timeline = setInterval(() => {
      const cpu = cpuByGroup(cpuGroup(workers));
      const cpuOf = (name: string) => round(((cpu[name] ?? 0) - (cpuStart[name] ?? 0)) / 1000, 1);
      void Promise.all([countRunning(temporal, taskQueue), scrapeAll(ports)]).then(([running, m]) =>
        log(
          `${round((performance.now() - spawnedAt) / 1000, 0)} s: ${running} running; workflow tasks ` +
            `${m.temporal_workflow_task_execution_latency_count ?? 0}, sticky cache ${m.temporal_sticky_cache_size ?? 0}, ` +
            `hits ${m.temporal_sticky_cache_hit ?? 0}, misses ${m.temporal_sticky_cache_miss ?? 0}, ` +
            `forced evictions ${m.temporal_sticky_cache_total_forced_eviction ?? 0}, ` +
            `replays ${m.temporal_workflow_task_replay_latency_count ?? 0}; CPU s workers ${cpuOf('workers')}, ` +
            `dev server ${cpuOf('temporal')}, postgres ${cpuOf('postgres')}; load ${os.loadavg()[0]?.toFixed(1)}`,
        ),
      );
    }, 10_000);
    await pollUntil(
      'every budget has a running workflow that knows its boundary',
      async () => {
        if (runningAt === undefined && (await countRunning(temporal, taskQueue)) >= options.budgets)
          runningAt = performance.now();
        if (runningAt === undefined) return undefined;
        const armed = await countRunning(temporal, taskQueue, ' AND NextResetAt IS NOT NULL');
        return armed >= options.budgets ? performance.now() : undefined;
      },
      { timeoutMs: Math.max(60_000, boundaryMs - Date.now() + 600_000), intervalMs: 250 },
    ).finally(() => clearInterval(timeline));
    const armedAt = performance.now();
    const marginMs = boundaryMs - Date.now();
    const metricsAtArmed = await scrapeAll(ports);
    const cpuDiscovery = cpuDelta(cpuStart, cpuByGroup(cpuGroup(workers)), armedAt - spawnedAt);
    log(
      `running after ${round(((runningAt ?? armedAt) - spawnedAt) / 1000)} s, armed after ` +
        `${round((armedAt - spawnedAt) / 1000)} s; ${round(marginMs / 1000)} s before the boundary`,
    );
    const armedRss = sampleRss(workers);

    const refs = sampleRefs(options);
    const sampleIds = refs.map((r) => budgetWorkflowId(r));
    const historyBefore = marginMs > 5_000 ? await historyLengths(temporal, sampleIds) : undefined;
    const discoveryHistory = await historyEventTypes(
      temporal,
      Array.from({ length: Math.min(20, options.budgets) }, (_, i) => budgetWorkflowId(refOf(i))),
    );
    log(
      `history of ${discoveryHistory.sampled} sampled workflows after discovery: ${JSON.stringify(discoveryHistory.events)}`,
    );

    // Watch the audit from just before the boundary.
    if (boundaryMs - Date.now() > 1_000) await sleep(boundaryMs - Date.now() - 1_000);
    const statementsBefore = db.statementStats ? await workerStatementTimes(db) : undefined;
    const cpuBefore = cpuByGroup(cpuGroup(workers));
    const boundaryMono = monotonicUs() + (boundaryMs - Date.now()) * 1000;
    const observed = await observeCommits(db, boundary, options.budgets, boundaryMs).catch(async (error) => {
      throw new Error(`${(error as Error).message}; ${await diagnose(temporal, db, options.budgets)}`);
    });
    const lastCommitMs = Math.max(...observed.values());
    const cpuAtBoundary = cpuDelta(
      cpuBefore,
      cpuByGroup(cpuGroup(workers)),
      Math.max(1, lastCommitMs + 1_000),
    );
    const endMono = boundaryMono + lastCommitMs * 1000;
    const metricsAtBoundary = metricsDelta(metricsAtArmed, await scrapeAll(ports));
    // Where PostgreSQL's time went from the boundary to the last commit (and the invalidations in flight then).
    const statementsAtBoundary = statementsBefore
      ? statementTimeWindow(statementsBefore, await workerStatementTimes(db))
      : undefined;
    log(`all ${options.budgets} committed ${round(lastCommitMs / 1000, 2)} s after the boundary`);

    const audit = await checkAudit(db, boundary, options.budgets);
    const invalidation = await checkInvalidation(services, db, boundary, taskQueue, boundaryMs);
    // Each sampled workflow has recorded its reset (ResetCount 1) before its history is read.
    await pollUntil(
      'sampled workflows recorded their reset',
      async () =>
        (await countRunning(temporal, taskQueue, ' AND ResetCount >= 1')) >= options.budgets
          ? true
          : undefined,
      { timeoutMs: 120_000, intervalMs: 250 },
    ).catch(() => undefined);
    const historyAfter = await historyLengths(temporal, sampleIds);
    const perReset: number[] = [];
    for (const [id, after] of historyAfter) {
      const before = historyBefore?.get(id);
      if (before && before.runId === after.runId) perReset.push(after.historyLength - before.historyLength);
    }

    const lateSpendChecks = await observeLateSpendChecks(db, boundary, options.budgets, boundaryMs, () =>
      cpuByGroup(cpuGroup(workers)),
    );
    log(
      `late-spend checks: ${lateSpendChecks.checked} recorded ${round(lateSpendChecks.firstMs / 1000, 1)}–` +
        `${round(lateSpendChecks.lastMs / 1000, 1)} s after the boundary`,
    );

    const sweep = await timeLiteLLMSweep(
      db.pool,
      [
        { table: 'LiteLLM_VerificationToken', key: 'token', prefix: 'herd-k-' },
        { table: 'LiteLLM_UserTable', key: 'user_id', prefix: 'herd-u-' },
        {
          table: 'LiteLLM_BudgetTable',
          key: 'budget_id',
          prefix: 'herd-t-',
          noSpend: true,
          linked: [{ table: 'LiteLLM_TagTable' }, { table: 'LiteLLM_EndUserTable' }],
        },
      ],
      boundary,
      new Date(boundaryMs + 86_400_000).toISOString(),
    );
    const litellmValues = simulateLiteLLM(sweep);

    for (const w of workers) await stopWorker(w);
    let profiles: ProfileSummary[] | undefined;
    if (profileFolder) {
      const files = (await readdir(profileFolder)).filter((f) => f.endsWith('.cpuprofile'));
      profiles = [];
      for (const f of files)
        profiles.push(await summariseProfile(path.join(profileFolder, f), boundaryMono, endMono));
    }

    const latenessValues = [...observed.values()];
    return {
      options,
      boundary,
      mix,
      entities: audit.entities,
      discovery: {
        runningMs: round((runningAt ?? armedAt) - spawnedAt, 0),
        armedMs: round(armedAt - spawnedAt, 0),
        runningFromReadyMs: round((runningAt ?? armedAt) - readyAt, 0),
        armedBeforeBoundary: marginMs > 0,
        marginMs: round(marginMs, 0),
      },
      lateness: summarise(latenessValues),
      executedLateness: summarise(audit.executedLate),
      recordedLateByMs: summarise(audit.lateBy),
      resetsPerSecond: round(options.budgets / (lastCommitMs / 1000), 1),
      firstCommitMs: round(Math.min(...latenessValues), 0),
      lastCommitMs: round(lastCommitMs, 0),
      triggers: audit.triggers,
      resetExactlyOnce: audit.exactlyOnce,
      resetExactlyOnceFlag: audit.exactlyOnce ? 1 : 0,
      cachesInvalidated: invalidation,
      historyEventsPerReset: {
        median: perReset.length > 0 ? median(perReset) : NaN,
        max: perReset.length > 0 ? Math.max(...perReset) : NaN,
        sampled: perReset.length,
      },
      workerRssMB: {
        armed: round(armedRss, 0),
        peak: round(rssTotalPeak, 0),
        perWorkerPeak: workers.map((w) => round(w.peakRssMB, 0)),
      },
      cpuAtBoundary,
      statementsAtBoundary,
      lateSpendChecks,
      cpuDuringDiscovery: cpuDiscovery,
      workerMetrics: { discovery: metricsAtArmed, boundary: metricsAtBoundary },
      discoveryHistory,
      litellm: {
        sweepMs: sweep.totalMs,
        sweepPages: sweep.pages,
        sweepLateness: summarise(sweep.commitOffsetsMs),
        modelled: summarise(litellmValues),
        model: LITELLM_TICK,
      },
      profiles,
      workerWarnings: workers.flatMap((w) => w.warnings).slice(0, 20),
      latenessValues,
      litellmValues,
    };
  } finally {
    clearInterval(rss);
    for (const w of workers) await stopWorker(w);
  }
}

/** Waits for the late-spend check of every reset of the boundary; times them and the CPU they cost. */
async function observeLateSpendChecks(
  db: WorkerDatabase,
  boundary: string,
  n: number,
  boundaryMs: number,
  cpu: () => Record<string, number>,
): Promise<HerdFigures['lateSpendChecks']> {
  const cpuBefore = cpu();
  const startedAt = Date.now();
  const times = await pollUntil(
    'every reset of the herd has its late-spend check',
    async () => {
      const { rows } = await db.pool.query<{ checked: number; first: Date | null; last: Date | null }>(
        `SELECT count(*)::int AS checked, min(c.checked_at) AS first, max(c.checked_at) AS last
           FROM budget_lifecycle.late_spend_check c JOIN budget_lifecycle.reset_log r ON r.id = c.reset_id
          WHERE r.period_end = $1 AND r.budget_id LIKE 'herd-%'`,
        [boundary],
      );
      const row = rows[0]!;
      return row.checked >= n ? row : undefined;
    },
    { timeoutMs: 600_000, intervalMs: 500 },
  );
  const lastMs = times.last!.getTime() - boundaryMs;
  return {
    checked: times.checked,
    firstMs: round(times.first!.getTime() - boundaryMs, 0),
    lastMs: round(lastMs, 0),
    cpu: cpuDelta(cpuBefore, cpu(), Math.max(1, Date.now() - startedAt)),
  };
}

/** History events by type, added up over the given workflows. */
async function historyEventTypes(
  temporal: DevTemporal,
  workflowIds: readonly string[],
): Promise<HerdFigures['discoveryHistory']> {
  const events: Record<string, number> = {};
  for (const id of workflowIds) {
    const history = await temporal.client.workflow.getHandle(id).fetchHistory();
    for (const e of history.events ?? []) {
      let name = (proto.temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType)).replace(
        /^EVENT_TYPE_/,
        '',
      );
      const marker = e.markerRecordedEventAttributes;
      if (marker)
        name += ` ${marker.markerName}:${localActivityType(marker.details?.data?.payloads?.[0]?.data)}`;
      events[name] = (events[name] ?? 0) + 1;
    }
  }
  return { sampled: workflowIds.length, events };
}

/** The activity type a local-activity marker records, if it is readable. */
function localActivityType(data: Uint8Array | null | undefined): string {
  if (!data) return '?';
  try {
    const parsed = JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string };
    return parsed.activity_type ?? '?';
  } catch {
    return '?';
  }
}

/** Why resets are missing: a few of the budgets without one, with their workflow's status. */
async function diagnose(temporal: DevTemporal, db: WorkerDatabase, n: number): Promise<string> {
  const { rows } = await db.pool.query<{ budget_kind: string; budget_id: string }>(
    `SELECT budget_kind, budget_id FROM budget_lifecycle.reset_log WHERE budget_id LIKE 'herd-%'`,
  );
  const done = new Set(rows.map((r) => `${r.budget_kind}:${r.budget_id}`));
  const missing = Array.from({ length: n }, (_, i) => refOf(i)).filter((r) => !done.has(`${r.kind}:${r.id}`));
  const byKind: Record<string, number> = {};
  for (const r of missing) byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
  const statuses = await Promise.all(
    missing.slice(0, 3).map((r) =>
      temporal.client.workflow
        .getHandle(budgetWorkflowId(r))
        .query(statusQuery)
        .then(
          (st) => JSON.stringify(st),
          (e: Error) => `${r.kind}:${r.id}: ${e.message}`,
        ),
    ),
  );
  return `missing by kind ${JSON.stringify(byKind)}; e.g. ${statuses.join(' | ')}`;
}

/** Inserts the herd: every owner's `budget_reset_at` is the boundary, every row has spend to zero. */
async function seedHerd(
  db: WorkerDatabase,
  n: number,
  boundary: string,
): Promise<Record<BudgetKind, number>> {
  const series = `FROM generate_series(0, $2::int - 1) AS i`;
  await db.pool.query(
    `INSERT INTO "LiteLLM_BudgetTable" (budget_id, max_budget, budget_duration, budget_reset_at, created_by, updated_by)
     SELECT 'herd-t-' || lpad(i::text, 6, '0'), 100, '1d', $1::timestamptz AT TIME ZONE 'UTC', 'bench', 'bench'
       ${series} WHERE i % 10 < 4`,
    [boundary, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_TagTable" (tag_name, spend, budget_id)
     SELECT 'herd-t-' || lpad(i::text, 6, '0') || '-tag-' || j, 1 + random(), 'herd-t-' || lpad(i::text, 6, '0')
       ${series} CROSS JOIN generate_series(1, $1::int) AS j WHERE i % 10 < 4`,
    [TIER_LINKS.tags, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_EndUserTable" (user_id, spend, budget_id)
     SELECT 'herd-t-' || lpad(i::text, 6, '0') || '-eu-' || j, 1 + random(), 'herd-t-' || lpad(i::text, 6, '0')
       ${series} CROSS JOIN generate_series(1, $1::int) AS j WHERE i % 10 < 4`,
    [TIER_LINKS.endUsers, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_VerificationToken" (token, spend, budget_duration, budget_reset_at, max_budget)
     SELECT 'herd-k-' || lpad(i::text, 6, '0'), 1 + random(), '1d', $1::timestamptz AT TIME ZONE 'UTC', 100
       ${series} WHERE i % 10 BETWEEN 4 AND 7`,
    [boundary, n],
  );
  await db.pool.query(
    `INSERT INTO "LiteLLM_UserTable" (user_id, spend, budget_duration, budget_reset_at, max_budget)
     SELECT 'herd-u-' || lpad(i::text, 6, '0'), 1 + random(), '1d', $1::timestamptz AT TIME ZONE 'UTC', 100
       ${series} WHERE i % 10 >= 8`,
    [boundary, n],
  );
  await db.pool.query('ANALYZE');
  const count = (pred: (i: number) => boolean) => Array.from({ length: n }, (_, i) => i).filter(pred).length;
  return {
    budget: count((i) => i % 10 < 4),
    key: count((i) => i % 10 >= 4 && i % 10 <= 7),
    user: count((i) => i % 10 >= 8),
    team: 0,
    window: 0,
  };
}

function refOf(i: number): { kind: BudgetKind; id: string } {
  const r = i % 10;
  if (r < 4) return { kind: 'budget', id: `herd-t-${pad(i)}` };
  if (r < 8) return { kind: 'key', id: `herd-k-${pad(i)}` };
  return { kind: 'user', id: `herd-u-${pad(i)}` };
}

function sampleRefs(options: HerdOptions): Array<{ kind: BudgetKind; id: string }> {
  const step = Math.max(1, Math.floor(options.budgets / options.sampleWorkflows));
  const out = [];
  for (let i = 0; i < options.budgets && out.length < options.sampleWorkflows; i += step) out.push(refOf(i));
  return out;
}

/**
 * Polls the audit every 20 ms for new rows of this boundary; a row's lateness is when it was first seen minus
 * the boundary (an upper bound on its commit time by at most one poll). Ids are taken at insert, not at commit,
 * so a row with a lower id can appear after a higher one: the poll reads everything above the highest id below
 * which every id has been seen (an id that stays missing for 10 s, a rolled-back insert, is given up on).
 */
async function observeCommits(
  db: WorkerDatabase,
  boundary: string,
  n: number,
  boundaryMs: number,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const seenIds = new Set<number>();
  let low = 0;
  let gapSince: number | undefined;
  const deadline = boundaryMs + 120_000 + n * 100;
  while (seen.size < n) {
    if (Date.now() > deadline) throw new Error(`only ${seen.size} of ${n} resets seen by the deadline`);
    const { rows } = await db.pool.query<{ id: string; budget_kind: string; budget_id: string }>(
      `SELECT id::text, budget_kind, budget_id FROM budget_lifecycle.reset_log
        WHERE id > $1 AND period_end = $2`,
      [low, boundary],
    );
    const at = Date.now() - boundaryMs;
    for (const r of rows) {
      seenIds.add(Number(r.id));
      const key = `${r.budget_kind}:${r.budget_id}`;
      if (!seen.has(key)) seen.set(key, Math.max(0, at));
    }
    while (seenIds.has(low + 1)) low += 1;
    const above = [...seenIds].some((id) => id > low);
    if (!above) gapSince = undefined;
    else if (gapSince === undefined) gapSince = Date.now();
    else if (Date.now() - gapSince > 10_000) {
      low += 1;
      gapSince = undefined;
    }
    await sleep(20);
  }
  return seen;
}

async function checkAudit(
  db: WorkerDatabase,
  boundary: string,
  n: number,
): Promise<{
  exactlyOnce: boolean;
  entities: number;
  triggers: Record<string, number>;
  executedLate: number[];
  lateBy: number[];
}> {
  const { rows } = await db.pool.query<{
    n: number;
    entities: number;
    executed_late: number;
    late_by_ms: string;
    trigger: string;
  }>(
    `SELECT count(*) OVER (PARTITION BY budget_kind, budget_id)::int AS n, entity_count AS entities,
            (extract(epoch FROM executed_at - period_end) * 1000)::float8 AS executed_late, late_by_ms::text,
            trigger
       FROM budget_lifecycle.reset_log WHERE budget_id LIKE 'herd-%'`,
  );
  const triggers: Record<string, number> = {};
  for (const r of rows) triggers[r.trigger] = (triggers[r.trigger] ?? 0) + 1;
  const expectedEntities = (i: number) => (i % 10 < 4 ? TIER_LINKS.tags + TIER_LINKS.endUsers : 1);
  const wantEntities = Array.from({ length: n }, (_, i) => expectedEntities(i)).reduce((a, b) => a + b, 0);
  const entities = rows.reduce((s, r) => s + r.entities, 0);
  const left = await db.pool.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE token LIKE 'herd-%' AND spend <> 0)
          + (SELECT count(*) FROM "LiteLLM_UserTable" WHERE user_id LIKE 'herd-%' AND spend <> 0)
          + (SELECT count(*) FROM "LiteLLM_TagTable" WHERE tag_name LIKE 'herd-%' AND spend <> 0)
          + (SELECT count(*) FROM "LiteLLM_EndUserTable" WHERE user_id LIKE 'herd-%' AND spend <> 0) AS n`,
  );
  const periods = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM budget_lifecycle.reset_log WHERE budget_id LIKE 'herd-%' AND period_end <> $1`,
    [boundary],
  );
  const exactlyOnce =
    rows.length === n &&
    rows.every((r) => r.n === 1) &&
    entities === wantEntities &&
    Number(left.rows[0]?.n) === 0 &&
    periods.rows[0]?.n === 0;
  if (!exactlyOnce) {
    throw new Error(
      `audit check failed: ${rows.length} resets for ${n} budgets, ${entities} of ${wantEntities} entities, ` +
        `${left.rows[0]?.n} rows with spend left, ${periods.rows[0]?.n} resets of another period`,
    );
  }
  return {
    exactlyOnce,
    entities,
    triggers,
    executedLate: rows.map((r) => Math.max(0, r.executed_late)),
    lateBy: rows.map((r) => Number(r.late_by_ms)),
  };
}

/**
 * Every herd entity with spend gets a spend counter in Redis, as LiteLLM holds them before a boundary; the reset
 * must delete each one (LiteLLM then reseeds it from the committed row).
 */
async function seedCounters(services: Services, db: WorkerDatabase, namespace: string): Promise<void> {
  const { rows } = await db.pool.query<{ counter: string }>(
    `SELECT 'spend:tag:' || tag_name AS counter FROM "LiteLLM_TagTable" WHERE spend <> 0
     UNION ALL SELECT 'spend:end_user:' || user_id FROM "LiteLLM_EndUserTable" WHERE spend <> 0
     UNION ALL SELECT 'spend:key:' || token FROM "LiteLLM_VerificationToken" WHERE spend <> 0
     UNION ALL SELECT 'spend:user:' || user_id FROM "LiteLLM_UserTable" WHERE spend <> 0`,
  );
  const counters = rows.map((r) => namespaced(namespace, r.counter));
  for (let i = 0; i < counters.length; i += 1_000) {
    await services.redis.mset(...counters.slice(i, i + 1_000).flatMap((c) => [c, '1.0']));
  }
}

/** Every zeroed entity's spend counter was deleted after its reset committed. */
async function checkInvalidation(
  services: Services,
  db: WorkerDatabase,
  boundary: string,
  namespace: string,
  boundaryMs: number,
): Promise<HerdFigures['cachesInvalidated']> {
  const { rows } = await db.pool.query<{ entity_type: string; entity_id: string }>(
    `SELECT e.entity_type, e.entity_id FROM budget_lifecycle.reset_log_entity e
       JOIN budget_lifecycle.reset_log r ON r.id = e.reset_id
      WHERE r.period_end = $1 AND r.budget_id LIKE 'herd-%'`,
    [boundary],
  );
  const counters = rows.flatMap((r) => {
    const type = entityType(r.entity_type);
    const counter = type?.cacheKeys(decodeEntityId(type, r.entity_id)).counter;
    return counter ? [namespaced(namespace, counter)] : [];
  });
  let lastMs = 0;
  await pollUntil(
    'every spend counter deleted',
    async () => {
      for (let i = 0; i < counters.length; i += 1_000) {
        if ((await services.redis.exists(...counters.slice(i, i + 1_000))) > 0) return undefined;
      }
      lastMs = Date.now() - boundaryMs;
      return true;
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  return { counters: counters.length, allZero: true, lastMs: round(lastMs, 0) };
}
