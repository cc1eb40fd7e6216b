/// <reference types="node" />
// Types of strata's FUSE bridge (src/*.c). The values of `ops` and
// `constants` come from the C at load time (src/module.c); only their names
// are written here. Request handles are opaque numbers: every request with a
// non-zero handle must be answered exactly once with one reply*; a second
// reply, or one after close(), throws an Error with code
// ERR_FUSE_REQUEST_ANSWERED and sends nothing.

export interface Session { readonly __session: unique symbol }

export type OpName =
  'init' | 'lookup' | 'forget' | 'getattr' | 'setattr' | 'readlink' | 'mknod' | 'mkdir' | 'unlink' | 'rmdir' |
  'symlink' | 'rename' | 'link' | 'open' | 'read' | 'write' | 'flush' | 'release' | 'fsync' | 'opendir' |
  'readdir' | 'releasedir' | 'fsyncdir' | 'statfs' | 'setxattr' | 'getxattr' | 'listxattr' | 'removexattr' |
  'access' | 'create' | 'fallocate' | 'exit' | 'newnode' | 'failed' | 'written' | 'mark' | 'applied';

export type AttrField =
  'INO_LO' | 'INO_HI' | 'MODE' | 'NLINK' | 'UID' | 'GID' | 'RDEV' | 'SIZE' | 'BLKSIZE' | 'BLOCKS' |
  'ATIME_S' | 'ATIME_NS' | 'MTIME_S' | 'MTIME_NS' | 'CTIME_S' | 'CTIME_NS';
export type SetattrArgField = 'UID' | 'GID' | 'ATIME_S' | 'ATIME_NS' | 'MTIME_S' | 'MTIME_NS';
export type SetattrBit = 'MODE' | 'UID' | 'GID' | 'SIZE' | 'ATIME' | 'MTIME' | 'ATIME_NOW' | 'MTIME_NOW' | 'KILL_SUIDGID';
export type StatfsField = 'BSIZE' | 'FRSIZE' | 'BLOCKS' | 'BFREE' | 'BAVAIL' | 'FILES' | 'FFREE' | 'FAVAIL' | 'NAMEMAX';
export type DirentField = 'INO_LO' | 'INO_HI' | 'MODE';
export type OpenFlag = 'KEEP_CACHE' | 'DIRECT_IO' | 'DIRECT_READ' | 'DIRECT_WRITE' | 'JOURNAL_WRITE';
export type FastFlag = 'READ' | 'WRITE' | 'TRACK' | 'SETTLED' | 'JOURNAL' | 'NODES';

export interface Constants {
  /** The root's node id (FUSE_ROOT_ID). */
  readonly ROOT_ID: number;
  /** Largest file handle JavaScript may give (replyOpen, replyCreate). */
  readonly HANDLE_MAX: number;
  /** Index of each field in an attribute array; LEN its length. */
  readonly attr: Readonly<Record<AttrField | 'LEN', number>>;
  /** Index of each field in a setattr record's array (the handler's `attrs`). */
  readonly setattrArgs: Readonly<Record<SetattrArgField | 'LEN', number>>;
  /**
   * Bits of a setattr record's `toSet` (libfuse's FUSE_SET_ATTR_*, and the
   * bridge's KILL_SUIDGID: with handle_killpriv_v2, drop set-user-ID, and
   * set-group-ID with group-execute, after the change).
   */
  readonly setattr: Readonly<Record<SetattrBit, number>>;
  /** Index of each field in replyStatfs's array. */
  readonly statfs: Readonly<Record<StatfsField | 'LEN', number>>;
  /** Index of each field of one name in replyDir's array; LEN numbers per name. */
  readonly dirent: Readonly<Record<DirentField | 'LEN', number>>;
  /** Flags of replyOpen and replyCreate. */
  readonly open: Readonly<Record<OpenFlag, number>>;
  /** Flags of fastPaths. */
  readonly fast: Readonly<Record<FastFlag, number>>;
  /**
   * A write record's `mode`, a fallocate record's `rdev`: the caller has no
   * CAP_FSETID and set-ID bits must go (handle_killpriv_v2).
   */
  readonly WRITE_KILL_SUIDGID: number;
  /** A write request's `mode` bit: the write appends (the program's file is O_APPEND; no writeback cache, no page write-back). */
  readonly WRITE_APPEND: number;
  readonly RENAME_NOREPLACE: number;
  readonly RENAME_EXCHANGE: number;
  /** The largest file strata keeps (2^50 bytes): a write, fallocate or size past it is EFBIG, a read past it reads nothing. */
  readonly MAX_FILE_BYTES: number;
  /** Journal bytes a write record takes besides its payload: a journalled direct write takes its size plus this in credit. */
  readonly JOURNAL_WRITE_OVERHEAD: number;
  /** Journal bytes a setattr record is counted for: the credit a journalled direct setattr takes. */
  readonly JOURNAL_SETATTR_BYTES: number;
}

