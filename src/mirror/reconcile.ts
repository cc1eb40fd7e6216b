// `reconcile`: walks the local store and the archive volume as tree-diff.ts
// does, and instead of reporting the differences emits the records that make
// the archive equal to the local tree. Used for the initial sync of a store
// that already holds data, and to re-converge after an unclean stop.
//
// PRECONDITION (the caller's job): the archive holds every record the primary
// journaled before (the journal is drained first), and nothing changes the
// store during the run (it runs before the mount serves). The records go to
// `sink` in order and must reach the archive after what it already holds.
//
// Order of the records:
//  - per directory: entries replaced locally (same name, another object or
//    type) are first renamed aside in their directory; then, per name, the
//    creates (a file: `create` with its final attrs but size 0, `write`s of
//    its non-zero blocks, a `setattr` with the local attrs), `link`s, updates
//    of objects on both sides (writes of differing blocks, setattr), xattr
//    fixes; then the subdirectories, in name order; last a `setattr` of the
//    directory when its attributes differ. Namespace records carry the local
//    directory's mtime as parentMtime.
//  - at the very end: the removals (`unlink`/`rmdir`) of archive names that
//    are gone locally, and of the names set aside.
// Why removals come last: until then no archive object is deleted, so an
// object that moved (a rename whose record never became durable) is moved or
// linked at its new name with its data in place — the archive moves a
// directory that is `create`d with its existing id, and `link` adds a name to
// a file — instead of being deleted and shipped again. A removal of a name
// that such a move already took away is a no-op on the archive. Every image
// fetched during the run is still right for the parts the run has not
// visited yet, since the run only changes a directory's entries when it visits
// it and deletes nothing before the end.
//
// Which objects are known to the archive: an object whose name and id match
// is compared; an object without a local id gets one (ensureObjectId) and is
// new; an object with an id the archive does not have at this name is looked
// up: among the names this run saw gone elsewhere, else by asking the archive
// for its image (directories) or its blocks (files). A volume that was empty
// at the start has nothing to look up. A directory this run creates is empty
// on the archive: its image is not fetched.
//
// Memory: one directory listing and image per level (plus a few images
// fetched ahead), the ids of multiply-linked local objects handled so far,
// and the names to remove at the end (as many as there are removals).
import { randomBytes } from 'node:crypto';
import { ArchiveError, isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import type { DirImage, EntryImage, FileBlocks } from '../protocol/images.js';
import { MAX_WRITE_BYTES, ROOT_ID, attrsFromStat, timeFromNs, type Attrs, type NewRecord, type ObjectId, type Time } from '../protocol/records.js';
import { ensureObjectId, newObjectId, readObjectId, writeObjectId } from '../store/object-ids.js';
import {
  Lookahead, attrDifferences, entryXattrs, listLocalDir, listedObjectId, localTarget, localXattrs, sameTime, typeOfMode, xattrDifferences,
  type LocalEntry, type LocalStat,
} from './tree-local.js';
import { differingBlocks, localBlocksWhole } from './tree-blocks.js';
import { isMaterialisingTemp, isPending, listTimesRecords, readBlockMap, remoteBlocksOf, settleTimesRecord } from '../store/restore-marks.js';
import { allHeldXattrs } from '../store/held-xattrs.js';
import { forEachLimited } from '../util/each-limited.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { StoreDir } from '../store/store-dir.js';
import { join } from 'node:path';

export interface RecordSink {
  append(rec: NewRecord): Promise<void>;
}

export interface ReconcileProgress {
  entries: number;
  /** Bytes of the regular files visited (shipped or found equal). */
  bytes: number;
}

export interface ReconcileOptions {
  /** The store directory. */
  store: string;
  archive: ArchiveClient;
  volume: string;
  sink: RecordSink;
  /**
   * Which files present on both sides get their blocks compared. Files whose
   * size or mtime differ always are (and files the archive lacks are shipped
   * whole). 'changed' (default) adds nothing else; 'all' compares every file;
   * a function adds the files it accepts.
   */
  content?: 'all' | 'changed' | ((local: LocalStat, archive: EntryImage) => boolean);
  /**
   * After an unclean stop: also compare every file whose ctime is at or after
   * this (ns since the epoch). The kernel updates ctime on every change, so
   * it bounds what may have reached the store without a durable record.
   */
  changedSinceNs?: bigint;
  /** Called as the walk advances (at most every 100 ms, and once at the end). */
  onProgress?: (done: ReconcileProgress, total?: ReconcileProgress) => void;
  /**
   * Where `total` comes from: the archive's root totals, a quick local walk
   * (names and stats only), or 'auto' (default: the archive's when it holds
   * anything, else the local walk). Only computed with `onProgress`.
   */
  total?: 'auto' | 'archive' | 'local' | 'none';
  signal?: AbortSignal;
  /** Directory images fetched ahead of the walk (default 4). */
  lookahead?: number;
}

export interface ReconcileStats {
  /** Local entries visited (the root included). */
  entries: number;
  /** Records emitted. */
  records: number;
  /** Bytes of file data shipped in `write` records. */
  bytes: number;
}

export async function reconcile(opts: ReconcileOptions): Promise<ReconcileStats> {
  // Every local object is reached relative to the store root's descriptor:
  // a tree as deep as the mount allows never outgrows PATH_MAX by the store's path.
  return StoreDir.using(opts.store, (dir) => new Reconciler(opts, dir).run());
}

/** What the archive holds for a local object that is not at its name there. */
type Prior =
  /** Nothing: the object is new. */
  | { kind: 'new' }
  /** It is elsewhere on the archive, as this entry image says (a name this run saw gone). */
  | { kind: 'entry'; entry: EntryImage }
  /** A directory elsewhere on the archive. */
  | { kind: 'dir'; image: DirImage }
  /** A file elsewhere on the archive, with these blocks; its attributes and xattrs are unknown. */
  | { kind: 'file'; blocks: FileBlocks }
  /** Maybe elsewhere (a symlink or special file: nothing to ask the archive). */
  | { kind: 'unknown' };

/** A subdirectory to visit: its archive image, to fetch, or none (created empty by this run). */
interface Subdir {
  entry: LocalEntry;
  nsPath: string;
  id: ObjectId;
  image: DirImage | 'fetch' | null;
}

interface Removal {
  op: 'unlink' | 'rmdir';
  parent: ObjectId;
  name: string;
  parentMtime: Time;
}

const PROGRESS_INTERVAL_MS = 100;
/**
 * The walk is latency-bound (every stat, xattr and read is a trip through
 * the thread pool): ids are read or given this many at a time, and what a new
 * object ships (its target, blocks, xattrs) is read this many entries ahead
 * of the one whose records go out. The records themselves stay in order.
 */
const ID_CONCURRENCY = 16;
const NEW_OBJECT_AHEAD = 16;
/** Files up to this size are read ahead whole; larger ones are read in turn, block by block. */
const READ_AHEAD_MAX_BYTES = 1 << 20;

/** What a new object's records carry, read ahead of its turn. */
interface NewObjectData {
  target: string | undefined;
  /** A file's non-zero blocks (null: larger than READ_AHEAD_MAX_BYTES, read in turn). */
  blocks: { offset: number; data: Buffer }[] | null;
  xattrs: { [name: string]: string };
}

/** `f` over `items`, at most `limit` at a time; results in the order of `items`. */
async function mapLimit<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  await forEachLimited(items.map((item, i) => [item, i] as const), limit, async ([item, i]) => { out[i] = await f(item); });
  return out;
}

