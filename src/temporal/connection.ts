import { Client, Connection } from '@temporalio/client';
import {
  loadClientConfigProfile,
  toClientOptions,
  type ClientConfigProfile,
  type ClientConnectConfig,
} from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { inspect } from 'node:util';
import { ConfigError } from '../config.js';
import { diagnoseTransport } from './transport-diagnosis.js';

/** How the connection proves who we are: nothing, server TLS only, a client certificate, or an API key. */
export type TemporalAuth = 'none' | 'tls' | 'mtls' | 'api-key';

/** Where Temporal is, as `@temporalio/envconfig` resolves it (TEMPORAL_ADDRESS, profiles, TLS, API key). */
export interface TemporalTarget {
  readonly address: string;
  readonly namespace: string;
  readonly auth: TemporalAuth;
  /** Connection options for the client and the worker; holds the API key and the client key, so never log it. */
  readonly options: ClientConnectConfig['connectionOptions'];
}

export class TemporalUnreachableError extends Error {
  override readonly name = 'TemporalUnreachableError';
}

/** Temporal Cloud, a cluster or a local server: the variables that say where, for error messages. */
const WHERE =
  'set TEMPORAL_ADDRESS (host:port of the Temporal frontend, e.g. <namespace>.<account>.tmprl.cloud:7233 or ' +
  '127.0.0.1:7233), or TEMPORAL_PROFILE naming a profile with an address in the Temporal config file ' +
  '(TEMPORAL_CONFIG_FILE, default ~/.config/temporalio/temporal.toml)';

/**
 * Resolves the Temporal connection settings the way the Temporal CLI and SDKs do (`@temporalio/envconfig`): the
 * profile `TEMPORAL_PROFILE` (default `default`) of the TOML config file (`TEMPORAL_CONFIG_FILE`, default
 * `~/.config/temporalio/temporal.toml`), overridden by `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE` (default
 * `default`), `TEMPORAL_API_KEY`, `TEMPORAL_TLS`, `TEMPORAL_TLS_CLIENT_CERT_PATH`/`_KEY_PATH` (or `_DATA`),
 * `TEMPORAL_TLS_SERVER_CA_CERT_PATH`, `TEMPORAL_TLS_SERVER_NAME` and `TEMPORAL_GRPC_META_*`. An API key turns TLS
 * on unless `TEMPORAL_TLS=false`. There is no default address: a worker must be told where its server is.
 * Errors are {@link ConfigError}s that name the setting and never include the API key or a key file's contents.
 */
export function temporalTarget(env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  // An empty variable means unset, as everywhere else in our configuration (compose files set `VAR: ''`).
  const vars = Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== '',
    ),
  );
  let profile: ClientConfigProfile;
  try {
    profile = loadClientConfigProfile({ overrideEnvVars: vars });
  } catch (error) {
    throw configError(error, vars);
  }
  if (!profile.address) throw new ConfigError(`No Temporal address: ${WHERE}`);
  const cert = profile.tls?.clientCert;
  const key = profile.tls?.clientKey;
  if (!profile.tls?.disabled && (cert === undefined) !== (key === undefined)) {
    throw new ConfigError(
      'Invalid Temporal TLS settings: a client certificate needs its private key and the other way round; set ' +
        'both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH (or client_cert_path and ' +
        'client_key_path in the config file profile)',
    );
  }
  let config: ClientConnectConfig;
  try {
    config = toClientOptions(profile);
  } catch (error) {
    throw configError(error, vars);
  }
  const { tls, apiKey } = config.connectionOptions;
  const auth: TemporalAuth =
    apiKey !== undefined
      ? 'api-key'
      : typeof tls === 'object' && tls?.clientCertPair
        ? 'mtls'
        : tls
          ? 'tls'
          : 'none';
  const target: TemporalTarget = {
    address: profile.address,
    namespace: config.namespace ?? 'default',
    auth,
    options: config.connectionOptions,
  };
  // Whatever prints the target (a log line, an error's context) shows where and how, never the secrets.
  const safe = { address: target.address, namespace: target.namespace, auth };
  Object.defineProperties(target, {
    toJSON: { value: () => safe },
    [inspect.custom]: { value: () => safe },
  });
  return Object.freeze(target);
}

/** A one-line ConfigError for what envconfig threw: a missing profile, an unreadable file, bad TOML. */
function configError(error: unknown, vars: Record<string, string>): ConfigError {
  const code = (error as { code?: string }).code;
  const file = (error as { path?: string }).path;
  let message: string;
  if (/^Profile '.*' not found/.test((error as Error).message)) {
    message = `TEMPORAL_PROFILE: no profile "${vars.TEMPORAL_PROFILE}" in the Temporal config file; ${WHERE}`;
  } else if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
    message =
      `Cannot read ${file ?? 'a file'} named by the Temporal settings (TEMPORAL_TLS_*_PATH or the config ` +
      `file's *_path): ${code}`;
  } else {
    // TOML syntax errors say where, not what the file holds.
    const detail = (error as Error).message.split('\n', 1)[0] ?? '';
    message = `The Temporal config file (TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml) cannot be read: ${detail}`;
  }
  return new ConfigError(`Invalid configuration: ${message}`, { cause: error });
}

/**
 * A one-line error for a failed connection: what the transport says is wrong (TLS required, an untrusted
 * certificate, a client certificate required...) and the settings to change, or where to look when it cannot tell.
 */
async function unreachable(target: TemporalTarget, error: unknown): Promise<TemporalUnreachableError> {
  const advice =
    (await diagnoseTransport(target).catch(() => undefined)) ??
    'is the server running? Check TEMPORAL_ADDRESS, and TEMPORAL_API_KEY or TEMPORAL_TLS_* for a cluster or ' +
      'Temporal Cloud';
  return new TemporalUnreachableError(
    `Cannot reach Temporal at ${target.address} (namespace ${target.namespace}, auth ${target.auth}): ${advice}`,
    { cause: error },
  );
}

/**
 * A client connection, failing with a clear message when the server is down: a refused connection fails at once;
 * a server that accepts but does not answer gets 10 s, enough for a busy server on a busy host.
 */
export async function connectClient(
  target: TemporalTarget,
): Promise<{ client: Client; connection: Connection }> {
  try {
    const connection = await Connection.connect({
      ...target.options,
      address: target.address,
      connectTimeout: 10_000,
    });
    return { client: new Client({ connection, namespace: target.namespace }), connection };
  } catch (error) {
    throw await unreachable(target, error);
  }
}

/** A worker connection. */
export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ ...target.options, address: target.address });
  } catch (error) {
    throw await unreachable(target, error);
  }
}
