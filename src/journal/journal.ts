// The primary's journal: an append-only, segmented log of every mutating op,
// in the frame format of protocol/records.ts (each frame checksummed and
// numbered). Appends go to memory and reach the segment together, in one
// writev (a write's payload without a copy); durability is group commit:
// every `sync()` waiting at the same time shares one fsync. A torn tail (a
// crash in the middle of a write) is detected on open and cut. Segments are
// deleted only once the archive has acknowledged every record in them
// (`trim`). The newest frames written stay in memory for the shipper.
//
// Files: DIR/NNNNNNNNNNNNNNNN.seg, named by the sequence number of their first
// record (16 decimal digits, so names sort in order).
//
// No room on the store's disk (ENOSPC, EDQUOT) is not a failure: the part of
// the write that got there is cut off again (ftruncate frees, it never needs
// room), the frames stay in memory in order, and they are written again once
// there is room (a retry each NO_ROOM_RETRY_MS, and with every later flush).
// Meanwhile `noRoom` says so; the mirror refuses changes that need room
// (ENOSPC before they are made) and lets the ones that make room through.
// Until 2026-12-06 the first ENOSPC failed the journal for good: every later
// change failed, removals too, so the disk could not be freed through the
// mount, and the shipper stopped until a restart.
//
// Room kept ahead: the segment being written has blocks allocated past its
// end (fallocate with FALLOC_FL_KEEP_SIZE: the file's size, and so what a
// reader sees, is its whole frames only), `roomAhead` bytes of them, topped
// up whenever less than half is left. Records go into blocks the disk
// already gave, so a disk that something else fills does not stop them:
// when a top-up finds no room, `roomShort` says so, the mirror refuses
// changes that need room from then on (ENOSPC before they are made, as with
// `noRoom`), and the removals, renames and attribute changes it still takes
// are written and made durable in the room kept (an fsync succeeds). A start
// after a kill -9 finds that room too: the re-convergence's records go there.
// Only once it is used up do frames wait in memory (`noRoom`, above).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { encodeRecordParts, readFrame, FRAME_HEADER_BYTES, type NewRecord, type Record } from '../protocol/records.js';
import type { Logger } from '../log/logger.js';
import { isNoRoomError } from '../errors/errno.js';
import * as native from '../native/index.js';

const SEGMENT_SUFFIX = '.seg';
/** Pending bytes that are written on the next event-loop turn; fewer wait up to FLUSH_DELAY_MS. */
const FLUSH_BYTES = 256 * 1024;
const FLUSH_DELAY_MS = 2;
/**
 * The newest written frames kept in memory for the shipper: their bytes plus
 * RECENT_ENTRY_COST per frame (the objects that hold it), so that a window of
 * small records is bounded in memory like one of large ones.
 */
const RECENT_BYTES = 16 * 1024 * 1024;
const RECENT_ENTRY_COST = 256;
const SEGMENT_NAME_RE = /^(\d{16})\.seg$/;
/** How often frames kept in memory for want of room, or a top-up of the room kept ahead, are tried again. */
const NO_ROOM_RETRY_MS = 1000;
const MIB = 1024 * 1024;

/**
 * The room a journal keeps allocated ahead of its last record on a disk of
 * `diskBytes`: 1% of it, at least 1 MiB and at most 64 MiB, and never more
 * than an eighth of a small disk.
 */
export function roomAheadFor(diskBytes: number): number {
  const bytes = Math.min(64 * MIB, Math.max(MIB, Math.round(diskBytes / 100)), Math.floor(diskBytes / 8));
  return Math.max(0, Math.floor(bytes / 4096) * 4096);
}

/** The room kept ahead could not be topped up: since when, what the disk said, and how much is left of it. */
export interface JournalRoomShort {
  since: Date;
  message: string;
  /** Bytes allocated past the last record now (records still go there). */
  aheadBytes: number;
}

/**
 * What opening the journal found damaged, and cut: the first bad frame
 * (`segment`, `atByte`, `reason`), the last record kept before it, and the
 * later segments set aside (renamed `*.seg.damaged`; removed by
 * `dropSetAside` once the store has re-converged). A torn tail after a crash
 * is damage too: whether records the archive lacks were lost is the
 * mirror's to judge (it knows which records were durable).
 */
export interface JournalDamage {
  segment: string;
  atByte: number;
  reason: string;
  lastGoodSeq: number;
  setAside: string[];
}

/** The journal could not write for want of room: since when, what it said, and how much waits in memory. */
export interface JournalNoRoom {
  since: Date;
  message: string;
  records: number;
  bytes: number;
}

export interface JournalOptions {
  /** Roll over to a new segment past this size (default 64 MiB). */
  segmentBytes?: number;
  /** The archive already holds every record up to here: a new journal starts after it. */
  startAfterSeq?: number;
  /**
   * Bytes kept allocated past the last record (see the header); default
   * roomAheadFor(the size of the journal's disk); 0 keeps none.
   */
  roomAhead?: number;
}

interface Segment {
  firstSeq: number;
  path: string;
  /** Bytes of whole frames in it. */
  bytes: number;
  /** Sequence number of its last record (firstSeq - 1 when empty). */
  lastSeq: number;
  /** Bytes from its start that have blocks on disk: `bytes` plus the room kept ahead (an estimate for a segment opened again). */
  allocated: number;
}