function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

class Reconciler {
  private readonly stats: ReconcileStats = { entries: 0, records: 0, bytes: 0 };
  private readonly done: ReconcileProgress = { entries: 0, bytes: 0 };
  private total: ReconcileProgress | undefined;
  private lastProgress = 0;
  /** The volume held nothing at the start: every object is new. */
  private fresh = false;
  /** dev:ino of multiply-linked local non-directories handled in this run → their id. */
  private readonly linked = new Map<string, ObjectId>();
  /** Archive entries whose name is gone locally (or set aside), by id: if the object turns up elsewhere, this is its archive state. */
  private readonly gone = new Map<ObjectId, EntryImage>();
  /**
   * Objects the archive has at another name, found by id, whose archive
   * xattrs were not known when their local ones were set (the local path):
   * an xattr only the archive has is removed once their archive entry turns
   * up (another name of theirs, a name seen gone, or an archive directory
   * about to be removed). A swap to an older tree (a checkpoint's) moves
   * objects back whose xattrs changed since, so this is common there.
   */
  private readonly xattrsUnknown = new Map<ObjectId, string>(); // → store-relative path
  /** Removals emitted at the end, in the order found. */
  private readonly removals: Removal[] = [];
  /** Names for entries set aside: unique per run, never a name a user has. */
  private readonly asideTag = randomBytes(6).toString('hex');
  private asideCount = 0;

