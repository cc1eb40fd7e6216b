/**
 * Typed API over the strata native addon (binding.gyp target `strata_native`,
 * sources in native/).  Every function returns a Promise; the syscalls run on
 * the libuv thread pool.  Failures reject with a Node-style system error
 * (see {@link NativeError}); bad arguments reject with a TypeError or
 * RangeError.
 */
import { existsSync, type BigIntStats } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type CopyMethod = 'auto' | 'copy_file_range' | 'readwrite';
export type CloneMethod = 'auto' | 'reflink' | 'copy';
export interface Extent {
  offset: number;
  length: number;
}
export type TimeSpec = { sec: number; nsec: number } | 'now' | 'omit';
export interface DirEntry {
  name: string;
  ino: bigint;
  /** d_type: see {@link DirentType}. */
  type: number;
}

/** Rejection value of a failed syscall, shaped like Node's fs errors. */
export interface NativeError extends Error {
  /** e.g. 'EBADF', 'EXDEV', 'ENODATA' (libuv's names, as in Node: errno 95 is 'ENOTSUP'). */
  code: string;
  /** Negative errno, Node's convention (e.g. -9 for EBADF). */
  errno: number;
  /** The failing syscall, e.g. 'copy_file_range', 'lgetxattr'. */
  syscall: string;
  /** Set by the path-based functions. */
  path?: string;
}

interface NativeConstants {
  readonly FALLOC_FL_KEEP_SIZE: number;
  readonly FALLOC_FL_PUNCH_HOLE: number;
  readonly FALLOC_FL_ZERO_RANGE: number;
  readonly XATTR_CREATE: number;
  readonly XATTR_REPLACE: number;
  readonly DT_UNKNOWN: number;
  readonly DT_FIFO: number;
  readonly DT_CHR: number;
  readonly DT_DIR: number;
  readonly DT_BLK: number;
  readonly DT_REG: number;
  readonly DT_LNK: number;
  readonly DT_SOCK: number;
  readonly AT_FDCWD: number;
}

/** Shape of the compiled addon (native/binding.cc). */
interface NativeBinding {
  copyRange(
    fdIn: number,
    offIn: number,
    fdOut: number,
    offOut: number,
    length: number,
    method: CopyMethod,
  ): Promise<number>;
  cloneFile(fdIn: number, fdOut: number, method: CloneMethod): Promise<'reflink' | 'copy'>;
  listExtents(fd: number): Promise<Extent[]>;
  readFileQuiet(path: string, maxBytes: number, at?: number): Promise<QuietRead>;
  utimens(path: string, atime: TimeSpec, mtime: TimeSpec, noFollow: boolean, at?: number): Promise<void>;
  futimens(fd: number, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  mknod(path: string, mode: number, dev: number, at?: number): Promise<void>;
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  appendWrite(fd: number, data: Buffer, length: number): Promise<[number, number]>;
  getxattr(path: string, name: string, at?: number): Promise<Buffer>;
  setxattr(path: string, name: string, value: Uint8Array, flags: number, at?: number): Promise<void>;
  listxattr(path: string, at?: number): Promise<string[]>;
  prepareObject(path: string, create: number, mode: number, size: number, names: string[], values: Buffer[], uid: number, gid: number, chmodMode: number, at?: number, dropAcls?: boolean): Promise<void>;
  readXattrs(path: string, at?: number): Promise<[string, Buffer][]>;
  cloneTo(src: string, dst: string, mode: number, at?: number, dstAt?: number): Promise<CloneToResult | null>;
  finishFile(
    tmp: string, create: boolean, size: number, logFd: number, ranges: number[], names: string[], values: Buffer[],
    uid: number, gid: number, chmodMode: number, atime: TimeSpec, mtime: TimeSpec, final: string | null, data: Buffer | null, at?: number,
    dropAcls?: boolean,
  ): Promise<number>;
  removexattr(path: string, name: string, at?: number): Promise<void>;
  readdirIno(path: string, at?: number): Promise<DirEntry[]>;
  scanDir(path: string, withXattrs: boolean, at?: number): Promise<ScannedEntry[]>;
  xattrAt(enable?: boolean): boolean;
  setIdDrop(mode: number, inGroup: boolean): number;
  dupFd(fd: number): number;
  setIdNeedsGroups(mode: number): boolean;
  ownerNeedsParent(callerUid: number, callerGid: number, daemonUid: number, daemonGid: number): boolean;
  newOwner(callerUid: number, callerGid: number, parentMode: number, daemonUid: number, daemonGid: number): [number, number] | null;
  creationMode(mode: number, umask: number, parentDefaultAcl: boolean): number;
  statAt(at: number, path: string, follow: boolean): Promise<BigInt64Array>;
  statAtSync(at: number, path: string, follow: boolean): BigInt64Array;
  openAt(at: number, path: string, flags: number, mode: number): Promise<number>;
  mkdirAt(at: number, path: string, mode: number): Promise<void>;
  symlinkAt(at: number, path: string, target: string): Promise<void>;
  linkAt(at: number, from: string, to: string, toAt?: number): Promise<void>;
  renameAt(at: number, from: string, to: string, toAt?: number): Promise<void>;
  renameNoReplaceAt(at: number, from: string, to: string, toAt?: number): Promise<void>;
  renameExchangeAt(at: number, from: string, to: string, toAt?: number): Promise<void>;
  unlinkAt(at: number, path: string, isDir: boolean): Promise<void>;
  readlinkAt(at: number, path: string): Promise<string>;
  chmodAt(at: number, path: string, mode: number): Promise<void>;
  chownAt(at: number, path: string, uid: number, gid: number): Promise<void>;
  truncateAt(at: number, path: string, size: number): Promise<void>;
  accessAt(at: number, path: string, mode: number): Promise<void>;
  statfsAt(at: number, path: string): Promise<StatfsAt>;
  sdNotify(socketPath: string, message: string): Promise<void>;
  sha256Blocks(data: Buffer, lengths: number[]): Promise<Buffer>;
  readonly constants: NativeConstants;
}

/** Walk up from `file` to the first directory holding binding.gyp (the package root). */
function findPackageRoot(file: string): string {
  let dir = path.dirname(file);
  for (;;) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`strata native: no binding.gyp in any parent of ${file}`);
    dir = parent;
  }
}

