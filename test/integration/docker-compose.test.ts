import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_WORKFLOW_ID_LENGTH } from '../../src/budget-ref.js';
import { loadConfig } from '../../src/config.js';
import { dockerComposeVersion, ensureDockerCompose } from '../../dev/provision/docker-compose.js';
import { LITELLM_VERSION } from '../../dev/provision/litellm-proxy.js';
import { run } from '../../dev/provision/run.js';
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
  profiles?: string[];
  deploy?: { replicas?: number | string };
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
  'TEMPORAL_POSTGRES_PASSWORD',
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

/**
 * `docker-compose.yml` as Docker Compose resolves it, given these interpolated variables, with the `dev` profile's
 * services too (Compose v2 leaves out services of profiles not enabled; v1 lists them all).
 */
async function composeConfig(vars: Record<string, string> = {}): Promise<ComposeModel> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of INTERPOLATED) delete env[name];
  Object.assign(env, vars);
  const [command, ...prefix] = compose;
  const args = [...prefix, '--env-file', emptyEnvFile, '-f', COMPOSE_FILE, '--profile', 'dev', 'config'];
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

/**
 * Container ports published on the host (`host_ip:published:target/proto` strings or objects); `published` is a
 * port (`'7233'`) or a range (`'9464-9465'`, one host port per replica).
 */
function publishedPorts(svc: ComposeService): Array<{ published: string; target: number }> {
  return (svc.ports ?? []).map((port) => {
    if (typeof port === 'string') {
      const parts = port.replace(/\/\w+$/, '').split(':');
      return { published: String(parts.at(-2)), target: Number(parts.at(-1)) };
    }
    return { published: String(port.published), target: Number(port.target) };
  });
}

/** The services `docker compose up` starts: those of no profile. */
function defaultStack(model: ComposeModel): Record<string, ComposeService> {
  return Object.fromEntries(Object.entries(model.services).filter(([, svc]) => !svc.profiles?.length));
}

/** The services `docker compose --profile dev up worker-dev` starts: worker-dev and what it depends on. */
function closure(model: ComposeModel, name: string, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  for (const dep of Object.keys(service(model, name).depends_on ?? {})) closure(model, dep, seen);
  return seen;
}

/**
 * The release tag of `name:tag`, or undefined for a floating one: a release is a version of at least two numbers
 * (`16.15`, `1.29.1`, `v1.108.14`, `1.29.1-tctl-1.18.4-cli-1.5.0`), so `latest`, a branch such as `main-stable`, a
 * bare major such as `16` and a missing tag are not.
 */
function releaseTag(image: string | undefined): string | undefined {
  const name = (image ?? '').slice((image ?? '').lastIndexOf('/') + 1);
  const tag = name.includes(':') ? name.slice(name.indexOf(':') + 1) : '';
  return /^v?\d+(\.\d+)+(-[\w.-]+)?$/.test(tag) ? tag : undefined;
}

