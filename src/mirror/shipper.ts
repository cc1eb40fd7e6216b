// The shipper: streams journal records in order to the archive, one batch at
// a time, and waits for each ack. After any failure it reconnects with
// exponential backoff and asks the archive where it stands (its applied
// sequence number), so it resumes exactly there; the archive skips records it
// already has, so a batch resent after a lost ack is harmless. Acknowledged
// segments are trimmed from the journal.
import type { Journal } from '../journal/journal.js';
import { isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import type { Logger } from '../log/logger.js';

export type ShipperState =
  /** Not connected yet, or reconnecting after a failure. */
  | 'connecting'
  /** Connected: every record written so far has been sent or is being sent. */
  | 'connected'
  /** The last attempt failed; retrying after a backoff. */
  | 'disconnected'
  /** A request to the archive has had no answer for UNRESPONSIVE_MS (a hung archive or link): nothing is acknowledged meanwhile. */
  | 'unresponsive'
  /** The archive refused our epoch: another primary owns the volume. Shipping stopped. */
  | 'fenced'
  /** The archive refused our records for good (a gap, a bad record). Shipping stopped. */
  | 'failed'
  | 'stopped';

export interface ShipperOptions {
  /** Bytes of records per batch (default 4 MiB). */
  batchBytes?: number;
  /**
   * A batch smaller than a quarter of batchBytes waits this long for more
   * records when nobody waits for an ack (default 100 ms): fewer, larger
   * archive transactions. A waiter (sync mode, fsync, strata sync) cuts it short.
   */
  lingerMs?: number;
  /** First and largest pause between attempts, ms (defaults 100 and 5 000). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** An idle shipper asks the archive where it stands this often (default 5 000 ms). */
  heartbeatMs?: number;
  /** A request without answer for this long shows as 'unresponsive' (default 5 000 ms). */
  unresponsiveMs?: number;
}

interface AckWaiter {
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Shipper {
  state: ShipperState = 'connecting';
  lastError: string | null = null;
  /** The archive's applied sequence number, as last heard (0 until then). */
  ackedSeq = 0;
  lastAckAt: Date | null = null;
  /** Records and bytes shipped by this process. */
  shippedRecords = 0;
  shippedBytes = 0;
  /** Told of every batch the archive acked: its records, bytes, and the seconds from sending it to the ack (metrics). */
  onShipped: ((records: number, bytes: number, seconds: number) => void) | null = null;
  /** Told when shipping stops for good (fenced, failed). */
  onStop: ((state: 'fenced' | 'failed', reason: string) => void) | null = null;
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private interrupt: (() => void) | null = null;
  private cutLinger: (() => void) | null = null;
  private readonly lingerMs: number;
  private waiters: AckWaiter[] = [];
  private readonly ackListeners = new Set<(seq: number) => void>();
  private knowsArchive = false;
  private backoffMs: number;
  private readonly batchBytes: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;
  private stopWritten: (() => void) | null = null;
  /**
   * The buffer batches are read into, reused from one batch to the next (a
   * new one per batch cost an allocation of batchBytes and its page faults):
   * dropped after a failed send, whose request might still hold it.
   */
  private scratch: Buffer | null = null;
  /** When the request to the archive in flight was sent (null: none). */
  private requestSince: number | null = null;
  /** An idle shipper asks the archive where it stands this often, so that status sees an archive that went away. */
  private readonly heartbeatMs: number;
  /** A request outstanding this long makes the connection 'unresponsive' in status. */
  private readonly unresponsiveMs: number;

  constructor(
    private readonly journal: Journal,
    private readonly client: ArchiveClient,
    readonly volume: string,
    readonly epoch: number,
    private readonly log: Logger,
    opts: ShipperOptions = {},
  ) {
    this.batchBytes = opts.batchBytes ?? 4 * 1024 * 1024;
    this.backoffMinMs = opts.backoffMinMs ?? 100;
    this.backoffMaxMs = opts.backoffMaxMs ?? 5000;
    this.backoffMs = this.backoffMinMs;
    this.lingerMs = opts.lingerMs ?? 100;
    this.heartbeatMs = opts.heartbeatMs ?? 5000;
    this.unresponsiveMs = opts.unresponsiveMs ?? 5000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopWritten = this.journal.onWritten(() => this.poke());
    this.loop = this.run();
  }

  /** Stops after the batch in flight (if any). */
  async stop(): Promise<void> {
    this.running = false;
    this.stopWritten?.();
    this.poke();
    this.interrupt?.();
    this.cutLinger?.();
    await this.loop;
    if (this.state !== 'fenced' && this.state !== 'failed') this.state = 'stopped';
  }

  /** The state as `strata status` shows it: a request long without answer makes a connected shipper 'unresponsive'. */
  get connection(): { state: ShipperState; lastError: string | null } {
    const waited = this.requestSince === null ? 0 : Date.now() - this.requestSince;
    if (this.state === 'connected' && waited > this.unresponsiveMs) {
      return { state: 'unresponsive', lastError: `no answer from the archive for ${Math.round(waited / 1000)} s` };
    }
    return { state: this.state, lastError: this.lastError };
  }

  /** A request to the archive, timed for `connection`. */
  private async ask<T>(p: () => Promise<T>): Promise<T> {
    this.requestSince = Date.now();
    try {
      return await p();
    } finally {
      this.requestSince = null;
    }
  }

  /** True when the archive has every record appended so far. */
  get drained(): boolean {
    return this.ackedSeq >= this.journal.lastSeq;
  }

  /** Resolves once the archive acknowledged `seq`; rejects when shipping stopped for good. */
  waitAcked(seq: number): Promise<void> {
    if (this.ackedSeq >= seq) return Promise.resolve();
    if (this.state === 'fenced' || this.state === 'failed') return Promise.reject(new Error(`shipping stopped: ${this.lastError ?? this.state}`));
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.cutLinger?.();
      // A record still in memory must reach the segment before it can ship.
      this.journal.flush().catch(() => {});
    });
  }

  /** Called with the new acked sequence number after every ack. */
  onAck(listener: (seq: number) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Wakes the loop (new records were written). */
  poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async run(): Promise<void> {
    let lingered = false;
    while (this.running) {
      try {
        if (!this.knowsArchive) {
          const st = await this.ask(() => this.client.volumeState(this.volume));
          if (st === null) throw Object.assign(new Error(`volume ${this.volume} does not exist on the archive`), { code: 'ENOVOLUME' });
          if (st.epoch > this.epoch) {
            this.stopFor('fenced', `the archive's epoch for ${this.volume} is ${st.epoch}, this primary's is ${this.epoch}: another primary took over`);
            return;
          }
          this.knowsArchive = true;
          this.acknowledge(st.appliedSeq);
          if (this.state !== 'connected') this.log.info({ volume: this.volume, appliedSeq: st.appliedSeq }, 'shipper: connected to the archive');
          this.state = 'connected';
          this.lastError = null;
        }
        let batch;
        try {
          this.scratch ??= Buffer.allocUnsafe(this.batchBytes);
          batch = await this.journal.readAfter(this.ackedSeq, this.batchBytes, this.scratch);
        } catch (err) {
          // The journal cannot continue where the archive stands (it lost records
          // the archive never got): retrying cannot help.
          this.stopFor('failed', `journal: ${(err as Error).message}`);
          return;
        }
        if (batch === null) {
          // Nothing to ship: ask the archive again now and then (it may have gone, or fenced this primary).
          if (!(await this.idle())) this.knowsArchive = false;
          continue;
        }
        if (!lingered && this.lingerMs > 0 && this.waiters.length === 0 && batch.frames.length < this.batchBytes / 4) {
          lingered = true;
          await this.linger(this.lingerMs);
          continue;
        }
        lingered = false;
        const sentAt = process.hrtime.bigint();
        const res = await this.ask(() => this.client.ship(this.volume, this.epoch, batch.frames));
        this.onShipped?.(batch.count, batch.frames.length, Number(process.hrtime.bigint() - sentAt) / 1e9);
        this.shippedRecords += batch.count;
        this.shippedBytes += batch.frames.length;
        this.acknowledge(res.appliedSeq);
        this.backoffMs = this.backoffMinMs;
        await this.journal.trim(this.ackedSeq);
      } catch (err) {
        if (isArchiveError(err, 'EFENCED')) {
          this.stopFor('fenced', (err as Error).message);
          return;
        }
        if (isArchiveError(err, 'EGAP') || isArchiveError(err, 'EBADREQ') || isArchiveError(err, 'ENOVOLUME')) {
          this.stopFor('failed', (err as Error).message);
          return;
        }
        this.knowsArchive = false;
        this.scratch = null;
        // The archive is rebuilding this volume's head from a snapshot (a rollback): expected, over in seconds; retried every second at most.
        const rebuilding = isArchiveError(err, 'EUNAVAILABLE') && /being rebuilt/.test((err as Error).message);
        if (this.state !== 'disconnected') {
          if (rebuilding) this.log.info({ err: (err as Error).message, volume: this.volume }, 'shipper: the archive is rebuilding this volume from a snapshot; records wait in the journal');
          else this.log.warn({ err, volume: this.volume }, 'shipper: archive unreachable, retrying');
        }
        this.state = 'disconnected';
        this.lastError = (err as Error).message;
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(rebuilding ? Math.min(1000, this.backoffMaxMs) : this.backoffMaxMs, this.backoffMs * 2);
      }
    }
  }

  private acknowledge(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    this.lastAckAt = new Date();
    const keep: AckWaiter[] = [];
    for (const w of this.waiters) {
      if (w.seq <= seq) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
    for (const l of this.ackListeners) l(seq);
  }

  private stopFor(state: 'fenced' | 'failed', reason: string): void {
    this.state = state;
    this.lastError = reason;
    this.running = false;
    this.log.error({ volume: this.volume, reason }, `shipper: stopped (${state})`);
    const err = new Error(`shipping stopped (${state}): ${reason}`);
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    this.onStop?.(state, reason);
  }

  /** Waits for new records (true) or the heartbeat (false). */
  private idle(): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = null; resolve(false); }, this.heartbeatMs);
      timer.unref();
      this.wake = () => { clearTimeout(timer); resolve(true); };
      // Records written between the read and now would otherwise wait for the next append.
      if (this.journal.writtenSeq > this.ackedSeq || !this.running) this.poke();
    });
  }

  private linger(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.cutLinger = null; resolve(); }, ms);
      this.cutLinger = () => { this.cutLinger = null; clearTimeout(timer); resolve(); };
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      // New records do not cut a backoff short; only stop() does.
      const timer = setTimeout(() => { this.interrupt = null; resolve(); }, ms);
      this.interrupt = () => { clearTimeout(timer); resolve(); };
    });
  }
}