const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;

/** Directory the addon was loaded from (build/ or prebuilds/ below it). */
export const packageRoot: string = findPackageRoot(fileURLToPath(import.meta.url));
const binding = nodeGypBuild(packageRoot) as NativeBinding;

// ---------------------------------------------------------------------------
// Constants

export const FALLOC_FL_KEEP_SIZE: number = binding.constants.FALLOC_FL_KEEP_SIZE;
export const FALLOC_FL_PUNCH_HOLE: number = binding.constants.FALLOC_FL_PUNCH_HOLE;
export const FALLOC_FL_ZERO_RANGE: number = binding.constants.FALLOC_FL_ZERO_RANGE;
export const XATTR_CREATE: number = binding.constants.XATTR_CREATE;
export const XATTR_REPLACE: number = binding.constants.XATTR_REPLACE;

/** d_type values of {@link DirEntry.type}. */
export const DirentType = Object.freeze({
  UNKNOWN: binding.constants.DT_UNKNOWN,
  FIFO: binding.constants.DT_FIFO,
  CHR: binding.constants.DT_CHR,
  DIR: binding.constants.DT_DIR,
  BLK: binding.constants.DT_BLK,
  REG: binding.constants.DT_REG,
  LNK: binding.constants.DT_LNK,
  SOCK: binding.constants.DT_SOCK,
});

