// An ArchiveClient for a `file://` archive: the store runs in a worker thread
// (worker.ts), so the caller's event loop (a FUSE daemon's) never waits on
// SQLite or fsync. Calls are messages {id, method, args}; answers carry a
// result or an error whose code is re-created here. A worker that dies fails
// every pending call with EARCHIVE; the next call starts a new one.
import { Worker } from 'node:worker_threads';
import { ArchiveError, type ArchiveClient, type ShipResult } from '../protocol/archive-api.js';
import type { DirImage, FileBlocks, RawBlocks, VolumeState } from '../protocol/images.js';
import type { FenceOptions, LeaseGrant, LeaseRelease, LeaseRenewal, VolumeLease } from '../protocol/leases.js';
import type { ObjectId } from '../protocol/records.js';
import type { WorkerData } from './worker.js';
import { fromWireError, LIMITS } from '../protocol/wire-checks.js';
import { ownArrayBuffer, type FromWorker, type ToWorker, type UnaryMethod } from './worker-protocol.js';

interface Pending {
  resolve(msg: FromWorker): void;
  reject(err: Error): void;
  worker: Worker;
}

type Chunk = Extract<FromWorker, { type: 'chunk' }>;

export interface WorkerClientOptions {
  /** How long close() waits for the store to close before terminating the thread. */
  closeTimeoutMs?: number;
  /**
   * A `file://` archive: the worker finishes a rollback's rebuild it finds
   * (at open, or when a batch is refused for one), since no server does.
   */
  finishRebuilds?: boolean;
}

export class WorkerArchiveClient implements ArchiveClient {
  readonly url: string;
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  private constructor(readonly dir: string, private readonly opts: WorkerClientOptions) {
    this.url = `file://${dir}`;
  }

