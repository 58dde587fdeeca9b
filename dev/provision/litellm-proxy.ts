import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir, pathExists, withCacheLock } from './cache.js';
import { run, which } from './run.js';

/** The LiteLLM release whose proxy the end-to-end suite runs (the release our schema and parity tests pin). */
export const LITELLM_VERSION = '1.108.14';

/**
 * `litellm[proxy]==1.108.14` cannot be installed as a whole: its `proxy` extra pins two companion packages at
 * versions PyPI does not have. The extra's other requirements are installed as the wheel states them; these two
 * at the nearest published versions (0.4.110 is the schema `litellm-schema.ts` already pins).
 */
const REPINNED: Readonly<Record<string, string>> = {
  'litellm-proxy-extras': '0.4.110',
  'litellm-enterprise': '0.1.79.post1',
};

/** prisma-client-py: LiteLLM reaches into its engine (`_Prisma__engine`), which 0.11.0 still has. */
const PRISMA_CLIENT_PY_VERSION = '0.11.0';

/**
 * npm packages: the Prisma CLI matching prisma-client-py 0.11 (it generates the Python client), and the Prisma
 * engine compiled to WebAssembly with its PostgreSQL adapter, which serve the client's queries because the native
 * engine binaries cannot be downloaded here (test/proxy/prisma-wasm-engine.mjs). Exact versions, no ranges.
 */
const NPM_PACKAGES: Readonly<Record<string, string>> = {
  prisma: '5.4.2',
  '@prisma/query-engine-wasm': '5.17.0-31.393aa359c9ad4a4bb28630fb5613f9c281cde053',
  '@prisma/adapter-pg': '5.17.0',
  '@prisma/driver-adapter-utils': '5.17.0',
  pg: '8.23.1',
};

/** A Prisma engine "binary" that only answers `--version`: all `prisma generate` asks of the engines. */
const VERSION_ONLY_ENGINE = '#!/bin/sh\necho "query-engine 0000000000000000000000000000000000000000"\n';

export interface LiteLLMProxyInstall {
  /** The `litellm` command of the virtualenv. */
  readonly litellm: string;
  /** The virtualenv's `bin` directory (put it first on PATH: LiteLLM runs `prisma` from there). */
  readonly binDir: string;
  /** A directory whose `node_modules` holds the WebAssembly engine packages (PRISMA_WASM_MODULES). */
  readonly npmDir: string;
}

/**
 * Returns a LiteLLM proxy installation, building it once into the cache (about a gigabyte of Python packages;
 * minutes on a cold machine): a virtualenv with `litellm==1.108.14` and its `proxy` extra, prisma-client-py with
 * its client generated from LiteLLM's `schema.prisma`, and the npm packages of the WebAssembly engine. Needs
 * python3 with venv and pip, and npm; network access to PyPI and the npm registry on the first run.
 */
export async function ensureLiteLLMProxy(): Promise<LiteLLMProxyInstall> {
  // The recipe is part of the name, so changing a pin builds a new installation beside the old one.
  const recipe = createHash('sha256')
    .update(JSON.stringify([LITELLM_VERSION, REPINNED, PRISMA_CLIENT_PY_VERSION, NPM_PACKAGES]))
    .digest('hex')
    .slice(0, 10);
  const name = `litellm-proxy-${LITELLM_VERSION}-${recipe}`;
  const dir = path.join(cacheDir(), name);
  const install: LiteLLMProxyInstall = {
    litellm: path.join(dir, 'venv', 'bin', 'litellm'),
    binDir: path.join(dir, 'venv', 'bin'),
    npmDir: path.join(dir, 'npm'),
  };
  // Built in place (a virtualenv cannot be moved: its scripts name their interpreter by absolute path), so
  // this marker, written last, is what says it is complete.
  const complete = path.join(dir, '.complete');
  if (await pathExists(complete)) return install;
  return withCacheLock(name, async () => {
    if (await pathExists(complete)) return install;
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    process.stderr.write(`Installing the LiteLLM ${LITELLM_VERSION} proxy into ${dir} (minutes, once)...\n`);
    await Promise.all([installVenv(dir), installNpm(install.npmDir)]);
    await generateClient(dir, install);
    await writeFile(complete, new Date().toISOString());
    return install;
  });
}

