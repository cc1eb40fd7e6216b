// The filesystem core: every POSIX operation strata serves, acting on the local
// store with real syscalls. It knows nothing of FUSE: the adapter in src/fuse
// translates requests into these calls, and the unit tests call them directly.
//
// The namespace operations (create, mkdir, mknod, symlink, link, unlink,
// rmdir, rename, exchange, lookup) take a Place: a directory's descriptor and
// a name in it (the node layer, nodes.ts, passes its nodes' descriptors); the
// operations on an existing object by name take an ObjectAt: a path relative
// to a directory's descriptor (nodes.ts: its name in its directory node).
// Either may also be a namespace path ('/', '/a/b': the unit tests, a
// rollback): an object is then reached by its path relative to the store
// root's descriptor (the local-object layer, store.dir), and for a namespace
// operation the path's directory is opened first.
// Permission checks are the kernel's (the mount always uses
// default_permissions); the core runs as root and sets ownership explicitly.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { promisify } from 'node:util';
import { constants as C } from 'node:fs';
import { basename } from 'node:path';
import { FsError, isNoRoomError } from '../errors/errno.js';
import { HandleTable, type OpenFile, type OpenDir } from './handles.js';
import { callerInGroup } from './caller-groups.js';
import { dropHeldXattr } from '../store/held-xattrs.js';
import { LocalStore, RESERVED_NAME } from '../store/local-store.js';
import { StoreDir } from '../store/store-dir.js';
import * as native from '../native/index.js';
import type { TimeSpec } from '../native/index.js';
import type { ChangeSink } from '../ports/change-sink.js';
import type { ObjectAt, RestoreHooks } from '../ports/restore-hooks.js';
import { parentRelOf, placeDir, placeEntry, type Place } from './place.js';
import type { ChangeGuard, GuardTarget } from '../ports/change-guard.js';
import { attrsFromStat, timeFromNs, MAX_WRITE_BYTES, ROOT_ID, type Attrs, type ObjectId, type Time } from '../protocol/records.js';
import { isPrivateXattr, isXattrSpaceFull, newObjectId, readObjectId, writeObjectId } from '../store/object-ids.js';
import { ACL_ACCESS, ACL_DEFAULT, aclAt, aclOfFd, inheritedAcls, isAclXattr } from '../store/posix-acl.js';
import { truncateFd } from '../store/fd-io.js';

/** The process on whose behalf an operation runs (from the FUSE request). */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  /**
   * A create, mkdir or mknod's umask, when the mount enforces POSIX ACLs (the
   * kernel then leaves it to strata: applied unless the parent directory has
   * a default ACL). Absent or 0: nothing to apply (the kernel did).
   */
  umask?: number;
}

/** One directory entry: its name, type bits (S_IFMT part of a mode) and inode number. */
export interface DirEntryInfo {
  name: string;
  mode: number;
  ino: bigint;
}

/**
 * One object as setattr and the xattr operations reach it: by store path, or
 * through a descriptor of it (an open file's or directory's, or an O_PATH one
 * of a node with no name left). Each operation is written once against this.
 */
interface StoreObject {
  target: GuardTarget;
  /** It by name (a path relative to a directory's descriptor); null when reached through a descriptor of its own. */
  named: ObjectAt | null;
  /** The descriptor it is reached through, if any (for shown). */
  fd?: number;
  set(name: string, value: Buffer, flags: number): Promise<void>;
  remove(name: string): Promise<void>;
  /** An ACL attribute, or null for none. */
  acl(name: string): Promise<Buffer | null>;
  stat(): Promise<fs.BigIntStats>;
  /** Attributes read as a record is appended (synchronously: nothing comes between). */
  statNow(): fs.BigIntStats;
  chmod(mode: number): Promise<void>;
  /** -1 leaves the uid or gid as it is; never follows a symbolic link. */
  chown(uid: number, gid: number): Promise<void>;
  truncate(size: number): Promise<void>;
  /** Never follows a symbolic link. */
  utimens(atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  /** A descriptor of it that reads (the restore's fetch writes through it); the caller closes it. */
  openToRead(): Promise<number>;
  /** What the restore is told is about to change (RestoreHooks.changing). */
  restoreRef: number | ObjectAt;
  id(): Promise<ObjectId | null>;
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
  /** The object's id when the store is mirrored (null: not mirrored, or it has none). */
  id: ObjectId | null;
  /** All of the file's data is in the store (not waiting for an unfinished restore). */
  local: boolean;
}

/** What a setattr changes; absent fields stay as they are. */
export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeSpec;
  mtime?: TimeSpec;
  /**
   * After the other changes, drop the set-ID bits of a regular file as a
   * truncation by this caller (without CAP_FSETID) does natively
   * (setIdDropFor): handle_killpriv_v2, where the kernel leaves it to strata.
   */
  dropSetId?: Caller;
}

/**
 * The object a setattr acts on: through an open handle, by path, or through
 * `descriptor`, a descriptor of a node with no name left (an O_PATH one will
 * do), which the setattr takes over and closes (see getattrOf).
 */
export type ObjectRef = { handle: number } | { path: Named } | { descriptor: number };

/** A name a namespace operation acts on: a Place, or a namespace path ('/a/b'; its directory is opened for the operation). */
export type Where = Place | string;

/** An existing object by name: relative to a directory's descriptor (ObjectAt), or a namespace path ('/a/b', from the store root's). */
export type Named = ObjectAt | string;

/** A change of names, as the core prepares for it (Filesystem.beforeNames). */
interface NameChange {
  /** The directories whose entries change (the source's first for a rename). */
  dirs: ObjectAt[];
  /** The entry the change removes or replaces, if any: in the last of `dirs`. */
  removes?: ObjectAt;
  /** `removes` may be a directory that goes: it must be empty (rmdir, a rename over a directory). */
  emptied?: boolean;
  /** Bytes the record takes beyond a namespace change's (a symlink's target). */
  extraBytes?: number;
  /** The change takes no room on the store (a removal, a rename): taken while the store's disk is full (ChangeSink.admit). */
  takesNoRoom?: boolean;
}

/** After a fetch for a read found no room in the store, reads go to the archive directly this long before a fetch is tried again. */
const NO_ROOM_RETRY_MS = 1000;

/** Bytes a record of a namespace or attribute change takes, for the journal bound. */
const META_RECORD_BYTES = 512;
/**
 * Fault injection for the semantics test of a stat during another program's
 * write: a write (through the core) waits this long after the store has it
 * and before it returns (its reply), as a slow journal would.
 */
const WRITE_STALL_MS = Number(process.env['STRATA_WRITE_STALL_MS'] ?? 0);

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
/**
 * Never O_APPEND either: a program may clear or set it with fcntl after its
 * open, which the store's descriptor would not learn; each write says whether
 * it appends (write's `append`, native.appendWrite).
 */
const OPEN_STRIP = C.O_CREAT | C.O_EXCL | C.O_NOCTTY | (C.O_DIRECT ?? 0) | C.O_APPEND;
/** A create keeps O_EXCL (and gets O_CREAT); the rest goes as for an open. */
const CREATE_STRIP = OPEN_STRIP & ~(C.O_CREAT | C.O_EXCL);
const OPEN_CLOEXEC = 0o2000000;
/** O_PATH (Linux; node:fs does not export it). */
const O_PATH = 0o10000000;
/** Flags every backing open by name gets: never follow a symlink, never leak into children. */
const OPEN_ADD = C.O_NOFOLLOW | OPEN_CLOEXEC;

export class Filesystem {
  readonly handles = new HandleTable();
  private readonly daemonUid = process.geteuid?.() ?? 0;
  private readonly daemonGid = process.getegid?.() ?? 0;

  /**
   * `sink` receives a record of every change applied to the store (the
   * mirror's journal); null when the store is not mirrored.
   */
  constructor(readonly store: LocalStore, private changeSink: ChangeSink | null = null, private restore: RestoreHooks | null = null) {}

  /** Where applied changes go (the mirror), or null. */
  get sink(): ChangeSink | null {
    return this.changeSink;
  }

  /** A swap handed the store's mirroring over to the new store's mirror (src/swap). */
  setSink(sink: ChangeSink): void {
    this.changeSink = sink;
  }

  /**
   * Asked before every change to the store (checkpoints: src/checkpoint);
   * null when nothing needs to know. Set by the daemon.
   */
  guard: ChangeGuard | null = null;

  /** A restore is under way: some names and data are still in the archive. */
  get restoring(): boolean {
    return this.restore !== null;
  }