  /** Where an unfinished restore keeps its block maps. */
  private readonly privateDir: string;
  /** Xattrs the archive holds and the store cannot, by object (loaded at the first comparison). */
  private held: Map<ObjectId, Set<string>> | null = null;
  /** The entries being compared are those lookups materialised in a pending directory. */
  private inPendingDir = false;
  /** Files whose restored bytes a crash interrupted (their times records, see store/restore-marks.ts). */
  private timesRecords = new Set<ObjectId>();

  constructor(private readonly opts: ReconcileOptions, private readonly dir: StoreDir) {
    this.privateDir = join(opts.store, RESERVED_NAME);
  }

  async run(): Promise<ReconcileStats> {
    const { archive, volume, store } = this.opts;
    const state = await archive.volumeState(volume);
    if (state === null) throw new ArchiveError('ENOVOLUME', `volume ${volume} does not exist on ${archive.url}`);
    const rootImage = await archive.dirImage(volume, ROOT_ID);
    this.fresh = rootImage.entries.length === 0;
    const st = await this.dir.lstat('.');
    if (!st.isDirectory()) throw new Error(`store ${store} is not a directory`);
    await ensureObjectId('.', this.dir.fd, true);
    this.timesRecords = await listTimesRecords(this.privateDir);
    if (this.opts.onProgress) this.total = await this.estimateTotal(rootImage);
    this.stats.entries++;
    this.done.entries++;
    await this.fixXattrs(ROOT_ID, '.', rootImage.xattrs);
    await this.syncDir('/', '.', ROOT_ID, st, rootImage, rootImage.attrs, true);
    await this.settleUnknownXattrs();
    for (const r of this.removals) await this.emit(r);
    this.progress(true);
    return this.stats;
  }

  private async emit(rec: NewRecord): Promise<void> {
    this.stats.records++;
    if (rec.op === 'write') this.stats.bytes += rec.data.length;
    await this.opts.sink.append(rec);
  }

  private progress(force: boolean): void {
    const cb = this.opts.onProgress;
    if (!cb) return;
    const now = Date.now();
    if (!force && now - this.lastProgress < PROGRESS_INTERVAL_MS) return;
    this.lastProgress = now;
    cb({ ...this.done }, this.total ? { ...this.total } : undefined);
  }

  private async estimateTotal(rootImage: DirImage): Promise<ReconcileProgress | undefined> {
    const how = this.opts.total ?? 'auto';
    if (how === 'none') return undefined;
    if (how === 'archive' || (how === 'auto' && rootImage.totals.entries > 0)) {
      return { entries: rootImage.totals.entries + 1, bytes: rootImage.totals.bytes };
    }
    const total: ReconcileProgress = { entries: 1, bytes: 0 };
    const walk = async (rel: string, isRoot: boolean): Promise<void> => {
      for (const e of await listLocalDir(this.dir, rel, isRoot)) {
        this.opts.signal?.throwIfAborted();
        total.entries++;
        if (e.type === 'file') total.bytes += Number(e.st.size);
        else if (e.type === 'dir') await walk(e.rel, false);
      }
    };
    await walk('.', true);
    return total;
  }

  /** The local object's id, and whether this run just gave it one (then it is new to the archive). */
  private async idOf(e: LocalEntry): Promise<{ id: ObjectId; assigned: boolean }> {
    const listed = listedObjectId(e);
    const have = listed !== undefined ? listed : await readObjectId(e.rel, this.dir.fd);
    if (have !== null) return { id: have, assigned: false };
    const id = newObjectId();
    await writeObjectId(e.rel, id, this.dir.fd);
    return { id, assigned: true };
  }

