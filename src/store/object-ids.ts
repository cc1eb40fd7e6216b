// Stable object ids on the local store. Each file, directory and symlink keeps
// its id in an extended attribute of its backing inode, so the id survives
// rename and is shared by hard links for free. The mount hides every
// attribute under PRIVATE_XATTR_PREFIX (see core/filesystem.ts).
import { randomBytes } from 'node:crypto';
import * as native from '../native/index.js';
import { ROOT_ID, isObjectId, type ObjectId } from '../protocol/records.js';

export const PRIVATE_XATTR_PREFIX = 'trusted.strata.';
export const ID_XATTR = `${PRIVATE_XATTR_PREFIX}id`;

export function isPrivateXattr(name: string): boolean {
  return name.startsWith(PRIVATE_XATTR_PREFIX);
}

let pool = Buffer.alloc(0);
let poolOffset = 0;

/** A fresh random 128-bit id (drawn from a pooled buffer: no syscall per id). */
export function newObjectId(): ObjectId {
  if (poolOffset + 16 > pool.length) {
    pool = randomBytes(16 * 256);
    poolOffset = 0;
  }
  const id = pool.toString('hex', poolOffset, poolOffset + 16);
  poolOffset += 16;
  return id === ROOT_ID ? newObjectId() : id;
}

// A path is relative to the directory descriptor `at` (the store root's:
// store.dir.fd; native.AT_FDCWD for an absolute path), as in src/native.

/** The id stored on the object at `path` (never follows a final symlink), or null when it has none. */
export async function readObjectId(path: string, at: number): Promise<ObjectId | null> {
  try {
    const v = (await native.getxattr(path, ID_XATTR, at)).toString('latin1');
    return isObjectId(v) ? v : null;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENODATA') return null;
    throw err;
  }
}

/** The object's xattr space has no room for one more (ext4: ENOSPC; a value over the space's size: E2BIG). */
export function isXattrSpaceFull(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ENOSPC' || code === 'E2BIG';
}

/**
 * Stores `id` on the object at `path`. An object whose own extended
 * attributes fill the file system's space for them (ext4: about 4 KiB per
 * inode; one that reached the store without strata) has no room for it: a
 * clear ENOSPC error that names it and says what to do.
 */
export async function writeObjectId(path: string, id: ObjectId, at: number): Promise<void> {
  try {
    await native.setxattr(path, ID_XATTR, Buffer.from(id, 'latin1'), 0, at);
  } catch (err) {
    if (!isXattrSpaceFull(err)) throw err;
    throw Object.assign(new Error(
      `${path}: its extended attributes leave no room for strata's object id (${ID_XATTR}, ${id.length} bytes) on the store's file system; remove one of them (getfattr -d -m - shows them) and try again`,
    ), { code: 'ENOSPC', path });
  }
}

/**
 * The id of the object at `path`, assigning a new one when it has none (an
 * object that reached the store without strata). `isRoot` gives the store root
 * its fixed id.
 */
export async function ensureObjectId(path: string, at: number, isRoot = false): Promise<ObjectId> {
  const have = await readObjectId(path, at);
  if (have !== null) return have;
  const id = isRoot ? ROOT_ID : newObjectId();
  await writeObjectId(path, id, at);
  return id;
}
