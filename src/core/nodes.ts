// The core's node-addressed API: every operation a mount makes names its
// objects by node id (and a name inside a directory node), as the kernel
// does, never by path. It keeps the node table (node-table.ts): which object
// each node stands for, the names it is known by, its lookups and open
// handles; and it decides how to reach a node's object: by the name the
// table has for it, through one of its open handles, or, when its last name
// is gone (an unlink or a rename over it after the kernel's lookup), through
// a descriptor the mount keeps per node (NodeDescriptors). The FUSE adapter
// maps requests onto these calls one to one and keeps only the FUSE-specific
// rest (replies, the FUSE thread's fast paths, the request hold).
//
// A name in a directory node reaches the Filesystem core as a Place: the
// directory through its node's descriptor (the mount keeps one per node,
// NodeDescriptors; where it kept none, the directory opened by its path for
// the request), and the name in it, as libfuse's passthrough_hp works. The
// store-relative path comes along only to name the object to the checkpoint
// guard. Operations on a node itself (getattr, setattr, open, readdir, xattrs,
// ...) reach a named node's object the same way: its name relative to its
// directory node's descriptor; one with no name left through a descriptor of
// its own. Requests that change names run under the adapter's namespace lock,
// so the names the table gives (and the paths, where no descriptor is kept)
// stay right while they are used (docs/architecture.md, "Nodes and paths").
import { close, constants as C, type BigIntStats } from 'node:fs';
import { FsError } from '../errors/errno.js';
import { LocalStore } from '../store/local-store.js';
import * as native from '../native/index.js';
import type { Caller, DirEntryInfo, Filesystem, Named, ObjectRef, OpenResult, SetattrChanges } from './filesystem.js';
import { placeEntry, type Place } from './place.js';
import { StoreDir } from '../store/store-dir.js';
import { InodeTable, ROOT_NODEID, type Inode } from './node-table.js';

export { ROOT_NODEID, type Inode } from './node-table.js';

/** open(2)'s access mode bits (O_ACCMODE; node:fs does not export it). */
const O_ACCMODE = 3;
/** O_PATH (Linux; node:fs does not export it). */
const O_PATH = 0o10000000;

/** How the mount reaches the object of a node that has no name left. */
export interface NodeDescriptors {
  /**
   * A descriptor of node `nodeid`'s object (O_PATH will do; the caller's to
   * close), or -1 when none is kept for it (evicted, or not mounted).
   */
  descriptorOf(nodeid: number): number;
}

/**
 * True when removing one name of the object `st` leaves it alive: a
 * non-directory with more than one name in the store. The kernel holds the
 * object's inode lock across the removal, so the count cannot change in
 * between through the mount.
 */
function survivesRemoval(st: BigIntStats): boolean {
  return !st.isDirectory() && st.nlink > 1n;
}

/** renameat2's two flags strata takes. */
export type RenameFlag = 'noreplace' | 'exchange' | null;

/** A node a create-like call made or found, and the object's attributes. */
export interface NewEntry {
  node: Inode;
  st: BigIntStats;
}

export class Nodes {
  /** Handles lent to requests of other programs (borrow): what their release waits for. */
  private readonly borrows = new Map<number, Promise<unknown>>();

  /**
   * O_PATH descriptors the core keeps itself, by node id: of directories
   * whose last name went while the kernel still held them (a program's
   * working directory), so that they stay reachable when the mount's node
   * table has let its own descriptor go (it keeps at most half the
   * descriptor limit: `STRATA_NODE_TABLE_MAX`). Closed when the node leaves
   * the table.
   */
  private readonly keptDirs = new Map<number, number>();

  private constructor(private readonly fs: Filesystem, readonly table: InodeTable, private readonly descriptors: NodeDescriptors) {}

