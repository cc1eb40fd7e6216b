// The archive's lease table (issue 15, docs/takeover.md): per volume, who
// holds its lease (host, store id, pid, mountpoint), at which epoch, when it
// last renewed, what it reported of its progress, whether it released the
// volume, and who fenced it. Lease ages use monotonic time (performance.now),
// so a clock jump on the archive host neither expires nor extends a lease.
//
// Renewals live in memory (one a second per primary: no disk write); holder
// changes, releases and fences are also written to DATA/leases.json (atomic
// replace, fsync) so that after a restart the archive still knows who held
// what. A restart starts every lease's age at zero: the grace period begins
// when the archive is back, so no takeover fires merely because the archive
// itself was down.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';
import { ArchiveError } from '../protocol/archive-api.js';
import { describeHolder, type FencedBy, type FenceOptions, type LeaseGrant, type LeaseHolder, type LeaseRelease, type LeaseRenewal, type VolumeLeaseState } from '../protocol/leases.js';

export const DEFAULT_LEASE_MS = 10_000;

export interface LeaseRow {
  volume: string;
  holder: LeaseHolder | null;
  holderEpoch: number | null;
  leaseMs: number;
  /** Monotonic ms of the last renewal (or of the load after a restart); null: never. */
  renewedAt: number | null;
  ackedSeq: number;
  lastSeq: number;
  releasedAt: string | null;
  fencedBy: FencedBy | null;
  /** Logged once per lapse. */
  lapsedLogged: boolean;
}

interface Persisted {
  format: 1;
  volumes: { volume: string; holder: LeaseHolder | null; holderEpoch: number | null; leaseMs: number; releasedAt: string | null; fencedBy: FencedBy | null }[];
}

export interface LeaseTableOptions {
  /** Where holders, releases and fences are kept (null: memory only, for tests). */
  file: string | null;
  log: Logger;
  /** Monotonic clock, ms (tests inject one). */
  now?: () => number;
  /** Says whether a holder is the archive host's own takeover mount. */
  isTakeover?: (h: LeaseHolder) => boolean;
}

export class LeaseTable {
  private readonly rows = new Map<string, LeaseRow>();
  private readonly now: () => number;
  /** The volumes' epochs as this server last saw them (fences go through it). */
  private readonly epochs = new Map<string, number>();

  constructor(private readonly opts: LeaseTableOptions) {
    this.now = opts.now ?? (() => performance.now());
    if (opts.file !== null) this.load(opts.file);
  }

  /** Called with the volume's current epoch. Throws EFENCED (old epoch) or EHELD (another holder's lease is live). */
  renew(volume: string, r: LeaseRenewal, volumeEpoch: number): LeaseGrant {
    this.epochs.set(volume, volumeEpoch);
    const row = this.row(volume);
    if (r.epoch < volumeEpoch) throw new ArchiveError('EFENCED', this.fencedMessage(volume, r.epoch, volumeEpoch));
    if (r.epoch > volumeEpoch) throw new ArchiveError('EBADREQ', `unknown epoch ${r.epoch} (volume ${volume} is at ${volumeEpoch})`);
    const same = row.holder !== null && row.holder.storeId === r.holder.storeId;
    if (!same && this.live(row)) {
      throw new ArchiveError('EHELD', `volume ${volume} is held by ${describeHolder(row.holder)}, lease renewed ${this.ageSeconds(row)!.toFixed(1)} s ago ` +
        `(lease ${row.leaseMs / 1000} s); release it there (strata release) or wait until it lapses`);
    }
    const changed = !same || row.holder!.pid !== r.holder.pid || row.holder!.mountpoint !== r.holder.mountpoint || row.releasedAt !== null || row.holderEpoch !== r.epoch;
    const wasLapsed = row.lapsedLogged;
    row.holder = r.holder;
    row.holderEpoch = r.epoch;
    row.leaseMs = r.leaseMs;
    row.renewedAt = this.now();
    row.ackedSeq = r.ackedSeq;
    row.lastSeq = r.lastSeq;
    row.releasedAt = null;
    row.lapsedLogged = false;
    if (changed) {
      this.opts.log.info({ event: 'lease-acquired', volume, holder: r.holder, epoch: r.epoch, leaseMs: r.leaseMs }, `lease on ${volume} acquired by ${describeHolder(r.holder)}`);
      this.save();
    } else if (wasLapsed) {
      this.opts.log.info({ event: 'lease-renewed-after-lapse', volume, holder: r.holder, epoch: r.epoch }, `lease on ${volume} renewed again by its holder`);
    }
    return { epoch: volumeEpoch, leaseMs: r.leaseMs, enforced: true };
  }

