/**
 * `npm run bench`: starts its own real services (embedded PostgreSQL with LiteLLM's schema and our migrations,
 * redis-server, the time-skipping test server), runs the benchmarks, prints a table, writes
 * bench/results/latest.json and holds the figures to bench/baseline.json: exits 1 when a target is missed,
 * 2 when a benchmark fails, 3 when the whole run times out. See bench/README.md.
 *
 *   npm run bench                               every benchmark
 *   npm run bench -- --only=reset,invalidation  some of them (results go to bench/results/partial.json)
 *   npm run bench -- --only=flush,herd --quick  the small configuration CI runs (bench/results/quick.json)
 *   npm run bench -- --only=herd --herd-size=10000 --profile
 *   npm run bench -- --only=sleeping --sleeping-size=100000
 *   npm run bench -- --only=sleeping --sleeping-workers=1 --source-worker --heap-snapshot
 *   npm run bench -- --only=big-tier               one tier of 1,000,000 end users with LiteLLM's spend writers
 *   npm run bench -- --only=big-tier --tier-size=100000 --profile
 *   npm run bench -- --baseline=other.json      hold the figures to other targets
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchInvalidation, type InvalidationFigures } from './benchmarks/cache-invalidation.js';
import { benchBigTier, bigTierDefaults, type BigTierFigures } from './benchmarks/big-tier.js';
import { benchFanOut, type FanOutFigures } from './benchmarks/fan-out.js';
import { FLUSH_DEFAULTS, FLUSH_QUICK, benchFlush, type FlushFigures } from './benchmarks/flush.js';
import { benchHerd, herdDefaults, type HerdFigures } from './benchmarks/herd.js';
import { benchSleeping, sleepingDefaults, type SleepingFigures } from './benchmarks/sleeping.js';
import { startDevTemporal, type DevTemporal } from './lib/dev-temporal.js';
import { latencyCdfSvg } from './lib/svg-plot.js';
import { benchResetTier, type ResetTierFigures } from './benchmarks/reset-transaction.js';
import { benchTimeSkipping, type TimeSkippingFigures } from './benchmarks/time-skipping.js';
import { cleanupAll, installSignalHandlers, isInterrupted } from './lib/lifecycle.js';
import { compare, gitInfo, loadBaseline, machineInfo, table } from './lib/report.js';
import { startServices, type Services } from './lib/services.js';
import { startTemporal, type TemporalBench } from './lib/temporal.js';
import { TEST_SERVER_VERSION } from '../dev/provision/test-server.js';
import { LITELLM_PROXY_EXTRAS_VERSION } from '../dev/provision/litellm-schema.js';

const BENCHMARKS = [
  'reset',
  'big-tier',
  'invalidation',
  'cycles',
  'fanout',
  'flush',
  'herd',
  'sleeping',
] as const;
type BenchName = (typeof BENCHMARKS)[number];
/** Which results key each benchmark writes (baseline metrics start with it). */
const RESULT_KEY: Record<BenchName, string> = {
  reset: 'resetTransaction',
  'big-tier': 'bigTier',
  invalidation: 'cacheInvalidation',
  cycles: 'timeSkipping',
  fanout: 'fanOut',
  flush: 'flush',
  herd: 'herd',
  sleeping: 'sleeping',
};
const TIER_SIZES = [1_000, 10_000, 40_000];
const OVERALL_TIMEOUT_MS = 30 * 60_000;
/** The flush benchmark's windows, a 10,000-budget herd and 100,000 sleeping budgets need longer than the rest. */
const LONG_TIMEOUT_MS = 120 * 60_000;

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BASELINE = fileURLToPath(new URL('./baseline.json', import.meta.url));
const QUICK_BASELINE = fileURLToPath(new URL('./baseline-quick.json', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

interface Benchmarks {
  resetTransaction?: Record<string, ResetTierFigures>;
  bigTier?: BigTierFigures;
  cacheInvalidation?: InvalidationFigures;
  timeSkipping?: TimeSkippingFigures;
  fanOut?: FanOutFigures;
  flush?: FlushFigures;
  herd?: Omit<HerdFigures, 'latenessValues' | 'litellmValues'>;
  sleeping?: SleepingFigures;
}

interface RunOptions {
  readonly quick: boolean;
  readonly herdSize: number;
  readonly tierSize: number;
  readonly herdWorkers?: number;
  readonly sleepingSize: number;
  readonly sleepingMinutes?: number;
  readonly sleepingWorkers?: number;
  readonly heapSnapshot: boolean;
  readonly builtWorker: boolean;
  readonly flushMinutes?: number;
  readonly profile: boolean;
}

function numberArg(argv: readonly string[], name: string): number | undefined {
  const arg = argv.find((a) => a.startsWith(`--${name}=`));
  if (!arg) return undefined;
  const value = Number(arg.slice(name.length + 3));
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`--${name} must be a positive number, got ${arg}`);
  return value;
}

function parseRunOptions(argv: readonly string[]): RunOptions {
  const quick = argv.includes('--quick');
  return {
    quick,
    herdSize: Math.round(numberArg(argv, 'herd-size') ?? (quick ? 200 : 1_000)),
    tierSize: Math.round(numberArg(argv, 'tier-size') ?? 1_000_000),
    herdWorkers: numberArg(argv, 'herd-workers'),
    sleepingSize: Math.round(numberArg(argv, 'sleeping-size') ?? (quick ? 200 : 10_000)),
    sleepingMinutes: numberArg(argv, 'sleeping-minutes'),
    sleepingWorkers: numberArg(argv, 'sleeping-workers'),
    heapSnapshot: argv.includes('--heap-snapshot'),
    // The sleeping benchmark measures memory, so its workers run as the image runs them unless asked otherwise.
    builtWorker: !argv.includes('--source-worker'),
    flushMinutes: numberArg(argv, 'flush-minutes'),
    profile: argv.includes('--profile'),
  };
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function parseOnly(argv: readonly string[]): Set<BenchName> {
  const arg = argv.find((a) => a.startsWith('--only='));
  if (!arg) return new Set(BENCHMARKS);
  const names = arg.slice('--only='.length).split(',').filter(Boolean);
  const unknown = names.filter((n) => !(BENCHMARKS as readonly string[]).includes(n));
  if (unknown.length > 0)
    throw new Error(`Unknown benchmark(s) ${unknown.join(', ')}; choose from ${BENCHMARKS.join(', ')}`);
  return new Set(names as BenchName[]);
}

async function main(): Promise<number> {
  const started = performance.now();
  const only = parseOnly(process.argv.slice(2));
  const opts = parseRunOptions(process.argv.slice(2));
  const full = only.size === BENCHMARKS.length && !opts.quick;
  const baselineArg = process.argv.find((a) => a.startsWith('--baseline='));
  const baseline = loadBaseline(
    baselineArg ? baselineArg.slice('--baseline='.length) : opts.quick ? QUICK_BASELINE : BASELINE,
  );
  const long = !opts.quick && (only.has('flush') || only.has('herd') || only.has('sleeping'));
  installSignalHandlers(long ? LONG_TIMEOUT_MS : OVERALL_TIMEOUT_MS);
  const date = new Date().toISOString();
  const machine = machineInfo();
  const benchmarks: Benchmarks = {};
  const errors: Record<string, string> = {};
  let services: Services | undefined;
  let temporal: TemporalBench | undefined;
  let dev: DevTemporal | undefined;
  let herdPlot: string | undefined;
  const setupMs: Record<string, number> = {};

  const attempt = async (name: string, fn: () => Promise<void>): Promise<boolean> => {
    log(`-- ${name}`);
    const t0 = performance.now();
    try {
      await fn();
      log(`-- ${name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return true;
    } catch (error) {
      errors[name] = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      log(`-- ${name} FAILED: ${errors[name]}`);
      if (error instanceof Error && error.stack) log(error.stack);
      return false;
    }
  };

  try {
    const servicesUp = await attempt('services', async () => {
      services = await startServices({
        statementStats: only.has('flush') || only.has('sleeping') || only.has('herd'),
      });
      Object.assign(setupMs, services.setupMs);
    });
    if (servicesUp && services) {
      const s = services;
      if (only.has('reset') || only.has('invalidation')) {
        // The invalidation benchmark replays the audit of the 40,000-end-user reset.
        const sizes = only.has('reset') ? TIER_SIZES : [40_000];
        benchmarks.resetTransaction = {};
        for (const n of sizes) {
          await attempt(`reset transaction, ${n} end users`, async () => {
            benchmarks.resetTransaction![String(n)] = await benchResetTier(s, n);
          });
        }
      }
      if (only.has('big-tier')) {
        const bigOptions = bigTierDefaults(opts.tierSize, opts.profile);
        await attempt(`big tier, ${bigOptions.endUsers} end users with LiteLLM's spend writers`, async () => {
          benchmarks.bigTier = await benchBigTier(s, bigOptions, async (plan) => {
            await mkdir(RESULTS_DIR, { recursive: true });
            const file = `${RESULTS_DIR}big-tier-plan-${bigOptions.endUsers}.txt`;
            await writeFile(file, `${plan}\n`);
            log(`reset statement plan: ${file}`);
          });
        });
      }
      if (only.has('invalidation')) {
        const tier = benchmarks.resetTransaction?.['40000'];
        if (!tier) errors['cache invalidation'] = 'skipped: the 40,000-end-user reset did not run';
        else {
          await attempt('cache invalidation, 40000 entities', async () => {
            benchmarks.cacheInvalidation = await benchInvalidation(s, tier.lastResetId, tier.endUsers);
          });
        }
      }
      if (only.has('cycles') || only.has('fanout')) {
        const up = await attempt('time-skipping server and workflow bundle', async () => {
          temporal = await startTemporal(s);
          Object.assign(setupMs, temporal.setupMs);
        });
        if (up && temporal) {
          const t = temporal;
          if (only.has('cycles')) {
            await attempt('time-skipping cycles, 168 hourly boundaries', async () => {
              benchmarks.timeSkipping = await benchTimeSkipping(t, s);
            });
          }
          if (only.has('fanout')) {
            await attempt('fan-out, 200 budgets at one boundary', async () => {
              benchmarks.fanOut = await benchFanOut(t, s);
            });
          }
        }
      }
      if (only.has('flush') || only.has('herd') || only.has('sleeping')) {
        const up = await attempt('Temporal dev server', async () => {
          dev = await startDevTemporal();
          setupMs['dev server start'] = dev.startMs;
        });
        if (up && dev) {
          const d = dev;
          if (only.has('flush')) {
            const base = opts.quick ? FLUSH_QUICK : FLUSH_DEFAULTS;
            const flushOptions = opts.flushMinutes
              ? { ...base, flushMs: Math.round(opts.flushMinutes * 60_000) }
              : base;
            await attempt(`spend flushes, ${flushOptions.budgetKeys} budget keys`, async () => {
              benchmarks.flush = await benchFlush(s, d, flushOptions);
            });
          }
          if (only.has('herd')) {
            const herdOptions = {
              ...herdDefaults(opts.herdSize, opts.quick),
              ...(opts.herdWorkers ? { workers: opts.herdWorkers } : {}),
              profile: opts.profile,
              built: opts.builtWorker,
            };
            await attempt(`herd, ${herdOptions.budgets} budgets at one boundary`, async () => {
              const { latenessValues, litellmValues, ...figures } = await benchHerd(
                s,
                d,
                herdOptions,
                `${RESULTS_DIR}profiles`,
              );
              benchmarks.herd = figures;
              herdPlot = latencyCdfSvg(
                `${herdOptions.budgets.toLocaleString('en-US')} budgets due at one instant: reset lateness`,
                `${herdOptions.workers} budgetctl worker processes, Temporal CLI dev server, PostgreSQL, Redis; ` +
                  `${machine.cpus} cores; LiteLLM modelled (tick 597-605 s + stagger <= 300 s + measured sweep)`,
                [
                  {
                    label: `budget-lifecycle (measured): p99 ${(figures.lateness.p99 / 1000).toFixed(2)} s`,
                    color: '#1f77b4',
                    values: latenessValues,
                  },
                  {
                    label: `LiteLLM job (modelled): p99 ${(figures.litellm.modelled.p99 / 1000).toFixed(0)} s`,
                    color: '#d62728',
                    values: litellmValues,
                  },
                ],
              );
            });
          }
          // Last: its workflows stay asleep on the dev server until the run ends.
          if (only.has('sleeping')) {
            const base = sleepingDefaults(opts.sleepingSize, opts.quick);
            const sleepingOptions = {
              ...base,
              ...(opts.sleepingMinutes ? { windowMs: Math.round(opts.sleepingMinutes * 60_000) } : {}),
              ...(opts.sleepingWorkers ? { workers: opts.sleepingWorkers } : {}),
              heapSnapshot: opts.heapSnapshot,
              built: opts.builtWorker,
            };
            await attempt(
              `sleeping, ${sleepingOptions.budgets} budgets days from their boundary`,
              async () => {
                benchmarks.sleeping = await benchSleeping(s, d, sleepingOptions, `${RESULTS_DIR}profiles`);
              },
            );
          }
        }
      }
    }
  } finally {
    log('stopping services');
    await cleanupAll();
  }
  if (isInterrupted()) return new Promise<number>(() => undefined); // the signal handler exits

  const totalSeconds = Math.round((performance.now() - started) / 100) / 10;
  const ranKeys = new Set([...only].map((n) => RESULT_KEY[n]));
  if (only.has('invalidation')) ranKeys.add('resetTransaction');
  const verdicts = compare(baseline, benchmarks as Record<string, unknown>, (metric) =>
    ranKeys.has(metric.split('.')[0] ?? ''),
  );

  const results = {
    schema: 1,
    date,
    partial: !full,
    only: full ? undefined : [...only],
    options: opts,
    totalSeconds,
    machine: { ...machine, loadAverageAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) },
    node: process.version,
    versions: {
      postgres: services?.versions.postgres,
      redis: services?.versions.redis,
      temporalTestServer: TEST_SERVER_VERSION,
      temporalCli: dev?.version,
      litellmProxyExtras: LITELLM_PROXY_EXTRAS_VERSION,
    },
    git: gitInfo(ROOT),
    setupMs,
    benchmarks,
    targets: verdicts,
    errors,
  };
  await mkdir(RESULTS_DIR, { recursive: true });
  const out = `${RESULTS_DIR}${full ? 'latest' : opts.quick ? 'quick' : 'partial'}.json`;
  // The flush and herd figures also go to files of their own, so runs of different sizes sit side by side.
  const suffix = opts.quick ? 'quick' : String(opts.herdSize);
  if (herdPlot) {
    const svg = `${RESULTS_DIR}herd-lateness-${suffix}.svg`;
    await writeFile(svg, herdPlot);
    log(`lateness plot: ${svg}`);
  }
  const loadAverageAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  const own = (name: string, figures: unknown) =>
    JSON.stringify(
      { date, machine: { ...machine, loadAverageAtEnd }, git: gitInfo(ROOT), options: opts, [name]: figures },
      roundFloats,
      2,
    );
  if (benchmarks.herd)
    await writeFile(`${RESULTS_DIR}herd-${suffix}.json`, `${own('herd', benchmarks.herd)}\n`);
  if (benchmarks.sleeping)
    await writeFile(
      `${RESULTS_DIR}sleeping-${opts.quick ? 'quick' : opts.sleepingSize}.json`,
      `${own('sleeping', benchmarks.sleeping)}\n`,
    );
  if (benchmarks.bigTier) {
    const file = `${RESULTS_DIR}big-tier-${opts.tierSize}.json`;
    await writeFile(file, await formatJson(own('bigTier', benchmarks.bigTier), file));
  }
  if (benchmarks.flush)
    await writeFile(
      `${RESULTS_DIR}flush${opts.quick ? '-quick' : ''}.json`,
      `${own('flush', benchmarks.flush)}\n`,
    );
  await writeFile(`${out}.tmp`, await formatJson(JSON.stringify(results, roundFloats, 2), out));
  await rename(`${out}.tmp`, out);

  process.stdout.write(
    `\n${summary(benchmarks)}\n\n${table(
      ['Target', 'Value', 'Target', 'Result'],
      verdicts.map((v) => [
        v.label,
        v.value === null ? '-' : `${formatValue(v.value)} ${v.unit}`,
        `${v.target} ${v.unit}`,
        v.result,
      ]),
    )}\n\n`,
  );
  process.stdout.write(`Total run time ${totalSeconds} s. Results: ${out}\n`);

  const missed = verdicts.filter((v) => v.result === 'MISSED' || v.result === 'not measured');
  for (const [name, message] of Object.entries(errors)) process.stdout.write(`ERROR   ${name}: ${message}\n`);
  for (const v of missed) {
    process.stdout.write(
      `MISSED  ${v.label}: ${v.value === null ? 'not measured' : `${formatValue(v.value)} ${v.unit}`} (target ${v.target} ${v.unit})\n`,
    );
  }
  if (Object.keys(errors).length > 0) return 2;
  if (missed.length > 0) return 1;
  process.stdout.write('All targets met.\n');
  return 0;
}