  /**
   * The node table of a mount of `fs`'s store, rooted at its root; node ids
   * from `allocNodeid` (the FUSE bridge shares its counter: it makes nodes
   * of its own and announces them, adopt).
   */
  static async open(fs: Filesystem, allocNodeid: () => number, descriptors: NodeDescriptors): Promise<Nodes> {
    const root = await fs.getattr('/');
    let nodes: Nodes | null = null;
    const table = new InodeTable(root.ino, allocNodeid, (inode) => nodes?.letGo(inode.nodeid));
    nodes = new Nodes(fs, table, descriptors);
    return nodes;
  }

  get size(): number {
    return this.table.size;
  }

  /** The node, or ESTALE when it was forgotten. */
  get(nodeid: number): Inode {
    return this.table.get(nodeid);
  }

  // ---- the kernel's view ------------------------------------------------------

  /** Looks `name` up in directory node `parent`; null when there is no such entry. Remembers the node (one more lookup). */
  async lookup(parent: number, name: string): Promise<{ node: Inode; st: BigIntStats; settled: boolean } | null> {
    const dir = this.table.get(parent);
    let res: { st: BigIntStats; settled: boolean };
    try {
      res = await this.at(dir, name, false, (p) => this.fs.attrsSettled(p, true));
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return null;
      throw err;
    }
    return { node: this.table.remember(dir, name, res.st.ino), ...res };
  }

  /** A lookup of `name` in `parent` was resolved elsewhere (the FUSE thread) as the object with inode number `ino`: remembered. */
  resolved(parent: number, name: string, ino: bigint): Inode {
    return this.table.remember(this.table.get(parent), name, ino);
  }

  /** The FUSE bridge made node `nodeid` for a new object `name` in `parent`; null when `parent` is unknown. */
  adopt(parent: number, name: string, ino: bigint, nodeid: number): Inode | null {
    const dir = this.table.find(parent);
    return dir === undefined ? null : this.table.adopt(dir, name, ino, nodeid);
  }

  /** `count` lookups of `nodeid` were dropped. */
  forget(nodeid: number, count: number): void {
    this.table.forget(nodeid, count);
  }

  /** The store was swapped: every node known so far stands for an object of the old store (InodeTable.detachAll). */
  detachAll(rootIno: bigint): void {
    this.table.detachAll(rootIno);
  }

  // ---- attributes ---------------------------------------------------------------

  /**
   * Attributes of `nodeid` (through handle `fh` when it is one of the
   * node's). With `settle` (a restore under way) and a name to check it by,
   * also whether the object is settled (Filesystem.attrsSettled); `settled`
   * is null when that was not checked.
   */
  async getattr(nodeid: number, fh: number, settle: boolean): Promise<{ st: BigIntStats; settled: boolean | null }> {
    const node = this.table.get(nodeid);
    if (settle && !(fh !== 0 && node.handles.has(fh)) && this.table.pathOf(node) !== null) return this.named(node, (o) => this.fs.attrsSettledOf(o));
    return { st: await this.attrsOf(node, fh), settled: null };
  }

  /**
   * Applies one setattr to `nodeid`: through handle `fh` when it is the
   * node's, else by name, else (no name left) through a handle a program
   * holds on it or the node's descriptor.
   */
  async setattr(nodeid: number, fh: number, ch: SetattrChanges, caller: Caller): Promise<BigIntStats> {
    const fs = this.fs;
    const node = this.table.get(nodeid);
    const own = fh !== 0 && node.handles.has(fh);
    const nameless = this.table.pathOf(node) === null;
    const sizing = ch.size !== undefined;
    const lent = own ? undefined : (nameless ? this.lentHandle(node, sizing) : undefined);
    // A size change (truncate(2) of /proc/PID/fd/N) where every handle is read-only
    // (ftruncate needs a writable descriptor): through a writable one opened for it.
    // No name and nothing open (a rename over its name or an unlink came after the kernel's lookup): through
    // the node table's descriptor of it, whatever its kind.
    const noneOpen = nameless && !node.stale && lent === undefined && !own && node.dirHandles.size === 0;
    const opened = lent !== undefined && sizing && this.readOnly(lent)
      ? await this.borrow(lent, fs.reopen(lent, C.O_WRONLY, caller))
      : undefined;
    try {
      const handle = own ? fh : opened?.handle ?? lent;
      // A directory with no name left that a program still has open: through the directory handle's descriptor.
      const dirHandle = handle === undefined && nameless ? (node.dirHandles.has(fh) ? fh : node.dirHandles.values().next().value) : undefined;
      const ref: ObjectRef | null = handle !== undefined ? { handle } : noneOpen ? { descriptor: await this.nodeDescriptor(node) } : null;
      const work = ref !== null ? fs.setattr(ref, ch)
        : dirHandle !== undefined ? fs.setattrDir(dirHandle, ch) : this.named(node, (o) => fs.setattr({ path: o }, ch));
      // Another program's handle, taken for a request that names none of its own (a
      // truncating open's SETATTR carries no handle): its release waits for this work.
      const borrowed = handle !== undefined && handle !== fh && handle !== opened?.handle ? handle : dirHandle !== undefined && dirHandle !== fh ? dirHandle : undefined;
      return await (borrowed !== undefined ? this.borrow(borrowed, work) : work);
    } finally {
      if (opened !== undefined) await fs.release(opened.handle);
    }
  }