/** A position in the journal from which records are read for shipping. */
export interface JournalBatch {
  frames: Buffer;
  firstSeq: number;
  lastSeq: number;
  count: number;
}

export class Journal {
  private readonly segments: Segment[] = [];
  private fd = -1;
  /** Frames appended and not written yet: a whole frame, or its head and its payload (the caller's buffer, not copied). */
  private pending: PendingFrame[] = [];
  private pendingBytes = 0;
  private pendingLastSeq = 0;
  private flushScheduled = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  /**
   * Where the last readAfter started and stopped: a record's seq and its byte
   * offset in its segment. A shipper reads the same batch again after it
   * waited for more records, or after a failed send: both are found here
   * without walking the segment's frame headers from its start.
   */
  private marks: { seg: Segment; seq: number; offset: number }[] = [];
  /**
   * The newest frames written to a segment and not yet acknowledged (at most
   * RECENT_BYTES), in sequence order from `recentFirstSeq`: a shipper that
   * keeps up takes its batches from here, without reading the segment back
   * (a thread-pool hop and a kernel copy per batch).
   */
  private recent: RecentFrame[] = [];
  private recentHead = 0;
  private recentFirstSeq = 0;
  private recentBytes = 0;
  private reader: { seg: Segment; fh: fsp.FileHandle } | null = null;
  private nextSeqValue: number;
  /** Every record up to here is in a segment file (written, maybe not durable). */
  private writtenSeqValue: number;
  /** Every record up to here is durable (fsynced). */
  private durableSeqValue: number;
  private readonly segmentBytes: number;
  private readonly writtenListeners = new Set<() => void>();
  private failure: Error | null = null;
  /** Set while frames wait in memory because the last write found no room. */
  private noRoomState: { since: Date; message: string } | null = null;
  private noRoomTimer: NodeJS.Timeout | null = null;
  private readonly noRoomListeners = new Set<() => void>();
  /** The archive holds every record up to here (the last trim's word). */
  private ackedSeqKnown = 0;
  /** What open() found damaged and cut (null: nothing). */
  damage: JournalDamage | null = null;
  /** Bytes kept allocated ahead of the last record (0: none, or the file system cannot). */
  private roomAheadBytes = 0;
  /** Set while a top-up of the room kept ahead finds no room on the disk. */
  private roomShortState: { since: Date; message: string } | null = null;
  private roomShortTimer: NodeJS.Timeout | null = null;

  private constructor(readonly dir: string, private readonly log: Logger, opts: JournalOptions, lastSeq: number) {
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.nextSeqValue = lastSeq + 1;
    this.writtenSeqValue = lastSeq;
    this.durableSeqValue = lastSeq;
  }