/** What the connection negotiated at INIT (features()), and passthrough's counters. */
export interface Features {
  /** The bridge answered the kernel's INIT itself (and could add what libfuse 3.14 does not know). */
  readonly initSeen: boolean;
  readonly writebackCache: boolean;
  /** FUSE_PASSTHROUGH negotiated (asked for with the `passthrough` option, offered by the kernel). */
  readonly passthrough: boolean;
  /** FUSE_HANDLE_KILLPRIV_V2 negotiated (the `handle_killpriv_v2` option). */
  readonly handleKillprivV2: boolean;
  readonly offeredPassthrough: boolean;
  readonly offeredKillprivV2: boolean;
  /** FUSE_CAP_PARALLEL_DIROPS negotiated (the `parallel_dirops` option): lookups and readdirs of one directory run in parallel. */
  readonly parallelDirops: boolean;
  readonly offeredParallelDirops: boolean;
  /** FUSE_CAP_READDIRPLUS negotiated: never (the bridge has no readdirplus; docs/fuse-bridge.md says why). */
  readonly readdirplus: boolean;
  /** FUSE_CAP_POSIX_ACL with FUSE_CAP_DONT_MASK negotiated (the posix_acl option): the kernel enforces POSIX ACLs and leaves the umask to strata. */
  readonly posixAcl: boolean;
  /** The kernel offered both. */
  readonly offeredPosixAcl: boolean;
  /** FUSE_CAP_ATOMIC_O_TRUNC negotiated (off with the no_atomic_o_trunc option): O_TRUNC comes with the open, not as a SETATTR. */
  readonly atomicOTrunc: boolean;
  /** Opens answered with FOPEN_PASSTHROUGH so far. */
  readonly passthroughOpens: number;
  /** ... of them, opens that joined an inode already in passthrough (FOPEN_DIRECT_IO: requests as before). */
  readonly passthroughShared: number;
  /** Backing files the kernel refused to register. */
  readonly passthroughRefused: number;
  /** Backing files registered now. */
  readonly backingFiles: number;
  /** Writable opens may pass through (FUSE_PASSTHROUGH negotiated and the passthrough_writes option). */
  readonly passthroughWrites: boolean;
  /** Writable opens answered with FOPEN_PASSTHROUGH alone so far (their writes go to the store's file). */
  readonly passthroughWriteOpens: number;
  /** ... of them, handles open now (checkpoint create waits for 0). */
  readonly passthroughWriters: number;
}

/**
 * Called on the JavaScript thread for every record. `req` is 0 for notices
 * (init, forget, exit, newnode, failed), which take no reply. `attrs` is a
 * setattr record's arguments (constants.setattrArgs), or the attributes of a
 * lookup resolved on the FUSE thread or of a node it made (constants.attr).
 * A failed record carries the op in `rdev` and the errno in `mode`.
 * `umask`: a create, mkdir or mknod's caller's umask when POSIX ACLs are on
 * (strata applies it: creationMode), else 0 (the kernel applied it).
 */
