// The HTTP listener behind `--metrics HOST:PORT` (strata mount/recover and
// strata archive serve): GET /metrics answers a prom-client registry in
// Prometheus' text format; anything else gets 404 or 405. Neutral ground: the
// primary's daemon and the archive server both use it, and it imports nothing
// of either.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsListener {
  /** The address it listens on ("host:port", "[v6]:port"). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** "host:port", "[v6]:port" or ":port" (all interfaces); throws a message naming the option. */
export function parseMetricsAddress(v: string, option = '--metrics'): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${option} ${JSON.stringify(v)}: expected HOST:PORT, [IPv6]:PORT or :PORT`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/**
 * Listens on host:port; resolves once it accepts connections. A port in use,
 * an address not on this host or a privileged port rejects with a message
 * that names the address (the caller refuses to start).
 */
export function serveMetrics(registry: Registry, host: string, port: number, onError?: (err: Error) => void): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => void answer(registry, req, res, onError));
  // A scrape is small and quick: slow or idle clients must not hold sockets.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the address is in use'
        : err.code === 'EADDRNOTAVAIL' ? 'no such address on this host'
          : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new Error(`metrics: cannot listen on ${host}:${port}: ${why}`));
    };
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      server.on('error', (err: Error) => onError?.(err));
      // Never keeps the process alive by itself.
      server.unref();
      const a = server.address() as AddressInfo;
      resolve({
        address: a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
        port: a.port,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}

async function answer(registry: Registry, req: IncomingMessage, res: ServerResponse, onError?: (err: Error) => void): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('strata: metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('GET /metrics\n');
    return;
  }
  try {
    const body = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    onError?.(err as Error);
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`strata: metrics failed: ${(err as Error).message}\n`);
  }
}