  private async syncDir(nsPath: string, rel: string, dirId: ObjectId, st: LocalStat, image: DirImage | null, archiveAttrs: Attrs, isRoot: boolean): Promise<void> {
    const parentMtime = timeFromNs(st.mtimeNs);
    // An unfinished restore: a pending directory's names and attributes are
    // the archive's (nothing but materialisation changes them; a crash in the
    // middle of one may have moved its mtime, which the next materialisation
    // puts back). But the entries lookups materialised in it are objects like
    // any other: a program may have changed them (a write into a stub) without
    // a durable record. Those are compared; nothing else is.
    const pending = await isPending(this.privateDir, rel, this.dir.fd);
    const remote = new Map((image?.entries ?? []).map((e) => [e.name, e]));
    const locals = (await listLocalDir(this.dir, rel, isRoot, true)).filter((e) => !(pending && isMaterialisingTemp(e.name, remote)));
    const localNames = new Set(locals.map((e) => e.name));
    const ids = await mapLimit(locals, ID_CONCURRENCY, (e) => this.idOf(e));

    // Names gone locally: removed at the end (see the head of this file). In
    // a pending directory a name not here is one not materialised yet.
    for (const a of remote.values()) {
      if (!pending && !localNames.has(a.name)) this.removeLater(dirId, a.name, a, parentMtime);
    }
    // Names now held by another object: set the archive's object aside first.
    for (let i = 0; i < locals.length; i++) {
      const l = locals[i]!;
      const a = remote.get(l.name);
      if (a === undefined || !(await this.replaced(l, ids[i]!.id, a))) continue;
      const aside = `.strata-aside-${this.asideTag}-${this.asideCount++}`;
      await this.emit({ op: 'rename', parent: dirId, name: l.name, newParent: dirId, newName: aside, parentMtime, newParentMtime: parentMtime });
      this.removeLater(dirId, aside, a, parentMtime);
      remote.delete(l.name);
    }

    const subdirs: Subdir[] = [];
    this.inPendingDir = pending;
    // New objects (the 'new' case of syncEntry): what they ship is read ahead.
    const isNew = (i: number): boolean => {
      const l = locals[i]!;
      return (this.fresh || ids[i]!.assigned) && l.type !== 'dir' && !remote.has(l.name) && !this.timesRecords.has(ids[i]!.id);
    };
    const ahead = new Lookahead(locals.map((_, i) => i), (i) => (isNew(i) ? readNewObject(this.dir, locals[i]!) : null), NEW_OBJECT_AHEAD);
    for (let i = 0; i < locals.length; i++) {
      const l = locals[i]!;
      const { id, assigned } = ids[i]!;
      this.opts.signal?.throwIfAborted();
      this.stats.entries++;
      this.done.entries++;
      if (l.type === 'file') this.done.bytes += Number(l.st.size);
      const pre = await ahead.get(i);
      const sub = await this.syncEntry(nsPath, dirId, parentMtime, l, id, assigned, remote.get(l.name), pre);
      if (sub) subdirs.push(sub);
      this.progress(false);
    }
    this.inPendingDir = false;

    const images = new Lookahead(subdirs, (s) => (s.image === 'fetch' ? this.opts.archive.dirImage(this.opts.volume, s.id) : null), this.opts.lookahead ?? 4);
    for (let i = 0; i < subdirs.length; i++) {
      const s = subdirs[i]!;
      const fetched = await images.get(i);
      const img = s.image === 'fetch' ? fetched! : s.image;
      const attrs = img?.attrs ?? attrsFromStat(s.entry.st);
      await this.syncDir(s.nsPath, s.entry.rel, s.id, s.entry.st, img, attrs, false);
    }

    const mine = attrsFromStat(st);
    if (!pending && attrDifferences('dir', mine, archiveAttrs).length > 0) await this.emit({ op: 'setattr', id: dirId, attrs: mine });
  }

