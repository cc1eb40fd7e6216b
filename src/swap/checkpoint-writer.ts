// `strata swap prepare --from checkpoint:NAME`: writes a local checkpoint's
// point-in-time tree (T0, docs/checkpoints.md) into the spare.
//
// The checkpoint is a lazy copy: what it saved (attributes, directory
// listings, the old contents of blocks before their first overwrite, whole
// objects before they lost their last name) is in its pre-image log; all the
// rest is still as it was at T0 in the live store. So the tree is read off
// both, with the checkpoint's own reader (src/checkpoint/view.ts):
//  - directories: the saved T0 listing, or the live one when its names never
//    changed (an object renamed since is found by its T0 key, a removed one
//    was saved whole);
//  - a regular file alive in the live store is copied from there with the
//    native addon's block copy (FICLONE where the file system shares blocks,
//    else a copy of its data extents), cut to its T0 size, and then every
//    block the checkpoint saved for it is copied over from the log
//    (copy_file_range); a file that is gone is made of its saved blocks;
//  - attributes and extended attributes: the saved ones, else the live ones.
// Bytes read from the checkpoint's log scale with what changed since T0;
// the rest is the block copy of the live files.
//
// Safe while programs change the live tree: before any change reaches the
// live store its pre-image is durable and in the checkpoint's maps (the
// guard, src/checkpoint/tracker.ts). So a block that differs from T0 in the
// copy was saved before the copy read it, and is in the map read *after* the
// copy; a file's attributes looked up after reading the live ones say whether
// the live ones are still T0's.
//
// No half states, resumable, as the archive source's writer (tree-writer.ts):
// each object is built under `.strata-swap.<id>` and renamed into place when
// complete; a rerun keeps the names in place with the same object id, removes
// leftover temporary names and builds the rest. A regular file takes two
// native calls on the thread pool, not twenty round trips: cloneTo opens the
// live file and copies it to the temporary name, then (the checkpoint's map
// read after the copy) finishFile sets its T0 size, copies its saved blocks
// from the log, sets its id, extended attributes, owner, mode and times and
// renames it into place, in the order the other objects get them.
// Object ids: the live object's
// (or the one the checkpoint saved with its attributes), else one derived from
// the checkpoint and the object's T0 key (the same on a rerun).
import { close, constants as C, fstat, type BigIntStats } from 'node:fs';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import * as native from '../native/index.js';
import { ROOT_ID, badNameReason, timeFromNs, type Attrs, type Time, type ObjectId } from '../protocol/records.js';
import { ID_XATTR, isPrivateXattr, readObjectId } from '../store/object-ids.js';
import { StoreDir, childRel } from '../store/store-dir.js';
import { LocalStore, RESERVED_NAME } from '../store/local-store.js';
import { applyAttrs } from '../restore/materialise.js';
import { forEachLimited } from '../util/each-limited.js';
import { BLOCK_SIZE, attrRecOf, type AttrRec, type CheckpointState, type ObjectKind } from '../checkpoint/state.js';
import { T0View, joinPath, kindOfDtype, lstatPath } from '../checkpoint/view.js';
import { SWAP_TEMP_PREFIX, type WriteProgress } from './tree-writer.js';
import { swapCrashPoint } from './crash-points.js';
import { heldXattrsDir } from '../store/held-xattrs.js';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';

export interface CheckpointWriterOptions {
  state: CheckpointState;
  /** The live store's root inode number (the checkpoint's T0 root). */
  rootIno: bigint;
  /** The live store root (absolute). */
  live: string;
  /** The live store's objects. */
  liveDir: StoreDir;
  /** The spare directory (absolute). */
  spare: string;
  progress: WriteProgress;
  cancelled?: () => boolean;
  /** Parallel file builds within one directory (default 4). */
  parallel?: number;
}

/** What an object of the spare gets: T0 attributes, extended attributes (values in base64), symbolic link target, object id. */
interface ObjectAttrs {
  attrs: Attrs;
  xattrs: Record<string, string>;
  target?: string;
  id: ObjectId;
  /**
   * The object had no id at T0 (a store that was not mirrored): `id` is
   * derived (derivedId), names its temporary, and is not written. An id the
   * object never had takes xattr room it may not have (its own attributes
   * can fill the space; checkpoint unit test, seeds 7-9).
   */
  idDerived: boolean;
}