  async readlink(nodeid: number): Promise<string> {
    return this.byNode(this.table.get(nodeid), (o) => this.fs.readlink(o), (fd) => this.fs.readlinkOf(fd));
  }

  async access(nodeid: number, mode: number): Promise<void> {
    return this.named(this.table.get(nodeid), (o) => this.fs.access(o, mode));
  }

  // ---- names ----------------------------------------------------------------------

  async mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Promise<NewEntry> {
    return this.made(parent, name, (p) => this.fs.mknod(p, mode, rdev, caller));
  }

  async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<NewEntry> {
    return this.made(parent, name, (p) => this.fs.mkdir(p, mode, caller));
  }

  async symlink(parent: number, name: string, target: string, caller: Caller): Promise<NewEntry> {
    return this.made(parent, name, (p) => this.fs.symlink(target, p, caller));
  }

  /** Gives node `nodeid`'s object the name `name` in `parent`. */
  async link(nodeid: number, parent: number, name: string): Promise<NewEntry> {
    return this.named(this.table.get(nodeid), (existing) => this.made(parent, name, (p) => this.fs.link(existing, p)));
  }

  async unlink(parent: number, name: string): Promise<void> {
    const dir = this.table.get(parent);
    await this.at(dir, name, false, async (p) => {
      // Other names of a hard-linked file must keep finding this node.
      const target = await this.statOrNull(p);
      const survives = target !== null && survivesRemoval(target);
      await this.fs.unlink(p);
      this.table.forgetName(dir, name, survives);
    });
  }

  async rmdir(parent: number, name: string): Promise<void> {
    const dir = this.table.get(parent);
    await this.at(dir, name, false, async (p) => {
      const kept = await this.keepDir(dir, p);
      try {
        await this.fs.rmdir(p);
      } catch (err) {
        if (kept !== undefined) this.letGo(kept);
        throw err;
      }
      this.table.forgetName(dir, name);
    });
  }

  async rename(parent: number, name: string, newParent: number, newName: string, flag: RenameFlag): Promise<void> {
    const from = this.table.get(parent);
    const to = this.table.get(newParent);
    await this.at(from, name, false, (f) => this.at(to, newName, flag !== 'exchange', async (t) => {
      if (flag === 'exchange') {
        await this.fs.exchange(f, t);
        this.table.exchangeNames(from, name, to, newName);
        return;
      }
      const target = await this.statOrNull(t);
      const targetSurvives = target !== null && survivesRemoval(target);
      // A directory renamed over (an empty one) loses its last name like an rmdir.
      const kept = flag === null && target?.isDirectory() === true ? await this.keepDir(to, t) : undefined;
      try {
        await this.fs.rename(f, t, flag === 'noreplace');
      } catch (err) {
        if (kept !== undefined) this.letGo(kept);
        throw err;
      }
      this.table.moveName(from, name, to, newName, targetSurvives);
    }));
  }