  /**
   * The store was swapped (src/swap): files opened before keep their
   * descriptors (they read and write the old file, now outside the tree, as
   * after a rename away) and no longer send changes to the sink.
   */
  detachOpenFiles(): void {
    this.handles.mapFiles((f) => ({ ...f, id: null, dirty: false, remote: false }));
  }

  /**
   * After detachOpenFiles: the files open now (of the old store) are guarded
   * by `guard` (the old store's checkpoints, which stay with it) or by
   * nothing, never by the new store's. `onAllClosed` runs once the last of
   * them is released (at once when there is none). A file detached by an
   * earlier swap keeps the guard it has.
   */
  guardDetachedFiles(guard: ChangeGuard | null, onAllClosed: () => void): void {
    let n = 0;
    this.handles.mapFiles((f) => {
      if (f.guard !== undefined) return f;
      if (guard !== null) n++;
      return { ...f, guard };
    });
    // The same guard may still guard files of an earlier swap (its store was live again in between): one count for all of them.
    const prev = guard !== null ? this.detachedLeft.get(guard) : undefined;
    if (prev !== undefined) {
      this.detachedLeft.set(guard!, { n: prev.n + n, onAllClosed: () => { prev.onAllClosed(); onAllClosed(); } });
      return;
    }
    if (n === 0) { onAllClosed(); return; }
    this.detachedLeft.set(guard!, { n, onAllClosed });
  }

  /** Files detached by a swap stop being guarded by `guard` (its store is being emptied: swap discard). */
  unguardDetachedFiles(guard: ChangeGuard): void {
    this.handles.mapFiles((f) => (f.guard === guard ? { ...f, guard: null } : f));
    const left = this.detachedLeft.get(guard);
    this.detachedLeft.delete(guard);
    left?.onAllClosed();
  }

  private readonly detachedLeft = new Map<ChangeGuard, { n: number; onAllClosed: () => void }>();

  /** What guards changes through an open file: the store's guard, or the old store's for a file opened before a swap. */
  private guardOf(f: OpenFile): ChangeGuard | null {
    return f.guard !== undefined ? f.guard : this.guard;
  }

  /** The restore is finished (or was never needed): no op asks it anything any more. */
  restoreFinished(): void {
    this.restore = null;
  }

  // ---- attributes -------------------------------------------------------

  async getattr(named: Named): Promise<fs.BigIntStats> {
    const o = this.named(named);
    return this.shown(await this.layer(o).lstat(o.path), o, null);
  }

  /**
   * Attributes of an object whose last name is gone (a rename over it, an
   * unlink) and that nothing here holds open, through `pathFd`, a descriptor
   * of it (O_PATH will do), which this takes over and closes. The kernel may
   * still ask for such a node it looked up before; natively the answer is
   * the object's, not ENOENT.
   */
  async getattrOf(pathFd: number): Promise<fs.BigIntStats> {
    return this.closingAfter(pathFd, async () => {
      const st = await fstatOf(pathFd);
      return this.shown(st, null, null, pathFd);
    });
  }

  /** Attributes of the entry `where` names, once its directory's entries are in the store. */
  async lookup(where: Where): Promise<fs.BigIntStats> {
    return (await this.attrsSettled(where, true)).st;
  }

  /**
   * getattr (or, with `lookup`, lookup: the restore is asked for the entry
   * first) of the name `where`, and whether the object is settled
   * (RestoreHooks.settled): the store's own attributes are what a program
   * sees, so that the FUSE thread may answer for it. Always settled but the
   * root when no restore is under way.
   */
  async attrsSettled(where: Where, lookup: boolean): Promise<{ st: fs.BigIntStats; settled: boolean }> {
    if (typeof where === 'string') {
      if (!lookup || LocalStore.relative(where) === '.') return this.attrsSettledOf(where);
      return this.placed(where, false, (p) => this.attrsSettled(p, lookup));
    }
    if (lookup && this.restore !== null) await this.restore.child(placeDir(where), where.name);
    return this.attrsSettledOf(placeEntry(where));
  }

  /** attrsSettled of the existing object `named` (a getattr). */
  async attrsSettledOf(named: Named): Promise<{ st: fs.BigIntStats; settled: boolean }> {
    const obj = this.named(named);
    const rel = obj.rel;
    const raw = await this.layer(obj).lstat(obj.path);
    const restore = this.restore;
    const before = [raw.nlink, raw.size, raw.atimeNs, raw.mtimeNs, raw.ctimeNs, raw.mode];
    // Both at once (no extra wait behind the restore's I/O): settled() reads
    // what it needs of `raw` before shown() may change it.
    const [settled, st] = await Promise.all([
      rel !== '.' && restore !== null ? restore.settled(obj, raw) : Promise.resolve(rel !== '.'),
      this.shown(raw, obj, null),
    ]);
    // Settled means shown as stored: anything else is answered here.
    const same = settled && [st.nlink, st.size, st.atimeNs, st.mtimeNs, st.ctimeNs, st.mode].every((v, i) => v === before[i]);
    return { st, settled: same };
  }

  async fgetattr(handle: number): Promise<fs.BigIntStats> {
    const f = this.file(handle);
    return this.shown(await fstatOf(f.fd), null, f.id, f.fd);
  }

  /**
   * Attributes as programs see them: the store root does not count the
   * private directory among its subdirectories, and during a restore link
   * counts include the names still only in the archive.
   */
  private async shown(st: fs.BigIntStats, obj: ObjectAt | null, id: ObjectId | null, fd?: number): Promise<fs.BigIntStats> {
    if (obj?.rel === '.' && st.nlink > 2n) st.nlink -= 1n;
    return this.restore ? this.restore.shownStat(st, obj, id, fd) : st;
  }

  /** The object at store-relative `rel`, reached from the store root's descriptor. */
  private inStore(rel: string): ObjectAt {
    return { at: this.dir.fd, path: rel, rel };
  }

  /** `named` as an ObjectAt (a namespace path: from the store root's descriptor). */
  private named(named: Named): ObjectAt {
    return typeof named === 'string' ? this.inStore(this.existing(named)) : named;
  }

  /** The local-object layer `o`'s path is relative to. */
  private layer(o: ObjectAt): StoreDir {
    return o.at === this.dir.fd ? this.dir : new StoreDir(o.at);
  }

  /**
   * Applies the changes of one FUSE setattr in order (mode, owner, size,
   * times) and returns the resulting attributes; records them as one change.
   */
  async setattr(ref: ObjectRef, ch: SetattrChanges): Promise<fs.BigIntStats> {
    if ('descriptor' in ref) {
      const pathFd = ref.descriptor;
      return this.closingAfter(pathFd, async () => {
        // A file or directory through a descriptor that reads (the restore's hooks, which may put times back,
        // and the f* calls need one; O_PATH will not do). Other kinds have no data and no times records.
        const st = await fstatOf(pathFd);
        if (!st.isFile() && !st.isDirectory()) return this.setattrObject(this.objectOf(pathFd, false), null, ch);
        const fd = await this.dir.reopen(pathFd, C.O_RDONLY | OPEN_CLOEXEC);
        const o = this.objectOf(fd, true);
        // It reads only: a size is set through the O_PATH one (truncate opens it for writing).
        return this.closingAfter(fd, () => this.setattrObject({ ...o, truncate: this.objectOf(pathFd, false).truncate }, null, ch));
      });
    }
    const f = 'handle' in ref ? this.file(ref.handle) : null;
    return this.setattrObject(f ? this.objectOfOpen(f.fd, f.id) : this.objectAt(this.named((ref as { path: Named }).path)), f, ch);
  }

  /** setattr of `o`, reached through the open file `f` when given: its one body for every way of reaching an object. */
  private async setattrObject(o: StoreObject, f: OpenFile | null, ch: SetattrChanges): Promise<fs.BigIntStats> {
    // Owner, mode, times and size take no room on the store (a size past the end is a hole).
    if (this.sink) await this.sink.admit(META_RECORD_BYTES, true);
    // The object's id, read once (the namespace lock keeps a path on it); only what records or restores needs it.
    const id = f ? f.id : this.sink || this.restore ? await o.id() : null;
    // A pending directory's entries come first (they would move its times afterwards).
    if (o.named !== null) await this.localEntries(o.named);
    const restoreId = this.restore ? id : null;
    if (restoreId !== null) await this.restore!.changing(restoreId, o.restoreRef);
    if (this.restore && ch.size !== undefined) await this.beforeSizeChange(f, o, id, ch.size);
    // New times while no fetch writes into the file (a fetch puts the file's times back after its bytes,
    // and put them over the program's: recover-model, 2026-12-05). A size change has its own order (beforeSizeChange).
    if (restoreId !== null && ch.size === undefined && (ch.atime !== undefined || ch.mtime !== undefined)) {
      return this.restore!.exclusive(restoreId, () => this.applySetattr(o, f, id, ch));
    }
    return this.applySetattr(o, f, id, ch);
  }