/** The release tag of an image, which must have one. */
function pinnedTag(image: string | undefined): string {
  const tag = releaseTag(image);
  expect(tag, `${image} has a release tag`).toBeDefined();
  return tag!;
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
  it('is a valid Compose file whose default stack runs a Temporal server, its UI, LiteLLM and the workers', async () => {
    const model = await composeConfig();
    expect(Object.keys(defaultStack(model)).sort()).toEqual(
      [
        'litellm',
        'postgres',
        'redis',
        'setup',
        'temporal',
        'temporal-namespace',
        'temporal-postgres',
        'temporal-schema',
        'temporal-ui',
        'worker',
      ].sort(),
    );
  });

  it('runs two worker replicas, after setup completed and Temporal, Redis and PostgreSQL are healthy', async () => {
    const model = await composeConfig();
    const worker = service(model, 'worker');
    expect(Number(worker.deploy?.replicas)).toBe(2);
    expect(worker.depends_on?.setup?.condition).toBe('service_completed_successfully');
    expect(worker.depends_on?.temporal?.condition).toBe('service_healthy');
    expect(worker.depends_on?.redis?.condition).toBe('service_healthy');
    expect(worker.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(argv(worker.command)).toEqual(['worker']);
    // Two replicas cannot share one host port: a range with a port for each.
    const health = publishedPorts(worker).find((p) => p.target === 9464);
    const [first, last = first] = (health?.published ?? '').split('-').map(Number);
    expect(last! - first! + 1).toBeGreaterThanOrEqual(2);
  });

  it("runs setup once, after LiteLLM's own migrations and the namespace: migrate, then search-attributes register", async () => {
    const model = await composeConfig();
    for (const [name, temporal] of [
      ['setup', 'temporal-namespace'],
      ['setup-dev', 'temporal-dev'],
    ] as const) {
      const setup = service(model, name);
      expect(setup.depends_on?.litellm?.condition, name).toBe('service_healthy');
      expect(setup.depends_on?.postgres?.condition, name).toBe('service_healthy');
      expect(setup.depends_on?.[temporal]?.condition, name).toBe(
        temporal === 'temporal-namespace' ? 'service_completed_successfully' : 'service_healthy',
      );
      expect(setup.restart ?? 'no').toBe('no');
      const script = [...argv(setup.entrypoint), ...argv(setup.command)].join(' ');
      const migrate = script.indexOf('dist/src/cli/main.js migrate');
      const register = script.indexOf('dist/src/cli/main.js search-attributes register');
      expect(migrate).toBeGreaterThanOrEqual(0);
      expect(register).toBeGreaterThan(migrate);
      // `&&`, not `;`: a failed migration must fail setup, and so keep the worker from starting.
      expect(script.slice(migrate, register)).toContain('&&');
    }
  });

  it('gives every long-running service a healthcheck', async () => {
    const model = await composeConfig();
    const once = oneShots(model);
    expect(once).toEqual(new Set(['setup', 'setup-dev', 'temporal-schema', 'temporal-namespace']));
    for (const [name, svc] of Object.entries(model.services)) {
      if (once.has(name)) continue;
      expect(healthcheckEnabled(svc), `${name} has a healthcheck`).toBe(true);
    }
    for (const name of ['worker', 'worker-dev']) {
      expect(argv(service(model, name).healthcheck?.test).join(' ')).toContain('/healthz');
    }
  });

  it('builds setup and the workers from our Dockerfile, as one image', async () => {
    const model = await composeConfig();
    const names = ['setup', 'worker', 'setup-dev', 'worker-dev'];
    for (const name of names) {
      const svc = service(model, name);
      expect(svc.build?.context && path.resolve(ROOT, svc.build.context), `${name} build context`).toBe(
        path.resolve(ROOT),
      );
      expect(svc.build?.dockerfile ?? 'Dockerfile').toBe('Dockerfile');
    }
    expect(service(model, 'setup').image).toBeDefined();
    expect(new Set(names.map((name) => service(model, name).image)).size).toBe(1);
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
  });

  it('pins every image it pulls to a release tag', async () => {
    const model = await composeConfig();
    const pulled = Object.entries(model.services).filter(([, svc]) => !svc.build);
    expect(pulled.map(([name]) => name)).toEqual(
      expect.arrayContaining([
        'postgres',
        'redis',
        'temporal-postgres',
        'temporal',
        'temporal-ui',
        'litellm',
      ]),
    );
    for (const [name, svc] of pulled) expect(releaseTag(svc.image), `${name}: ${svc.image}`).toBeDefined();
    // Images we build ourselves carry the one local tag the build gives them.
    for (const [name, svc] of Object.entries(model.services).filter(([, s]) => s.build)) {
      expect(svc.image, name).toBe('budget-lifecycle:local');
    }
  });

  it('tells a release tag from a floating one', () => {
    for (const floating of [
      'ghcr.io/berriai/litellm:main-stable',
      'ghcr.io/berriai/litellm:main-latest',
      'postgres:latest',
      'postgres:16',
      'redis:7',
      'postgres:16-alpine',
      'redis',
      'localhost:5000/redis',
    ]) {
      expect(releaseTag(floating), floating).toBeUndefined();
    }
    expect(releaseTag('ghcr.io/berriai/litellm:v1.108.14')).toBe('v1.108.14');
    expect(releaseTag('postgres:16.15')).toBe('16.15');
    expect(releaseTag('localhost:5000/redis:7.4.11')).toBe('7.4.11');
    expect(releaseTag('temporalio/admin-tools:1.29.1-tctl-1.18.4-cli-1.5.0')).toBe(
      '1.29.1-tctl-1.18.4-cli-1.5.0',
    );
  });

  it('takes every password from the environment, defaulting to development values', async () => {
    const defaults = await composeConfig();
    expect(service(defaults, 'postgres').environment?.POSTGRES_PASSWORD).toBe('litellm');
    expect(service(defaults, 'temporal-postgres').environment?.POSTGRES_PASSWORD).toBe('temporal');

    const model = await composeConfig({
      POSTGRES_PASSWORD: 'pg-from-env-1',
      REDIS_PASSWORD: 'redis-from-env-2',
      LITELLM_MASTER_KEY: 'sk-from-env-3',
      TEMPORAL_POSTGRES_PASSWORD: 'temporal-pg-from-env-4',
    });
    const postgres = service(model, 'postgres');
    const redis = service(model, 'redis');
    const litellm = service(model, 'litellm');
    expect(postgres.environment?.POSTGRES_PASSWORD).toBe('pg-from-env-1');
    for (const name of ['litellm', 'worker', 'setup', 'worker-dev', 'setup-dev']) {
      const svc = service(model, name);
      expect(new URL(svc.environment?.DATABASE_URL ?? '').password, name).toBe('pg-from-env-1');
      expect(svc.environment?.REDIS_PASSWORD, name).toBe('redis-from-env-2');
    }
    expect(argv(redis.command)).toContain('redis-from-env-2');
    expect(redis.environment?.REDISCLI_AUTH).toBe('redis-from-env-2');
    expect(litellm.environment?.LITELLM_MASTER_KEY).toBe('sk-from-env-3');
    expect(service(model, 'temporal-postgres').environment?.POSTGRES_PASSWORD).toBe('temporal-pg-from-env-4');
    for (const name of ['temporal', 'temporal-schema']) {
      expect(service(model, name).environment?.POSTGRES_PWD, name).toBe('temporal-pg-from-env-4');
    }
    expect(service(model, 'temporal-schema').environment?.SQL_PASSWORD).toBe('temporal-pg-from-env-4');
  });
});

