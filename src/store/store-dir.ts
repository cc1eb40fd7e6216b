// The local-object layer: every operation on the store's objects, addressed by
// a path relative to the store root's directory descriptor (the *at(2) calls,
// as libfuse's passthrough_hp works relative to its nodes' descriptors). No
// process-wide working directory is involved, so a process may hold several
// stores (a swap's spare next to the live one), and a store-relative path is
// never lengthened by a prefix (PATH_MAX holds as it does on the mount).
//
// Paths are store-relative: '.' is the root, 'a/b' below it; an absolute path
// is taken as it is (the *at calls ignore the descriptor for one).
import { closeSync, constants as C, type BigIntStats } from 'node:fs';
import * as native from '../native/index.js';
import type { CloneToResult, DirEntry, FinishFile, PrepareObject, QuietRead, ScannedEntry, StatfsAt, TimeSpec } from '../native/index.js';

/** A store-relative path: `name` in the directory `rel` ('.' or '' is the root). */
export function childRel(rel: string, name: string): string {
  return rel === '.' || rel === '' ? name : `${rel}/${name}`;
}

export class StoreDir {
  /** The layer for absolute paths (AT_FDCWD): a swap's spare store, the private directory's files. */
  static readonly ABSOLUTE = new StoreDir(native.AT_FDCWD);

  /** `fd`: an open descriptor of the store root (O_DIRECTORY); the caller closes it (close()). */
  constructor(readonly fd: number) {}

  /** The layer over the directory at `path` (absolute, or relative to the working directory); close() it when done. */
  static async openRoot(path: string): Promise<StoreDir> {
    return new StoreDir(await native.openAt(native.AT_FDCWD, path, C.O_RDONLY | C.O_DIRECTORY));
  }

  /** Runs `fn` with the layer over the directory at `path`, and closes it after. */
  static async using<T>(path: string, fn: (dir: StoreDir) => Promise<T>): Promise<T> {
    const dir = await StoreDir.openRoot(path);
    try {
      return await fn(dir);
    } finally {
      dir.close();
    }
  }

  /** Closes the root's descriptor (not for ABSOLUTE). */
  close(): void {
    if (this.fd !== native.AT_FDCWD) closeSync(this.fd);
  }

  /** lstat (never follows a final symlink). */
  lstat(rel: string): Promise<BigIntStats> {
    return native.statAt(this.fd, rel, false);
  }

  /** lstat on the calling thread (native.statAtSync: only for attributes read as their record is appended). */
  lstatNow(rel: string): BigIntStats {
    return native.statAtSync(this.fd, rel, false);
  }

  /** stat (follows a final symlink). */
  stat(rel: string): Promise<BigIntStats> {
    return native.statAt(this.fd, rel, true);
  }

  /** open(2) with `flags` (O_CLOEXEC added); resolves with the descriptor. */
  open(rel: string, flags: number, mode = 0): Promise<number> {
    return native.openAt(this.fd, rel, flags, mode);
  }

  /**
   * open(2) of the object open as `fd` (`/proc/self/fd/N`, as libfuse's
   * passthrough_hp opens a node): it needs no name, so it works for a file
   * whose last name is gone. `flags` as given (no O_NOFOLLOW: the link in
   * /proc is how it is reached).
   */
  reopen(fd: number, flags: number): Promise<number> {
    return native.openAt(native.AT_FDCWD, `/proc/self/fd/${fd}`, flags, 0);
  }

  /**
   * Opens a file to read without touching its atime where allowed
   * (O_NOATIME, refused with EPERM to a caller that does not own the file
   * and lacks CAP_FOWNER: then without it). Never follows a final symlink.
   */
  async openQuiet(rel: string): Promise<number> {
    try {
      return await this.open(rel, C.O_RDONLY | C.O_NOFOLLOW | C.O_NOATIME);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EPERM') throw err;
      return this.open(rel, C.O_RDONLY | C.O_NOFOLLOW);
    }
  }

  mkdir(rel: string, mode: number): Promise<void> {
    return native.mkdirAt(this.fd, rel, mode);
  }

  /** mknod(2): `mode` includes the type. */
  mknod(rel: string, mode: number, dev: number): Promise<void> {
    return native.mknod(rel, mode, dev, this.fd);
  }

  symlink(target: string, rel: string): Promise<void> {
    return native.symlinkAt(this.fd, rel, target);
  }