  /** True when the archive's entry at this name is another object than the local one. */
  private async replaced(l: LocalEntry, id: ObjectId, a: EntryImage): Promise<boolean> {
    if (a.id !== id || typeOfMode(a.attrs.mode) !== l.type) return true;
    // A symlink's target never changes in place: a different one is another symlink.
    return l.type === 'symlink' && (await localTarget(this.dir, l.rel)) !== a.target;
  }

  private removeLater(parent: ObjectId, name: string, a: EntryImage, parentMtime: Time): void {
    this.removals.push({ op: typeOfMode(a.attrs.mode) === 'dir' ? 'rmdir' : 'unlink', parent, name, parentMtime });
    if (!this.gone.has(a.id)) this.gone.set(a.id, a);
  }

  /** Brings one local entry to the archive; returns the subdirectory to visit, if it is one. */
  private async syncEntry(nsPath: string, parent: ObjectId, parentMtime: Time, l: LocalEntry, id: ObjectId, assigned: boolean, a: EntryImage | undefined, pre: NewObjectData | null): Promise<Subdir | null> {
    if (l.type === 'file' && this.timesRecords.has(id)) {
      // A crash interrupted the writing of restored bytes into this file: its
      // times moved, but nobody changed it. They are put back, not shipped.
      await settleTimesRecord(this.privateDir, id, l.rel, this.dir.fd);
      this.timesRecords.delete(id);
      l = { ...l, st: await this.dir.lstat(l.rel) };
    }
    const path = childPath(nsPath, l.name);
    const attrs = attrsFromStat(l.st);
    if (l.type !== 'dir' && l.st.nlink > 1n) {
      const key = `${l.st.dev}:${l.st.ino}`;
      if (this.linked.has(key)) {
        // Another name of an object this run already brought over.
        if (a === undefined) await this.emit({ op: 'link', parent, name: l.name, id, parentMtime });
        else await this.knownXattrs(id, a);
        return null;
      }
      this.linked.set(key, id);
    }
    if (a !== undefined) {
      await this.update(l, id, attrs, a);
      return l.type === 'dir' ? { entry: l, nsPath: path, id, image: 'fetch' } : null;
    }

    const prior = assigned || this.fresh ? { kind: 'new' as const } : await this.priorOf(l, id);
    switch (prior.kind) {
      case 'new': {
        const target = l.type === 'symlink' ? (pre !== null ? pre.target : await localTarget(this.dir, l.rel)) : undefined;
        const createAttrs = l.type === 'file' ? { ...attrs, size: 0 } : attrs;
        await this.emit({ op: 'create', parent, name: l.name, id, attrs: createAttrs, ...(target !== undefined ? { target } : {}), parentMtime });
        if (l.type === 'file' && attrs.size > 0) {
          if (pre?.blocks != null) await this.shipRuns(id, pre.blocks);
          else await this.shipBlocks(id, l, null);
          await this.emit({ op: 'setattr', id, attrs });
        }
        if (pre !== null) await this.emitXattrs(id, pre.xattrs, {});
        else await this.fixXattrs(id, l, {});
        return l.type === 'dir' ? { entry: l, nsPath: path, id, image: null } : null;
      }
      case 'dir':
        // The archive moves the directory here, with its entries.
        await this.emit({ op: 'create', parent, name: l.name, id, attrs, parentMtime });
        await this.fixXattrs(id, l, prior.image.xattrs);
        return { entry: l, nsPath: path, id, image: prior.image };
      case 'entry':
        if (l.type === 'dir') {
          // Seen gone elsewhere: it exists; its entries come with its image.
          await this.emit({ op: 'create', parent, name: l.name, id, attrs, parentMtime });
          const image = await this.opts.archive.dirImage(this.opts.volume, id);
          await this.fixXattrs(id, l, image.xattrs);
          return { entry: l, nsPath: path, id, image };
        }
        await this.emit({ op: 'link', parent, name: l.name, id, parentMtime });
        await this.update(l, id, attrs, prior.entry);
        return null;
      case 'file': {
        await this.emit({ op: 'link', parent, name: l.name, id, parentMtime });
        await this.shipBlocks(id, l, prior.blocks);
        await this.emit({ op: 'setattr', id, attrs });
        // Its xattrs on the archive are unknown: set every local one now, remove
        // the archive's others once its archive entry is seen (settleUnknownXattrs).
        await this.fixXattrs(id, l, {});
        this.xattrsUnknown.set(id, l.rel);
        return null;
      }
      case 'unknown': {
        // A create with a known id only adds the name; with the local attrs it
        // is right either way, and the setattr covers an existing object.
        const target = l.type === 'symlink' ? await localTarget(this.dir, l.rel) : undefined;
        await this.emit({ op: 'create', parent, name: l.name, id, attrs, ...(target !== undefined ? { target } : {}), parentMtime });
        await this.emit({ op: 'setattr', id, attrs });
        await this.fixXattrs(id, l, {});
        this.xattrsUnknown.set(id, l.rel);
        return null;
      }
    }
  }