  /** setattr's changes to `o`, whose id is `id` (null: not tracked), applied and recorded. */
  private async applySetattr(o: StoreObject, f: OpenFile | null, id: ObjectId | null, ch: SetattrChanges): Promise<fs.BigIntStats> {
    const guard = f ? this.guardOf(f) : this.guard;
    if (guard) {
      await guard.attrs(o.target);
      if (ch.size !== undefined) await guard.size(o.target, ch.size);
    }
    if (ch.mode !== undefined) await o.chmod(ch.mode & 0o7777);
    if (ch.uid !== undefined || ch.gid !== undefined) await o.chown(...chownIds(ch));
    if (ch.size !== undefined) {
      const size = ch.size;
      if (this.restore && size === 0 && id !== null) {
        // During a restore a cut to 0 is restore.cut: no fetch of the file writes between the cut and the discard.
        // The map goes only after the cut: had it gone first, a crash before the cut would leave a stub that reads
        // as zeros and is taken for local (and shipped so).
        await this.restore.cut(id, () => o.truncate(0));
        if (f !== null) f.remote = false;
      } else {
        await o.truncate(size);
      }
    }
    if (ch.dropSetId !== undefined) {
      const st = await o.stat();
      const drop = await setIdDropFor(st, ch.dropSetId);
      if (drop !== 0) await o.chmod(Number(st.mode) & 0o7777 & ~drop);
    }
    if (ch.atime !== undefined || ch.mtime !== undefined) await o.utimens(ch.atime ?? 'omit', ch.mtime ?? 'omit');
    if (!this.sink || id === null) return this.shown(await o.stat(), o.named, id, o.fd);
    // A chmod rewrote the access ACL's mask too, when the object has one: recorded after the mode.
    const acl = ch.mode === undefined ? null : await o.acl(ACL_ACCESS);
    if (f) f.dirty = false;
    // Recorded: the attributes are read as the record is appended (attrsNow), and answered from that one read.
    const st = o.statNow();
    const seq = this.sink.append({ op: 'setattr', id, attrs: attrsFromStat(st) });
    await this.sink.committed(this.appendAcls(seq, id, acl === null ? [] : [[ACL_ACCESS, acl]]));
    return this.shown(st, o.named, id, o.fd);
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.setattr({ path }, { mode });
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.setattr({ path }, { uid, gid });
  }

