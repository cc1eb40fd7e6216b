// `strata archive serve`: the archive server as a foreground process (for
// systemd or a terminal). Prints one JSON line {"listening": "host:port"} on
// stdout once it accepts connections; logs JSON lines on stderr. SIGTERM or
// SIGINT: stop accepting, let requests in flight finish (bounded), close the
// store, exit 0.
import { mkdir, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ArchiveServer } from '../archive/server.js';
import { loadToken } from '../archive/server-auth.js';
import { createLogger, type Logger } from '../log/logger.js';

export interface ArchiveServeOptions {
  data: string;
  listen: string;
  tokenFile: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
  /** Seconds in-flight requests get to finish at shutdown. */
  shutdownGrace?: number;
}

/** "host:port", "[v6]:port" or ":port" (all interfaces). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--listen ${JSON.stringify(v)}: expected HOST:PORT, [IPv6]:PORT or :PORT`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function formatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export async function archiveServeCommand(o: ArchiveServeOptions): Promise<number> {
  let log: Logger;
  try {
    log = createLogger({ name: 'strata-archive', ...(o.logLevel ? { level: o.logLevel } : {}) });
  } catch (err) {
    process.stderr.write(`strata archive serve: ${(err as Error).message}\n`);
    return 1;
  }
  let server: ArchiveServer;
  try {
    const { host, port } = parseListen(o.listen);
    if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together');
    const auth = await loadToken(resolve(o.tokenFile), (msg) => log.warn(msg));
    const tls = o.tlsCert && o.tlsKey ? { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey) } : undefined;
    const dataDir = resolve(o.data);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    server = await ArchiveServer.open({ dataDir, auth, log, ...(tls ? { tls } : {}) });
    const addr = await server.listen(host, port);
    const listening = formatAddress(addr.address, addr.port);
    log.info({ listening, dataDir, tls: tls !== undefined }, 'archive server ready');
    process.stdout.write(`${JSON.stringify({ listening })}\n`);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'archive server failed to start');
    process.stderr.write(`strata archive serve: ${(err as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((done) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      log.info({ signal }, 'shutting down');
      server.close((o.shutdownGrace ?? 10) * 1000).then(done, (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        done();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  log.info('archive server stopped');
  return 0;
}
