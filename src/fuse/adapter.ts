// The FUSE adapter: translates kernel requests (libfuse 3's low-level API,
// through strata's FUSE bridge, native/fuse-native) into filesystem-core calls.
// Requests name objects by node id, and so does the core's node-addressed API
// (src/core/nodes.ts, which keeps the node table): the adapter maps one onto
// the other, answers every request exactly once, and maps every error through
// the one errno table. Reads and writes of plain local files are served by the FUSE thread
// itself (direct descriptors), so they never reach this thread.
import { nameBytes } from '../protocol/names.js';
import { ll, FC, type Session, type Features } from './bridge.js';
import type { BigIntStats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import type { Filesystem, Caller, OpenResult, DirEntryInfo, SetattrChanges } from '../core/filesystem.js';
import type { ChangeSink } from '../ports/change-sink.js';
import type { SettleWatch } from '../ports/restore-hooks.js';
import { ArchiveDataError, errnoOf, isExpectedError, FsError } from '../errors/errno.js';
import type { Logger } from '../log/logger.js';
import { Nodes, ROOT_NODEID, type Inode, type RenameFlag } from '../core/nodes.js';
import { encodeAttr, encodeDirEntries, encodeStatfs, inoOfAttrs, statOfAttrs } from './attr-encoding.js';
import { RequestHold, countsAsInFlight, namespaceModeOf, type HoldFigures } from './request-hold.js';
import { NamespaceLock, type NamespaceMode, type NamespacePaths } from './namespace-lock.js';

/** Open flags of replyOpen/replyCreate, what fastPaths lets the FUSE thread answer, setattr's bits and arguments: all from the bridge's C. */
const OPEN = FC.open;
const FAST = FC.fast;
const SET = FC.setattr;
const SETARG = FC.setattrArgs;
const { EIO, ERANGE, ENOSYS } = osConstants.errno;

const OP = ll.ops;
/** Asked by the kernel before every write(2); see noCapabilities (native/fuse-native/src/fastpath.c). */
const CAPS_XATTR = 'security.capability';
const OP_NAMES: string[] = Object.entries(OP).sort((a, b) => a[1] - b[1]).map(([k]) => k);

/** Buckets of inode numbers for the restore's changes (FuseAdapter.settleWatch). */
const SETTLE_BUCKETS = 4096;

function settleBucket(ino: bigint): number {
  return Number(ino % BigInt(SETTLE_BUCKETS));
}

const NUL = Buffer.of(0);

export interface MountOptions {
  /** Let other users use the mount (always together with default_permissions). */
  allowOther?: boolean;
  /**
   * Seconds the kernel may cache attributes, names and "no such name". strata
   * is the only writer of its store and every object has one kernel inode, so
   * the kernel's caches stay right; these only bound the staleness if the store
   * is changed behind strata's back.
   */
  attrTimeout?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  /**
   * Let the FUSE thread answer what needs no JavaScript (default true): reads
   * and writes of local files, and, relative to O_PATH descriptors of the
   * store, getattr and lookup, plus setattr, create, mkdir and open when
   * nothing journals the store. False routes every request through the core.
   */
  directIo?: boolean;
  /**
   * Most descriptors the FUSE thread keeps for nodes (default: half the
   * process's descriptor limit; it lets go of the least recently used). The
   * environment variable STRATA_NODE_TABLE_MAX sets it too (tests use a tiny
   * table so that nodes leave it all the time).
   */
  nodeTableMax?: number;
  /**
   * Largest write the kernel sends in one request, bytes (default 1 MiB: the
   * kernel's max_pages limit of 256 pages, which libfuse 3 negotiates from it).
   */
  maxWrite?: number;
  /**
   * Ask the kernel for its writeback cache: writes land in the page cache and
   * reach strata in page-sized batches later (at the latest on fsync, close
   * or memory pressure); the kernel keeps size and mtime meanwhile. Not for a
   * sync-mode mirror, where every write must wait for the archive.
   */
  writebackCache?: boolean;
  /**
   * Ask the kernel for FUSE passthrough (Linux 6.9+; default true, not with
   * the writeback cache, which the kernel refuses alongside it): read-only
   * opens of local files, while nothing journals or tracks the store, are
   * served by the kernel from the store's file (docs/fuse-bridge.md). The
   * environment variable STRATA_PASSTHROUGH=0 turns it off too.
   */
  passthrough?: boolean;
  /**
   * With passthrough: writable opens pass through too (default false), under
   * the same conditions (nothing journals, tracks or restores the store) and
   * with handle_killpriv_v2 off (the daemon turns it off: the kernel must drop
   * set-ID bits and file capabilities itself before such a write). The kernel
   * then writes the store's file itself: no WRITE request reaches strata. A
   * checkpoint waits until such handles are closed (docs/fuse-bridge.md).
   * STRATA_PASSTHROUGH_WRITES=1 turns it on too.
   */
  passthroughWrites?: boolean;
  /**
   * Ask the kernel for handle_killpriv_v2 (default true): it no longer asks
   * for security.capability before writes, and leaves dropping set-ID bits on
   * write and truncate to strata. The daemon turns it off on a mirrored mount
   * (docs/fuse-bridge.md: the store's own kernel would drop a file capability
   * unjournalled). STRATA_KILLPRIV_V2=0 turns it off too.
   */
  handleKillprivV2?: boolean;
  /**
   * Let O_TRUNC come with the open (FUSE_CAP_ATOMIC_O_TRUNC, default true).
   * The daemon turns it off on a mirrored mount: the kernel then truncates
   * with a SETATTR under the inode's lock, which keeps another handle's
   * write from reaching the store between the truncation and its journal
   * record (docs/mirroring.md).
   */
  atomicOTrunc?: boolean;
  /**
   * Ask the kernel for parallel directory operations (default true): lookups
   * and readdirs of one directory are no longer serialised by the kernel.
   * STRATA_PARALLEL_DIROPS=0 turns it off too.
   */
  parallelDirops?: boolean;
  /**
   * Ask the kernel to enforce POSIX ACLs (default true; FUSE_CAP_POSIX_ACL,
   * with FUSE_CAP_DONT_MASK: strata applies the umask, unless the parent
   * has a default ACL). Off, the ACLs are still kept and mirrored, but the
   * kernel checks mode bits only. STRATA_POSIX_ACL=0 turns it off too.
   */
  posixAcl?: boolean;
  /**
   * Journalled direct writes (default true): on a mirrored store in async
   * mode, with no restore under way and nothing tracked, the FUSE thread
   * applies the writes of files opened through the core itself and hands
   * the core only their records, ahead of its reply (docs/mirroring.md).
   * The environment variable STRATA_DIRECT_JOURNAL=0 turns it off too.
   */
  directJournal?: boolean;
  /** Name shown in /proc/mounts. */
  fsname?: string;
  /** libfuse's request trace on stderr. */
  debug?: boolean;
}

/** Passthrough is asked for (not with the writeback cache, which the kernel refuses alongside it). */
function passthroughWanted(opts: MountOptions): boolean {
  return !opts.writebackCache && opts.passthrough !== false && process.env['STRATA_PASSTHROUGH'] !== '0';
}

/** Writable opens may pass through (MountOptions.passthroughWrites, or STRATA_PASSTHROUGH_WRITES=1), with passthrough asked for. */
export function passthroughWritesWanted(opts: MountOptions): boolean {
  return passthroughWanted(opts) && (opts.passthroughWrites === true || process.env['STRATA_PASSTHROUGH_WRITES'] === '1');
}

export function fuseOptionString(opts: MountOptions): string {
  const list = ['default_permissions', `max_write=${opts.maxWrite ?? 1048576}`, 'subtype=strata'];
  if (opts.fsname) list.push(`fsname=${opts.fsname.replace(/[,\\]/g, '_')}`);
  if (opts.allowOther) list.push('allow_other');
  if (opts.writebackCache) list.push('writeback_cache');
  if (passthroughWanted(opts)) list.push('passthrough');
  if (passthroughWritesWanted(opts)) list.push('passthrough_writes');
  if (opts.handleKillprivV2 !== false && process.env['STRATA_KILLPRIV_V2'] !== '0') list.push('handle_killpriv_v2');
  if (opts.parallelDirops !== false && process.env['STRATA_PARALLEL_DIROPS'] !== '0') list.push('parallel_dirops');
  if (opts.posixAcl !== false && process.env['STRATA_POSIX_ACL'] !== '0') list.push('posix_acl');
  if (opts.atomicOTrunc === false) list.push('no_atomic_o_trunc');
  if (opts.debug) list.push('debug');
  return list.join(',');
}

/** A change a rollback made to the store behind the kernel's back (store inode numbers; see Adapter.storeChanged). */
export type StoreChange =
  | { kind: 'removed'; parent: bigint; name: string; ino: bigint; survives: boolean }
  | { kind: 'added'; parent: bigint; name: string; ino: bigint }
  | { kind: 'moved'; from: { parent: bigint; name: string }; to: { parent: bigint; name: string }; ino: bigint }
  | { kind: 'changed'; ino: bigint };

/** Journalled direct writes, for `strata status` (FuseAdapter.directJournalStatus). */
export interface DirectJournalStatus {
  /** Asked for (not turned off by --no-direct-journal, STRATA_DIRECT_JOURNAL=0 or --no-direct-io). */
  enabled: boolean;
  /** On right now (a mirrored store in async mode, no restore, nothing tracked, no swap hold). */
  active: boolean;
  /** Writes the FUSE thread applied and handed over as notices, and their bytes. */
  directWrites: number;
  directBytes: number;
  /** Writes of journal-write handles that went to the core as requests (no credit, path off, killpriv). */
  sentToCore: number;
  /** Write notices journalled here. */
  journaled: number;
  /** Setattrs (mode, owner, times) the FUSE thread applied and handed over, and those journalled here. */
  directSetattrs: number;
  setattrsJournaled: number;
  /** Credit the FUSE thread has left, and credit out (left + notices not yet journalled). */
  creditBytes: number;
  creditOutBytes: number;
}

interface Request {
  op: number;
  req: number;
  ino: number;
  ino2: number;
  name: string | undefined;
  name2: string | undefined;
  fh: number;
  off: number;
  size: number;
  mode: number;
  toSet: number;
  rdev: number;
  caller: Caller;
  data: Buffer | undefined;
  attrs: Float64Array | undefined;
  fiFlags: number;
}

export class FuseAdapter {
  private session: Session | null = null;
  /** The core's nodes of this mount (node table included): from mount() on. */
  private nodes: Nodes | null = null;
  private readonly log: Logger;
  private readonly directIo: boolean;
  private readonly attrTimeout: number;
  private readonly entryTimeout: number;
  private readonly negativeTimeout: number;
  private readonly dirListings = new Map<number, DirEntryInfo[]>();
  private onInit: (() => void) | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** Requests answered so far, per op (for `strata status`). */
  readonly opCounts = new Map<string, number>();
  /** Bytes read and written by requests this thread answered (the FUSE thread's own: bridgeBytes). */
  private readonly jsBytes = { read: 0, written: 0 };
  /**
   * Told of every request this thread answers: its op, the seconds from its
   * arrival here to the answer, and the errno it was answered with by the
   * error path (0 otherwise). For the metrics (src/daemon/metrics.ts).
   */
  onAnswered: ((op: string, seconds: number, errno: number) => void) | null = null;
  /** Renames against requests that resolve paths (namespace-lock.ts). */
  private readonly namespace = new NamespaceLock();
  /** Requests handed to JavaScript and not answered yet, and when the last one came. */
  private unanswered = 0;
  /** The bridge's session has been freed (after the connection ended). */
  private closed = false;
  private lastRequestAt = 0;
  /** A swap holds requests (src/fuse/request-hold.ts), or null. */
  private hold: RequestHold<Request> | null = null;
  /** Requests that countsAsInFlight handed to the core and not answered yet. */
  private namedInFlight = 0;
  /** Journalled direct writes are wanted (MountOptions.directJournal). */
  private readonly directJournal: boolean;
  /** Journal room the FUSE thread holds as credit, or owes notices for (reserved in creditSink). */
  private creditOut = 0;
  private creditSink: ChangeSink | null = null;
  private creditTimer: NodeJS.Timeout | null = null;
  /** Writes journalled from the FUSE thread's notices, and their bytes. */
  private readonly djFigures = { notices: 0, journaled: 0, bytes: 0, setattrs: 0 };
  /** journalMark tokens waited for. */
  private readonly marks = new Map<number, () => void>();
  private markToken = 0;

  constructor(private readonly fs: Filesystem, readonly mountpoint: string, private readonly opts: MountOptions, log: Logger) {
    this.log = log.child({ component: 'fuse' });
    this.directIo = opts.directIo ?? true;
    this.attrTimeout = opts.attrTimeout ?? 60;
    this.entryTimeout = opts.entryTimeout ?? 60;
    this.negativeTimeout = opts.negativeTimeout ?? 60;
    this.directJournal = opts.directJournal !== false && process.env['STRATA_DIRECT_JOURNAL'] !== '0';
  }

  get knownInodes(): number {
    return this.nodes?.size ?? 0;
  }

  /** Requests answered so far, per op: by this thread and by the FUSE thread. */
  requestCounts(): Record<string, number> {
    const out: Record<string, number> = Object.fromEntries(this.opCounts);
    for (const [op, n] of Object.entries(this.bridgeCounts())) out[op] = (out[op] ?? 0) + n;
    return out;
  }

  /** The kernel caches writes (asked for with writebackCache and granted). */
  get writebackCache(): boolean {
    return this.session !== null && !this.closed && ll.writebackCache(this.session);
  }

  /**
   * What the connection negotiated with the kernel at INIT (null before it,
   * or once the session is gone), and passthrough's counters.
   */
  /** Largest write the kernel sends in one request (the max_write option). */
  get maxWrite(): number {
    return this.opts.maxWrite ?? 1048576;
  }

  get features(): Features | null {
    if (this.session === null || this.closed) return null;
    const f = ll.features(this.session);
    return f.initSeen || f.writebackCache ? f : null;
  }

  /** Requests the FUSE thread answered itself, per op. */
  bridgeCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    const fast = this.session && !this.closed ? ll.fastCounts(this.session) : null;
    fast?.forEach((n, op) => {
      const name = OP_NAMES[op];
      if (n > 0 && name !== undefined) out[name] = n;
    });
    return out;
  }

  /**
   * Bytes read and written through the mount so far: by this thread, and by
   * the FUSE thread (its reads count the size the kernel asked for, which is
   * more than was sent at the end of a file).
   */
  byteCounts(): { read: number; written: number } {
    const fast = this.session && !this.closed ? ll.fastBytes(this.session) : null;
    return { read: this.jsBytes.read + (fast?.[0] ?? 0), written: this.jsBytes.written + (fast?.[1] ?? 0) };
  }

  /**
   * Lets the FUSE thread answer what it can (see MountOptions.directIo;
   * without it nothing, but its node table keeps descriptors).
   * While a restore is under way only for the nodes this thread vouched for
   * as settled (FAST.SETTLED: names in pending directories come from the
   * archive, attributes of much of the rest from the restore); the daemon
   * calls it again once the restore has finished.
   */
  enableFastPaths(): void {
    if (!this.session || this.closed) return;
    const journal = this.journalling;
    // NODES: the node table keeps a descriptor per node even when the FUSE thread answers nothing (nodeDescriptor).
    const flags = !this.directIo
      ? FAST.NODES
      : this.fs.restoring
        ? FAST.SETTLED | (this.tracked ? FAST.TRACK : 0)
        : FAST.READ | (this.changesThroughCore ? 0 : FAST.WRITE) | (this.tracked ? FAST.TRACK : 0) | (journal ? FAST.JOURNAL : 0);
    const max = this.opts.nodeTableMax ?? Number(process.env['STRATA_NODE_TABLE_MAX'] ?? 0);
    ll.fastPaths(this.session, this.fs.store.root, flags, this.entryTimeout, this.negativeTimeout, Number.isFinite(max) ? max : 0);
    this.refillCredit();
  }

  // ---- journalled direct writes (native/fuse-native/src/journal.c) ----

  /**
   * The FUSE thread may apply writes of journal-write handles itself: a
   * mirrored store (in async mode, writable: the sink's reserve says), no
   * restore under way (a file may still need the archive's data), nothing
   * tracked (checkpoints keep their own rules), no hold (swap), and the
   * switch on.
   */
  private get journalling(): boolean {
    const sink = this.fs.sink;
    return this.directJournal && this.directIo && sink !== null && sink.reserve !== undefined && sink.asyncMode === true &&
      !this.fs.restoring && !this.tracked && this.hold === null && this.session !== null && !this.closed;
  }

  /** Credit the FUSE thread keeps at most: journal room it may fill before the core hears of it (I5). */
  private get creditWindow(): number {
    const env = Number(process.env['STRATA_DIRECT_JOURNAL_CREDIT'] ?? '');
    return Number.isFinite(env) && env > 0 ? env : 16 * 1024 * 1024;
  }

  /**
   * Tops the FUSE thread's credit up to the window, from the journal's room
   * (the sink's reserve), or takes it back when the path must be off.
   */
  private refillCredit(): void {
    if (!this.journalling || this.fs.sink !== (this.creditSink ?? this.fs.sink)) {
      this.revokeCredit();
      return;
    }
    const sink = this.fs.sink!;
    const window = this.creditWindow;
    if (this.creditOut > window / 2) return;
    const got = sink.reserve!(window - this.creditOut);
    if (got <= 0) return;
    this.creditSink = sink;
    this.creditOut += got;
    ll.journalGrant(this.session!, got);
    if (this.creditTimer === null) {
      // Room comes back with the archive's acks, and the sink may turn read-only: look again now and then.
      this.creditTimer = setInterval(() => this.refillCredit(), 200);
      this.creditTimer.unref();
    }
  }

  /** Takes the FUSE thread's unused credit back (its room goes back to the journal). */
  revokeCredit(): void {
    if (this.session === null || this.closed || this.creditOut === 0) return;
    const left = ll.journalRevoke(this.session);
    this.creditBack(left);
  }

  private creditBack(bytes: number): void {
    this.creditOut = Math.max(0, this.creditOut - bytes);
    this.creditSink?.unreserve?.(bytes);
    if (this.creditOut === 0) this.creditSink = null;
  }

  /** A write the FUSE thread applied (a `written` notice): its record, now. */
  private journalWritten(r: Request): void {
    this.djFigures.notices++;
    this.creditBack(r.size);
    if (r.data !== undefined && r.data.length > 0) {
      if (this.fs.recordDirectWrite(r.fh, r.off, r.data)) {
        this.djFigures.journaled++;
        this.djFigures.bytes += r.data.length;
      } else if (this.fs.handles.get(r.fh) === undefined) {
        this.log.error({ ino: r.ino, fh: r.fh, off: r.off, bytes: r.data.length }, 'a direct write of an unknown handle: not journalled');
      }
    }
    this.refillCredit();
  }

  /** A setattr the FUSE thread applied (an `applied` notice): its record, now. */
  private journalApplied(r: Request): void {
    this.djFigures.notices++;
    this.creditBack(r.size);
    const id = this.nodes?.table.find(r.ino)?.journalId ?? null;
    if (id === null || r.attrs === undefined || !this.fs.recordDirectSetattr(id, statOfAttrs(r.attrs))) {
      this.log.error({ ino: r.ino, id }, 'a setattr applied on the FUSE thread could not be journalled');
    } else {
      this.djFigures.setattrs++;
    }
    this.refillCredit();
  }

  /**
   * The FUSE thread may apply setattrs of `inode` (whose object id a create
   * or open through the core gave) and hand over their records.
   */
  private journalNode(inode: Inode, res: OpenResult): void {
    if (res.id === null || !this.directJournal || !this.directIo || this.fs.sink?.asyncMode !== true || !this.session || this.closed) return;
    if (inode.journalId === res.id) return;
    inode.journalId = res.id;
    ll.journalNode(this.session, inode.nodeid, true);
  }

  /**
   * Resolves true once every journalled direct write that may have started
   * before the call has its record appended (for the mirror's checkpoint):
   * the writes counted in the phase of before journalFlip have all queued
   * their notices, and a mark queued after them came out. False after
   * `timeoutMs` (or when the session is gone and writes were still counted).
   */
  async directWritesJournaled(timeoutMs = 2000): Promise<boolean> {
    const s = this.session;
    if (s === null || this.closed) return true;
    const until = Date.now() + timeoutMs;
    const old = ll.journalFlip(s);
    while (ll.journalActive(s, old) > 0) {
      if (Date.now() >= until || this.closed) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return this.queueDrained(until - Date.now());
  }

  /** Resolves true once everything queued to this thread before the call has come out; false after `ms`. */
  private queueDrained(ms: number): Promise<boolean> {
    const s = this.session;
    if (s === null || this.closed) return Promise.resolve(true);
    const token = ++this.markToken;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { this.marks.delete(token); resolve(false); }, Math.max(1, ms));
      this.marks.set(token, () => { clearTimeout(timer); resolve(true); });
      if (!ll.journalMark(s, token)) { this.marks.delete(token); clearTimeout(timer); resolve(false); }
    });
  }

  /** Journalled direct writes: on, counters, credit (`strata status`). */
  directJournalStatus(): DirectJournalStatus {
    const c = this.session && !this.closed ? ll.journalCounts(this.session) : null;
    return {
      enabled: this.directJournal && this.directIo,
      active: this.journalling,
      directWrites: c?.[0] ?? 0,
      directBytes: c?.[1] ?? 0,
      sentToCore: c?.[2] ?? 0,
      journaled: this.djFigures.journaled,
      directSetattrs: c?.[4] ?? 0,
      setattrsJournaled: this.djFigures.setattrs,
      creditBytes: c?.[3] ?? 0,
      creditOutBytes: this.creditOut,
    };
  }

  /**
   * Every change must reach the core: the store is journalled (mirror) or
   * tracked (checkpoints). Then the FUSE thread answers no setattr, create,
   * mkdir or open itself; writes of direct handles are answered there only
   * when the store is not journalled and, while tracked, only for blocks the
   * checkpoints have saved (the clearance table, `clearance`).
   */
  private get changesThroughCore(): boolean {
    return this.fs.sink !== null || this.tracked;
  }

  /** Changes are tracked (checkpoints), or about to be. */
  private get tracked(): boolean {
    return this.trackingOn || (this.fs.guard?.active ?? false);
  }

  private trackingOn = false;
  private trackBlockSize = 0;

  /**
   * Tracking of changes started or stopped (checkpoints), or a checkpoint is
   * being added (the clearance table was reset): the FUSE thread's own answers
   * follow; resolves once no direct write that did not see the change is still
   * running on a FUSE thread (later ones check the table or come here).
   */
  async trackingChanged(on: boolean): Promise<void> {
    this.trackingOn = on;
    this.enableFastPaths();
    if (!this.session || this.closed || !this.tracked) return;
    while (ll.directChanges(this.session) > 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  /**
   * After trackingChanged(true) (no new open passes through for writing any
   * more): waits until the files open for writing in FUSE passthrough
   * (`passthroughWrites`) are all closed, since the kernel writes those to the
   * store without a request; EBUSY after `timeoutMs`.
   */
  async passthroughWritersClosed(timeoutMs: number): Promise<void> {
    if (!this.session || this.closed) return;
    const until = Date.now() + timeoutMs;
    for (let step = 1; ; step = Math.min(step * 2, 50)) {
      const open = ll.features(this.session).passthroughWriters;
      if (open <= 0) return;
      if (Date.now() >= until) {
        throw new FsError('EBUSY', `${open} file${open === 1 ? ' is' : 's are'} open for writing in FUSE passthrough (--passthrough-writes), whose writes a checkpoint cannot see: close ${open === 1 ? 'it' : 'them'} (or wait longer: --wait-writers), or mount without --passthrough-writes`);
      }
      await new Promise((resolve) => setTimeout(resolve, step));
    }
  }

  /**
   * A swap (src/swap) changed whose checkpoints track changes, while requests
   * are held: only the flag changes here; the FUSE thread's own answers
   * follow when the hold ends (releaseHeld). `on` keeps every change going
   * through the core (files opened before the swap write the old store, and
   * its checkpoints must see those writes too).
   */
  setTrackingDuringHold(on: boolean): void {
    this.trackingOn = on;
  }

  /** Requests are held (a swap). */
  get holding(): boolean {
    return this.hold !== null;
  }

  /**
   * The checkpoints' clearance table on the FUSE thread (the bridge's
   * track.c): per store inode, the blocks whose old contents every checkpoint
   * has saved durably. A write of a direct handle touching only such blocks is
   * answered there, without this thread (docs/checkpoints.md).
   */
  readonly clearance = {
    /** Nothing is clear any more (a checkpoint is being taken); blocks of `blockSize` bytes. */
    reset: (blockSize: number): void => {
      this.trackBlockSize = blockSize;
      if (this.session && !this.closed) ll.trackReset(this.session, blockSize);
    },
    /** Blocks [first, first + count) of store inode `ino`, and all from `allFrom` on (-1: unknown), are saved by every checkpoint. */
    mark: (ino: bigint, allFrom: number, first: number, count: number): boolean =>
      this.session !== null && !this.closed && ll.trackMark(this.session, Number(ino & 0xffffffffn), Number(ino >> 32n), allFrom, first, count),
    /** Nothing of store inode `ino` is clear any more. */
    forget: (ino: bigint): void => {
      if (this.session && !this.closed) ll.trackForget(this.session, Number(ino & 0xffffffffn), Number(ino >> 32n));
    },
  };

  /** Writes the FUSE thread answered while changes were tracked, and those it sent here because a block was not saved yet. */
  trackCounts(): { direct: number; sentToCore: number } {
    const c = this.session && !this.closed ? ll.trackCounts(this.session) : null;
    return { direct: c?.[0] ?? 0, sentToCore: c?.[1] ?? 0 };
  }

  /**
   * The store changed behind the kernel's back (a rollback): the kernel's
   * view follows (names in the inode table; cached names, attributes and
   * data dropped, from a thread of the bridge's own). Objects come as store
   * inode numbers: the kernel may know one by a name the store no longer has.
   */
  storeChanged(ev: StoreChange): void {
    const t = this.nodes?.table;
    const s = this.session;
    if (!t || !s || this.closed) return;
    const dropEntry = (parent: Inode | undefined, name: string): void => {
      if (parent) ll.notifyInvalLater(s, parent.nodeid, 0, 0, name);
    };
    const dropAttrs = (ino: bigint): void => {
      const inode = t.findByIno(ino);
      if (inode) ll.notifyInvalLater(s, inode.nodeid, 0, -1);
    };
    switch (ev.kind) {
      case 'removed': {
        const parent = t.findByIno(ev.parent);
        if (parent) t.forgetName(parent, ev.name, ev.survives);
        dropEntry(parent, ev.name);
        if (ev.survives) dropAttrs(ev.ino);
        break;
      }
      case 'added':
        dropEntry(t.findByIno(ev.parent), ev.name);
        dropAttrs(ev.ino);
        break;
      case 'moved': {
        const from = t.findByIno(ev.from.parent);
        const to = t.findByIno(ev.to.parent);
        if (from && to) t.moveName(from, ev.from.name, to, ev.to.name);
        else if (from) t.forgetName(from, ev.from.name, true);
        dropEntry(from, ev.from.name);
        dropEntry(to, ev.to.name);
        dropAttrs(ev.ino);
        break;
      }
      case 'changed':
        dropAttrs(ev.ino);
        break;
    }
  }

  // ---- settled nodes (during a restore; native/fuse-native/src/settled.c) ----

  /**
   * The vouches for settled objects follow the restore's changes: an object
   * the restore is about to change loses its vouch (before the change: the
   * bridge's FUSE threads then answer nothing of it that they read after),
   * and a vouch is only made from a check that no change of the object
   * overlapped. Changes are counted per bucket of inode numbers: the last
   * change's sequence number, and the changes under way.
   */
  readonly settleWatch: SettleWatch = {
    begin: (ino) => {
      const b = settleBucket(ino);
      this.settleLast[b] = ++this.settleSeq;
      this.settleBusy[b]!++;
      const inode = this.nodes?.table.findByIno(ino);
      if (inode && this.session && !this.closed) ll.settled(this.session, inode.nodeid, false);
    },
    end: (ino) => {
      const b = settleBucket(ino);
      this.settleLast[b] = ++this.settleSeq;
      this.settleBusy[b]!--;
    },
  };

  private settleSeq = 0;
  private readonly settleLast = new Float64Array(SETTLE_BUCKETS);
  private readonly settleBusy = new Int32Array(SETTLE_BUCKETS);

  /** Vouches are made (a restore is under way and the FUSE thread may answer). */
  private get vouching(): boolean {
    return this.fs.restoring && this.directIo && this.session !== null && !this.closed;
  }

  /**
   * After answering `inode` with `st`, which the core found settled in a
   * check that began at settleSeq `since`: lets the FUSE thread answer it,
   * unless the restore changed (or is changing) an object of its bucket since.
   */
  private vouch(inode: Inode, st: BigIntStats, since: number): void {
    if (!this.vouching || inode.ino !== st.ino || inode.nodeid === ROOT_NODEID) return;
    const b = settleBucket(st.ino);
    if (this.settleBusy[b] !== 0 || this.settleLast[b]! > since) return;
    ll.settled(this.session!, inode.nodeid, true);
  }

  /** Mounts; resolves once the kernel has initialised the connection. */
  async mount(): Promise<void> {
    // The core numbers the root as the kernel's ABI does; the bridge's C says which that is.
    if (FC.ROOT_ID !== ROOT_NODEID) throw new Error(`the bridge's FUSE_ROOT_ID is ${FC.ROOT_ID}, the core's root node ${ROOT_NODEID}`);
    this.nodes = await Nodes.open(this.fs, () => {
      if (!this.session) throw new FsError('EIO', 'not mounted');
      return ll.allocNodeid(this.session);
    }, { descriptorOf: (nodeid) => (this.session && !this.closed ? ll.nodeDescriptor(this.session, nodeid) : -1) });
    let exitedResolve!: () => void;
    this.exited = new Promise((resolve) => { exitedResolve = resolve; });
    const ready = new Promise<void>((resolve) => { this.onInit = resolve; });
    this.session = ll.mount(this.mountpoint, fuseOptionString(this.opts),
      (op, req, ino, ino2, name, name2, fh, off, size, mode, toSet, rdev, uid, gid, pid, data, attrs, fiFlags, umask) => {
        if (op === OP.exit) {
          // The kernel connection is gone. Answer what is in flight, then let
          // the bridge free the session: close() answers what is still
          // pending with EIO, and refuses any reply after it.
          if (this.creditTimer !== null) clearInterval(this.creditTimer);
          this.creditTimer = null;
          void this.whenIdle(10_000, 0).then(() => {
            this.closed = true;
            const dropped = this.session ? ll.close(this.session) : 0;
            if (this.unanswered > 0 || dropped > 0) this.log.warn({ unanswered: this.unanswered, answeredEio: dropped }, 'requests left unanswered at exit');
            exitedResolve();
          });
          return;
        }
        this.dispatch({ op, req, ino, ino2, name, name2, fh, off, size, mode, toSet, rdev, caller: umask ? { uid, gid, pid, umask } : { uid, gid, pid }, data, attrs, fiFlags });
      }, this.attrTimeout);
    if (this.trackBlockSize > 0) ll.trackReset(this.session, this.trackBlockSize);
    this.enableFastPaths();
    await ready;
  }

  /** Resolves when the kernel connection has ended (after an unmount). */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /**
   * Resolves once no request has waited for an answer for `quietMs`, or after
   * `ms`. Used before an unmount (so a `release` on its way is answered while
   * the connection still serves) and after the connection ends (the bridge's
   * session is freed only once every request has been answered).
   */
  async whenIdle(ms: number, quietMs = 50): Promise<void> {
    const until = Date.now() + ms;
    while ((this.unanswered > 0 || Date.now() - this.lastRequestAt < quietMs) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Lets the process exit once the connection is gone. */
  release(): void {
    if (this.session && !this.closed) ll.unref(this.session);
  }

  private dispatch(r: Request): void {
    if (r.op === OP.init) {
      this.onInit?.();
      this.onInit = null;
      return;
    }
    if (r.op === OP.forget) {
      this.nodes?.forget(r.ino, r.off);
      return;
    }
    if (r.op === OP.newnode) {
      this.adoptBridgeNode(r);
      return;
    }
    if (r.op === OP.written) {
      this.journalWritten(r);
      return;
    }
    if (r.op === OP.applied) {
      this.journalApplied(r);
      return;
    }
    if (r.op === OP.mark) {
      const done = this.marks.get(r.off);
      this.marks.delete(r.off);
      done?.();
      return;
    }
    if (r.op === OP.failed) {
      // The FUSE thread answered an error (errno in mode, its op in rdev): logged by the same rule.
      const errno = -r.mode;
      if (!isExpectedError(errno)) this.log.warn({ op: OP_NAMES[r.rdev] ?? `op${r.rdev}`, ino: r.ino, name: r.name, errno, thread: 'fuse' }, 'request failed');
      return;
    }
    const held = this.hold?.decide(r) ?? 'run';
    if (held === 'ebusy') {
      try { ll.replyErr(r.req, errnoOf(new FsError('EBUSY', 'the mount is swapping its store'))); } catch { /* answered */ }
    }
    if (held === 'run') this.run(r);
  }

  private run(r: Request): void {
    const opName = OP_NAMES[r.op] ?? `op${r.op}`;
    let answered = false;
    const named = countsAsInFlight(r.op);
    if (named) this.namedInFlight++;
    this.unanswered++;
    this.lastRequestAt = Date.now();
    const arrived = this.onAnswered ? process.hrtime.bigint() : 0n;
    const sized = this.startSizeChange(r);
    const answer = (f: () => void, errno = 0): void => {
      if (answered) {
        this.log.error({ op: opName, ino: r.ino }, 'request answered twice (ignored)');
        return;
      }
      answered = true;
      // Just before the reply, so that a program's next getattr stays on the FUSE thread; one
      // waiting here runs after the reply (a promise's continuation, after this function).
      if (sized !== null) sized();
      if (named) this.namedInFlight--;
      this.unanswered--;
      if (this.closed) return; // the session is freed: nobody is listening
      this.opCounts.set(opName, (this.opCounts.get(opName) ?? 0) + 1);
      if (this.onAnswered) this.onAnswered(opName, Number(process.hrtime.bigint() - arrived) / 1e9, errno);
      try {
        f();
      } catch (err) {
        this.log.error({ op: opName, err }, 'reply failed');
        // A reply the bridge refused for its arguments left the request
        // pending: the kernel still needs an answer. (A request already
        // answered refuses this one too, and nothing is sent.)
        try { ll.replyErr(r.req, EIO); } catch { /* answered */ }
      }
    };
    // Requests that name objects run under the namespace lock, on the paths they name; renames exclude them (namespace-lock.ts).
    const mode = namespaceModeOf(r.op);
    const locked = (): Promise<void> => this.namespace.run(mode, () => this.namespacePaths(r, mode), async () => this.handle(r, answer));
    // A getattr during a size change of its node: after that change's reply (startSizeChange), outside the namespace lock.
    const sizing = r.op === OP.getattr ? this.sizeChanges.get(r.ino) : undefined;
    const work = sizing !== undefined ? sizing.then(locked) : locked();
    work.catch((err: unknown) => {
      const errno = errnoOf(err, (e) => this.log.error({ op: opName, ino: r.ino, name: r.name, err: e }, 'unexpected error, answered EIO'));
      // An EIO of a restore the archive did not serve says so (it is not the local disk's: primary-conditions.ts).
      if (!isExpectedError(errno)) this.log.warn({ op: opName, ino: r.ino, name: r.name, errno, err, ...(err instanceof ArchiveDataError ? { archive: true } : {}) }, 'request failed');
      answer(() => ll.replyErr(r.req, errno), errno);
    });
  }

  /** Per node: the size changes (writes, fallocates, truncations) JavaScript is answering, as one promise (startSizeChange). */
  private readonly sizeChanges = new Map<number, Promise<unknown>>();
  /**
   * The same, writes and fallocates only: a getattr that read attributes while
   * one began waits for it and reads again, under the namespace lock (these
   * take none, so they cannot wait for the getattr).
   */
  private readonly sizeWrites = new Map<number, Promise<unknown>>();

  /**
   * A request that may change a file's size: until it is answered, a getattr
   * of the node waits for it here, and the FUSE thread sends it here
   * (fastpath.c, sizing). The store has the new size before the kernel has
   * the reply; told it early, a program mapped the file past the kernel's
   * end of file (SIGBUS), and its stores there were cropped from the
   * write-back (the page cache then differed from the store; found
   * 2026-12-05 by the concurrent-writers test's mappers). Returns what ends it.
   */
  private startSizeChange(r: Request): (() => void) | null {
    if (r.op !== OP.write && r.op !== OP.fallocate && !(r.op === OP.setattr && (r.toSet & SET.SIZE) !== 0)) return null;
    const ino = r.ino;
    let end!: () => void;
    const mine = new Promise<void>((resolve) => { end = resolve; });
    const maps = r.op === OP.setattr ? [this.sizeChanges] : [this.sizeChanges, this.sizeWrites];
    const alls = maps.map((m) => {
      const all = Promise.all([m.get(ino), mine]);
      m.set(ino, all);
      return all;
    });
    ll.sizeChanging(ino, 1);
    return () => {
      ll.sizeChanging(ino, -1);
      end();
      maps.forEach((m, i) => { void alls[i]!.then(() => { if (m.get(ino) === alls[i]) m.delete(ino); }); });
    };
  }

  // ---- swap (src/swap/controller.ts holds the logic; these are its hands) ----

  /**
   * From now on requests wait (or get EBUSY; src/fuse/request-hold.ts), and
   * the FUSE thread answers nothing from the store (reads and writes of the
   * handles it was given go on there: they use those descriptors only).
   */
  holdRequests(mode: 'wait' | 'ebusy'): void {
    if (this.hold !== null) throw new Error('requests are held already');
    this.hold = new RequestHold(mode);
    if (this.session && !this.closed) ll.fastPaths(this.session, this.fs.store.root, 0, this.entryTimeout, this.negativeTimeout);
    this.revokeCredit();
  }

  /** Resolves true once no request (but reads) is under way here or on the FUSE thread, false at `deadline`. */
  async quiesce(deadline: number): Promise<boolean> {
    for (;;) {
      const busy = this.session && !this.closed ? ll.fastBusy(this.session) : 0;
      // Journalled direct writes count in fastBusy until their notices are queued; those must come out too.
      if (this.namedInFlight === 0 && busy === 0) return this.queueDrained(Math.max(1, deadline - Date.now()));
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /**
   * The store root moved (fs.store now names the new root, the process's
   * working directory is in it): every object the kernel knows is treated as
   * renamed away. Node ids stay valid until the kernel forgets them (open
   * handles keep their descriptors: they read and write the old file), but
   * no name leads to them any more; the FUSE thread's node table is emptied
   * and rooted at the new store; the kernel must look every cached name up
   * again (a new lookup gets a new node id, hence a new kernel inode with no
   * cached attributes or pages), and the root's attributes are dropped.
   */
  switchStore(rootIno: bigint): void {
    this.node().detachAll(rootIno);
    this.dirListings.clear();
    if (!this.session || this.closed) return;
    ll.resetNodes(this.session, this.fs.store.root);
    const rc = ll.notifyIncEpoch(this.session);
    if (rc !== 0) this.log.error({ rc }, 'swap: the kernel refused FUSE_NOTIFY_INC_EPOCH (Linux 6.16+ needed): names it cached may show the old tree until their timeout');
    ll.notifyInvalInode(this.session, ROOT_NODEID, 0, 0);
  }

  /**
   * From now on only requests that change the store or the journal are held
   * (a mirrored swap re-converges the new store with the archive, which needs
   * the store unchanged); held reads run now, and the FUSE thread answers
   * what it may again.
   */
  holdWritesOnly(): void {
    if (this.hold === null) return;
    this.enableFastPaths();
    for (const r of this.hold.holdWritesOnly()) this.runHeld(r);
  }

  /** Ends the hold: held requests run (against whichever store is live now). Returns the hold's figures. */
  releaseHeld(): HoldFigures {
    const h = this.hold;
    if (h === null) return { held: 0, ebusy: 0, longestWaitMs: 0, longestReadWaitMs: 0 };
    this.hold = null;
    this.enableFastPaths();
    const { run, figures } = h.end();
    for (const r of run) this.runHeld(r);
    return figures;
  }

  private runHeld(r: Request): void {
    // A lookup resolved on the FUSE thread before the hold named the store of then: resolve it again.
    if (r.op === OP.lookup) r.attrs = undefined;
    this.run(r);
  }

  /** The FUSE thread created `name` in node `ino` as node `ino2` (attributes in `attrs`). */
  private adoptBridgeNode(r: Request): void {
    const made = this.nodes !== null && r.name !== undefined && r.attrs !== undefined ? this.nodes.adopt(r.ino, r.name, inoOfAttrs(r.attrs), r.ino2) : null;
    if (made === null) this.log.error({ parent: r.ino, name: r.name, nodeid: r.ino2 }, 'node created by the FUSE thread in an unknown directory');
  }

  private node(): Nodes {
    if (!this.nodes) throw new FsError('EIO', 'not mounted');
    return this.nodes;
  }

  /**
   * The paths a request holds the namespace lock on, as the node table has them
   * when the lock asks (only while a rename is there to compare them with): a
   * rename's source and target names; another request's node (and the
   * second node of a link). 'all' when they cannot be told (then the request
   * fails in its handler anyway, after every rename before it).
   */
  private namespacePaths(r: Request, mode: NamespaceMode): NamespacePaths {
    if (mode === 'none') return [];
    try {
      const t = this.node().table;
      if (mode === 'exclusive') return [t.childPath(t.get(r.ino), this.name(r, 'name')), t.childPath(t.get(r.ino2), this.name(r, 'name2'))];
      const paths: string[] = [];
      for (const ino of r.op === OP.link ? [r.ino, r.ino2] : [r.ino]) {
        const inode = t.find(ino);
        const p = inode === undefined ? null : t.pathOf(inode);
        if (p !== null) paths.push(p);
      }
      return paths;
    } catch {
      return 'all';
    }
  }

  private name(r: Request, which: 'name' | 'name2'): string {
    const n = r[which];
    if (n === undefined || n.length === 0 || n === '.' || n === '..' || n.includes('/')) throw new FsError('EINVAL', 'bad name');
    return n;
  }

  /** Replies with the new entry `inode` (after a create-like op), whose attributes are `st`. */
  private replyNewEntry(r: Request, { node: inode, st }: { node: Inode; st: BigIntStats }, answer: (f: () => void) => void): void {
    // Just created through the mount: it has no security.capability.
    if (r.op !== OP.link) ll.noCapabilities(inode.nodeid, true);
    answer(() => ll.replyEntry(r.req, inode.nodeid, encodeAttr(st), this.attrTimeout, this.entryTimeout));
  }

  private openFlags(res: OpenResult): { fd: number; flags: number } {
    const keep = res.keepCache ? OPEN.KEEP_CACHE : 0;
    if (!this.directIo) return { fd: -1, flags: keep };
    // A mirrored store journals every write: writes must come through the core.
    // A file still (partly) in the archive is read through the core, which fetches what is missing.
    // Tracked (checkpoints): the FUSE thread writes only blocks already saved (the clearance table).
    // Journalled direct writes: a local file with an id, on a mirrored store (whether the FUSE
    // thread applies a write itself is decided per write: FAST.JOURNAL, credit).
    const journal = this.fs.sink?.asyncMode === true && this.directJournal && res.local && res.id !== null && !this.fs.restoring ? OPEN.JOURNAL_WRITE : 0;
    return { fd: res.fd, flags: keep | (res.local ? OPEN.DIRECT_READ : 0) | (this.fs.sink !== null ? journal : OPEN.DIRECT_WRITE) };
  }

  private async handle(r: Request, answer: (f: () => void) => void): Promise<void> {
    const nodes = this.node();
    const fs = this.fs;
    switch (r.op) {
      case OP.lookup: {
        const name = this.name(r, 'name');
        if (r.attrs !== undefined && !fs.restoring) {
          // Resolved on the FUSE thread (its descriptor becomes the node's): only the node id is missing.
          const attrs = r.attrs;
          const inode = nodes.resolved(r.ino, name, inoOfAttrs(attrs));
          answer(() => ll.replyEntry(r.req, inode.nodeid, attrs, this.attrTimeout, this.entryTimeout));
          return;
        }
        // During a restore a lookup resolved on the FUSE thread only brings
        // the descriptor (filed under the node id if it is the same object):
        // the attributes are the core's.
        const since = this.settleSeq;
        const found = await nodes.lookup(r.ino, name);
        if (found === null) {
          answer(() => ll.replyEntry(r.req, 0, null, 0, this.negativeTimeout));
          return;
        }
        const { node: inode, st, settled } = found;
        answer(() => ll.replyEntry(r.req, inode.nodeid, encodeAttr(st), this.attrTimeout, this.entryTimeout));
        if (settled) this.vouch(inode, st, since);
        return;
      }
      case OP.getattr: {
        const inode = nodes.get(r.ino);
        // During a restore: a settled object is answered by the FUSE thread from now on.
        const since = this.settleSeq;
        let { st, settled } = await nodes.getattr(r.ino, r.fh, this.vouching);
        if (settled === null) {
          // A write or fallocate of it began while they were read: they may show a size the
          // kernel does not have yet (startSizeChange). Read again after it; a few times at most.
          for (let again = 0, w = this.sizeWrites.get(r.ino); w !== undefined && again < 5; again++, w = this.sizeWrites.get(r.ino)) {
            await w;
            st = (await nodes.getattr(r.ino, r.fh, false)).st;
          }
        }
        answer(() => ll.replyAttr(r.req, encodeAttr(st), this.attrTimeout));
        if (settled === true) this.vouch(inode, st, since);
        return;
      }
      case OP.setattr: {
        const args = r.attrs ?? new Float64Array(SETARG.LEN);
        const ch: SetattrChanges = {};
        if (r.toSet & SET.MODE) ch.mode = r.mode;
        if (r.toSet & SET.UID) ch.uid = args[SETARG.UID]!;
        if (r.toSet & SET.GID) ch.gid = args[SETARG.GID]!;
        if (r.toSet & SET.SIZE) ch.size = r.off;
        // handle_killpriv_v2: a truncation by a caller without CAP_FSETID drops set-ID bits.
        if (r.toSet & SET.KILL_SUIDGID) ch.dropSetId = r.caller;
        if (r.toSet & (SET.ATIME | SET.MTIME | SET.ATIME_NOW | SET.MTIME_NOW)) {
          ch.atime = r.toSet & SET.ATIME_NOW ? 'now' : r.toSet & SET.ATIME ? { sec: args[SETARG.ATIME_S]!, nsec: args[SETARG.ATIME_NS]! } : 'omit';
          ch.mtime = r.toSet & SET.MTIME_NOW ? 'now' : r.toSet & SET.MTIME ? { sec: args[SETARG.MTIME_S]!, nsec: args[SETARG.MTIME_NS]! } : 'omit';
        }
        const st = await nodes.setattr(r.ino, r.fh, ch, r.caller);
        answer(() => ll.replyAttr(r.req, encodeAttr(st), this.attrTimeout));
        return;
      }
      case OP.readlink: {
        const target = await nodes.readlink(r.ino);
        answer(() => ll.replyReadlink(r.req, target));
        return;
      }
      case OP.mknod:
        return this.replyNewEntry(r, await nodes.mknod(r.ino, this.name(r, 'name'), r.mode, r.rdev, r.caller), answer);
      case OP.mkdir:
        return this.replyNewEntry(r, await nodes.mkdir(r.ino, this.name(r, 'name'), r.mode, r.caller), answer);
      case OP.symlink: {
        const name = this.name(r, 'name');
        if (r.name2 === undefined) throw new FsError('EINVAL');
        return this.replyNewEntry(r, await nodes.symlink(r.ino, name, r.name2, r.caller), answer);
      }
      case OP.link:
        return this.replyNewEntry(r, await nodes.link(r.ino, r.ino2, this.name(r, 'name2')), answer);
      case OP.unlink:
      case OP.rmdir: {
        const name = this.name(r, 'name');
        await (r.op === OP.unlink ? nodes.unlink(r.ino, name) : nodes.rmdir(r.ino, name));
        answer(() => ll.replyErr(r.req, 0));
        return;
      }
      case OP.rename: {
        const name = this.name(r, 'name');
        const newName = this.name(r, 'name2');
        // renameat2's flags (the bridge lets RENAME_NOREPLACE and RENAME_EXCHANGE through), in `mode`.
        const flag: RenameFlag = (r.mode & FC.RENAME_EXCHANGE) !== 0 ? 'exchange' : (r.mode & FC.RENAME_NOREPLACE) !== 0 ? 'noreplace' : null;
        await nodes.rename(r.ino, name, r.ino2, newName, flag);
        answer(() => ll.replyErr(r.req, 0));
        return;
      }
      case OP.open: {
        const { node: inode, res } = await nodes.open(r.ino, r.mode, r.caller);
        const { fd, flags } = this.openFlags(res);
        let delivered = false;
        answer(() => { delivered = ll.replyOpen(r.req, res.handle, fd, flags); });
        if (!delivered) await nodes.release(inode.nodeid, res.handle);
        else this.journalNode(inode, res);
        return;
      }
      case OP.create: {
        const { node: inode, res } = await nodes.create(r.ino, this.name(r, 'name'), r.mode, r.fiFlags, r.caller);
        const st = res.stat;
        if (res.created) ll.noCapabilities(inode.nodeid, true);
        const { fd, flags } = this.openFlags(res);
        let delivered = false;
        answer(() => { delivered = ll.replyCreate(r.req, inode.nodeid, encodeAttr(st), this.attrTimeout, this.entryTimeout, res.handle, fd, flags); });
        if (!delivered) await nodes.release(inode.nodeid, res.handle);
        else this.journalNode(inode, res);
        return;
      }
      case OP.read: {
        const buf = Buffer.allocUnsafe(r.size);
        const n = await fs.read(r.fh, buf, r.size, r.off);
        this.jsBytes.read += n;
        answer(() => ll.replyBuf(r.req, buf, n));
        return;
      }
      case OP.write: {
        const data = r.data ?? Buffer.alloc(0);
        const kill = (r.mode & FC.WRITE_KILL_SUIDGID) !== 0;
        // The kernel keeps the mode it cached: told when bits went.
        // An O_APPEND file's write goes to the store file's end (the bridge decides: write_appends, posix_rules.h sr_append).
        const append = (r.mode & FC.WRITE_APPEND) !== 0;
        const n = await this.withHandle(r, (h) => fs.write(h, data, data.length, r.off, kill ? r.caller : undefined, () => this.invalidateAttrs(r.ino), append));
        this.jsBytes.written += n;
        answer(() => ll.replyWrite(r.req, n));
        return;
      }
      case OP.flush:
        await fs.flush(r.fh);
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.release: {
        await nodes.release(r.ino, r.fh);
        answer(() => ll.replyErr(r.req, 0));
        return;
      }
      case OP.fsync:
        await fs.fsync(r.fh, r.mode !== 0);
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.fallocate:
        const kill = (r.rdev & FC.WRITE_KILL_SUIDGID) !== 0;
        await this.withHandle(r, (h) => fs.fallocate(h, r.mode, r.off, r.size, kill ? r.caller : undefined, () => this.invalidateAttrs(r.ino)));
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.opendir: {
        // No name left (an rmdir or a rename over it came after the kernel's lookup): through the node's descriptor.
        const handle = await nodes.opendir(r.ino);
        let delivered = false;
        answer(() => { delivered = ll.replyOpen(r.req, handle, -1, 0); });
        if (!delivered) await nodes.releasedir(r.ino, handle).catch(() => {});
        return;
      }
      case OP.readdir: {
        let entries = this.dirListings.get(r.fh);
        if (entries === undefined || r.off === 0) {
          entries = await nodes.readdir(r.ino);
          this.dirListings.set(r.fh, entries);
        }
        const slice = entries.slice(r.off);
        const { names, packed } = encodeDirEntries(slice);
        answer(() => ll.replyDir(r.req, names, packed, r.off));
        return;
      }
      case OP.releasedir:
        this.dirListings.delete(r.fh);
        await nodes.releasedir(r.ino, r.fh);
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.fsyncdir:
        await fs.fsyncdir(r.fh);
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.statfs: {
        const s = await fs.statfs();
        answer(() => ll.replyStatfs(r.req, encodeStatfs(s)));
        return;
      }
      case OP.access:
        await nodes.access(r.ino, r.mode);
        answer(() => ll.replyErr(r.req, 0));
        return;
      case OP.setxattr: {
        const name = r.name ?? '';
        if (name === CAPS_XATTR) ll.noCapabilities(r.ino, false);
        await nodes.setxattr(r.ino, name, r.data ?? Buffer.alloc(0), r.mode, r.caller);
        answer(() => ll.replyErr(r.req, 0));
        return;
      }
      case OP.getxattr: {
        const name = r.name ?? '';
        let value: Buffer;
        try {
          value = await nodes.getxattr(r.ino, name);
        } catch (err) {
          // Let the bridge answer the kernel's per-write capability probe itself.
          if (name === CAPS_XATTR && (err as { code?: string }).code === 'ENODATA') ll.noCapabilities(r.ino, true);
          throw err;
        }
        if (r.size === 0) answer(() => ll.replyXattrSize(r.req, value.length));
        else if (value.length > r.size) answer(() => ll.replyErr(r.req, ERANGE));
        else answer(() => ll.replyBuf(r.req, value, value.length));
        return;
      }
      case OP.listxattr: {
        const names = await nodes.listxattr(r.ino);
        const list = Buffer.concat(names.flatMap((n) => [nameBytes(n), NUL]));
        if (r.size === 0) answer(() => ll.replyXattrSize(r.req, list.length));
        else if (list.length > r.size) answer(() => ll.replyErr(r.req, ERANGE));
        else answer(() => ll.replyBuf(r.req, list, list.length));
        return;
      }
      case OP.removexattr: {
        const name = r.name ?? '';
        if (name === CAPS_XATTR) ll.noCapabilities(r.ino, false);
        await nodes.removexattr(r.ino, name);
        answer(() => ll.replyErr(r.req, 0));
        return;
      }
      default:
        answer(() => ll.replyErr(r.req, ENOSYS));
    }
  }

  /**
   * Runs `f` with the request's handle. A handle the FUSE thread made (0, its
   * descriptor + 1 in ino2) reaches this thread only once changes are tracked:
   * it is lent to the core for this one request (the bridge keeps and closes
   * the descriptor).
   */
  private async withHandle<T>(r: Request, f: (handle: number) => Promise<T>): Promise<T> {
    if (r.fh !== 0 || r.ino2 <= 0) return f(r.fh);
    const handle = this.fs.handles.add({ kind: 'file', fd: r.ino2 - 1, flags: 2 /* O_RDWR */, id: null, dirty: false, remote: false });
    try {
      return await f(handle);
    } finally {
      this.fs.handles.remove(handle);
    }
  }

  /**
   * After a write or fallocate that may have dropped set-ID bits
   * (handle_killpriv_v2): the kernel invalidates only the size and times it
   * caches, so a program asking for the mode alone would see the old one.
   * Offset -1: attributes only, no lock taken (the writer holds the inode).
   */
  private invalidateAttrs(nodeid: number): void {
    if (this.session && !this.closed) ll.notifyInvalInode(this.session, nodeid, -1, 0);
  }
}
