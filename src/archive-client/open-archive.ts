// Opens an ArchiveClient for an archive URL:
//   file:///abs/dir        the archive store in a worker thread of this process
//   strata://host:port     a `strata archive serve` over HTTP/2 cleartext (h2c)
//   stratas://host:port    the same over TLS (tlsCa: a CA to trust besides the system's)
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArchiveError, type ArchiveClient, type ArchiveClientOptions } from '../protocol/archive-api.js';
import { WorkerArchiveClient } from '../archive/worker-client.js';
import { RemoteArchiveClient } from './remote-client.js';

const DEFAULT_TIMEOUT_MS = 10_000;

export async function openArchiveClient(url: string, opts: ArchiveClientOptions = {}): Promise<ArchiveClient> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ArchiveError('EBADREQ', `bad archive URL ${JSON.stringify(url)}: expected file:///DIR, strata://HOST:PORT or stratas://HOST:PORT`);
  }
  if (u.protocol === 'file:') {
    if (u.host !== '' && u.host !== 'localhost') throw new ArchiveError('EBADREQ', `file:// archive URL must name a local absolute directory, got ${url}`);
    const dir = fileURLToPath(u);
    if (!isAbsolute(dir)) throw new ArchiveError('EBADREQ', `file:// archive URL must name an absolute directory, got ${url}`);
    return WorkerArchiveClient.open(dir, { finishRebuilds: true });
  }
  if (u.protocol === 'strata:' || u.protocol === 'stratas:') {
    if (u.hostname === '' || u.port === '' || (u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.username !== '') {
      throw new ArchiveError('EBADREQ', `remote archive URL must be ${u.protocol}//HOST:PORT, got ${url}`);
    }
    const tls = u.protocol === 'stratas:';
    const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new ArchiveError('EBADREQ', 'requestTimeoutMs must be positive');
    const token = opts.tokenFile ? (await readFile(opts.tokenFile, 'utf8')).trim() : undefined;
    const ca = tls && opts.tlsCa ? await readFile(opts.tlsCa) : undefined;
    return new RemoteArchiveClient({
      url,
      authority: `${tls ? 'https' : 'http'}://${u.host}`,
      timeoutMs,
      ...(token !== undefined ? { token } : {}),
      ...(ca ? { ca } : {}),
    });
  }
  throw new ArchiveError('EBADREQ', `unsupported archive URL ${url}: expected file:///DIR, strata://HOST:PORT or stratas://HOST:PORT`);
}
