// The filesystem core: every POSIX operation strata serves, acting on the local
// store with real syscalls. It knows nothing of FUSE: the adapter in src/fuse
// translates requests into these calls, and the unit tests call them directly.
//
// Paths are namespace paths ('/', '/a/b'); the store converts them to paths
// relative to the store root, which is the process's working directory.
// Permission checks are the kernel's (the mount always uses
// default_permissions); the core runs as root and sets ownership explicitly.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import { dirname } from 'node:path';
import { FsError } from './errno.js';
import { HandleTable, type OpenFile, type OpenDir } from './handles.js';
import { LocalStore, RESERVED_NAME } from '../store/local-store.js';
import * as native from '../native/index.js';
import type { TimeSpec } from '../native/index.js';

/** The process on whose behalf an operation runs (from the FUSE request). */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
}

/** One directory entry: its name, type bits (S_IFMT part of a mode) and inode number. */
export interface DirEntryInfo {
  name: string;
  mode: number;
  ino: bigint;
}

export interface OpenResult {
  handle: number;
  /** Attributes of the opened object, taken right after the open. */
  stat: fs.BigIntStats;
  /** The open created the file. */
  created?: boolean;
  /** Backing descriptor, for the adapter's direct I/O path. */
  fd: number;
  /** The page cache may be kept across opens (nothing else changes the file). */
  keepCache: boolean;
}

export interface StatfsResult {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/** Flags that only make sense to the kernel's side of an open, never the backing one. */
const OPEN_STRIP = C.O_CREAT | C.O_EXCL | C.O_NOCTTY | (C.O_DIRECT ?? 0);
/** Flags every backing open gets: never follow a symlink, never leak into children. */
const OPEN_ADD = C.O_NOFOLLOW | 0o2000000; /* O_CLOEXEC */

export class Filesystem {
  readonly handles = new HandleTable();
  private readonly daemonUid = process.geteuid?.() ?? 0;
  private readonly daemonGid = process.getegid?.() ?? 0;

  constructor(readonly store: LocalStore) {}

  // ---- attributes -------------------------------------------------------

  getattr(path: string): Promise<fs.BigIntStats> {
    return fsp.lstat(LocalStore.relative(path), { bigint: true });
  }

