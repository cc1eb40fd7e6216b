// Mirroring of one local store to one archive volume: the journal, the
// shipper, the replication mode and the journal's bound. It is the core's
// ChangeSink: every applied change is appended here before the op answers.
//
// Modes (named after DRBD's protocols; see docs/mirroring.md):
//  - async (default): an op returns after the local apply and the append;
//    fsync/fdatasync return once every record up to then is acked.
//  - sync: every mutating op returns only once the archive acked its record.
// Journal full (un-acked bytes past the bound, the archive being away): the
// policy either blocks writers until the archive catches up, or fails them
// with ENOSPC. Records are never dropped.
import { lendRoom, readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { LeaseKeeper, type LeaseState, type LeaseStatus } from './lease.js';
import { describeHolder, type LeaseHolder } from '../protocol/leases.js';
import { isArchiveError } from '../protocol/archive-api.js';
import { Journal, type JournalNoRoom, type JournalRoomShort } from '../journal/journal.js';
import { Shipper, type ShipperState } from './shipper.js';
import { FsError, isNoRoomError } from '../errors/errno.js';
import type { ChangeSink } from '../ports/change-sink.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import type { NewRecord } from '../protocol/records.js';
import type { Logger } from '../log/logger.js';
import { mib } from '../util/units.js';

export type MirrorMode = 'async' | 'sync';
export type JournalFullPolicy = 'block' | 'enospc';

export interface MirrorOptions {
  volume: string;
  mode: MirrorMode;
  /** Un-acked journal bytes allowed before the policy applies (default 1 GiB). */
  journalMaxBytes?: number;
  fullPolicy?: JournalFullPolicy;
  /**
   * Ops waiting for an ack (sync-mode ops, fsync) fail with EIO after this
   * many ms; 0 waits for as long as it takes (default).
   */
  ackTimeoutMs?: number;
  /** Segment size of the journal, bytes (tests make it small). */
  segmentBytes?: number;
  /** The lease on the volume, ms (default 10 000): without a renewal for this long, fsync and sync-mode ops fail with EIO. */
  leaseMs?: number;
  /** Where this store is mounted (named in the lease, so that others see who holds the volume). */
  mountpoint?: string;
}

export const DEFAULT_LEASE_MS = 10_000;

/** What the store remembers of its mirror, in STORE/.strata/mirror.json. */
export interface MirrorState {
  format: 1;
  volume: string;
  epoch: number;
  /** Every object of the store has reached the journal at least once. */
  initialSyncDone: boolean;
  /** The daemon stopped cleanly: every change to the store is in the journal. */
  clean: boolean;
  /**
   * Every change whose ctime is older than this (ns since the epoch, as a
   * string) had a durable journal record when it was written here.
   */
  checkpointNs: string;
  /** A random id of this store: the archive knows the lease holder by it (absent before issue 15: made at the next start). */
  storeId?: string;
  /**
   * Every journal record up to here was durable when this state was written
   * (at each checkpoint, a re-convergence's end and a clean stop; absent in
   * state written before 2026-12-06). A journal that opens with fewer lost
   * durable records (damage: journal.ts JournalDamage), which the checkpoint
   * no longer covers.
   */
  durableSeq?: number;
  /**
   * The next start compares the store with the archive from `archivedNs` on
   * (content too, for every file changed since), not only from the
   * checkpoint: set when the journal lost durable records the archive lacks
   * (only their changes' ctimes can say where they are); cleared once done.
   */
  fullCompare?: boolean;
  /**
   * A checkpoint whose records the archive had all acked (ns since the epoch,
   * as a string): every change older than it is on the archive whatever
   * happens to the journal. Absent: none known (a comparison from it reads
   * every file).
   */
  archivedNs?: string;
}

export interface MirrorStatus {
  archive: string;
  volume: string;
  mode: MirrorMode;
  epoch: number;
  connection: ShipperState;
  lastError: string | null;
  lastAckAt: string | null;
  ackedSeq: number;
  lastSeq: number;
  lag: { records: number; bytes: number; seconds: number };
  /** reservedBytes: room the FUSE thread holds as credit for journalled direct writes (it counts against limitBytes). */
  journal: {
    bytes: number; limitBytes: number; fullPolicy: JournalFullPolicy; segmentsDir: string; writersBlocked: number; reservedBytes: number;
    /** Set while the store's disk has no room for the journal: records wait in memory, changes that need room fail (ENOSPC). */
    noRoom: { since: string; message: string; records: number; bytes: number } | null;
    /** Bytes the journal keeps allocated ahead of its last record (src/journal: "Room kept ahead"); 0: none. */
    roomAhead: number;
    /** Set while the disk has no room to top that up: changes that need room fail (ENOSPC), the rest are written to the room kept. */
    roomShort: { since: string; message: string; aheadBytes: number } | null;
  };
  initialSync: SyncProgress;
  lease: LeaseStatus;
  /** Why every mutating op answers EROFS (fenced: who and when; released; releasing), or null. */
  readOnly: string | null;
}

export interface SyncProgress {
  state: 'pending' | 'running' | 'done';
  entries: number;
  bytes: number;
  totalEntries: number | null;
  totalBytes: number | null;
}

const STATE_FILE = 'mirror.json';
const CHECKPOINT_MARGIN_NS = 5_000_000_000n;
/** Least room reserve() hands out (less is not worth a grant: writes go through the core then). */
const MIN_RESERVE_BYTES = 64 * 1024;
/** How long a writer waits for the archive to take the journal's records off a full disk without any ack (waitForRoom). */
const ROOM_WAIT_MS = 10_000;

export class Mirror implements ChangeSink {
  readonly journal: Journal;
  readonly shipper: Shipper;
  private readonly limitBytes: number;
  private readonly fullPolicy: JournalFullPolicy;
  private readonly ackTimeoutMs: number;
  /** (seq, time appended) samples, oldest first, for the lag in seconds. */
  private samples: [number, number][] = [];
  private blockedWriters = 0;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private lastCheckpointSeq = 0;
  readonly initialSync: SyncProgress = { state: 'pending', entries: 0, bytes: 0, totalEntries: null, totalBytes: null };
  /** The store was stopped cleanly before this daemon opened it (start() clears the flag on disk). */
  private readonly openedClean: boolean;
  readonly lease: LeaseKeeper;
  private readOnlyReason: string | null = null;
  /** Told how long each op that waited for the archive's ack (fsync, sync mode) waited, and whether it got it (metrics). */
  onAckWait: ((seconds: number, acked: boolean) => void) | null = null;
  /** Journal room reserved for changes applied outside the core whose records are still to come (reserve). */
  private reservedBytes = 0;
  /**
   * Asked before the checkpoint moves (set by the daemon): resolves true once
   * every change applied outside the core before the call has its record
   * appended (journalled direct writes), false when that could not be made
   * sure (the checkpoint then stays where it is).
   */
  beforeCheckpoint: (() => Promise<boolean>) | null = null;
  /** Asked to give reserved room back when the journal is full (set by the daemon: the FUSE thread's unused credit). */
  reclaimReserved: (() => void) | null = null;
  private checkpointing = false;
  /** Ops waiting for an ack, told at once when the lease runs out or the volume is fenced. */
  private readonly ackWaiters = new Set<(err: Error) => void>();

  private constructor(
    readonly privateDir: string,
    readonly client: ArchiveClient,
    private state: MirrorState,
    journal: Journal,
    readonly opts: MirrorOptions,
    private readonly log: Logger,
  ) {
    this.journal = journal;
    this.shipper = new Shipper(journal, client, opts.volume, state.epoch, log.child({ part: 'shipper' }));
    this.limitBytes = opts.journalMaxBytes ?? 1024 * 1024 * 1024;
    this.fullPolicy = opts.fullPolicy ?? 'block';
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 0;
    if (state.initialSyncDone) this.initialSync.state = 'done';
    this.openedClean = state.clean;
    const holder: LeaseHolder = { host: hostname(), storeId: state.storeId!, pid: process.pid, mountpoint: opts.mountpoint ?? '(none)' };
    this.lease = new LeaseKeeper(client, opts.volume, state.epoch, holder, log.child({ part: 'lease' }), {
      leaseMs: opts.leaseMs ?? DEFAULT_LEASE_MS,
      progress: () => ({ ackedSeq: this.shipper.ackedSeq, lastSeq: this.journal.lastSeq }),
      onFenced: (reason) => this.fence(reason),
      onChange: (st) => { if (st === 'expired') this.failAckWaiters(`the lease on ${opts.volume} expired (no renewal within ${(opts.leaseMs ?? DEFAULT_LEASE_MS) / 1000} s): durability is not promised`); },
    });
    this.shipper.onStop = (st, reason) => { if (st === 'fenced') this.lease.markFenced(reason); };
    // Records that cannot reach the journal cannot be acked: whoever waits for an ack (fsync, a sync-mode op) is told so, not kept waiting for room.
    journal.onNoRoom(() => this.failAckWaiters('the store\'s disk is full: records wait in memory for room in the journal, and cannot be made durable now', 'ENOSPC'));
    // The store's state files (this mirror's among them) get room from the journal's on a full disk.
    this.endLending = lendRoom(privateDir, (bytes) => journal.giveBackRoom(bytes));
  }

  private readonly endLending: () => void;

  /** A random store id, or the one mirror.json keeps. */
  static async storeIdOf(privateDir: string): Promise<string> {
    return (await readState(privateDir))?.storeId ?? newStoreId();
  }

  /**
   * Before serving: the first lease renewal. Another primary's live lease
   * refuses the mount (the message names it); a fenced store serves read-only.
   */
  async acquireLease(): Promise<LeaseState | 'unreachable'> {
    const got = await this.lease.acquire();
    if (got === 'unreachable') this.log.warn({ volume: this.opts.volume }, 'lease: the archive did not answer; serving, and renewing until it does');
    return got;
  }

  /** Every mutating op fails with EROFS from now on (fenced, released, releasing). */
  setReadOnly(reason: string): void {
    this.readOnlyReason ??= reason;
    this.reclaimReserved?.();
  }

  /** Undoes setReadOnly of a planned move that could not drain (never after a fence). */
  setWritable(): void {
    if (this.lease.fenced === null) this.readOnlyReason = null;
  }

  get readOnly(): string | null {
    return this.readOnlyReason;
  }

  private fence(reason: string): void {
    this.readOnlyReason = `fenced: ${reason}`;
    // Journal room handed out for direct writes goes back at once: from now on every change meets admit's EROFS.
    this.reclaimReserved?.();
    this.failAckWaiters(`fenced: ${reason}`);
  }

  private failAckWaiters(message: string, code: 'EIO' | 'ENOSPC' = 'EIO'): void {
    const err = new FsError(code, message);
    for (const w of [...this.ackWaiters]) w(err);
    this.ackWaiters.clear();
  }

  /**
   * Opens the mirror of the store whose private directory is `privateDir`.
   * The first time, the volume is created on the archive (an existing volume
   * that holds data belongs to another store and is refused). Returns with the
   * journal open and the shipper running; the caller then re-converges if
   * `needsReconcile` says so, before serving.
   */
  static async open(privateDir: string, client: ArchiveClient, opts: MirrorOptions, log: Logger): Promise<Mirror> {
    let state = await readState(privateDir);
    if (state !== null && state.volume !== opts.volume) {
      throw new Error(`this store mirrors volume "${state.volume}", not "${opts.volume}" (see ${join(privateDir, STATE_FILE)})`);
    }
    const remote = await client.volumeState(opts.volume);
    if (remote !== null) await refuseIfHeld(client, opts.volume, state, remote.epoch);
    if (state === null) {
      if (remote !== null && (remote.appliedSeq > 0 || remote.totals.entries > 0)) {
        throw new Error(`volume "${opts.volume}" already holds data on ${client.url} and this store has never mirrored to it: ` +
          'recover it with `strata recover`, or choose another volume name');
      }
      const created = remote ?? (await client.createVolume(opts.volume));
      state = { format: 1, volume: opts.volume, epoch: created.epoch, initialSyncDone: false, clean: false, checkpointNs: '0', storeId: newStoreId() };
      await writeState(privateDir, state);
      log.info({ volume: opts.volume, archive: client.url }, 'mirror: volume attached for the first time');
    } else if (remote === null) {
      throw new Error(`volume "${opts.volume}" does not exist on ${client.url}, but this store mirrored to it before`);
    }
    if (state.storeId === undefined) {
      state.storeId = newStoreId();
      await writeState(privateDir, state);
    }
    const journal = await Journal.open(join(privateDir, 'journal'), log.child({ part: 'journal' }), {
      segmentBytes: opts.segmentBytes,
      startAfterSeq: remote?.appliedSeq ?? 0,
    });
    // Records that were durable, that the archive lacks, and that the journal no longer has (a damaged
    // segment): their changes are in the store, but neither the journal nor the checkpoint's window
    // holds them any more. A comparison from the newest checkpoint the archive holds finds them.
    const lost = state.durableSeq !== undefined ? journal.lastSeq < state.durableSeq : journal.damage !== null;
    if (lost && state.fullCompare !== true) {
      log.error({ durableSeq: state.durableSeq ?? null, journalLastSeq: journal.lastSeq, appliedSeq: remote?.appliedSeq ?? 0, damage: journal.damage },
        'mirror: the journal lost records the archive does not have; before it serves, the store is compared with the archive, content too, for everything changed since the newest checkpoint the archive holds');
      state.fullCompare = true;
      state.clean = false;
      await writeState(privateDir, state);
    }
    const mirror = new Mirror(privateDir, client, state, journal, opts, log);
    mirror.lastCheckpointSeq = journal.lastSeq;
    return mirror;
  }

  /**
   * Makes a store that is being recovered from `volume` (fenced at `epoch`)
   * its mirror: every object it holds came from the archive, so nothing needs
   * shipping or re-comparing; new changes continue the volume's sequence.
   */
  static async adopt(privateDir: string, volume: string, epoch: number, storeId?: string): Promise<void> {
    const state: MirrorState = {
      format: 1, volume, epoch, initialSyncDone: true, clean: true,
      checkpointNs: String(BigInt(Date.now()) * 1_000_000n - CHECKPOINT_MARGIN_NS),
      storeId: storeId ?? (await readState(privateDir).catch(() => null))?.storeId ?? newStoreId(),
    };
    await writeState(privateDir, state);
  }

  /** The store may hold changes the archive lacks beyond the journal: re-compare before serving. */
  get needsReconcile(): boolean {
    return !this.state.initialSyncDone || !this.openedClean || this.state.fullCompare === true;
  }

  /**
   * First time: everything; after an unclean stop: what changed since the
   * checkpoint; after the journal lost durable records: what changed since
   * the newest checkpoint the archive had acked (MirrorState.archivedNs).
   */
  get reconcileScope(): { kind: 'initial' } | { kind: 'since' | 'since-archived'; ctimeNs: bigint } {
    if (!this.state.initialSyncDone) return { kind: 'initial' };
    if (this.state.fullCompare === true) return { kind: 'since-archived', ctimeNs: BigInt(this.state.archivedNs ?? '0') };
    return { kind: 'since', ctimeNs: BigInt(this.state.checkpointNs) };
  }

  get mode(): MirrorMode {
    return this.opts.mode;
  }

  /** Starts shipping and the periodic checkpoint; marks the store as in use (not clean). */
  async start(): Promise<void> {
    this.shipper.start();
    this.lease.start();
    if (this.state.clean) {
      this.state.clean = false;
      await writeState(this.privateDir, this.state);
    }
    this.checkpointTimer = setInterval(() => {
      // On a full disk the state file cannot be replaced: the checkpoint stays where it was (status says why the disk is full).
      this.checkpoint().catch((err: unknown) => (isNoRoomError(err) ? this.log.debug({ err }, 'checkpoint not moved: no room for the state file') : this.log.warn({ err }, 'checkpoint failed')));
    }, 2000);
    this.checkpointTimer.unref();
  }

  /** Records that the initial sync or a re-convergence has put every change into the journal. */
  async reconciled(): Promise<void> {
    const seq = this.journal.lastSeq;
    await this.journal.sync();
    this.state.initialSyncDone = true;
    this.state.checkpointNs = String(BigInt(Date.now()) * 1_000_000n - CHECKPOINT_MARGIN_NS);
    this.state.durableSeq = seq;
    this.checkpointsNotArchived.push({ seq, ns: this.state.checkpointNs });
    delete this.state.fullCompare;
    this.initialSync.state = 'done';
    await writeState(this.privateDir, this.state);
    await this.journal.dropSetAside();
  }

  // ---- ChangeSink ------------------------------------------------------------

  writable(): void {
    if (this.readOnlyReason !== null) throw new FsError('EROFS', this.readOnlyReason);
  }

  async admit(bytes: number, takesNoRoom = false): Promise<void> {
    if (this.readOnlyReason !== null) throw new FsError('EROFS', this.readOnlyReason);
    // A change that needs room: its record must fit in the room kept ahead with half of it left for the
    // changes that take none (a large overwrite on a disk another program filled would otherwise use it up).
    // When the journal's own records are what fills the disk, the writer waits for the archive to take them.
    // Short of room, each such change first tries again (something may have freed room a moment ago).
    while (!takesNoRoom) {
      // Records waiting in memory are written now if there is room for them.
      if (this.journal.noRoom !== null) await this.journal.sync().catch(() => {});
      if (this.journal.noRoom === null && (this.journal.roomShort !== null || this.journal.roomLeft - bytes < this.journal.roomAhead / 2)) await this.journal.makeRoomFor(bytes);
      if ((this.journal.noRoom === null && this.journal.roomShort === null) || !(await this.waitForRoom())) break;
    }
    if (this.journal.noRoom !== null && !takesNoRoom) {
      // Refused before the store changes: the program sees ENOSPC, as on a full disk, and nothing is half done.
      const n = this.journal.noRoom;
      throw new FsError('ENOSPC', `the store's disk is full: the journal has had no room since ${n.since.toISOString()} (${n.records} records wait in memory); only changes that take no room (removals, renames, attributes) are taken until there is room`);
    }
    const short = this.journal.roomShort;
    if (short !== null && !takesNoRoom) {
      throw new FsError('ENOSPC', `the store's disk is full: since ${short.since.toISOString()} it has had less free than the ${mib(this.journal.roomAhead)} the journal keeps ahead for its records; only changes that take no room (removals, renames, attributes) are taken until there is room`);
    }
    if (this.unackedBytes() + bytes <= this.limitBytes) return;
    // Room reserved for direct writes that have not come goes back first.
    if (this.reservedBytes > 0 && this.reclaimReserved !== null) {
      this.reclaimReserved();
      if (this.unackedBytes() + bytes <= this.limitBytes) return;
    }
    if (this.fullPolicy === 'enospc') {
      throw new FsError('ENOSPC', `journal full (${this.limitBytes} bytes not yet acked by the archive)`);
    }
    this.blockedWriters++;
    if (this.blockedWriters === 1) this.log.warn({ limitBytes: this.limitBytes }, 'journal full: writers wait for the archive');
    try {
      while (this.unackedBytes() + bytes > this.limitBytes && this.journal.bytesAfter(this.shipper.ackedSeq) > 0) {
        const st = this.shipper.state;
        if (st === 'fenced' || st === 'failed') {
          throw new FsError('EIO', `journal full and shipping stopped (${st}): ${this.shipper.lastError ?? ''}`);
        }
        // Woken by the next ack, or after a second to look at the shipper again.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => { off(); resolve(); }, 1000);
          const off = this.shipper.onAck(() => { clearTimeout(timer); off(); resolve(); });
        });
      }
    } finally {
      this.blockedWriters--;
    }
  }

  /**
   * The store's disk is full and the journal's own records may be what
   * fills it (a stream of writes on a small disk: the records of the last
   * seconds are on the disk until the archive holds them): waits for the
   * archive's acks, after which the segments they complete go (journal.trim,
   * dropAcked), and resolves true once the journal takes less of the disk
   * than before. False at once when waiting cannot help: the journal holds
   * less than a piece of room worth waiting for (another program filled the
   * disk), or the archive is not connected; false too after ROOM_WAIT_MS
   * with no ack. Writers wait here as they wait at the journal's bound.
   */
  async waitForRoom(): Promise<boolean> {
    const started = this.journal.bytes;
    if (started < MIN_RESERVE_BYTES) return false;
    let lastAck = this.shipper.ackedSeq;
    let progressAt = Date.now();
    if (this.blockedWriters === 0) this.log.info({ journalBytes: started }, 'the store\'s disk is full and the journal\'s records take some of it: writers wait for the archive to take them');
    this.blockedWriters++;
    try {
      for (;;) {
        if (this.shipper.connection.state !== 'connected' || this.readOnlyReason !== null) {
          this.log.info({ shipper: this.shipper.connection.state, readOnly: this.readOnlyReason }, 'a writer stops waiting for room: the archive is not taking records');
          return false;
        }
        const allAcked = this.shipper.ackedSeq >= this.journal.lastSeq;
        if (!allAcked) {
          // Woken by the next ack, or after a moment to look again.
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => { off(); resolve(); }, 250);
            const off = this.shipper.onAck(() => { clearTimeout(timer); off(); resolve(); });
          });
        }
        if (this.shipper.ackedSeq > lastAck) {
          lastAck = this.shipper.ackedSeq;
          progressAt = Date.now();
        }
        // The segment being written goes too once the archive holds all of it.
        await this.journal.dropAcked(this.shipper.ackedSeq);
        if (this.journal.bytes < started) return true;
        // The archive holds every record and no room came back: not the journal's to give.
        if (allAcked || Date.now() - progressAt > ROOM_WAIT_MS) {
          this.log.info({ allAcked, journalBytes: this.journal.bytes, sinceAckMs: Date.now() - progressAt }, 'a writer stops waiting for room: the journal has no more to give back');
          return false;
        }
      }
    } finally {
      this.blockedWriters--;
    }
  }

  reserve(maxBytes: number): number {
    if (this.opts.mode !== 'async' || this.readOnlyReason !== null || this.blockedWriters > 0 || this.journal.noRoom !== null || this.journal.roomShort !== null) return 0;
    // At most half the room left: the rest stays for the core's own changes. And never more than the
    // room the journal keeps allocated ahead can take with half of it left (the bound admit sets the
    // core's changes): the records of writes applied outside the core then always find room on the
    // disk, even one another program filled, and never wait in memory (where an fsync fails and a
    // kill -9 needs room freed to start). Past it writes go through the core.
    const ahead = this.journal.roomLeft - this.journal.roomAhead / 2 - this.reservedBytes;
    const n = Math.min(maxBytes, Math.floor((this.limitBytes - this.unackedBytes()) / 2), Math.floor(ahead));
    if (n < MIN_RESERVE_BYTES) return 0;
    this.reservedBytes += n;
    return n;
  }

  unreserve(bytes: number): void {
    this.reservedBytes = Math.max(0, this.reservedBytes - bytes);
  }

  get asyncMode(): boolean {
    return this.opts.mode === 'async';
  }

  /** Journal room reserved for journalled direct writes now. */
  get reserved(): number {
    return this.reservedBytes;
  }

  append(rec: NewRecord): number {
    const seq = this.journal.append(rec);
    const now = Date.now();
    const last = this.samples[this.samples.length - 1];
    if (last === undefined || now - last[1] >= 50) this.samples.push([seq, now]);
    return seq;
  }

  committed(seq: number): Promise<void> {
    return this.opts.mode === 'sync' ? this.waitAcked(seq) : Promise.resolve();
  }

  barrier(): Promise<void> {
    const noRoom = this.journal.noRoom;
    if (noRoom !== null) {
      // Records that cannot reach the journal cannot be made durable now: the fsync fails (as a delayed write's would) rather than hang.
      return Promise.reject(new FsError('ENOSPC', `the store's disk is full: ${noRoom.records} records wait in memory for room in the journal`));
    }
    return this.waitAcked(this.journal.lastSeq);
  }

  // ---- operator view -----------------------------------------------------------

  /** Waits until the archive holds every record so far; false after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<boolean> {
    const target = this.journal.lastSeq;
    if (this.shipper.ackedSeq >= target) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    try {
      return await Promise.race([this.shipper.waitAcked(target).then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  status(): MirrorStatus {
    const acked = this.shipper.ackedSeq;
    this.samples = this.samples.filter(([seq]) => seq > acked);
    const oldest = this.samples[0];
    const lagRecords = Math.max(0, this.journal.lastSeq - acked);
    return {
      archive: this.client.url,
      volume: this.opts.volume,
      mode: this.opts.mode,
      epoch: this.state.epoch,
      connection: this.shipper.connection.state,
      lastError: this.shipper.connection.lastError,
      lastAckAt: this.shipper.lastAckAt?.toISOString() ?? null,
      ackedSeq: acked,
      lastSeq: this.journal.lastSeq,
      lag: {
        records: lagRecords,
        bytes: this.journal.bytesAfter(acked),
        seconds: lagRecords === 0 || oldest === undefined ? 0 : Math.round((Date.now() - oldest[1]) / 100) / 10,
      },
      journal: {
        bytes: this.journal.bytes, limitBytes: this.limitBytes, fullPolicy: this.fullPolicy,
        segmentsDir: this.journal.dir, writersBlocked: this.blockedWriters, reservedBytes: this.reservedBytes,
        noRoom: noRoomStatus(this.journal.noRoom),
        roomAhead: this.journal.roomAhead,
        roomShort: roomShortStatus(this.journal.roomShort),
      },
      initialSync: { ...this.initialSync },
      lease: this.lease.status(),
      readOnly: this.readOnlyReason,
    };
  }

  /**
   * A planned move (`strata release`): refuse writes, drain every record to
   * the archive (at most `timeoutMs`), then give the lease up. When the drain
   * does not finish, writes are accepted again and this throws.
   */
  async releaseForMove(timeoutMs: number): Promise<void> {
    if (this.lease.fenced !== null) throw new Error(`fenced: nothing to release (${this.lease.fenced})`);
    this.setReadOnly('released: draining for a planned move (strata release)');
    const drained = await this.drain(timeoutMs).catch(() => false);
    if (!drained) {
      this.setWritable();
      const st = this.status();
      throw new Error(`not drained after ${Math.round(timeoutMs / 1000)} s (the archive has ${st.ackedSeq} of ${st.lastSeq} records; ${st.connection}${st.lastError ? `: ${st.lastError}` : ''}): the lease is kept and the mount serves on`);
    }
    try {
      await this.lease.release(this.journal.lastSeq);
    } catch (err) {
      this.setWritable();
      this.lease.start();
      throw err;
    }
    this.readOnlyReason = `released: the lease on ${this.opts.volume} was given up for a planned move`;
    this.reclaimReserved?.();
  }

  /**
   * Clean stop: gives the archive up to `drainMs` to catch up, stops the
   * shipper, makes the journal durable and marks the store clean (whatever is
   * not shipped yet is in the journal and ships at the next start).
   */
  async stop(drainMs: number): Promise<void> {
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    const drained = await this.drain(drainMs).catch(() => false);
    await this.shipper.stop();
    // Nothing left to ship: the lease goes too, so that no takeover follows a clean unmount.
    // Otherwise it lapses, like a crashed primary's.
    const ls = this.lease.state;
    if (drained && ls !== 'fenced' && ls !== 'released') {
      await this.lease.release(this.journal.lastSeq).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'lease not released at unmount; it lapses'));
    }
    await this.lease.stop();
    const closed = await this.journal.close().then(() => true, (err: unknown) => {
      if (!isNoRoomError(err)) throw err;
      // Not clean: the next start re-converges, and ships what the store has of these changes.
      this.log.warn({ err: (err as Error).message, records: this.journal.noRoom?.records ?? 0 }, 'mirror stopped without room on the store\'s disk for every record: the next start re-converges');
      return false;
    });
    if (closed) {
      this.state.clean = true;
      this.state.durableSeq = this.journal.lastSeq;
      const archivedNs = drained ? String(BigInt(Date.now()) * 1_000_000n - CHECKPOINT_MARGIN_NS) : this.archivedCheckpointNs();
      if (archivedNs !== undefined) this.state.archivedNs = archivedNs;
      await writeState(this.privateDir, this.state);
    }
    this.endLending();
    this.log.info({ drained, ackedSeq: this.shipper.ackedSeq, lastSeq: this.journal.lastSeq, clean: closed }, 'mirror stopped');
    await this.client.close();
  }

  /**
   * Stops without marking the store clean (a start that failed part-way):
   * the journal stays as it is for the next start.
   */
  async abandon(): Promise<void> {
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    await this.lease.stop();
    await this.shipper.stop();
    await this.journal.close().catch((err: unknown) => { if (!isNoRoomError(err)) throw err; });
    await this.client.close();
  }

  /** Bytes the archive has not acked, and the room reserved for records still to come. */
  private unackedBytes(): number {
    return this.journal.bytesAfter(this.shipper.ackedSeq) + this.reservedBytes;
  }

  private waitAcked(seq: number): Promise<void> {
    if (!this.lease.durable) {
      return Promise.reject(new FsError('EIO', this.readOnlyReason ?? `the lease on ${this.opts.volume} has expired (${this.lease.status().lastError ?? 'no renewal'}): durability is not promised`));
    }
    let off: ((err: Error) => void) | null = null;
    const lost = new Promise<never>((_, reject) => { off = reject; this.ackWaiters.add(reject); });
    lost.catch(() => {});
    const acked = this.shipper.waitAcked(seq).then(() => {
      // An ack that arrives after the lease ran out is not shown as durable.
      if (!this.lease.durable) throw new FsError('EIO', `the lease on ${this.opts.volume} expired before the ack: durability is not promised`);
    }, (err: unknown) => {
      throw new FsError('EIO', (err as Error).message);
    });
    const wait = Promise.race([acked, lost]).finally(() => { if (off) this.ackWaiters.delete(off); });
    if (this.ackTimeoutMs <= 0) return this.timed(wait);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FsError('EIO', `the archive did not acknowledge record ${seq} within ${this.ackTimeoutMs} ms`)), this.ackTimeoutMs);
    });
    return this.timed(Promise.race([wait, timeout]).finally(() => clearTimeout(timer)));
  }

  /** Tells onAckWait how long an op waited for its ack. */
  private timed(p: Promise<void>): Promise<void> {
    const observe = this.onAckWait;
    if (observe === null) return p;
    const t0 = process.hrtime.bigint();
    const secs = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
    return p.then(() => observe(secs(), true), (err: unknown) => { observe(secs(), false); throw err; });
  }

  /**
   * Moves the checkpoint forward: after an fsync of the journal started at T,
   * every change applied before T (less a margin for the time between a
   * change and its append) has a durable record.
   */
  private async checkpoint(): Promise<void> {
    // Records waiting for room are not durable: the checkpoint stays where it is (a crash re-converges from it).
    if (this.checkpointing || this.journal.noRoom !== null) return;
    // Nothing appended since: the checkpoint stays (writes whose records are still to come keep it there too);
    // the state is written again only when the archive has acked a newer checkpoint.
    const moves = this.journal.lastSeq !== this.lastCheckpointSeq;
    if (!moves && this.archivedCheckpointNs() === this.state.archivedNs) return;
    this.checkpointing = true;
    try {
      if (moves) {
        const startedNs = BigInt(Date.now()) * 1_000_000n;
        // A change applied outside the core (a journalled direct write) has its
        // ctime before its record exists: wait until every one that may have
        // started before startedNs is appended (docs/mirroring.md).
        if (this.beforeCheckpoint !== null && !(await this.beforeCheckpoint())) return;
        const seq = this.journal.lastSeq;
        await this.journal.sync();
        this.lastCheckpointSeq = seq;
        this.state.checkpointNs = String(startedNs - CHECKPOINT_MARGIN_NS);
        this.state.durableSeq = seq;
        this.checkpointsNotArchived.push({ seq, ns: this.state.checkpointNs });
      }
      const archivedNs = this.archivedCheckpointNs();
      if (archivedNs !== undefined) this.state.archivedNs = archivedNs;
      await writeState(this.privateDir, this.state);
    } finally {
      this.checkpointing = false;
    }
  }

  /** Checkpoints whose records the archive had not all acked when last looked at (oldest first). */
  private readonly checkpointsNotArchived: { seq: number; ns: string }[] = [];

  /**
   * The newest checkpoint the archive holds every record of (MirrorState.archivedNs),
   * from the acks so far; the state's when none is newer.
   */
  private archivedCheckpointNs(): string | undefined {
    const acked = this.shipper.ackedSeq;
    while (this.checkpointsNotArchived.length > 0 && this.checkpointsNotArchived[0]!.seq <= acked) this.archivedNsSeen = this.checkpointsNotArchived.shift()!.ns;
    return this.archivedNsSeen ?? this.state.archivedNs;
  }

  /** The newest checkpoint seen acked in this process (archivedCheckpointNs), until the state keeps it. */
  private archivedNsSeen: string | undefined = undefined;
}