  /** The archive entry of an object whose archive xattrs were unknown: its xattrs are made the local ones. */
  private async knownXattrs(id: ObjectId, a: EntryImage): Promise<void> {
    const rel = this.xattrsUnknown.get(id);
    if (rel === undefined || a.id !== id) return;
    this.xattrsUnknown.delete(id);
    await this.fixXattrs(id, rel, a.xattrs);
  }

  /**
   * Before the removals: the objects whose archive xattrs are still unknown
   * are looked for among the names seen gone, then in the archive directories
   * about to be removed (and below them), the only places left where the
   * archive can have them.
   */
  private async settleUnknownXattrs(): Promise<void> {
    if (this.xattrsUnknown.size === 0) return;
    for (const id of [...this.xattrsUnknown.keys()]) {
      const g = this.gone.get(id);
      if (g !== undefined) await this.knownXattrs(id, g);
    }
    const dirs = [...this.gone.values()].filter((e) => typeOfMode(e.attrs.mode) === 'dir').map((e) => e.id);
    const seen = new Set<ObjectId>();
    while (this.xattrsUnknown.size > 0 && dirs.length > 0) {
      const dirId = dirs.pop()!;
      if (seen.has(dirId)) continue;
      seen.add(dirId);
      let img: DirImage;
      try {
        img = await this.opts.archive.dirImage(this.opts.volume, dirId);
      } catch (err) {
        if (isArchiveError(err, 'ENOOBJECT')) continue;
        throw err;
      }
      for (const e of img.entries) {
        await this.knownXattrs(e.id, e);
        if (typeOfMode(e.attrs.mode) === 'dir') dirs.push(e.id);
      }
    }
  }

  /** What the archive holds for an object with an id that is not at this name there. */
  private async priorOf(l: LocalEntry, id: ObjectId): Promise<Prior> {
    const seen = this.gone.get(id);
    if (seen !== undefined && typeOfMode(seen.attrs.mode) === l.type) return { kind: 'entry', entry: seen };
    const { archive, volume } = this.opts;
    try {
      if (l.type === 'dir') return { kind: 'dir', image: await archive.dirImage(volume, id) };
      if (l.type === 'file') return { kind: 'file', blocks: await archive.fileBlocks(volume, id) };
    } catch (err) {
      if (isArchiveError(err, 'ENOOBJECT')) return { kind: 'new' };
      throw err;
    }
    return { kind: 'unknown' };
  }

  /** An object present at its name on both sides: content, attributes, xattrs. */
  private async update(l: LocalEntry, id: ObjectId, attrs: Attrs, a: EntryImage): Promise<void> {
    if (l.type === 'dir') {
      // Its attributes are set after its entries (which change its mtime).
      await this.fixXattrs(id, l, a.xattrs);
      return;
    }
    let wrote = 0;
    if (l.type === 'file' && this.wantContent(l.st, attrs, a)) {
      // A stub of an unfinished restore with no block local yet holds nothing the archive lacks;
      // nor does one in a pending directory that lost its map (no block allocated: the next
      // materialisation writes its map again), which must not be taken for a file of zeros.
      const map = await readBlockMap(this.privateDir, id);
      const lostMap = map === null && this.inPendingDir && l.st.blocks === 0n && l.st.size > 0n;
      if (!lostMap && (map === null || map.missing < map.present.length)) {
        wrote = await this.shipBlocks(id, l, await this.opts.archive.fileBlocks(this.opts.volume, id));
      }
    }
    if (wrote > 0 || attrDifferences(l.type, attrs, a.attrs).length > 0) await this.emit({ op: 'setattr', id, attrs });
    await this.fixXattrs(id, l, a.xattrs);
  }