/**
 * Runs `create`, which creates `tmp` with O_EXCL; when the name is taken (a
 * leftover of an object with the same id), removes it and runs it once more.
 */
async function withFreeTemp<T>(spare: StoreDir, tmp: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create();
  } catch (err) {
    if ((err as { code?: string }).code !== 'EEXIST') throw err;
    await spare.rmTree(tmp);
    return create();
  }
}

/** One entry of a T0 directory. */
interface T0Item {
  name: string;
  key: string;
  kind: ObjectKind;
}


/** Entries and regular-file bytes of the checkpoint's T0 tree, and the keys of objects with more than one T0 name. */
export async function checkpointTotals(state: CheckpointState, rootIno: bigint, liveDir: StoreDir): Promise<{ entries: number; bytes: number; multi: Set<string> }> {
  const view = new T0View(state, rootIno, liveDir);
  const seen = new Set<string>();
  const multi = new Set<string>();
  let entries = 0;
  let bytes = 0;
  const walk = async (key: string, at: string): Promise<void> => {
    for (const it of await t0Items(view, key, at)) {
      entries++;
      const p = joinPath(at, it.name);
      if (it.kind === 'dir') { await walk(it.key, (await view.whereIs(it.key, p)) ?? p); continue; }
      if (seen.has(it.key)) { multi.add(it.key); continue; }
      seen.add(it.key);
      if (it.kind === 'file') bytes += await t0Size(view, it.key, p);
    }
  };
  await walk(view.rootKey, '/');
  return { entries, bytes, multi };
}

async function t0Items(view: T0View, key: string, at: string): Promise<T0Item[]> {
  return itemsOf(view, key, (await view.listing(key, at)) ?? []);
}

