// Opens a SnapshotClient for an archive URL (docs/snapshots.md):
//   file:///abs/dir      the snapshot engine in a worker thread of this process,
//                        with the targets the archive's catalog knows
//   strata(s)://host:port  the snapshot routes of `strata archive serve`
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArchiveError, type ArchiveClientOptions } from '../protocol/archive-api.js';
import type {
  RollbackOptions,
  AlertDecision, GcResult, IncomingAlert, RollbackResult, SnapshotChoice, SnapshotClient, SnapshotInfo, TargetInfo,
} from '../protocol/snapshot-api.js';
import { WorkerSnapshotClient } from '../archive/snapshot-worker-client.js';
import type { EngineLog } from '../archive/snapshots.js';
import { checkVolume } from '../protocol/wire-checks.js';
import { openArchiveClient } from './open-archive.js';
import { RemoteArchiveClient } from './remote-client.js';

/** Snapshot operations (verify, GC, a rollback) can take minutes on a large volume. */
const DEFAULT_TIMEOUT_MS = 600_000;

const QUIET: EngineLog = { info() {}, warn() {}, error() {} };

export interface SnapshotClientOptions extends ArchiveClientOptions {
  /** Where the in-process engine of a file:// archive logs (default: nowhere). */
  log?: EngineLog;
  /**
   * file://: a rollback returns once decided and leaves its rebuild to the
   * archive workers of the processes that use the archive (the next one to
   * ship or open it finishes it: src/archive/worker.ts). Default: a file://
   * rollback rebuilds before it returns. A server always rebuilds in the background.
   */
  rebuildInBackground?: boolean;
}

export async function openSnapshotClient(url: string, opts: SnapshotClientOptions = {}): Promise<SnapshotClient> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ArchiveError('EBADREQ', `bad archive URL ${JSON.stringify(url)}: expected file:///DIR, strata://HOST:PORT or stratas://HOST:PORT`);
  }
  if (u.protocol === 'file:') {
    const dir = fileURLToPath(u);
    if (!isAbsolute(dir) || (u.host !== '' && u.host !== 'localhost')) throw new ArchiveError('EBADREQ', `file:// archive URL must name a local absolute directory, got ${url}`);
    return WorkerSnapshotClient.open({ dataDir: dir, tickMs: 0, ...(opts.rebuildInBackground === true ? { rebuildInline: false } : {}) }, opts.log ?? QUIET);
  }
  const client = await openArchiveClient(url, { ...opts, requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS });
  if (!(client instanceof RemoteArchiveClient)) throw new ArchiveError('EBADREQ', `unsupported archive URL ${url}`);
  return new RemoteSnapshotClient(client);
}

const enc = encodeURIComponent;

class RemoteSnapshotClient implements SnapshotClient {
  readonly url: string;
  constructor(private readonly c: RemoteArchiveClient) {
    this.url = c.url;
  }

  targets(): Promise<TargetInfo[]> { return this.c.requestJson('GET', '/v1/targets'); }
  createSnapshot(volume: string, opts: { reason?: string } = {}): Promise<SnapshotInfo> {
    return this.c.requestJson('POST', `/v1/volumes/${checkVolume(volume)}/snapshots`, opts);
  }
  listSnapshots(filter: { volume?: string; condition?: string } = {}): Promise<SnapshotInfo[]> {
    const q = new URLSearchParams();
    if (filter.volume !== undefined) q.set('volume', filter.volume);
    if (filter.condition !== undefined) q.set('condition', filter.condition);
    return this.c.requestJson('GET', `/v1/snapshots${q.size > 0 ? `?${q}` : ''}`);
  }
  getSnapshot(id: string): Promise<SnapshotInfo> { return this.c.requestJson('GET', `/v1/snapshots/${enc(id)}`); }
  deleteSnapshot(id: string): Promise<SnapshotInfo> { return this.c.requestJson('DELETE', `/v1/snapshots/${enc(id)}`); }
  verifySnapshot(id: string): Promise<SnapshotInfo> { return this.c.requestJson('POST', `/v1/snapshots/${enc(id)}/verify`); }
  chooseSnapshot(volume: string, opts: { condition: string; before?: string }): Promise<SnapshotChoice> {
    const q = new URLSearchParams({ condition: opts.condition });
    if (opts.before !== undefined) q.set('before', opts.before);
    return this.c.requestJson('GET', `/v1/volumes/${checkVolume(volume)}/snapshot-choice?${q}`);
  }
  rollback(volume: string, snapshotId: string, opts: RollbackOptions = {}): Promise<RollbackResult> {
    return this.c.requestJson('POST', `/v1/volumes/${checkVolume(volume)}/rollback`, { snapshot: snapshotId, ...opts });
  }
  raise(volume: string, alert: IncomingAlert): Promise<AlertDecision> {
    return this.c.requestJson('POST', `/v1/volumes/${checkVolume(volume)}/conditions`, alert);
  }
  alerts(limit = 100): Promise<AlertDecision[]> { return this.c.requestJson('GET', `/v1/alerts?limit=${Math.max(1, Math.floor(limit))}`); }
  gc(): Promise<GcResult> { return this.c.requestJson('POST', '/v1/gc'); }
  close(): Promise<void> { return this.c.close(); }
}
