import pg from 'pg';
import { createLiteLLMDatabase } from '../../dev/provision/litellm-database.js';
import { onCleanup } from './lifecycle.js';
import type { Services } from './services.js';

/** The role worker processes log in as, so PostgreSQL's statistics can tell their statements from ours. */
export const WORKER_ROLE = 'budget_bench_worker';
const WORKER_PASSWORD = 'budget-bench-worker';

export interface WorkerDatabase {
  readonly name: string;
  /** For the benchmark itself (role `postgres`). */
  readonly url: string;
  /** For worker processes (role {@link WORKER_ROLE}). */
  readonly workerUrl: string;
  /** The benchmark's pool: seeding, flushes, polling. */
  readonly pool: pg.Pool;
  readonly statementStats: boolean;
}

/**
 * A fresh LiteLLM database for one benchmark, plus a login role for its workers (a superuser, like the
 * `postgres` role the rest of the suite uses: privileges are not what is measured). With `statementStats`,
 * pg_stat_statements is created in it (the server must have been started with it preloaded).
 */
export async function createWorkerDatabase(
  services: Services,
  name: string,
  options: { statementStats?: boolean } = {},
): Promise<WorkerDatabase> {
  const url = await createLiteLLMDatabase(services.postgresUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 6 });
  pool.on('error', (error) => process.stderr.write(`[bench] idle connection failed: ${error.message}\n`));
  onCleanup(`pool of ${name}`, () => pool.end());
  await pool.query(
    `DO $$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${WORKER_ROLE}') THEN
         CREATE ROLE ${WORKER_ROLE} LOGIN SUPERUSER PASSWORD '${WORKER_PASSWORD}';
       END IF;
     END $$`,
  );
  if (options.statementStats) await pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const worker = new URL(url);
  worker.username = WORKER_ROLE;
  worker.password = WORKER_PASSWORD;
  return { name, url, workerUrl: worker.toString(), pool, statementStats: options.statementStats ?? false };
}

/** Statement counts of the worker role in this database (pg_stat_statements), by normalised statement. */
export type StatementCounts = Map<string, { query: string; calls: number }>;

export async function workerStatements(db: WorkerDatabase): Promise<StatementCounts> {
  const times = await workerStatementTimes(db);
  return new Map([...times].map(([id, { query, calls }]) => [id, { query, calls }]));
}

export interface StatementWindow {
  readonly minutes: number;
  /** Every statement the workers ran, per minute (transaction control included). */
  readonly perMinute: number;
  /** The same without BEGIN/COMMIT/ROLLBACK/SET: the statements that read or write data. */
  readonly dataStatementsPerMinute: number;
  /** The statements behind the figure, most frequent first. */
  readonly top: Array<{ calls: number; query: string }>;
}

const CONTROL = /^\s*(BEGIN|COMMIT|ROLLBACK|SET|RESET|SHOW|DISCARD|SAVEPOINT|RELEASE)\b/i;

/** What the workers ran between two snapshots taken `windowMs` apart. */
export function statementWindow(
  before: StatementCounts,
  after: StatementCounts,
  windowMs: number,
): StatementWindow {
  const minutes = windowMs / 60_000;
  const rows: Array<{ calls: number; query: string }> = [];
  for (const [id, { query, calls }] of after) {
    const delta = calls - (before.get(id)?.calls ?? 0);
    if (delta > 0) rows.push({ calls: delta, query: query.replace(/\s+/g, ' ').slice(0, 160) });
  }
  rows.sort((a, b) => b.calls - a.calls);
  const total = rows.reduce((n, r) => n + r.calls, 0);
  const data = rows.filter((r) => !CONTROL.test(r.query)).reduce((n, r) => n + r.calls, 0);
  return {
    minutes: Math.round(minutes * 100) / 100,
    perMinute: Math.round((total / minutes) * 10) / 10,
    dataStatementsPerMinute: Math.round((data / minutes) * 10) / 10,
    top: rows.slice(0, 8),
  };
}

/** Executor time and calls of the worker role's statements (pg_stat_statements), by normalised statement. */
export type StatementTimes = Map<string, { query: string; calls: number; ms: number }>;

export async function workerStatementTimes(db: WorkerDatabase): Promise<StatementTimes> {
  const { rows } = await db.pool.query<{ queryid: string; query: string; calls: string; ms: number }>(
    `SELECT s.queryid::text AS queryid, s.query, s.calls::text AS calls, s.total_exec_time AS ms
       FROM pg_stat_statements s
       JOIN pg_roles r ON r.oid = s.userid
       JOIN pg_database d ON d.oid = s.dbid
      WHERE r.rolname = $1 AND d.datname = $2`,
    [WORKER_ROLE, db.name],
  );
  return new Map(rows.map((r) => [r.queryid, { query: r.query, calls: Number(r.calls), ms: r.ms }]));
}

/**
 * The statements that took the most executor time between two snapshots (wall time inside PostgreSQL, lock waits
 * and CPU contention included): where a window's database time went.
 */
export function statementTimeWindow(
  before: StatementTimes,
  after: StatementTimes,
  top = 10,
): { totalMs: number; top: Array<{ ms: number; calls: number; query: string }> } {
  const rows: Array<{ ms: number; calls: number; query: string }> = [];
  for (const [id, { query, calls, ms }] of after) {
    const prior = before.get(id);
    const delta = { ms: ms - (prior?.ms ?? 0), calls: calls - (prior?.calls ?? 0) };
    if (delta.calls > 0)
      rows.push({
        ms: Math.round(delta.ms),
        calls: delta.calls,
        query: query.replace(/\s+/g, ' ').slice(0, 200),
      });
  }
  rows.sort((a, b) => b.ms - a.ms);
  return { totalMs: rows.reduce((n, r) => n + r.ms, 0), top: rows.slice(0, top) };
}
