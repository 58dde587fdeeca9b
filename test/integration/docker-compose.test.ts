import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { dockerComposeVersion, ensureDockerCompose } from '../../src/provision/docker-compose.js';
import { run } from '../../src/provision/run.js';
import { searchAttributeFlags } from '../../src/temporal/search-attributes.js';

/**
 * Checks docker-compose.yml, deploy/litellm-config.yaml, the Dockerfile and .dockerignore without a Docker engine.
 *
 * The compose file is read by Docker Compose itself (`config`), which validates it against the Compose schema,
 * interpolates `${VAR:-default}`, resolves paths and merges the `<<:` anchors, so the assertions are about what
 * Compose would run, not about our text. Compose v2 prints that model as JSON (`config --format json`). Debian's
 * docker-compose 1.29 (what `ensureDockerCompose` installs here) has no JSON output: its normalised YAML is
 * converted to JSON by PyYAML in the Python interpreter docker-compose itself runs on (PyYAML is one of its own
 * dependencies), so no YAML parser of ours is involved either way. The two versions normalise a few things
 * differently (ports, volumes, a disabled healthcheck); the helpers below accept both shapes.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');

interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string };
  command?: string[] | string | null;
  entrypoint?: string[] | string | null;
  environment?: Record<string, string | null>;
  depends_on?: Record<string, { condition?: string }>;
  healthcheck?: { test?: string[] | string; disable?: boolean };
  restart?: string;
  ports?: Array<string | { published?: string | number; target?: number | string; host_ip?: string }>;
  volumes?: Array<string | { type?: string; source?: string; target?: string; read_only?: boolean }>;
}

interface ComposeModel {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** Variables the compose file interpolates; stripped from the environment so the defaults show. */
const INTERPOLATED = [
  'POSTGRES_PASSWORD',
  'POSTGRES_PORT',
  'REDIS_PASSWORD',
  'LITELLM_MASTER_KEY',
  'BUDGET_TASK_QUEUE',
  'BUDGET_RESET_TIMEZONE',
  'LOG_LEVEL',
];

let compose: string[];
let composeMajor: number;
let scratch: string;
let emptyEnvFile: string;

beforeAll(async () => {
  const started = Date.now();
  compose = await ensureDockerCompose();
  const version = await dockerComposeVersion(compose);
  composeMajor = Number(version.split('.')[0]);
  console.log(`[docker-compose.test] ${compose.join(' ')} ${version} (${Date.now() - started} ms)`);
  scratch = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-compose-'));
  // An empty --env-file, so a developer's .env beside docker-compose.yml cannot change what is asserted.
  emptyEnvFile = path.join(scratch, 'empty.env');
  await writeFile(emptyEnvFile, '');
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** The Python docker-compose 1.x runs on (its shebang), which has PyYAML; `python3` otherwise. */
async function composePython(): Promise<string> {
  const head = (await readFile(compose[0]!, 'utf8').catch(() => '')).split('\n', 1)[0] ?? '';
  const match = /^#!\s*(\S*python\S*)/.exec(head);
  return match?.[1] ?? 'python3';
}

/** `docker-compose.yml` as Docker Compose resolves it, given these interpolated variables. */
async function composeConfig(vars: Record<string, string> = {}): Promise<ComposeModel> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INTERPOLATED) delete env[name];
  Object.assign(env, vars);
  const [command, ...prefix] = compose;
  const args = [...prefix, '--env-file', emptyEnvFile, '-f', COMPOSE_FILE, 'config'];
  if (composeMajor >= 2) {
    return JSON.parse(await run(command!, [...args, '--format', 'json'], { cwd: ROOT, env })) as ComposeModel;
  }
  const yaml = await run(command!, args, { cwd: ROOT, env });
  const json = await run(await composePython(), [
    '-c',
    'import json, sys, yaml; json.dump(yaml.safe_load(sys.argv[1]), sys.stdout)',
    yaml,
  ]);
  return JSON.parse(json) as ComposeModel;
}

function service(model: ComposeModel, name: string): ComposeService {
  const found = model.services[name];
  if (!found) throw new Error(`docker-compose.yml has no service "${name}"`);
  return found;
}

function argv(value: string[] | string | null | undefined): string[] {
  if (value == null) return [];
  return typeof value === 'string' ? value.split(/\s+/).filter(Boolean) : value;
}