  // ---- open files and directories --------------------------------------------------

  /**
   * Opens node `nodeid`'s object. With no name left: through a handle of its
   * own, borrowed (open of /proc/PID/fd/N of a program holding it), else
   * through the node's descriptor (a rename over its name or an unlink came
   * between the kernel's lookup and this open; natively the open succeeds).
   */
  async open(nodeid: number, flags: number, caller: Caller): Promise<{ node: Inode; res: OpenResult }> {
    const node = this.table.get(nodeid);
    const path = this.table.pathOf(node);
    const source = path === null ? this.lentHandle(node, false) : undefined;
    const res = await (source !== undefined
      ? this.borrow(source, this.fs.reopen(source, flags, caller))
      : path === null ? this.nodeDescriptor(node).then((fd) => this.fs.openDescriptor(fd, flags, caller)) : this.named(node, (o) => this.fs.open(o, flags, caller)));
    node.handles.add(res.handle);
    return { node, res };
  }

  /** Creates (or, without O_EXCL, opens) `name` in `parent`; the node is remembered and holds the handle. */
  async create(parent: number, name: string, mode: number, flags: number, caller: Caller): Promise<{ node: Inode; res: OpenResult }> {
    const dir = this.table.get(parent);
    const res = await this.at(dir, name, true, (p) => this.fs.create(p, mode, flags, caller));
    const node = this.table.remember(dir, name, res.stat.ino);
    node.handles.add(res.handle);
    return { node, res };
  }

  /** Closes file handle `handle` of `nodeid` (a release, or an open the kernel never got); the node goes when nothing holds it. */
  async release(nodeid: number, handle: number): Promise<void> {
    return this.closeHandle(nodeid, handle, 'handles', (h) => this.fs.release(h));
  }

  /** Opens directory node `nodeid` (no name left: through its descriptor). */
  async opendir(nodeid: number): Promise<number> {
    const node = this.table.get(nodeid);
    const handle = await this.byNode(node, (o) => this.fs.opendir(o), (fd) => this.fs.opendirOf(fd));
    node.dirHandles.add(handle);
    return handle;
  }

  async readdir(nodeid: number): Promise<DirEntryInfo[]> {
    return this.named(this.table.get(nodeid), (o) => this.fs.readdir(o));
  }

  /** Closes directory handle `handle` of `nodeid`, as release does a file handle. */
  async releasedir(nodeid: number, handle: number): Promise<void> {
    return this.closeHandle(nodeid, handle, 'dirHandles', (h) => this.fs.releasedir(h));
  }

  // ---- extended attributes ------------------------------------------------------------

  async setxattr(nodeid: number, name: string, value: Buffer, flags: number, caller: Caller): Promise<void> {
    return this.byNode(this.table.get(nodeid), (o) => this.fs.setxattr(o, name, value, flags, caller), (fd) => this.fs.setxattrOf(fd, name, value, flags, caller));
  }

  async getxattr(nodeid: number, name: string): Promise<Buffer> {
    return this.byNode(this.table.get(nodeid), (o) => this.fs.getxattr(o, name), (fd) => this.fs.getxattrOf(fd, name));
  }

  async listxattr(nodeid: number): Promise<string[]> {
    return this.byNode(this.table.get(nodeid), (o) => this.fs.listxattr(o), (fd) => this.fs.listxattrOf(fd));
  }

  async removexattr(nodeid: number, name: string): Promise<void> {
    return this.byNode(this.table.get(nodeid), (o) => this.fs.removexattr(o, name), (fd) => this.fs.removexattrOf(fd, name));
  }

  // ---- how a node's object is reached -----------------------------------------------------

  /**
   * Closes `handle` (one of the node's `kind`) once a request that borrowed
   * it (taken before it left the node) is done; then the node goes from the
   * table if nothing else holds it. A node the table no longer has still
   * gets its handle closed.
   */
  private async closeHandle(nodeid: number, handle: number, kind: 'handles' | 'dirHandles', close: (h: number) => Promise<void>): Promise<void> {
    const node = this.table.find(nodeid);
    node?.[kind].delete(handle);
    const lent = this.borrows.get(handle);
    if (lent !== undefined) await lent;
    try {
      await close(handle);
    } finally {
      if (node !== undefined) this.table.collect(node);
    }
  }

