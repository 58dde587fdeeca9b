import net from 'node:net';

/**
 * A TCP port that was free on 127.0.0.1 a moment ago. The worker gives one to the SDK's Prometheus exporter, which
 * it serves again on METRICS_PORT; development provisioning and tests use it for the servers they start.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
