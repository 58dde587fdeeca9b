import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ClientBase } from 'pg';
import { cacheDir, pathExists, withCacheLock } from './cache.js';

const run = promisify(execFile);

/**
 * The LiteLLM database schema our tests run against. LiteLLM ships it as Prisma migrations in the PyPI package
 * `litellm-proxy-extras`; pinned so every run sees the same tables. Bump deliberately, then re-run the tests.
 */
export const LITELLM_PROXY_EXTRAS_VERSION = '0.4.110';

const CACHE_NAME = `litellm-proxy-extras-${LITELLM_PROXY_EXTRAS_VERSION}`;

/** Returns the migration.sql file paths in apply order, downloading and caching the wheel on first use. */
export async function litellmMigrationFiles(): Promise<string[]> {
  const migrationsDir = path.join(await ensureExtracted(), 'litellm_proxy_extras', 'migrations');
  // Prisma applies migrations in directory-name order (byte order: names are ASCII, and some share a timestamp
  // or use a shorter one, e.g. `20260108_…`, so only the full name gives the order). Plain sort() matches it.
  // Only directories count: the folder also holds `migration_lock.toml`.
  const entries = await readdir(migrationsDir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const files = names.map((name) => path.join(migrationsDir, name, 'migration.sql'));
  for (const file of files) {
    if (!(await pathExists(file))) throw new Error(`LiteLLM migration without migration.sql: ${file}`);
  }
  return files;
}

/**
 * Applies every LiteLLM migration, in order, to the database the client is connected to (an empty database).
 *
 * Each file is sent whole as ONE simple-protocol query (pg's `query(text)` without parameters), which is what
 * `prisma migrate deploy` does on PostgreSQL. The server then runs the file as one implicit transaction, so a
 * failing migration leaves nothing half-applied, and the migrations consisting of a single
 * `CREATE INDEX CONCURRENTLY` (several since 2026-04) still work: that statement is refused inside an explicit
 * BEGIN/COMMIT or in a multi-statement string, so do NOT wrap these in a transaction or concatenate them.
 * `_prisma_migrations` is not written: nothing of ours reads it, and a LiteLLM proxy must not be pointed here.
 */
export async function applyLiteLLMSchema(client: ClientBase): Promise<void> {
  for (const file of await litellmMigrationFiles()) {
    const sql = await readFile(file, 'utf8');
    try {
      await client.query(sql);
    } catch (error) {
      throw new Error(`LiteLLM migration ${path.basename(path.dirname(file))} failed: ${String(error)}`, {
        cause: error,
      });
    }
  }
}

/** Downloads and unpacks the wheel into the cache once; returns the directory holding `litellm_proxy_extras/`. */
async function ensureExtracted(): Promise<string> {
  const target = path.join(cacheDir(), CACHE_NAME);
  if (await pathExists(target)) return target;
  return withCacheLock(CACHE_NAME, async () => {
    // Another process may have finished while we waited for the lock.
    if (await pathExists(target)) return target;
    // Work in a temp dir inside the cache (same filesystem, so the final rename is atomic): a crash mid-download
    // never leaves a half-extracted `target` that later runs would trust.
    const tmp = await mkdtemp(path.join(cacheDir(), `${CACHE_NAME}.tmp-`));
    try {
      const wheelDir = path.join(tmp, 'wheel');
      const extracted = path.join(tmp, 'extracted');
      await python([
        '-m', 'pip', 'download', `litellm-proxy-extras==${LITELLM_PROXY_EXTRAS_VERSION}`,
        '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '-d', wheelDir,
      ]); // prettier-ignore
      const wheel = (await readdir(wheelDir)).find((f) => f.endsWith('.whl'));
      if (!wheel) throw new Error(`pip downloaded no wheel of litellm-proxy-extras into ${wheelDir}`);
      // A wheel is a zip; Python's stdlib unpacks it, so no npm dependency is needed.
      await python(['-m', 'zipfile', '-e', path.join(wheelDir, wheel), extracted]);
      if (!(await pathExists(path.join(extracted, 'litellm_proxy_extras', 'migrations')))) {
        throw new Error(
          `litellm-proxy-extras ${LITELLM_PROXY_EXTRAS_VERSION} has no litellm_proxy_extras/migrations`,
        );
      }
      await rename(extracted, target);
      return target;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
}

async function python(args: string[]): Promise<void> {
  try {
    await run('python3', args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        'python3 is not installed; it is needed to fetch the LiteLLM schema (litellm-proxy-extras from PyPI). ' +
          'Install python3 and pip (Debian/Ubuntu: apt-get install python3 python3-pip).',
        { cause: error },
      );
    }
    if (/No module named pip/.test(e.stderr ?? '')) {
      throw new Error(
        'pip is not installed for python3; it is needed to fetch the LiteLLM schema (litellm-proxy-extras from ' +
          'PyPI). Install it (Debian/Ubuntu: apt-get install python3-pip; elsewhere: python3 -m ensurepip).',
        { cause: error },
      );
    }
    throw new Error(`python3 ${args.join(' ')} failed: ${e.stderr?.trim() || String(error)}`, {
      cause: error,
    });
  }
}