describe('the Temporal server in docker-compose.yml', () => {
  it('runs a pinned temporalio/server release on its own PostgreSQL, after the schema tool', async () => {
    const model = await composeConfig();
    const temporal = service(model, 'temporal');
    expect(temporal.image).toMatch(/^temporalio\/server:/);
    const version = pinnedTag(temporal.image);
    const env = temporal.environment ?? {};
    // The image's config template: `postgres12` is the PostgreSQL plugin; without ENABLE_ES visibility is SQL.
    expect(env.DB).toBe('postgres12');
    expect(env.ENABLE_ES ?? 'false').toBe('false');
    expect(env.POSTGRES_SEEDS).toBe('temporal-postgres');
    expect(env.POSTGRES_USER).toBe(service(model, 'temporal-postgres').environment?.POSTGRES_USER);
    expect(env.POSTGRES_PWD).toBe(service(model, 'temporal-postgres').environment?.POSTGRES_PASSWORD);
    // Listens beyond the container's loopback, so the workers, the UI and the host reach it.
    expect(env.BIND_ON_IP).toBe('0.0.0.0');
    expect(publishedPorts(temporal)).toContainEqual({ published: '7233', target: 7233 });
    expect(temporal.depends_on?.['temporal-schema']?.condition).toBe('service_completed_successfully');
    expect(argv(temporal.healthcheck?.test).join(' ')).toContain('operator cluster health');

    // The admin tools that set up the schema and the namespace are of the same server release.
    for (const name of ['temporal-schema', 'temporal-namespace']) {
      const tools = service(model, name);
      expect(tools.image).toMatch(/^temporalio\/admin-tools:/);
      expect(pinnedTag(tools.image).split('-')[0], name).toBe(version);
      expect(tools.restart ?? 'no').toBe('no');
    }
  });

  it('sets up the persistence and the visibility schema, each created, initialised, then upgraded', async () => {
    const model = await composeConfig();
    const schema = service(model, 'temporal-schema');
    expect(schema.depends_on?.['temporal-postgres']?.condition).toBe('service_healthy');
    // Compose v1 prints `$$` as written; the container's shell sees `$`.
    const script = argv(schema.entrypoint).join(' ').replaceAll('$$', '$');
    expect(argv(schema.entrypoint).slice(0, 2)).toEqual(['sh', '-ec']);
    // The database names the server image's config template defaults to (DBNAME, VISIBILITY_DBNAME).
    const temporalEnv = service(model, 'temporal').environment ?? {};
    const stores = [
      { db: temporalEnv.DBNAME ?? 'temporal', dir: 'postgresql/v12/temporal/versioned' },
      {
        db: temporalEnv.VISIBILITY_DBNAME ?? 'temporal_visibility',
        dir: 'postgresql/v12/visibility/versioned',
      },
    ];
    expect(script).toContain(
      'temporal-sql-tool --plugin $DB --ep $POSTGRES_SEEDS -p $DB_PORT -u $POSTGRES_USER',
    );
    for (const { db, dir } of stores) {
      const steps = [
        `--db ${db} create`,
        `--db ${db} setup-schema -v 0.0`,
        `--db ${db} update-schema -d /etc/temporal/schema/${dir}`,
      ];
      const at = steps.map((step) => script.indexOf(step));
      expect(
        at.every((i) => i >= 0),
        `${db}: ${steps.join(', ')}`,
      ).toBe(true);
      expect([...at].sort((a, b) => a - b)).toEqual(at);
    }
  });

  it('creates the namespace the workers use, then serves the UI on port 8233', async () => {
    const model = await composeConfig();
    const namespace = service(model, 'temporal-namespace');
    expect(namespace.depends_on?.temporal?.condition).toBe('service_healthy');
    expect(namespace.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
    const script = argv(namespace.entrypoint).join(' ');
    const wanted = service(model, 'worker').environment?.TEMPORAL_NAMESPACE;
    expect(script).toContain(`temporal operator namespace create -n ${wanted}`);

    const ui = service(model, 'temporal-ui');
    expect(ui.image).toMatch(/^temporalio\/ui:/);
    pinnedTag(ui.image);
    expect(ui.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(publishedPorts(ui)).toContainEqual({
      published: '8233',
      target: Number(ui.environment?.TEMPORAL_UI_PORT),
    });
  });

  it('gives the server our dynamic config, which keeps workflow ids as long as budget ids need', async () => {
    const temporal = service(await composeConfig(), 'temporal');
    const file = temporal.environment?.DYNAMIC_CONFIG_FILE_PATH ?? '';
    const mount = mounts(temporal).find((m) => m.target === file);
    expect(mount, `a mount at ${file}`).toBeDefined();
    expect(path.resolve(ROOT, mount!.source)).toBe(path.join(ROOT, 'deploy/temporal-dynamic-config.yaml'));
    expect(mount!.readOnly).toBe(true);
    const text = await readFile(path.join(ROOT, 'deploy/temporal-dynamic-config.yaml'), 'utf8');
    const maxId = /^limit\.maxIDLength:\n\s+- value: (\d+)$/m.exec(text)?.[1];
    expect(Number(maxId)).toBeGreaterThanOrEqual(MAX_WORKFLOW_ID_LENGTH);
  });
});

describe('the dev profile of docker-compose.yml', () => {
  it('runs the Temporal dev server with the search attributes the budget workflows set', async () => {
    const temporal = service(await composeConfig(), 'temporal-dev');
    expect(temporal.profiles).toEqual(['dev']);
    pinnedTag(temporal.image);
    const args = argv(temporal.command);
    expect(args.slice(0, 2)).toEqual(['server', 'start-dev']);
    expect(args[args.indexOf('--ip') + 1]).toBe('0.0.0.0');
    const flags = args.flatMap((arg, i) => (arg === '--search-attribute' ? [args[i + 1]] : []));
    expect(flags.sort()).toEqual(searchAttributeFlags().sort());
    const ports = publishedPorts(temporal);
    expect(ports).toContainEqual({ published: '7233', target: 7233 });
    expect(ports).toContainEqual({ published: '8233', target: 8233 });
    const dbFile = args[args.indexOf('--db-filename') + 1] ?? '';
    expect(mounts(temporal).some((m) => dbFile.startsWith(`${m.target}/`))).toBe(true);
  });

  it('starts worker-dev on the dev server without any part of the Temporal cluster', async () => {
    const model = await composeConfig();
    const started = closure(model, 'worker-dev');
    expect([...started].sort()).toEqual(
      ['litellm', 'postgres', 'redis', 'setup-dev', 'temporal-dev', 'worker-dev'].sort(),
    );
    for (const name of ['worker-dev', 'setup-dev']) {
      const svc = service(model, name);
      expect(svc.profiles, name).toEqual(['dev']);
      expect(svc.environment?.TEMPORAL_ADDRESS, name).toBe('temporal-dev:7233');
      // Otherwise the same configuration as the cluster's worker.
      const { TEMPORAL_ADDRESS: _dev, ...rest } = svc.environment ?? {};
      const { TEMPORAL_ADDRESS: _cluster, ...clusterRest } = service(model, 'worker').environment ?? {};
      expect(rest, name).toEqual(clusterRest);
    }
    expect(argv(service(model, 'worker-dev').command)).toEqual(['worker']);
    expect(service(model, 'worker-dev').depends_on?.['setup-dev']?.condition).toBe(
      'service_completed_successfully',
    );
  });
});

describe('LiteLLM in docker-compose.yml', () => {
  it('runs the LiteLLM release the project is tested against', async () => {
    const litellm = service(await composeConfig(), 'litellm');
    expect(litellm.image).toBe(`ghcr.io/berriai/litellm:v${LITELLM_VERSION}`);
  });

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

  it('prebuilds the workflow bundle in the build stage, so workers do not bundle at start-up', async () => {
    const all = await read();
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    // `npm run build` ends with the bundle step, which writes where the built worker looks.
    expect(pkg.scripts.build).toMatch(/&& tsx scripts\/build-workflow-bundle\.ts$/);
    const script = await readFile(path.join(ROOT, 'scripts/build-workflow-bundle.ts'), 'utf8');
    expect(script).toContain("new URL('../dist/workflow-bundle.js', import.meta.url)");
    const worker = await readFile(path.join(ROOT, 'src/worker.ts'), 'utf8');
    expect(worker).toContain("new URL('../workflow-bundle.js', import.meta.url)");
    // The build stage has the script before it builds, and the runtime stage takes dist/ from it.
    const build = all.findIndex((i) => i.keyword === 'RUN' && /\bnpm run build\b/.test(i.args));
    const copied = all.findIndex(
      (i) => i.keyword === 'COPY' && i.args.includes('scripts/build-workflow-bundle.ts'),
    );
    expect(copied).toBeGreaterThanOrEqual(0);
    expect(copied).toBeLessThan(build);
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