export type RequestHandler = (
  op: number, req: number, ino: number, ino2: number, name: string | undefined, name2: string | undefined,
  fh: number, off: number, size: number, mode: number, toSet: number, rdev: number,
  uid: number, gid: number, pid: number, data: Buffer | undefined, attrs: Float64Array | undefined, fiFlags: number,
  umask: number,
) => void;

export function mount(mountpoint: string, options: string, onRequest: RequestHandler, attrTimeout: number): Session;
export function unref(session: Session): void;
/**
 * Frees the session once the connection has ended (after the `exit` record):
 * answers requests still pending with EIO and returns how many. Throws EBUSY
 * while the mount still serves. No reply may follow.
 */
export function close(session: Session): number;
export function replyErr(req: number, errno: number): void;
export function replyEntry(req: number, nodeid: number, attrs: Float64Array | null, attrTimeout: number, entryTimeout: number): void;
export function replyCreate(req: number, nodeid: number, attrs: Float64Array, attrTimeout: number, entryTimeout: number, handle: number, directFd: number, openFlags: number): boolean;
export function replyOpen(req: number, handle: number, directFd: number, openFlags: number): boolean;
export function replyAttr(req: number, attrs: Float64Array, timeout: number): void;
export function replyReadlink(req: number, target: string): void;
export function replyWrite(req: number, count: number): void;
export function replyBuf(req: number, buf: Buffer, length: number): void;
export function replyXattrSize(req: number, size: number): void;
export function replyStatfs(req: number, statfs: Float64Array): void;
export function replyDir(req: number, names: string[], entries: Float64Array, firstOffset: number): void;
/** Notes (true) or forgets (false) that an object has no security.capability xattr. */
export function noCapabilities(nodeid: number, known: boolean): void;
/** JavaScript starts (+1) or has answered (-1) a size change of `nodeid`: getattr goes to JavaScript meanwhile. */
export function sizeChanging(nodeid: number, delta: number): void;
/**
 * Vouches (true) that fstat of the node's descriptor is what programs must
 * see, so that with constants.fast.SETTLED the FUSE thread answers its getattr
 * (and "no such name" in it) during a restore; false revokes that, before the
 * object changes. Returns whether the node has a descriptor (none: no vouch kept).
 */
export function settled(session: Session, nodeid: number, known: boolean): boolean;
/**
 * A descriptor of node `nodeid`'s object (a close-on-exec duplicate of the
 * node table's O_PATH one; the caller closes it), or -1 when the table holds
 * none. For opens of a node whose last name is gone (renamed over, unlinked)
 * after the kernel looked it up.
 */
export function nodeDescriptor(session: Session, nodeid: number): number;
export function notifyInvalInode(session: Session, nodeid: number, offset: number, length: number): number;
export function notifyInvalEntry(session: Session, parent: number, name: string): number;
/**
 * notifyInvalInode (or, with `name`, notifyInvalEntry of `name` in directory
 * `nodeid`) sent from a detached thread, so that the caller never waits for a
 * lock a pending request holds. Returns 0, or -errno.
 */
export function notifyInvalLater(session: Session, nodeid: number, offset: number, length: number, name?: string): number;
/** Direct writes and fallocates running on FUSE threads right now (0 after fastPaths with TRACK: none goes untracked). */
export function directChanges(session: Session): number;
/**
 * Journalled direct writes (src/journal.c): `bytes` more credit (journal room
 * JavaScript reserved) for writes the FUSE thread applies itself on handles
 * opened with constants.open.JOURNAL_WRITE while constants.fast.JOURNAL is on.
 * Each such write takes its size + JOURNAL_WRITE_OVERHEAD and queues a
 * `written` notice (node in ino, handle in fh, offset in off, bytes in data,
 * the credit taken in size) ahead of its reply.
 */
export function journalGrant(session: Session, bytes: number): void;
/**
 * JavaScript knows (true) the object id of node `nodeid`, or no longer
 * (false): with constants.fast.JOURNAL the FUSE thread applies the node's
 * setattrs (mode, owner, times; not size) itself when it is a regular file,
 * and queues an `applied` notice (node in ino, the attributes after it in
 * attrs, the credit taken in size) ahead of the reply. Returns whether the
 * node has a descriptor (none: nothing kept).
 */