  /**
   * Opens (or creates) the journal in `dir`: reads every segment, cuts a torn
   * or corrupt tail of the last one, and continues after its last record.
   */
  static async open(dir: string, log: Logger, opts: JournalOptions = {}): Promise<Journal> {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const names = (await fsp.readdir(dir)).filter((n) => SEGMENT_NAME_RE.test(n)).sort();
    const segments: Segment[] = [];
    let damage: JournalDamage | null = null;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const path = join(dir, name);
      const firstSeq = Number(SEGMENT_NAME_RE.exec(name)![1]);
      const prev = segments[segments.length - 1];
      if (prev !== undefined && firstSeq !== prev.lastSeq + 1) {
        // A segment lost, or one cut short before a later one: what follows cannot continue the journal.
        damage = { segment: path, atByte: 0, reason: `it does not continue the previous segment (seq ${firstSeq} where ${prev.lastSeq + 1} was expected)`, lastGoodSeq: prev.lastSeq, setAside: [] };
        damage.setAside = await setAside(dir, names.slice(i));
        break;
      }
      const scan = await scanSegment(path, firstSeq);
      if (scan.damage !== null) {
        // Frames after a bad one cannot be trusted to follow it: the segment is cut there, and any later segment is set aside.
        await fsp.truncate(path, scan.bytes);
        damage = { segment: path, atByte: scan.bytes, reason: scan.damage, lastGoodSeq: scan.lastSeq, setAside: await setAside(dir, names.slice(i + 1)) };
      }
      segments.push({ firstSeq, path, bytes: scan.bytes, lastSeq: scan.lastSeq, allocated: scan.bytes });
      if (damage !== null) break;
    }
    if (damage !== null) {
      const tornTail = damage.setAside.length === 0 && damage.segment === segments[segments.length - 1]?.path;
      (tornTail ? log.warn.bind(log) : log.error.bind(log))({ ...damage }, tornTail
        ? 'journal: cutting a torn or damaged tail'
        : 'journal: damaged in the middle; cut at the damage, the segments after it set aside (the mirror re-compares the store with the archive)');
    }
    // Drop empty segments except the last (a crash right after a roll-over).
    while (segments.length > 1 && segments[0]!.bytes === 0) {
      await fsp.rm(segments[0]!.path, { force: true });
      segments.shift();
    }
    const floor = opts.startAfterSeq ?? 0;
    const lastSeq = segments.length > 0 ? Math.max(segments[segments.length - 1]!.lastSeq, floor) : floor;
    const j = new Journal(dir, log, opts, lastSeq);
    j.segments.push(...segments);
    j.damage = damage;
    const last = segments[segments.length - 1];
    if (last !== undefined && last.lastSeq === lastSeq) {
      j.fd = await openAppend(last.path);
      // What it kept ahead before (a crash or a stop leaves it allocated).
      const st = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(j.fd, (err, s) => (err ? reject(err) : resolve(s))));
      last.allocated = Math.max(last.bytes, st.blocks * 512);
    } else {
      // No segment, or the archive is ahead of every segment (a journal that
      // was trimmed and then lost its newest empty segment): start a new one.
      await j.startSegment(lastSeq + 1);
    }
    j.roomAheadBytes = opts.roomAhead ?? roomAheadFor(await diskBytesOf(dir));
    await j.exclusive(() => j.keepRoomAhead());
    return j;
  }

  get nextSeq(): number {
    return this.nextSeqValue;
  }

  /** The last sequence number handed out. */
  get lastSeq(): number {
    return this.nextSeqValue - 1;
  }

  get writtenSeq(): number {
    return this.writtenSeqValue;
  }

  get durableSeq(): number {
    return this.durableSeqValue;
  }

  /** Null while the journal writes; else it is waiting for room on the store's disk (see the header). */
  get noRoom(): JournalNoRoom | null {
    if (this.noRoomState === null) return null;
    return { ...this.noRoomState, records: this.pending.length, bytes: this.pendingBytes };
  }

  /**
   * Null while the room kept ahead is whole (or none is kept); else the disk
   * had no room for a top-up, and the mirror takes only changes that need
   * none (see the header).
   */
  get roomShort(): JournalRoomShort | null {
    if (this.roomShortState === null) return null;
    const seg = this.segments[this.segments.length - 1];
    return { ...this.roomShortState, aheadBytes: seg === undefined ? 0 : Math.max(0, seg.allocated - seg.bytes) };
  }

  /**
   * The size at which a segment rolls over: `segmentBytes`, or on a small
   * disk (where the room kept ahead, 1% of it, is under a quarter of that)
   * four times the room kept ahead. A segment goes only once the archive
   * holds all of it and a newer one exists, so on a disk of a few dozen MiB a
   * stream of writes kept its records (the whole 64 MiB segment's worth) on
   * the disk until the stream paused, and the next write met ENOSPC though
   * the archive had acked them (a second 7 MiB cp on a 24 MiB store).
   */
  private get rollBytes(): number {
    return this.smallDisk ? this.roomAheadBytes * 4 : this.segmentBytes;
  }

  /** A small disk: the room kept ahead (1% of it) is under a quarter of a segment (disks under ~1.6 GiB). */
  private get smallDisk(): boolean {
    return this.roomAheadBytes > 0 && this.roomAheadBytes * 4 < this.segmentBytes;
  }

  /** The room this journal keeps allocated ahead of its last record (0: none). */
  get roomAhead(): number {
    return this.roomAheadBytes;
  }

  /** Bytes in segment files plus bytes not written yet. */
  get bytes(): number {
    let n = this.pendingBytes;
    for (const s of this.segments) n += s.bytes;
    return n;
  }

  /** Sequence number of the oldest record still kept. */
  get firstSeq(): number {
    return this.segments[0]?.firstSeq ?? this.nextSeqValue;
  }

  /**
   * Appends a record and returns its sequence number. The frame is encoded
   * now and written soon (see scheduleFlush) together with every other
   * record appended meanwhile. The payload of a write or setxattr is
   * not copied: it goes from the caller's buffer to the segment in the same
   * writev as the frame's head, and the shipper may take it from memory
   * later (`recent`), so the caller must never change those bytes (the
   * core's write buffers are one per request and never reused; a changed
   * payload would fail its checksum at the archive).
   */
  append(rec: NewRecord): number {
    if (this.failure) throw this.failure;
    const seq = this.nextSeqValue++;
    const [head, payload] = encodeRecordParts({ ...rec, seq } as Record);
    const frame: PendingFrame = payload === null || payload.length === 0 ? head : [head, payload];
    const bytes = payload === null ? head.length : head.length + payload.length;
    this.pending.push(frame);
    this.pendingBytes += bytes;
    this.pendingLastSeq = seq;
    this.scheduleFlush();
    return seq;
  }

  /** Writes every appended record to its segment (not durable yet). */
  flush(): Promise<void> {
    return this.exclusive(() => this.writePending());
  }

  /**
   * Makes every record appended so far durable. Callers waiting at the same
   * time share one fsync (group commit): the ones queued behind a sync find
   * their records already durable.
   */
  sync(): Promise<void> {
    const target = this.lastSeq;
    if (this.durableSeqValue >= target) return Promise.resolve();
    return this.exclusive(async () => {
      if (this.durableSeqValue >= target) return;
      await this.writePending();
      const upTo = this.writtenSeqValue;
      await fdatasync(this.fd);
      this.durableSeqValue = Math.max(this.durableSeqValue, upTo);
    });
  }

  /** Runs segment-file work one piece at a time (writes, fsyncs, roll-overs). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(() => undefined, () => undefined);
    return run;
  }

  private async writePending(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.pending.length === 0) return;
    if (this.noRoomState !== null) await this.dropAckedSegment();
    const frames = this.pending;
    let seq = this.pendingLastSeq - frames.length + 1;
    this.pending = [];
    this.pendingBytes = 0;
    // Frames before `i` are in a segment.
    let i = 0;
    try {
      // Write in chunks that end where a segment reaches its size, then roll over.
      while (i < frames.length) {
        const seg = this.segments[this.segments.length - 1]!;
        let chunkBytes = 0;
        let j = i;
        const iov: Buffer[] = [];
        while (j < frames.length && (j === i || seg.bytes + chunkBytes < this.rollBytes)) {
          const f = frames[j++]!;
          if (Buffer.isBuffer(f)) {
            iov.push(f);
            chunkBytes += f.length;
          } else {
            iov.push(f[0], f[1]);
            chunkBytes += f[0].length + f[1].length;
          }
        }
        const base = seg.bytes;
        await writevAll(this.fd, iov);
        this.remember(frames, i, j, seq, seg, base);
        seq += j - i;
        seg.bytes += chunkBytes;
        seg.lastSeq = seq - 1;
        this.writtenSeqValue = seq - 1;
        i = j;
        if (seg.bytes >= this.rollBytes) await this.rollOver();
      }
      for (const l of [...this.writtenListeners]) l();
      if (this.noRoomState !== null) this.roomAgain();
      await this.keepRoomAhead();
    } catch (err) {
      if (i > 0) for (const l of [...this.writtenListeners]) l();
      if (isNoRoomError(err) && await this.keepForLater(frames.slice(i), err as Error)) throw err;
      // The journal can no longer promise anything: fail every later append.
      this.failure = err as Error;
      this.log.error({ err }, 'journal write failed');
      throw err;
    }
  }

  /**
   * A write found no room: the part of it that got into the segment is cut
   * off (a torn frame must never be followed by whole ones), and `frames`
   * (not written) go back in front of the ones appended since, in order.
   * False when the segment could not be cut back (then the journal fails).
   */
  private async keepForLater(frames: PendingFrame[], err: Error): Promise<boolean> {
    const seg = this.segments[this.segments.length - 1];
    if (seg === undefined) return false;
    try {
      await new Promise<void>((resolve, reject) => fs.ftruncate(this.fd, seg.bytes, (e) => (e ? reject(e) : resolve())));
    } catch (e) {
      this.log.error({ err: e, segment: seg.path }, 'journal: no room, and the segment could not be cut back to its last whole frame');
      return false;
    }
    // The room kept ahead is used up (or the cut gave back what was left).
    seg.allocated = seg.bytes;
    let bytes = 0;
    for (const f of frames) bytes += Buffer.isBuffer(f) ? f.length : f[0].length + f[1].length;
    this.pending = frames.concat(this.pending);
    this.pendingBytes += bytes;
    if (this.noRoomState === null) {
      this.noRoomState = { since: new Date(), message: err.message };
      this.log.warn({ err, records: this.pending.length, bytes: this.pendingBytes }, 'journal: no room on the store\'s disk; records wait in memory, changes that need room fail with ENOSPC until there is room');
      for (const l of [...this.noRoomListeners]) l();
    }
    this.noRoomTimer ??= setInterval(() => { this.flush().catch(() => {}); }, NO_ROOM_RETRY_MS);
    this.noRoomTimer.unref();
    return true;
  }

  /**
   * Drops the segment being written when the archive holds all of it
   * (`ackedSeq`): a start after its drain does, so that a disk the journal
   * filled has its room back before the re-convergence needs some.
   */
  dropAcked(ackedSeq: number): Promise<void> {
    this.ackedSeqKnown = Math.max(this.ackedSeqKnown, ackedSeq);
    return this.exclusive(() => this.dropAckedSegment());
  }

  /**
   * Without room, the segment being written may be mostly records the
   * archive already holds (a segment goes only once a newer one exists, and
   * one is 64 MiB): when it holds nothing else, a new segment starts and the
   * old one goes, which gives its room back.
   */
  private async dropAckedSegment(): Promise<void> {
    const seg = this.segments[this.segments.length - 1];
    if (seg === undefined || seg.bytes === 0 || this.ackedSeqKnown < seg.lastSeq) return;
    try {
      await this.rollOver();
    } catch (err) {
      if (!isNoRoomError(err)) throw err;
      return;
    }
    this.log.info({ segment: seg.path, bytes: seg.bytes }, 'journal: a segment the archive holds entirely was dropped early (its room goes back to the store)');
    await this.trim(this.ackedSeqKnown);
  }

  /**
   * Tops up the room kept ahead of the segment being written when less than
   * half of it is left (or while short: each time it is asked). No room is
   * not a failure: `roomShort` says so, and a retry runs each
   * NO_ROOM_RETRY_MS until a top-up succeeds. A file system without
   * fallocate keeps none.
   */
  private async keepRoomAhead(extra = 0, retried = false): Promise<boolean> {
    const seg = this.segments[this.segments.length - 1];
    if (this.roomAheadBytes === 0 || seg === undefined || this.fd < 0) return true;
    const left = seg.allocated - seg.bytes - extra;
    if (left >= this.roomAheadBytes / 2 && this.roomShortState === null) return true;
    if (left >= this.roomAheadBytes) {
      this.roomShortEnds();
      return true;
    }
    const from = Math.max(seg.allocated, seg.bytes);
    const length = seg.bytes + extra + this.roomAheadBytes - from;
    try {
      await native.fallocate(this.fd, native.FALLOC_FL_KEEP_SIZE, from, length);
      seg.allocated = from + length;
      this.roomShortEnds();
      return true;
    } catch (err) {
      if (isNoRoomError(err)) {
        // The segment being written may hold only records the archive has: it goes, and its room with it.
        if (!retried && seg.bytes > 0 && this.ackedSeqKnown >= seg.lastSeq) {
          await this.dropAckedSegment();
          return this.keepRoomAhead(extra, true);
        }
        if (this.roomShortState === null) {
          this.roomShortState = { since: new Date(), message: (err as Error).message };
          this.log.warn({ err, aheadBytes: Math.max(0, left), roomAhead: this.roomAheadBytes }, 'journal: the store\'s disk has no room to keep ahead of the journal; changes that need room fail with ENOSPC, removals, renames and attributes are taken and written to the room kept');
        }
        this.roomShortTimer ??= setInterval(() => { this.exclusive(() => this.keepRoomAhead()).catch(() => {}); }, NO_ROOM_RETRY_MS);
        this.roomShortTimer.unref();
        return false;
      }
      const code = (err as { code?: string }).code;
      if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOSYS') {
        this.log.warn({ err: (err as Error).message }, 'journal: the store\'s file system cannot allocate ahead (fallocate); no room is kept ahead of the journal');
        this.roomAheadBytes = 0;
        this.roomShortEnds();
        return true;
      }
      // Anything else: the records are not at stake (they are written as before); said, and tried again with the next write.
      this.log.warn({ err: (err as Error).message }, 'journal: the room kept ahead could not be topped up');
      return true;
    }
  }

  /**
   * Bytes of the room kept ahead that records written or waiting have not
   * taken (Infinity when none is kept: nothing to count).
   */
  get roomLeft(): number {
    const seg = this.segments[this.segments.length - 1];
    if (this.roomAheadBytes === 0 || seg === undefined) return Infinity;
    return seg.allocated - seg.bytes - this.pendingBytes;
  }

  /**
   * Before a change that needs room on the disk and whose record takes
   * `bytes`: tops the room kept ahead up so that the record fits with half of
   * it still left for the changes that take none. False when the disk has no
   * room for that (`roomShort` then says so): the change must be refused
   * before it is made, or its record could find no room.
   */
  makeRoomFor(bytes: number): Promise<boolean> {
    if (this.roomAheadBytes === 0) return Promise.resolve(true);
    return this.exclusive(() => this.keepRoomAhead(this.pendingBytes + bytes));
  }

  private roomShortEnds(): void {
    if (this.roomShortTimer !== null) clearInterval(this.roomShortTimer);
    this.roomShortTimer = null;
    if (this.roomShortState === null) return;
    const since = this.roomShortState.since;
    this.roomShortState = null;
    this.log.warn({ since, roomAhead: this.roomAheadBytes }, 'journal: room again ahead of the journal on the store\'s disk; changes that need room are taken again');
  }

  /**
   * Removes the segments an open set aside (`damage.setAside`): called once
   * the store has been compared with the archive, which no longer needs them.
   */
  async dropSetAside(): Promise<void> {
    // Those of an earlier open too (a start that failed before its re-comparison was done).
    for (const name of await fsp.readdir(this.dir)) if (name.endsWith('.seg.damaged')) await fsp.rm(join(this.dir, name), { force: true });
    this.damage = null;
  }

  /**
   * Lends up to `bytes` (whole 64 KiB pieces) of the room kept ahead back to
   * the disk, for the store's small state files on a full disk
   * (store/durable-file.ts); a later top-up takes it again. True when some
   * was given.
   */
  giveBackRoom(bytes: number): Promise<boolean> {
    return this.exclusive(async () => {
      const seg = this.segments[this.segments.length - 1];
      if (seg === undefined) return false;
      const piece = 64 * 1024;
      const n = Math.min(Math.ceil(bytes / piece) * piece, Math.floor((seg.allocated - seg.bytes) / piece) * piece);
      if (n <= 0) return false;
      // After close (the mirror's last state file) through a descriptor of its own.
      const fd = this.fd >= 0 ? this.fd : await native.openAt(native.AT_FDCWD, seg.path, fs.constants.O_WRONLY);
      try {
        await punchAhead(fd, seg, n);
      } finally {
        if (fd !== this.fd) await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
      }
      this.log.info({ bytes: n, aheadBytes: seg.allocated - seg.bytes }, 'journal: room kept ahead lent to a state file on a full disk');
      return true;
    });
  }

  /**
   * Gives back what a segment no longer written keeps past its end (a hole
   * punched past EOF; the file's size does not change).
   */
  private async releaseRoomAhead(fd: number, seg: Segment): Promise<void> {
    if (seg.allocated > seg.bytes) await punchAhead(fd, seg, seg.allocated - seg.bytes).catch(() => {});
    seg.allocated = seg.bytes;
  }

  private roomAgain(): void {
    const since = this.noRoomState?.since;
    this.noRoomState = null;
    if (this.noRoomTimer !== null) clearInterval(this.noRoomTimer);
    this.noRoomTimer = null;
    this.log.warn({ since }, 'journal: room again on the store\'s disk; every waiting record is written');
  }

  /** Calls `listener` each time a write finds no room (see `noRoom`). */
  onNoRoom(listener: () => void): () => void {
    this.noRoomListeners.add(listener);
    return () => this.noRoomListeners.delete(listener);
  }

  /** Calls `listener` whenever more records have been written to a segment. */
  onWritten(listener: () => void): () => void {
    this.writtenListeners.add(listener);
    return () => this.writtenListeners.delete(listener);
  }

  /**
   * Reads written records with seq > `afterSeq`, up to about `maxBytes` (at
   * least one record), for shipping. Null when there is none yet. Reading on
   * from where the previous call stopped, or reading its batch again, costs
   * no seek (see `marks`; otherwise the frame headers of the segment are
   * walked from its start). With `into` (a buffer of at least `maxBytes`
   * that the caller no longer needs) the frames are read into it instead of
   * a new buffer: the batch is then a view of `into`.
   */
  async readAfter(afterSeq: number, maxBytes: number, into?: Buffer): Promise<JournalBatch | null> {
    if (afterSeq >= this.writtenSeqValue) return null;
    const idx = this.segments.findIndex((s) => s.lastSeq > afterSeq);
    if (idx < 0) return null;
    const seg = this.segments[idx]!;
    if (afterSeq + 1 < seg.firstSeq) throw new Error(`journal no longer holds record ${afterSeq + 1} (oldest kept: ${seg.firstSeq})`);
    const fromMemory = this.readRecent(seg, afterSeq, maxBytes, into);
    if (fromMemory !== null) return fromMemory;
    const fh = await this.readHandle(seg);
    let offset: number;
    const mark = this.marks.find((m) => m.seg === seg && m.seq === afterSeq + 1);
    if (mark !== undefined) {
      offset = mark.offset;
    } else if (afterSeq + 1 === seg.firstSeq) {
      offset = 0;
    } else {
      offset = 0;
      const header = Buffer.alloc(FRAME_HEADER_BYTES);
      for (let seq = seg.firstSeq; seq <= afterSeq; seq++) {
        await fh.read(header, 0, FRAME_HEADER_BYTES, offset);
        offset += FRAME_HEADER_BYTES + header.readUInt32LE(0);
      }
    }
    // Whole frames only (their checksums were checked when the segment was
    // opened or written; the archive checks them again); at least one.
    const wanted = Math.min(seg.bytes - offset, Math.max(maxBytes, FRAME_HEADER_BYTES));
    let buf = into !== undefined && into.length >= wanted ? into.subarray(0, wanted) : Buffer.allocUnsafe(wanted);
    buf = buf.subarray(0, (await fh.read(buf, 0, buf.length, offset)).bytesRead);
    let used = 0;
    let count = 0;
    while (used + FRAME_HEADER_BYTES <= buf.length && afterSeq + count < seg.lastSeq) {
      const len = FRAME_HEADER_BYTES + buf.readUInt32LE(used);
      if (used + len > buf.length) break;
      used += len;
      count++;
    }
    if (count === 0) {
      const len = FRAME_HEADER_BYTES + buf.readUInt32LE(0);
      buf = Buffer.allocUnsafe(len);
      await fh.read(buf, 0, len, offset);
      if (readFrame(buf, 0).kind !== 'record') throw new Error(`journal segment ${seg.path}: unreadable record ${afterSeq + 1}`);
      used = len;
      count = 1;
    }
    this.marks = [{ seg, seq: afterSeq + 1, offset }, { seg, seq: afterSeq + count + 1, offset: offset + used }];
    return { frames: buf.subarray(0, used), firstSeq: afterSeq + 1, lastSeq: afterSeq + count, count };
  }

  /** Keeps frames [i, j) of a chunk just written at `base` of `seg` (the first is record `firstSeq`). */
  private remember(frames: PendingFrame[], i: number, j: number, firstSeq: number, seg: Segment, base: number): void {
    // Kept frames are consecutive records; anything else starts them afresh.
    if (this.recent.length - this.recentHead === 0 || this.recentFirstSeq + (this.recent.length - this.recentHead) !== firstSeq) {
      this.recentBytes = 0;
      this.recent = [];
      this.recentHead = 0;
      this.recentFirstSeq = firstSeq;
    }
    let offset = base;
    for (let k = i; k < j; k++) {
      const frame = frames[k]!;
      const bytes = Buffer.isBuffer(frame) ? frame.length : frame[0].length + frame[1].length;
      this.recent.push({ frame, bytes, seg, offset });
      this.recentBytes += bytes + RECENT_ENTRY_COST;
      offset += bytes;
    }
    this.forgetRecent(() => this.recentBytes > RECENT_BYTES);
  }

  /** Drops the oldest kept frames while `drop(their seq)` says so. */
  private forgetRecent(drop: (seq: number) => boolean): void {
    while (this.recentHead < this.recent.length && drop(this.recentFirstSeq)) {
      this.recentBytes -= this.recent[this.recentHead]!.bytes + RECENT_ENTRY_COST;
      this.recent[this.recentHead] = undefined as unknown as RecentFrame;
      this.recentHead++;
      this.recentFirstSeq++;
    }
    if (this.recentHead > 1024 && this.recentHead * 2 > this.recent.length) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }

  /** The batch readAfter would read, taken from the kept frames; null when they do not hold record afterSeq + 1. */
  private readRecent(seg: Segment, afterSeq: number, maxBytes: number, into: Buffer | undefined): JournalBatch | null {
    const i0 = this.recentHead + (afterSeq + 1 - this.recentFirstSeq);
    if (afterSeq + 1 < this.recentFirstSeq || i0 >= this.recent.length) return null;
    const first = this.recent[i0]!;
    if (first.seg !== seg) return null;
    let total = 0;
    let j = i0;
    // Whole frames of this segment only; at least one.
    while (j < this.recent.length && this.recent[j]!.seg === seg && (j === i0 || total + this.recent[j]!.bytes <= maxBytes)) total += this.recent[j++]!.bytes;
    const buf = into !== undefined && into.length >= total ? into.subarray(0, total) : Buffer.allocUnsafe(total);
    let at = 0;
    for (let k = i0; k < j; k++) {
      const f = this.recent[k]!.frame;
      if (Buffer.isBuffer(f)) {
        at += f.copy(buf, at);
      } else {
        at += f[0].copy(buf, at);
        at += f[1].copy(buf, at);
      }
    }
    const count = j - i0;
    this.marks = [{ seg, seq: afterSeq + 1, offset: first.offset }, { seg, seq: afterSeq + count + 1, offset: first.offset + total }];
    return { frames: buf, firstSeq: afterSeq + 1, lastSeq: afterSeq + count, count };
  }

  /** A read descriptor of `seg`, kept open while the shipper reads it. */
  private async readHandle(seg: Segment): Promise<fsp.FileHandle> {
    if (this.reader !== null && this.reader.seg === seg) return this.reader.fh;
    await this.closeReader();
    const fh = await fsp.open(seg.path, 'r');
    this.reader = { seg, fh };
    return fh;
  }

  private async closeReader(): Promise<void> {
    const r = this.reader;
    this.reader = null;
    if (r !== null) await r.fh.close().catch(() => {});
  }

  /**
   * Deletes segments whose every record is at or below `ackedSeq`. The
   * segment being written is kept: it rolls over by size.
   */
  async trim(ackedSeq: number): Promise<void> {
    this.ackedSeqKnown = Math.max(this.ackedSeqKnown, ackedSeq);
    this.forgetRecent((seq) => seq <= ackedSeq);
    while (this.segments.length > 1 && this.segments[0]!.lastSeq <= ackedSeq) {
      const seg = this.segments.shift()!;
      if (this.reader?.seg === seg) await this.closeReader();
      await fsp.rm(seg.path, { force: true });
    }
    // Short of room: the segment being written may be all acked now, and can go (its room back), and
    // what a deleted segment gave back may be the room the journal lacked ahead. Not awaited: a trim
    // may run inside the chain (dropAckedSegment's own).
    if (this.roomShortState !== null) {
      this.exclusive(async () => { await this.dropAckedSegment(); await this.keepRoomAhead(); }).catch(() => {});
      return;
    }
    // On a small disk (the room kept ahead, 1% of it, is under a quarter of a segment) a segment the
    // archive holds entirely goes once it is twice that room, without waiting for the disk to fill:
    // otherwise acked records would hold up to 64 MiB of a disk of a few hundred.
    const seg = this.segments[this.segments.length - 1];
    if (seg !== undefined && this.smallDisk && seg.bytes >= 2 * this.roomAheadBytes && ackedSeq >= seg.lastSeq) {
      this.exclusive(() => this.dropAckedSegment()).catch(() => {});
    }
  }

  /** Bytes of the records after `ackedSeq` (an estimate within one segment's granularity). */
  bytesAfter(ackedSeq: number): number {
    let n = this.pendingBytes;
    for (const s of this.segments) {
      if (s.lastSeq <= ackedSeq) continue;
      if (s.firstSeq > ackedSeq) n += s.bytes;
      else n += Math.round(s.bytes * (s.lastSeq - ackedSeq) / Math.max(1, s.lastSeq - s.firstSeq + 1));
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.noRoomTimer !== null) clearInterval(this.noRoomTimer);
    this.noRoomTimer = null;
    if (this.roomShortTimer !== null) clearInterval(this.roomShortTimer);
    this.roomShortTimer = null;
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
      this.flushScheduled = false;
    }
    await this.closeReader();
    // Without room the records in memory are not written: the error is the caller's, the segment is closed anyway.
    const synced = await this.sync().then(() => null, (err: unknown) => err as Error);
    await this.chain;
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    }
    if (synced !== null) throw synced;
  }

  /**
   * Small records wait up to FLUSH_DELAY_MS for company, so that a stream of
   * small ops (an untar: one FUSE request per event-loop turn) costs one
   * writev per few milliseconds, not one per op; FLUSH_BYTES pending go on
   * the next turn. Whoever needs the records on disk does not wait for the
   * timer: `sync()` and `flush()` write at once (an fsync, a sync-mode op and
   * `strata sync` all go through them), and a crash loses only records whose
   * op was never promised durable.
   */
  private scheduleFlush(): void {
    if (this.pendingBytes >= FLUSH_BYTES) {
      if (this.flushTimer !== null) {
        clearTimeout(this.flushTimer);
        this.flushTimer = null;
        this.flushScheduled = false;
      }
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      setImmediate(() => this.flushNow());
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.flushTimer = setTimeout(() => this.flushNow(), FLUSH_DELAY_MS);
  }

  private flushNow(): void {
    this.flushTimer = null;
    this.flushScheduled = false;
    this.flush().catch(() => {});
  }

  private async rollOver(): Promise<void> {
    await fdatasync(this.fd);
    this.durableSeqValue = Math.max(this.durableSeqValue, this.writtenSeqValue);
    const old = this.fd;
    const oldSeg = this.segments[this.segments.length - 1]!;
    // Its room kept ahead goes to the new segment (released first: the disk may have no other).
    await this.releaseRoomAhead(old, oldSeg);
    await this.startSegment(this.writtenSeqValue + 1);
    await new Promise<void>((resolve) => fs.close(old, () => resolve()));
    await this.keepRoomAhead();
  }

  private async startSegment(firstSeq: number): Promise<void> {
    const path = join(this.dir, `${String(firstSeq).padStart(16, '0')}${SEGMENT_SUFFIX}`);
    this.fd = await openAppend(path);
    this.segments.push({ firstSeq, path, bytes: 0, lastSeq: firstSeq - 1, allocated: 0 });
    // The new name must survive a crash before any record in it is durable.
    const dirFd = await fsp.open(this.dir, 'r');
    try {
      await dirFd.sync();
    } finally {
      await dirFd.close();
    }
  }
}

