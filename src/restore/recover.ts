// The first part of `strata recover`, before the mount serves: fence the
// volume (an epoch bump: an older primary that comes back is refused when it
// ships), then fetch the directory images of the top tiers in one streamed
// request and materialise them — directories above the frontier restored,
// directories at tier `depth` pending, files as stubs. Its cost follows the
// number of entries in the top tiers, not the size of the volume.
//
// Every step can be repeated: a rerun after a crash finds restore.json, keeps
// its epoch (no second fence), skips the directories already restored and
// completes the rest (materialise.ts explains why no half-made directory is
// ever shown).
import { mkdir, readdir, rm } from 'node:fs/promises';
import type { StoreDir } from '../store/store-dir.js';
import { join } from 'node:path';
import type { ArchiveClient } from '../protocol/archive-api.js';
import type { FenceOptions } from '../protocol/leases.js';
import type { DirImage } from '../protocol/images.js';
import { ROOT_ID, type ObjectId } from '../protocol/records.js';
import { readObjectId, writeObjectId } from '../store/object-ids.js';
import { PENDING_XATTR, clearPending, forgetSideMarks, isPending, markPending, linksDir, mapsDir, sideMarksDir, timesDir } from '../store/restore-marks.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { FRESH_FS_DIR, removeFreshFsDir } from '../store/fresh-disk.js';
import { applyAttrs, materialiseEntries } from './materialise.js';
import { readRestoreState, writeRestoreState, type RestoreState } from './state.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';

export interface RecoverOptions {
  client: ArchiveClient;
  volume: string;
  /** Directories at this tier stay pending (root = tier 0). */
  depth: number;
  /** The store's objects (store-relative paths). */
  dir: StoreDir;
  /** The store's private directory (absolute). */
  privateDir: string;
  log: Logger;
  /** The fence's lease options: the recovering store as the new holder; `force` fences even a live lease (docs/takeover.md). */
  fence?: FenceOptions;
  /**
   * Hands the store to the mirror from the recovery point on (the daemon
   * passes Mirror.adopt): called once the volume is fenced, before the top
   * tiers are materialised, and again when a stopped materialisation resumes.
   * The restore layer itself knows nothing of mirroring.
   */
  adoptStore?: (volume: string, epoch: number) => Promise<void>;
}

export interface RecoverResult {
  state: RestoreState;
  /** Directory images materialised by this run. */
  dirs: number;
  /** Objects created by this run. */
  entries: number;
  /** This run fenced the volume (false when resuming). */
  fenced: boolean;
}

/**
 * Prepares the store to serve `volume`: fences it
 * (first run only) and materialises the top tiers. Returns the restore state.
 */
