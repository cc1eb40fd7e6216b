// Writes a point-in-time tree (read through an ArchiveClient: the volume's
// head, or a snapshot's volume on its target) into the spare directory, with
// every object's id, owner, mode, times and xattrs, hard links as hard links.
//
// Reuse: a regular file whose name in the live store holds the same object id
// is first copied from there with the native block copy (FICLONE where the
// file system shares blocks, else a copy of its data extents); then its
// blocks are compared with the archive's digests and only those that differ
// are fetched. So an unchanged file costs a local copy and no transfer, and a
// file changed since the point costs only its changed blocks. Comparing the
// copy (not the live file) makes this safe while programs write the live one.
//
// No half states, resumable: each object is built under a temporary name
// (`.strata-swap.<id>`) in its directory and renamed into place once complete
// (data, id, attributes). A rerun walks the same tree in the same order,
// (after a kill -9 the page cache has everything written; against a power
// loss the spare is made durable with one syncfs before it is called ready,
// and a file's bytes reach the disk no later than the rename that shows it on
// ext4 data=ordered and xfs, as in src/restore/materialise.ts),
// keeps the names already in place (same id), removes leftover temporary
// names and builds the rest; directories get their attributes again after
// their entries (a name created in a directory moves its times).
import { constants as C } from 'node:fs';
import * as native from '../native/index.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import type { EntryImage } from '../protocol/images.js';
import { ROOT_ID, BLOCK_SIZE, badNameReason, type ObjectId } from '../protocol/records.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { readObjectId } from '../store/object-ids.js';
import { typeOfMode } from '../mirror/tree-local.js';
import { differingBlocks, zeroDigest } from '../mirror/tree-blocks.js';
import { StoreDir, childRel } from '../store/store-dir.js';
import { closeFd, closeQuietly, truncateFd, writeAllAt } from '../store/fd-io.js';
import { applyAttrs, type ApplyAttrsOptions } from '../restore/materialise.js';
import { forEachLimited } from '../util/each-limited.js';
import type { Logger } from '../log/logger.js';
import { join } from 'node:path';
import { swapCrashPoint } from './crash-points.js';

export const SWAP_TEMP_PREFIX = '.strata-swap.';

export interface WriteProgress {
  entries: number;
  bytes: number;
  /** Entries found already in place (a resumed prepare). */
  kept: number;
  /** Bytes of files copied from the live store. */
  copiedBytes: number;
  /** Bytes fetched from the archive. */
  fetchedBytes: number;
  /** Bytes read from a checkpoint's pre-image log (a `checkpoint:NAME` source). */
  logBytes: number;
}

export interface TreeWriterOptions {
  client: ArchiveClient;
  volume: string;
  /** The spare directory (absolute). */
  spare: string;
  /** The live store (absolute), for reuse; null: fetch everything. */
  live: string | null;
  progress: WriteProgress;
  /** Stop soon (the daemon is stopping, or the spare was discarded). */
  cancelled?: () => boolean;
  /** Parallel file builds within one directory (default 4). */
  parallel?: number;
  /** Where an object's xattrs that the spare's file system cannot hold are logged (they stay on the archive: store/held-xattrs.ts). */
  log: Logger;
}

/** applyAttrs's `hold` for object `id` of the spare: its record goes to the spare's private directory, which the swap makes the store's. */
function holdIn(o: TreeWriterOptions, id: ObjectId): ApplyAttrsOptions['hold'] {
  return { privateDir: join(o.spare, RESERVED_NAME), id, log: o.log };
}

const FETCH_MAX = 1024 * 1024;

/** The spare's and the live store's layers (relative to their roots' descriptors, so a deep tree never outgrows PATH_MAX by their paths). */
interface Dirs {
  spare: StoreDir;
  live: StoreDir | null;
}

export async function writeTree(o: TreeWriterOptions): Promise<void> {
  const root = await o.client.dirImage(o.volume, ROOT_ID);
  const links = new Map<ObjectId, string>();
  await StoreDir.using(o.spare, async (spare) => {
    const live = o.live === null ? null : await StoreDir.openRoot(o.live);
    try {
      await writeDir(o, { spare, live }, '', root.entries, links);
    } finally {
      live?.close();
    }
    await applyAttrs(spare, '.', root.attrs, root.xattrs, { id: ROOT_ID, hold: holdIn(o, ROOT_ID) });
  });
}


function cancelledError(): Error {
  return Object.assign(new Error('prepare cancelled'), { code: 'ECANCELED' });
}

async function writeDir(o: TreeWriterOptions, d: Dirs, rel: string, entries: EntryImage[], links: Map<ObjectId, string>): Promise<void> {
  // Leftovers of an interrupted run.
  for (const { name } of await d.spare.readdirIno(rel === '' ? '.' : rel)) {
    if (name.startsWith(SWAP_TEMP_PREFIX)) await d.spare.rmTree(childRel(rel, name));
  }
  const sorted = [...entries].filter((e) => badNameReason(e.name) === null && !(rel === '' && e.name === RESERVED_NAME))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const simple: EntryImage[] = [];
  const ordered: EntryImage[] = [];
  for (const e of sorted) {
    if (typeOfMode(e.attrs.mode) !== 'dir' && e.nlink <= 1) simple.push(e);
    else ordered.push(e);
  }
  // Single-link non-directories in parallel; hard links and directories in order (deterministic on a rerun).
  await forEachLimited(simple, Math.max(1, o.parallel ?? 4), async (e) => {
    if (o.cancelled?.()) throw cancelledError();
    await placeEntry(o, d, rel, e, links);
  });
  for (const e of ordered) {
    if (o.cancelled?.()) throw cancelledError();
    await placeEntry(o, d, rel, e, links);
    if (typeOfMode(e.attrs.mode) === 'dir') {
      const sub = await o.client.dirImage(o.volume, e.id);
      const subRel = childRel(rel, e.name);
      await writeDir(o, d, subRel, sub.entries, links);
      await applyAttrs(d.spare, subRel, sub.attrs, sub.xattrs, { hold: holdIn(o, sub.id) });
    }
  }
}

