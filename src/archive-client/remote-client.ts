// An ArchiveClient for a remote archive (`strata://` h2c, `stratas://` TLS):
// the routes of src/archive/server.ts over one HTTP/2 session.
//
// The session is opened on demand and dropped on any failure; the next call
// opens a new one. There is no retry loop here: a call whose connection
// fails, or that makes no progress for requestTimeoutMs (its body not taken,
// no response, no byte of the response), or whose answer is cut short, fails
// with EUNAVAILABLE, and the caller (the shipper, with its backoff) decides.
// The limit is on progress, not on the whole call: over a slow link a 16 MiB
// answer or a 4 MiB journal batch takes longer than 10 s, and arrives. An
// idle client does not keep the process alive (the session is unref'd while
// no call is in flight).
import http2, { constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { ArchiveError, isArchiveError, type ArchiveClient, type ShipResult } from '../protocol/archive-api.js';
import { decodeRawBlocks, type DirImage, type FileBlocks, type RawBlocks, type VolumeState } from '../protocol/images.js';
import type { FenceOptions, LeaseGrant, LeaseRelease, LeaseRenewal, VolumeLease } from '../protocol/leases.js';
import type { ObjectId } from '../protocol/records.js';
import { checkBlockCount, checkDepth, checkId, checkLength, checkOffset, checkOptionalName, checkVolume, fromWireError, isArchiveErrorCode, LIMITS } from '../protocol/wire-checks.js';
import { LineSplitter } from './ndjson.js';

const PROTOCOL_VERSION = '1';
const PROTOCOL_HEADER = 'strata-protocol';
/** A JSON answer (a directory image of a huge directory) or one streamed line. */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;
const STREAM_WINDOW_BYTES = 1024 * 1024;
/** A request body larger than this is sent in chunks of it, each a sign of progress. */
const UPLOAD_CHUNK_BYTES = 256 * 1024;
const CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;

export interface RemoteTarget {
  /** The strata:// or stratas:// URL, as given. */
  url: string;
  /** http://host:port or https://host:port. */
  authority: string;
  ca?: Buffer;
  token?: string;
  timeoutMs: number;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const unavailable = (message: string): ArchiveError => new ArchiveError('EUNAVAILABLE', message);

export class RemoteArchiveClient implements ArchiveClient {
  readonly url: string;
  private session: ClientHttp2Session | null = null;
  private connecting: Promise<ClientHttp2Session> | null = null;
  /** Calls in flight: the session keeps the process alive only while this is > 0. */
  private active = 0;
  private closed = false;
  /** When bytes of any answer last arrived (performance.now()): a probe does not drop a session that is busy delivering. */
  private lastDataAt = 0;

  constructor(private readonly target: RemoteTarget) {
    this.url = target.url;
  }

  async volumeState(volume: string): Promise<VolumeState | null> {
    try {
      return this.json<VolumeState>(await this.unary('GET', volPath(volume)));
    } catch (err) {
      if (isArchiveError(err, 'ENOVOLUME')) return null;
      throw err;
    }
  }

  async createVolume(volume: string): Promise<VolumeState> {
    return this.json<VolumeState>(await this.unary('POST', volPath(volume)));
  }

  async ship(volume: string, epoch: number, frames: Buffer): Promise<ShipResult> {
    if (frames.length === 0 || frames.length > LIMITS.maxShipBytes) throw new ArchiveError('EBADREQ', `batch of ${frames.length} bytes (1..${LIMITS.maxShipBytes})`);
    const headers = { 'strata-epoch': String(epoch), 'content-type': 'application/octet-stream', 'content-length': frames.length };
    return this.json<ShipResult>(await this.unary('POST', `${volPath(volume)}/journal`, frames, headers));
  }

  async fence(volume: string, opts?: FenceOptions): Promise<VolumeState> {
    if (opts === undefined) return this.json<VolumeState>(await this.unary('POST', `${volPath(volume)}/fence`));
    return this.requestJson<VolumeState>('POST', `${volPath(volume)}/fence`, opts);
  }

  /** Over the same HTTP/2 session as everything else; `timeoutMs` bounds this call alone (a renewal must not wait 10 s). */
  async renewLease(volume: string, renewal: LeaseRenewal, timeoutMs?: number): Promise<LeaseGrant> {
    return this.requestJson<LeaseGrant>('POST', `${volPath(volume)}/lease`, renewal, timeoutMs);
  }

  async releaseLease(volume: string, release: LeaseRelease): Promise<VolumeLease> {
    return this.requestJson<VolumeLease>('POST', `${volPath(volume)}/lease/release`, release);
  }

  async leases(volume?: string): Promise<VolumeLease[]> {
    return this.requestJson<VolumeLease[]>('GET', volume === undefined ? '/v1/leases' : `/v1/leases?volume=${encodeURIComponent(checkVolume(volume))}`);
  }

  async releaseVolume(volume: string): Promise<VolumeLease> {
    return this.requestJson<VolumeLease>('POST', `${volPath(volume)}/release`, {}, 120_000);
  }

  async dirImage(volume: string, dirId: ObjectId): Promise<DirImage> {
    return this.json<DirImage>(await this.unary('GET', `${volPath(volume)}/dirs/${checkId(dirId)}`));
  }

  async deepImages(volume: string, dirId: ObjectId, name?: string): Promise<DirImage[]> {
    const q = name === undefined ? '' : `?name=${encodeURIComponent(checkOptionalName(name)!)}`;
    const images = this.json<unknown>(await this.unary('GET', `${volPath(volume)}/dirs/${checkId(dirId)}/deep${q}`));
    if (!Array.isArray(images) || images.length === 0 || (images[0] as DirImage).id !== dirId) throw new ArchiveError('EARCHIVE', `deep images of ${dirId}: the answer does not start with that directory`);
    return images as DirImage[];
  }

  async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    const q = `offset=${checkOffset(offset)}&length=${checkLength(length)}`;
    const reply = this.checked(await this.unary('GET', `${volPath(volume)}/objects/${checkId(id)}/data?${q}`));
    return reply.body;
  }

  async readBlocks(volume: string, id: ObjectId, first: number, count: number): Promise<RawBlocks> {
    const q = `first=${checkOffset(first)}&count=${checkBlockCount(count)}`;
    const reply = this.checked(await this.unary('GET', `${volPath(volume)}/objects/${checkId(id)}/raw?${q}`));
    try {
      return decodeRawBlocks(reply.body);
    } catch (err) {
      throw new ArchiveError('EARCHIVE', `readBlocks of ${id}: ${(err as Error).message}`);
    }
  }

  async fileBlocks(volume: string, id: ObjectId): Promise<FileBlocks> {
    return this.json<FileBlocks>(await this.unary('GET', `${volPath(volume)}/objects/${checkId(id)}/blocks`));
  }

  /**
   * Parsed line by line as the stream arrives. The request time limit applies
   * to each wait for data, not to the whole stream (the consumer sets the
   * pace; HTTP/2 flow control holds the server back meanwhile).
   */
  async *tierImages(volume: string, depth: number): AsyncIterable<DirImage> {
    const path = `${volPath(volume)}/tiers?depth=${checkDepth(depth)}`;
    this.begin();
    let req: ClientHttp2Stream | undefined;
    try {
      const opened = await this.open('GET', path);
      req = opened.req;
      if (opened.status !== 200) this.checked({ ...opened, body: await this.rest(req) });
      this.checkProtocol(opened.headers);
      const splitter = new LineSplitter(MAX_ANSWER_BYTES);
      const chunks = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      let sawEnd = false;
      for (;;) {
        const r = await this.withIdleLimit(req, chunks.next());
        if (r.done) break;
        for (const line of splitter.push(r.value)) {
          if (sawEnd) throw new ArchiveError('EARCHIVE', 'data after the end of a tier stream');
          const obj = parseJson(line) as { done?: unknown; error?: unknown };
          if (obj.error !== undefined) throw fromWireError(obj.error);
          if (obj.done === true) sawEnd = true;
          else yield obj as DirImage;
        }
      }
      if (!sawEnd || splitter.pending) throw unavailable('tier stream cut short');
    } catch (err) {
      throw asArchiveError(err);
    } finally {
      if (req && !req.closed) req.close(constants.NGHTTP2_CANCEL);
      this.end();
    }
  }

  /**
   * A JSON request to any route of the server, answered with JSON (the
   * snapshot routes, src/archive-client/open-snapshots.ts, use it).
   */
  async requestJson<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const buf = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: OutgoingHttpHeaders = buf ? { 'content-type': 'application/json', 'content-length': buf.length } : {};
    return this.json<T>(await this.unary(method, path, buf, headers, timeoutMs));
  }

  async close(): Promise<void> {
    this.closed = true;
    const s = this.session;
    this.session = null;
    if (!s || s.destroyed) return;
    if (this.active === 0) {
      s.destroy(); // nothing in flight: no need to wait for the peer
      return;
    }
    // Calls in flight may finish, for a bounded time (a dead peer never acknowledges a graceful close).
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        resolve();
      }, 2000);
      s.close(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // ---- transport ------------------------------------------------------------

  private begin(): void {
    if (this.closed) throw new ArchiveError('EARCHIVE', 'archive client is closed');
    this.active++;
    this.session?.ref();
  }

  private end(): void {
    if (--this.active === 0) this.session?.unref();
  }

  private connect(): Promise<ClientHttp2Session> {
    const cur = this.session;
    if (cur && !cur.closed && !cur.destroyed) return Promise.resolve(cur);
    this.connecting ??= new Promise<ClientHttp2Session>((resolve, reject) => {
      const s = http2.connect(this.target.authority, {
        ...(this.target.ca ? { ca: this.target.ca } : {}),
        settings: { enablePush: false, initialWindowSize: STREAM_WINDOW_BYTES },
        maxSessionMemory: 64,
      });
      const timer = setTimeout(() => {
        s.destroy();
        reject(unavailable(`cannot connect to ${this.url} within ${this.target.timeoutMs} ms`));
      }, this.target.timeoutMs);
      s.on('error', (err: Error) => {
        clearTimeout(timer);
        reject(unavailable(`cannot reach ${this.url}: ${err.message}`));
      });
      s.once('connect', () => {
        clearTimeout(timer);
        try {
          s.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        } catch {
          // closing already; the request will say so
        }
        if (this.active === 0) s.unref();
        this.session = s;
        resolve(s);
      });
      // A session that ends (server gone, GOAWAY, our timeout) is never reused.
      const drop = (): void => {
        if (this.session === s) this.session = null;
      };
      s.once('close', drop);
      s.once('goaway', drop);
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** Starts a request and waits for its response headers (bounded by the time limit). */
  private open(method: string, path: string, body?: Buffer, extra: OutgoingHttpHeaders = {}): Promise<{ req: ClientHttp2Stream; status: number; headers: IncomingHttpHeaders }> {
    return this.bounded<{ req: ClientHttp2Stream; status: number; headers: IncomingHttpHeaders }>((settle, onReq) => {
      void this.connect().then((s) => {
        const req = this.startRequest(s, method, path, body, extra, settle);
        if (req === null) return;
        onReq(req);
        req.once('response', (headers) => settle(null, { req, status: Number(headers[':status']), headers }));
      }, (err: unknown) => settle(asArchiveError(err)));
    });
  }

  /** One request with its whole answer, bounded by the time limit. */
  private unary(method: string, path: string, body?: Buffer, extra: OutgoingHttpHeaders = {}, timeoutMs?: number): Promise<Reply> {
    this.begin();
    return this.bounded<Reply>((settle, onReq, progressed) => {
      void this.connect().then((s) => {
        const req = this.startRequest(s, method, path, body, extra, settle, progressed);
        if (req === null) return;
        onReq(req);
        req.once('response', (headers) => {
          const chunks: Buffer[] = [];
          let n = 0;
          req.on('data', (c: Buffer) => {
            progressed();
            n += c.length;
            if (n > MAX_ANSWER_BYTES) {
              req.close(constants.NGHTTP2_CANCEL);
              settle(new ArchiveError('EARCHIVE', `answer larger than ${MAX_ANSWER_BYTES} bytes`));
            } else {
              chunks.push(c);
            }
          });
          req.once('end', () => {
            // A session destroyed under a stream (our probe, a reset connection) ends it as if its answer were complete.
            const declared = declaredLength(headers);
            if (declared !== null && declared !== n) settle(unavailable(`${this.url} cut the answer short (${n} of ${declared} bytes)`));
            else settle(null, { status: Number(headers[':status']), headers, body: Buffer.concat(chunks, n) });
          });
        });
      }, (err: unknown) => settle(asArchiveError(err)));
    }, timeoutMs).finally(() => this.end());
  }

  /**
   * Starts a request; a session that can take no new stream (the server sent
   * GOAWAY or is closing) throws at once: it is dropped, so that the next call
   * reconnects, and this call fails with EUNAVAILABLE (null returned).
   */
  private startRequest<T>(s: ClientHttp2Session, method: string, path: string, body: Buffer | undefined, extra: OutgoingHttpHeaders,
    settle: (err: Error | null, v?: T) => void, progressed?: () => void): ClientHttp2Stream | null {
    try {
      return this.request(s, method, path, body, extra, progressed);
    } catch (err) {
      if (this.session === s) this.session = null;
      settle(unavailable(`cannot start a request to ${this.url}: ${(err as Error).message}`));
      return null;
    }
  }

  /**
   * Starts a request and sends its body. A large body goes in chunks, each
   * one sent (taken by HTTP/2 flow control, so as fast as the server reads)
   * counting as progress: a 4 MiB journal batch over a 2 Mbit/s uplink takes
   * 16 s, longer than the time limit, and must not time out while it moves.
   */
  private request(s: ClientHttp2Session, method: string, path: string, body: Buffer | undefined, extra: OutgoingHttpHeaders,
    progressed?: () => void): ClientHttp2Stream {
    const headers: OutgoingHttpHeaders = { ':method': method, ':path': path, [PROTOCOL_HEADER]: PROTOCOL_VERSION, ...extra };
    if (this.target.token !== undefined) headers.authorization = `Bearer ${this.target.token}`;
    const req = s.request(headers, { endStream: body === undefined });
    if (body === undefined) return req;
    if (body.length <= UPLOAD_CHUNK_BYTES || progressed === undefined) {
      req.end(body);
      return req;
    }
    let off = 0;
    const more = (): void => {
      while (off < body.length && !req.destroyed) {
        const chunk = body.subarray(off, Math.min(body.length, off + UPLOAD_CHUNK_BYTES));
        off += chunk.length;
        if (off >= body.length) {
          req.end(chunk, progressed);
          return;
        }
        if (!req.write(chunk, progressed)) {
          req.once('drain', more);
          return;
        }
      }
    };
    more();
    return req;
  }

  /**
   * Runs `start` with a deadline on progress: when neither the settlement nor
   * a byte of the answer comes for `timeoutMs`, the request is cancelled, the
   * session is probed (and dropped if the peer is gone), and the call fails
   * with EUNAVAILABLE. A stream that closes or errors before settling fails
   * the call too, so nothing ever waits forever.
   */
  private bounded<T>(start: (settle: (err: Error | null, v?: T) => void, onReq: (req: ClientHttp2Stream) => void, progressed: () => void) => void,
    timeoutMs = this.target.timeoutMs): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let req: ClientHttp2Stream | undefined;
      const settle = (err: Error | null, v?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          if (req && !req.closed) req.close(constants.NGHTTP2_CANCEL);
          reject(err);
        } else {
          resolve(v as T);
        }
      };
      const timer = setTimeout(() => {
        this.probe();
        settle(unavailable(`no answer from ${this.url} for ${timeoutMs} ms`));
      }, timeoutMs);
      const progressed = (): void => {
        this.lastDataAt = performance.now();
        if (!settled) timer.refresh();
      };
      start(settle, (r) => {
        req = r;
        r.on('error', (err: Error) => settle(unavailable(`request to ${this.url} failed: ${err.message}`)));
        // Every request closes, mostly after its answer: no error (and its stack) is made then.
        r.once('close', () => { if (!settled) settle(unavailable(`${this.url} closed the request (code ${r.rstCode ?? 'none'}) before answering`)); });
      }, progressed);
    });
  }

  /** Waits for the next chunk of a stream for at most the time limit. */
  private withIdleLimit<T>(req: ClientHttp2Stream, p: Promise<T>): Promise<T> {
    const timer = setTimeout(() => {
      this.probe();
      req.destroy(unavailable(`no data from ${this.url} within ${this.target.timeoutMs} ms`));
    }, this.target.timeoutMs);
    return p.finally(() => {
      clearTimeout(timer);
      this.lastDataAt = performance.now();
    });
  }

  /**
   * After a timeout: a session whose peer does not answer a ping is dropped,
   * so the next call reconnects. A session that received bytes of any answer
   * meanwhile is kept: over a slow, full link the ping waits its turn behind
   * them, and dropping the session would cut every answer on it short.
   */
  private probe(): void {
    const s = this.session;
    if (!s || s.destroyed) return;
    const sent = performance.now();
    const t = setTimeout(() => {
      if (this.lastDataAt <= sent) s.destroy();
    }, Math.min(this.target.timeoutMs, 5000));
    t.unref();
    try {
      const pinged = s.ping((err) => {
        clearTimeout(t);
        if (err) s.destroy();
      });
      if (!pinged) {
        clearTimeout(t);
        s.destroy();
      }
    } catch {
      clearTimeout(t);
      s.destroy();
    }
  }

  /** The rest of an answer's body (an error body of a streamed request), bounded. */
  private rest(req: ClientHttp2Stream): Promise<Buffer> {
    return this.withIdleLimit(req, (async () => {
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of req as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > 64 * 1024) break;
        chunks.push(c);
      }
      return Buffer.concat(chunks);
    })());
  }

  private checkProtocol(headers: IncomingHttpHeaders): void {
    const v = headers[PROTOCOL_HEADER];
    if (v === undefined) throw new ArchiveError('EARCHIVE', `${this.url} is not a strata archive server (no ${PROTOCOL_HEADER} header)`);
    if (v !== PROTOCOL_VERSION) throw new ArchiveError('EARCHIVE', `${this.url} speaks archive protocol ${String(v)}, this client ${PROTOCOL_VERSION}: upgrade one of them`);
  }

  /** A 200 answer from a strata server, or the ArchiveError it carries. */
  private checked(reply: Reply): Reply {
    if (reply.status === 200) {
      this.checkProtocol(reply.headers);
      return reply;
    }
    let wire: unknown;
    try {
      wire = JSON.parse(reply.body.toString('utf8'));
    } catch {
      wire = undefined;
    }
    const code = (wire as { code?: unknown } | undefined)?.code;
    if (isArchiveErrorCode(code)) throw fromWireError(wire);
    if (reply.headers[PROTOCOL_HEADER] === undefined) this.checkProtocol(reply.headers);
    throw new ArchiveError(reply.status === 401 ? 'EAUTH' : reply.status >= 500 ? 'EARCHIVE' : 'EBADREQ', `${this.url} answered ${reply.status}`);
  }

  private json<T>(reply: Reply): T {
    return parseJson(this.checked(reply).body) as T;
  }
}

/** The answer's content-length (every strata server answer but a stream has one), or null. */
function declaredLength(headers: IncomingHttpHeaders): number | null {
  const v = headers['content-length'];
  return typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : null;
}

function volPath(volume: string): string {
  return `/v1/volumes/${checkVolume(volume)}`;
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8')) as unknown;
  } catch {
    throw new ArchiveError('EARCHIVE', 'the archive sent malformed JSON');
  }
}

/** Whatever went wrong under a call, as an ArchiveError (transport failures are EUNAVAILABLE). */
function asArchiveError(err: unknown): ArchiveError {
  if (isArchiveError(err)) return err;
  return unavailable(err instanceof Error ? err.message : String(err));
}
