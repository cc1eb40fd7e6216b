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
//  - A mark (PENDING_XATTR, UNRESTORED_NAMES_XATTR, LINKING_XATTR) that does
//    not fit beside the object's own extended attributes (ext4 keeps about
//    4 KiB of them per inode; a program on the primary may have filled them)
//    is a *side mark* instead: PRIVATE/restore/marks/<id>.<mark>, holding the
//    value the xattr would. The object's xattrs are the user's: strata's
//    marks make room for them (moveMarksAside), never the other way round.
//    Until 2026-12-06 a directory whose xattrs filled ext4's space could not
//    be restored (its pending mark failed with ENOSPC, and its parent could
//    never be listed). Reads look at side marks only when the store has any.
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
import { PRIVATE_XATTR_PREFIX, isXattrSpaceFull, readObjectId } from './object-ids.js';

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
async function numberMark(privateDir: string, path: string, name: string, min: number, at: number): Promise<number | null> {
  const raw = await readMark(privateDir, path, name, at);
  if (raw === null) return null;
  const n = Number(raw.toString('latin1'));
  return Number.isInteger(n) && n >= min ? n : null;
}

/** Names of the object at `path` still only in the archive (null: all restored, or not recorded). */
export function unrestoredNames(privateDir: string, path: string, at: number): Promise<number | null> {
  return numberMark(privateDir, path, UNRESTORED_NAMES_XATTR, 0, at);
}

/** Sets the count of names still in the archive; `id`: the object's, when its id xattr may not be set yet. */
export async function setUnrestoredNames(privateDir: string, path: string, n: number, at: number, id?: ObjectId): Promise<void> {
  await writeMark(privateDir, path, UNRESTORED_NAMES_XATTR, Buffer.from(String(Math.max(0, n)), 'latin1'), at, id);
}

/** Removes the count of names still in the archive (the object needs no registry name any more). */
export async function clearUnrestoredNames(privateDir: string, path: string, at: number): Promise<void> {
  await removeMark(privateDir, path, UNRESTORED_NAMES_XATTR, at, true);
}

/** Errors of getxattr that mean "no such mark here". */
const NO_MARK = new Set(['ENODATA', 'ENOTSUP', 'EOPNOTSUPP', 'ENOENT']);

export function sideMarksDir(privateDir: string): string {
  return join(privateDir, 'restore', 'marks');
}

function sideMarkName(id: ObjectId, mark: string): string {
  return `${id}.${mark.slice(PRIVATE_XATTR_PREFIX.length)}`;
}

/**
 * The side marks of each store in this process (by private directory), as
 * names `<id>.<mark>`: read from the directory once, then kept up to date
 * by writeSideMark and removeMark, the only writers (a store is restored by
 * one process). Empty for almost every store: then a mark is an xattr or
 * nothing, and reads cost what they did before side marks.
 */
const sideMarkSets = new Map<string, Promise<Set<string>>>();

function sideMarks(privateDir: string): Promise<Set<string>> {
  let set = sideMarkSets.get(privateDir);
  if (set === undefined) {
    set = fs.promises.readdir(sideMarksDir(privateDir)).then(
      (names) => new Set(names.filter((n) => !n.startsWith('.'))),
      (err: unknown) => {
        if ((err as { code?: string }).code === 'ENOENT') return new Set<string>();
        sideMarkSets.delete(privateDir);
        throw err;
      },
    );
    sideMarkSets.set(privateDir, set);
  }
  return set;
}

/** Forgets what this process knew of the store's side marks (a restore starts, or its restore directory went). */
export function forgetSideMarks(privateDir: string): void {
  sideMarkSets.delete(privateDir);
}

/** Writes mark `name` of object `id` as a side mark (aside and renamed into place: never torn). */
async function writeSideMark(privateDir: string, id: ObjectId, name: string, value: Buffer): Promise<void> {
  const set = await sideMarks(privateDir);
  const file = sideMarkName(id, name);
  await fs.promises.mkdir(sideMarksDir(privateDir), { recursive: true, mode: 0o700 });
  const tmp = join(sideMarksDir(privateDir), `.${file}.tmp`);
  await fs.promises.writeFile(tmp, value, { mode: 0o600 });
  await fs.promises.rename(tmp, join(sideMarksDir(privateDir), file));
  set.add(file);
}