async function placeEntry(o: TreeWriterOptions, d: Dirs, rel: string, e: EntryImage, links: Map<ObjectId, string>): Promise<void> {
  // Spare-relative paths from here on.
  const final = childRel(rel, e.name);
  const type = typeOfMode(e.attrs.mode);
  o.progress.entries++;
  if (type === 'file') o.progress.bytes += e.attrs.size;
  let inPlace = false;
  try {
    await d.spare.lstat(final);
    inPlace = true;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
  }
  if (inPlace) {
    const id = await readObjectId(final, d.spare.fd);
    if (id !== e.id) throw new Error(`prepare: ${o.spare}/${final} holds object ${id ?? '(none)'}, the source says ${e.id}: the spare was changed outside strata (discard it)`);
    if (e.nlink > 1 && type !== 'dir' && !links.has(e.id)) links.set(e.id, final);
    o.progress.kept++;
    return;
  }
  const first = e.nlink > 1 && type !== 'dir' ? links.get(e.id) : undefined;
  if (first !== undefined) {
    // Another name of an object already built: one more link (atomic, no temporary name needed).
    await d.spare.link(first, final);
    swapCrashPoint('swap-prepare-object');
    return;
  }
  const tmp = childRel(rel, `${SWAP_TEMP_PREFIX}${e.id}`);
  await d.spare.rmTree(tmp);
  await buildObject(o, d, final, tmp, e);
  await d.spare.rename(tmp, final);
  if (e.nlink > 1 && type !== 'dir') links.set(e.id, final);
  swapCrashPoint('swap-prepare-object');
}

/** The same name in the live store (store-relative), when it holds the same object as a regular file. */
async function reusable(live: StoreDir | null, entryRel: string, id: ObjectId): Promise<string | null> {
  if (live === null) return null;
  try {
    const st = await live.lstat(entryRel);
    if (!st.isFile()) return null;
    return (await readObjectId(entryRel, live.fd)) === id ? entryRel : null;
  } catch {
    return null;
  }
}

async function buildObject(o: TreeWriterOptions, d: Dirs, entryRel: string, tmp: string, e: EntryImage): Promise<void> {
  const a = e.attrs;
  switch (typeOfMode(a.mode)) {
    case 'dir':
      await d.spare.mkdir(tmp, 0o700);
      break;
    case 'file':
      await buildFile(o, d, entryRel, tmp, e);
      break;
    case 'symlink':
      if (e.target === undefined) throw new Error(`prepare: symlink ${e.id} has no target in the source`);
      await d.spare.symlink(e.target, tmp);
      break;
    case 'fifo': case 'socket': case 'chardev': case 'blockdev':
      await d.spare.mknod(tmp, a.mode, a.rdev);
      break;
    default:
      throw new Error(`prepare: object ${e.id} has an unknown type (mode 0${a.mode.toString(8)})`);
  }
  await applyAttrs(d.spare, tmp, a, e.xattrs, { id: e.id, hold: holdIn(o, e.id) });
}

async function buildFile(o: TreeWriterOptions, d: Dirs, entryRel: string, tmp: string, e: EntryImage): Promise<void> {
  const size = e.attrs.size;
  const out = await d.spare.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  try {
    if (size === 0) return;
    const blocks = await o.client.fileBlocks(o.volume, e.id);
    const local = await reusable(d.live, entryRel, e.id);
    let wanted: number[];
    if (local !== null && d.live !== null) {
      const src = await d.live.open(local, C.O_RDONLY | C.O_NOFOLLOW);
      try {
        await native.cloneFile(src, out);
      } finally {
        await closeQuietly(src);
      }
      await truncateFd(out, size);
      o.progress.copiedBytes += size;
      wanted = [];
      for await (const b of differingBlocks(d.spare, tmp, size, blocks)) wanted.push(b.index);
    } else {
      await truncateFd(out, size);
      wanted = blocks.blocks.filter((b) => b.digest !== zeroDigest(b.length)).map((b) => b.index).sort((x, y) => x - y);
    }
    // Fetch runs of consecutive blocks, up to FETCH_MAX bytes a request.
    for (let i = 0; i < wanted.length;) {
      let j = i + 1;
      while (j < wanted.length && wanted[j] === wanted[j - 1]! + 1 && (j - i + 1) * BLOCK_SIZE <= FETCH_MAX) j++;
      const offset = wanted[i]! * BLOCK_SIZE;
      const length = Math.min(size, wanted[j - 1]! * BLOCK_SIZE + BLOCK_SIZE) - offset;
      const data = await o.client.readRange(o.volume, e.id, offset, length);
      if (data.length !== length) throw new Error(`prepare: the archive gave ${data.length} bytes of ${e.id} at ${offset}, not ${length}`);
      await writeAllAt(out, data, offset);
      o.progress.fetchedBytes += length;
      i = j;
    }
  } finally {
    await closeFd(out);
  }
}
