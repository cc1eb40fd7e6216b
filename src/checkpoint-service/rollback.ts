// Rollback: inside the named areas, make the live tree what it was at the
// checkpoint (T0); outside them, change nothing. Every change goes through
// the filesystem core, so other checkpoints save what it destroys and a
// mirrored store ships it like any other change. Only the blocks saved since
// T0 are compared and, where they differ, copied back (native block copy).
//
// A rollback is a convergence, not a script: each step looks at the live
// state and does only what is still different. Killed in the middle (kill -9
// of the daemon), the same command run again finishes the job.
import { forEachLimited } from '../util/each-limited.js';
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import type { Filesystem, Caller } from '../core/filesystem.js';
import { FsError } from '../errors/errno.js';
import { BLOCK_SIZE, type AttrRec, type CheckpointState } from '../checkpoint/state.js';
import { T0View, baseName, joinPath, lstatPath, liveEntries, parentPath, within, type T0Entry } from '../checkpoint/view.js';
import { readAt } from '../store/fd-io.js';
import type { StoreDir } from '../store/store-dir.js';
import { LocalStore } from '../store/local-store.js';
import { isPrivateXattr } from '../store/object-ids.js';
import { timeSpecFromNs } from '../protocol/records.js';

/** A path (a file, or a directory and everything under it), or a byte range of a file. */
export interface Area {
  path: string;
  range?: { offset: number; length: number };
}

/**
 * What a rollback tells the kernel side (the FUSE adapter) about the store
 * changing behind it. Objects are named by their store inode numbers, not by
 * paths: the kernel may know an object through a name the rollback has just
 * taken away or not know the name it has just made (a file whose other name
 * was replaced, a directory put back under its old name).
 */
export interface RollbackObserver {
  /** The name `name` in directory `parent` went; it named `ino` (`survives`: that keeps other names, its link count fell). */
  removed(parent: bigint, name: string, ino: bigint, survives: boolean): void;
  /** The name `name` in `parent` now names `ino` (drop a cached "no such name"; a new link: its link count rose). */
  added(parent: bigint, name: string, ino: bigint): void;
  /** Directory `ino` moved from `from` to `to` (a directory put back where it was at the checkpoint). */
  moved(from: { parent: bigint; name: string }, to: { parent: bigint; name: string }, ino: bigint): void;
  /** The object's data or attributes changed: drop the kernel's caches of it. */
  changed(ino: bigint): void;
}

export interface RollbackChange {
  path: string;
  action: 'remove' | 'create' | 'link' | 'rename' | 'data' | 'size' | 'attrs';
  from?: string;
  bytes?: number;
}

export interface RollbackReport {
  checkpoint: string;
  dryRun: boolean;
  areas: string[];
  bytesCopied: number;
  changed: RollbackChange[];
  /** Time the daemon spent on it, ms. */
  elapsedMs?: number;
}

const ROOT: Caller = { uid: 0, gid: 0, pid: 0 };
/** Saved blocks of one file compared and copied at the same time. */
const COPY_PARALLEL = 16;

export class Rollback {
  private readonly view: T0View;
  private readonly report: RollbackReport;
  /** The area being worked on (a directory moved inside it is moved back, not copied). */
  private area = '/';
  /** T0 objects given a name so far: the live inode, so that all their T0 names in the areas end up on one. */
  private readonly placed = new Map<string, { ino: bigint; path: string }>();

  constructor(
    private readonly s: CheckpointState,
    private readonly fs: Filesystem,
    rootIno: bigint,
    private readonly observer: RollbackObserver | null,
    private readonly dryRun: boolean,
    /** The live store's objects. */
    private readonly dir: StoreDir,
  ) {
    this.view = new T0View(s, rootIno, dir);
    this.report = { checkpoint: s.info.name, dryRun, areas: [], bytesCopied: 0, changed: [] };
  }

