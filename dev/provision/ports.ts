import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Provisioning's port helpers in one place (freePort lives in the runtime: the worker needs it too). */
export { freePort } from '../../src/free-port.js';

/** Resolves once something accepts TCP connections on host:port; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`Nothing answered on ${host}:${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * A TCP port in [low, high] that was free on 127.0.0.1 a moment ago, for servers that cannot take any port (the
 * kernel's ephemeral range starts at 32768, which `freePort` draws from).
 */
export async function freePortBetween(low: number, high: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.unref();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`No free port between ${low} and ${high} on 127.0.0.1`);
}
