// What a partly restored store remembers of the parts that are still only in
// the archive (design: "directory pending", "file stub / partial").
//
//  - A *pending* directory exists locally with its own attributes, but its
//    entries are still only in the archive: it carries the extended attribute
//    PENDING_XATTR (on the inode, so it survives renames). Its value holds
//    the archive's link count and times of the directory, which `stat`
//    shows while it is pending (entries materialised in it move its mtime
//    until it is put back: the mark says what it is should a crash come
//    in between, so no times record is needed for a directory).
//  - A *stub* or *partial* file has its right size and attributes, and a block
//    map at PRIVATE/restore/maps/<id>: a u64 (LE) of the size the file had in
//    the archive, then one byte per BLOCK_SIZE block of that size, 1 when the
//    block's local bytes are the file's (fetched, or written through the mount).
//    Keyed by object id, so hard links share it. A file without a map is local.
//  - A hard-linked file whose names are not all restored yet has one more name
//    at PRIVATE/restore/links/<id>: the object is made there (under a
//    temporary name beside it, then renamed), and each of its names is a link
//    of it. The registry name stays until the restore is complete: only then is it sure
//    that no pending directory still holds a name of the object (a count of
//    the names the archive had, compared with the local link count, is not:
//    links and unlinks through the mount change the local count). The inode
//    carries UNRESTORED_NAMES_XATTR: how many of its names are still only in
//    the archive (a crash between putting a name in place and lowering it is
//    finished later: LINKING_XATTR), so that
//    `stat` can show the object's true link count meanwhile.
//  - A file whose fetched bytes are being written has a times record at
//    PRIVATE/restore/times/<id> (its atime and mtime before the write),
//    written before the bytes and removed after the times are put back. A
//    crash in between leaves the record: the next start puts the times back
//    from it (re-convergence, or the next fetch of the file) instead of
//    taking the time of the crash for a change.
//
// Durability: every mark is in place before the object is renamed to its final
// name, and the name is only made visible by that rename (see
// restore/materialise.ts). On ext4 (data=ordered) and xfs the map's bytes reach
// the disk no later than the rename that references it.
import { join } from 'node:path';
import * as fs from 'node:fs';
import * as native from '../native/index.js';
import { BLOCK_SIZE, isObjectId, type ObjectId } from '../protocol/records.js';
import { PRIVATE_XATTR_PREFIX } from './object-ids.js';

export const PENDING_XATTR = `${PRIVATE_XATTR_PREFIX}pending`;
/** Names given to objects while they are being materialised, before their rename into place. */
export const MATERIALISING_PREFIX = '.strata-restoring.';

/**
 * Whether `name`, found in a directory whose names the archive gives as
 * `archived`, is a materialisation's temporary entry: the prefix and an
 * object id, and not a name of the archive's. A program's own name of that
 * shape is in the archive once mirrored; one of another shape is never a
 * temporary.
 */
export function isMaterialisingTemp(name: string, archived: { has(name: string): boolean }): boolean {
  return name.startsWith(MATERIALISING_PREFIX) && isObjectId(name.slice(MATERIALISING_PREFIX.length)) && !archived.has(name);
}

const MAP_HEADER_BYTES = 8;

export function mapsDir(privateDir: string): string {
  return join(privateDir, 'restore', 'maps');
}
export function linksDir(privateDir: string): string {
  return join(privateDir, 'restore', 'links');
}
export function mapPath(privateDir: string, id: ObjectId): string {
  return join(privateDir, 'restore', 'maps', id);
}
export function linkPath(privateDir: string, id: ObjectId): string {
  return join(privateDir, 'restore', 'links', id);
}
export function timesDir(privateDir: string): string {
  return join(privateDir, 'restore', 'times');
}
export function timesPath(privateDir: string, id: ObjectId): string {
  return join(privateDir, 'restore', 'times', id);
}

/** On a hard-linked file's inode while some of its names are only in the archive: how many. */
export const UNRESTORED_NAMES_XATTR = `${PRIVATE_XATTR_PREFIX}unrestored-names`;