/** glibc's makedev(3): a dev_t for {@link mknod} from major and minor numbers. */
export function makedev(major: number, minor: number): number {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  const dev =
    ((ma & 0xfffn) << 8n) | ((ma & 0xfffff000n) << 32n) | (mi & 0xffn) | ((mi & 0xffffff00n) << 12n);
  if (dev > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('makedev: device number exceeds 2^53 - 1');
  return Number(dev);
}

/** True when `e` is a system error from this module (or Node's fs). */
export function isNativeError(e: unknown): e is NativeError {
  return (
    e instanceof Error &&
    typeof (e as Partial<NativeError>).code === 'string' &&
    typeof (e as Partial<NativeError>).errno === 'number' &&
    typeof (e as Partial<NativeError>).syscall === 'string'
  );
}

// ---------------------------------------------------------------------------
// Block copy.  The wrappers are async so argument errors thrown synchronously
// by the addon become rejections too.

/**
 * Copy `length` bytes from `fdIn` at `offIn` to `fdOut` at `offOut` (file
 * positions untouched).  Resolves with the bytes copied: less than `length`
 * only if `fdIn` hit EOF.  'auto' uses copy_file_range(2) and falls back to
 * pread/pwrite when the first call fails with EXDEV, ENOSYS, EOPNOTSUPP or
 * EINVAL; 'copy_file_range' never falls back; 'readwrite' never tries it.
 */
export async function copyRange(
  fdIn: number,
  offIn: number,
  fdOut: number,
  offOut: number,
  length: number,
  opts?: { method?: CopyMethod },
): Promise<number> {
  return binding.copyRange(fdIn, offIn, fdOut, offOut, length, opts?.method ?? 'auto');
}

/**
 * Make `fdOut` an exact copy of `fdIn`.  'auto' tries FICLONE (shared blocks)
 * and otherwise copies only the data extents and sets the size, so holes stay
 * holes; 'reflink' rejects with the ioctl's error instead of copying; 'copy'
 * never tries FICLONE.  Resolves with what was done.
 */
export async function cloneFile(
  fdIn: number,
  fdOut: number,
  opts?: { method?: CloneMethod },
): Promise<'reflink' | 'copy'> {
  return binding.cloneFile(fdIn, fdOut, opts?.method ?? 'auto');
}

/**
 * Data extents of `fd` via lseek SEEK_DATA/SEEK_HOLE (the fd's position is
 * restored).  Empty file: []; no SEEK_DATA support: one extent of the size.
 */
export async function listExtents(fd: number): Promise<Extent[]> {
  return binding.listExtents(fd);
}

/** What {@link readFileQuiet} gives: the file's data extents and its first bytes. */
export interface QuietRead {
  extents: Extent[];
  /** Up to maxBytes from offset 0 (shorter at EOF). */
  data: Buffer;
}

/**
 * A small file's data extents and its first `maxBytes` (at most 64 MiB) in
 * one call on the thread pool: open without following a final symlink and
 * without touching atime where allowed (O_NOATIME), lseek SEEK_DATA/SEEK_HOLE,
 * pread, close. Saves the hops of open + listExtents + read + close.
 */
export async function readFileQuiet(path: string, maxBytes: number, at?: number): Promise<QuietRead> {
  return binding.readFileQuiet(path, maxBytes, at);
}

// ---------------------------------------------------------------------------
// Syscalls Node lacks.  A function that takes a path takes last, optionally,
// the directory descriptor `at` a relative path is relative to (as the *at(2)
// calls; absent: the working directory). The local-object layer
// (src/store/store-dir.ts) passes its store root's.

/** utimensat(AT_FDCWD, path): exact nanoseconds, 'now' = UTIME_NOW, 'omit' = UTIME_OMIT. */
export async function utimens(
  path: string,
  atime: TimeSpec,
  mtime: TimeSpec,
  opts?: { noFollow?: boolean },
  at?: number,
): Promise<void> {
  return binding.utimens(path, atime, mtime, opts?.noFollow === true, at);
}

/** futimens(fd): as {@link utimens} on an open file. */
export async function futimens(fd: number, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
  return binding.futimens(fd, atime, mtime);
}

/** mknod(2): `mode` includes the type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFREG); see {@link makedev}. */
export async function mknod(path: string, mode: number, dev: number, at?: number): Promise<void> {
  return binding.mknod(path, mode, dev, at);
}

/**
 * A write of a program's O_APPEND file: the first `length` bytes of `data` at
 * the end of the file `fd` refers to, atomically at its size at that moment
 * (RWF_APPEND; native/fuse-native/src/posix_rules.h, sr_append). Resolves with
 * the bytes written and the offset they landed at, which the FUSE kernel's
 * offset may not say (another handle truncated the file meanwhile).
 */
export async function appendWrite(fd: number, data: Buffer, length: number): Promise<{ written: number; offset: number }> {
  const [written, offset] = await binding.appendWrite(fd, data, length);
  return { written, offset };
}

/** fallocate(2); `mode` is 0 or FALLOC_FL_* flags. */
export async function fallocate(fd: number, mode: number, offset: number, length: number): Promise<void> {
  return binding.fallocate(fd, mode, offset, length);
}

/** lgetxattr(2): never follows a final symlink. An empty `path` with `at`: the object of descriptor `at` itself (an open file). */
export async function getxattr(path: string, name: string, at?: number): Promise<Buffer> {
  return binding.getxattr(path, name, at);
}

/** lsetxattr(2); `flags` is 0, XATTR_CREATE or XATTR_REPLACE. */
export async function setxattr(path: string, name: string, value: Buffer, flags: number, at?: number): Promise<void> {
  return binding.setxattr(path, name, value, flags, at);
}

/** What {@link prepareObject} does to an object. */
export interface PrepareObject {
  /** Created first: a directory, or a regular file of `size` bytes (a hole), with permission bits `mode` (O_EXCL: EEXIST when the name is taken). */
  create?: { kind: 'dir' | 'file'; mode: number; size?: number };
  /**
   * Its POSIX ACLs (system.posix_acl_access/default) removed before `xattrs`
   * are set (absent is no failure): an object created in a directory with a
   * default ACL inherits ACLs; `xattrs` then give it exactly its own.
   */
  dropAcls?: boolean;
  /** Set in this order with lsetxattr(2). */
  xattrs?: readonly (readonly [string, Buffer])[];
  /** lchown(2). */
  owner?: { uid: number; gid: number };
  /** chmod(2) (follows a symlink: never give it for one). */
  mode?: number;
}

/**
 * Creation (optional), extended attributes, owner and mode of one object in
 * one call on the thread pool, in that order, stopping at the first failure
 * (a Node-style error naming the failing syscall). Saves the hops of
 * mkdir/open + setxattr × n + lchown + chmod when an object is materialised.
 */
export async function prepareObject(path: string, p: PrepareObject, at?: number): Promise<void> {
  const kind = p.create === undefined ? 0 : p.create.kind === 'dir' ? 1 : 2;
  const xs = p.xattrs ?? [];
  return binding.prepareObject(
    path, kind, p.create?.mode ?? 0, p.create?.size ?? 0, xs.map(([n]) => n), xs.map(([, v]) => v),
    p.owner?.uid ?? -1, p.owner?.gid ?? -1, p.mode ?? -1, at, p.dropAcls === true,
  );
}

/** What {@link cloneTo} found at the source path (null from it: the source could not be opened). */
export interface CloneToResult {
  /** The source's inode number. */
  ino: bigint;
  /** False: not a regular file, and `dst` was not created. */
  isFile: boolean;
  /** The copy's size (when isFile). */
  size?: number;
  /** How the blocks were copied (when isFile): FICLONE, or a copy of the data extents. */
  how?: 'reflink' | 'copy';
}

/**
 * Opens `src` without following a final symlink and without touching atime
 * where allowed; when it is a regular file, creates `dst` (O_EXCL, permission
 * bits `mode`) and makes it a copy of `src` as {@link cloneFile} 'auto' does,
 * in one call on the thread pool. Resolves with null when `src` cannot be
 * opened (gone, moved: not an error), else with its inode number (for the
 * caller to check that it is the object it meant) and the copy's size.
 * `src` is relative to `at`, `dst` to `dstAt` (default: `at`).
 */
export async function cloneTo(src: string, dst: string, mode: number, at?: number, dstAt?: number): Promise<CloneToResult | null> {
  return binding.cloneTo(src, dst, mode, at, dstAt);
}

/** What {@link finishFile} does to a regular file built under a temporary name. */
export interface FinishFile {
  /** Create the file first (O_EXCL, mode 0600) instead of opening the one there. */
  create?: boolean;
  /** ftruncate to this size when it has another. */
  size?: number;
  /** Written at offset 0 after the size is set (must not change until the call settles). */
  data?: Buffer;
  /** Ranges copied from `log.fd` (copy_file_range, else pread/pwrite): [log offset, file offset, length]. */
  log?: { fd: number; ranges: readonly (readonly [number, number, number])[] };
  /** Its POSIX ACLs removed before `xattrs` are set (as PrepareObject's). */
  dropAcls?: boolean;
  /** Set in this order with fsetxattr(2). */
  xattrs?: readonly (readonly [string, Buffer])[];
  owner?: { uid: number; gid: number };
  /** fchmod(2), after the owner (chown clears set-ID bits). */
  mode?: number;
  /** futimens(2), after everything else. */
  times: { atime: TimeSpec; mtime: TimeSpec };
  /** Renamed to this path last, when given. */
  rename?: string;
}

/**
 * Size, data, log ranges, extended attributes, owner, mode and times of the
 * regular file `tmp`, then its rename into place, in that order in one call
 * on the thread pool, stopping at the first failure (a Node-style error
 * naming the syscall; a log range that ends early: ENODATA). Resolves with
 * the bytes copied from the log. Saves the hops of open + truncate + copy ×
 * n + setxattr × n + chown + chmod + utimens + rename for a file a swap
 * prepare builds.
 */
export async function finishFile(tmp: string, f: FinishFile, at?: number): Promise<number> {
  const xs = f.xattrs ?? [];
  const ranges = (f.log?.ranges ?? []).flatMap((r) => [r[0], r[1], r[2]]);
  return binding.finishFile(
    tmp, f.create === true, f.size ?? -1, f.log?.fd ?? -1, ranges, xs.map(([n]) => n), xs.map(([, v]) => v),
    f.owner?.uid ?? -1, f.owner?.gid ?? -1, f.mode ?? -1, f.times.atime, f.times.mtime, f.rename ?? null, f.data ?? null, at,
    f.dropAcls === true,
  );
}

/**
 * Every extended attribute of `path` (never following a final symlink) with
 * its value: llistxattr(2), then lgetxattr(2) of each name, in one call on
 * the thread pool (a name removed in between is left out). Saves the hops of
 * listxattr + getxattr × n.
 */
export async function readXattrs(path: string, at?: number): Promise<[string, Buffer][]> {
  return binding.readXattrs(path, at);
}

/** llistxattr(2): attribute names. */
export async function listxattr(path: string, at?: number): Promise<string[]> {
  return binding.listxattr(path, at);
}

/** lremovexattr(2). */
export async function removexattr(path: string, name: string, at?: number): Promise<void> {
  return binding.removexattr(path, name, at);
}

/**
 * The sha256 digests of the consecutive blocks of `data` (`lengths[i]` bytes
 * each), computed on libuv's thread pool with Node's own OpenSSL: 32 bytes
 * per block, one after the other. `data` must not change until it resolves.
 */
export async function sha256Blocks(data: Buffer, lengths: number[]): Promise<Buffer> {
  return binding.sha256Blocks(data, lengths);
}

/** opendir/readdir: entries with inode numbers and d_type, without '.' and '..'. */
export async function readdirIno(path: string, at?: number): Promise<DirEntry[]> {
  return binding.readdirIno(path, at);
}

/** An object's lstat as scanDir gives it: the fields of Node's BigIntStats a tree walk uses. */
export interface ScannedStat {
  dev: bigint;
  ino: bigint;
  mode: bigint;
  nlink: bigint;
  uid: bigint;
  gid: bigint;
  rdev: bigint;
  size: bigint;
  blocks: bigint;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** One entry of scanDir: its name, lstat and every extended attribute (empty without withXattrs). */
export interface ScannedEntry {
  name: string;
  st: ScannedStat;
  xattrs: [string, Buffer][];
}

/**
 * A directory's entries (without '.' and '..', in readdir order) with the
 * lstat and, when `withXattrs`, every extended attribute of each (a
 * symlink's own), in one thread-pool job: a tree walk's stat, id and xattr
 * reads per entry in one call per directory. An entry that vanished between
 * readdir and its stat is left out.
 */
export async function scanDir(path: string, withXattrs: boolean, at?: number): Promise<ScannedEntry[]> {
  return binding.scanDir(path, withXattrs, at);
}

/**
 * Sends `message` (e.g. "READY=1") as one datagram to systemd's notification
 * socket (NOTIFY_SOCKET: a path, or "@name" in the abstract namespace), as
 * sd_notify(3) does. Node's dgram has no AF_UNIX datagram sockets.
 */
export async function sdNotify(socketPath: string, message: string): Promise<void> {
  return binding.sdNotify(socketPath, message);
}

// ---------------------------------------------------------------------------
// The local-object layer's calls (native/src/atops.h): each relative to the
// directory descriptor `at`, never following a final symlink unless said.
// src/store/store-dir.ts is their one user.

/** AT_FDCWD: `at` for a path relative to the working directory (or absolute). */
export const AT_FDCWD: number = binding.constants.AT_FDCWD;

/**
 * Whether the xattr calls of a path relative to a descriptor use the
 * kernel's getxattrat/setxattrat/listxattrat/removexattrat (Linux 6.13): on
 * until the first ENOSYS, which falls back for good to an O_PATH descriptor
 * reached as /proc/self/fd/N (native/src/atpath.h). `enable` turns them on
 * or off first (the fallback's tests; STRATA_XATTRAT=0 at start).
 */
export function xattrAt(enable?: boolean): boolean {
  return enable === undefined ? binding.xattrAt() : binding.xattrAt(enable);
}
if (process.env['STRATA_XATTRAT'] === '0') binding.xattrAt(false);

/** statfsAt's answer: the fields of statfs(2) the core reports. */
export interface StatfsAt {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namelen: number;
}

const NS = 1_000_000_000n;

/** fstatat's answer as Node's BigIntStats (birthtime: unknown, 0). */
class AtStats implements BigIntStats {
  dev: bigint; mode: bigint; nlink: bigint; uid: bigint; gid: bigint; rdev: bigint;
  blksize: bigint; ino: bigint; size: bigint; blocks: bigint;
  atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint; birthtimeNs = 0n;
  constructor(v: BigInt64Array) {
    this.dev = v[0]!; this.mode = v[1]!; this.nlink = v[2]!; this.uid = v[3]!; this.gid = v[4]!; this.rdev = v[5]!;
    this.blksize = v[6]!; this.ino = v[7]!; this.size = v[8]!; this.blocks = v[9]!;
    this.atimeNs = v[10]! * NS + v[11]!;
    this.mtimeNs = v[12]! * NS + v[13]!;
    this.ctimeNs = v[14]! * NS + v[15]!;
  }
  get atimeMs(): bigint { return this.atimeNs / 1_000_000n; }
  get mtimeMs(): bigint { return this.mtimeNs / 1_000_000n; }
  get ctimeMs(): bigint { return this.ctimeNs / 1_000_000n; }
  get birthtimeMs(): bigint { return 0n; }
  get atime(): Date { return new Date(Number(this.atimeMs)); }
  get mtime(): Date { return new Date(Number(this.mtimeMs)); }
  get ctime(): Date { return new Date(Number(this.ctimeMs)); }
  get birthtime(): Date { return new Date(0); }
  private type(): number { return Number(this.mode) & 0o170000; }
  isFile(): boolean { return this.type() === 0o100000; }
  isDirectory(): boolean { return this.type() === 0o040000; }
  isSymbolicLink(): boolean { return this.type() === 0o120000; }
  isBlockDevice(): boolean { return this.type() === 0o060000; }
  isCharacterDevice(): boolean { return this.type() === 0o020000; }
  isFIFO(): boolean { return this.type() === 0o010000; }
  isSocket(): boolean { return this.type() === 0o140000; }
}

/** fstatat(2); `follow`: follow a final symlink (stat, not lstat). */
export async function statAt(at: number, path: string, follow = false): Promise<BigIntStats> {
  return new AtStats(await binding.statAt(at, path, follow));
}

/**
 * fstatat(2) on the calling thread. Only for what must be read at one exact
 * moment on the event loop: the attributes of an object just changed (its
 * inode is in memory, no disk I/O), as a journal record takes its place.
 */
export function statAtSync(at: number, path: string, follow = false): BigIntStats {
  return new AtStats(binding.statAtSync(at, path, follow));
}

/** openat(2) (O_CLOEXEC always added); resolves with the descriptor. */
export async function openAt(at: number, path: string, flags: number, mode = 0): Promise<number> {
  return binding.openAt(at, path, flags, mode);
}

export async function mkdirAt(at: number, path: string, mode: number): Promise<void> {
  return binding.mkdirAt(at, path, mode);
}

/** symlinkat(2): a symlink at `path` holding `target`. */
export async function symlinkAt(at: number, path: string, target: string): Promise<void> {
  return binding.symlinkAt(at, path, target);
}

/** linkat(2): `from` relative to `at`, `to` relative to `toAt` (default `at`); never follows `from`. */
export async function linkAt(at: number, from: string, to: string, toAt = at): Promise<void> {
  return binding.linkAt(at, from, to, toAt);
}

/** renameat(2): `from` relative to `at`, `to` relative to `toAt` (default `at`). */
export async function renameAt(at: number, from: string, to: string, toAt = at): Promise<void> {
  return binding.renameAt(at, from, to, toAt);
}

/** renameat2(RENAME_NOREPLACE): EEXIST when `to` exists, atomically (paths as renameAt). */
export async function renameNoReplaceAt(at: number, from: string, to: string, toAt = at): Promise<void> {
  return binding.renameNoReplaceAt(at, from, to, toAt);
}

/** renameat2(RENAME_EXCHANGE): the objects of `a` (relative to `at`) and `b` (relative to `bAt`, default `at`) swap names, atomically (ENOENT when either is missing). */
export async function renameExchangeAt(at: number, a: string, b: string, bAt = at): Promise<void> {
  return binding.renameExchangeAt(at, a, b, bAt);
}

/** unlinkat(2); `isDir`: AT_REMOVEDIR (rmdir). */
export async function unlinkAt(at: number, path: string, isDir: boolean): Promise<void> {
  return binding.unlinkAt(at, path, isDir);
}

/** readlinkat(2), whole (any length), as a UTF-8 string. */
export async function readlinkAt(at: number, path: string): Promise<string> {
  return binding.readlinkAt(at, path);
}

/** fchmodat(2) (follows a final symlink: never ask it of one). */
export async function chmodAt(at: number, path: string, mode: number): Promise<void> {
  return binding.chmodAt(at, path, mode);
}

/** fchownat(2) with AT_SYMLINK_NOFOLLOW; -1 leaves the uid or gid as it is. */
export async function chownAt(at: number, path: string, uid: number, gid: number): Promise<void> {
  return binding.chownAt(at, path, uid, gid);
}

/** truncate(2) of a regular file (opened O_WRONLY | O_NOFOLLOW | O_NONBLOCK, then ftruncate). */
export async function truncateAt(at: number, path: string, size: number): Promise<void> {
  return binding.truncateAt(at, path, size);
}

/** faccessat(2) (follows a final symlink, as access(2)). */
export async function accessAt(at: number, path: string, mode: number): Promise<void> {
  return binding.accessAt(at, path, mode);
}

/** statfs(2) of the filesystem holding `path`. */
export async function statfsAt(at: number, path: string): Promise<StatfsAt> {
  return binding.statfsAt(at, path);
}

// ---------------------------------------------------------------------------
// POSIX rules strata applies itself (the daemon acts as root, so the store's
// kernel cannot), written once in C (native/fuse-native/src/posix_rules.h)
// for the FUSE bridge's own answers and the core. Synchronous: no I/O.

/**
 * A new descriptor (close-on-exec) of the file open on `fd`, synchronously:
 * one fcntl(F_DUPFD_CLOEXEC), no disk I/O. For work that may outlive the
 * caller's use of `fd` (the caller may close it, and the number may then
 * name another file): it owns the copy, and closes it.
 */
export function dupFd(fd: number): number {
  return binding.dupFd(fd);
}

/**
 * The set-ID bits a change by a process without CAP_FSETID drops from an
 * object of mode `mode`, as Linux (6.2 on) does natively: S_ISUID always;
 * S_ISGID with group-execute, and without it when the writer is not in the
 * file's group (`inGroup`); only of a regular file.
 */
export function setIdDrop(mode: number, inGroup: boolean): number {
  return binding.setIdDrop(mode >>> 0, inGroup);
}

/** Whether setIdDrop's answer for `mode` depends on `inGroup` (set-group-ID without group-execute). */
export function setIdNeedsGroups(mode: number): boolean {
  return binding.setIdNeedsGroups(mode >>> 0);
}

/** A new object made by the daemon for a caller: whether its parent's mode decides anything (see newOwner). */
export function ownerNeedsParent(caller: { uid: number; gid: number }, daemon: { uid: number; gid: number }): boolean {
  return binding.ownerNeedsParent(caller.uid, caller.gid, daemon.uid, daemon.gid);
}

/**
 * The owner to give a new object the daemon made for `caller` (as ext4
 * would: the caller's uid, and the caller's gid unless the parent is
 * set-group-ID, whose group the kernel already gave it: gid -1, keep), or
 * null when it already has them.
 */
export function newOwner(caller: { uid: number; gid: number }, parentMode: number, daemon: { uid: number; gid: number }): { uid: number; gid: number } | null {
  const o = binding.newOwner(caller.uid, caller.gid, parentMode >>> 0, daemon.uid, daemon.gid);
  return o === null ? null : { uid: o[0], gid: o[1] };
}

/**
 * The mode to create an object with, from the mode a caller asked for and
 * its umask (mounts with POSIX ACLs: the kernel leaves the umask to strata),
 * as a file system with ACLs does: the umask applies only when the parent
 * directory has no default ACL.
 */
export function creationMode(mode: number, umask: number, parentDefaultAcl: boolean): number {
  return binding.creationMode(mode >>> 0, umask >>> 0, parentDefaultAcl);
}
