// Materialisation: turning one directory image from the archive into local
// objects under a pending directory — subdirectories (pending, or restored
// when the caller says so), files as stubs (right size and attributes, a block
// map, no data), symlinks, fifos, sockets and devices — each with its id,
// owner, mode, times and extended attributes.
//
// No half states (I4): each object is built under a temporary name
// (MATERIALISING_PREFIX + id; a hard-linked one beside its registry name in
// the private directory, every name of it a link) and renamed to its name
// only once complete; a rerun after a crash removes leftover temporary
// names, keeps the names that are already in place (same id) and creates
// the rest. The directory stays
// pending until the caller clears the mark after this returns, so nothing
// but materialisation ever changes a pending directory's entries.
import * as native from '../native/index.js';
import type { DirImage, EntryImage } from '../protocol/images.js';
import { ROOT_ID, badNameReason, isZero, typeOfMode, type Attrs, type ObjectId } from '../protocol/records.js';
import { RESERVED_NAME } from '../store/local-store.js';
import type { StoreDir } from '../store/store-dir.js';
import { ID_XATTR, isXattrSpaceFull, readObjectId } from '../store/object-ids.js';
import {
  MATERIALISING_PREFIX, clearLinking, clearUnrestoredNames, isMaterialisingTemp, linkPath, markPendingAside, moveMarksAside, pendingMarkXattr, readBlockMap, setLinking, setUnrestoredNames, settleLinking, unrestoredNames, writeEmptyMap, type FileTimes,
} from '../store/restore-marks.js';
import { writeHeldXattrs } from '../store/held-xattrs.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';
import { forEachLimited } from '../util/each-limited.js';

export interface MaterialiseOptions {
  /** The store's objects (store-relative paths; absolute ones, such as the link registry's, as they are). */
  dir: StoreDir;
  /** The store's private directory (block maps, link registry). */
  privateDir: string;
  /** Subdirectories are created pending (true) or as restored, empty directories (false). */
  childDirsPending: boolean;
  log: Logger;
  /**
   * The data of a small single-link file, to create it whole instead of as a
   * stub (the background restore); null: a stub after all.
   */
  fileData?: (entry: EntryImage) => Promise<Buffer | null>;
  /**
   * Runs `f` (a new name linked to a hard-linked object, and its count of
   * names still in the archive lowered) so that the object's link count is
   * never read between the two (`stat` takes the same lock).
   */
  namesLock?: <T>(id: ObjectId, f: () => Promise<T>) => Promise<T>;
  /**
   * Runs `f`, which changes the existing object `ino` (a file whose block map
   * is made again), so that nobody keeps vouching for it as settled
   * (OnDemandRestore.settleWatch).
   */
  unsettling?: <T>(ino: bigint, f: () => Promise<T>) => Promise<T>;
}

/** Files up to this size may be created whole when `fileData` is given. */
export const WHOLE_FILE_MAX_BYTES = 1024 * 1024;

export interface MaterialiseResult {
  /** Objects created by this run (names already in place are not counted). */
  created: number;
  /** Names of files created whole (with their data). */
  whole: Set<string>;
  /** The image's subdirectories: name and id. */
  subdirs: { name: string; id: ObjectId }[];
}

/**
 * Creates the entries of `image` inside the directory at `dirPath` (a
 * store-relative path, or /proc/self/fd/N of an open directory).
 */