  /** Starts the worker and opens the store, so a bad directory fails here rather than at the first call. */
  static async open(dir: string, opts: WorkerClientOptions = {}): Promise<WorkerArchiveClient> {
    const c = new WorkerArchiveClient(dir, opts);
    try {
      await c.call('open', []);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  async volumeState(volume: string): Promise<VolumeState | null> {
    return (await this.call('volumeState', [volume])) as VolumeState | null;
  }

  async createVolume(volume: string): Promise<VolumeState> {
    return (await this.call('createVolume', [volume])) as VolumeState;
  }

  async ship(volume: string, epoch: number, frames: Buffer): Promise<ShipResult> {
    if (frames.length > LIMITS.maxShipBytes) throw new ArchiveError('EBADREQ', `batch of ${frames.length} bytes exceeds ${LIMITS.maxShipBytes}`);
    // One copy into memory we can hand over; the caller keeps its buffer (it may resend it).
    return (await this.call('ship', [volume, epoch], ownArrayBuffer(frames))) as ShipResult;
  }

  /**
   * ship() for a body the caller gives away (the server's request body): its
   * memory moves to the worker without a copy and is unusable here afterwards.
   */
  async shipTransfer(volume: string, epoch: number, frames: Buffer): Promise<ShipResult> {
    const owned = frames.byteOffset === 0 && frames.byteLength === frames.buffer.byteLength && frames.buffer instanceof ArrayBuffer;
    if (!owned) return this.ship(volume, epoch, frames);
    return (await this.call('ship', [volume, epoch], frames.buffer as ArrayBuffer)) as ShipResult;
  }

  /**
   * An in-process archive has no lease server (nothing outlives this process
   * to keep leases): the fence always proceeds, `opts` is not used.
   */
  async fence(volume: string, opts?: FenceOptions): Promise<VolumeState> {
    void opts;
    return (await this.call('fence', [volume])) as VolumeState;
  }

  /** No lease server in process: only the epoch is checked (EFENCED when another primary fenced the volume); the grant never expires. */
  async renewLease(volume: string, renewal: LeaseRenewal): Promise<LeaseGrant> {
    const st = await this.volumeState(volume);
    if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    if (renewal.epoch < st.epoch) throw new ArchiveError('EFENCED', `volume ${volume} is at epoch ${st.epoch}; epoch ${renewal.epoch} was fenced (by a recovery through ${this.url})`);
    return { epoch: st.epoch, leaseMs: renewal.leaseMs, enforced: false };
  }

  async releaseLease(volume: string, release: LeaseRelease): Promise<VolumeLease> {
    const st = await this.volumeState(volume);
    if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    if (st.appliedSeq < release.lastSeq) throw new ArchiveError('EBADREQ', `volume ${volume} has applied ${st.appliedSeq} of ${release.lastSeq} records: drain before releasing`);
    return { ...noLease(st), state: 'released', releasedAt: new Date().toISOString() };
  }

  async leases(volume?: string): Promise<VolumeLease[]> {
    const all = await this.listVolumes();
    return all.filter((v) => volume === undefined || v.name === volume).map(noLease);
  }

  async releaseVolume(volume: string): Promise<VolumeLease> {
    const st = await this.volumeState(volume);
    if (st === null) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    return noLease(st);
  }

  async listVolumes(): Promise<VolumeState[]> {
    return (await this.call('listVolumes', [])) as VolumeState[];
  }

  async dirImage(volume: string, dirId: ObjectId): Promise<DirImage> {
    return (await this.call('dirImage', [volume, dirId])) as DirImage;
  }

  async deepImages(volume: string, dirId: ObjectId, name?: string): Promise<DirImage[]> {
    return (await this.call('deepImages', name === undefined ? [volume, dirId] : [volume, dirId, name])) as DirImage[];
  }

  async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    const msg = await this.send(this.nextId++, [{ type: 'call', id: 0, method: 'readRange', args: [volume, id, offset, length] }]);
    if (msg.type !== 'result' || !msg.bytes) throw new ArchiveError('EARCHIVE', 'readRange answered without data');
    return Buffer.from(msg.bytes);
  }

  async readBlocks(volume: string, id: ObjectId, first: number, count: number): Promise<RawBlocks> {
    const msg = await this.send(this.nextId++, [{ type: 'call', id: 0, method: 'readBlocks', args: [volume, id, first, count] }]);
    if (msg.type !== 'result' || !msg.bytes) throw new ArchiveError('EARCHIVE', 'readBlocks answered without data');
    return { ...(msg.result as Omit<RawBlocks, 'data'>), data: Buffer.from(msg.bytes) };
  }

  async fileBlocks(volume: string, id: ObjectId): Promise<FileBlocks> {
    return (await this.call('fileBlocks', [volume, id])) as FileBlocks;
  }

  /**
   * Streams in chunks, one pull at a time with one chunk prefetched: at most
   * two chunks are in memory however many images the tiers hold.
   */
  async *tierImages(volume: string, depth: number): AsyncIterable<DirImage> {
    const id = this.nextId++;
    let done = false;
    let next: Promise<Chunk> = this.pull(id, [{ type: 'stream', id, args: [volume, depth] }, { type: 'pull', id }]);
    const worker = this.worker;
    try {
      while (!done) {
        const chunk = await next;
        done = chunk.done;
        if (!done) {
          if (this.worker !== worker) throw new ArchiveError('EARCHIVE', 'archive worker restarted during a tier stream');
          next = this.pull(id, [{ type: 'pull', id }]);
          next.catch(() => {}); // awaited on the next turn, or dropped when the consumer stops
        }
        yield* chunk.images;
      }
    } finally {
      if (!done && this.worker === worker && worker) worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    if (!w) return;
    w.ref();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => void w.terminate(), this.opts.closeTimeoutMs ?? 10_000);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.postMessage({ type: 'close' } satisfies ToWorker);
    });
  }

  private async call(method: UnaryMethod, args: unknown[], bytes?: ArrayBuffer): Promise<unknown> {
    const msg: ToWorker = bytes ? { type: 'call', id: 0, method, args, bytes } : { type: 'call', id: 0, method, args };
    const answer = await this.send(this.nextId++, [msg], bytes ? [bytes] : []);
    if (answer.type !== 'result') throw new ArchiveError('EARCHIVE', `unexpected answer ${answer.type}`);
    return answer.result;
  }

  private async pull(id: number, msgs: ToWorker[]): Promise<Chunk> {
    const answer = await this.send(id, msgs);
    if (answer.type !== 'chunk') throw new ArchiveError('EARCHIVE', `unexpected answer ${answer.type}`);
    return answer;
  }

  /** Posts messages for one pending answer (the id is stamped on each); resolves with the answer, rejects on an error. */
  private send(id: number, msgs: ToWorker[], transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    if (this.closed) return Promise.reject(new ArchiveError('EARCHIVE', 'archive client is closed'));
    const w = this.ensureWorker();
    return new Promise<FromWorker>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: w });
      w.ref();
      for (const m of msgs) w.postMessage(m.type === 'close' ? m : { ...m, id }, m.type === 'call' ? transfer : []);
    });
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const data: WorkerData = { dir: this.dir, finishRebuilds: this.opts.finishRebuilds === true };
    // The thread inherits the process's flags, except those that only make sense for a main script (`node --input-type=module -e`).
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: data, execArgv });
    w.on('message', (msg: FromWorker) => this.onMessage(msg));
    w.on('error', (err) => this.onDeath(w, `archive worker failed: ${err.message}`));
    w.on('messageerror', (err) => this.onDeath(w, `archive worker sent an unreadable message: ${err.message}`));
    w.on('exit', (code) => this.onDeath(w, `archive worker exited (code ${code})`));
    w.unref();
    this.worker = w;
    return w;
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type === 'closed') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    this.idleCheck(p.worker);
    if (msg.type === 'error') p.reject(fromWireError(msg.error));
    else p.resolve(msg);
  }

  /** Fails the calls the dead worker owed; the next call starts a fresh one. */
  private onDeath(w: Worker, message: string): void {
    if (this.worker === w) this.worker = null;
    for (const [id, p] of this.pending) {
      if (p.worker !== w) continue;
      this.pending.delete(id);
      p.reject(new ArchiveError('EARCHIVE', message));
    }
    if (w.threadId !== -1) void w.terminate();
  }

  /** An idle worker must not keep the caller's process alive. */
  private idleCheck(w: Worker): void {
    for (const p of this.pending.values()) if (p.worker === w) return;
    w.unref();
  }
}

/** A volume's row where no lease server keeps leases. */
function noLease(st: VolumeState): VolumeLease {
  return {
    volume: st.name, state: 'none', epoch: st.epoch, appliedSeq: st.appliedSeq, holder: null, holderEpoch: null,
    leaseAgeSeconds: null, leaseSeconds: null, lagRecords: null, releasedAt: null, fencedBy: null, takeover: null,
  };
}
