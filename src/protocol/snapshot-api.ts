// Snapshots on conditions (docs/snapshots.md): what an archive says about its
// storage targets, its snapshot catalog and the alerts it received, and the
// interface through which the operator tools (and `strata recover
// --snapshot/--condition`, and a primary raising a condition) reach it,
// whatever the transport: in-process for `file://DIR`, HTTP/2 for
// `strata://HOST:PORT`. Shared by the archive and its clients.
import type { VolumeState } from './images.js';

/** What made a snapshot. `rollback`: the head kept automatically before a recovery from an older snapshot replaced it. */
export type SnapshotTrigger = 'manual' | 'schedule' | 'alert' | 'rollback';

/**
 * `copying`: being written to its target (never readable as a snapshot yet);
 * `complete`: every row and block is on its target, verified as written;
 * `failed`: the copy could not finish anywhere (`error` says why), nothing of it is kept;
 * `lost`: complete once, but its target is gone (missing, replaced, unreadable).
 */
export type SnapshotState = 'copying' | 'complete' | 'failed' | 'lost';

export interface SnapshotVerification {
  at: string;
  ok: boolean;
  /** Distinct blocks re-hashed. */
  blocks: number;
  /** Blocks whose bytes did not match their digest, or could not be read. */
  bad: number;
  /** The first few problems, for people. */
  errors: string[];
}

/** One catalog row. */
export interface SnapshotInfo {
  id: string;
  volume: string;
  /** The target holding it (or that it is being copied to); null when no target could take it. */
  target: string | null;
  trigger: SnapshotTrigger;
  /** The condition whose alert took it (trigger `alert`), or null. */
  condition: string | null;
  reason: string | null;
  state: SnapshotState;
  /** The recovery point: the volume's applied record when the snapshot was taken. */
  record: number;
  /** When it was taken (the recovery point's time), ISO 8601. */
  createdAt: string;
  completedAt: string | null;
  /** The alert's labels and annotations (trigger `alert`), else empty. */
  labels: { [name: string]: string };
  annotations: { [name: string]: string };
  /** Regular-file bytes in the snapshot's tree. */
  sizeBytes: number;
  /** Distinct blocks it references. */
  blockCount: number;
  /** Entries (names) in its tree. */
  entries: number;
  /** Why it failed or was lost; null otherwise. */
  error: string | null;
  /** Targets tried before the current one, and why each was left. */
  attempts: { target: string; error: string }[];
  lastVerification: SnapshotVerification | null;
}

export interface TargetInfo {
  name: string;
  path: string;
  /** major:minor of the filesystem holding it (null when it cannot be read). */
  device: string | null;
  freeBytes: number | null;
  totalBytes: number | null;
  /** Its snapshots can be read (directory, identity marker and database are there). */
  readable: boolean;
  /** New snapshots may go there (readable, a test write succeeds, free space above the minimum). */
  writable: boolean;
  /** readable && writable. */
  healthy: boolean;
  /** Why it is not healthy; null when it is. */
  problem: string | null;
  /** Other targets (or `data`, the archive's data directory) on the same device. */
  sharesDeviceWith: string[];
  /** Complete snapshots it holds according to the catalog. */
  snapshots: number;
}

export type AlertDecisionKind =
  /** A snapshot was started (`snapshot` names it). */
  | 'snapshot'
  /** A resolved alert: logged only. */
  | 'resolved'
  /** No condition matches the alert. */
  | 'no-match'
  /** A condition matches, but it took a snapshot of this volume less than its min-interval ago. */
  | 'suppressed'
  /** The alert lacks the label that names the volume. */
  | 'no-volume'
  /** The label names no volume of this archive. */
  | 'unknown-volume'
  /** A snapshot could not be started (no other healthy target, ...): `detail` says why. */
  | 'refused';

export interface AlertDecision {
  receivedAt: string;
  /** `alertmanager` (the webhook) or `primary` (raised by a strata primary). */
  source: 'alertmanager' | 'primary';
  status: 'firing' | 'resolved';
  alertname: string | null;
  labels: { [name: string]: string };
  volume: string | null;
  condition: string | null;
  decision: AlertDecisionKind;
  snapshot: string | null;
  detail: string;
}