export async function materialiseEntries(dirPath: string, image: DirImage, options: MaterialiseOptions): Promise<MaterialiseResult> {
  const opts = options;
  const present = new Set((await opts.dir.readdirIno(dirPath)).map((e) => e.name));
  const wanted = new Set(image.entries.map((e) => e.name));
  // Leftovers of a run that crashed between creating an object and renaming it into place.
  for (const name of present) {
    if (isMaterialisingTemp(name, wanted)) {
      await opts.dir.rmTree(`${dirPath}/${name}`);
      present.delete(name);
    }
  }
  const out: MaterialiseResult = { created: 0, whole: new Set(), subdirs: [] };
  const single: EntryImage[] = [];
  const multi: EntryImage[] = [];
  for (const entry of image.entries) {
    const bad = entry.name === RESERVED_NAME && image.id === ROOT_ID ? `${RESERVED_NAME} is reserved by strata` : badNameReason(entry.name);
    if (bad !== null) {
      opts.log.error({ dir: image.id, id: entry.id, reason: bad }, 'restore: the archive sent an entry with a bad name; skipped');
      continue;
    }
    if (typeOfMode(entry.attrs.mode) === 'dir') out.subdirs.push({ name: entry.name, id: entry.id });
    (typeOfMode(entry.attrs.mode) !== 'dir' && entry.nlink > 1 ? multi : single).push(entry);
  }
  const one = async (entry: EntryImage): Promise<void> => {
    if (present.has(entry.name)) {
      await checkInPlace(`${dirPath}/${entry.name}`, entry, opts);
      return;
    }
    if (await materialiseEntry(dirPath, entry, opts)) out.whole.add(entry.name);
    out.created++;
  };
  // Objects with one name are independent: several at a time. The names of
  // hard-linked objects share a registry entry (and a temporary name): in turn.
  await forEachLimited(single, MATERIALISE_PARALLEL, one);
  for (const entry of multi) await one(entry);
  return out;
}

/** Objects of one directory built at the same time. */
const MATERIALISE_PARALLEL = 16;

/**
 * Materialises one entry of a pending directory (a lookup's): false when its
 * name is already in place. A temporary name left by a crash goes when met.
 */