function noRoomStatus(n: JournalNoRoom | null): MirrorStatus['journal']['noRoom'] {
  return n === null ? null : { since: n.since.toISOString(), message: n.message, records: n.records, bytes: n.bytes };
}

function roomShortStatus(n: JournalRoomShort | null): MirrorStatus['journal']['roomShort'] {
  return n === null ? null : { since: n.since.toISOString(), message: n.message, aheadBytes: n.aheadBytes };
}

async function readState(privateDir: string): Promise<MirrorState | null> {
  const text = await readFileIfExists(join(privateDir, STATE_FILE));
  if (text === null) return null;
  const s = JSON.parse(text) as MirrorState;
  if (s.format !== 1 || typeof s.volume !== 'string' || typeof s.epoch !== 'number') throw new Error(`unreadable ${STATE_FILE} in ${privateDir}`);
  return s;
}

/** Replaces the state file atomically and durably. */
async function writeState(privateDir: string, state: MirrorState): Promise<void> {
  await writeFileDurably(join(privateDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

function newStoreId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Another primary holds a live lease on the volume: refuse, naming it. A store
 * whose epoch is older than the volume's is fenced, not refused (it serves
 * read-only); an unreachable archive is no reason to refuse here.
 */
async function refuseIfHeld(client: ArchiveClient, volume: string, state: MirrorState | null, remoteEpoch: number): Promise<void> {
  if (state !== null && state.epoch < remoteEpoch) return;
  let rows;
  try {
    rows = await client.leases(volume);
  } catch (err) {
    if (isArchiveError(err, 'EBADREQ')) return; // an older server without leases
    return;
  }
  const row = rows[0];
  if (row === undefined || row.holder === null) return;
  if ((row.state === 'active' || row.state === 'taken over') && row.holder.storeId !== state?.storeId) {
    throw Object.assign(new Error(`volume "${volume}" is held by ${describeHolder(row.holder)} (lease renewed ${row.leaseAgeSeconds ?? '?'} s ago, ` +
      `state ${row.state}): refused; run strata release there first, or wait until its lease lapses`), { code: 'EHELD' });
  }
}
