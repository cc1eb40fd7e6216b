// Sealed packs on S3-compatible object storage (docs/object-storage.md).
//
// An archive directory whose DIR/objects.json names a bucket keeps only its
// current pack (and sealed packs not uploaded yet) in DIR/packs; every sealed
// pack lives in the bucket as PREFIX/packs/NNNNNN.pack, written once, never
// rewritten. Reads of a pack that is no longer local are ranged GETs of whole
// 8 MiB windows (kept in a bounded cache, so a restore reading the blocks of a
// pack in order makes one request per window); every block is still verified
// against its digest by Packs.read. The calls are synchronous, like the rest
// of the store: they run on a bridge thread (s3-bridge.ts) and this thread
// waits for the answer, at most the fetch timeout without progress (a ranged
// GET whose bytes keep arriving is waited for as long as it takes).
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { LRUCache } from 'lru-cache';
import { ArchiveError } from '../protocol/archive-api.js';
import type { BridgeConfig, BridgeProgress, BridgeReply, BridgeRequest } from './s3-bridge.js';
import { packName, type PackStore } from './packs.js';

/** What `strata archive serve --objects` records in DIR/objects.json (no credentials: those come from the AWS environment). */
export interface ObjectsConfig {
  /** s3://BUCKET[/PREFIX] */
  url: string;
  endpoint?: string;
  region?: string;
  /** A read of a pack that is not local fails (EUNAVAILABLE, the primary's EIO) after this long; default 4000 ms. */
  fetchTimeoutMs?: number;
}

export const OBJECTS_FILE = 'objects.json';
const WINDOW_BYTES = 8 * 1024 * 1024;
const CACHE_BYTES = 128 * 1024 * 1024;
/** Windows fetched ahead of a read (restores read packs in order). */
const READ_AHEAD_WINDOWS = 2;
const DEFAULT_FETCH_TIMEOUT_MS = 4000;
const UPLOAD_TIMEOUT_MS = 15 * 60_000;

export function parseObjectsUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`--objects ${JSON.stringify(url)}: expected s3://BUCKET or s3://BUCKET/PREFIX (a bucket name of 3-63 lower-case letters, digits, dots and hyphens)`);
  let prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix.split('/').some((p) => p === '.' || p === '..')) throw new Error(`--objects ${JSON.stringify(url)}: the prefix must not contain . or .. parts`);
  if (prefix.length > 0) prefix += '/';
  return { bucket: m[1]!, prefix };
}

export function readObjectsConfig(dataDir: string): ObjectsConfig | null {
  const file = join(dataDir, OBJECTS_FILE);
  if (!existsSync(file)) return null;
  const c = JSON.parse(readFileSync(file, 'utf8')) as ObjectsConfig;
  parseObjectsUrl(c.url);
  return c;
}