export async function materialiseOne(dirPath: string, entry: EntryImage, opts: MaterialiseOptions): Promise<boolean> {
  if (badNameReason(entry.name) !== null) return false;
  const path = `${dirPath}/${entry.name}`;
  try {
    await opts.dir.lstat(path);
    await checkInPlace(path, entry, opts);
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  try {
    await materialiseEntry(dirPath, entry, opts);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EEXIST') throw err;
    // A temporary name left by a crash: away with it, and again.
    await opts.dir.rmTree(`${dirPath}/${MATERIALISING_PREFIX}${entry.id}`);
    await materialiseEntry(dirPath, entry, opts);
  }
  return true;
}

/** A name already in place (an earlier run got this far): it must be this object. */
async function checkInPlace(path: string, entry: EntryImage, opts: MaterialiseOptions): Promise<void> {
  const id = await readObjectId(path, opts.dir.fd);
  if (id !== entry.id) {
    throw new Error(`restore: ${path} holds object ${id ?? '(none)'}, the archive says ${entry.id}; the store was changed outside strata`);
  }
  // A single-link file's map is written before its rename; should it be lost
  // anyway, the file has no data yet (its directory is still pending).
  if (typeOfMode(entry.attrs.mode) === 'file' && entry.nlink === 1 && entry.attrs.size > 0 &&
      (await readBlockMap(opts.privateDir, entry.id)) === null) {
    const st = await opts.dir.lstat(path);
    if (st.blocks === 0n) {
      // Its data becomes remote again: no longer settled (the FUSE thread's answers).
      const remake = async (): Promise<void> => { await writeEmptyMap(opts.privateDir, entry.id, entry.attrs.size); };
      await (opts.unsettling ? opts.unsettling(st.ino, remake) : remake());
      crashPoint('map-recreated');
    }
  }
}

/** Creates one entry under its temporary name, then renames it into place; true when a file was created whole. */
async function materialiseEntry(dirPath: string, entry: EntryImage, opts: MaterialiseOptions): Promise<boolean> {
  const type = typeOfMode(entry.attrs.mode);
  if (type === 'dir' || entry.nlink <= 1) return createInPlace(dirPath, entry, opts);
  // A hard-linked object: its names in different directories may be
  // materialised at the same time (a rename between two pending directories,
  // the background restore's directories): one at a time, so that exactly one
  // of them creates the object and the others link to it.
  const body = async (): Promise<boolean> => {
    // Every name of this object, the first one too, is a link of the
    // registry name, which stays until the restore is complete, so that the
    // object is never created twice. The first name's lookup makes it.
    const final = `${dirPath}/${entry.name}`;
    const registry = linkPath(opts.privateDir, entry.id);
    const at = opts.dir.fd;
    const registered = await opts.dir.lstat(registry).then(() => true, (err: unknown) => {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
      return false;
    });
    if (!registered) await createRegistered(registry, entry, opts);
    // The count is lowered with the link as one step a crash cannot split (LINKING_XATTR).
    await settleLinking(opts.privateDir, registry, at);
    const left = await unrestoredNames(opts.privateDir, registry, at);
    const counted = left !== null && left > 0;
    if (counted) await setLinking(opts.privateDir, registry, left - 1, Number((await opts.dir.lstat(registry)).nlink) + 1, at);
    try {
      await opts.dir.link(registry, final);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EMLINK') throw err;
      await lastNameAtLinkLimit(registry, final, entry, left, opts);
      return false;
    }
    crashPoint('registry-linked');
    if (counted) {
      await setUnrestoredNames(opts.privateDir, final, left - 1, at);
      await clearLinking(opts.privateDir, final, at);
    }
    return false;
  };
  return opts.namesLock ? opts.namesLock(entry.id, body) : body();
}

/**
 * A hard-linked object's last name when its link count is at the store's
 * file system's limit (ext4: 65 000; the registry name is one link more than
 * the object's names): the registry name itself becomes that name, which it
 * would have stopped being needed for anyway. Until 2026-12-06 the link
 * failed with EMLINK and a volume with a file of 65 000 names could not be
 * recovered at all. A crash before the rename leaves the registry name and
 * its count as they were (the link did not happen); after it, the registry
 * name is gone and stat counts the object's own links.
 */
async function lastNameAtLinkLimit(registry: string, final: string, entry: EntryImage, left: number | null, opts: MaterialiseOptions): Promise<void> {
  const at = opts.dir.fd;
  if (left === null || left > 1) {
    const max = Number((await opts.dir.lstat(registry)).nlink) - 1;
    throw Object.assign(new Error(`restore: ${final}: the store's file system allows ${max} names of one file, and object ${entry.id} has ${entry.nlink} in the archive`), { code: 'EMLINK' });
  }
  await clearLinking(opts.privateDir, registry, at);
  await opts.dir.rename(registry, final, true);
  crashPoint('registry-linked');
  await clearUnrestoredNames(opts.privateDir, final, at);
}

/**
 * The object of a hard-linked entry, made under the registry name `registry`
 * with none of its names in place yet: all `entry.nlink` of them are still
 * only in the archive, which its count of unrestored names says (`stat`
 * adds them). Built under a temporary name beside the registry name and
 * renamed to it once complete: a crash leaves either nothing but that
 * temporary name (removed when the object is made again) or the registry
 * name alone, never a name of the object in a directory. (Until 2026-12-05
 * the object was built under a temporary name in the name's directory and
 * linked to the registry before its rename into place: a crash between the
 * two left a temporary name that was one more link of the object, and `stat`
 * showed one link too many, or once it was removed one too few, until the
 * restore completed; recover-model, seed 715425772.)
 */
async function createRegistered(registry: string, entry: EntryImage, opts: MaterialiseOptions): Promise<void> {
  const tmp = `${registry.slice(0, registry.lastIndexOf('/') + 1)}${MATERIALISING_PREFIX}${entry.id}`;
  await opts.dir.rmTree(tmp);
  await createObject(tmp, entry, opts);
  crashPoint('materialise-object');
  await setUnrestoredNames(opts.privateDir, tmp, entry.nlink, opts.dir.fd, entry.id);
  await opts.dir.rename(tmp, registry);
  crashPoint('registry-created');
}

/** Creates the object of a single-link entry (or a directory) under its temporary name and renames it into place. */
async function createInPlace(dirPath: string, entry: EntryImage, opts: MaterialiseOptions): Promise<boolean> {
  const tmp = `${dirPath}/${MATERIALISING_PREFIX}${entry.id}`;
  const a = entry.attrs;
  if (opts.fileData && typeOfMode(a.mode) === 'file' && entry.nlink === 1 && a.size > 0 && a.size <= WHOLE_FILE_MAX_BYTES) {
    const data = await opts.fileData(entry);
    if (data !== null && data.length === a.size) {
      // A small file whole: created under its temporary name with its data,
      // id, xattrs, owner, mode and times, and renamed into place, in one
      // native call (a crash before the rename leaves only the temporary
      // name, which a rerun removes). Its bytes, like a map, reach the disk
      // no later than the rename that shows it (ext4 data=ordered, xfs).
      const plan = attrsPlan(a, entry.xattrs, [[ID_XATTR, Buffer.from(entry.id, 'latin1')]]);
      // The crash point comes first: the rename is part of the one call.
      crashPoint('materialise-object');
      try {
        await opts.dir.finishFile(tmp, {
          create: true, size: a.size, ...(isZero(data) ? {} : { data }), dropAcls: true, xattrs: plan.xattrs ?? [],
          owner: { uid: a.uid, gid: a.gid }, mode: a.mode & 0o7777, times: timesOf(a), rename: `${dirPath}/${entry.name}`,
        });
        return true;
      } catch (err) {
        // Its xattrs do not all fit this store (held-xattrs.ts): made as a stub below, with those that do.
        if (!isXattrSpaceFull(err)) throw err;
        await opts.dir.rmTree(tmp);
      }
    }
  }
  // A stub (or no data after all: a program waits for the directory).
  await createObject(tmp, entry, opts);
  crashPoint('materialise-object');
  await opts.dir.rename(tmp, `${dirPath}/${entry.name}`);
  return false;
}

/** Creates one object at `path` with everything but its final name (a file as a stub). */
async function createObject(path: string, entry: EntryImage, opts: MaterialiseOptions): Promise<void> {
  const a = entry.attrs;
  const type = typeOfMode(a.mode);
  const id: [string, Buffer] = [ID_XATTR, Buffer.from(entry.id, 'latin1')];
  switch (type) {
    case 'dir': {
      // One call: the directory, its id, pending mark (with the archive's times and link count), xattrs, owner, mode.
      // The id first, as on the primary: where ext4 puts an attribute (the inode, or its block) depends on the order.
      const marks: [string, Buffer][] = opts.childDirsPending ? [pendingMarkXattr(entry.nlink, timesOf(a))] : [];
      try {
        await opts.dir.prepareObject(path, { create: { kind: 'dir', mode: a.mode & 0o777 }, ...attrsPlan(a, entry.xattrs, [id, ...marks]) });
      } catch (err) {
        if (!isXattrSpaceFull(err)) throw err;
        // Its own xattrs fill the space (as they did on the primary): the mark goes aside, made before the
        // directory; and what does not fit even then is held by the archive (prepareHolding).
        await opts.dir.rmTree(path);
        if (marks.length > 0) await markPendingAside(opts.privateDir, entry.id, entry.nlink, timesOf(a));
        await prepareHolding(opts, path, { create: { kind: 'dir', mode: a.mode & 0o777 }, ...attrsPlan(a, entry.xattrs, [id]) }, entry.id, entry.name);
      }
      crashPoint('attrs-before-times');
      await setTimes(opts.dir, path, a);
      return;
    }
    case 'file': {
      // A stub (small files whole are createInPlace's).
      await opts.dir.prepareObject(path, { create: { kind: 'file', mode: a.mode & 0o777, size: a.size } });
      if (a.size > 0) await writeEmptyMap(opts.privateDir, entry.id, a.size);
      if (a.size > 0) crashPoint('map-created');
      break;
    }
    case 'symlink':
      if (entry.target === undefined) throw new Error(`restore: symlink ${entry.id} has no target in the archive`);
      await opts.dir.symlink(entry.target, path);
      break;
    case 'fifo': case 'socket': case 'chardev': case 'blockdev':
      await opts.dir.mknod(path, a.mode, a.rdev);
      break;
    default:
      throw new Error(`restore: object ${entry.id} has an unknown type (mode 0${a.mode.toString(8)})`);
  }
  await prepareHolding(opts, path, attrsPlan(a, entry.xattrs, [id]), entry.id, entry.name);
  crashPoint('attrs-before-times');
  await setTimes(opts.dir, path, a);
}

/**
 * prepareObject, and when the object's xattrs do not all fit this store's
 * file system (ENOSPC or E2BIG from setxattr while the disk has room: a
 * volume from an XFS primary on ext4), the object gets strata's own marks,
 * then as many of its xattrs as fit, in the archive's order, then its owner
 * and mode; the names of the others are recorded durably before it gets its
 * name (held-xattrs.ts), and logged as an error. Until 2026-12-06 such an
 * object failed its whole directory: `ls` said ENOSPC, files beside it could
 * not be opened, and the background restore retried forever.
 */
async function prepareHolding(opts: Pick<MaterialiseOptions, 'dir' | 'privateDir' | 'log'>, path: string, plan: native.PrepareObject, id: ObjectId, name?: string): Promise<void> {
  try {
    await opts.dir.prepareObject(path, plan);
    return;
  } catch (err) {
    if (!isXattrSpaceFull(err) || !(await objectExists(opts.dir, path)) || !(await hasRoomFor(opts.dir))) throw err;
  }
  const own = (name: string): boolean => name === ID_XATTR || name.startsWith('trusted.strata.');
  // What the failed call set goes, so that they are set again in the archive's order.
  for (const name of await opts.dir.listxattr(path)) {
    if (!own(name)) await opts.dir.removexattr(path, name).catch(ignoreNoData);
  }
  const xattrs = plan.xattrs ?? [];
  await opts.dir.prepareObject(path, { xattrs: xattrs.filter(([n]) => own(n)), dropAcls: plan.dropAcls ?? false });
  const held: string[] = [];
  for (const [name, value] of xattrs) {
    if (own(name)) continue;
    try {
      await opts.dir.setxattr(path, name, value, 0);
    } catch (err) {
      if (!isXattrSpaceFull(err)) throw err;
      held.push(name);
    }
  }
  await writeHeldXattrs(opts.privateDir, id, held);
  if (held.length > 0) {
    opts.log.error({ object: id, ...(name !== undefined ? { name } : { path }), held, bytes: xattrs.filter(([n]) => held.includes(n)).reduce((t, [, v]) => t + v.length, 0) },
      'restore: extended attributes this store cannot hold: the archive keeps them, the object is restored without them (docs/recovery.md)');
  }
  const rest: native.PrepareObject = {};
  if (plan.owner !== undefined) rest.owner = plan.owner;
  if (plan.mode !== undefined) rest.mode = plan.mode;
  await opts.dir.prepareObject(path, rest);
}

async function objectExists(dir: StoreDir, path: string): Promise<boolean> {
  try {
    await dir.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Room enough that an ENOSPC from setxattr is the object's xattr space, not the disk (root may use ext4's reserved blocks). */
async function hasRoomFor(dir: StoreDir): Promise<boolean> {
  const s = await dir.statfs();
  return s.bfree * s.bsize >= HELD_ROOM_BYTES;
}

/** Free bytes (reserved ones included) under which an ENOSPC is taken for a full disk. */
const HELD_ROOM_BYTES = 1024 * 1024;

function ignoreNoData(err: unknown): void {
  if ((err as { code?: string }).code !== 'ENODATA') throw err;
}

function timesOf(a: Attrs): FileTimes {
  return { atime: { sec: a.atime[0], nsec: a.atime[1] }, mtime: { sec: a.mtime[0], nsec: a.mtime[1] } };
}

function setTimes(dir: StoreDir, path: string, a: Attrs): Promise<void> {
  return dir.utimens(path, { sec: a.atime[0], nsec: a.atime[1] }, { sec: a.mtime[0], nsec: a.mtime[1] }, { noFollow: true });
}

/**
 * What applyAttrs sets before the times, as one native call: strata's
 * `marks` first, then the archive's extended attributes, owner and mode.
 * The owner and mode are always given: the native call changes only what
 * differs from what the object has. What the kernel gave a new object comes
 * from the live directory it was created in (its set-group-ID bit, its
 * default ACL), which a program may have changed since the archive's image
 * of it was read: until 2026-12-05 a restore judged from the image that a
 * new object already had its mode, and after `setfacl -d` on a directory
 * still pending its entries came back with the ACL's mode (0004 for 0444).
 */
function attrsPlan(a: Attrs, xattrs: { readonly [name: string]: string }, marks: [string, Buffer][] = []): native.PrepareObject {
  const list = [...marks];
  for (const [name, value] of Object.entries(xattrs)) {
    if (name === ID_XATTR || name.startsWith('trusted.strata.')) continue;
    list.push([name, Buffer.from(value, 'base64')]);
  }
  // Exactly the archive's ACLs: none inherited from a default ACL of the directory it is created in (symlinks have none).
  const plan: native.PrepareObject = { xattrs: list, dropAcls: typeOfMode(a.mode) !== 'symlink' };
  plan.owner = { uid: a.uid, gid: a.gid };
  if (typeOfMode(a.mode) !== 'symlink') plan.mode = a.mode & 0o7777;
  return plan;
}

/** What else applyAttrs sees to. */
export interface ApplyAttrsOptions {
  /**
   * The object's id, set first (after the ACLs a new object inherited are
   * dropped): where ext4 puts an attribute, in the inode or its block,
   * depends on the order, and on the primary the id came first. Set apart
   * from the rest (an inherited default ACL in the inode) it took room in the
   * block that the object's own attributes needed (swap-model, seed 1004).
   */
  id?: ObjectId;
  /** The store's private directory, when the object may carry restore marks (they make room for its own attributes). */
  privateDir?: string;
  /**
   * A restore: xattrs this store cannot hold are left to the archive and
   * recorded under the object's id (prepareHolding); without it they fail.
   */
  hold?: { privateDir: string; id: ObjectId; log: Logger };
}

/**
 * Gives the object at `path` the archive's extended attributes, owner, mode
 * and times (in that order: chown clears set-ID bits, and every change before
 * the times would move ctime-driven tools' view of mtime).
 */
export async function applyAttrs(dir: StoreDir, path: string, a: Attrs, xattrs: { readonly [name: string]: string }, options: ApplyAttrsOptions = {}): Promise<void> {
  const plan = attrsPlan(a, xattrs, options.id === undefined ? [] : [[ID_XATTR, Buffer.from(options.id, 'latin1')]]);
  try {
    await dir.prepareObject(path, plan);
  } catch (err) {
    if (!isXattrSpaceFull(err)) throw err;
    // The object's marks (it may have some) take room its own xattrs need: the marks go aside.
    const marksAside = options.privateDir !== undefined && await moveMarksAside(options.privateDir, path, dir.fd);
    if (!marksAside && options.hold === undefined) throw err;
    if (marksAside) {
      // Set again from the start, in the archive's order: where ext4 puts each attribute (in the inode, or its block) depends on the order.
      for (const [name] of plan.xattrs ?? []) {
        if (name === ID_XATTR) continue;
        await dir.removexattr(path, name).catch(ignoreNoData);
      }
    }
    if (options.hold !== undefined) await prepareHolding({ dir, ...options.hold }, path, plan, options.hold.id);
    else await dir.prepareObject(path, plan);
  }
  crashPoint('attrs-before-times');
  await setTimes(dir, path, a);
}
