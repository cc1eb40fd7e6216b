// Types for the low-level bridge that patches/fuse-native+2.2.6.patch adds to
// fuse-native (lowlevel.c). Request handles are opaque numbers; every request
// with a non-zero handle must be answered exactly once with one reply*.
declare module 'fuse-native/lowlevel' {
  export interface Session { readonly __session: unique symbol }

  export type RequestHandler = (
    op: number, req: number, ino: number, ino2: number, name: string | undefined, name2: string | undefined,
    fh: number, off: number, size: number, mode: number, toSet: number, rdev: number,
    uid: number, gid: number, pid: number, data: Buffer | undefined, times: Float64Array | undefined, fiFlags: number,
  ) => void;

  export function mount(mountpoint: string, options: string, onRequest: RequestHandler, attrTimeout: number): Session;
  export function unref(session: Session): void;
  /** Frees the session after the connection ended and every request was answered. */
  export function close(session: Session): void;
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
  export function notifyInvalInode(session: Session, nodeid: number, offset: number, length: number): number;
  export function notifyInvalEntry(session: Session, parent: number, name: string): number;
  /**
   * Lets the FUSE thread answer requests itself, relative to O_PATH descriptors
   * of the store (1: getattr, lookup; 2: also setattr, create, mkdir, open,
   * flush and the handles it makes), or stops it (0). `maxNodes` caps the node table
   * (default: half the descriptor limit).
   */
  export function fastPaths(session: Session, storeRoot: string, flags: number, entryTimeout: number, negativeTimeout: number, maxNodes?: number): void;
  /** The next node id; the FUSE thread takes its node ids from the same counter. */
  export function allocNodeid(session: Session): number;
  /** Requests answered on the FUSE thread so far, indexed by op. */
  export function fastCounts(session: Session): Float64Array;
  export const ops: Readonly<Record<
    'init' | 'lookup' | 'forget' | 'getattr' | 'setattr' | 'readlink' | 'mknod' | 'mkdir' | 'unlink' | 'rmdir' |
    'symlink' | 'rename' | 'link' | 'open' | 'read' | 'write' | 'flush' | 'release' | 'fsync' | 'opendir' |
    'readdir' | 'releasedir' | 'fsyncdir' | 'statfs' | 'setxattr' | 'getxattr' | 'listxattr' | 'removexattr' |
    'access' | 'create' | 'fallocate' | 'exit' | 'newnode' | 'failed', number>>;
}