/** The value of mark `name` of the object at `path`: its xattr, else its side mark; null when it has neither. */
async function readMark(privateDir: string, path: string, name: string, at: number): Promise<Buffer | null> {
  try {
    return await native.getxattr(path, name, at);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === undefined || !NO_MARK.has(code)) throw err;
    if (code === 'ENOENT') return null;
  }
  const set = await sideMarks(privateDir);
  if (set.size === 0) return null;
  const id = await objectIdOrNull(path, at);
  if (id === null || !set.has(sideMarkName(id, name))) return null;
  try {
    return await fs.promises.readFile(join(sideMarksDir(privateDir), sideMarkName(id, name)));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return null;
    throw err;
  }
}

async function objectIdOrNull(path: string, at: number): Promise<ObjectId | null> {
  try {
    return await readObjectId(path, at);
  } catch (err) {
    if (NO_MARK.has((err as { code?: string }).code ?? '')) return null;
    throw err;
  }
}

/**
 * Sets mark `name` of the object at `path` to `value`: an xattr, or a side
 * mark when the object's xattrs leave it no room. `id`: the object's, when
 * its id xattr may not be set yet.
 */
async function writeMark(privateDir: string, path: string, name: string, value: Buffer, at: number, id?: ObjectId): Promise<void> {
  try {
    await native.setxattr(path, name, value, 0, at);
    return;
  } catch (err) {
    if (!isXattrSpaceFull(err)) throw err;
  }
  const oid = id ?? (await readObjectId(path, at));
  if (oid === null) throw Object.assign(new Error(`restore: ${path} has no room for strata's mark ${name} and no object id`), { code: 'EIO' });
  await writeSideMark(privateDir, oid, name, value);
  // An older value of the mark as an xattr (a longer value did not fit) would hide the side mark.
  await removeXattrMark(path, name, at, false);
}

/** Removes mark `name` of `path` (its xattr and its side mark); one already gone is fine, and so is a gone `path` when `pathMayBeGone`. */
async function removeMark(privateDir: string, path: string, name: string, at: number, pathMayBeGone: boolean): Promise<void> {
  await removeXattrMark(path, name, at, pathMayBeGone);
  const set = await sideMarks(privateDir);
  if (set.size === 0) return;
  const id = await objectIdOrNull(path, at);
  if (id === null || !set.has(sideMarkName(id, name))) return;
  await fs.promises.rm(join(sideMarksDir(privateDir), sideMarkName(id, name)), { force: true });
  set.delete(sideMarkName(id, name));
}

async function removeXattrMark(path: string, name: string, at: number, pathMayBeGone: boolean): Promise<void> {
  try {
    await native.removexattr(path, name, at);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'ENODATA' && !(pathMayBeGone && code === 'ENOENT')) throw err;
  }
}

/** strata's marks an object can carry. */
const MARKS = (): string[] => [PENDING_XATTR, UNRESTORED_NAMES_XATTR, LINKING_XATTR];

/**
 * Makes room among the xattrs of the object at `path` for the user's: its
 * marks become side marks. False when it had none (the space is the user's
 * already).
 */