  /**
   * Before the directory node at `p` (a name in `dir`) may lose its
   * name: keeps a descriptor of it (keptDirs), when the table knows it as a
   * directory. Returns the node id it was kept for, if one was.
   */
  private async keepDir(dir: Inode, p: Place): Promise<number | undefined> {
    const node = dir.children.get(p.name);
    if (node === undefined || node.links.length !== 1 || this.keptDirs.has(node.nodeid)) return undefined;
    let fd: number;
    try {
      fd = await p.dir.open(p.name, O_PATH | C.O_DIRECTORY | C.O_NOFOLLOW);
    } catch {
      return undefined; // not a directory (or gone): the removal says what is wrong
    }
    this.keptDirs.set(node.nodeid, fd);
    return node.nodeid;
  }

  /** Closes the descriptor kept for `nodeid`, if any. */
  private letGo(nodeid: number): void {
    const fd = this.keptDirs.get(nodeid);
    if (fd === undefined) return;
    this.keptDirs.delete(nodeid);
    close(fd, () => {});
  }

  /** A create-like op made `name` in `parent` (its attributes from `make`, given the new name's place): remembered. */
  private async made(parent: number, name: string, make: (p: Place) => Promise<BigIntStats>): Promise<NewEntry> {
    const dir = this.table.get(parent);
    const st = await this.at(dir, name, true, make);
    return { node: this.table.remember(dir, name, st.ino), st };
  }

  /**
   * Runs `op` on the place of `name` in directory node `dir`: the directory
   * through the descriptor the mount keeps for its node; where there is none
   * (evicted from the mount's table, no FUSE thread), by the directory's
   * path, which the core opens for the op. A directory with no name left
   * (ENOENT, as natively for a name in it) or from before a swap (ESTALE) is
   * refused by its path first. `forCreate`: the name is to be made.
   */
  private async at<T>(dir: Inode, name: string, forCreate: boolean, op: (p: Place) => Promise<T>): Promise<T> {
    const path = this.table.childPath(dir, name);
    const rel = forCreate ? LocalStore.relativeForCreate(path) : LocalStore.relative(path);
    const layer = this.dirLayer(dir);
    if (layer === null) return this.fs.placed(path, forCreate, op);
    try {
      return await op({ dir: layer, name, rel });
    } finally {
      layer.close();
    }
  }

  /**
   * The local-object layer over a duplicate of the descriptor the mount keeps
   * for directory node `dir` (the caller closes it: StoreDir.close, at once,
   * not queued on the thread pool the request's own calls wait in; an O_PATH
   * close does no I/O. Measured with bench/mirror.ts op_latency, mirrored:
   * with an asynchronous close the median was 302 µs against 276 µs by
   * paths; closed at once, 281 µs against 303 µs, alternating runs), or null
   * when it keeps none.
   */
  private dirLayer(dir: Inode): StoreDir | null {
    const fd = dir.stale ? -1 : this.descriptors.descriptorOf(dir.nodeid);
    return fd < 0 ? null : new StoreDir(fd);
  }

  /** Attributes of an object: through an open handle when it has no name left. */
  private async attrsOf(node: Inode, fh: number): Promise<BigIntStats> {
    if (fh !== 0 && node.handles.has(fh)) return this.fs.fgetattr(fh);
    if (this.table.pathOf(node) !== null) return this.named(node, (o) => this.fs.getattr(o));
    const any = node.handles.values().next();
    if (!any.done) return this.fs.fgetattr(any.value);
    // A directory with no name left that a program still has open (the handle's own descriptor).
    const dir = node.dirHandles.values().next();
    if (!dir.done) return this.fs.fgetattrDir(dir.value);
    // No handle either (a rename over its name or an unlink came after the kernel's lookup): the node's descriptor.
    return this.fs.getattrOf(await this.nodeDescriptor(node));
  }

