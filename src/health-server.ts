import http from 'node:http';

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `/healthz` (the process is up), `/readyz` (the worker polls and the database answers) and `/metrics`
 * (the Temporal runtime's Prometheus exporter, which also carries our metrics, proxied from its loopback port).
 */
export async function createHealthServer(options: {
  port: number;
  host?: string;
  ready: () => Promise<boolean>;
  metricsUrl?: string;
}): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return send(200, 'ok\n');
    if (path === '/readyz') {
      options.ready().then(
        (ok) => send(ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n'),
        () => send(503, 'not ready\n'),
      );
      return;
    }
    if (path === '/metrics' && options.metricsUrl) {
      fetch(options.metricsUrl).then(
        async (upstream) =>
          send(upstream.status, await upstream.text(), upstream.headers.get('content-type') ?? undefined),
        () => send(503, 'metrics exporter unavailable\n'),
      );
      return;
    }
    send(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