/** In the project's Prettier style, so `npm run format:check` stays clean; plain JSON when Prettier is absent. */
async function formatJson(json: string, filepath: string): Promise<string> {
  try {
    const prettier = await import('prettier');
    const options = await prettier.resolveConfig(filepath);
    return await prettier.format(json, { ...options, filepath });
  } catch {
    return `${json}\n`;
  }
}

function formatValue(n: number): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: Math.abs(n) >= 100 ? 0 : 2 });
}

/** Keeps latest.json readable: floats to three decimals. */
function roundFloats(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 1000) / 1000 : value;
}

function summary(b: Benchmarks): string {
  const rows: Array<[string, string, string | number]> = [];
  for (const tier of Object.values(b.resetTransaction ?? {})) {
    const name = `reset transaction, ${tier.endUsers.toLocaleString('en-US')} end users`;
    rows.push([name, 'median ms (3 runs)', tier.medianMs]);
    rows.push([name, 'runs ms', tier.runs.map((r) => r.ms.toFixed(0)).join(' / ')]);
    rows.push([name, 'rows/s', tier.rowsPerSecond]);
    rows.push([name, 'heap delta MB (max)', tier.maxHeapDeltaMB]);
    rows.push([name, 'peak heap growth MB (max)', tier.maxPeakHeapGrowthMB]);
    rows.push([name, 'RSS delta MB (max)', tier.maxRssDeltaMB]);
  }
  const big = b.bigTier;
  if (big) {
    const name = `big tier, ${big.endUsers.toLocaleString('en-US')} end users`;
    rows.push([name, `median ms (${big.runs.length} runs)`, big.medianMs]);
    rows.push([name, 'runs ms', big.runs.map((r) => r.ms.toFixed(0)).join(' / ')]);
    rows.push([name, 'rows/s', big.rowsPerSecond]);
    rows.push([
      name,
      'PostgreSQL CPU s per run',
      big.runs.map((r) => (r.postgresCpuMs === null ? '-' : (r.postgresCpuMs / 1000).toFixed(1))).join(' / '),
    ]);
    rows.push([
      name,
      'HOT updates / rows updated',
      big.runs.map((r) => `${r.hotUpdates ?? '-'}/${r.tuplesUpdated ?? '-'}`).join(' '),
    ]);
    rows.push([name, 'peak heap growth MB (max)', big.maxPeakHeapGrowthMB]);
    rows.push([name, 'RSS delta MB (max)', big.maxRssDeltaMB]);
    for (const [writer, w] of Object.entries(big.writers)) {
      rows.push([
        name,
        `${writer}: flush p99 ms before / during (max)`,
        `${w.baselineP99 ?? '-'} / ${w.duringP99 ?? '-'} (${w.duringMax ?? '-'})`,
      ]);
      rows.push([
        name,
        `${writer}: lock timeouts / deadlocks / failed flushes`,
        `${w.lockTimeouts} / ${w.deadlocks} / ${w.failedFlushes}`,
      ]);
    }
    rows.push([name, 'load average at end of each run', big.runs.map((r) => r.loadAverage[0]).join(' / ')]);
  }
  const inv = b.cacheInvalidation;
  if (inv) {
    const name = `cache invalidation, ${inv.entities.toLocaleString('en-US')} entities`;
    rows.push([name, 'median ms (3 runs)', inv.medianMs]);
    rows.push([name, 'runs ms', inv.runs.map((r) => r.ms.toFixed(0)).join(' / ')]);
    rows.push([name, 'Redis commands per run', inv.runs[0]?.commands ?? 0]);
    rows.push([name, 'Redis commands/s', inv.commandsPerSecond]);
    rows.push([name, 'peak heap used MB (max)', inv.maxPeakHeapUsedMB]);
    rows.push([name, 'peak heap growth MB (max)', inv.maxPeakHeapGrowthMB]);
    rows.push([name, 'live heap peak growth MB', inv.livePeakHeapGrowthMB]);
    if (inv.subscriber)
      rows.push([
        name,
        'messages received / sent',
        `${inv.subscriber.received} / ${inv.subscriber.expected}`,
      ]);
  }
  const ts = b.timeSkipping;
  if (ts) {
    const name = `time skipping, ${ts.cycles} x ${ts.duration}`;
    rows.push([name, 'real s per simulated week', ts.realSeconds]);
    rows.push([name, 'resets/s', ts.resetsPerSecond]);
    rows.push([
      name,
      'ms per cycle p50 / p95 / max',
      `${ts.cycleMs.median} / ${ts.cycleMs.p95} / ${ts.cycleMs.max}`,
    ]);
    rows.push([name, 'workflow runs (continue-as-new)', ts.workflowRuns]);
  }
  const fo = b.fanOut;
  if (fo) {
    const name = `fan-out, ${fo.budgets} budgets`;
    rows.push([name, 'boundary -> first commit ms', fo.firstCommittedMs]);
    rows.push([name, 'boundary -> all committed ms', fo.allCommittedMs]);
    rows.push([name, 'boundary -> all invalidated ms', fo.allInvalidatedMs]);
    rows.push([name, 'resets/s', fo.resetsPerSecond]);
    rows.push([name, 'workflow start-up ms (not timed)', fo.startupMs]);
  }
  const fl = b.flush;
  if (fl) {
    const name = `flushes, ${fl.options.budgetKeys}+${fl.options.plainKeys} keys`;
    rows.push([name, 'flushes issued', fl.flushes]);
    rows.push([name, 'history events added by flushes (max/wf)', fl.historyEventsAddedByFlushes.max]);
    rows.push([name, 'history events added at rest (max/wf)', fl.historyEventsAddedAtRest.max]);
    rows.push([name, 'worker statements/min at rest', fl.workerStatementsAtRest.perMinute]);
    rows.push([name, 'worker statements/min with flushes', fl.workerStatementsWithFlushes.perMinute]);
    rows.push([
      name,
      `history events per reset cycle (${fl.options.cycleDuration}) max / median`,
      `${fl.historyEventsPerResetCycle.max} / ${fl.historyEventsPerResetCycle.median}`,
    ]);
    for (const [at, ms] of Object.entries(fl.discoveryPassMs))
      rows.push([name, `discovery pass ms, ${at}`, ms]);
    rows.push([name, 'discovery ms (spawn -> all running)', fl.discoveryMs.fromSpawn]);
  }
  const h = b.herd;
  if (h) {
    const name = `herd, ${h.options.budgets} budgets`;
    const l = h.lateness;
    rows.push([name, 'lateness p50 / p95 / p99 / max ms', `${l.p50} / ${l.p95} / ${l.p99} / ${l.max}`]);
    const m = h.litellm.modelled;
    rows.push([
      name,
      'LiteLLM modelled p50 / p99 / max s',
      `${m.p50 / 1000} / ${m.p99 / 1000} / ${m.max / 1000}`,
    ]);
    rows.push([name, 'LiteLLM sweep ms (measured)', h.litellm.sweepMs]);
    rows.push([name, 'resets/s', h.resetsPerSecond]);
    rows.push([
      name,
      'discovery ms (spawn -> running / armed)',
      `${h.discovery.runningMs} / ${h.discovery.armedMs}`,
    ]);
    rows.push([
      name,
      'worker RSS MB armed / peak (all workers)',
      `${h.workerRssMB.armed} / ${h.workerRssMB.peak}`,
    ]);
    rows.push([name, 'history events per reset (median)', h.historyEventsPerReset.median]);
    rows.push([name, 'reset exactly once', String(h.resetExactlyOnce)]);
    for (const [group, c] of Object.entries(h.cpuAtBoundary))
      if (c.cpuMs > 0) rows.push([name, `CPU cores at boundary: ${group}`, c.cores]);
  }
  const sl = b.sleeping;
  if (sl) {
    const name = `sleeping, ${sl.options.budgets} budgets`;
    rows.push([
      name,
      'discovery ms (spawn -> running / asleep)',
      `${sl.discovery.runningMs} / ${sl.discovery.sleepingMs}`,
    ]);
    rows.push([name, 'workflows/s (ready -> asleep)', sl.discovery.workflowsPerSecond]);
    const r = sl.workerRssMB;
    rows.push([name, 'worker RSS MB steady (all workers)', r.steady]);
    rows.push([name, 'worker RSS MB steady per worker', r.perWorkerSteady.join(' / ')]);
    rows.push([name, 'worker RSS MB peak (all / per worker)', `${r.peak} / ${r.perWorkerPeak.join(' / ')}`]);
    rows.push([name, 'sticky cache per worker', sl.stickyCache.map((c) => c.size ?? '-').join(' / ')]);
    rows.push([
      name,
      'dev server RSS MB steady / peak',
      `${sl.devServerRssMB.steady} / ${sl.devServerRssMB.peak}`,
    ]);
    rows.push([
      name,
      'worker statements/min (data)',
      `${sl.statements.perMinute} (${sl.statements.dataStatementsPerMinute})`,
    ]);
    rows.push([name, 'Redis commands/min', sl.redisCommandsPerMinute]);
    rows.push([name, 'history events per workflow (median)', sl.historyEventsPerWorkflow.median]);
    rows.push([name, 'history events added in window (max)', sl.historyEventsAddedInWindow.max]);
    for (const [group, c] of Object.entries(sl.cpuInWindow))
      if (c.cpuMs > 0) rows.push([name, `CPU cores asleep: ${group}`, c.cores]);
  }
  return table(['Benchmark', 'Figure', 'Value'], rows);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `[bench] ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    void cleanupAll().finally(() => process.exit(2));
  },
);