async function installVenv(dir: string): Promise<void> {
  const python3 = await which('python3');
  if (!python3)
    throw new Error('python3 is not installed; the LiteLLM proxy needs it (apt-get install python3-venv)');
  const venv = path.join(dir, 'venv');
  await run(python3, ['-m', 'venv', venv]).catch((error: unknown) => {
    throw new Error(
      `python3 -m venv failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv)`,
      { cause: error },
    );
  });
  const pip = [path.join(venv, 'bin', 'python'), '-m', 'pip', '--disable-pip-version-check', '-q'];
  await run(pip[0]!, [...pip.slice(1), 'install', `litellm==${LITELLM_VERSION}`]);
  // The proxy extra's requirements, read from the installed wheel's metadata, with the two repinned.
  const requirements = await run(pip[0]!, ['-c', PROXY_REQUIREMENTS, JSON.stringify(REPINNED)]);
  const file = path.join(dir, 'proxy-requirements.txt');
  await writeFile(file, `${requirements.trim()}\nprisma==${PRISMA_CLIENT_PY_VERSION}\n`);
  await run(pip[0]!, [...pip.slice(1), 'install', '-r', file]);
}

/** Prints the `proxy` extra's requirements of the installed litellm (not its base ones), repinning argv[1]. */
const PROXY_REQUIREMENTS = `
import json, sys
from importlib.metadata import requires
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
repinned = json.loads(sys.argv[1])
for text in requires("litellm"):
    r = Requirement(text)
    if r.marker is None or not r.marker.evaluate({"extra": "proxy"}) or r.marker.evaluate({"extra": ""}):
        continue
    if r.name in repinned:
        r.specifier = SpecifierSet("==" + repinned.pop(r.name))
    r.marker = None
    print(r)
if repinned:
    sys.exit("litellm's proxy extra no longer requires " + ", ".join(repinned) + ": update REPINNED")
`;

async function installNpm(npmDir: string): Promise<void> {
  const npm = await which('npm');
  if (!npm) throw new Error('npm is not installed; the LiteLLM proxy suite needs it for the Prisma packages');
  await mkdir(npmDir, { recursive: true });
  await writeFile(
    path.join(npmDir, 'package.json'),
    JSON.stringify({ private: true, dependencies: NPM_PACKAGES }, null, 2),
  );
  // No install scripts: the Prisma CLI's would download native engines, which is exactly what cannot work here.
  await run(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: npmDir,
  });
}

/**
 * Generates prisma-client-py's client (into the virtualenv) from LiteLLM's own schema with the npm Prisma CLI.
 * The schema's `binaryTargets` line is dropped (it asks for native engines) and the engines are replaced by a
 * script that only reports a version.
 */
async function generateClient(dir: string, install: LiteLLMProxyInstall): Promise<void> {
  const python = path.join(install.binDir, 'python');
  const shipped = (
    await run(python, ['-c', 'import litellm.proxy, os; print(os.path.dirname(litellm.proxy.__file__))'])
  ).trim();
  const schema = (await readFile(path.join(shipped, 'schema.prisma'), 'utf8'))
    .split('\n')
    .filter((line) => !/^\s*binaryTargets\s*=/.test(line))
    .join('\n');
  const generateDir = path.join(dir, 'generate');
  await mkdir(generateDir, { recursive: true });
  await writeFile(path.join(generateDir, 'schema.prisma'), schema);
  const engine = path.join(generateDir, 'version-only-engine');
  await writeFile(engine, VERSION_ONLY_ENGINE);
  await chmod(engine, 0o755);
  await run(
    process.execPath,
    [
      path.join(install.npmDir, 'node_modules', 'prisma', 'build', 'index.js'),
      'generate',
      '--schema',
      'schema.prisma',
    ],
    {
      cwd: generateDir,
      env: {
        ...process.env,
        // The generator `prisma-client-py` is a script of the virtualenv.
        PATH: `${install.binDir}${path.delimiter}${process.env.PATH ?? ''}`,
        PRISMA_CLI_QUERY_ENGINE_TYPE: 'binary',
        PRISMA_QUERY_ENGINE_BINARY: engine,
        PRISMA_SCHEMA_ENGINE_BINARY: engine,
        PRISMA_HIDE_UPDATE_MESSAGE: '1',
        CHECKPOINT_DISABLE: '1',
      },
    },
  );
}