export function writeObjectsConfig(dataDir: string, c: ObjectsConfig): void {
  parseObjectsUrl(c.url);
  const file = join(dataDir, OBJECTS_FILE);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/** Synchronous object requests over the bridge thread. */
export class SyncObjects {
  readonly bucket: string;
  readonly prefix: string;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly count: Int32Array;
  private seen = 0;
  private nextId = 1;
  private closed = false;

  constructor(readonly config: ObjectsConfig) {
    const { bucket, prefix } = parseObjectsUrl(config.url);
    this.bucket = bucket;
    this.prefix = prefix;
    const counter = new SharedArrayBuffer(4);
    this.count = new Int32Array(counter);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const bridge: BridgeConfig = { bucket, ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}), ...(config.region !== undefined ? { region: config.region } : {}) };
    this.worker = new Worker(new URL('./s3-bridge.js', import.meta.url), { workerData: { config: bridge, port: port2, counter }, transferList: [port2] });
    this.worker.unref();
    this.port.unref();
  }

  /** "s3://bucket/prefix/KEY-PART", for messages. */
  where(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  get fetchTimeoutMs(): number {
    return this.config.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  }

  /** Bytes [start, end) of the object (short at its end); `ahead` ranges of the same size after it are fetched ahead. */
  getRange(key: string, start: number, end: number, ahead = 0): Buffer {
    const r = this.call({ op: 'get', key, start, end, timeoutMs: this.fetchTimeoutMs, ahead });
    return Buffer.from(r.data!.buffer, r.data!.byteOffset, r.data!.byteLength);
  }

  download(key: string, file: string): number {
    return this.call({ op: 'download', key, file, timeoutMs: UPLOAD_TIMEOUT_MS }).size ?? 0;
  }

  put(key: string, file: string): number {
    return this.call({ op: 'put', key, file, timeoutMs: UPLOAD_TIMEOUT_MS }).size ?? 0;
  }

  /** The object's size, or null when there is none. */
  head(key: string): number | null {
    return this.call({ op: 'head', key, timeoutMs: this.fetchTimeoutMs * 3 }).size ?? null;
  }

  list(prefix: string): { key: string; size: number }[] {
    return this.call({ op: 'list', prefix, timeoutMs: 60_000 }).list ?? [];
  }

  delete(key: string): void {
    this.call({ op: 'delete', key, timeoutMs: this.fetchTimeoutMs * 3 });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
    void this.worker.terminate();
  }

  private call(req: { op: BridgeRequest['op'] } & Record<string, unknown>): Extract<BridgeReply, { ok: true }> {
    if (this.closed) throw new ArchiveError('EARCHIVE', `object store ${this.where(this.prefix)} is closed`);
    const id = this.nextId++;
    const timeoutMs = req.timeoutMs as number;
    this.port.postMessage({ ...req, id });
    let deadline = Date.now() + timeoutMs + 500;
    for (;;) {
      let m = receiveMessageOnPort(this.port);
      while (m !== undefined) {
        const reply = m.message as BridgeReply | BridgeProgress;
        this.seen++;
        if ('progress' in reply) {
          // Bytes of this answer are arriving: the wait starts over (another call's progress is old news).
          if (reply.id === id) deadline = Date.now() + timeoutMs + 500;
        } else if (reply.id === id) {
          if (reply.ok) return reply;
          const what = `${req.op} ${this.where(String(req.key ?? req.prefix ?? ''))}`;
          const code = reply.failure.kind === 'missing' ? 'ENOOBJECT' : reply.failure.kind === 'unavailable' ? 'EUNAVAILABLE' : 'EARCHIVE';
          throw new ArchiveError(code, `object store: ${what}: ${reply.failure.message}`);
        }
        m = receiveMessageOnPort(this.port); // the late answer of a call that timed out
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new ArchiveError('EUNAVAILABLE', `object store: ${req.op} ${this.where(String(req.key ?? req.prefix ?? ''))}: no progress for ${timeoutMs} ms`);
      // The bridge bumps the counter after posting each answer: sleep while it still equals the answers taken.
      Atomics.wait(this.count, 0, this.seen | 0, left);
    }
  }
}

/** Sealed packs in a bucket: PREFIX/packs/NNNNNN.pack. */
export class S3PackStore implements PackStore {
  private readonly cache = new LRUCache<string, Buffer>({ maxSize: CACHE_BYTES, sizeCalculation: (b) => Math.max(1, b.length) });

  constructor(readonly objects: SyncObjects) {}

  static open(config: ObjectsConfig): S3PackStore {
    return new S3PackStore(new SyncObjects(config));
  }

  get name(): string {
    return this.objects.where(`${this.objects.prefix}packs/`);
  }

  key(pack: number): string {
    return `${this.objects.prefix}packs/${packName(pack)}`;
  }

  put(pack: number, file: string): void {
    const key = this.key(pack);
    this.objects.put(key, file);
  }

  size(pack: number): number | null {
    return this.objects.head(this.key(pack));
  }

  readRange(pack: number, offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const w = Math.floor(at / WINDOW_BYTES);
      const window = this.window(pack, w);
      const from = at - w * WINDOW_BYTES;
      if (from >= window.length) break; // the pack ends here
      const n = Math.min(length - done, window.length - from);
      window.copy(out, done, from, from + n);
      done += n;
      if (window.length < WINDOW_BYTES) break;
    }
    return out.subarray(0, done);
  }

  list(): Map<number, number> {
    const out = new Map<number, number>();
    for (const o of this.objects.list(`${this.objects.prefix}packs/`)) {
      const m = /\/(\d{6,})\.pack$/.exec(o.key);
      if (m) out.set(Number(m[1]), o.size);
    }
    return out;
  }

  delete(pack: number): void {
    for (const k of [...this.cache.keys()]) if (k.startsWith(`${pack}:`)) this.cache.delete(k);
    this.objects.delete(this.key(pack));
  }

  close(): void {
    this.cache.clear();
    this.objects.close();
  }

  private window(pack: number, w: number): Buffer {
    const k = `${pack}:${w}`;
    const hit = this.cache.get(k);
    if (hit !== undefined) return hit;
    let data: Buffer;
    try {
      data = this.objects.getRange(this.key(pack), w * WINDOW_BYTES, (w + 1) * WINDOW_BYTES, READ_AHEAD_WINDOWS);
    } catch (err) {
      if (err instanceof ArchiveError && err.code === 'ENOOBJECT') {
        // No such object, or a range past its end: either way the block is not where the database says.
        const size = w === 0 ? null : this.objects.head(this.key(pack));
        if (size === null) throw new ArchiveError('ECORRUPT', `pack ${packName(pack)} is missing from ${this.objects.where(this.key(pack))}`);
        return Buffer.alloc(0);
      }
      throw err;
    }
    this.cache.set(k, data);
    return data;
  }
}

/** The sealed-pack store an archive directory is configured with (DIR/objects.json), or undefined for a plain directory. */
export function openSealedPackStore(dataDir: string): S3PackStore | undefined {
  const c = readObjectsConfig(dataDir);
  return c === null ? undefined : S3PackStore.open(c);
}