/** A frame waiting to be written: whole, or its head and its payload. */
type PendingFrame = Buffer | [head: Buffer, payload: Buffer];

/** A frame written to `seg` at `offset`, kept for the shipper. */
interface RecentFrame {
  frame: PendingFrame;
  bytes: number;
  seg: Segment;
  offset: number;
}

interface SegmentScan {
  bytes: number;
  lastSeq: number;
  damage: string | null;
}

/** Reads a segment's frames; stops at the first torn or corrupt one. */
async function scanSegment(path: string, firstSeq: number): Promise<SegmentScan> {
  const buf = await fsp.readFile(path);
  let off = 0;
  let expect = firstSeq;
  while (off < buf.length) {
    const r = readFrame(buf, off);
    if (r.kind === 'incomplete') return { bytes: off, lastSeq: expect - 1, damage: 'torn frame' };
    if (r.kind === 'corrupt') return { bytes: off, lastSeq: expect - 1, damage: r.reason };
    if (r.record.seq !== expect) return { bytes: off, lastSeq: expect - 1, damage: `sequence ${r.record.seq} where ${expect} was expected` };
    off += r.bytes;
    expect++;
  }
  return { bytes: off, lastSeq: expect - 1, damage: null };
}

/** Gives the disk back the last `n` bytes of what `seg` (open on `fd`) keeps allocated past its end: a hole punched there, its size unchanged. */
async function punchAhead(fd: number, seg: Segment, n: number): Promise<void> {
  await native.fallocate(fd, native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_KEEP_SIZE, seg.allocated - n, n);
  seg.allocated -= n;
}

