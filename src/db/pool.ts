import pg from 'pg';

/**
 * A connection pool that survives PostgreSQL going away. pg-pool listens for errors on idle clients only: a
 * connection that dies while checked out (a reset in its transaction when the server restarts) emits `error` on
 * its client with no listener, and that kills the process. Every client gets a listener for its whole life; the
 * query in flight fails with the same error (the activity retries it), and the pool discards the dead client
 * when it is released. `onError` hears about both kinds (never with a connection string in the message).
 */
export function createPool(config: pg.PoolConfig, onError: (error: Error) => void): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

/**
 * Opens up to `connections` of the pool's connections now (each logged in and checked with a round trip), then
 * hands them back idle. pg-pool closes a connection idle for `idleTimeoutMillis` (10 s by default), so a worker
 * whose last query was minutes ago meets a boundary with no connection at all; a login (SCRAM) costs a round
 * trip and CPU at the very moment a herd of resets wants them.
 */
export async function warmPool(pool: pg.Pool, connections: number): Promise<void> {
  // Never more than the pool can open beside the connections checked out now: the ones taken here are held until
  // all are open, and asking for more would wait for a release that only this call could make.
  const checkedOut = pool.totalCount - pool.idleCount;
  const count = Math.min(connections, (pool.options.max ?? 10) - checkedOut);
  const clients = await Promise.allSettled(
    Array.from({ length: Math.max(0, count) }, async () => {
      const client = await pool.connect();
      try {
        await client.query('SELECT 1');
      } catch (error) {
        client.release(error as Error);
        throw error;
      }
      return client;
    }),
  );
  for (const c of clients) if (c.status === 'fulfilled') c.value.release();
}