export function journalNode(session: Session, nodeid: number, known: boolean): boolean;
/** Takes back the credit no write has taken yet; returns it. */
export function journalRevoke(session: Session): number;
/** Writes starting from now count in the other phase; returns the phase they counted in until now. */
export function journalFlip(session: Session): number;
/** Journalled direct writes of `phase` that have not queued their notice yet. */
export function journalActive(session: Session, phase: number): number;
/** Queues a `mark` notice (token in off) behind everything queued so far; false when the queue is closed. */
export function journalMark(session: Session, token: number): boolean;
/** [writes applied on the FUSE thread and journalled from notices, their bytes, writes of journal-write handles sent as requests, credit left, setattrs applied on the FUSE thread]. */
export function journalCounts(session: Session): Float64Array;
/**
 * Checkpoints' clearance table (src/track.c): nothing is clear any more; blocks
 * are `blockSize` bytes (a power of two). Call before a checkpoint starts, then
 * wait for directChanges() to reach 0.
 */
export function trackReset(session: Session, blockSize: number): void;
/**
 * Blocks [first, first + count) of the store inode inoHi:inoLo, and every block
 * from `allFrom` on (-1: unknown), have their old contents durable in every
 * checkpoint: a write touching only clear blocks is answered on the FUSE thread.
 * False when nothing was recorded (no trackReset yet, closed, out of memory).
 */
export function trackMark(session: Session, inoLo: number, inoHi: number, allFrom: number, first: number, count: number): boolean;
/** Nothing of store inode inoHi:inoLo is clear any more. */
export function trackForget(session: Session, inoLo: number, inoHi: number): void;
/** [writes answered on the FUSE thread while tracked, direct-handle writes sent to JavaScript because a block was not clear]. */
export function trackCounts(session: Session): Float64Array;
/**
 * Lets the FUSE thread answer requests itself, relative to O_PATH descriptors
 * of the store (constants.fast.READ: getattr, lookup; WRITE: also setattr,
 * create, mkdir, open, flush and the handles it makes; SETTLED, during a
 * restore instead of READ: getattr and "no such name" of the nodes vouched
 * for with settled(); NODES: nothing, but the node table keeps descriptors,
 * as with any other bit, for nodeDescriptor), or stops it (0).
 * `maxNodes` caps the node table (default: half the descriptor limit).
 */
export function fastPaths(session: Session, storeRoot: string, flags: number, entryTimeout: number, negativeTimeout: number, maxNodes?: number): void;
/** The next node id; the FUSE thread takes its node ids from the same counter. */
export function allocNodeid(session: Session): number;
/** Requests answered on the FUSE thread so far, indexed by op. */
export function fastCounts(session: Session): Float64Array;
/** The kernel caches writes (the writeback_cache option was given and the kernel granted it at init). */
export function writebackCache(session: Session): boolean;
/** What the connection negotiated at INIT; passthrough's counters. */
export function features(session: Session): Features;
/** Bytes of reads (the sizes the kernel asked for) and of writes answered on the FUSE thread so far: [read, written]. */
export function fastBytes(session: Session): Float64Array;
/** FUSE threads inside an answer that uses the store (node table, store root) right now. */
export function fastBusy(session: Session): number;
/**
 * The store root moved (swap): drops every node descriptor and every node the
 * FUSE thread made and has not announced, and opens `storeRoot` as the root's.
 * Call with the fast paths off and fastBusy() at 0.
 */
export function resetNodes(session: Session, storeRoot: string): void;
/**
 * Every name the kernel caches for the mount must be looked up again
 * (FUSE_NOTIFY_INC_EPOCH, Linux 6.16+). Takes no directory lock. 0 or -errno.
 */
export function notifyIncEpoch(session: Session): number;
/** Requests handed to JavaScript and not answered yet (all sessions of the process). */
export function pendingRequests(): number;
export const ops: Readonly<Record<OpName, number>>;
export const constants: Constants;
