import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../dev/provision/ports.js';
import { ensureLiteLLMProxy } from '../../dev/provision/litellm-proxy.js';

const ENGINE = fileURLToPath(new URL('./prisma-wasm-engine.mjs', import.meta.url));

/** The model the suite calls: answered by LiteLLM's `mock_response`, priced so one or two requests use a budget up. */
export const MODEL = 'budget-test-model';

export interface ProxyOptions {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** LiteLLM's Redis key namespace (`cache_params.namespace`); the worker gets it as LITELLM_REDIS_NAMESPACE. */
  readonly namespace: string;
  /** `general_settings.proxy_batch_write_at`: seconds between spend writes (LiteLLM adds 0-5 s of its own). */
  readonly batchWriteSeconds: number;
}

export interface RunningProxy {
  readonly url: string;
  readonly masterKey: string;
  /** The proxy's output so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts the real LiteLLM proxy (`litellm --config`) on the given PostgreSQL database, which must already hold
 * LiteLLM's schema, and Redis, with LiteLLM's own budget reset job off, and waits until it answers with its
 * database connected. Its Prisma queries run in the WebAssembly engine (prisma-wasm-engine.mjs).
 */
export async function startLiteLLMProxy(options: ProxyOptions): Promise<RunningProxy> {
  const install = await ensureLiteLLMProxy();
  const dir = await mkdtemp(path.join(tmpdir(), 'litellm-proxy-'));
  const port = await freePort();
  const masterKey = `sk-master-${randomBytes(12).toString('hex')}`;
  const redis = new URL(options.redisUrl);
  const config = {
    model_list: [
      {
        model_name: MODEL,
        litellm_params: {
          model: `openai/${MODEL}`,
          api_key: 'unused',
          mock_response: 'ok',
          input_cost_per_token: 0.001,
          output_cost_per_token: 0.001,
        },
        // Small, so the output a request may still produce (reserved before it runs) stays small.
        model_info: { max_tokens: 16, max_output_tokens: 16, max_input_tokens: 4096 },
      },
    ],
    litellm_settings: {
      cache: true,
      cache_params: {
        type: 'redis',
        host: redis.hostname,
        port: Number(redis.port),
        namespace: options.namespace,
        // Redis for budgets and the proxy's shared state, never for answers: every request must be charged.
        supported_call_types: [],
      },
    },
    general_settings: {
      master_key: masterKey,
      disable_reset_budget: true,
      disable_prisma_schema_update: true,
      proxy_batch_write_at: options.batchWriteSeconds,
    },
  };
  const configPath = path.join(dir, 'config.json');
  await writeFile(configPath, JSON.stringify(config, null, 2)); // YAML is a superset of JSON
  let output = '';
  const child: ChildProcess = spawn(
    install.litellm,
    ['--config', configPath, '--host', '127.0.0.1', '--port', String(port), '--num_workers', '1'],
    {
      cwd: dir,
      env: {
        PATH: `${install.binDir}${path.delimiter}${process.env.PATH ?? ''}`,
        HOME: process.env.HOME,
        DATABASE_URL: options.databaseUrl,
        PRISMA_QUERY_ENGINE_BINARY: ENGINE,
        PRISMA_WASM_MODULES: install.npmDir,
        DISABLE_SCHEMA_UPDATE: 'true',
        LITELLM_LOCAL_MODEL_COST_MAP: 'True',
        LITELLM_LOG: 'ERROR',
        PYTHONUNBUFFERED: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-200_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
      if (!killed) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(url, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, masterKey, log: () => output, stop };
}

/** Start-up (Python imports, Prisma connect) takes tens of seconds on two busy cores. */
const READY_LIMIT_MS = 240_000;

async function waitReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + READY_LIMIT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the LiteLLM proxy exited during start-up:\n${log().slice(-5_000)}`);
    }
    const body = await fetch(`${url}/health/readiness`)
      .then(async (r) => (r.ok ? ((await r.json()) as { db?: string }) : undefined))
      .catch(() => undefined);
    if (body?.db === 'connected') return;
    if (Date.now() > deadline) {
      throw new Error(`the LiteLLM proxy was not ready within ${READY_LIMIT_MS} ms:\n${log().slice(-5_000)}`);
    }
    await sleep(500);
  }
}