  /** Checks every area first (bad input changes nothing), then rolls them back in order. */
  async run(areas: Area[]): Promise<RollbackReport> {
    if (this.s.info.status !== 'valid') throw new FsError('EINVAL', `checkpoint ${this.s.info.name} is invalid (${this.s.info.reason ?? 'unknown reason'}): it cannot be rolled back to`);
    if (this.fs.restoring) throw new FsError('EBUSY', 'a restore from the archive is still under way: roll back once it is complete');
    const list = areas.length === 0 ? [{ path: '/' }] : areas;
    const plans: { area: Area; t0: T0Entry | null }[] = [];
    for (const a of list) plans.push({ area: a, t0: await this.check(a) });
    this.report.areas = list.map((a) => (a.range ? `${a.path}:${a.range.offset}+${a.range.length}` : a.path));
    for (const { area, t0 } of plans) {
      this.area = area.path;
      if (area.range) await this.restoreData(area.path, t0!.key, area.range);
      else if (area.path === '/') await this.syncObject('/', this.view.rootKey);
      else await this.syncEntry(parentPath(area.path), baseName(area.path), t0);
    }
    return this.report;
  }

  private async check(a: Area): Promise<T0Entry | null> {
    const p = a.path;
    if (!p.startsWith('/') || p.split('/').some((c) => c === '.' || c === '..') || (p !== '/' && p.endsWith('/'))) {
      throw new FsError('EINVAL', `${p}: not a normalised path inside the mount`);
    }
    if (LocalStore.isReserved(p)) throw new FsError('EINVAL', `${p}: reserved by strata`);
    const t0 = await this.view.resolve(p);
    const live = await lstatPath(this.dir, p);
    if (!t0 && !live) throw new FsError('ENOENT', `${p}: neither in checkpoint ${this.s.info.name} nor in the tree now`);
    if (p !== '/') {
      // Every directory on the way is a real one now (a symbolic link there could lead out of the store).
      const parts = p.split('/').filter((c) => c.length > 0);
      for (let i = 1; i < parts.length; i++) {
        const dir = `/${parts.slice(0, i).join('/')}`;
        const st = await lstatPath(this.dir, dir);
        if (st?.isSymbolicLink()) throw new FsError('EINVAL', `${p}: ${dir} is a symbolic link: name the area by its real path`);
        if (!st || !st.isDirectory()) throw new FsError('ENOENT', `${p}: its directory ${parentPath(p)} does not exist now: roll back ${dir} instead`);
      }
    }
    if (a.range) {
      const { offset, length } = a.range;
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0) throw new FsError('EINVAL', `${p}: bad byte range`);
      if (!t0 || this.view.kind(t0) !== 'file') throw new FsError('EINVAL', `${p}: a byte range needs a regular file that existed at the checkpoint`);
      if (!live || this.view.keyOf(live) !== t0.key) throw new FsError('EINVAL', `${p}: the file at this name was replaced since the checkpoint: roll back the whole file`);
      const size = await this.view.t0Size(t0.key, p);
      if (offset + length > size) throw new FsError('EINVAL', `${p}: range ${offset}+${length} ends past the file's end at the checkpoint (${size} bytes)`);
    }
    return t0;
  }

  private note(c: RollbackChange): void {
    this.report.changed.push(c);
  }

  // ---- names ----------------------------------------------------------------------

  /** Makes `parent/name` what it was at T0 (`t0` null: it did not exist). */
  private async syncEntry(parent: string, name: string, t0: T0Entry | null): Promise<void> {
    const path = joinPath(parent, name);
    const live = await lstatPath(this.dir, path);
    if (t0 === null) {
      if (live) await this.removeTree(path);
      return;
    }
    const kind = this.view.kind(t0);
    const first = this.placed.get(t0.key);
    if (live && this.view.keyOf(live) === t0.key && kindOfStat(live) === kind && (kind === 'dir' || !first || first.ino === live.ino)) {
      this.placed.set(t0.key, { ino: live.ino, path });
      await this.syncObject(path, t0.key);
      return;
    }
    if (live) await this.removeTree(path);
    if (first && kind !== 'dir' && (await lstatPath(this.dir, first.path))?.ino === first.ino) {
      // Another T0 name of it is in place already (two copies made by earlier subtree rollbacks become one object again).
      this.note({ path, action: 'link', from: first.path });
      if (this.dryRun) return;
      await this.fs.link(first.path, path);
      await this.announceAdded(path);
      this.view.noteAdded(path, t0.key);
      return;
    }
    const placed = await this.place(t0, path);
    if (placed) {
      const st = await lstatPath(this.dir, path);
      if (st) this.placed.set(t0.key, { ino: st.ino, path });
      await this.syncObject(path, t0.key);
    }
  }

  /**
   * Gives T0 object `t0` the name `path`: another name of it if it is alive
   * (a directory inside the area is moved back), else a copy rebuilt from the
   * checkpoint. False in a dry run when nothing real stands at `path`.
   */
  private async place(t0: T0Entry, path: string): Promise<boolean> {
    const kind = this.view.kind(t0);
    const locs = (await this.view.locate(t0.key)).filter((p) => p !== path);
    // Never changed since T0 but to be made anew from its live self: its attributes now are its T0 ones.
    if (this.view.attrs(t0.key) === undefined && locs.length > 0 && kind !== 'dir' && !this.dryRun) {
      const st = await lstatPath(this.dir, locs[0]!);
      if (st) await this.s.ensureAttrs(t0.key, { dir: this.dir, rel: LocalStore.relative(locs[0]!), st });
    }
    const rec = this.view.attrs(t0.key);
    // Another live name inside the area, or one it had outside at T0 too (a hard
    // link across the boundary): the same object. A file moved out since is copied.
    let linkFrom: string | undefined = locs.find((p) => within(p, this.area));
    for (const p of locs) {
      if (linkFrom !== undefined) break;
      if ((await this.view.resolve(p))?.key === t0.key) linkFrom = p;
    }
    if (kind === 'file' && linkFrom === undefined && locs.length > 0) return this.copyOf(t0.key, locs[0]!, path, rec);
    if (kind !== 'dir' && linkFrom !== undefined) {
      this.note({ path, action: 'link', from: linkFrom });
      if (this.dryRun) return false;
      await this.fs.link(linkFrom, path);
      await this.announceAdded(path);
      this.view.noteAdded(path, t0.key);
      return true;
    }
    if (kind === 'dir') {
      const inside = locs.find((p) => within(p, this.area) && !within(path, p));
      if (inside !== undefined) {
        this.note({ path, action: 'rename', from: inside });
        if (this.dryRun) return false;
        await this.fs.rename(inside, path);
        await this.announceMoved(inside, path);
        this.view.noteRenamed(inside, path);
        return true;
      }
    }
    // A file found nowhere is gone only when the checkpoint saved it whole (before it lost its
    // last name); else a program moved it while the live tree was looked through: an error
    // (run the rollback again), never a file made of the blocks saved so far.
    if (kind === 'file' && locs.length === 0 && !this.s.savedWhole(t0.key)) {
      throw new FsError('EAGAIN', `${path} (object ${t0.key} of checkpoint ${this.s.info.name}) was not found in the live tree and the checkpoint has not saved it whole: a program moved it while the rollback looked; run the rollback again`);
    }
    // Gone (or a directory outside the area): rebuilt from the checkpoint.
    // A symbolic link or special file moved out is made anew from the live one.
    const liveSt = rec === undefined && locs.length > 0 ? await lstatPath(this.dir, locs[0]!) : null;
    if (rec === undefined && liveSt === null) {
      throw new FsError('EIO', `checkpoint ${this.s.info.name} holds nothing of ${path} (object ${t0.key}): its copy is incomplete`);
    }
    const mode = (rec?.mode ?? 0o755) & 0o7777;
    let bytes = 0;
    if (kind === 'file') bytes = this.s.savedBlocks(t0.key).reduce((n, [, w]) => n + w.len, 0);
    this.note({ path, action: 'create', ...(kind === 'file' ? { bytes } : {}) });
    if (this.dryRun) {
      this.report.bytesCopied += bytes;
      if (kind === 'dir') {
        for (const [n] of (await this.view.listing(t0.key, locs[0])) ?? []) this.note({ path: joinPath(path, n), action: 'create' });
      }
      return false;
    }
    let ino: bigint;
    switch (kind) {
      case 'dir': ino = (await this.fs.mkdir(path, mode, ROOT)).ino; break;
      case 'symlink': ino = (await this.fs.symlink(rec?.target ?? (await this.fs.readlink(locs[0]!)), path, ROOT)).ino; break;
      case 'other': ino = (await this.fs.mknod(path, rec?.mode ?? Number(liveSt!.mode), rec?.rdev ?? Number(liveSt!.rdev), ROOT)).ino; break;
      case 'file': {
        const res = await this.fs.create(path, mode, C.O_RDWR, ROOT);
        ino = res.stat.ino;
        try {
          for (const [b, w] of this.s.savedBlocks(t0.key)) {
            if (b * BLOCK_SIZE >= rec!.size) continue;
            await this.fs.copyFrom(res.handle, this.s.log.fd, w.off, b * BLOCK_SIZE, w.len);
            this.report.bytesCopied += w.len;
          }
          await this.fs.setattr({ handle: res.handle }, { size: rec!.size });
        } finally {
          await this.fs.release(res.handle);
        }
        break;
      }
    }
    // From now on this new object is the checkpoint's object (durably, before anything relies on it).
    await this.s.setIdent(ino, t0.key, true);
    await this.announceAdded(path);
    this.view.noteAdded(path, t0.key);
    return true;
  }

  /** A new file at `path` with the contents of the live object at `from` (T0 object `key`, moved out of the area); syncObject then puts back its T0 blocks. */
  private async copyOf(key: string, from: string, path: string, rec: AttrRec | undefined): Promise<boolean> {
    const st = await lstatOrThrow(this.dir, from);
    this.note({ path, action: 'create', from, bytes: Number(st.size) });
    this.report.bytesCopied += Number(st.size);
    if (this.dryRun) return false;
    const res = await this.fs.create(path, (rec?.mode ?? Number(st.mode)) & 0o7777, C.O_RDWR, ROOT);
    const src = await openRead(this.dir, from);
    try {
      let off = 0;
      while (off < Number(st.size)) {
        const n = await this.fs.copyFrom(res.handle, src, off, off, Math.min(8 * 1024 * 1024, Number(st.size) - off));
        if (n <= 0) break;
        off += n;
      }
    } finally {
      fs.close(src, () => {});
      await this.fs.release(res.handle);
    }
    await this.s.setIdent(res.stat.ino, key, true);
    await this.announceAdded(path);
    this.view.noteAdded(path, key);
    return true;
  }

  /** Removes `path` and everything under it (through the core: other checkpoints save what goes). */
  private async removeTree(path: string): Promise<void> {
    const st = await lstatPath(this.dir, path);
    if (!st) return;
    if (st.isDirectory()) {
      for (const e of await liveEntries(this.dir, path)) await this.removeTree(joinPath(path, e.name));
    }
    this.note({ path, action: 'remove' });
    if (this.dryRun) return;
    if (st.isDirectory()) await this.fs.rmdir(path);
    else await this.fs.unlink(path);
    await this.announceRemoved(path, st);
    this.view.noteRemoved(path);
  }

  // ---- objects --------------------------------------------------------------------

  private async syncObject(path: string, key: string): Promise<void> {
    const st = await lstatPath(this.dir, path);
    if (!st) return;
    if (st.isDirectory()) await this.syncDir(path, key);
    else if (st.isFile()) await this.restoreData(path, key, null);
    await this.restoreAttrs(path, key);
  }

  private async syncDir(path: string, key: string): Promise<void> {
    const saved = this.s.listings.get(key);
    if (saved) {
      // T0's names first (an object renamed within the area gets its old name back
      // before its new one goes), then the names that were not there at T0.
      const t0Names = new Set<string>();
      for (const [name, k, dtype] of saved) {
        t0Names.add(name);
        await this.syncEntry(path, name, { key: k, dtype });
      }
      for (const e of await liveEntries(this.dir, path)) {
        if (!t0Names.has(e.name)) await this.removeTree(joinPath(path, e.name));
      }
      return;
    }
    // Its names never changed: only what is under them may have.
    for (const e of await liveEntries(this.dir, path)) {
      const k = this.s.canon(e.ino);
      const child = joinPath(path, e.name);
      if (k === null) await this.removeTree(child);
      else await this.syncObject(child, k);
    }
  }

  /** Puts back the file's T0 contents (within `range` only, when given): only saved blocks that differ are copied. */
  private async restoreData(path: string, key: string, range: { offset: number; length: number } | null): Promise<void> {
    const rec = this.view.attrs(key);
    if (!rec || rec.kind !== 'file') return;
    const st = await lstatPath(this.dir, path);
    if (!st) return;
    const liveSize = Number(st.size);
    const lo = range ? range.offset : 0;
    const hi = range ? range.offset + range.length : rec.size;
    const blocks = this.s.savedBlocks(key).filter(([b, w]) => b * BLOCK_SIZE < hi && b * BLOCK_SIZE + w.len > lo);
    // The whole file: its T0 size. A range: a file cut since T0 to less than
    // the range's end grows to that end (the range then reads as at T0; its
    // T0 zeros too, which no copy would bring back); a longer one keeps its size.
    const newSize = range === null ? rec.size : Math.max(liveSize, hi);
    const sizeChange = liveSize !== newSize;
    if (blocks.length === 0 && !sizeChange) return;
    const handle = this.dryRun ? null : (await this.fs.open(path, C.O_RDWR)).handle;
    const readFd = await openRead(this.dir, path);
    let copied = 0;
    try {
      // A file cut since T0 grows back first: its saved blocks then land inside
      // it, and the comparison below (which reads zeros past the end) holds.
      if (handle !== null && liveSize < newSize) await this.fs.setattr({ handle }, { size: newSize });
      // Blocks are independent: COPY_PARALLEL of them at a time (the disk's queue, not one round trip each).
      // Every copy settles before a failure goes up: the descriptor and the handle are closed then.
      await forEachLimited(blocks, COPY_PARALLEL, async ([b, w]) => {
        const start = Math.max(b * BLOCK_SIZE, lo);
        const end = Math.min(b * BLOCK_SIZE + w.len, hi);
        const src = w.off + (start - b * BLOCK_SIZE);
        const len = end - start;
        const [old, now] = await Promise.all([this.s.log.read(src, len), readAt(readFd, start, len)]);
        if (old.equals(now)) return;
        copied += len;
        if (handle === null) return;
        let done = 0;
        while (done < len) {
          const n = await this.fs.copyFrom(handle, this.s.log.fd, src + done, start + done, len - done);
          if (n <= 0) throw new FsError('EIO', `short copy from the checkpoint log into ${path}`);
          done += n;
        }
      });
      if (handle !== null && liveSize > newSize) await this.fs.setattr({ handle }, { size: newSize });
    } finally {
      fs.close(readFd, () => {});
      if (handle !== null) await this.fs.release(handle);
    }
    this.report.bytesCopied += copied;
    if (copied > 0) this.note({ path, action: 'data', bytes: copied });
    if (sizeChange) this.note({ path, action: 'size', bytes: newSize });
    if (copied > 0 || sizeChange) await this.announceChanged(path);
  }

  // ---- what the kernel side hears (the store inode numbers of what changed) ----

  private async announceAdded(path: string): Promise<void> {
    if (!this.observer) return;
    const [parent, st] = await Promise.all([lstatPath(this.dir, parentPath(path)), lstatPath(this.dir, path)]);
    if (parent && st) this.observer.added(parent.ino, baseName(path), st.ino);
  }

  /** `st`: the object's attributes before its name went. */
  private async announceRemoved(path: string, st: fs.BigIntStats): Promise<void> {
    if (!this.observer) return;
    const parent = await lstatPath(this.dir, parentPath(path));
    if (parent) this.observer.removed(parent.ino, baseName(path), st.ino, !st.isDirectory() && st.nlink > 1n);
  }

  private async announceMoved(from: string, to: string): Promise<void> {
    if (!this.observer) return;
    const [fromParent, toParent, st] = await Promise.all([parentPath(from), parentPath(to), to].map((p) => lstatPath(this.dir, p)));
    if (fromParent && toParent && st) this.observer.moved({ parent: fromParent.ino, name: baseName(from) }, { parent: toParent.ino, name: baseName(to) }, st.ino);
  }

  private async announceChanged(path: string): Promise<void> {
    if (!this.observer) return;
    const st = await lstatPath(this.dir, path);
    if (st) this.observer.changed(st.ino);
  }

  /** Owner, mode, extended attributes, then times (last: everything before moves them). */
  private async restoreAttrs(path: string, key: string): Promise<void> {
    const rec = this.view.attrs(key);
    if (!rec) return;
    const st = await lstatPath(this.dir, path);
    if (!st) return;
    const rel = LocalStore.relative(path);
    let changed = false;
    const want = new Map(rec.xattrs.map(([n, v]) => [n, Buffer.from(v, 'base64')]));
    const have = (await this.dir.listxattr(rel)).filter((n) => !isPrivateXattr(n));
    for (const n of have) {
      if (want.has(n)) continue;
      changed = true;
      if (!this.dryRun) await this.fs.removexattr(path, n);
    }
    for (const [n, v] of want) {
      const cur = await this.dir.getxattr(rel, n).catch(() => null);
      if (cur && cur.equals(v)) continue;
      changed = true;
      if (!this.dryRun) await this.fs.setxattr(path, n, v, 0);
    }
    if (Number(st.uid) !== rec.uid || Number(st.gid) !== rec.gid) {
      changed = true;
      if (!this.dryRun) await this.fs.setattr({ path }, { uid: rec.uid, gid: rec.gid });
    }
    // After the owner (a chown clears set-ID bits); symbolic links have no mode of their own.
    const now = this.dryRun ? st : await lstatOrThrow(this.dir, path);
    if (!st.isSymbolicLink() && (Number(now.mode) & 0o7777) !== (rec.mode & 0o7777)) {
      changed = true;
      if (!this.dryRun) await this.fs.setattr({ path }, { mode: rec.mode & 0o7777 });
    }
    const after = this.dryRun ? st : await lstatOrThrow(this.dir, path);
    if (after.mtimeNs.toString() !== rec.mtimeNs || after.atimeNs.toString() !== rec.atimeNs) {
      if (after.mtimeNs.toString() !== rec.mtimeNs) changed = true;
      if (!this.dryRun) await this.fs.setattr({ path }, { atime: timeSpecFromNs(BigInt(rec.atimeNs)), mtime: timeSpecFromNs(BigInt(rec.mtimeNs)) });
    }
    if (changed) {
      this.note({ path, action: 'attrs' });
      await this.announceChanged(path);
    }
  }
}

function kindOfStat(st: fs.BigIntStats): AttrRec['kind'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

async function lstatOrThrow(dir: StoreDir, path: string): Promise<fs.BigIntStats> {
  const st = await lstatPath(dir, path);
  if (!st) throw new FsError('ENOENT', `${path} vanished during the rollback`);
  return st;
}

function openRead(dir: StoreDir, path: string): Promise<number> {
  return dir.openQuiet(LocalStore.relative(path));
}