  private wantContent(st: LocalStat, attrs: Attrs, a: EntryImage): boolean {
    const c = this.opts.content ?? 'changed';
    if (c === 'all' || attrs.size !== a.attrs.size || !sameTime(attrs.mtime, a.attrs.mtime)) return true;
    if (this.opts.changedSinceNs !== undefined && st.ctimeNs >= this.opts.changedSinceNs) return true;
    return typeof c === 'function' && c(st, a);
  }

  /**
   * Writes the blocks of the local file that differ from `blocks` (null: the
   * archive has no data for it), joining neighbours into records of up to
   * MAX_WRITE_BYTES. Returns the number of write records.
   */
  private async shipBlocks(id: ObjectId, l: LocalEntry, blocks: FileBlocks | null): Promise<number> {
    // A file still partly in the archive: only its local blocks can differ.
    const skip = blocks === null ? null : await remoteBlocksOf(this.privateDir, id);
    return this.shipRuns(id, differingBlocks(this.dir, l.rel, Number(l.st.size), blocks, skip));
  }

  /** `write` records of `blocks` (in offset order), adjacent ones joined up to MAX_WRITE_BYTES. */
  private async shipRuns(id: ObjectId, blocks: AsyncIterable<{ offset: number; data: Buffer }> | Iterable<{ offset: number; data: Buffer }>): Promise<number> {
    let records = 0;
    let run: Buffer[] = [];
    let runOffset = 0;
    let runBytes = 0;
    const flush = async (): Promise<void> => {
      if (runBytes === 0) return;
      await this.emit({ op: 'write', id, offset: runOffset, data: run.length === 1 ? run[0]! : Buffer.concat(run, runBytes) });
      records++;
      run = [];
      runBytes = 0;
    };
    for await (const b of blocks) {
      this.opts.signal?.throwIfAborted();
      if (runBytes > 0 && (runOffset + runBytes !== b.offset || runBytes + b.data.length > MAX_WRITE_BYTES)) await flush();
      if (runBytes === 0) runOffset = b.offset;
      run.push(b.data);
      runBytes += b.data.length;
    }
    await flush();
    return records;
  }

  /** Makes the archive's xattrs of `id` equal to the local object's (strata's own excepted). */
  /** `local`: the entry, or the store-relative path of an object not listed (the root; one whose archive xattrs were unknown). */
  private async fixXattrs(id: ObjectId, local: LocalEntry | string, archive: { readonly [name: string]: string }): Promise<void> {
    await this.emitXattrs(id, await (typeof local === 'string' ? localXattrs(this.dir, local) : entryXattrs(this.dir, local)), archive);
  }

  private async emitXattrs(id: ObjectId, local: { readonly [name: string]: string }, archive: { readonly [name: string]: string }): Promise<void> {
    // A name the archive holds and the store cannot (store/held-xattrs.ts) is not a removal to ship.
    const d = xattrDifferences(local, archive, (this.held ??= await allHeldXattrs(this.privateDir)).get(id));
    if (d === null) return;
    for (const [name, value] of Object.entries(d.local)) {
      if (value === null) await this.emit({ op: 'removexattr', id, name });
      else await this.emit({ op: 'setxattr', id, name, value: Buffer.from(value, 'base64') });
    }
  }
}

/** Reads what a new object ships (NewObjectData) ahead of its turn. */
async function readNewObject(dir: StoreDir, l: LocalEntry): Promise<NewObjectData> {
  const target = l.type === 'symlink' ? await localTarget(dir, l.rel) : undefined;
  let blocks: { offset: number; data: Buffer }[] | null = [];
  const size = Number(l.st.size);
  if (l.type === 'file' && size > 0) {
    blocks = size > READ_AHEAD_MAX_BYTES ? null : await localBlocksWhole(dir, l.rel, size);
  }
  return { target, blocks, xattrs: await entryXattrs(dir, l) };
}