export async function prepareRecovery(opts: RecoverOptions): Promise<RecoverResult> {
  const { client, volume, privateDir, dir, log } = opts;
  const at = dir.fd;
  let state = await readRestoreState(privateDir);
  let fenced = false;
  if (state !== null) {
    if (state.volume !== volume) throw new Error(`this store is being restored from volume "${state.volume}", not "${volume}"`);
    const remote = await client.volumeState(volume);
    if (remote === null) throw new Error(`volume "${volume}" does not exist on ${client.url}`);
    if (remote.epoch > state.epoch) {
      throw new Error(`volume "${volume}" was taken over by another primary (epoch ${remote.epoch}, this store has ${state.epoch}); ` +
        'this store must not serve it');
    }
    if (state.phase !== 'materialising') return { state, dirs: 0, entries: 0, fenced };
    log.info({ volume, epoch: state.epoch }, 'recover: resuming the materialisation of the top tiers');
  } else {
    await refuseNonEmptyStore(dir, privateDir, log);
    const before = await client.volumeState(volume);
    if (before === null) throw new Error(`volume "${volume}" does not exist on ${client.url}`);
    // The fence first: from here on, an older primary's shipments are refused.
    const after = await client.fence(volume, opts.fence);
    fenced = true;
    log.info({ volume, epoch: after.epoch, appliedSeq: after.appliedSeq }, 'recover: volume fenced');
    state = {
      format: 1, volume, archive: client.url, epoch: after.epoch, depth: opts.depth, phase: 'materialising',
      recoveredSeq: after.appliedSeq, totals: after.totals, startedAt: new Date().toISOString(),
      servingAt: null, completedAt: null, done: { entries: 0, bytes: 0 },
    };
    await writeRestoreState(privateDir, state);
  }
  // The store mirrors the volume from the recovery point on.
  await opts.adoptStore?.(volume, state.epoch);
  await mkdir(mapsDir(privateDir), { recursive: true, mode: 0o700 });
  await mkdir(linksDir(privateDir), { recursive: true, mode: 0o700 });
  await mkdir(timesDir(privateDir), { recursive: true, mode: 0o700 });

  // The root: its id, and pending until its image is materialised. On the
  // first run the store root may be an emptied directory that kept strata's
  // marks or a user's xattrs (a reused disk's mountpoint): none of it counts.
  if (fenced) {
    await rm(sideMarksDir(privateDir), { recursive: true, force: true });
    forgetSideMarks(privateDir);
    for (const name of await dir.listxattr('.')) {
      if ((name.startsWith('user.') || name.startsWith('trusted.')) && name !== PENDING_XATTR) await dir.removexattr('.', name);
    }
    // The id first, as on the primary (where ext4 puts an attribute depends on the order; see applyAttrs).
    await writeObjectId('.', ROOT_ID, at);
    await markPending(privateDir, '.', at);
  }
  if ((await readObjectId('.', at)) !== ROOT_ID) await writeObjectId('.', ROOT_ID, at);
  let dirs = 0;
  let entries = 0;
  const depth = state.depth;
  /** Store-relative paths of the directories of tiers 1..depth-1, by id (parents come before children). */
  const paths = new Map<ObjectId, string>([[ROOT_ID, '.']]);
  const materialise = async (image: DirImage): Promise<void> => {
    const rel = paths.get(image.id);
    if (rel === undefined) throw new Error(`recover: the archive sent directory ${image.id} before its parent`);
    const tier = image.tier ?? 0;
    if (tier < depth - 1) {
      for (const e of image.entries) if ((e.attrs.mode & 0o170000) === 0o040000) paths.set(e.id, rel === '.' ? e.name : `${rel}/${e.name}`);
    }
    if (!(await isPending(privateDir, rel, at))) return; // done by an earlier run
    const res = await materialiseEntries(rel, image, { dir, privateDir, childDirsPending: true, log });
    await applyAttrs(dir, rel, image.attrs, image.xattrs, { privateDir, hold: { privateDir, id: image.id, log } });
    crashPoint('materialise-dir');
    await clearPending(privateDir, rel, at);
    dirs++;
    entries += res.created;
  };
  if (depth === 0) {
    // Only the root itself: its attributes; its entries stay in the archive.
    const root = await client.dirImage(volume, ROOT_ID);
    await applyAttrs(dir, '.', root.attrs, root.xattrs, { privateDir, hold: { privateDir, id: ROOT_ID, log } });
    await markPending(privateDir, '.', at, root.nlink, { atime: { sec: root.attrs.atime[0], nsec: root.attrs.atime[1] }, mtime: { sec: root.attrs.mtime[0], nsec: root.attrs.mtime[1] } });
  } else {
    for await (const image of client.tierImages(volume, depth - 1)) await materialise(image);
  }
  state.phase = 'restoring';
  state.servingAt = new Date().toISOString();
  state.done = { entries, bytes: 0 };
  await writeRestoreState(privateDir, state);
  log.info({ volume, depth, dirs, entries }, 'recover: top tiers in place');
  return { state, dirs, entries, fenced };
}

/** A store that holds anything of its own (files, or a mirror of its own) is not recovered over. */
async function refuseNonEmptyStore(dir: StoreDir, privateDir: string, log: Logger): Promise<void> {
  if (await removeFreshFsDir(dir)) log.info({ removed: FRESH_FS_DIR }, `recover: removed the empty ${FRESH_FS_DIR} of a new file system from the store's root`);
  const names = (await dir.readdirIno('.')).map((e) => e.name).filter((n) => n !== RESERVED_NAME);
  if (names.length > 0) {
    throw new Error(`the store is not empty (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', …' : ''}); recover into an empty store`);
  }
  const priv = await readdir(privateDir).catch(() => [] as string[]);
  if (priv.includes('mirror.json')) {
    throw new Error(`the store already mirrors a volume (${join(privateDir, 'mirror.json')}); recover into an empty store`);
  }
}
