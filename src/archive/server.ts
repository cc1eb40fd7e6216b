// The archive server (`strata archive serve`): the ArchiveClient API over
// HTTP/2, backed by the archive store running in a worker thread.
//
// Why HTTP/2: each request is its own stream, multiplexed on one connection
// with per-stream flow control, so an on-demand fetch during a recovery never
// waits behind a large shipping batch, and a slow reader (or a server that
// is not reading yet) pushes back on the sender for free. TLS comes with ALPN.
// We write no framing of our own beyond the record frames of a ship body.
//
// Routes (docs/archive-protocol.md): versioned paths under /v1; JSON answers;
// errors as `{code, message}` with a status from STATUS_OF. Every input is
// bounded (body size while it streams, headers, session memory, time, streams)
// and validated before it reaches the store; no request can crash the process.
import http2, { constants, type Http2Session, type Http2Server, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log/logger.js';
import { ArchiveError } from '../protocol/archive-api.js';
import { encodeRawBlocks, type DirImage } from '../protocol/images.js';
import type { TokenCheck } from './server-auth.js';
import { drained, Gate, HttpError, PROTOCOL_HEADER, PROTOCOL_VERSION, readBody, sendBytes, sendError, sendParts, sendJson, STATUS_OF } from './server-http.js';
import { WorkerArchiveClient } from './worker-client.js';
import { WorkerSnapshotClient } from './snapshot-worker-client.js';
import { parseAlert } from '../alerts/alertmanager.js';
import { badRollbackOptionsReason, isSnapshotId, type RollbackOptions } from '../protocol/snapshot-api.js';
import { checkBlockCount, checkDepth, checkEpoch, checkId, checkLength, checkOffset, checkOptionalName, checkVolume, LIMITS, toWireError } from '../protocol/wire-checks.js';
import { join } from 'node:path';
import { isArchiveError } from '../protocol/archive-api.js';
import { LeaseTable } from './leases.js';
import {
  badFenceOptionsReason, badReleaseReason, badRenewalReason, describeHolder, type FenceOptions, type LeaseHolder, type LeaseRelease, type LeaseRenewal,
  type TakeoverInfo, type VolumeLease,
} from '../protocol/leases.js';
import type { VolumeState } from '../protocol/images.js';

export const SERVER_LIMITS = {
  ...LIMITS,
  /** Any body other than a ship batch. */
  maxSmallBodyBytes: 64 * 1024,
  /** Header block a peer may send (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListBytes: 16 * 1024,
  maxHeaderPairs: 64,
  /** Streams at once per connection. */
  maxConcurrentStreams: 128,
  /** nghttp2's memory per session, MiB (beyond it new streams are refused). */
  maxSessionMemoryMiB: 64,
  /** A request with no progress (no bytes in or out) for this long is cancelled. */
  streamIdleMs: 60_000,
  /** A connection with no activity for this long is closed. */
  sessionIdleMs: 300_000,
  /** Ship batches applied or being read at once (bounds memory to ~N x 64 MiB); more wait, unread. */
  activeShips: 4,
  queuedShips: 256,
  /** Per-stream receive window: a ship batch flows without a round trip per 64 KiB. */
  streamWindowBytes: 1024 * 1024,
  connectionWindowBytes: 16 * 1024 * 1024,
} as const;

export interface ArchiveServerOptions {
  dataDir: string;
  auth: TokenCheck;
  log: Logger;
  tls?: { cert: Buffer; key: Buffer };
  /** The snapshot engine (targets, catalog, alerts), closed with the server; default: one with the targets the catalog knows. */
  snapshots?: WorkerSnapshotClient;
}

/** What the server asks of the takeover supervisor (src/archive/takeover.ts), when there is one. */
export interface TakeoverHooks {
  /** The holder is this host's own takeover mount. */
  isTakeover(h: LeaseHolder): boolean;
  info(volume: string): TakeoverInfo | null;
  /** Drains and releases the takeover mount of `volume` (`strata release` on it); false when there is none serving. */
  release(volume: string): Promise<boolean>;
}

/** How long a volume's epoch, as this server last read it, is trusted for a renewal (fences through this server update it at once). */
const EPOCH_CACHE_MS = 5000;

interface Route {
  volume?: string;
  id?: string;
  kind: 'hello' | 'volume' | 'journal' | 'fence' | 'dir' | 'deep' | 'tiers' | 'data' | 'blocks' | 'raw' | 'lease' | 'lease-release' | 'release' | 'leases'
    | 'targets' | 'snapshots' | 'snapshot' | 'snapshot-verify' | 'alerts' | 'gc' | 'vol-snapshots' | 'snapshot-choice' | 'rollback' | 'conditions';
  snapshot?: string;
  query: URLSearchParams;
}

export class ArchiveServer {
  private readonly server: Http2Server | Http2SecureServer;
  private readonly sessions = new Set<Http2Session>();
  private readonly ships = new Gate(SERVER_LIMITS.activeShips, SERVER_LIMITS.queuedShips);
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  /** The lease of every volume (docs/takeover.md). */
  readonly leases: LeaseTable;
  private takeover: TakeoverHooks | null = null;
  private readonly epochCache = new Map<string, { epoch: number; at: number }>();
  /** Fences and renewals of one volume run one at a time. */
  private readonly volumeLocks = new Map<string, Promise<unknown>>();
  private leaseTimer: NodeJS.Timeout | null = null;

  private constructor(private readonly store: WorkerArchiveClient, private readonly opts: ArchiveServerOptions) {
    this.leases = new LeaseTable({ file: join(opts.dataDir, 'leases.json'), log: opts.log.child({ component: 'leases' }), isTakeover: (h) => this.takeover?.isTakeover(h) ?? false });
    this.leaseTimer = setInterval(() => this.leases.tick(), 500);
    this.leaseTimer.unref();
    const settings: http2.Settings = {
      maxConcurrentStreams: SERVER_LIMITS.maxConcurrentStreams,
      maxHeaderListSize: SERVER_LIMITS.maxHeaderListBytes,
      initialWindowSize: SERVER_LIMITS.streamWindowBytes,
      enablePush: false,
    };
    const common = {
      settings,
      maxSessionMemory: SERVER_LIMITS.maxSessionMemoryMiB,
      maxHeaderListPairs: SERVER_LIMITS.maxHeaderPairs,
      maxOutstandingPings: 10,
      maxSettings: 32,
    };
    this.server = opts.tls
      ? http2.createSecureServer({ ...common, cert: opts.tls.cert, key: opts.tls.key, allowHTTP1: false, minVersion: 'TLSv1.2' })
      : http2.createServer(common);
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('session', (s) => this.onSession(s));
    // A peer that cannot even start a session (garbage, a bad preface, a TLS failure) costs a log line.
    this.server.on('sessionError', (err: Error) => this.opts.log.debug({ err: err.message }, 'session error'));
    this.server.on('error', (err: Error) => this.opts.log.error({ err }, 'server error'));
    if (opts.tls) (this.server as Http2SecureServer).on('tlsClientError', (err: Error) => this.opts.log.debug({ err: err.message }, 'TLS handshake failed'));
    this.server.on('unknownProtocol', (socket) => socket.destroy());
    this.server.setTimeout(SERVER_LIMITS.sessionIdleMs);
  }

  /** Opens the store (in its worker) and the server; call listen() next. */
  static async open(opts: ArchiveServerOptions): Promise<ArchiveServer> {
    const store = await WorkerArchiveClient.open(opts.dataDir);
    try {
      const snapshots = opts.snapshots ?? await WorkerSnapshotClient.open({ dataDir: opts.dataDir, tickMs: 60_000 }, opts.log);
      return new ArchiveServer(store, { ...opts, snapshots });
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /** Told of every ship batch applied: the volume, its applied record after it, the batch's bytes, the seconds it took (metrics). */
  onApplied: ((volume: string, appliedSeq: number, bytes: number, seconds: number) => void) | null = null;

  /** Connects the takeover supervisor (it needs the lease table and the address this server listens on). */
  setTakeover(hooks: TakeoverHooks): void {
    this.takeover = hooks;
  }

  /** The volume's epoch as the store has it now. */
  async currentEpoch(volume: string): Promise<number> {
    const st = await this.store.volumeState(volume);
    if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    return st.epoch;
  }

  /** Every volume with its lease state (one when named): `strata archive status`. */
  async volumeLeases(only?: string): Promise<VolumeLease[]> {
    const states: VolumeState[] = only !== undefined
      ? [await this.store.volumeState(only)].filter((v): v is VolumeState => v !== null)
      : await this.store.listVolumes();
    return states.map((st) => {
      this.epochCache.set(st.name, { epoch: st.epoch, at: Date.now() });
      const row = this.leases.get(st.name);
      const age = row ? this.leases.ageSeconds(row) : null;
      return {
        volume: st.name,
        state: this.leases.stateOf(row, st.epoch),
        epoch: st.epoch,
        appliedSeq: st.appliedSeq,
        holder: row?.holder ?? null,
        holderEpoch: row?.holderEpoch ?? null,
        leaseAgeSeconds: age === null ? null : Math.round(age * 10) / 10,
        leaseSeconds: row?.holder ? row.leaseMs / 1000 : null,
        lagRecords: row?.holder && row.renewedAt !== null ? Math.max(0, row.lastSeq - st.appliedSeq) : null,
        releasedAt: row?.releasedAt ?? null,
        fencedBy: row?.fencedBy ?? null,
        takeover: this.takeover?.info(st.name) ?? null,
      };
    });
  }

  /** The volume's epoch: cached for a few seconds (a renewal a second per primary must not queue behind ship batches in the store's worker). */
  private async epochOf(volume: string): Promise<number> {
    const c = this.epochCache.get(volume);
    if (c !== undefined && Date.now() - c.at < EPOCH_CACHE_MS) return c.epoch;
    const st = await this.store.volumeState(volume);
    if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    this.epochCache.set(volume, { epoch: st.epoch, at: Date.now() });
    return st.epoch;
  }

  private locked<T>(volume: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.volumeLocks.get(volume) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.volumeLocks.set(volume, tail);
    void tail.then(() => { if (this.volumeLocks.get(volume) === tail) this.volumeLocks.delete(volume); });
    return next;
  }

  private async renew(volume: string, r: LeaseRenewal): Promise<unknown> {
    return this.locked(volume, async () => {
      let epoch = await this.epochOf(volume);
      if (r.epoch > epoch) {
        // Our cached epoch may be old (a fence through another opener): read it again before refusing.
        this.epochCache.delete(volume);
        epoch = await this.epochOf(volume);
      }
      return this.leases.renew(volume, r, epoch);
    });
  }

  private async fence(volume: string, opts: FenceOptions): Promise<VolumeState> {
    return this.locked(volume, async () => {
      this.leases.checkFence(volume, opts);
      const st = await this.store.fence(volume);
      this.epochCache.set(volume, { epoch: st.epoch, at: Date.now() });
      this.leases.fenced(volume, st.epoch, opts);
      return st;
    });
  }

  private async releaseLease(volume: string, r: LeaseRelease): Promise<VolumeLease> {
    await this.locked(volume, async () => {
      const st = await this.store.volumeState(volume);
      if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
      if (st.appliedSeq < r.lastSeq) throw new ArchiveError('EBADREQ', `volume ${volume} has applied ${st.appliedSeq} of this primary's ${r.lastSeq} records: drain (strata sync) before releasing`);
      this.leases.release(volume, r);
    });
    return (await this.volumeLeases(volume))[0]!;
  }

  /** `strata archive release VOLUME`: a takeover mount is drained and released; a lapsed holder's lease is cleared; a live one is refused. */
  private async operatorRelease(volume: string): Promise<VolumeLease> {
    if (await this.store.volumeState(volume) === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    const row = this.leases.get(volume);
    if (row?.holder && this.takeover?.isTakeover(row.holder) && this.leases.live(row)) {
      if (!(await this.takeover.release(volume))) throw new ArchiveError('EARCHIVE', `the takeover mount of ${volume} did not release it`);
    } else {
      await this.locked(volume, async () => this.leases.releaseLapsed(volume));
    }
    return (await this.volumeLeases(volume))[0]!;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting connections, lets requests in flight finish (at most
   * `graceMs`), then closes every session and the store.
   */
  async close(graceMs = 10_000): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) if (!s.closed) s.close(); // GOAWAY: open streams finish, no new ones
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => (this.inFlight === 0 ? resolve() : this.idleWaiters.push(resolve))),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
    if (this.inFlight > 0) this.opts.log.warn({ inFlight: this.inFlight }, 'closing with requests still in flight');
    for (const s of this.sessions) s.destroy();
    // A destroyed session does not always report 'close' promptly; the store closes regardless.
    await Promise.race([closed, new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]);
    await this.store.close();
    await this.opts.snapshots?.close();
  }

  private onSession(s: Http2Session): void {
    this.sessions.add(s);
    s.on('close', () => this.sessions.delete(s));
    s.on('error', (err: Error) => this.opts.log.debug({ err: err.message }, 'session error'));
    s.on('frameError', (type: number, code: number) => this.opts.log.debug({ type, code }, 'frame error'));
    try {
      s.setLocalWindowSize(SERVER_LIMITS.connectionWindowBytes);
    } catch {
      // A session that is already closing: nothing to tune.
    }
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', (err: Error) => this.opts.log.debug({ err: err.message }, 'stream error'));
    stream.setTimeout(SERVER_LIMITS.streamIdleMs, () => {
      this.opts.log.warn({ path: headers[':path'] }, 'request idle too long; cancelled');
      stream.close(constants.NGHTTP2_CANCEL);
    });
    this.inFlight++;
    const started = process.hrtime.bigint();
    this.handle(stream, headers)
      .catch((err: unknown) => this.fail(stream, headers, err))
      .finally(() => {
        if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
        // A stream whose client went away before any answer has no sent headers.
        if (this.opts.log.isLevelEnabled('debug')) {
          this.opts.log.debug({ method: headers[':method'], path: headers[':path'], status: stream.sentHeaders?.[':status'] ?? null, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request');
        }
      });
  }

  private fail(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, err: unknown): void {
    const wire = toWireError(err);
    const status = err instanceof HttpError ? err.status : STATUS_OF[wire.code];
    const ctx = { method: headers[':method'], path: String(headers[':path']).slice(0, 200), status, code: wire.code, err: wire.message };
    // A volume being rebuilt from a snapshot answers its reads' writers "try again" until the rebuild is done: expected, not a failure.
    if (wire.code === 'EUNAVAILABLE' && /being rebuilt/.test(wire.message)) this.opts.log.debug(ctx, 'request answered: try again after the rebuild');
    else if (status >= 500) this.opts.log.error(ctx, 'request failed');
    else if (wire.code === 'EAUTH' || wire.code === 'EBADREQ') this.opts.log.warn(ctx, 'request refused');
    else this.opts.log.debug(ctx, 'request answered with an error');
    // An answer sent before the body was read tells the client to stop sending it.
    sendError(stream, status, wire.code, wire.message, !stream.readableEnded);
  }

  private async handle(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const method = headers[':method'];
    const route = parseRoute(headers[':path']);
    if (route.kind === 'hello') {
      if (method !== 'GET') throw notAllowed();
      return sendJson(stream, 200, { protocol: Number(PROTOCOL_VERSION), server: 'strata-archive' });
    }
    const peer = headers[PROTOCOL_HEADER];
    if (peer !== undefined && peer !== PROTOCOL_VERSION) throw new ArchiveError('EBADREQ', `client speaks protocol ${String(peer).slice(0, 20)}, this server ${PROTOCOL_VERSION}`);
    const why = this.opts.auth.reject(headers);
    if (why !== null) {
      this.opts.log.warn({ remote: stream.session?.socket?.remoteAddress, path: String(headers[':path']).slice(0, 200), reason: why }, 'authentication failed');
      throw new ArchiveError('EAUTH', 'missing or wrong token');
    }
    if (route.volume === undefined) return this.archiveWide(stream, headers, method, route);
    const volume = route.volume;
    const snaps = this.opts.snapshots!;
    switch (route.kind) {
      case 'vol-snapshots': {
        if (method !== 'POST') throw notAllowed();
        const body = await readJson(stream, headers);
        const reason = (body as { reason?: unknown } | null)?.reason;
        if (reason !== undefined && typeof reason !== 'string') throw new ArchiveError('EBADREQ', 'reason must be a string');
        return sendJson(stream, 200, await snaps.createSnapshot(volume, reason !== undefined ? { reason } : {}));
      }
      case 'snapshot-choice': {
        if (method !== 'GET') throw notAllowed();
        const condition = route.query.get('condition');
        if (condition === null) throw new ArchiveError('EBADREQ', 'query parameter condition is required');
        const before = route.query.get('before');
        return sendJson(stream, 200, await snaps.chooseSnapshot(volume, { condition, ...(before !== null ? { before } : {}) }));
      }
      case 'rollback': {
        if (method !== 'POST') throw notAllowed();
        const body = await readJson(stream, headers) as { snapshot?: unknown; holder?: unknown; keptBy?: unknown } | null;
        if (!isSnapshotId(body?.snapshot)) throw new ArchiveError('EBADREQ', 'body must be {"snapshot": ID}');
        const why = badRollbackOptionsReason({ holder: body.holder, keptBy: body.keptBy });
        if (why !== null) throw new ArchiveError('EBADREQ', why);
        const opts = { holder: body.holder, keptBy: body.keptBy } as RollbackOptions;
        stream.setTimeout(0);
        if (opts.holder !== undefined) {
          // The volume's own primary keeps its epoch: it must hold the lease at that epoch (the engine checks the volume's epoch).
          const holder = opts.holder;
          return sendJson(stream, 200, await this.locked(volume, async () => {
            const row = this.leases.get(volume);
            if (row?.holder?.storeId !== holder.storeId || row.holderEpoch !== holder.epoch) {
              throw new ArchiveError('EHELD', `volume ${volume} is held by ${describeHolder(row?.holder ?? null)} at epoch ${row?.holderEpoch ?? '-'}, not by store ${holder.storeId} at epoch ${holder.epoch}: no rollback that keeps the epoch`);
            }
            return snaps.rollback(volume, body.snapshot as string, opts);
          }));
        }
        this.epochCache.delete(volume); // a rollback gives the volume a new epoch
        return sendJson(stream, 200, await snaps.rollback(volume, body.snapshot, opts));
      }
      case 'conditions': {
        if (method !== 'POST') throw notAllowed();
        let alert;
        try {
          alert = parseAlert(await readJson(stream, headers), 'alert');
        } catch (err) {
          if (err instanceof ArchiveError) throw err;
          throw new ArchiveError('EBADREQ', (err as Error).message);
        }
        return sendJson(stream, 200, await snaps.raise(volume, alert));
      }
      default:
        break;
    }
    switch (route.kind) {
      case 'volume':
        if (method === 'GET') {
          const st = await this.store.volumeState(volume);
          if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
          return sendJson(stream, 200, st);
        }
        if (method === 'POST') {
          await readBody(stream, headers, SERVER_LIMITS.maxSmallBodyBytes);
          return sendJson(stream, 200, await this.store.createVolume(volume));
        }
        throw notAllowed();
      case 'journal':
        if (method !== 'POST') throw notAllowed();
        return this.ship(stream, headers, volume);
      case 'fence': {
        if (method !== 'POST') throw notAllowed();
        const body = await readJson(stream, headers);
        const why = badFenceOptionsReason(body);
        if (why !== null) throw new ArchiveError('EBADREQ', why);
        return sendJson(stream, 200, await this.fence(volume, (body ?? {}) as FenceOptions));
      }
      case 'lease': {
        if (method !== 'POST') throw notAllowed();
        const body = await readJson(stream, headers);
        const why = badRenewalReason(body);
        if (why !== null) throw new ArchiveError('EBADREQ', why);
        return sendJson(stream, 200, await this.renew(volume, body as LeaseRenewal));
      }
      case 'lease-release': {
        if (method !== 'POST') throw notAllowed();
        const body = await readJson(stream, headers);
        const why = badReleaseReason(body);
        if (why !== null) throw new ArchiveError('EBADREQ', why);
        return sendJson(stream, 200, await this.releaseLease(volume, body as LeaseRelease));
      }
      case 'release':
        if (method !== 'POST') throw notAllowed();
        await readBody(stream, headers, SERVER_LIMITS.maxSmallBodyBytes);
        stream.setTimeout(0); // draining a takeover mount may send nothing for a while
        return sendJson(stream, 200, await this.operatorRelease(volume));
      case 'dir':
        if (method !== 'GET') throw notAllowed();
        return sendJson(stream, 200, await this.store.dirImage(volume, route.id!));
      case 'deep': {
        if (method !== 'GET') throw notAllowed();
        const name = route.query.get('name');
        return sendJson(stream, 200, await this.store.deepImages(volume, route.id!, name === null ? undefined : checkOptionalName(name)));
      }
      case 'blocks':
        if (method !== 'GET') throw notAllowed();
        return sendJson(stream, 200, await this.store.fileBlocks(volume, route.id!));
      case 'data': {
        if (method !== 'GET') throw notAllowed();
        const offset = checkOffset(queryInt(route.query, 'offset'));
        const length = checkLength(queryInt(route.query, 'length'));
        return sendBytes(stream, await this.store.readRange(volume, route.id!, offset, length));
      }
      case 'raw': {
        if (method !== 'GET') throw notAllowed();
        const first = checkOffset(queryInt(route.query, 'first'));
        const count = checkBlockCount(queryInt(route.query, 'count'));
        return sendParts(stream, encodeRawBlocks(await this.store.readBlocks(volume, route.id!, first, count)));
      }
      case 'tiers':
        if (method !== 'GET') throw notAllowed();
        return this.tiers(stream, volume, checkDepth(queryInt(route.query, 'depth')));
    }
  }

  /** Routes that name no volume: targets, the snapshot catalog, alerts, GC. */
  private async archiveWide(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: string | undefined, route: Route): Promise<void> {
    const snaps = this.opts.snapshots!;
    switch (route.kind) {
      case 'leases': {
        if (method !== 'GET') throw notAllowed();
        const v = route.query.get('volume');
        return sendJson(stream, 200, await this.volumeLeases(v !== null ? checkVolume(v) : undefined));
      }
      case 'targets':
        if (method !== 'GET') throw notAllowed();
        return sendJson(stream, 200, await snaps.targets());
      case 'snapshots': {
        if (method !== 'GET') throw notAllowed();
        const volume = route.query.get('volume');
        const condition = route.query.get('condition');
        return sendJson(stream, 200, await snaps.listSnapshots({ ...(volume !== null ? { volume: checkVolume(volume) } : {}), ...(condition !== null ? { condition } : {}) }));
      }
      case 'snapshot':
        if (method === 'GET') return sendJson(stream, 200, await snaps.getSnapshot(route.snapshot!));
        if (method === 'DELETE') {
          stream.setTimeout(0);
          return sendJson(stream, 200, await snaps.deleteSnapshot(route.snapshot!));
        }
        throw notAllowed();
      case 'snapshot-verify':
        if (method !== 'POST') throw notAllowed();
        await readBody(stream, headers, SERVER_LIMITS.maxSmallBodyBytes);
        stream.setTimeout(0); // re-hashing a large snapshot sends nothing for a while
        return sendJson(stream, 200, await snaps.verifySnapshot(route.snapshot!));
      case 'alerts': {
        if (method !== 'GET') throw notAllowed();
        const limit = route.query.get('limit');
        return sendJson(stream, 200, await snaps.alerts(limit === null ? 100 : queryInt(route.query, 'limit')));
      }
      case 'gc':
        if (method !== 'POST') throw notAllowed();
        await readBody(stream, headers, SERVER_LIMITS.maxSmallBodyBytes);
        stream.setTimeout(0);
        return sendJson(stream, 200, await snaps.gc());
      default:
        throw ROUTE_404();
    }
  }

  private async ship(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, volume: string): Promise<void> {
    const epochHeader = headers['strata-epoch'];
    const epoch = checkEpoch(typeof epochHeader === 'string' && /^\d{1,16}$/.test(epochHeader) ? Number(epochHeader) : NaN);
    // Waiting here leaves the body unread: HTTP/2 flow control holds the sender back.
    const release = await this.ships.enter();
    try {
      if (stream.destroyed) return;
      const body = await readBody(stream, headers, SERVER_LIMITS.maxShipBytes);
      if (body.length === 0) throw new ArchiveError('EBADREQ', 'empty batch');
      let res;
      const started = process.hrtime.bigint();
      const size = body.length;
      try {
        res = await this.store.shipTransfer(volume, epoch, body);
        this.onApplied?.(volume, res.appliedSeq, size, Number(process.hrtime.bigint() - started) / 1e9);
      } catch (err) {
        // Say who fenced the shipper, and when.
        if (isArchiveError(err, 'EFENCED')) {
          this.epochCache.delete(volume);
          throw new ArchiveError('EFENCED', this.leases.fencedMessage(volume, epoch, await this.epochOf(volume).catch(() => epoch + 1)));
        }
        throw err;
      }
      sendJson(stream, 200, res);
    } finally {
      release();
    }
  }

  /**
   * NDJSON: one directory image per line, then `{"done":true,"count":N}`; an
   * error after the first image ends the stream with `{"error":{code,message}}`.
   * Written at the reader's pace (write() returning false waits for 'drain'),
   * and pulled from the worker at that pace too.
   */
  private async tiers(stream: ServerHttp2Stream, volume: string, depth: number): Promise<void> {
    const it = this.store.tierImages(volume, depth)[Symbol.asyncIterator]();
    let first: IteratorResult<DirImage>;
    try {
      first = await it.next(); // an unknown volume is still a plain error answer
    } catch (err) {
      await it.return?.();
      throw err;
    }
    if (stream.destroyed || stream.closed) {
      await it.return?.();
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson', [PROTOCOL_HEADER]: PROTOCOL_VERSION });
    let count = 0;
    try {
      for (let r = first; !r.done; r = await it.next()) {
        if (stream.destroyed || stream.closed) return;
        count++;
        if (!stream.write(`${JSON.stringify(r.value)}\n`)) await drained(stream);
      }
      if (!stream.destroyed) stream.end(`${JSON.stringify({ done: true, count })}\n`);
    } catch (err) {
      const error = toWireError(err);
      this.opts.log.error({ volume, depth, count, ...error }, 'tier stream failed');
      if (!stream.destroyed) stream.end(`${JSON.stringify({ error })}\n`);
    } finally {
      await it.return?.();
    }
  }
}

/** A small JSON body (null when empty). */
async function readJson(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<unknown> {
  const body = await readBody(stream, headers, SERVER_LIMITS.maxSmallBodyBytes);
  if (body.length === 0) return null;
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new ArchiveError('EBADREQ', 'body is not JSON');
  }
}

function notAllowed(): HttpError {
  return new HttpError(405, 'EBADREQ', 'method not allowed');
}

function queryInt(q: URLSearchParams, name: string): number {
  const v = q.get(name);
  if (v === null || !/^\d{1,16}$/.test(v)) throw new ArchiveError('EBADREQ', `query parameter ${name} must be a non-negative integer`);
  return Number(v);
}

const ROUTE_404 = (): HttpError => new HttpError(404, 'EBADREQ', 'no such route');

/**
 * The longest request path: a deep-images query names a directory entry, and a
 * 255-byte name whose bytes are not UTF-8 is 255 characters U+F780-U+F7FF
 * (src/protocol/names.ts), 2,295 characters percent-encoded; with the route, 2,400.
 */
export const MAX_ROUTE_CHARS = 4096;

/** Path → route, with the volume name and object id checked before anything touches storage. */
export function parseRoute(path: string | undefined): Route {
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > MAX_ROUTE_CHARS) throw ROUTE_404();
  // Split by hand rather than with URL: no dot-segment or percent normalisation, so
  // what is validated is exactly what the client sent ('..' is a bad name, not a parent).
  const q = path.indexOf('?');
  const seg = (q === -1 ? path : path.slice(0, q)).split('/').slice(1);
  const query = new URLSearchParams(q === -1 ? '' : path.slice(q + 1));
  if (seg[0] !== 'v1') throw ROUTE_404();
  if (seg.length === 2 && seg[1] === 'hello') return { kind: 'hello', query };
  if (seg.length === 2 && seg[1] === 'targets') return { kind: 'targets', query };
  if (seg.length === 2 && seg[1] === 'alerts') return { kind: 'alerts', query };
  if (seg.length === 2 && seg[1] === 'gc') return { kind: 'gc', query };
  if (seg.length === 2 && seg[1] === 'leases') return { kind: 'leases', query };
  if (seg.length === 2 && seg[1] === 'snapshots') return { kind: 'snapshots', query };
  if (seg[1] === 'snapshots' && (seg.length === 3 || (seg.length === 4 && seg[3] === 'verify'))) {
    const snapshot = seg[2];
    if (!isSnapshotId(snapshot)) throw new HttpError(404, 'EBADREQ', `bad snapshot id ${JSON.stringify(snapshot).slice(0, 80)}`);
    return { kind: seg.length === 3 ? 'snapshot' : 'snapshot-verify', snapshot, query };
  }
  if (seg[1] !== 'volumes' || seg.length < 3) throw ROUTE_404();
  const volume = checkVolume(seg[2]);
  const rest = seg.slice(3);
  if (rest.length === 0) return { kind: 'volume', volume, query };
  if (rest.length === 1 && rest[0] === 'journal') return { kind: 'journal', volume, query };
  if (rest.length === 1 && rest[0] === 'fence') return { kind: 'fence', volume, query };
  if (rest.length === 1 && rest[0] === 'lease') return { kind: 'lease', volume, query };
  if (rest.length === 2 && rest[0] === 'lease' && rest[1] === 'release') return { kind: 'lease-release', volume, query };
  if (rest.length === 1 && rest[0] === 'release') return { kind: 'release', volume, query };
  if (rest.length === 1 && rest[0] === 'tiers') return { kind: 'tiers', volume, query };
  if (rest.length === 1 && rest[0] === 'snapshots') return { kind: 'vol-snapshots', volume, query };
  if (rest.length === 1 && rest[0] === 'snapshot-choice') return { kind: 'snapshot-choice', volume, query };
  if (rest.length === 1 && rest[0] === 'rollback') return { kind: 'rollback', volume, query };
  if (rest.length === 1 && rest[0] === 'conditions') return { kind: 'conditions', volume, query };
  if (rest.length === 2 && rest[0] === 'dirs') return { kind: 'dir', volume, id: checkId(rest[1]), query };
  if (rest.length === 3 && rest[0] === 'dirs' && rest[2] === 'deep') return { kind: 'deep', volume, id: checkId(rest[1]), query };
  if (rest.length === 3 && rest[0] === 'objects' && (rest[2] === 'data' || rest[2] === 'blocks' || rest[2] === 'raw')) {
    return { kind: rest[2], volume, id: checkId(rest[1]), query };
  }
  throw ROUTE_404();
}