function healthcheckEnabled(svc: ComposeService): boolean {
  const test = argv(svc.healthcheck?.test);
  return !svc.healthcheck?.disable && test.length > 0 && test[0] !== 'NONE';
}

/** Container ports published on the host (`host_ip:published:target/proto` strings in v1, objects in v2). */
function publishedPorts(svc: ComposeService): Array<{ published: number; target: number }> {
  return (svc.ports ?? []).map((port) => {
    if (typeof port === 'string') {
      const parts = port.replace(/\/\w+$/, '').split(':');
      return { published: Number(parts.at(-2)), target: Number(parts.at(-1)) };
    }
    return { published: Number(port.published), target: Number(port.target) };
  });
}

/** Bind mounts as `{ source, target, readOnly }` (`src:dst:mode` strings in v1, objects in v2). */
function mounts(svc: ComposeService): Array<{ source: string; target: string; readOnly: boolean }> {
  return (svc.volumes ?? []).map((volume) => {
    if (typeof volume === 'string') {
      const [source = '', target = '', mode = ''] = volume.split(':');
      return { source, target, readOnly: mode.split(',').includes('ro') };
    }
    return { source: volume.source ?? '', target: volume.target ?? '', readOnly: volume.read_only === true };
  });
}

/** Services that some other service waits on to *finish* (one-shots, which need no healthcheck). */
function oneShots(model: ComposeModel): Set<string> {
  const names = new Set<string>();
  for (const svc of Object.values(model.services)) {
    for (const [name, dep] of Object.entries(svc.depends_on ?? {})) {
      if (dep.condition === 'service_completed_successfully') names.add(name);
    }
  }
  return names;
}

/** Dockerfile instructions with continuation lines joined and comments dropped. */
function dockerfileInstructions(text: string): Array<{ keyword: string; args: string }> {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** The top-level section `name` of a simple YAML file (every indented line until the next top-level key). */
function yamlSection(text: string, name: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`${name}:`));
  if (start < 0) return '';
  const section: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line) && !line.startsWith('#')) break;
    section.push(line);
  }
  return section.join('\n');
}