/** A mark's value (a decimal number of at least `min`) on the object at `path`; null when it has none. */
async function numberMark(path: string, name: string, min: number, at: number): Promise<number | null> {
  try {
    const n = Number((await native.getxattr(path, name, at)).toString('latin1'));
    return Number.isInteger(n) && n >= min ? n : null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return null;
    throw err;
  }
}

/** Names of the object at `path` still only in the archive (null: all restored, or not recorded). */
export function unrestoredNames(path: string, at: number): Promise<number | null> {
  return numberMark(path, UNRESTORED_NAMES_XATTR, 0, at);
}

export async function setUnrestoredNames(path: string, n: number, at: number): Promise<void> {
  await native.setxattr(path, UNRESTORED_NAMES_XATTR, Buffer.from(String(Math.max(0, n)), 'latin1'), 0, at);
}

/** Removes the count of names still in the archive (the object needs no registry name any more). */
export async function clearUnrestoredNames(path: string, at: number): Promise<void> {
  await removeMark(path, UNRESTORED_NAMES_XATTR, at, true);
}

/** Removes the mark `name` of `path`; one already gone is fine, and so is a gone `path` when `pathMayBeGone`. */
async function removeMark(path: string, name: string, at: number, pathMayBeGone: boolean): Promise<void> {
  try {
    await native.removexattr(path, name, at);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'ENODATA' && !(pathMayBeGone && code === 'ENOENT')) throw err;
  }
}

/**
 * On a hard-linked file's inode while one more of its names is being put in
 * place: the count of names still in the archive once it is there, and the
 * inode's link count (the registry name counted) once it is there. Putting
 * the name in place and lowering the count are two steps; a crash between
 * them leaves this mark, and settleLinking finishes the step: the count is
 * lowered when the link count says the name got there, left when it did not.
 * (A leftover temporary name is removed before the next materialisation, so
 * it is never counted.) Without it the count stayed one too high and `stat`
 * showed one link too many until the restore completed.
 */
export const LINKING_XATTR = `${PRIVATE_XATTR_PREFIX}linking`;

export async function setLinking(path: string, after: number, nlinkAfter: number, at: number): Promise<void> {
  await native.setxattr(path, LINKING_XATTR, Buffer.from(`${after}/${nlinkAfter}`, 'latin1'), 0, at);
}

export async function clearLinking(path: string, at: number): Promise<void> {
  await removeMark(path, LINKING_XATTR, at, true);
}

/**
 * Finishes putting a name in place that a crash interrupted (see
 * LINKING_XATTR), on the object of the registry name `registry`. The caller
 * holds the object's names lock, and no program has changed the object's
 * links since the crash: every access reaches it by a lookup, which settles first.
 */
export async function settleLinking(registry: string, at: number): Promise<void> {
  let raw: string;
  try {
    raw = (await native.getxattr(registry, LINKING_XATTR, at)).toString('latin1');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOENT' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return;
    throw err;
  }
  const [after, nlinkAfter] = raw.split('/').map(Number);
  if (Number.isInteger(after) && after! >= 0 && Number.isInteger(nlinkAfter)) {
    const reg = await native.statAt(at, registry).catch(() => null);
    if (reg !== null && Number(reg.nlink) >= nlinkAfter!) await setUnrestoredNames(registry, after!, at);
  }
  await clearLinking(registry, at);
}

/** A file's access and modification times, as a times record keeps them. */
export interface FileTimes {
  atime: { sec: number; nsec: number };
  mtime: { sec: number; nsec: number };
}

/** Records the times of `id` before fetched bytes are written into it (see the header). */
export async function writeTimesRecord(privateDir: string, id: ObjectId, t: FileTimes): Promise<void> {
  const buf = Buffer.alloc(24);
  buf.writeBigInt64LE(BigInt(t.atime.sec), 0);
  buf.writeUInt32LE(t.atime.nsec, 8);
  buf.writeBigInt64LE(BigInt(t.mtime.sec), 12);
  buf.writeUInt32LE(t.mtime.nsec, 20);
  await fs.promises.writeFile(timesPath(privateDir, id), buf, { mode: 0o600 });
}