  /** The holder gives its lease up (it has drained: the caller checked appliedSeq). */
  release(volume: string, r: LeaseRelease): void {
    const row = this.row(volume);
    if (row.holder === null || row.holder.storeId !== r.holder.storeId) {
      throw new ArchiveError('EHELD', `volume ${volume} is held by ${describeHolder(row.holder)}, not by this primary: nothing to release`);
    }
    if (row.holderEpoch !== r.epoch) throw new ArchiveError('EFENCED', this.fencedMessage(volume, r.epoch, this.epochs.get(volume) ?? r.epoch));
    row.releasedAt = new Date().toISOString();
    row.lapsedLogged = false;
    this.opts.log.info({ event: 'lease-released', volume, holder: row.holder, epoch: r.epoch, lastSeq: r.lastSeq }, `lease on ${volume} released by ${describeHolder(row.holder)} after draining`);
    this.save();
  }

  /** Operator: release a volume whose holder is gone (EHELD while its lease is live). */
  releaseLapsed(volume: string): void {
    const row = this.row(volume);
    if (this.live(row)) throw new ArchiveError('EHELD', `volume ${volume} is held by ${describeHolder(row.holder)} (lease renewed ${this.ageSeconds(row)!.toFixed(1)} s ago): run strata release on that host`);
    if (row.releasedAt !== null) return;
    row.releasedAt = new Date().toISOString();
    this.opts.log.info({ event: 'lease-released', volume, holder: row.holder, by: 'operator' }, `lease on ${volume} released by the operator (its holder was gone)`);
    this.save();
  }

  /** Throws EHELD unless the fence may go ahead (no live lease of another holder, or force). */
  checkFence(volume: string, opts: FenceOptions): void {
    const row = this.row(volume);
    if (opts.force === true || !this.live(row)) return;
    if (opts.holder !== undefined && row.holder?.storeId === opts.holder.storeId) return;
    throw new ArchiveError('EHELD', `volume ${volume} is held by ${describeHolder(row.holder)}, lease renewed ${this.ageSeconds(row)!.toFixed(1)} s ago ` +
      `(lease ${row.leaseMs / 1000} s): release it there first (strata release), or recover with --force to fence it anyway`);
  }

  /** After the store bumped the epoch: the fencer holds the lease from now on. */
  fenced(volume: string, newEpoch: number, opts: FenceOptions): FencedBy {
    this.epochs.set(volume, newEpoch);
    const row = this.row(volume);
    const by: FencedBy = {
      epoch: newEpoch, holder: opts.holder ?? null, at: new Date().toISOString(),
      takeover: opts.holder !== undefined && (this.opts.isTakeover?.(opts.holder) ?? false), force: opts.force === true,
    };
    const previous = row.holder;
    row.fencedBy = by;
    row.releasedAt = null;
    row.lapsedLogged = false;
    if (opts.holder !== undefined) {
      row.holder = opts.holder;
      row.holderEpoch = newEpoch;
      row.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
      row.renewedAt = this.now();
    }
    this.opts.log.info({ event: 'fenced', volume, epoch: newEpoch, by: opts.holder ?? null, previous, force: by.force, takeover: by.takeover },
      `volume ${volume} fenced at epoch ${newEpoch} by ${describeHolder(opts.holder ?? null)}${by.takeover ? ' (takeover)' : ''}${by.force ? ' (forced)' : ''}`);
    this.save();
    return by;
  }

  /** Known epoch of a volume (from renewals and fences through this server), or undefined. */
  epochOf(volume: string): number | undefined {
    return this.epochs.get(volume);
  }

  forgetEpoch(volume: string): void {
    this.epochs.delete(volume);
  }

  get(volume: string): LeaseRow | undefined {
    return this.rows.get(volume);
  }

  all(): LeaseRow[] {
    return [...this.rows.values()];
  }