  fgetattr(handle: number): Promise<fs.BigIntStats> {
    const f = this.file(handle);
    return new Promise((resolve, reject) => {
      fs.fstat(f.fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st)));
    });
  }

  async chmod(path: string, mode: number): Promise<void> {
    await fsp.chmod(this.existing(path), mode & 0o7777);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    // (uint32)-1 means "leave unchanged", which lchown spells -1.
    await fsp.lchown(this.existing(path), uid === 0xffffffff ? -1 : uid, gid === 0xffffffff ? -1 : gid);
  }

  async utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    await native.utimens(this.existing(path), atime, mtime, { noFollow: true });
  }

  async fchmod(handle: number, mode: number): Promise<void> {
    const f = this.file(handle);
    await new Promise<void>((resolve, reject) => fs.fchmod(f.fd, mode & 0o7777, (err) => (err ? reject(err) : resolve())));
  }

  async fchown(handle: number, uid: number, gid: number): Promise<void> {
    const f = this.file(handle);
    const u = uid === 0xffffffff ? -1 : uid;
    const g = gid === 0xffffffff ? -1 : gid;
    await new Promise<void>((resolve, reject) => fs.fchown(f.fd, u, g, (err) => (err ? reject(err) : resolve())));
  }

  async futimens(handle: number, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    await native.futimens(this.file(handle).fd, atime, mtime);
  }

  async truncate(path: string, size: number): Promise<void> {
    await fsp.truncate(this.existing(path), size);
  }

  async ftruncate(handle: number, size: number): Promise<void> {
    const f = this.file(handle);
    await new Promise<void>((resolve, reject) => fs.ftruncate(f.fd, size, (err) => (err ? reject(err) : resolve())));
  }

  async access(path: string, mode: number): Promise<void> {
    await fsp.access(LocalStore.relative(path), mode);
  }

  async statfs(): Promise<StatfsResult> {
    const s = await fsp.statfs('.');
    return {
      bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
      files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255,
    };
  }

  // ---- namespace --------------------------------------------------------

  async mkdir(path: string, mode: number, caller: Caller): Promise<void> {
    const rel = LocalStore.relativeForCreate(path);
    await fsp.mkdir(rel, mode & 0o7777);
    await this.own(rel, caller, true);
  }

  async mknod(path: string, mode: number, dev: number, caller: Caller): Promise<void> {
    const rel = LocalStore.relativeForCreate(path);
    await native.mknod(rel, mode, dev);
    await this.own(rel, caller, true);
  }

  async symlink(target: string, path: string, caller: Caller): Promise<void> {
    const rel = LocalStore.relativeForCreate(path);
    await fsp.symlink(target, rel);
    await this.own(rel, caller, true);
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    await fsp.link(LocalStore.relative(existingPath), LocalStore.relativeForCreate(newPath));
  }

  async unlink(path: string): Promise<void> {
    await fsp.unlink(LocalStore.relative(path));
  }

  async rmdir(path: string): Promise<void> {
    await fsp.rmdir(LocalStore.relative(path));
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(LocalStore.relative(from), LocalStore.relativeForCreate(to));
  }

  async readlink(path: string): Promise<string> {
    return fsp.readlink(LocalStore.relative(path));
  }

  // ---- files --------------------------------------------------------------

  /**
   * Opens an existing object. With `caller`, an O_TRUNC open by an unprivileged
   * caller drops the set-ID bits as the kernel would (see dropSetIdOnTruncate).
   */
  async open(path: string, flags: number, caller?: Caller): Promise<OpenResult> {
    const rel = LocalStore.relative(path);
    const fd = await openFd(rel, (flags & ~OPEN_STRIP) | OPEN_ADD, 0);
    if ((flags & C.O_TRUNC) !== 0 && caller !== undefined && caller.uid !== 0) {
      try {
        await dropSetIdOnTruncate(fd);
      } catch (err) {
        fs.close(fd, () => {});
        throw err;
      }
    }
    return this.registerFile(fd, flags);
  }

  async create(path: string, mode: number, flags: number, caller: Caller): Promise<OpenResult> {
    const rel = LocalStore.relativeForCreate(path);
    const fd = await openFd(rel, (flags & ~(C.O_NOCTTY | (C.O_DIRECT ?? 0))) | C.O_CREAT | OPEN_ADD, mode & 0o7777);
    try {
      await this.own(rel, caller, false, fd);
    } catch (err) {
      fs.close(fd, () => {});
      throw err;
    }
    // The kernel only sends create for a name it knows is absent, and strata
    // is the only writer of its store: the file is new.
    return { ...(await this.registerFile(fd, flags)), created: true };
  }

  read(handle: number, buf: Buffer, length: number, position: number): Promise<number> {
    const f = this.file(handle);
    return new Promise((resolve, reject) => {
      fs.read(f.fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  write(handle: number, buf: Buffer, length: number, position: number): Promise<number> {
    const f = this.file(handle);
    return new Promise((resolve, reject) => {
      fs.write(f.fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  async flush(handle: number): Promise<void> {
    this.file(handle);
  }

  fsync(handle: number, datasync: boolean): Promise<void> {
    const f = this.file(handle);
    return new Promise((resolve, reject) => {
      (datasync ? fs.fdatasync : fs.fsync)(f.fd, (err) => (err ? reject(err) : resolve()));
    });
  }

  async fallocate(handle: number, mode: number, offset: number, length: number): Promise<void> {
    await native.fallocate(this.file(handle).fd, mode, offset, length);
  }

  release(handle: number): Promise<void> {
    const entry = this.handles.get(handle);
    // Check the kind before removing: a directory handle must stay in the table.
    if (entry === undefined || entry.kind !== 'file') return Promise.reject(new FsError('EBADF'));
    this.handles.remove(handle);
    return new Promise((resolve, reject) => fs.close(entry.fd, (err) => (err ? reject(err) : resolve())));
  }

  // ---- directories ----------------------------------------------------------

  async opendir(path: string): Promise<number> {
    const rel = LocalStore.relative(path);
    const st = await fsp.lstat(rel);
    if (!st.isDirectory()) throw new FsError('ENOTDIR');
    return this.handles.add({ kind: 'dir', path });
  }

  /** All entries of a directory, '.' and '..' first, the reserved entry hidden. */
  async readdir(path: string): Promise<DirEntryInfo[]> {
    const rel = this.existing(path);
    const parentRel = path === '/' ? '.' : LocalStore.relative(dirname(path));
    const [entries, self, parent] = await Promise.all([
      native.readdirIno(rel),
      fsp.lstat(rel, { bigint: true }),
      fsp.lstat(parentRel, { bigint: true }),
    ]);
    const out: DirEntryInfo[] = [
      { name: '.', mode: Number(self.mode), ino: self.ino },
      { name: '..', mode: Number(parent.mode), ino: parent.ino },
    ];
    const atRoot = path === '/';
    for (const e of entries) {
      if (atRoot && e.name === RESERVED_NAME) continue;
      out.push({ name: e.name, mode: DT_TO_MODE[e.type] ?? 0, ino: e.ino });
    }
    return out;
  }

  async releasedir(handle: number): Promise<void> {
    const entry = this.handles.get(handle);
    // Check the kind before removing: a file handle (and its fd) must stay.
    if (entry === undefined || entry.kind !== 'dir') throw new FsError('EBADF');
    this.handles.remove(handle);
  }

  async fsyncdir(handle: number): Promise<void> {
    const fd = await openFd(LocalStore.relative(this.dir(handle).path), C.O_RDONLY | C.O_DIRECTORY, 0);
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      fs.close(fd, () => {});
    }
  }

  // ---- extended attributes --------------------------------------------------

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    await native.setxattr(this.existing(path), name, value, flags);
  }

  getxattr(path: string, name: string): Promise<Buffer> {
    return native.getxattr(this.existing(path), name);
  }

  listxattr(path: string): Promise<string[]> {
    return native.listxattr(this.existing(path));
  }

  async removexattr(path: string, name: string): Promise<void> {
    await native.removexattr(this.existing(path), name);
  }

  // ---- helpers ----------------------------------------------------------------

  /** Releases every open handle (on unmount). */
  async closeAll(): Promise<void> {
    for (const entry of [...this.handles.values()]) {
      if (entry.kind === 'file') await new Promise<void>((resolve) => fs.close(entry.fd, () => resolve()));
    }
  }

  /**
   * Store path of an existing object for a setattr-like op. libfuse passes ""
   * for an op through the handle of a file that was unlinked while open.
   */
  private existing(path: string): string {
    if (path === '') throw new FsError('ENOENT', 'object was unlinked while open');
    return LocalStore.relative(path);
  }

  private file(handle: number): OpenFile {
    const entry = this.handles.get(handle);
    if (entry === undefined || entry.kind !== 'file') throw new FsError('EBADF', `no open file ${handle}`);
    return entry;
  }

  private dir(handle: number): OpenDir {
    const entry = this.handles.get(handle);
    if (entry === undefined || entry.kind !== 'dir') throw new FsError('EBADF', `no open directory ${handle}`);
    return entry;
  }

  private async registerFile(fd: number, flags: number): Promise<OpenResult> {
    let stat: fs.BigIntStats;
    try {
      stat = await new Promise<fs.BigIntStats>((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, s) => (err ? reject(err) : resolve(s))));
    } catch (err) {
      fs.close(fd, () => {});
      throw err;
    }
    // Only a single-link regular file may keep its page cache across opens.
    const keepCache = (Number(stat.mode) & C.S_IFMT) === C.S_IFREG && stat.nlink === 1n;
    const handle = this.handles.add({ kind: 'file', fd, flags });
    return { handle, fd, keepCache, stat };
  }

  /**
   * Gives a new object to the calling user, as ext4 would: owner = caller's uid;
   * group = the parent directory's group when it is set-group-ID, else the
   * caller's gid. The daemon creates objects as itself, so this is a chown.
   */
  private async own(rel: string, caller: Caller, isPathOnly: boolean, fd?: number): Promise<void> {
    // Created by the daemon's own user and group: already right (the kernel
    // applied set-group-ID inheritance when it created the object).
    if (caller.uid === this.daemonUid && caller.gid === this.daemonGid) return;
    const parentRel = rel.includes('/') ? dirname(rel) : '.';
    const parent = await fsp.stat(parentRel);
    const inheritGroup = (parent.mode & 0o2000) !== 0; // S_ISGID
    const gid = inheritGroup ? -1 : caller.gid;
    if (caller.uid === this.daemonUid && gid === -1) return;
    if (fd !== undefined && !isPathOnly) {
      await new Promise<void>((resolve, reject) => fs.fchown(fd, caller.uid, gid, (err) => (err ? reject(err) : resolve())));
    } else {
      await fsp.lchown(rel, caller.uid, gid);
    }
  }
}

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;

/**
 * The kernel leaves O_TRUNC of an open to strata (atomic_o_trunc) and the
 * daemon truncates as root, which keeps the set-ID bits. A truncation by a
 * process without CAP_FSETID drops them natively; as the kernel does for a
 * FUSE setattr that must drop them, S_ISUID always goes and S_ISGID when
 * group-execute is set.
 */
async function dropSetIdOnTruncate(fd: number): Promise<void> {
  const st = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (err, s) => (err ? reject(err) : resolve(s))));
  if (!st.isFile()) return;
  let drop = st.mode & S_ISUID;
  if ((st.mode & (S_ISGID | C.S_IXGRP)) === (S_ISGID | C.S_IXGRP)) drop |= S_ISGID;
  if (drop === 0) return;
  await new Promise<void>((resolve, reject) => fs.fchmod(fd, st.mode & 0o7777 & ~drop, (err) => (err ? reject(err) : resolve())));
}

function openFd(rel: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(rel, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

const DT_TO_MODE: Readonly<Record<number, number>> = {
  1: C.S_IFIFO, 2: C.S_IFCHR, 4: C.S_IFDIR, 6: C.S_IFBLK, 8: C.S_IFREG, 10: C.S_IFLNK, 12: C.S_IFSOCK,
};