/** Renames segment files `names` of `dir` to `NAME.damaged` (never read again); returns the new names. */
async function setAside(dir: string, names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    await fsp.rename(join(dir, name), join(dir, `${name}.damaged`));
    out.push(`${name}.damaged`);
  }
  return out;
}

/** The size of the disk holding `dir`, in bytes. */
async function diskBytesOf(dir: string): Promise<number> {
  const s = await native.statfsAt(native.AT_FDCWD, dir);
  return Number(s.blocks) * Number(s.bsize);
}

function openAppend(path: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

async function writevAll(fd: number, buffers: Buffer[]): Promise<void> {
  let list = buffers;
  while (list.length > 0) {
    // writev takes at most IOV_MAX (1024) buffers per call.
    const chunk = list.slice(0, 1024);
    const total = chunk.reduce((n, b) => n + b.length, 0);
    const written = await new Promise<number>((resolve, reject) => fs.writev(fd, chunk, (err, n) => (err ? reject(err) : resolve(n))));
    if (written === total) {
      list = list.slice(chunk.length);
      continue;
    }
    // A short write: continue with what is left.
    let skip = written;
    const rest: Buffer[] = [];
    for (const b of list) {
      if (skip >= b.length) { skip -= b.length; continue; }
      rest.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    list = rest;
  }
}
