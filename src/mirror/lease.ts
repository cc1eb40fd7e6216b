// The primary's side of its lease (issue 15, docs/takeover.md): renews the
// lease on its volume about every second over the mirror's archive
// connection, and says whether durability may still be promised. A renewal
// may take up to the lease to be answered, and the next ones go out
// meanwhile (a few at once): over a slow, full link a round trip can take
// longer than a third of the lease, and every renewal then still counts from
// when it was sent.
//
//  - held: renewed within the lease (measured from when the renewal that
//    succeeded was *sent*, on the monotonic clock, so this side always gives
//    up before the archive considers the lease lapsed);
//  - expired: no renewal for longer than the lease: fsync and sync-mode ops
//    fail with EIO (the mirror asks `durable`), reads and writes go on;
//  - fenced: the archive says another primary fenced the volume: the mount
//    turns read-only for good (EROFS), and `reason` says who and when;
//  - released: given up after a drain (`strata release`);
//  - local: an in-process file:// archive has no lease server: never expires
//    (the epoch is still checked on every renewal).
import { performance } from 'node:perf_hooks';
import { isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import type { LeaseHolder } from '../protocol/leases.js';
import type { Logger } from '../log/logger.js';

/** Renewals out at once: about a lease's worth at the default pace (one a second, 10 s lease) is more than a slow link needs. */
const MAX_RENEWALS_IN_FLIGHT = 8;

export type LeaseState = 'acquiring' | 'held' | 'expired' | 'fenced' | 'released' | 'local';

export interface LeaseStatus {
  state: LeaseState;
  holder: LeaseHolder;
  leaseSeconds: number;
  /** Seconds since the last successful renewal was sent (monotonic), null before the first. */
  ageSeconds: number | null;
  lastError: string | null;
  /** Why the mount is read-only (fenced: who and when), or null. */
  readOnly: string | null;
}

export interface LeaseKeeperOptions {
  leaseMs: number;
  /** Between renewals (default min(1000, lease / 4)). */
  renewMs?: number;
  /** Progress sent with each renewal (the archive shows the lag). */
  progress: () => { ackedSeq: number; lastSeq: number };
  /** The archive says the volume was fenced: turn read-only (called once). */
  onFenced: (reason: string) => void;
  /** Called when the lease runs out (durability no longer promised) and when it is held again. */
  onChange?: (state: LeaseState) => void;
  now?: () => number;
}

export class LeaseKeeper {
  private grantedAt: number | null = null;
  private enforced = true;
  private fencedReason: string | null = null;
  private releasedFlag = false;
  private lastError: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Renewals sent and not answered yet (at most MAX_RENEWALS_IN_FLIGHT). */
  private readonly inFlight = new Set<Promise<void>>();
  private lastReported: LeaseState = 'acquiring';
  private readonly now: () => number;
  private readonly renewMs: number;
  private readonly startedAt: number;

  constructor(
    private readonly client: ArchiveClient,
    readonly volume: string,
    readonly epoch: number,
    readonly holder: LeaseHolder,
    private readonly log: Logger,
    private readonly opts: LeaseKeeperOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.renewMs = opts.renewMs ?? Math.min(1000, Math.max(100, Math.floor(opts.leaseMs / 4)));
    this.startedAt = this.now();
  }

  get state(): LeaseState {
    if (this.fencedReason !== null) return 'fenced';
    if (this.releasedFlag) return 'released';
    if (!this.enforced) return 'local';
    if (this.grantedAt === null) return this.now() - this.startedAt > this.opts.leaseMs ? 'expired' : 'acquiring';
    return this.now() - this.grantedAt <= this.opts.leaseMs ? 'held' : 'expired';
  }

  /** May the mirror acknowledge durability now? (Not while acquiring: nothing was promised yet by the archive.) */
  get durable(): boolean {
    const s = this.state;
    return s === 'held' || s === 'local' || s === 'acquiring';
  }

  get fenced(): string | null {
    return this.fencedReason;
  }

  status(): LeaseStatus {
    return {
      state: this.state,
      holder: this.holder,
      leaseSeconds: this.opts.leaseMs / 1000,
      ageSeconds: this.grantedAt === null ? null : Math.round((this.now() - this.grantedAt) / 100) / 10,
      lastError: this.lastError,
      readOnly: this.fencedReason,
    };
  }

  /**
   * The first renewal, before the mount serves. Resolves 'held' (or 'local'),
   * 'fenced' (the store serves read-only), or 'unreachable' (it serves and
   * keeps trying); throws when another primary's lease is live (EHELD).
   */
  async acquire(): Promise<LeaseState | 'unreachable'> {
    try {
      await this.renewOnce(true);
    } catch (err) {
      if (isArchiveError(err, 'EHELD')) throw err;
      return 'unreachable';
    }
    return this.state;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), Math.min(this.renewMs, 250));
    this.timer.unref();
  }

  /**
   * No more renewals. Waits for those in flight (a release must not be
   * overtaken by one), but at most a third of the lease (3 s at most), as
   * long as one renewal used to take: an unmount with the archive hung waits
   * no longer than before. A release sent after that goes over the same
   * connection, behind them, and the archive takes requests in order.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.inFlight]),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.min(3000, Math.floor(this.opts.leaseMs / 3))); }),
    ]);
    clearTimeout(timer);
  }

  /** Gives the lease up (after the caller drained); the mount stays read-only. */
  async release(lastSeq: number): Promise<void> {
    await this.stop();
    await this.client.releaseLease(this.volume, { holder: this.holder, epoch: this.epoch, lastSeq });
    this.releasedFlag = true;
    this.log.info({ event: 'lease-released', volume: this.volume, lastSeq }, 'lease released after draining');
  }

  /**
   * Shipping found out it was fenced (EFENCED on a batch, or a higher epoch
   * seen while idle). The mount turns read-only at once; one more renewal
   * then asks the archive who fenced it and when, to say so.
   */
  markFenced(reason: string, fromRenewal = false): void {
    if (this.fencedReason !== null) return;
    this.fencedReason = reason;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.log.error({ event: 'fenced', volume: this.volume, epoch: this.epoch, reason }, `fenced: this mount is read-only from now on (${reason})`);
    this.opts.onFenced(reason);
    this.report();
    if (fromRenewal) return;
    const p = this.opts.progress();
    this.client.renewLease(this.volume, { holder: this.holder, epoch: this.epoch, leaseMs: this.opts.leaseMs, ackedSeq: p.ackedSeq, lastSeq: p.lastSeq }, 5000)
      .catch((err: unknown) => {
        if (!isArchiveError(err, 'EFENCED')) return;
        const detail = (err as Error).message;
        if (detail === this.fencedReason) return;
        this.fencedReason = detail;
        this.opts.onFenced(detail);
      });
  }

  private lastSentAt = -Infinity;

  private tick(): void {
    this.report();
    if (this.inFlight.size >= MAX_RENEWALS_IN_FLIGHT || this.fencedReason !== null || this.releasedFlag) return;
    if (this.now() - this.lastSentAt < this.renewMs) return;
    const p: Promise<void> = this.renewOnce(false).catch(() => {}).finally(() => { this.inFlight.delete(p); });
    this.inFlight.add(p);
  }

  private async renewOnce(first: boolean): Promise<void> {
    const sentAt = this.now();
    this.lastSentAt = sentAt;
    const p = this.opts.progress();
    try {
      // An answer later than the lease is of no use (it counts from when it was sent); the next renewals do not wait for this one.
      const grant = await this.client.renewLease(this.volume, { holder: this.holder, epoch: this.epoch, leaseMs: this.opts.leaseMs, ackedSeq: p.ackedSeq, lastSeq: p.lastSeq },
        Math.max(500, this.opts.leaseMs));
      if (this.fencedReason !== null || this.releasedFlag) return;
      this.enforced = grant.enforced;
      if (this.grantedAt === null || sentAt > this.grantedAt) this.grantedAt = sentAt;
      if (this.lastError !== null || first) this.log.info({ event: 'lease-held', volume: this.volume, epoch: this.epoch, leaseMs: this.opts.leaseMs, enforced: grant.enforced }, first ? 'lease acquired' : 'lease renewed again');
      this.lastError = null;
    } catch (err) {
      const msg = (err as Error).message;
      if (isArchiveError(err, 'EFENCED')) {
        this.markFenced(msg, true);
        return;
      }
      if (this.lastError === null) this.log.warn({ event: 'lease-renewal-failed', volume: this.volume, err: msg }, 'lease: renewal failed; retrying');
      this.lastError = msg;
      throw err;
    } finally {
      this.report();
    }
  }

  /** Logs and reports each change between held and expired. */
  private report(): void {
    const s = this.state;
    if (s === this.lastReported) return;
    const prev = this.lastReported;
    this.lastReported = s;
    if (s === 'expired') {
      this.log.error({ event: 'lease-expired', volume: this.volume, leaseMs: this.opts.leaseMs, lastError: this.lastError },
        'lease expired: no renewal within the lease; fsync and sync-mode writes fail with EIO until it is renewed');
    } else if (s === 'held' && prev === 'expired') {
      this.log.info({ event: 'lease-held', volume: this.volume }, 'lease held again: durability is promised again');
    }
    this.opts.onChange?.(s);
  }
}