/** The times record of `id`, or null when there is none (or it is torn: then the file's times were never moved). */
export async function readTimesRecord(privateDir: string, id: ObjectId): Promise<FileTimes | null> {
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(timesPath(privateDir, id));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
  if (buf.length !== 24) return null;
  return {
    atime: { sec: Number(buf.readBigInt64LE(0)), nsec: buf.readUInt32LE(8) },
    mtime: { sec: Number(buf.readBigInt64LE(12)), nsec: buf.readUInt32LE(20) },
  };
}

export async function removeTimesRecord(privateDir: string, id: ObjectId): Promise<void> {
  await fs.promises.rm(timesPath(privateDir, id), { force: true });
}

/** Ids with a times record: a crash interrupted the writing of fetched bytes into them. */
export async function listTimesRecords(privateDir: string): Promise<Set<ObjectId>> {
  try {
    return new Set(await fs.promises.readdir(timesDir(privateDir)));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return new Set();
    throw err;
  }
}

/**
 * Puts back the times a crash left moved on the file (a store path, or an
 * open descriptor) from the times record of `id`, then drops the record.
 * True when there was one.
 */
export async function settleTimesRecord(privateDir: string, id: ObjectId, file: string | number, at: number): Promise<boolean> {
  const t = await readTimesRecord(privateDir, id);
  if (t !== null) {
    if (typeof file === 'number') await native.futimens(file, t.atime, t.mtime);
    else await native.utimens(file, t.atime, t.mtime, { noFollow: true }, at);
  }
  await removeTimesRecord(privateDir, id);
  return t !== null;
}

