import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { temporalTarget } from '../../src/temporal/connection.js';

/**
 * The Temporal connection settings as `@temporalio/envconfig` resolves them from the environment and the TOML
 * config file: what the worker and budgetctl hand to `Connection.connect` / `NativeConnection.connect`. Every
 * environment here is complete (no HOME unless given), so a developer's own ~/.config/temporalio/temporal.toml
 * cannot change the outcome.
 */

const API_KEY = 'tmprl-api-key-0123456789abcdef-SECRET';
const CLOUD = 'billing.a1b2c.tmprl.cloud:7233';
let dir: string;
let certPath: string;
let keyPath: string;
let caPath: string;
let configFile: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'budget-lifecycle-envconfig-'));
  // envconfig reads the files as bytes; it does not parse certificates, so any content stands for one here.
  certPath = path.join(dir, 'client.pem');
  keyPath = path.join(dir, 'client.key');
  caPath = path.join(dir, 'ca.pem');
  await writeFile(certPath, 'client certificate bytes');
  await writeFile(keyPath, 'client private key bytes');
  await writeFile(caPath, 'server CA bytes');
  configFile = path.join(dir, 'temporal.toml');
  await writeFile(
    configFile,
    [
      '[profile.default]',
      'address = "127.0.0.1:7233"',
      '',
      '[profile.cloud]',
      `address = "${CLOUD}"`,
      'namespace = "billing.a1b2c"',
      `api_key = "${API_KEY}"`,
      '',
      '[profile.mtls]',
      'address = "temporal.internal:7233"',
      'namespace = "budgets"',
      '[profile.mtls.tls]',
      `client_cert_path = "${certPath}"`,
      `client_key_path = "${keyPath}"`,
      `server_ca_cert_path = "${caPath}"`,
      'server_name = "temporal.internal"',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The target can be printed (JSON, util.inspect) without its secrets. */
function expectPrintsSafely(target: ReturnType<typeof temporalTarget>, ...secrets: string[]) {
  for (const printed of [
    JSON.stringify(target),
    inspect(target, { depth: 10 }),
    String(JSON.stringify({ target })),
  ]) {
    for (const secret of secrets) expect(printed).not.toContain(secret);
    expect(printed).toContain(target.address);
  }
}

describe('temporalTarget', () => {
  it('connects to Temporal Cloud with an API key: TLS on, the key sent, never printed', () => {
    const target = temporalTarget({
      TEMPORAL_ADDRESS: CLOUD,
      TEMPORAL_NAMESPACE: 'billing.a1b2c',
      TEMPORAL_API_KEY: API_KEY,
    });
    expect(target).toMatchObject({ address: CLOUD, namespace: 'billing.a1b2c', auth: 'api-key' });
    expect(target.options).toMatchObject({ address: CLOUD, apiKey: API_KEY, tls: true });
    expect(JSON.parse(JSON.stringify(target))).toEqual({
      address: CLOUD,
      namespace: 'billing.a1b2c',
      auth: 'api-key',
    });
    expectPrintsSafely(target, API_KEY);
  });

  it('connects with mTLS from certificate and key files', () => {
    const target = temporalTarget({
      TEMPORAL_ADDRESS: CLOUD,
      TEMPORAL_NAMESPACE: 'billing.a1b2c',
      TEMPORAL_TLS_CLIENT_CERT_PATH: certPath,
      TEMPORAL_TLS_CLIENT_KEY_PATH: keyPath,
    });
    expect(target.auth).toBe('mtls');
    expect(target.options.apiKey).toBeUndefined();
    const tls = target.options.tls;
    if (typeof tls !== 'object' || !tls) throw new Error(`expected a TLS config, got ${String(tls)}`);
    expect(Buffer.from(tls.clientCertPair!.crt).toString()).toBe('client certificate bytes');
    expect(Buffer.from(tls.clientCertPair!.key).toString()).toBe('client private key bytes');
    expectPrintsSafely(target, 'client private key bytes');
  });

  it('reads profiles from the TOML config file, TEMPORAL_PROFILE picking one and variables overriding it', () => {
    const base = { TEMPORAL_CONFIG_FILE: configFile };
    expect(temporalTarget(base)).toMatchObject({
      address: '127.0.0.1:7233',
      namespace: 'default',
      auth: 'none',
    });

    const cloud = temporalTarget({ ...base, TEMPORAL_PROFILE: 'cloud' });
    expect(cloud).toMatchObject({ address: CLOUD, namespace: 'billing.a1b2c', auth: 'api-key' });
    expect(cloud.options).toMatchObject({ apiKey: API_KEY, tls: true });
    expectPrintsSafely(cloud, API_KEY);

    const mtls = temporalTarget({ ...base, TEMPORAL_PROFILE: 'mtls', TEMPORAL_NAMESPACE: 'budgets-eu' });
    expect(mtls).toMatchObject({ address: 'temporal.internal:7233', namespace: 'budgets-eu', auth: 'mtls' });
    const tls = mtls.options.tls;
    if (typeof tls !== 'object' || !tls) throw new Error('expected a TLS config');
    expect(tls.serverNameOverride).toBe('temporal.internal');
    expect(Buffer.from(tls.serverRootCACertificate!).toString()).toBe('server CA bytes');
  });

  it('finds the config file at its default location, ~/.config/temporalio/temporal.toml', async () => {
    const xdg = path.join(dir, 'xdg');
    await mkdir(path.join(xdg, 'temporalio'), { recursive: true });
    await writeFile(
      path.join(xdg, 'temporalio', 'temporal.toml'),
      '[profile.default]\naddress = "tctl.example:7233"\n',
    );
    expect(temporalTarget({ XDG_CONFIG_HOME: xdg }).address).toBe('tctl.example:7233');
    await mkdir(path.join(dir, 'home', '.config'), { recursive: true });
    await symlink(path.join(xdg, 'temporalio'), path.join(dir, 'home', '.config', 'temporalio'));
    expect(temporalTarget({ HOME: path.join(dir, 'home') }).address).toBe('tctl.example:7233');
  });

  it('treats empty variables as unset', () => {
    const target = temporalTarget({
      TEMPORAL_ADDRESS: 'temporal:7233',
      TEMPORAL_NAMESPACE: '',
      TEMPORAL_API_KEY: '',
      TEMPORAL_TLS_CLIENT_CERT_PATH: '',
    });
    expect(target).toMatchObject({ address: 'temporal:7233', namespace: 'default', auth: 'none' });
    expect(target.options.apiKey).toBeUndefined();
    expect(target.options.tls).toBeUndefined();
  });

  it('turns TLS off for an API key only when TEMPORAL_TLS=false says so', () => {
    const target = temporalTarget({
      TEMPORAL_ADDRESS: 'proxy.internal:7233',
      TEMPORAL_API_KEY: API_KEY,
      TEMPORAL_TLS: 'false',
    });
    expect(target.auth).toBe('api-key');
    expect(target.options.tls).toBe(false);
  });

  it('assumes no server: without an address it says what to set', () => {
    expect(() => temporalTarget({})).toThrow(ConfigError);
    expect(() => temporalTarget({ TEMPORAL_NAMESPACE: 'ns', TEMPORAL_API_KEY: API_KEY })).toThrow(
      /No Temporal address: set TEMPORAL_ADDRESS/,
    );
  });

  it('fails with one line that names the setting, and never the key', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: 'staging' },
        /TEMPORAL_PROFILE: no profile "staging"/,
      ],
      [
        { TEMPORAL_ADDRESS: CLOUD, TEMPORAL_TLS_CLIENT_CERT_PATH: certPath },
        /set both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/,
      ],
      [
        { TEMPORAL_ADDRESS: CLOUD, TEMPORAL_TLS_CLIENT_KEY_PATH: keyPath },
        /set both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/,
      ],
      [
        {
          TEMPORAL_ADDRESS: CLOUD,
          TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'missing.pem'),
          TEMPORAL_TLS_CLIENT_KEY_PATH: keyPath,
        },
        /Cannot read .*missing\.pem named by the Temporal settings .*ENOENT/,
      ],
      [{ TEMPORAL_CONFIG_FILE: certPath }, /Temporal config file .* cannot be read/],
    ];
    for (const [env, message] of cases) {
      let caught: unknown;
      try {
        temporalTarget({ ...env, TEMPORAL_API_KEY: API_KEY });
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(env)).toBeInstanceOf(ConfigError);
      const text = (caught as Error).message;
      expect(text).toMatch(message);
      expect(text.split('\n')).toHaveLength(1);
      expect(text).not.toContain(API_KEY);
    }
  });
});
