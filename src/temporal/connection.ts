import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';

/** Where Temporal is, as `@temporalio/envconfig` resolves it (TEMPORAL_ADDRESS, profiles, TLS, API key). */
export interface TemporalTarget {
  readonly address: string;
  readonly namespace: string;
  readonly options: ReturnType<typeof loadClientConnectConfig>['connectionOptions'];
}

export class TemporalUnreachableError extends Error {
  override readonly name = 'TemporalUnreachableError';
}

/**
 * Resolves the Temporal connection settings from the environment and the Temporal config file
 * (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_TLS_*`, `TEMPORAL_API_KEY`, `TEMPORAL_PROFILE`);
 * defaults to a local server at 127.0.0.1:7233 and the `default` namespace.
 */
export function temporalTarget(env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  const config = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  return {
    address: config.connectionOptions.address ?? '127.0.0.1:7233',
    namespace: config.namespace ?? 'default',
    options: config.connectionOptions,
  };
}

function unreachable(target: TemporalTarget, error: unknown): TemporalUnreachableError {
  return new TemporalUnreachableError(
    `Cannot reach Temporal at ${target.address}: is the server running? Check TEMPORAL_ADDRESS ` +
      '(and TLS / API key settings for a cluster or Temporal Cloud)',
    { cause: error },
  );
}

/** A client connection, failing fast with a clear message when the server is down. */
export async function connectClient(
  target: TemporalTarget,
): Promise<{ client: Client; connection: Connection }> {
  try {
    const connection = await Connection.connect({
      ...target.options,
      address: target.address,
      connectTimeout: 5_000,
    });
    return { client: new Client({ connection, namespace: target.namespace }), connection };
  } catch (error) {
    throw unreachable(target, error);
  }
}

/** A worker connection. */
export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ ...target.options, address: target.address });
  } catch (error) {
    throw unreachable(target, error);
  }
}
