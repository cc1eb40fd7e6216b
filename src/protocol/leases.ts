// Leases (issue 15): every mounted, mirrored primary holds a lease on its
// volume at the archive and renews it about every second over its archive
// connection. The archive keeps, per volume, who holds it (host, store id,
// pid, mountpoint), at which epoch, when it last renewed (monotonic time on
// the archive), what it has applied and how far behind the holder is. A
// primary that cannot renew within its lease stops promising durability; one
// that is told it was fenced turns read-only. docs/takeover.md.
import { badVolumeNameReason } from './images.js';

/** Who holds a lease. */
export interface LeaseHolder {
  host: string;
  /** A random id kept in the store (STORE/.strata/mirror.json): two copies of a store are one holder. */
  storeId: string;
  pid: number;
  /** Where that primary serves the volume. */
  mountpoint: string;
}

/** A renewal (the first one acquires the lease). */
export interface LeaseRenewal {
  holder: LeaseHolder;
  /** The epoch the primary ships with. */
  epoch: number;
  /** The holder's lease, ms: it stops promising durability this long after its last successful renewal. */
  leaseMs: number;
  /** The archive's applied sequence as the holder last heard it, and the holder's own last sequence (lag = difference). */
  ackedSeq: number;
  lastSeq: number;
}

export interface LeaseGrant {
  epoch: number;
  leaseMs: number;
  /** False for an in-process file:// archive: there is no lease server, the lease never expires (the epoch is still checked). */
  enforced: boolean;
}

/** A planned move: the holder gives its lease up after draining. */
export interface LeaseRelease {
  holder: LeaseHolder;
  epoch: number;
  /** The holder's last sequence: the archive refuses the release unless it has applied it. */
  lastSeq: number;
}

export interface FenceOptions {
  /** Who fences (the recovering primary); it holds the lease from then on. */
  holder?: LeaseHolder;
  /** Its lease, ms (default 10 000). */
  leaseMs?: number;
  /** Fence even though another primary's lease is live. */
  force?: boolean;
}

export interface FencedBy {
  /** The epoch the fence gave the volume. */
  epoch: number;
  holder: LeaseHolder | null;
  /** ISO time on the archive. */
  at: string;
  /** The archive host's automatic takeover did it. */
  takeover: boolean;
  force: boolean;
}

export type VolumeLeaseState =
  /** No primary has held a lease on it (never mounted against this server, or a file:// archive). */
  | 'none'
  /** Its holder renews. */
  | 'active'
  /** Its holder has not renewed within its lease. */
  | 'lapsed'
  /** Served by the archive host's takeover mount (which renews). */
  | 'taken over'
  /** Given up by its holder after draining (a planned move); any host may recover it. */
  | 'released'
  /** Its holder's epoch is older than the volume's: fenced by a recovery, the new holder has not renewed yet. */
  | 'fenced';

export interface TakeoverInfo {
  state: 'waiting' | 'starting' | 'serving' | 'failed' | 'released' | 'cancelled';
  store: string;
  mountpoint: string;
  /** When the takeover mount began serving (ISO). */
  since: string | null;
  epoch: number | null;
  attempts: number;
  lastError: string | null;
  /** Seconds until the next attempt of a failed takeover. */
  retryInSeconds: number | null;
  /** Figures of the last successful takeover, seconds. */
  timings: { detection: number; recover: number; servedAfter: number | null; hook: number | null } | null;
}

/** One row of `strata archive status`. */
export interface VolumeLease {
  volume: string;
  state: VolumeLeaseState;
  epoch: number;
  appliedSeq: number;
  holder: LeaseHolder | null;
  holderEpoch: number | null;
  /** Seconds since the holder's last renewal (monotonic on the archive), null without a holder. */
  leaseAgeSeconds: number | null;
  leaseSeconds: number | null;
  /** Records the holder has that the archive has not applied (as of its last renewal). */
  lagRecords: number | null;
  releasedAt: string | null;
  fencedBy: FencedBy | null;
  takeover: TakeoverInfo | null;
}

export function describeHolder(h: LeaseHolder | null): string {
  if (h === null) return 'nobody';
  return `${h.host} (pid ${h.pid}, mount ${h.mountpoint}, store ${h.storeId.slice(0, 8)})`;
}

function isObj(v: unknown): v is { [k: string]: unknown } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const uint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const text = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max && !/[\0-\x1f]/.test(v);

/** Checks a holder from the network; returns why it is bad, or null. */
export function badHolderReason(v: unknown): string | null {
  if (!isObj(v)) return 'holder must be an object';
  if (!text(v.host, 255)) return 'holder.host must be 1-255 printable characters';
  if (typeof v.storeId !== 'string' || !/^[0-9a-f]{8,64}$/.test(v.storeId)) return 'holder.storeId must be 8-64 lowercase hex digits';
  if (!uint(v.pid) || v.pid > 0x7fffffff) return 'holder.pid must be a process id';
  if (!text(v.mountpoint, 4096)) return 'holder.mountpoint must be 1-4096 printable characters';
  return null;
}

export const LEASE_LIMITS = { minLeaseMs: 1000, maxLeaseMs: 3_600_000 } as const;

export function badRenewalReason(v: unknown): string | null {
  if (!isObj(v)) return 'body must be a JSON object';
  const h = badHolderReason(v.holder);
  if (h !== null) return h;
  if (!uint(v.epoch) || v.epoch < 1) return 'epoch must be a positive integer';
  if (!uint(v.leaseMs) || v.leaseMs < LEASE_LIMITS.minLeaseMs || v.leaseMs > LEASE_LIMITS.maxLeaseMs) {
    return `leaseMs must be an integer ${LEASE_LIMITS.minLeaseMs}..${LEASE_LIMITS.maxLeaseMs}`;
  }
  if (!uint(v.ackedSeq) || !uint(v.lastSeq)) return 'ackedSeq and lastSeq must be non-negative integers';
  return null;
}

export function badReleaseReason(v: unknown): string | null {
  if (!isObj(v)) return 'body must be a JSON object';
  const h = badHolderReason(v.holder);
  if (h !== null) return h;
  if (!uint(v.epoch) || v.epoch < 1) return 'epoch must be a positive integer';
  if (!uint(v.lastSeq)) return 'lastSeq must be a non-negative integer';
  return null;
}

export function badFenceOptionsReason(v: unknown): string | null {
  if (v === null) return null;
  if (!isObj(v)) return 'body must be a JSON object';
  if (v.holder !== undefined) {
    const h = badHolderReason(v.holder);
    if (h !== null) return h;
  }
  if (v.leaseMs !== undefined && (!uint(v.leaseMs) || v.leaseMs < LEASE_LIMITS.minLeaseMs || v.leaseMs > LEASE_LIMITS.maxLeaseMs)) return 'leaseMs out of range';
  if (v.force !== undefined && typeof v.force !== 'boolean') return 'force must be a boolean';
  return null;
}

export { badVolumeNameReason };