  async utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    await this.setattr({ path }, { atime, mtime });
  }

  async fchmod(handle: number, mode: number): Promise<void> {
    await this.setattr({ handle }, { mode });
  }

  async fchown(handle: number, uid: number, gid: number): Promise<void> {
    await this.setattr({ handle }, { uid, gid });
  }

  async futimens(handle: number, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    await this.setattr({ handle }, { atime, mtime });
  }

  async truncate(path: string, size: number): Promise<void> {
    await this.setattr({ path }, { size });
  }

  async ftruncate(handle: number, size: number): Promise<void> {
    await this.setattr({ handle }, { size });
  }

  async access(named: Named, mode: number): Promise<void> {
    const o = this.named(named);
    await this.layer(o).access(o.path, mode);
  }

  async statfs(): Promise<StatfsResult> {
    const s = await this.dir.statfs();
    return {
      bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
      files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255,
    };
  }

  // ---- namespace --------------------------------------------------------

  /**
   * Resolves once the entries of each directory in `dirs` are in the store:
   * before a listing, a change of names in it (beforeNames), or of a
   * directory's own attributes (its entries would move its times after).
   * With attrsSettled's ask for one entry at a lookup, the only places the
   * core asks an unfinished restore for names. A no-op when no restore is
   * under way or the directories are restored.
   */
  private async localEntries(...dirs: ObjectAt[]): Promise<void> {
    if (this.restore === null) return;
    await Promise.all(dirs.map((d) => this.restore!.entries(d)));
  }

  /**
   * Before a change of names (create, mkdir, mknod, symlink, link, unlink,
   * rmdir, rename, exchange), in this order: the directories' entries are in
   * the store (until then the names are the archive's to say), and with
   * `emptied` also those of the directory `removes` names (after its
   * parent's: whether it is empty is the archive's to say too); the journal
   * has room for the record; the checkpoint guard has saved each directory,
   * and the entry the change removes or replaces with the last of them.
   */
  private async beforeNames(c: NameChange): Promise<void> {
    await this.localEntries(...c.dirs);
    if (c.emptied && c.removes !== undefined) await this.localEntries(c.removes);
    if (this.sink) await this.sink.admit(META_RECORD_BYTES + (c.extraBytes ?? 0), c.takesNoRoom === true);
    if (this.guard) {
      for (let i = 0; i < c.dirs.length; i++) await this.guard.names(c.dirs[i]!.rel, i === c.dirs.length - 1 ? c.removes?.rel : undefined);
    }
  }

  /**
   * Runs `op` on the place `where` names: a Place as it is; for a namespace
   * path, its directory opened (O_PATH) from the store root for the
   * operation (a missing one: ENOENT, as natively), and closed after.
   * `forCreate`: the name is about to be made (strata's reserved name is
   * refused with EPERM, not ENOENT).
   */
  async placed<T>(where: Where, forCreate: boolean, op: (p: Place) => Promise<T>): Promise<T> {
    if (typeof where !== 'string') return op(where);
    const rel = forCreate ? LocalStore.relativeForCreate(where) : LocalStore.relative(where);
    // The root has no directory of its own: its place is itself (every name-changing op on it fails, as natively).
    if (rel === '.') return op({ dir: this.dir, name: '.', rel });
    const dir = new StoreDir(await this.dir.open(parentRelOf(rel), O_PATH | C.O_DIRECTORY));
    try {
      return await op({ dir, name: basename(rel), rel });
    } finally {
      dir.close();
    }
  }

  /** Creates a directory owned by the caller; returns its attributes. */
  async mkdir(where: Where, mode: number, caller: Caller): Promise<fs.BigIntStats> {
    return this.placed(where, true, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)] });
      const inherits = await this.inheritsAcl(p, caller);
      await p.dir.mkdir(p.name, this.creationMode(mode, caller, inherits) & 0o7777);
      if (this.guard) await this.guard.created(p.rel);
      await this.own(p, caller, true);
      return this.recordCreated(p, undefined, inherits);
    });
  }

  /** Creates a fifo, socket or device node owned by the caller; returns its attributes. */
  async mknod(where: Where, mode: number, dev: number, caller: Caller): Promise<fs.BigIntStats> {
    return this.placed(where, true, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)] });
      const inherits = await this.inheritsAcl(p, caller);
      await p.dir.mknod(p.name, this.creationMode(mode, caller, inherits), dev);
      if (this.guard) await this.guard.created(p.rel);
      await this.own(p, caller, true);
      return this.recordCreated(p, undefined, inherits);
    });
  }

  async symlink(target: string, where: Where, caller: Caller): Promise<fs.BigIntStats> {
    return this.placed(where, true, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)], extraBytes: target.length });
      await p.dir.symlink(target, p.name);
      if (this.guard) await this.guard.created(p.rel);
      await this.own(p, caller, true);
      return this.recordCreated(p, target);
    });
  }

  /** Gives the object `existingNamed` names the name `where`; returns its attributes. */
  async link(existingNamed: Named, where: Where): Promise<fs.BigIntStats> {
    const existing = this.named(existingNamed);
    let placed = false;
    return this.placed(where, true, async (p) => {
      placed = true;
      await this.beforeNames({ dirs: [placeDir(p)] });
      await this.layer(existing).link(existing.path, p.name, p.dir);
      const obj = placeEntry(p);
      if (!this.sink) return this.shown(await p.dir.lstat(p.name), obj, null);
      const [st, id, parent] = await Promise.all([p.dir.lstat(p.name), readObjectId(p.name, p.dir.fd), this.parentOf(p)]);
      if (id !== null) {
        await this.sink.committed(this.sink.append({ op: 'link', parent: parent.id, name: p.name, id, parentMtime: parent.mtime }));
      }
      return this.shown(st, obj, id);
    }).catch(async (err: unknown) => {
      // linkat looks the source up whole before the new name's directory: its error comes first.
      if (!placed) await this.layer(existing).lstat(existing.path);
      throw err;
    });
  }

  async unlink(where: Where): Promise<void> {
    return this.placed(where, false, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)], removes: placeEntry(p), takesNoRoom: true });
      await p.dir.unlink(p.name);
      await this.recordRemoved('unlink', p);
    });
  }

  async rmdir(where: Where): Promise<void> {
    return this.placed(where, false, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)], removes: placeEntry(p), emptied: true, takesNoRoom: true });
      await p.dir.rmdir(p.name);
      await this.recordRemoved('rmdir', p);
    });
  }

  /** rename(2); `noReplace`: renameat2's RENAME_NOREPLACE (EEXIST when `to` exists, nothing changed). */
  async rename(from: Where, to: Where, noReplace = false): Promise<void> {
    return this.placed(from, false, (f) => this.placed(to, true, async (t) => {
      // A directory the rename replaces must be empty.
      await this.beforeNames({ dirs: [placeDir(f), placeDir(t)], removes: placeEntry(t), emptied: true, takesNoRoom: true });
      await f.dir.rename(f.name, t.name, noReplace, t.dir);
      await this.recordMoved('rename', f, t);
    }));
  }

  /**
   * renameat2(RENAME_EXCHANGE): the objects named `a` and `b` swap names,
   * atomically (ENOENT when either is missing; EINVAL when a directory would
   * go into its own subtree). Nothing is removed.
   */
  async exchange(a: Where, b: Where): Promise<void> {
    return this.placed(a, false, (pa) => this.placed(b, false, async (pb) => {
      await this.beforeNames({ dirs: [placeDir(pa), placeDir(pb)], takesNoRoom: true });
      await pa.dir.exchange(pa.name, pb.name, pb.dir);
      await this.recordMoved('exchange', pa, pb);
    }));
  }

  /** Records a rename or an exchange of `from` and `to` (done). */
  private async recordMoved(op: 'rename' | 'exchange', from: Place, to: Place): Promise<void> {
    if (!this.sink) return;
    const [p, np] = await Promise.all([this.parentOf(from), this.parentOf(to)]);
    await this.sink.committed(this.sink.append({
      op, parent: p.id, name: from.name, newParent: np.id, newName: to.name, parentMtime: p.mtime, newParentMtime: np.mtime,
    }));
  }

  async readlink(named: Named): Promise<string> {
    const o = this.named(named);
    return this.layer(o).readlink(o.path);
  }

  /** readlink of a symbolic link whose last name is gone, through `pathFd` (taken over and closed; see getattrOf). */
  async readlinkOf(pathFd: number): Promise<string> {
    return this.closingAfter(pathFd, () => native.readlinkAt(pathFd, ''));
  }

  // ---- files --------------------------------------------------------------

  /**
   * Opens an existing object. With `caller`, an O_TRUNC open by an unprivileged
   * caller drops the set-ID bits as the kernel would (setIdDropFor: the
   * kernel leaves O_TRUNC to strata, atomic_o_trunc, and the daemon truncates
   * as root, which keeps them).
   */
  async open(named: Named, flags: number, caller?: Caller): Promise<OpenResult> {
    const o = this.named(named);
    // The id (for the records of writes and setattrs through this handle) is read alongside the open.
    const idRead = this.sink || this.restore ? this.idOf(o).catch(() => null) : Promise.resolve(null);
    return this.openObject({ rel: o.rel }, idRead, (f) => this.layer(o).open(o.path, f | OPEN_ADD, 0), flags, caller);
  }

  /**
   * Opens again a file whose last name is gone, through the descriptor of
   * `source`, one of its open handles: what open(2) of /proc/PID/fd/N of a
   * program holding it gives natively (the kernel asks for the node, which
   * has no path left to open by).
   */
  async reopen(source: number, flags: number, caller?: Caller): Promise<OpenResult> {
    const f = this.file(source);
    // Opened before a swap: the object is the old store's.
    if (f.guard !== undefined) throw new FsError('ENOENT', 'the file has no name left and belongs to the store before a swap');
    const fd = f.fd;
    return this.openObject({ fd }, Promise.resolve(f.id), (fl) => this.dir.reopen(fd, fl | OPEN_CLOEXEC), flags, caller);
  }

  /**
   * Opens a file whose last name is gone through `pathFd`, a descriptor of the
   * object (an O_PATH one will do), which this takes over and closes: the node
   * the kernel looked up just before a rename over its name, or an unlink,
   * that no program holds open here (natively the open succeeds: the kernel
   * holds the inode).
   */
  async openDescriptor(pathFd: number, flags: number, caller?: Caller): Promise<OpenResult> {
    return this.closingAfter(pathFd, async () => {
      // A descriptor that reads: the id's xattr and a checkpoint's saves go through it.
      const fd = await this.dir.reopen(pathFd, C.O_RDONLY | OPEN_CLOEXEC);
      return this.closingAfter(fd, () => {
        const idRead = this.sink || this.restore ? readObjectId('', fd).catch(() => null) : Promise.resolve(null);
        return this.openObject({ fd }, idRead, (fl) => this.dir.reopen(fd, fl | OPEN_CLOEXEC), flags, caller);
      });
    });
  }

  /** open, reopen and openDescriptor: `openWith` opens the object with the flags it is given. */
  private async openObject(target: GuardTarget, idRead: Promise<ObjectId | null>, openWith: (flags: number) => Promise<number>, flags: number, caller?: Caller): Promise<OpenResult> {
    const truncates = (flags & C.O_TRUNC) !== 0 && (flags & 3 /* O_ACCMODE */) !== C.O_RDONLY;
    // A read-only (fenced) mount refuses an open for writing, as a read-only ext4 does.
    if (this.sink && (flags & 3 /* O_ACCMODE */) !== C.O_RDONLY) this.sink.writable?.();
    if (this.sink && truncates) await this.sink.admit(META_RECORD_BYTES, true);
    if (this.guard && truncates) {
      await this.guard.attrs(target);
      await this.guard.size(target, 0);
    }
    const openIt = (): Promise<number> => openWith(flags & ~OPEN_STRIP);
    // During a restore an O_TRUNC open is a cut (restore.cut): no fetch of the file writes between it and the discard.
    const cutId = this.restore && truncates ? await idRead : null;
    const fd = await (cutId !== null ? this.restore!.cut(cutId, openIt) : openIt()).catch(async (err: unknown) => {
      await idRead;
      throw err;
    });
    if (truncates && caller !== undefined && caller.uid !== 0) {
      try {
        await dropSetIdBits(fd, caller);
      } catch (err) {
        fs.close(fd, () => {});
        throw err;
      }
    }
    const res = await this.registerFile(fd, flags, await idRead);
    const id = res.id;
    if (this.restore && id !== null && res.stat.isFile() && !truncates) {
      if (await this.restore.isRemote(id).catch(async (err: unknown) => { await this.release(res.handle); throw err; })) {
        this.file(res.handle).remote = true;
        res.local = false;
      }
    }
    if (this.sink && truncates && id !== null) {
      await this.sink.committed(this.sink.append({ op: 'setattr', id, attrs: attrsNow(res.fd) }));
    }
    return res;
  }

  async create(where: Where, mode: number, flags: number, caller: Caller): Promise<OpenResult> {
    return this.placed(where, true, async (p) => {
      await this.beforeNames({ dirs: [placeDir(p)] });
      const inherits = await this.inheritsAcl(p, caller);
      const fd = await p.dir.open(p.name, (flags & ~CREATE_STRIP) | C.O_CREAT | OPEN_ADD, this.creationMode(mode, caller, inherits) & 0o7777);
      if (this.guard) await this.guard.created(p.rel);
      try {
        await this.own(p, caller, false, fd);
      } catch (err) {
        fs.close(fd, () => {});
        throw err;
      }
      // The kernel only sends create for a name it knows is absent, and strata
      // is the only writer of its store: the file is new.
      if (!this.sink) return { ...(await this.registerFile(fd, flags, null)), created: true };
      const id = newObjectId();
      const [res, parent, acls] = await Promise.all([
        this.registerFile(fd, flags, id),
        this.parentOf(p),
        inherits ? inheritedAcls(p.dir, p.name, false) : [],
        writeObjectId(p.name, id, p.dir.fd),
      ]);
      const seq = this.sink.append({
        op: 'create', parent: parent.id, name: p.name, id, attrs: attrsFromStat(res.stat), parentMtime: parent.mtime,
      });
      await this.sink.committed(this.appendAcls(seq, id, acls));
      return { ...res, created: true };
    });
  }

  /**
   * Runs `change` (a write into the store, admitted with `recordBytes` for
   * its record); when it meets a full disk that the sink's own records may
   * be filling (a mirrored store's journal, whose records go once the
   * archive has them), runs it again each time the sink says some of their
   * room came back, admitted again first: the record's room is made before
   * the data takes what came back (else the data took it, and the record
   * then waited in memory with no room to be written: a kernel's write-back
   * of a whole file at close did that). Otherwise the ENOSPC is the
   * program's, as natively.
   */
  private async withRoom<T>(recordBytes: number, change: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await change();
      } catch (err) {
        const sink = this.sink;
        if (!isNoRoomError(err) || sink?.waitForRoom === undefined || !(await sink.waitForRoom())) throw err;
        await sink.admit(recordBytes);
      }
    }
  }

  /** Until then (performance.now()), reads of files still in the archive are answered through it without a fetch: the store had no room. */
  private noRoomUntil = 0;

  async read(handle: number, buf: Buffer, length: number, position: number): Promise<number> {
    const f = this.file(handle);
    if (f.remote && this.restore && f.id !== null) {
      // The store had no room a moment ago: straight from the archive, not fetched (and refused) twice.
      if (performance.now() < this.noRoomUntil) return this.restore.readThrough(f.id, f.fd, buf, length, position);
      try {
        f.remote = await this.restore.fetchRange(f.id, f.fd, position, length);
      } catch (err) {
        // No room in the store for the blocks: the read is answered from the archive all the same (a read never needs room).
        if (!isNoRoomError(err)) throw err;
        this.noRoomUntil = performance.now() + NO_ROOM_RETRY_MS;
        return this.restore.readThrough(f.id, f.fd, buf, length, position);
      }
    }
    return new Promise((resolve, reject) => {
      fs.read(f.fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  /**
   * Writes through an open handle. `dropSetId`: the writer, when it has no
   * CAP_FSETID and the kernel left dropping set-ID bits to strata
   * (handle_killpriv_v2, or without it what the kernel's FUSE rule leaves);
   * they go before the write, as the kernel drops them. `onDropped` runs when
   * bits went. `append`: the program's file is O_APPEND (and the kernel keeps
   * no size of its own: no writeback cache), so the bytes go at the store
   * file's end, atomically, which `position` (the kernel's idea of the size)
   * may not be when another handle truncated the file meanwhile; they are
   * recorded where they landed.
   */
  async write(handle: number, buf: Buffer, length: number, position: number, dropSetId?: Caller, onDropped?: () => void, append = false): Promise<number> {
    const f = this.file(handle);
    if (this.sink) await this.sink.admit(length + 128);
    const guard = this.guardOf(f);
    if (dropSetId !== undefined && await this.dropSetIdOf(f, dropSetId)) onDropped?.();
    if (guard) await guard.data({ fd: f.fd }, position, length);
    let landed = position;
    const doWrite = append
      ? async (): Promise<number> => {
        const r = await native.appendWrite(f.fd, buf, length);
        landed = r.offset;
        return r.written;
      }
      : (): Promise<number> => new Promise<number>((resolve, reject) => {
        fs.write(f.fd, buf, 0, length, position, (err, written) => (err ? reject(err) : resolve(written)));
      });
    const roomy = (): Promise<number> => this.withRoom(length + 128, doWrite);
    const n = f.remote && this.restore && f.id !== null ? await this.restore.write(f.id, f.fd, position, length, roomy) : await roomy();
    if (WRITE_STALL_MS > 0) await new Promise((resolve) => setTimeout(resolve, WRITE_STALL_MS));
    if (this.sink && f.id !== null && n > 0) {
      let seq = 0;
      for (let off = 0; off < n; off += MAX_WRITE_BYTES) {
        seq = this.sink.append({ op: 'write', id: f.id, offset: landed + off, data: buf.subarray(off, Math.min(n, off + MAX_WRITE_BYTES)) });
      }
      // Size and mtime follow in a setattr at flush, fsync or release.
      f.dirty = true;
      await this.sink.committed(seq);
    }
    return n;
  }

  /**
   * A write the FUSE thread applied to the store itself through `handle`'s
   * descriptor (journalled direct writes, docs/mirroring.md): records it as
   * write() would have, in the order the notices come (the bridge queues each
   * ahead of its reply, so every later request comes after). Synchronous:
   * nothing can come between the notice and its record. False when nothing
   * was recorded (no sink, no such handle, a file with no id: detached by a
   * swap).
   */
  recordDirectWrite(handle: number, position: number, data: Buffer): boolean {
    const sink = this.changeSink;
    const f = this.handles.get(handle);
    if (!sink || f === undefined || f.kind !== 'file' || f.id === null || data.length === 0) return false;
    for (let off = 0; off < data.length; off += MAX_WRITE_BYTES) {
      sink.append({ op: 'write', id: f.id, offset: position + off, data: data.subarray(off, Math.min(data.length, off + MAX_WRITE_BYTES)) });
    }
    // Size and mtime follow in a setattr at flush, fsync or release.
    f.dirty = true;
    return true;
  }

  /**
   * A setattr the FUSE thread applied to the object `id` (journalled direct
   * setattrs): its record, with the attributes after it, at once.
   */
  recordDirectSetattr(id: ObjectId, st: Parameters<typeof attrsFromStat>[0]): boolean {
    if (!this.changeSink) return false;
    this.changeSink.append({ op: 'setattr', id, attrs: attrsFromStat(st) });
    return true;
  }

  /**
   * Copies `length` bytes of the descriptor `srcFd` at `srcOffset` into the
   * open file `handle` at `position`, as a write would (a rollback putting
   * back saved blocks): guarded and recorded like one; the native block copy
   * when nothing records the data.
   */
  async copyFrom(handle: number, srcFd: number, srcOffset: number, position: number, length: number): Promise<number> {
    if (this.sink) {
      const buf = Buffer.allocUnsafe(length);
      const n = await new Promise<number>((resolve, reject) => fs.read(srcFd, buf, 0, length, srcOffset, (err, r) => (err ? reject(err) : resolve(r))));
      return n > 0 ? this.write(handle, buf, n, position) : 0;
    }
    const f = this.file(handle);
    const guard = this.guardOf(f);
    if (guard) await guard.data({ fd: f.fd }, position, length);
    return native.copyRange(srcFd, srcOffset, f.fd, position, length);
  }

  /**
   * Drops the set-ID bits of an open file as a change by a process without
   * CAP_FSETID does (dropSetIdBits), when it has any: saved for the
   * checkpoints first, recorded with the file's attributes at flush, fsync or
   * release (as a write's size and mtime are). True when bits went.
   */
  private async dropSetIdOf(f: OpenFile, caller: Caller): Promise<boolean> {
    const known = await setIdDropOf(f.fd, caller);
    if (known.drop === 0) return false;
    const guard = this.guardOf(f);
    if (guard) await guard.attrs({ fd: f.fd });
    await dropSetIdBits(f.fd, caller, known);
    f.dirty = true;
    return true;
  }

  /** close(2) of one descriptor of the file: records its attributes if it was written. */
  async flush(handle: number): Promise<void> {
    await this.recordAttrsIfDirty(this.file(handle));
  }

  async fsync(handle: number, datasync: boolean): Promise<void> {
    const f = this.file(handle);
    await new Promise<void>((resolve, reject) => {
      (datasync ? fs.fdatasync : fs.fsync)(f.fd, (err) => (err ? reject(err) : resolve()));
    });
    if (!this.sink) return;
    await this.recordAttrsIfDirty(f);
    // The local data is durable; now every record up to here must be acked.
    await this.sink.barrier();
  }

  /** fallocate(2) through an open handle; `dropSetId` and `onDropped` as for write. */
  async fallocate(handle: number, mode: number, offset: number, length: number, dropSetId?: Caller, onDropped?: () => void): Promise<void> {
    const f = this.file(handle);
    // Punching a hole takes no room on the store.
    if (this.sink) await this.sink.admit(META_RECORD_BYTES, (mode & native.FALLOC_FL_PUNCH_HOLE) !== 0);
    if (dropSetId !== undefined && await this.dropSetIdOf(f, dropSetId)) onDropped?.();
    if (f.remote && this.restore && f.id !== null) {
      await this.restore.fetchAll(f.id, f.fd);
      f.remote = false;
    }
    const guard = this.guardOf(f);
    if (guard) {
      if ((mode & (native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_ZERO_RANGE)) !== 0) await guard.data({ fd: f.fd }, offset, length);
      else await guard.attrs({ fd: f.fd });
    }
    await native.fallocate(f.fd, mode, offset, length);
    if (!this.sink || f.id === null) return;
    const st = fs.fstatSync(f.fd, { bigint: true });
    if ((mode & (native.FALLOC_FL_PUNCH_HOLE | native.FALLOC_FL_ZERO_RANGE)) !== 0) {
      // The range now reads as zeros: ship it as written zeros.
      const end = Math.min(offset + length, Number(st.size));
      for (let off = offset; off < end; off += MAX_WRITE_BYTES) {
        this.sink.append({ op: 'write', id: f.id, offset: off, data: zeros(Math.min(MAX_WRITE_BYTES, end - off)) });
      }
    }
    f.dirty = false;
    await this.sink.committed(this.sink.append({ op: 'setattr', id: f.id, attrs: attrsFromStat(st) }));
  }

  async release(handle: number): Promise<void> {
    const entry = this.handles.get(handle);
    // Check the kind before removing: a directory handle must stay in the table.
    if (entry === undefined || entry.kind !== 'file') throw new FsError('EBADF');
    try {
      await this.recordAttrsIfDirty(entry);
    } finally {
      this.handles.remove(handle);
      await new Promise<void>((resolve, reject) => fs.close(entry.fd, (err) => (err ? reject(err) : resolve())));
      const left = entry.guard ? this.detachedLeft.get(entry.guard) : undefined;
      if (left !== undefined && --left.n === 0) {
        this.detachedLeft.delete(entry.guard!);
        left.onAllClosed();
      }
    }
  }

  /**
   * Records the attributes of every open file written since they were last
   * recorded (before `strata sync` waits for the archive).
   */
  async recordDirtyAttrs(): Promise<void> {
    const work: Promise<void>[] = [];
    for (const entry of this.handles.values()) if (entry.kind === 'file') work.push(this.recordAttrsIfDirty(entry));
    await Promise.all(work);
  }

  // ---- directories ----------------------------------------------------------

  async opendir(named: Named): Promise<number> {
    const o = this.named(named);
    // O_NOFOLLOW: never a symlink's target; ENOTDIR for anything but a directory.
    const fd = await this.layer(o).open(o.path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW).catch((err: unknown) => {
      throw (err as { code?: string }).code === 'ELOOP' ? new FsError('ENOTDIR') : err;
    });
    return this.handles.add({ kind: 'dir', fd });
  }

  /**
   * opendir of a directory whose last name is gone (an rmdir, or a rename
   * over it, after the kernel's lookup), through `pathFd` (taken over and
   * closed; see getattrOf): natively the open succeeds (listing it then
   * fails with ENOENT, in the kernel).
   */
  async opendirOf(pathFd: number): Promise<number> {
    return this.closingAfter(pathFd, async () => {
      const fd = await this.dir.reopen(pathFd, C.O_RDONLY | C.O_DIRECTORY | OPEN_CLOEXEC);
      return this.handles.add({ kind: 'dir', fd });
    });
  }

  /** All entries of a directory, '.' and '..' first, the reserved entry hidden. */
  async readdir(named: Named): Promise<DirEntryInfo[]> {
    const o = this.named(named);
    await this.localEntries(o);
    const atRoot = o.rel === '.';
    const dir = this.layer(o);
    const [entries, self, parent] = await Promise.all([
      dir.readdirIno(o.path),
      dir.lstat(o.path),
      // The root's '..' is itself, as on a mount's root.
      dir.lstat(atRoot ? o.path : `${o.path}/..`),
    ]);
    const out: DirEntryInfo[] = [
      { name: '.', mode: Number(self.mode), ino: self.ino },
      { name: '..', mode: Number(parent.mode), ino: parent.ino },
    ];
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
    await new Promise<void>((resolve) => fs.close(entry.fd, () => resolve()));
  }

  /**
   * fsync(2) of the directory through its handle's own descriptor (wherever
   * it is now); on a mirrored store it then waits, as a file's fsync does,
   * until the archive has every record so far: programs fsync a directory to
   * make a create or rename in it durable (write, fsync, rename, fsync the
   * directory), and I1 holds for that fsync too.
   */
  async fsyncdir(handle: number): Promise<void> {
    const fd = this.dirHandle(handle).fd;
    await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    if (this.sink) await this.sink.barrier();
  }

  /** Attributes of an open directory through its descriptor (it may have no name left). */
  async fgetattrDir(handle: number): Promise<fs.BigIntStats> {
    const d = this.dirHandle(handle);
    const st = await fstatOf(d.fd);
    return this.shown(st, null, null, d.fd);
  }

  /**
   * setattr of a directory that has no name left, through an open handle's
   * descriptor (fchmod, fchown, futimens: a size cannot be set on one), by
   * setattr's one body: its record names an object the archive let go with
   * its rmdir (the archive skips it), and a checkpoint saved the directory
   * whole when it lost its last name.
   */
  async setattrDir(handle: number, ch: SetattrChanges): Promise<fs.BigIntStats> {
    const d = this.dirHandle(handle);
    if (ch.size !== undefined) throw new FsError('EISDIR');
    return this.setattrObject(this.objectOf(d.fd, true), null, ch);
  }

  // ---- extended attributes --------------------------------------------------

  // Attributes under trusted.strata. are strata's own (object ids): the mount
  // neither shows them nor lets anyone set them.

  /**
   * setxattr(2). `caller`: who sets it, when known (an access ACL set by a
   * caller outside the object's group drops S_ISGID, as the kernel's
   * posix_acl_update_mode does; the daemon, as root, keeps it).
   */
  async setxattr(named: Named, name: string, value: Buffer, flags: number, caller?: Caller): Promise<void> {
    if (isPrivateXattr(name)) throw new FsError('EPERM', `${name} is reserved by strata`);
    return this.setxattrAt(this.objectAt(this.named(named)), name, value, flags, caller);
  }

  /** setxattr of an object whose last name is gone, through `pathFd` (taken over and closed; see getattrOf). */
  async setxattrOf(pathFd: number, name: string, value: Buffer, flags: number, caller?: Caller): Promise<void> {
    return this.closingAfter(pathFd, async () => {
      if (isPrivateXattr(name)) throw new FsError('EPERM', `${name} is reserved by strata`);
      return this.setxattrAt(this.objectOf(pathFd, false), name, value, flags, caller);
    });
  }

  private async setxattrAt(o: StoreObject, name: string, value: Buffer, flags: number, caller?: Caller): Promise<void> {
    if (this.sink) await this.sink.admit(META_RECORD_BYTES + value.length);
    if (this.guard) await this.guard.attrs(o.target);
    await o.set(name, value, flags).catch(async (err: unknown) => {
      // During a restore the restore's marks may take the room the program's attribute had on the primary.
      if (!isXattrSpaceFull(err) || this.restore === null || !(await this.restore.makeXattrRoom(o.restoreRef))) throw err;
      await o.set(name, value, flags);
    });
    if (name === ACL_ACCESS && caller !== undefined && caller.uid !== 0) await this.dropSetGidAfterAcl(o, caller);
    if (!this.sink) return;
    const id = await o.id();
    if (id === null) return;
    // An ACL is recorded as the store's file system keeps it: an ACL the mode bits say in full is kept as no ACL at all.
    const kept = isAclXattr(name) ? await o.acl(name) : value;
    const seq = this.sink.append(kept === null ? { op: 'removexattr', id, name } : { op: 'setxattr', id, name, value: kept });
    await this.sink.committed(this.recordModeAfterAcl(seq, id, o, name));
  }

  /** After the access ACL of `o` was set or removed: its mode as the store's file system left it, recorded after record `seq`. */
  private recordModeAfterAcl(seq: number, id: ObjectId, o: StoreObject, name: string): number {
    if (name !== ACL_ACCESS) return seq;
    return this.sink!.append({ op: 'setattr', id, attrs: attrsFromStat(o.statNow()) });
  }

  /** The object `o` names (by a path relative to a directory's descriptor). */
  private objectAt(o: ObjectAt): StoreObject {
    const dir = this.layer(o);
    const path = o.path;
    return {
      target: { rel: o.rel },
      named: o,
      set: (name, value, flags) => dir.setxattr(path, name, value, flags),
      remove: (name) => dir.removexattr(path, name),
      acl: (name) => aclAt(dir, path, name),
      stat: () => dir.lstat(path),
      statNow: () => dir.lstatNow(path),
      chmod: (mode) => dir.chmod(path, mode),
      chown: (uid, gid) => dir.lchown(path, uid, gid),
      truncate: (size) => dir.truncate(path, size),
      utimens: (atime, mtime) => dir.utimens(path, atime, mtime, { noFollow: true }),
      openToRead: () => dir.open(path, C.O_RDONLY | OPEN_ADD, 0),
      restoreRef: o,
      id: () => this.idOf(o),
    };
  }

  /**
   * The object of descriptor `fd`. `opened`: `fd` is an open file's or
   * directory's, and the f* calls take it; else (O_PATH) the calls go through
   * /proc/self/fd/N, which reaches the object itself, a symbolic link too
   * (as libfuse's passthrough_hp does).
   */
  private objectOf(fd: number, opened: boolean): StoreObject {
    const proc = `/proc/self/fd/${fd}`;
    return {
      target: { fd },
      named: null,
      fd,
      set: (name, value, flags) => native.setxattr('', name, value, flags, fd),
      remove: (name) => native.removexattr('', name, fd),
      acl: (name) => aclOfFd(fd, name),
      stat: () => fstatOf(fd),
      statNow: () => fs.fstatSync(fd, { bigint: true }),
      chmod: (mode) => (opened ? fchmodAsync(fd, mode) : fsp.chmod(proc, mode)),
      chown: (uid, gid) => (opened ? fchownAsync(fd, uid, gid) : fsp.chown(proc, uid, gid)),
      // ftruncate needs a descriptor open for writing: an open file's is (the adapter sees to it); else through a new one.
      truncate: (size) => (opened ? truncateFd(fd, size) : fsp.truncate(proc, size)),
      utimens: (atime, mtime) => (opened ? native.futimens(fd, atime, mtime) : native.utimens(proc, atime, mtime)),
      openToRead: () => this.dir.reopen(fd, C.O_RDONLY | OPEN_CLOEXEC),
      restoreRef: fd,
      id: () => readObjectId('', fd),
    };
  }

  /** The object of an open file's descriptor `fd`, whose id is known (`id`). */
  private objectOfOpen(fd: number, id: ObjectId | null): StoreObject {
    return { ...this.objectOf(fd, true), id: () => Promise.resolve(id) };
  }

  async getxattr(named: Named, name: string): Promise<Buffer> {
    if (isPrivateXattr(name)) throw new FsError('ENODATA');
    const o = this.named(named);
    const dir = this.layer(o);
    return this.xattrValue(name, () => dir.getxattr(o.path, name), () => aclAt(dir, o.path, name));
  }

  /** getxattr of an object whose last name is gone, through `pathFd` (taken over and closed; see getattrOf). */
  async getxattrOf(pathFd: number, name: string): Promise<Buffer> {
    return this.closingAfter(pathFd, async () => {
      if (isPrivateXattr(name)) throw new FsError('ENODATA');
      return this.xattrValue(name, () => native.getxattr('', name, pathFd), () => aclOfFd(pathFd, name));
    });
  }

  /** An attribute's value, read by `read`; an ACL's by `readAcl`, which gives null for none. */
  private async xattrValue(name: string, read: () => Promise<Buffer>, readAcl: () => Promise<Buffer | null>): Promise<Buffer> {
    if (!isAclXattr(name)) return read();
    // A store on a file system without ACLs has none: "no ACL" (the kernel, which asks before it checks a
    // permission, would take EOPNOTSUPP for a failed check).
    const acl = await readAcl();
    if (acl === null) throw new FsError('ENODATA');
    return acl;
  }

  async listxattr(named: Named): Promise<string[]> {
    const o = this.named(named);
    return (await this.layer(o).listxattr(o.path)).filter((n) => !isPrivateXattr(n));
  }

  /** listxattr of an object whose last name is gone, through `pathFd` (taken over and closed; see getattrOf). */
  async listxattrOf(pathFd: number): Promise<string[]> {
    return this.closingAfter(pathFd, async () => (await native.listxattr('', pathFd)).filter((n) => !isPrivateXattr(n)));
  }

  /** `work`, then `fd` closed (whatever the outcome). */
  private async closingAfter<T>(fd: number, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } finally {
      fs.close(fd, () => {});
    }
  }

  async removexattr(named: Named, name: string): Promise<void> {
    if (isPrivateXattr(name)) throw new FsError('EPERM', `${name} is reserved by strata`);
    return this.removexattrAt(this.objectAt(this.named(named)), name);
  }

  /** removexattr of an object whose last name is gone, through `pathFd` (taken over and closed; see getattrOf). */
  async removexattrOf(pathFd: number, name: string): Promise<void> {
    return this.closingAfter(pathFd, async () => {
      if (isPrivateXattr(name)) throw new FsError('EPERM', `${name} is reserved by strata`);
      return this.removexattrAt(this.objectOf(pathFd, false), name);
    });
  }

  private async removexattrAt(o: StoreObject, name: string): Promise<void> {
    if (this.sink) await this.sink.admit(META_RECORD_BYTES, true);
    if (this.guard) await this.guard.attrs(o.target);
    try {
      await o.remove(name);
    } catch (err) {
      // A name the archive holds and this store cannot (store/held-xattrs.ts): the removal is the archive's.
      if (!this.sink || (err as { code?: string }).code !== 'ENODATA') throw err;
      const heldId = await o.id();
      if (heldId === null || !(await dropHeldXattr(this.store.privateDir, heldId, name))) throw err;
    }
    if (!this.sink) return;
    const id = await o.id();
    if (id === null) return;
    const seq = this.sink.append({ op: 'removexattr', id, name });
    await this.sink.committed(this.recordModeAfterAcl(seq, id, o, name));
  }

  // ---- helpers ----------------------------------------------------------------

  /** Releases every open handle (on unmount). */
  async closeAll(): Promise<void> {
    for (const entry of [...this.handles.values()]) await new Promise<void>((resolve) => fs.close(entry.fd, () => resolve()));
  }

  /**
   * Store path of an existing object for a setattr-like op. libfuse passes ""
   * for an op through the handle of a file that was unlinked while open.
   */
  private existing(path: string): string {
    if (path === '') throw new FsError('ENOENT', 'object was unlinked while open');
    return LocalStore.relative(path);
  }

  /** The store's objects (the local-object layer; follows the store through a swap). */
  private get dir(): StoreDir {
    return this.store.dir;
  }

  /** S_ISGID goes when an access ACL is set by a caller outside the object's group (without CAP_FSETID: not root). */
  private async dropSetGidAfterAcl(o: StoreObject, caller: Caller): Promise<void> {
    const st = await o.stat();
    const mode = Number(st.mode);
    if ((mode & 0o2000) === 0 || st.isSymbolicLink() || (await callerInGroup(caller, Number(st.gid)))) return;
    await o.chmod(mode & 0o7777 & ~0o2000);
  }

  private file(handle: number): OpenFile {
    const entry = this.handles.get(handle);
    if (entry === undefined || entry.kind !== 'file') throw new FsError('EBADF', `no open file ${handle}`);
    return entry;
  }

  private dirHandle(handle: number): OpenDir {
    const entry = this.handles.get(handle);
    if (entry === undefined || entry.kind !== 'dir') throw new FsError('EBADF', `no open directory ${handle}`);
    return entry;
  }

  /**
   * Before a file's size changes during an unfinished restore: to 0 nothing of
   * the archive's data is needed any more; to any other size the file is
   * fetched whole first (its blocks past the cut or the extension are then right).
   */
  private async beforeSizeChange(f: OpenFile | null, o: StoreObject, id: ObjectId | null, size: number): Promise<void> {
    const restore = this.restore!;
    // To 0: nothing is needed; the archive's data is discarded once the file is cut (applySetattr).
    if (id === null || (f !== null && !f.remote) || size === 0) return;
    if (f !== null) {
      await restore.fetchAll(id, f.fd);
      f.remote = false;
      return;
    }
    if (!(await restore.isRemote(id))) return;
    const fd = await o.openToRead();
    await this.closingAfter(fd, () => restore.fetchAll(id, fd));
  }

  /** The object id stored on `o`; null (and a warning) when it has none. */
  private async idOf(o: ObjectAt): Promise<ObjectId | null> {
    if (o.rel === '.') return ROOT_ID;
    return readObjectId(o.path, o.at);
  }

  /** Id and (post-change) mtime of the directory `p` is in, through its descriptor. */
  private async parentOf(p: Place): Promise<{ id: ObjectId; mtime: Time }> {
    const parentRel = parentRelOf(p.rel);
    const [st, id] = await Promise.all([p.dir.lstat('.'), parentRel === '.' ? ROOT_ID : readObjectId('.', p.dir.fd)]);
    if (id === null) throw new FsError('EIO', `directory ${parentRel} has no object id (changed outside strata?)`);
    return { id, mtime: timeFromNs(st.mtimeNs) };
  }

  /**
   * Gives a just-created object its id and records its creation; returns its
   * attributes. `inherits`: its parent has a default ACL, which gave it ACLs
   * of its own: recorded after it.
   */
  private async recordCreated(p: Place, target?: string, inherits = false): Promise<fs.BigIntStats> {
    if (!this.sink) return p.dir.lstat(p.name);
    const id = newObjectId();
    const [st, parent] = await Promise.all([p.dir.lstat(p.name), this.parentOf(p), writeObjectId(p.name, id, p.dir.fd)]);
    const acls = inherits && target === undefined ? await inheritedAcls(p.dir, p.name, st.isDirectory()) : [];
    const rec = { op: 'create' as const, parent: parent.id, name: p.name, id, attrs: attrsFromStat(st), parentMtime: parent.mtime };
    const seq = this.sink.append(target === undefined ? rec : { ...rec, target });
    await this.sink.committed(this.appendAcls(seq, id, acls));
    return st;
  }

  /**
   * Whether an object created at `p` gets its directory's default ACL, when
   * anything depends on it (a umask to apply, records to write); else false.
   */
  private async inheritsAcl(p: Place, caller: Caller): Promise<boolean> {
    if (!this.sink && !caller.umask) return false;
    return (await aclAt(p.dir, '.', ACL_DEFAULT)) !== null;
  }

  /** The mode to create with: the caller's umask is strata's to apply when it carries one (posix_rules.h). */
  private creationMode(mode: number, caller: Caller, inherits: boolean): number {
    return caller.umask ? native.creationMode(mode, caller.umask, inherits) : mode;
  }

  /** Appends setxattr records of `acls` for object `id` after record `seq`; returns the last one's sequence number. */
  private appendAcls(seq: number, id: ObjectId, acls: readonly (readonly [string, Buffer])[]): number {
    for (const [name, value] of acls) seq = this.sink!.append({ op: 'setxattr', id, name, value });
    return seq;
  }

  private async recordRemoved(op: 'unlink' | 'rmdir', p: Place): Promise<void> {
    if (!this.sink) return;
    const parent = await this.parentOf(p);
    await this.sink.committed(this.sink.append({ op, parent: parent.id, name: p.name, parentMtime: parent.mtime }));
  }

  private async recordAttrsIfDirty(f: OpenFile): Promise<void> {
    if (!this.sink || !f.dirty || f.id === null) return;
    f.dirty = false;
    await this.sink.committed(this.sink.append({ op: 'setattr', id: f.id, attrs: attrsNow(f.fd) }));
  }

  private async registerFile(fd: number, flags: number, id: ObjectId | null): Promise<OpenResult> {
    let stat: fs.BigIntStats;
    try {
      stat = await fstatOf(fd);
    } catch (err) {
      fs.close(fd, () => {});
      throw err;
    }
    // Only a single-link regular file may keep its page cache across opens.
    const keepCache = (Number(stat.mode) & C.S_IFMT) === C.S_IFREG && stat.nlink === 1n;
    const handle = this.handles.add({ kind: 'file', fd, flags, id, dirty: false, remote: false });
    return { handle, fd, keepCache, stat, id, local: true };
  }

  /**
   * Gives a new object to the calling user, as ext4 would: owner = caller's uid;
   * group = the parent directory's group when it is set-group-ID, else the
   * caller's gid. The daemon creates objects as itself, so this is a chown.
   */
  private async own(p: Place, caller: Caller, isPathOnly: boolean, fd?: number): Promise<void> {
    // The rule is native/fuse-native/src/posix_rules.h's, which the FUSE thread's own creates follow too.
    const daemon = { uid: this.daemonUid, gid: this.daemonGid };
    // Created by the daemon's own user and group: already right (the kernel
    // applied set-group-ID inheritance when it created the object).
    if (!native.ownerNeedsParent(caller, daemon)) return;
    const parent = await p.dir.lstat('.');
    const owner = native.newOwner(caller, Number(parent.mode), daemon);
    if (owner === null) return;
    if (fd !== undefined && !isPathOnly) {
      await new Promise<void>((resolve, reject) => fs.fchown(fd, owner.uid, owner.gid, (err) => (err ? reject(err) : resolve())));
    } else {
      await p.dir.lchown(p.name, owner.uid, owner.gid);
    }
  }
}

/**
 * The set-ID bits a change by `caller` (a process without CAP_FSETID) drops,
 * wherever the kernel leaves that to strata: O_TRUNC opens (the daemon
 * truncates as root, which keeps them), and writes, truncations and
 * fallocates under handle_killpriv_v2. The rule is
 * native/fuse-native/src/posix_rules.h's, which the FUSE thread follows too:
 * S_ISUID always, S_ISGID with group-execute or when the caller is not in the
 * file's group; only of a regular file.
 */
async function setIdDropFor(st: fs.Stats | fs.BigIntStats, caller: Caller): Promise<number> {
  const mode = Number(st.mode);
  const inGroup = native.setIdNeedsGroups(mode) ? await callerInGroup(caller, Number(st.gid)) : true;
  return native.setIdDrop(mode, inGroup);
}

const fchmodAsync = promisify(fs.fchmod);
const fchownAsync = promisify(fs.fchown);

/** fstat(2) of `fd` (O_PATH will do). */
function fstatOf(fd: number): Promise<fs.BigIntStats> {
  return new Promise<fs.BigIntStats>((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}

/** The set-ID bits `caller` drops from the file behind `fd` (setIdDropFor), and the mode they are dropped from. */
async function setIdDropOf(fd: number, caller: Caller): Promise<{ mode: number; drop: number }> {
  const st = await fstatOf(fd);
  return { mode: Number(st.mode), drop: await setIdDropFor(st, caller) };
}

/** Drops them from the file behind `fd` (`known`: setIdDropOf's answer, when the caller already has it). */
async function dropSetIdBits(fd: number, caller: Caller, known?: { mode: number; drop: number }): Promise<void> {
  const { mode, drop } = known ?? (await setIdDropOf(fd, caller));
  if (drop === 0) return;
  await new Promise<void>((resolve, reject) => fs.fchmod(fd, mode & 0o7777 & ~drop, (err) => (err ? reject(err) : resolve())));
}

/**
 * The attributes of the file behind `fd`, read on the event loop for a record
 * appended in the same turn (an fstat of an open file: no disk I/O). So a
 * record of attributes says what the store held at its place in the journal:
 * read before an await, another program's write could be recorded in between
 * (the FUSE thread's journalled writes, writes through the core, the
 * writeback cache's), and the older size behind it would cut the archive's
 * file (test/fault/concurrent-writers.test.ts). Every later record then
 * describes a later change; an earlier one that reached the store before
 * this read is applied again behind it, which changes nothing.
 */
function attrsNow(fd: number): Attrs {
  return attrsFromStat(fs.fstatSync(fd, { bigint: true }));
}

/** A setattr's owner change as chown(2) takes it: (uint32)-1, or absent, is "leave unchanged", which chown spells -1. */
function chownIds(ch: SetattrChanges): [number, number] {
  return [ch.uid === undefined || ch.uid === 0xffffffff ? -1 : ch.uid, ch.gid === undefined || ch.gid === 0xffffffff ? -1 : ch.gid];
}

let zeroBuffer = Buffer.alloc(0);
/** A read-only buffer of `n` zero bytes (shared). */
function zeros(n: number): Buffer {
  if (zeroBuffer.length < n) zeroBuffer = Buffer.alloc(Math.max(n, MAX_WRITE_BYTES));
  return zeroBuffer.subarray(0, n);
}

const DT_TO_MODE: Readonly<Record<number, number>> = {
  1: C.S_IFIFO, 2: C.S_IFCHR, 4: C.S_IFDIR, 6: C.S_IFBLK, 8: C.S_IFREG, 10: C.S_IFLNK, 12: C.S_IFSOCK,
};