export async function moveMarksAside(privateDir: string, path: string, at: number): Promise<boolean> {
  let moved = false;
  let id: ObjectId | null | undefined;
  for (const name of MARKS()) {
    let value: Buffer;
    try {
      value = await native.getxattr(path, name, at);
    } catch (err) {
      if (NO_MARK.has((err as { code?: string }).code ?? '')) continue;
      throw err;
    }
    id ??= await readObjectId(path, at);
    if (id === null) return moved;
    await writeSideMark(privateDir, id, name, value);
    await removeXattrMark(path, name, at, false);
    moved = true;
  }
  return moved;
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

export async function setLinking(privateDir: string, path: string, after: number, nlinkAfter: number, at: number): Promise<void> {
  await writeMark(privateDir, path, LINKING_XATTR, Buffer.from(`${after}/${nlinkAfter}`, 'latin1'), at);
}

export async function clearLinking(privateDir: string, path: string, at: number): Promise<void> {
  await removeMark(privateDir, path, LINKING_XATTR, at, true);
}

/**
 * Finishes putting a name in place that a crash interrupted (see
 * LINKING_XATTR), on the object of the registry name `registry`. The caller
 * holds the object's names lock, and no program has changed the object's
 * links since the crash: every access reaches it by a lookup, which settles first.
 */
export async function settleLinking(privateDir: string, registry: string, at: number): Promise<void> {
  const raw = (await readMark(privateDir, registry, LINKING_XATTR, at))?.toString('latin1');
  if (raw === undefined) return;
  const [after, nlinkAfter] = raw.split('/').map(Number);
  if (Number.isInteger(after) && after! >= 0 && Number.isInteger(nlinkAfter)) {
    const reg = await native.statAt(at, registry).catch(() => null);
    if (reg !== null && Number(reg.nlink) >= nlinkAfter!) await setUnrestoredNames(privateDir, registry, after!, at);
  }
  await clearLinking(privateDir, registry, at);
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
export async function isPending(privateDir: string, path: string, at: number): Promise<boolean> {
  return (await readMark(privateDir, path, PENDING_XATTR, at)) !== null;
}

/**
 * Marks the directory at `path` pending. `nlink`: its link count on the
 * archive (2 + its subdirectories), which `stat` shows while it is pending.
 * `times`: its archive atime and mtime, which `stat` shows while it is
 * pending (materialising entries in it moves its mtime until they are put
 * back; a crash in between leaves the mark saying what they are).
 * The value is "<nlink>" or "<nlink> <asec> <ansec> <msec> <mnsec>".
 */
export async function markPending(privateDir: string, path: string, at: number, nlink?: number, times?: FileTimes): Promise<void> {
  const [name, value] = pendingMarkXattr(nlink, times);
  await writeMark(privateDir, path, name, value, at);
}

/**
 * The pending mark markPending sets, as an xattr name and value (for
 * native.prepareObject; should it not fit, markPendingAside).
 */
export function pendingMarkXattr(nlink?: number, times?: FileTimes): [string, Buffer] {
  const n = nlink !== undefined && nlink >= 2 ? String(nlink) : '1';
  const value = times === undefined ? n : `${n} ${times.atime.sec} ${times.atime.nsec} ${times.mtime.sec} ${times.mtime.nsec}`;
  return [PENDING_XATTR, Buffer.from(value, 'latin1')];
}

/** Marks object `id` pending with a side mark (its xattrs leave the mark no room; see pendingMarkXattr). */
export async function markPendingAside(privateDir: string, id: ObjectId, nlink?: number, times?: FileTimes): Promise<void> {
  const [name, value] = pendingMarkXattr(nlink, times);
  await writeSideMark(privateDir, id, name, value);
}

/** What a pending directory's mark says. */
export interface PendingMark {
  /** Its archive link count (null: not recorded). */
  nlink: number | null;
  /** Its archive times (null: not recorded, a mark of an older strata or of the root before its image). */
  times: FileTimes | null;
}

/** The pending mark of the directory at `path` (null: not pending; never follows a final symlink). */
export async function readPendingMark(privateDir: string, path: string, at: number): Promise<PendingMark | null> {
  const raw = (await readMark(privateDir, path, PENDING_XATTR, at))?.toString('latin1');
  if (raw === undefined) return null;
  const parts = raw.split(' ').map(Number);
  const n = parts[0]!;
  const nlink = Number.isInteger(n) && n >= 2 ? n : null;
  const [as, ans, ms, mns] = parts.slice(1);
  const ok = parts.length === 5 && parts.slice(1).every((x) => Number.isInteger(x)) && ans! >= 0 && ans! < 1e9 && mns! >= 0 && mns! < 1e9;
  return { nlink, times: ok ? { atime: { sec: as!, nsec: ans! }, mtime: { sec: ms!, nsec: mns! } } : null };
}

/** The archive's link count of a pending directory (null: not pending, or not recorded). */
export async function pendingNlink(privateDir: string, path: string, at: number): Promise<number | null> {
  return (await readPendingMark(privateDir, path, at))?.nlink ?? null;
}

export async function clearPending(privateDir: string, path: string, at: number): Promise<void> {
  await removeMark(privateDir, path, PENDING_XATTR, at, false);
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
