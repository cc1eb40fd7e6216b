// `diffTree`: compares a primary's local store with its archive volume and
// reports every difference (invariant I2: names, types, modes, owners, sizes,
// contents, symlink targets, xattrs, hard links, mtimes; plus object ids, which
// make renames cheap and must agree for the mirror to stay right).
//
// The walk goes directory by directory from the root, in step on both sides:
// one local directory listing and one archive directory image at a time (plus
// a few images fetched ahead), so memory follows the largest directory and
// the depth, not the volume. The only state that spans the walk is the first
// path of each multiply-linked object (to compare hard-link groups), which
// grows with the number of hard-linked objects only.
//
// Read-only: it never assigns ids, and reads files with O_NOATIME.
//
// A subtree missing on one side is reported once, at its top. File contents
// are compared only when the sizes agree (a size difference already says the
// data differs, and the blocks past the shorter end would only add noise).
import { ArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import type { DirImage, EntryImage } from '../protocol/images.js';
import { ROOT_ID, attrsFromStat, type ObjectId } from '../protocol/records.js';
import { readObjectId } from '../store/object-ids.js';
import { isMaterialisingTemp, isPending, remoteBlocksOf } from '../store/restore-marks.js';
import { allHeldXattrs } from '../store/held-xattrs.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { StoreDir } from '../store/store-dir.js';
import { join } from 'node:path';
import {
  Lookahead, attrDifferences, compareNames, entryXattrs, listLocalDir, listedObjectId, localTarget, localXattrs, typeOfMode, xattrDifferences,
  type LocalEntry, type LocalStat, type ObjectType,
} from './tree-local.js';
import { differingBlocks } from './tree-blocks.js';

export type DiffKind =
  | 'missing-on-archive' | 'missing-locally' | 'type'
  | 'mode' | 'uid' | 'gid' | 'size' | 'mtime' | 'rdev'
  | 'target' | 'xattrs' | 'content' | 'id' | 'hard-link';

/** A value shown for one side: a number, a formatted string (modes in octal, times as sec.nsec), null for none, or per-name xattr values (base64). */
export type DiffValue = string | number | null | { readonly [name: string]: string | null };

export interface Difference {
  /** Namespace path ('/' is the store root). */
  path: string;
  kind: DiffKind;
  local?: DiffValue;
  archive?: DiffValue;
}

/** Which regular files get their blocks compared (given the local stat). */
export type ContentChoice = 'all' | 'none' | ((local: LocalStat) => boolean);

export interface DiffOptions {
  /** The store directory (the tree's root; its private directory is not part of the tree). */
  store: string;
  archive: ArchiveClient;
  volume: string;
  /** Default 'all'. */
  content?: ContentChoice;
  /** Receives each difference as found; then they are not collected (bounded memory for a huge report). */
  onDifference?: (d: Difference) => void;
  signal?: AbortSignal;
  /** Directory images fetched ahead of the walk (default 4). */
  lookahead?: number;
}

export interface DiffResult {
  /** Paths compared (the root, and each name on either side; a missing subtree counts once). */
  objects: number;
  /** Number of differences. */
  count: number;
  /** Pending directories (an unfinished restore): their entries are only in the archive and were not compared. */
  pendingDirs: number;
  /** Files not fully local yet: only their local blocks were compared. */
  remoteFiles: number;
  /** Xattrs the archive holds and this store's file system cannot (store/held-xattrs.ts): not compared. */
  heldXattrs: number;
  /** The differences, unless `onDifference` took them. */
  differences: Difference[];
}

/** At most this many differing block indices are listed in a 'content' difference. */
const LISTED_BLOCKS = 8;

export async function diffTree(opts: DiffOptions): Promise<DiffResult> {
  // Every local object is reached relative to the store root's descriptor:
  // a tree as deep as the mount allows never outgrows PATH_MAX by the store's path.
  return StoreDir.using(opts.store, (dir) => new DiffWalk(opts, dir).run());
}

function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

class DiffWalk {
  private readonly result: DiffResult = { objects: 0, count: 0, pendingDirs: 0, remoteFiles: 0, heldXattrs: 0, differences: [] };
  /** Xattrs the archive holds and the store cannot, by object (loaded at the first comparison). */
  private held: Map<ObjectId, Set<string>> | null = null;
  private readonly privateDir: string;
  /** dev:ino of a multiply-linked local object → the first path it was compared at. */
  private readonly localFirst = new Map<string, string>();
  /** Archive id of a multiply-linked object → the first path it was compared at. */
  private readonly archiveFirst = new Map<ObjectId, string>();
  private readonly wantContent: (st: LocalStat) => boolean;

  constructor(private readonly opts: DiffOptions, private readonly dir: StoreDir) {
    const c = opts.content ?? 'all';
    this.wantContent = c === 'all' ? () => true : c === 'none' ? () => false : c;
    this.privateDir = join(opts.store, RESERVED_NAME);
  }

  async run(): Promise<DiffResult> {
    const { archive, volume, store } = this.opts;
    if ((await archive.volumeState(volume)) === null) throw new ArchiveError('ENOVOLUME', `volume ${volume} does not exist on ${archive.url}`);
    const rootImage = await archive.dirImage(volume, ROOT_ID);
    const st = await this.dir.lstat('.');
    if (!st.isDirectory()) throw new Error(`store ${store} is not a directory`);
    this.result.objects++;
    const id = await readObjectId('.', this.dir.fd);
    if (id !== ROOT_ID) this.report('/', 'id', id, ROOT_ID);
    // A pending root is the archive's until it is materialised, as any pending directory (compareEntry): a crash in
    // the middle of its materialisation may have moved its mtime (recover-model, seed 1596257687: a kill -9 while a
    // readdir of a pending root linked a hard-linked file's name, then lookups that found their names in place).
    if (!(await isPending(this.privateDir, '.', this.dir.fd))) {
      for (const d of attrDifferences('dir', attrsFromStat(st), rootImage.attrs)) this.report('/', d.kind, d.local, d.archive);
    }
    await this.compareXattrs('/', '.', rootImage.xattrs, ROOT_ID);
    await this.walkDir('/', '.', rootImage, true);
    return this.result;
  }

  private report(path: string, kind: DiffKind, local?: DiffValue, archive?: DiffValue): void {
    const d: Difference = { path, kind };
    if (local !== undefined) d.local = local;
    if (archive !== undefined) d.archive = archive;
    this.result.count++;
    if (this.opts.onDifference) this.opts.onDifference(d);
    else this.result.differences.push(d);
  }

  /** `local`: the entry, or the store-relative path of an object not listed (the root); `id`: the archive's object. */
  private async compareXattrs(path: string, local: LocalEntry | string, archive: { readonly [name: string]: string }, id: ObjectId): Promise<void> {
    const held = (this.held ??= await allHeldXattrs(this.privateDir)).get(id);
    const d = xattrDifferences(await (typeof local === 'string' ? localXattrs(this.dir, local) : entryXattrs(this.dir, local)), archive, held);
    if (d) this.report(path, 'xattrs', d.local, d.archive);
    if (held !== undefined) this.result.heldXattrs += [...held].filter((n) => n in archive).length;
  }

  private async walkDir(nsPath: string, rel: string, image: DirImage, isRoot: boolean): Promise<void> {
    // A pending directory's names are the archive's until it is materialised:
    // a name not here yet is not a difference. But the entries lookups
    // materialised in it are objects like any other (a program may have
    // written into one), so those are compared, and descended into.
    const pending = await isPending(this.privateDir, rel, this.dir.fd);
    if (pending) this.result.pendingDirs++;
    const listed = await listLocalDir(this.dir, rel, isRoot, true);
    const remote = new Map(image.entries.map((e) => [e.name, e]));
    const locals = new Map(listed.filter((e) => !(pending && isMaterialisingTemp(e.name, remote))).map((e) => [e.name, e]));
    const names = (pending ? [...locals.keys()] : [...new Set([...locals.keys(), ...remote.keys()])]).sort(compareNames);
    const subdirs: { nsPath: string; rel: string; id: ObjectId }[] = [];
    for (const name of names) {
      this.opts.signal?.throwIfAborted();
      this.result.objects++;
      const path = childPath(nsPath, name);
      const l = locals.get(name);
      const a = remote.get(name);
      if (a === undefined) this.report(path, 'missing-on-archive', l!.type);
      else if (l === undefined) this.report(path, 'missing-locally', undefined, typeOfMode(a.attrs.mode));
      else if (await this.compareEntry(path, l, a, pending)) subdirs.push({ nsPath: path, rel: l.rel, id: a.id });
    }
    const ahead = new Lookahead(subdirs, (s) => this.opts.archive.dirImage(this.opts.volume, s.id), this.opts.lookahead ?? 4);
    for (let i = 0; i < subdirs.length; i++) {
      const s = subdirs[i]!;
      const img = await ahead.get(i);
      await this.walkDir(s.nsPath, s.rel, img!, false);
    }
  }

  /** Compares one name present on both sides; true when both are directories to descend into. */
  private async compareEntry(path: string, l: LocalEntry, a: EntryImage, inPendingDir: boolean): Promise<boolean> {
    const type: ObjectType = l.type;
    const atype = typeOfMode(a.attrs.mode);
    if (type !== atype) {
      this.report(path, 'type', type, atype);
      return false;
    }
    const listedId = listedObjectId(l);
    const id = listedId !== undefined ? listedId : await readObjectId(l.rel, this.dir.fd);
    if (id !== a.id) this.report(path, 'id', id, a.id);
    const attrs = attrsFromStat(l.st);
    // A pending directory is the archive's until it is materialised (a crash in the middle of one may have moved its mtime).
    const pending = type === 'dir' && (await isPending(this.privateDir, l.rel, this.dir.fd));
    if (!pending) for (const d of attrDifferences(type, attrs, a.attrs)) this.report(path, d.kind, d.local, d.archive);
    if (type === 'symlink') {
      const target = await localTarget(this.dir, l.rel);
      if (target !== (a.target ?? null)) this.report(path, 'target', target, a.target ?? null);
    }
    await this.compareXattrs(path, l, a.xattrs, a.id);
    if (type === 'dir') return true;
    this.compareLinks(path, l, a);
    if (type === 'file' && attrs.size === a.attrs.size && this.wantContent(l.st)) await this.compareContent(path, l, a, inPendingDir);
    return false;
  }

  /**
   * Hard links: a name's group is the first path (in walk order) of the
   * object it names. Both sides are walked in the same order over the names
   * they share, so equal groups give equal first paths.
   */
  private compareLinks(path: string, l: LocalEntry, a: EntryImage): void {
    let localGroup = path;
    if (l.st.nlink > 1n) {
      const key = `${l.st.dev}:${l.st.ino}`;
      const first = this.localFirst.get(key);
      if (first === undefined) this.localFirst.set(key, path);
      else localGroup = first;
    }
    let archiveGroup = path;
    if (a.nlink > 1) {
      const first = this.archiveFirst.get(a.id);
      if (first === undefined) this.archiveFirst.set(a.id, path);
      else archiveGroup = first;
    }
    if (localGroup !== archiveGroup) {
      this.report(path, 'hard-link', localGroup === path ? null : localGroup, archiveGroup === path ? null : archiveGroup);
    }
  }

  private async compareContent(path: string, l: LocalEntry, a: EntryImage, inPendingDir: boolean): Promise<void> {
    const skip = await remoteBlocksOf(this.privateDir, a.id);
    // A stub in a pending directory that a crash left without its block map
    // holds no byte yet (the next materialisation writes its map again, as
    // reconcile knows): all of it is still the archive's.
    const lostMap = skip === null && inPendingDir && l.st.blocks === 0n && l.st.size > 0n;
    if (skip !== null || lostMap) this.result.remoteFiles++;
    if (lostMap) return;
    const blocks = await this.opts.archive.fileBlocks(this.opts.volume, a.id);
    const listed: number[] = [];
    let n = 0;
    for await (const b of differingBlocks(this.dir, l.rel, Number(l.st.size), blocks, skip)) {
      if (listed.length < LISTED_BLOCKS) listed.push(b.index);
      n++;
    }
    if (n > 0) {
      const more = n > listed.length ? ` and ${n - listed.length} more` : '';
      this.report(path, 'content', `block${n > 1 ? 's' : ''} ${listed.join(', ')}${more} differ`, null);
    }
  }
}