  /** linkat(2): `to` relative to `into` (another directory's layer; default this one). */
  link(from: string, to: string, into: StoreDir = this): Promise<void> {
    return native.linkAt(this.fd, from, to, into.fd);
  }

  /** rename(2), `to` relative to `into` (default this layer); with `noReplace`, renameat2(RENAME_NOREPLACE): EEXIST when `to` exists. */
  rename(from: string, to: string, noReplace = false, into: StoreDir = this): Promise<void> {
    return noReplace ? native.renameNoReplaceAt(this.fd, from, to, into.fd) : native.renameAt(this.fd, from, to, into.fd);
  }

  /** renameat2(RENAME_EXCHANGE): the objects at `a` and `b` (relative to `bIn`, default this layer) swap names, atomically. */
  exchange(a: string, b: string, bIn: StoreDir = this): Promise<void> {
    return native.renameExchangeAt(this.fd, a, b, bIn.fd);
  }

  unlink(rel: string): Promise<void> {
    return native.unlinkAt(this.fd, rel, false);
  }

  rmdir(rel: string): Promise<void> {
    return native.unlinkAt(this.fd, rel, true);
  }

  readlink(rel: string): Promise<string> {
    return native.readlinkAt(this.fd, rel);
  }

  /** chmod(2): follows a final symlink (never ask it of one). */
  chmod(rel: string, mode: number): Promise<void> {
    return native.chmodAt(this.fd, rel, mode);
  }

  /** lchown(2); -1 leaves the uid or gid as it is. */
  lchown(rel: string, uid: number, gid: number): Promise<void> {
    return native.chownAt(this.fd, rel, uid, gid);
  }

  truncate(rel: string, size: number): Promise<void> {
    return native.truncateAt(this.fd, rel, size);
  }

  access(rel: string, mode: number): Promise<void> {
    return native.accessAt(this.fd, rel, mode);
  }

  statfs(rel = '.'): Promise<StatfsAt> {
    return native.statfsAt(this.fd, rel);
  }

  utimens(rel: string, atime: TimeSpec, mtime: TimeSpec, opts?: { noFollow?: boolean }): Promise<void> {
    return native.utimens(rel, atime, mtime, opts, this.fd);
  }

  getxattr(rel: string, name: string): Promise<Buffer> {
    return native.getxattr(rel, name, this.fd);
  }

  setxattr(rel: string, name: string, value: Buffer, flags: number): Promise<void> {
    return native.setxattr(rel, name, value, flags, this.fd);
  }

  listxattr(rel: string): Promise<string[]> {
    return native.listxattr(rel, this.fd);
  }

  removexattr(rel: string, name: string): Promise<void> {
    return native.removexattr(rel, name, this.fd);
  }

  readdirIno(rel: string): Promise<DirEntry[]> {
    return native.readdirIno(rel, this.fd);
  }

  scanDir(rel: string, withXattrs: boolean): Promise<ScannedEntry[]> {
    return native.scanDir(rel, withXattrs, this.fd);
  }

  readFileQuiet(rel: string, maxBytes: number): Promise<QuietRead> {
    return native.readFileQuiet(rel, maxBytes, this.fd);
  }

  prepareObject(rel: string, p: PrepareObject): Promise<void> {
    return native.prepareObject(rel, p, this.fd);
  }

  /**
   * Removes `rel` and, for a directory, everything under it (rm -rf); nothing
   * there is no error. For leftovers of an interrupted build, never large.
   */
  async rmTree(rel: string): Promise<void> {
    let st: BigIntStats;
    try {
      st = await this.lstat(rel);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return;
      throw err;
    }
    if (!st.isDirectory()) {
      await this.unlink(rel).catch(ignoreGone);
      return;
    }
    for (const e of await this.readdirIno(rel)) await this.rmTree(`${rel}/${e.name}`);
    await this.rmdir(rel).catch(ignoreGone);
  }

  /** native.cloneTo: `src` store-relative, `dst` relative to `into` (another store's layer, e.g. a swap's spare; default this one). */
  cloneTo(src: string, dst: string, mode: number, into: StoreDir = this): Promise<CloneToResult | null> {
    return native.cloneTo(src, dst, mode, this.fd, into.fd);
  }

  /** native.finishFile, with `tmp` and `f.rename` both store-relative. */
  finishFile(tmp: string, f: FinishFile): Promise<number> {
    return native.finishFile(tmp, f, this.fd);
  }
}

function ignoreGone(err: unknown): void {
  if ((err as { code?: string }).code !== 'ENOENT') throw err;
}