describe('docker-compose.yml', () => {
  it('is a valid Compose file with postgres, redis, temporal, litellm, setup and worker', async () => {
    const model = await composeConfig();
    expect(Object.keys(model.services)).toEqual(
      expect.arrayContaining(['postgres', 'redis', 'temporal', 'litellm', 'setup', 'worker']),
    );
  });

  it('starts the worker only after setup completed and Temporal, Redis and PostgreSQL are healthy', async () => {
    const worker = service(await composeConfig(), 'worker');
    expect(worker.depends_on?.setup?.condition).toBe('service_completed_successfully');
    expect(worker.depends_on?.temporal?.condition).toBe('service_healthy');
    expect(worker.depends_on?.redis?.condition).toBe('service_healthy');
    expect(worker.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(argv(worker.command)).toEqual(['worker']);
  });

  it("runs setup once, after LiteLLM's own migrations: migrate, then search-attributes register", async () => {
    const setup = service(await composeConfig(), 'setup');
    expect(setup.depends_on?.litellm?.condition).toBe('service_healthy');
    expect(setup.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(setup.depends_on?.temporal?.condition).toBe('service_healthy');
    expect(setup.restart ?? 'no').toBe('no');
    const script = [...argv(setup.entrypoint), ...argv(setup.command)].join(' ');
    const migrate = script.indexOf('dist/src/cli/main.js migrate');
    const register = script.indexOf('dist/src/cli/main.js search-attributes register');
    expect(migrate).toBeGreaterThanOrEqual(0);
    expect(register).toBeGreaterThan(migrate);
    // `&&`, not `;`: a failed migration must fail setup, and so keep the worker from starting.
    expect(script.slice(migrate, register)).toContain('&&');
  });

  it('gives every long-running service a healthcheck', async () => {
    const model = await composeConfig();
    const once = oneShots(model);
    expect(once).toEqual(new Set(['setup']));
    for (const [name, svc] of Object.entries(model.services)) {
      if (once.has(name)) continue;
      expect(healthcheckEnabled(svc), `${name} has a healthcheck`).toBe(true);
    }
    const worker = service(model, 'worker');
    expect(argv(worker.healthcheck?.test).join(' ')).toContain('/healthz');
  });

  it('builds setup and worker from our Dockerfile, as one image', async () => {
    const model = await composeConfig();
    for (const name of ['setup', 'worker']) {
      const svc = service(model, name);
      expect(svc.build?.context && path.resolve(ROOT, svc.build.context), `${name} build context`).toBe(
        path.resolve(ROOT),
      );
      expect(svc.build?.dockerfile ?? 'Dockerfile').toBe('Dockerfile');
    }
    expect(service(model, 'setup').image).toBeDefined();
    expect(service(model, 'setup').image).toBe(service(model, 'worker').image);
  });

  it("configures the worker through config.ts's variables: LiteLLM's database, Redis and Temporal", async () => {
    const model = await composeConfig();
    const worker = service(model, 'worker');
    const env = worker.environment ?? {};
    // The same validation the worker runs at start-up.
    const config = loadConfig(env as NodeJS.ProcessEnv);
    expect(config.databaseUrl).toBe(service(model, 'litellm').environment?.DATABASE_URL);
    expect(new URL(config.databaseUrl!).hostname).toBe('postgres');
    expect(config.redis).toMatchObject({ host: 'redis', port: 6379 });
    expect(env.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(config.taskQueue).toBe('budget-lifecycle');
    expect(config.metricsPort).toBe(9464);
    expect(publishedPorts(worker)).toContainEqual({ published: 9464, target: 9464 });
  });

  it('takes every password from the environment, defaulting to development values', async () => {
    const defaults = await composeConfig();
    expect(service(defaults, 'postgres').environment?.POSTGRES_PASSWORD).toBe('litellm');

    const model = await composeConfig({
      POSTGRES_PASSWORD: 'pg-from-env-1',
      REDIS_PASSWORD: 'redis-from-env-2',
      LITELLM_MASTER_KEY: 'sk-from-env-3',
    });
    const postgres = service(model, 'postgres');
    const redis = service(model, 'redis');
    const litellm = service(model, 'litellm');
    const worker = service(model, 'worker');
    const setup = service(model, 'setup');
    expect(postgres.environment?.POSTGRES_PASSWORD).toBe('pg-from-env-1');
    for (const svc of [litellm, worker, setup]) {
      expect(new URL(svc.environment?.DATABASE_URL ?? '').password).toBe('pg-from-env-1');
      expect(svc.environment?.REDIS_PASSWORD).toBe('redis-from-env-2');
    }
    expect(argv(redis.command)).toContain('redis-from-env-2');
    expect(redis.environment?.REDISCLI_AUTH).toBe('redis-from-env-2');
    expect(litellm.environment?.LITELLM_MASTER_KEY).toBe('sk-from-env-3');
  });

  it('runs the Temporal dev server with the search attributes the budget workflows set', async () => {
    const temporal = service(await composeConfig(), 'temporal');
    const args = argv(temporal.command);
    expect(args.slice(0, 2)).toEqual(['server', 'start-dev']);
    expect(args[args.indexOf('--ip') + 1]).toBe('0.0.0.0');
    const flags = args.flatMap((arg, i) => (arg === '--search-attribute' ? [args[i + 1]] : []));
    expect(flags.sort()).toEqual(searchAttributeFlags().sort());
    const ports = publishedPorts(temporal);
    expect(ports).toContainEqual({ published: 7233, target: 7233 });
    expect(ports).toContainEqual({ published: 8233, target: 8233 });
    const dbFile = args[args.indexOf('--db-filename') + 1] ?? '';
    expect(mounts(temporal).some((m) => dbFile.startsWith(`${m.target}/`))).toBe(true);
  });
});

describe('LiteLLM in docker-compose.yml', () => {
  it('mounts deploy/litellm-config.yaml as the config LiteLLM starts with', async () => {
    const litellm = service(await composeConfig(), 'litellm');
    const args = argv(litellm.command);
    const configPath = args[args.indexOf('--config') + 1];
    expect(configPath).toBeDefined();
    const mount = mounts(litellm).find((m) => m.target === configPath);
    expect(mount, `a mount at ${configPath}`).toBeDefined();
    expect(path.resolve(ROOT, mount!.source)).toBe(path.join(ROOT, 'deploy/litellm-config.yaml'));
    expect(mount!.readOnly).toBe(true);
    expect(litellm.environment?.STORE_MODEL_IN_DB).toBe('True');
  });

  it("switches off LiteLLM's own budget reset job", async () => {
    const text = await readFile(path.join(ROOT, 'deploy/litellm-config.yaml'), 'utf8');
    expect(yamlSection(text, 'general_settings')).toMatch(/^ {2}disable_reset_budget:\s*true\s*(#.*)?$/m);
  });

  it('shares Redis with the worker through the config file', async () => {
    const text = await readFile(path.join(ROOT, 'deploy/litellm-config.yaml'), 'utf8');
    const settings = yamlSection(text, 'litellm_settings');
    expect(settings).toMatch(/^ {2}cache:\s*true\s*$/m);
    expect(settings).toMatch(/^ {4}type:\s*redis\s*$/m);
    expect(settings).toMatch(/^ {4}host:\s*os\.environ\/REDIS_HOST\s*$/m);
    expect(settings).toMatch(/^ {4}port:\s*os\.environ\/REDIS_PORT\s*$/m);
    const general = yamlSection(text, 'general_settings');
    expect(general).toMatch(/^ {2}master_key:\s*os\.environ\/LITELLM_MASTER_KEY\s*$/m);
    expect(general).toMatch(/^ {2}database_url:\s*os\.environ\/DATABASE_URL\s*$/m);
  });

  it('sets every variable the config file reads', async () => {
    const text = await readFile(path.join(ROOT, 'deploy/litellm-config.yaml'), 'utf8');
    const litellm = service(await composeConfig(), 'litellm');
    const values = text
      .split('\n')
      .map((line) => line.replace(/(^|\s)#.*$/, ''))
      .join('\n');
    const wanted = [...values.matchAll(/os\.environ\/([A-Z0-9_]+)/g)].map((m) => m[1]!);
    expect(wanted.length).toBeGreaterThan(0);
    for (const name of wanted) expect(litellm.environment?.[name], name).toBeTruthy();
    expect(litellm.environment?.REDIS_HOST).toBe('redis');
  });
});

describe('Dockerfile', () => {
  const read = async () => dockerfileInstructions(await readFile(path.join(ROOT, 'Dockerfile'), 'utf8'));

  /** The instructions of the last stage (the image that runs). */
  const finalStage = (all: Array<{ keyword: string; args: string }>) =>
    all.slice(all.map((i) => i.keyword).lastIndexOf('FROM'));

  it('has a build stage and a runtime stage that copies dist/ from it', async () => {
    const all = await read();
    const froms = all.filter((i) => i.keyword === 'FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    const buildStage = /\bAS\s+(\S+)/i.exec(froms[0]!.args)?.[1];
    expect(buildStage).toBeDefined();
    expect(all.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args) && !/--omit/.test(i.args))).toBe(
      true,
    );
    expect(all.some((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.args))).toBe(true);
    expect(
      finalStage(all).some(
        (i) => i.keyword === 'COPY' && i.args.includes(`--from=${buildStage}`) && /\bdist\b/.test(i.args),
      ),
    ).toBe(true);
  });

  it('installs production dependencies without dropping the optional native packages', async () => {
    const all = await read();
    const runs = all.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    expect(runs.some((r) => /npm ci\b.*--omit=dev/.test(r))).toBe(true);
    expect(runs.join('\n')).not.toMatch(/--omit=optional|--no-optional|npm install\b/);
  });

  it('runs the CLI worker as a non-root user, with a health check on METRICS_PORT', async () => {
    const stage = finalStage(await read());
    const users = stage.filter((i) => i.keyword === 'USER').map((i) => i.args.split(':')[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(users.at(-1));
    expect(stage.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe('["node", "dist/src/cli/main.js"]');
    expect(stage.find((i) => i.keyword === 'CMD')?.args).toBe('["worker"]');
    expect(stage.find((i) => i.keyword === 'EXPOSE')?.args).toContain('9464');
    const healthcheck = stage.find((i) => i.keyword === 'HEALTHCHECK')?.args ?? '';
    expect(healthcheck).toContain('/healthz');
    expect(healthcheck).toContain('METRICS_PORT');
  });

  it('keeps node_modules, dist, .data, .git and coverage out of the build context', async () => {
    const lines = (await readFile(path.join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.data', '.git', 'coverage']) expect(lines).toContain(entry);
  });
});