  /** Seconds since the last renewal (monotonic), or null. */
  ageSeconds(row: LeaseRow): number | null {
    return row.renewedAt === null ? null : Math.max(0, this.now() - row.renewedAt) / 1000;
  }

  ageMs(row: LeaseRow): number | null {
    return row.renewedAt === null ? null : Math.max(0, this.now() - row.renewedAt);
  }

  /** A holder whose lease has not run out (and that did not release it). */
  live(row: LeaseRow): boolean {
    return row.holder !== null && row.releasedAt === null && row.renewedAt !== null && this.now() - row.renewedAt <= row.leaseMs;
  }

  stateOf(row: LeaseRow | undefined, volumeEpoch: number): VolumeLeaseState {
    if (row === undefined || row.holder === null) return row?.fencedBy ? 'fenced' : 'none';
    if (row.releasedAt !== null) return 'released';
    if (row.holderEpoch !== null && row.holderEpoch < volumeEpoch) return 'fenced';
    if (!this.live(row)) return 'lapsed';
    return this.opts.isTakeover?.(row.holder) ? 'taken over' : 'active';
  }

  /** Logs each lease that lapsed since the last call (once per lapse); returns the lapsed rows. */
  tick(): LeaseRow[] {
    const lapsed: LeaseRow[] = [];
    for (const row of this.rows.values()) {
      if (row.holder === null || row.releasedAt !== null || this.live(row)) continue;
      lapsed.push(row);
      if (!row.lapsedLogged) {
        row.lapsedLogged = true;
        this.opts.log.warn({ event: 'lease-lapsed', volume: row.volume, holder: row.holder, epoch: row.holderEpoch, ageSeconds: this.ageSeconds(row), leaseSeconds: row.leaseMs / 1000 },
          `lease on ${row.volume} lapsed: ${describeHolder(row.holder)} has not renewed for ${this.ageSeconds(row)!.toFixed(1)} s`);
      }
    }
    return lapsed;
  }

  /** The EFENCED message: who fenced the volume, and when. */
  fencedMessage(volume: string, epoch: number, volumeEpoch: number): string {
    const by = this.rows.get(volume)?.fencedBy;
    const who = by ? ` by ${describeHolder(by.holder)} at ${by.at}${by.takeover ? ' (automatic takeover by the archive host)' : ''}${by.force ? ' (forced)' : ''}` : '';
    return `volume ${volume} is at epoch ${volumeEpoch}; epoch ${epoch} was fenced${who}`;
  }

  private row(volume: string): LeaseRow {
    let row = this.rows.get(volume);
    if (!row) {
      row = { volume, holder: null, holderEpoch: null, leaseMs: DEFAULT_LEASE_MS, renewedAt: null, ackedSeq: 0, lastSeq: 0, releasedAt: null, fencedBy: null, lapsedLogged: false };
      this.rows.set(volume, row);
    }
    return row;
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const p = JSON.parse(text) as Persisted;
    if (p.format !== 1 || !Array.isArray(p.volumes)) throw new Error(`${file}: not a strata lease table`);
    const start = this.now();
    for (const v of p.volumes) {
      // The grace period starts now: every holder gets a full lease to renew.
      this.rows.set(v.volume, {
        volume: v.volume, holder: v.holder, holderEpoch: v.holderEpoch, leaseMs: v.leaseMs, renewedAt: v.holder !== null ? start : null,
        ackedSeq: 0, lastSeq: 0, releasedAt: v.releasedAt, fencedBy: v.fencedBy, lapsedLogged: false,
      });
    }
    this.opts.log.info({ event: 'leases-loaded', volumes: p.volumes.length }, 'lease table loaded: every holder has a full lease from now to renew');
  }

  private save(): void {
    const file = this.opts.file;
    if (file === null) return;
    const p: Persisted = {
      format: 1,
      volumes: [...this.rows.values()].map((r) => ({ volume: r.volume, holder: r.holder, holderEpoch: r.holderEpoch, leaseMs: r.leaseMs, releasedAt: r.releasedAt, fencedBy: r.fencedBy })),
    };
    writeDurably(file, `${JSON.stringify(p, null, 2)}\n`);
  }
}

/** Atomic, durable replace (small file; synchronous so that no two writes interleave). */
export function writeDurably(file: string, content: string): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dir = openSync(file.slice(0, file.lastIndexOf('/')) || '/', 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