  /** The attributes of the object at `p` before a removal of that name, or null (the removal itself reports what is wrong). */
  private async statOrNull(p: Place): Promise<BigIntStats | null> {
    try {
      return await this.fs.getattr(placeEntry(p));
    } catch {
      return null;
    }
  }

  /**
   * `work` uses handle `h`, taken from another program for a request that
   * named no handle of its own (an object with no name left): the handle's
   * release waits for it (release, releasedir), so its descriptor is not
   * closed under the work. Until 2026-12-05 it could be: the work's fstat got
   * EBADF, which a truncating open (O_TRUNC) gave the program.
   */
  private borrow<T>(h: number, work: Promise<T>): Promise<T> {
    const all = Promise.allSettled([this.borrows.get(h), work]);
    this.borrows.set(h, all);
    void all.then(() => { if (this.borrows.get(h) === all) this.borrows.delete(h); });
    return work;
  }

  /**
   * An open file handle of `node` to act through for a request that names
   * none (the object has no name left): for a size change one open for
   * writing when there is one (ftruncate needs it), else any.
   */
  private lentHandle(node: Inode, writing: boolean): number | undefined {
    let any: number | undefined;
    for (const h of node.handles) {
      const e = this.fs.handles.get(h);
      if (e === undefined || e.kind !== 'file') continue;
      if (!writing || (e.flags & O_ACCMODE) !== C.O_RDONLY) return h;
      any ??= h;
    }
    return any;
  }

  /** Whether file handle `h` was opened read-only. */
  private readOnly(h: number): boolean {
    const e = this.fs.handles.get(h);
    return e !== undefined && e.kind === 'file' && (e.flags & O_ACCMODE) === C.O_RDONLY;
  }

  /**
   * `byName` with the node's object by name (named), or, when its last name
   * is gone (a rename over it or an unlink after the kernel's lookup),
   * `byDescriptor` with a descriptor of it (which it takes over).
   */
  private byNode<T>(node: Inode, byName: (o: Named) => Promise<T>, byDescriptor: (fd: number) => Promise<T>): Promise<T> {
    return this.table.pathOf(node) !== null ? this.named(node, byName) : this.nodeDescriptor(node).then(byDescriptor);
  }

  /**
   * Runs `op` on node `node`'s object by name: the name the table has for it,
   * relative to its directory node's descriptor (as the namespace ops reach
   * a name, at); the root as the store root's own; where the mount keeps no
   * descriptor of the directory, by the namespace path (from the store
   * root's descriptor). With no name left: ESTALE after a swap, else ENOENT.
   */
  private async named<T>(node: Inode, op: (o: Named) => Promise<T>): Promise<T> {
    if (node.nodeid === ROOT_NODEID) return op('/');
    const link = this.table.linkOf(node);
    if (link === null) return op(this.table.requirePath(node));
    const layer = this.dirLayer(link.parent);
    if (layer === null) return op(link.path);
    try {
      return await op({ at: layer.fd, path: link.name, rel: LocalStore.relative(link.path) });
    } finally {
      layer.close();
    }
  }

  /**
   * A descriptor of `node`'s object (the caller's to close), for a node with
   * no name left; ESTALE after a swap, ENOENT when the mount keeps none
   * (evicted, or a mount without the FUSE thread's node table).
   */
  private async nodeDescriptor(node: Inode): Promise<number> {
    const kept = node.stale ? undefined : this.keptDirs.get(node.nodeid);
    if (kept !== undefined) return native.openAt(native.AT_FDCWD, `/proc/self/fd/${kept}`, O_PATH);
    const fd = node.stale ? -1 : this.descriptors.descriptorOf(node.nodeid);
    // None: as before (ESTALE after a swap, else ENOENT).
    if (fd < 0) this.table.requirePath(node);
    if (fd < 0) throw new FsError('ENOENT', `node ${node.nodeid} has no name left and no descriptor in the node table`);
    return fd;
  }
}