function itemsOf(view: T0View, key: string, list: readonly (readonly [string, string, number])[]): T0Item[] {
  return list
    // A name that cannot be one entry (never from a real directory) is never joined to a spare path.
    .filter(([name]) => badNameReason(name) === null && !(key === view.rootKey && name === RESERVED_NAME))
    .map(([name, k, dtype]) => ({ name, key: k, kind: view.attrs(k)?.kind ?? kindOfDtype(dtype) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function t0Size(view: T0View, key: string, hint: string): Promise<number> {
  const rec = view.attrs(key);
  if (rec) return rec.size;
  // The T0 path first (one lstat), then a lookup.
  const here = await lstatPath(view.dir, hint);
  if (here !== null && view.keyOf(here) === key) return Number(here.size);
  const at = (await view.locate(key, hint))[0];
  const st = at === undefined ? null : await view.dir.lstat(LocalStore.relative(at)).catch(() => null);
  return st ? Number(st.size) : 0;
}

/** How long a live object the index missed is looked for (doubling waits from 10 ms, about 5 s in all). */
const MISSED_WAIT_MS = 2560;
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const O_NOFOLLOW = C.O_NOFOLLOW;

function cancelledError(): Error {
  return Object.assign(new Error('prepare cancelled'), { code: 'ECANCELED' });
}

class Writer {
  private view: T0View;
  /** Objects with several T0 names: the spare-relative path of the first one placed. */
  private readonly links = new Map<string, string>();
  /** Object ids of the files whose T0 contents differ from the live ones (blocks saved since T0). */
  readonly changed = new Set<ObjectId>();

  /**
   * `spare`: the spare's layer (relative to its root's descriptor, so a deep
   * tree never outgrows PATH_MAX by the spare's path); every spare path below
   * is relative to it.
   */
  constructor(private readonly o: CheckpointWriterOptions, private readonly multi: Set<string>, private readonly spare: StoreDir) {
    this.view = new T0View(o.state, o.rootIno, o.liveDir);
  }

  private get s(): CheckpointState {
    return this.o.state;
  }

  async run(): Promise<void> {
    await this.writeDir(this.view.rootKey, '/', '');
    const root = await this.attrsOf(this.view.rootKey, '/');
    await applyAttrs(this.spare, '.', root.attrs, root.xattrs, { id: ROOT_ID });
    if (this.s.info.status !== 'valid') {
      throw new Error(`checkpoint ${this.s.info.name} became invalid while the spare was written (${this.s.info.reason ?? 'unknown'}): its tree is not complete; \`strata swap discard\` the spare`);
    }
  }

  /** Writes the entries of T0 directory `key` (live at `at`) into the spare directory `rel`. */
  private async writeDir(key: string, at: string, rel: string): Promise<void> {
    // The names already in place (a rerun): nothing else writes into the spare, so this listing answers for every entry (no lstat each).
    const present = new Set<string>();
    for (const { name: n } of await this.spare.readdirIno(rel === '' ? '.' : rel)) {
      if (n.startsWith(SWAP_TEMP_PREFIX)) await this.spare.rmTree(childRel(rel, n));
      else present.add(n);
    }
    const items = await this.items(key, at);
    const simple = items.filter((i) => i.kind !== 'dir' && !this.multi.has(i.key));
    const ordered = items.filter((i) => i.kind === 'dir' || this.multi.has(i.key));
    await forEachLimited(simple, Math.max(1, this.o.parallel ?? 4), async (it) => {
      if (this.o.cancelled?.()) throw cancelledError();
      await this.place(it, at, rel, present.has(it.name));
    });
    for (const it of ordered) {
      if (this.o.cancelled?.()) throw cancelledError();
      await this.place(it, at, rel, present.has(it.name));
      if (it.kind === 'dir') {
        const hint = joinPath(at, it.name);
        const liveAt = (await this.view.whereIs(it.key, hint)) ?? hint;
        const subRel = childRel(rel, it.name);
        await this.writeDir(it.key, liveAt, subRel);
        const a = await this.attrsOf(it.key, liveAt);
        await applyAttrs(this.spare, subRel, a.attrs, a.xattrs);
      }
    }
  }

  private async place(it: T0Item, at: string, rel: string, inPlace: boolean): Promise<void> {
    const final = childRel(rel, it.name);
    const hint = joinPath(at, it.name);
    const p = this.o.progress;
    p.entries++;
    const first = this.links.get(it.key);
    if (inPlace) {
      if (it.kind === 'file' && this.s.blocks.has(it.key)) {
        const id = await readObjectId(final, this.spare.fd);
        if (id !== null) this.changed.add(id);
      }
      if (it.kind === 'file' && first === undefined) p.bytes += Number((await this.spare.lstat(final)).size);
      if (this.multi.has(it.key) && first === undefined) this.links.set(it.key, final);
      p.kept++;
      return;
    }
    if (first !== undefined) {
      await this.spare.link(first, final);
      swapCrashPoint('swap-prepare-object');
      return;
    }
    const a = await this.attrsOf(it.key, hint);
    const tmp = childRel(rel, `${SWAP_TEMP_PREFIX}${a.id}`);
    if (it.kind === 'file') {
      // One native call copies the live file, one more finishes it (log blocks, id, attributes, times) and renames it into place.
      await this.buildFile(it.key, hint, tmp, a, final);
      p.bytes += a.attrs.size;
      if (this.s.blocks.has(it.key) && !a.idDerived) this.changed.add(a.id);
    } else {
      await this.spare.rmTree(tmp);
      switch (it.kind) {
        case 'dir':
          await this.spare.mkdir(tmp, 0o700);
          break;
        case 'symlink':
          if (a.target === undefined) throw new Error(`prepare: checkpoint ${this.s.info.name} has no target of the symbolic link ${hint}`);
          await this.spare.symlink(a.target, tmp);
          break;
        case 'other':
          await this.spare.mknod(tmp, a.attrs.mode, a.attrs.rdev);
          break;
      }
      await applyAttrs(this.spare, tmp, a.attrs, a.xattrs, a.idDerived ? {} : { id: a.id });
      await this.spare.rename(tmp, final);
    }
    if (this.multi.has(it.key)) this.links.set(it.key, final);
    swapCrashPoint('swap-prepare-object');
  }

  /**
   * The T0 entries of directory `key` (live at `at`, or moved). A directory
   * the checkpoint has no listing of never changed its names, so it is alive
   * somewhere: when the index of the live tree misses it (a program moved it,
   * or a directory above it, while the index was made), looked for again with
   * a fresh one, a little later each time; an error, never an empty
   * directory, when it stays unfound.
   */
  private async items(key: string, at: string): Promise<T0Item[]> {
    const list = await this.lookAgain(`the directory ${at} (object ${key} of checkpoint ${this.s.info.name}) was not found in the live store and the checkpoint has no listing of it`,
      async () => (await this.view.listing(key, at)) ?? undefined);
    return itemsOf(this.view, key, list);
  }

  /**
   * Runs `look` until it gives an answer (not undefined), with a fresh index
   * of the live tree and a doubling wait (10 ms on, about 5 s in all) between
   * tries: programs may be moving what it looks for. An error saying `what`
   * when it never does (run prepare again), never a guess.
   */
  private async lookAgain<T>(what: string, look: () => Promise<T | undefined>): Promise<T> {
    for (let wait = 10; ; wait *= 2) {
      const found = await look();
      if (found !== undefined) return found;
      if (wait > MISSED_WAIT_MS) throw new Error(`prepare: ${what} (programs kept moving it while prepare looked): run prepare again`);
      await sleep(wait);
      this.view = new T0View(this.s, this.o.rootIno, this.o.liveDir);
    }
  }

  /**
   * A live path of T0 object `key`, whose attributes the checkpoint has not
   * saved: it never changed, so it is alive somewhere, unless it was saved
   * meanwhile (null then: the saved attributes answer). Looked for again
   * with a fresh index of the live tree, a little later each time, when
   * programs keep moving it; an error when it stays unfound.
   */
  private findMoved(key: string, hint: string): Promise<string | null> {
    return this.lookAgain(`${hint} (object ${key} of checkpoint ${this.s.info.name}) was not found in the live store and the checkpoint has not saved it`, async () => {
      const at = (await this.locate(key, hint))[0];
      return at !== undefined ? at : this.s.attrs.has(key) ? null : undefined;
    });
  }

  /** Live paths of T0 object `key`; when none, once more with a fresh index of the live tree (a program may have moved it since the index was made). */
  private async locate(key: string, hint: string): Promise<string[]> {
    const found = await this.view.locate(key, hint);
    if (found.length > 0) return found;
    this.view = new T0View(this.s, this.o.rootIno, this.o.liveDir);
    return this.view.locate(key, hint);
  }

  /**
   * Creates `tmp` as a copy of the live object of T0 `key` (checked to be that
   * object by its inode), or resolves null when it is gone. The first try is
   * the T0 path itself (no lookup); then the live paths of the checkpoint's
   * index, refreshed when a program moved the object meanwhile.
   */
  private async cloneLive(key: string, hint: string, tmp: string): Promise<native.CloneToResult | null> {
    const tryAt = async (at: string): Promise<native.CloneToResult | null> => {
      const r = await withFreeTemp(this.spare, tmp, () => this.o.liveDir.cloneTo(LocalStore.relative(at), tmp, 0o600, this.spare));
      if (r === null || !r.isFile) return null;
      if (this.s.canon(r.ino) === key) return r;
      await this.spare.unlink(tmp);
      return null;
    };
    const first = await tryAt(hint);
    if (first !== null) return first;
    for (let attempt = 0; attempt < 3; attempt++) {
      // A program may move it between the lookup and the open: look again with a fresh index.
      if (attempt > 0) this.view = new T0View(this.s, this.o.rootIno, this.o.liveDir);
      const paths = await this.view.locate(key, hint);
      if (paths.length === 0) return null;
      for (const at of paths) {
        const r = await tryAt(at);
        if (r !== null) return r;
      }
    }
    return null;
  }

  /**
   * Builds regular file `key` under `tmp` and renames it to `final`, the
   * order of the other objects (contents, id, extended attributes, owner,
   * mode, times, rename) in two native calls: the block copy of the live
   * file, then the rest.
   */
  private async buildFile(key: string, hint: string, tmp: string, a: ObjectAttrs, final: string): Promise<void> {
    // Not found alive: gone only when saved whole (before it lost its last name). Otherwise a
    // program kept moving it while the live tree was indexed: looked for again, a little later
    // each time. Until 2026-12-05 such a file was made of the blocks saved so far (zeros).
    const src = await this.lookAgain(`${hint} (object ${key} of checkpoint ${this.s.info.name}) was not found in the live store and the checkpoint has not saved it whole`, async () => {
      const r = await this.cloneLive(key, hint, tmp);
      return r !== null || this.s.savedWhole(key) ? r : undefined;
    });
    // Looked up after the copy: a change the copy may have seen was saved before it was made.
    const rec = this.s.attrs.get(key);
    if (src === null && rec === undefined) {
      throw new Error(`prepare: ${hint} (object ${key} of checkpoint ${this.s.info.name}) is neither in the live store nor saved in the checkpoint`);
    }
    const copied = src !== null ? src.size ?? 0 : 0;
    this.o.progress.copiedBytes += copied;
    const size = rec !== undefined ? rec.size : copied;
    const ranges: [number, number, number][] = [];
    for (const [b, w] of this.s.savedBlocks(key)) {
      const off = b * BLOCK_SIZE;
      if (off >= size) continue;
      ranges.push([w.off, off, Math.min(w.len, size - off)]);
    }
    const xattrs: [string, Buffer][] = a.idDerived ? [] : [[ID_XATTR, Buffer.from(a.id, 'latin1')]];
    for (const [name, value] of Object.entries(a.xattrs)) {
      if (!isPrivateXattr(name)) xattrs.push([name, Buffer.from(value, 'base64')]);
    }
    const t = a.attrs;
    const finish = (): Promise<number> => this.spare.finishFile(tmp, {
      // Exactly the checkpoint's ACLs: none inherited from a default ACL of the spare's directory.
      create: src === null, size, log: { fd: this.s.log.fd, ranges }, dropAcls: true, xattrs,
      owner: { uid: t.uid, gid: t.gid }, mode: t.mode & 0o7777,
      times: { atime: { sec: t.atime[0], nsec: t.atime[1] }, mtime: { sec: t.mtime[0], nsec: t.mtime[1] } },
      rename: final,
    });
    try {
      // Awaited first, then added: `x += await y` would add to the x read before the await (lost updates between parallel builds).
      const fromLog = src === null ? await withFreeTemp(this.spare, tmp, finish) : await finish();
      this.o.progress.logBytes += fromLog;
    } catch (err) {
      if ((err as { code?: string }).code === 'ENODATA' && (err as { syscall?: string }).syscall === 'copy_file_range') {
        throw new Error(`prepare: short read of checkpoint ${this.s.info.name}'s log (${this.s.log.path})`);
      }
      throw err;
    }
  }

  /**
   * The live attributes of T0 object `key` at namespace path `path` (its
   * extended attributes, id and link target too), or null when the name is
   * gone or holds another object now. Read through one O_PATH descriptor of
   * what the name holds, its key checked on that descriptor: a rename between
   * a look at the name and the reads by name could otherwise give another
   * object's extended attributes, id or link target, or fail with ENOENT
   * (concurrent-namespace, seed 1925438298, 2026-12-05: `readlink 'd1/n0'`).
   */
  private async liveAttrsAt(key: string, path: string): Promise<AttrRec | null> {
    let fd: number;
    try {
      fd = await this.o.liveDir.open(LocalStore.relative(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw err;
    }
    try {
      const st = await new Promise<BigIntStats>((resolve, reject) => fstat(fd, { bigint: true }, (err, s) => (err ? reject(err) : resolve(s))));
      if (this.view.keyOf(st) !== key) return null;
      const [xs, target] = await Promise.all([native.readXattrs('', fd), st.isSymbolicLink() ? native.readlinkAt(fd, '') : undefined]);
      return attrRecOf(st, xs, target);
    } finally {
      close(fd, () => {});
    }
  }

  /** The T0 attributes, extended attributes, symbolic link target and object id of T0 object `key` (live at `hint` when it never changed). */
  private async attrsOf(key: string, hint: string): Promise<ObjectAttrs> {
    let rec = this.s.attrs.get(key);
    let livePath: string | null = null;
    /** The live id was read with the live attributes (readXattrs): none there means none to read again. */
    let idRead = false;
    // Never changed (nothing saved): it is alive, maybe moved. Saved without an id (an older log): its live id, if it is alive.
    if (rec === undefined) {
      const fast = await this.liveAttrsAt(key, hint);
      if (fast !== null) {
        // Saved meanwhile: the live attributes may already be past T0.
        rec = this.s.attrs.get(key) ?? fast;
        idRead = rec === fast;
        livePath = hint;
      } else {
        livePath = await this.findMoved(key, hint);
      }
    } else if (rec.oid === undefined && key !== this.view.rootKey) livePath = (await this.view.locate(key, hint))[0] ?? null;
    for (let tries = 0; rec === undefined; tries++) {
      // Saved meanwhile (findMoved found it gone from the live tree): the saved attributes.
      if (livePath === null) rec = this.s.attrs.get(key);
      if (rec !== undefined) break;
      if (livePath === null) throw new Error(`prepare: ${hint} (object ${key} of checkpoint ${this.s.info.name}) is neither in the live store nor saved in the checkpoint`);
      const live = await this.liveAttrsAt(key, livePath);
      // Moved again (or replaced) since it was found: looked for once more.
      if (live === null) {
        if (tries >= 8) throw new Error(`prepare: ${hint} (object ${key} of checkpoint ${this.s.info.name}) kept moving while prepare read its attributes: run prepare again`);
        livePath = await this.findMoved(key, hint);
        continue;
      }
      // Saved meanwhile: the live attributes may already be past T0.
      rec = this.s.attrs.get(key) ?? live;
      idRead = rec === live;
    }
    let id: ObjectId | null = key === this.view.rootKey ? ROOT_ID : rec.oid ?? null;
    if (id === null && livePath !== null && !idRead) id = await readObjectId(LocalStore.relative(livePath), this.o.liveDir.fd).catch(() => null);
    const idDerived = id === null;
    if (id === null) id = derivedId(this.s.info.id, key);
    return { attrs: toAttrs(rec), xattrs: Object.fromEntries(rec.xattrs), ...(rec.target !== undefined ? { target: rec.target } : {}), id, idDerived };
  }
}

function toTime(ns: string): Time {
  return timeFromNs(BigInt(ns));
}

function toAttrs(r: AttrRec): Attrs {
  return { mode: r.mode, uid: r.uid, gid: r.gid, size: r.size, atime: toTime(r.atimeNs), mtime: toTime(r.mtimeNs), rdev: r.rdev };
}

/** An object id for a T0 object that has none (the same on every run). */
function derivedId(checkpointId: string, key: string): ObjectId {
  const id = createHash('sha256').update(`strata checkpoint ${checkpointId} object ${key}`).digest('hex').slice(0, 32);
  return id === ROOT_ID ? derivedId(checkpointId, `${key}'`) : id;
}

/**
 * Writes the checkpoint's T0 tree into the spare (resuming a partial one).
 * `multi`: from checkpointTotals. Returns the object ids of the files whose
 * contents changed since the checkpoint: a mirrored commit compares them with
 * the archive whatever their size and mtime (a program may have put those back).
 */
export async function writeCheckpointTree(o: CheckpointWriterOptions, multi: Set<string>): Promise<ObjectId[]> {
  // The live objects' xattrs that only the archive holds (a store whose file system cannot: store/held-xattrs.ts)
  // are not in the checkpoint either: the spare keeps their records, or the commit would remove them from the archive.
  await cp(heldXattrsDir(join(o.live, RESERVED_NAME)), heldXattrsDir(join(o.spare, RESERVED_NAME)), { recursive: true, force: true })
    .catch((err: unknown) => { if ((err as { code?: string }).code !== 'ENOENT') throw err; });
  return StoreDir.using(o.spare, async (spare) => {
    const w = new Writer(o, multi, spare);
    await w.run();
    return [...w.changed].sort();
  });
}