/** True when the directory at `path` is pending (never follows a final symlink; false when nothing is there). */
export async function isPending(path: string, at: number): Promise<boolean> {
  try {
    await native.getxattr(path, PENDING_XATTR, at);
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Marks the directory at `path` pending. `nlink`: its link count on the
 * archive (2 + its subdirectories), which `stat` shows while it is pending.
 * `times`: its archive atime and mtime, which `stat` shows while it is
 * pending (materialising entries in it moves its mtime until they are put
 * back; a crash in between leaves the mark saying what they are).
 * The value is "<nlink>" or "<nlink> <asec> <ansec> <msec> <mnsec>".
 */
export async function markPending(path: string, at: number, nlink?: number, times?: FileTimes): Promise<void> {
  const [name, value] = pendingMarkXattr(nlink, times);
  await native.setxattr(path, name, value, 0, at);
}

/** The pending mark markPending sets, as an xattr name and value (for native.prepareObject). */
export function pendingMarkXattr(nlink?: number, times?: FileTimes): [string, Buffer] {
  const n = nlink !== undefined && nlink >= 2 ? String(nlink) : '1';
  const value = times === undefined ? n : `${n} ${times.atime.sec} ${times.atime.nsec} ${times.mtime.sec} ${times.mtime.nsec}`;
  return [PENDING_XATTR, Buffer.from(value, 'latin1')];
}

/** What a pending directory's mark says. */
export interface PendingMark {
  /** Its archive link count (null: not recorded). */
  nlink: number | null;
  /** Its archive times (null: not recorded, a mark of an older strata or of the root before its image). */
  times: FileTimes | null;
}

/** The pending mark of the directory at `path` (null: not pending; never follows a final symlink). */
export async function readPendingMark(path: string, at: number): Promise<PendingMark | null> {
  let raw: string;
  try {
    raw = (await native.getxattr(path, PENDING_XATTR, at)).toString('latin1');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return null;
    throw err;
  }
  const parts = raw.split(' ').map(Number);
  const n = parts[0]!;
  const nlink = Number.isInteger(n) && n >= 2 ? n : null;
  const [as, ans, ms, mns] = parts.slice(1);
  const ok = parts.length === 5 && parts.slice(1).every((x) => Number.isInteger(x)) && ans! >= 0 && ans! < 1e9 && mns! >= 0 && mns! < 1e9;
  return { nlink, times: ok ? { atime: { sec: as!, nsec: ans! }, mtime: { sec: ms!, nsec: mns! } } : null };
}

/** The archive's link count of a pending directory (null: not pending, or not recorded). */
export async function pendingNlink(path: string, at: number): Promise<number | null> {
  return (await readPendingMark(path, at))?.nlink ?? null;
}

export async function clearPending(path: string, at: number): Promise<void> {
  await removeMark(path, PENDING_XATTR, at, false);
}

/** Number of blocks of a file of `size` bytes. */
function blockCount(size: number): number {
  return Math.ceil(size / BLOCK_SIZE);
}

/** A file's block map, as loaded from its map file. */
export interface BlockMap {
  /** Size of the file in the archive (the map covers its blocks only). */
  readonly remoteSize: number;
  /** 1 for each block whose local bytes are the file's. */
  readonly present: Uint8Array;
  /** Blocks still missing. */
  missing: number;
  /**
   * Set when the map stopped being the file's while someone may still hold
   * it: a program cut the file (nothing of the archive's is left to write),
   * or every block became local and recorded. Never because a cache let go.
   */
  discarded?: boolean;
  /**
   * Blocks marked present in memory whose bytes are not durable and not
   * recorded in the map file yet (the background restore records them once
   * per file, after one fdatasync).
   */
  unrecorded?: Set<number>;
}

/** The map's file content for a file of `remoteSize` with no block present. */
function emptyMapBytes(remoteSize: number): Buffer {
  const buf = Buffer.alloc(MAP_HEADER_BYTES + blockCount(remoteSize));
  buf.writeBigUInt64LE(BigInt(remoteSize), 0);
  return buf;
}

/** Reads the map of `id`; null when the file is local (no map). */
export async function readBlockMap(privateDir: string, id: ObjectId): Promise<BlockMap | null> {
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(mapPath(privateDir, id));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
  if (buf.length < MAP_HEADER_BYTES) throw new Error(`block map of ${id} is truncated (${buf.length} bytes)`);
  const remoteSize = Number(buf.readBigUInt64LE(0));
  const n = blockCount(remoteSize);
  // A map written only up to its header (a crash while it was created) has no block present.
  const present = new Uint8Array(n);
  present.set(buf.subarray(MAP_HEADER_BYTES, MAP_HEADER_BYTES + n));
  let missing = 0;
  for (let i = 0; i < n; i++) if (present[i] !== 1) missing++;
  return { remoteSize, present, missing };
}

/** Writes a fresh map (no block present) for `id`, replacing any. */
export async function writeEmptyMap(privateDir: string, id: ObjectId, remoteSize: number): Promise<void> {
  // Written aside and renamed into place: a kill -9 mid-write must not leave
  // a torn map (the recover-times drill found one, from a stub being built
  // while another crash point fired; a file then created whole never
  // rewrites it, and a torn map fails every pass of the background restore).
  // A temporary left by a crash is outside the maps directory: never read.
  const tmp = join(privateDir, 'restore', `.map-${id}.tmp`);
  await fs.promises.writeFile(tmp, emptyMapBytes(remoteSize), { mode: 0o600 });
  await fs.promises.rename(tmp, mapPath(privateDir, id));
}

/** Temporaries of writeEmptyMap that a crash left behind (never read): gone once the restore completes. */
export async function removeMapTemps(privateDir: string): Promise<void> {
  const dir = join(privateDir, 'restore');
  for (const name of await fs.promises.readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith('.map-') && name.endsWith('.tmp')) await fs.promises.rm(join(dir, name), { force: true });
  }
}

/** Marks blocks [first, last] present in the map file (the caller made their bytes durable first). */
export async function markBlocksPresent(privateDir: string, id: ObjectId, first: number, last: number): Promise<void> {
  const fh = await fs.promises.open(mapPath(privateDir, id), 'r+');
  try {
    await fh.write(Buffer.alloc(last - first + 1, 1), 0, last - first + 1, MAP_HEADER_BYTES + first);
  } finally {
    await fh.close();
  }
}

/** The file is local: its map goes. */
export async function removeBlockMap(privateDir: string, id: ObjectId): Promise<void> {
  await fs.promises.rm(mapPath(privateDir, id), { force: true });
}

/**
 * For a comparison of a file with the archive: a test that is true for the
 * blocks whose local bytes are not the file's yet (null: the file is local).
 */
export async function remoteBlocksOf(privateDir: string, id: ObjectId | null): Promise<((index: number) => boolean) | null> {
  if (id === null) return null;
  const map = await readBlockMap(privateDir, id);
  if (map === null) return null;
  return (i) => i < map.present.length && map.present[i] !== 1;
}
