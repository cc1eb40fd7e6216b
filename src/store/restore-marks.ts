// What a partly restored store remembers of the parts that are still only in
// the archive (design: "directory pending", "file stub / partial").
//
//  - A *pending* directory exists locally with its own attributes, but its
//    entries are still only in the archive: it carries the extended attribute
//    PENDING_XATTR (on the inode, so it survives renames).
//  - A *stub* or *partial* file has its right size and attributes, and a block
//    map at PRIVATE/restore/maps/<id>: a u64 (LE) of the size the file had in
//    the archive, then one byte per BLOCK_SIZE block of that size, 1 when the
//    block's local bytes are the file's (fetched, or written through the mount).
//    Keyed by object id, so hard links share it. A file without a map is local.
//  - A hard-linked file whose names are not all restored yet has one more name
//    at PRIVATE/restore/links/<id>, through which later names are linked.
//
// Durability: every mark is in place before the object is renamed to its final
// name, and the name is only made visible by that rename (see
// restore/materialise.ts). On ext4 (data=ordered) and xfs the map's bytes reach
// the disk no later than the rename that references it.
import { join } from 'node:path';
import * as fs from 'node:fs';
import * as native from '../native/index.js';
import { BLOCK_SIZE, type ObjectId } from '../protocol/records.js';
import { PRIVATE_XATTR_PREFIX } from './object-ids.js';

export const PENDING_XATTR = `${PRIVATE_XATTR_PREFIX}pending`;
/** Names given to objects while they are being materialised, before their rename into place. */
export const MATERIALISING_PREFIX = '.strata-restoring.';

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

/** True when the directory at `path` is pending (never follows a final symlink; false when nothing is there). */
export async function isPending(path: string): Promise<boolean> {
  try {
    await native.getxattr(path, PENDING_XATTR);
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOENT') return false;
    throw err;
  }
}

export async function markPending(path: string): Promise<void> {
  await native.setxattr(path, PENDING_XATTR, Buffer.from('1'), 0);
}

export async function clearPending(path: string): Promise<void> {
  try {
    await native.removexattr(path, PENDING_XATTR);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENODATA') throw err;
  }
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
  await fs.promises.writeFile(mapPath(privateDir, id), emptyMapBytes(remoteSize), { mode: 0o600 });
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
