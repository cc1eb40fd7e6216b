// Extended attributes the archive holds and this store's file system cannot:
// a volume from an XFS primary (values up to 64 KiB, no limit per inode)
// restored onto ext4 (all of an inode's xattrs in one block, 4 KiB). The
// restore gives such an object every xattr that fits, and records the names
// of the others here, one file per object (`STORE/.strata/held-xattrs/<id>`,
// a JSON list of names), made durable before the object gets its name in the
// store. Who reads the record:
// - re-convergence (mirror/reconcile.ts) and `strata verify` (tree-diff.ts):
//   a held name the store lacks is not a removal to ship, nor a difference:
//   the archive keeps the value;
// - a program's removexattr of a held name (core): the record loses the
//   name and the journal ships the removal, as it would on the primary;
// - `strata status`: how many objects have such xattrs.
// Records are never needed again once their names are gone; a record whose
// object was removed is harmless (ids are never reused).
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectId } from '../protocol/records.js';
import { readFileIfExists, writeFileDurably } from './durable-file.js';

export function heldXattrsDir(privateDir: string): string {
  return join(privateDir, 'held-xattrs');
}

function recordPath(privateDir: string, id: ObjectId): string {
  return join(heldXattrsDir(privateDir), id);
}

function parseNames(text: string | null): string[] {
  if (text === null) return [];
  const v: unknown = JSON.parse(text);
  return Array.isArray(v) ? v.filter((n): n is string => typeof n === 'string') : [];
}

/** The names of `id`'s xattrs only the archive holds (empty: none). */
export async function heldXattrsOf(privateDir: string, id: ObjectId): Promise<string[]> {
  return parseNames(await readFileIfExists(recordPath(privateDir, id)));
}

/** Every record: object id → names only the archive holds. */
export async function allHeldXattrs(privateDir: string): Promise<Map<ObjectId, Set<string>>> {
  const out = new Map<ObjectId, Set<string>>();
  let names: string[];
  try {
    names = await readdir(heldXattrsDir(privateDir));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return out;
    throw err;
  }
  for (const id of names) {
    if (id.endsWith('.tmp')) continue;
    const held = await heldXattrsOf(privateDir, id);
    if (held.length > 0) out.set(id, new Set(held));
  }
  return out;
}

/** How many objects have xattrs only the archive holds. */
export async function countHeldXattrObjects(privateDir: string): Promise<number> {
  try {
    return (await readdir(heldXattrsDir(privateDir))).filter((n) => !n.endsWith('.tmp')).length;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return 0;
    throw err;
  }
}

/** Records (durably) that the archive holds `names` of `id` and the store does not; empty: no record. */
export async function writeHeldXattrs(privateDir: string, id: ObjectId, names: readonly string[]): Promise<void> {
  if (names.length === 0) {
    await rm(recordPath(privateDir, id), { force: true });
    return;
  }
  await mkdir(heldXattrsDir(privateDir), { recursive: true, mode: 0o700 });
  await writeFileDurably(recordPath(privateDir, id), JSON.stringify([...names]));
}

/** `name` of `id` is no longer held (a program removed it); true when it was. */
export async function dropHeldXattr(privateDir: string, id: ObjectId, name: string): Promise<boolean> {
  const held = await heldXattrsOf(privateDir, id);
  if (!held.includes(name)) return false;
  await writeHeldXattrs(privateDir, id, held.filter((n) => n !== name));
  return true;
}
