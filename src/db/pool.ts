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