/** An alert as the archive evaluates it (one alert of an Alertmanager webhook, or one a primary raised). */
export interface IncomingAlert {
  status: 'firing' | 'resolved';
  labels: { [name: string]: string };
  annotations: { [name: string]: string };
  startsAt?: string;
  fingerprint?: string;
}

export interface SnapshotChoice {
  snapshot: SnapshotInfo;
  /** Why this one, for people ("newest complete snapshot of vol1 for condition disk-errors ..."). */
  why: string;
  /** Newer candidates passed over, and why. */
  skipped: { id: string; target: string | null; why: string }[];
}

export interface RollbackResult {
  /** The volume after the rollback: its head is the snapshot's tree, at a new epoch and record. */
  state: VolumeState;
  /** The snapshot the head now equals. */
  from: SnapshotInfo;
  /** The automatic snapshot of the head that was replaced (null when the head was empty or absent). */
  kept: SnapshotInfo | null;
}

/**
 * Options of a rollback made by the volume's own primary (a swap, docs/swap.md):
 * - `holder`: the caller holds the volume's lease at `epoch` (store id
 *   `storeId`): the epoch is kept (no fence: the caller is the only
 *   primary and goes on shipping at that epoch); refused with EFENCED when
 *   the volume is at another epoch, EHELD when another store holds its lease;
 * - `keptBy`: the head is already kept by this snapshot (of the volume, at
 *   the head's record, copying or complete): no `rollback` snapshot of the
 *   same tree is taken (one is taken when it does not qualify).
 */
export interface RollbackOptions {
  holder?: { epoch: number; storeId: string };
  keptBy?: string;
}

export function badRollbackOptionsReason(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object') return 'options must be an object';
  const o = v as { holder?: unknown; keptBy?: unknown };
  if (o.keptBy !== undefined && !isSnapshotId(o.keptBy)) return 'keptBy must be a snapshot id';
  if (o.holder !== undefined) {
    const h = o.holder as { epoch?: unknown; storeId?: unknown } | null;
    if (h === null || typeof h !== 'object' || !Number.isSafeInteger(h.epoch) || (h.epoch as number) < 1 ||
      typeof h.storeId !== 'string' || h.storeId.length === 0 || h.storeId.length > 128) return 'holder must be {epoch: a positive integer, storeId: a string}';
  }
  return null;
}

export interface GcResult {
  /** Per store (`data` or a target's name): blocks dropped, pack bytes reclaimed, packs rewritten. */
  stores: { store: string; blocksDropped: number; bytesReclaimed: number; packsRewritten: number; rowsPruned: number }[];
}

export interface SnapshotClient {
  readonly url: string;
  targets(): Promise<TargetInfo[]>;
  /** Pins the volume's applied record now and starts copying it (state `copying`). */
  createSnapshot(volume: string, opts?: { reason?: string }): Promise<SnapshotInfo>;
  listSnapshots(filter?: { volume?: string; condition?: string }): Promise<SnapshotInfo[]>;
  getSnapshot(id: string): Promise<SnapshotInfo>;
  deleteSnapshot(id: string): Promise<SnapshotInfo>;
  /** Re-hashes every block of the snapshot on its target; the result is kept in the catalog. */
  verifySnapshot(id: string): Promise<SnapshotInfo>;
  /** The newest complete snapshot of `volume` for `condition`, taken before `before` (ISO time), on a readable target. */
  chooseSnapshot(volume: string, opts: { condition: string; before?: string }): Promise<SnapshotChoice>;
  /** Keeps the head as a `rollback` snapshot, then makes the volume's head the snapshot's tree at a new epoch (the same epoch with `opts.holder`). */
  rollback(volume: string, snapshotId: string, opts?: RollbackOptions): Promise<RollbackResult>;
  /** A condition raised by a primary, evaluated by the archive's rules like any alert. */
  raise(volume: string, alert: IncomingAlert): Promise<AlertDecision>;
  /** The newest alert decisions, newest first. */
  alerts(limit?: number): Promise<AlertDecision[]>;
  /** Reclaims blocks no head or snapshot references, on the data directory and every readable target. */
  gc(): Promise<GcResult>;
  close(): Promise<void>;
}

/** Snapshot ids look like `s-20250102-030405-a1b2c3` (a valid volume name: targets store each snapshot as one). */
export function isSnapshotId(v: unknown): v is string {
  return typeof v === 'string' && /^s-\d{8}-\d{6}-[0-9a-f]{6}$/.test(v);
}
