// The spare store: a directory beside the live store into which `strata swap
// prepare` writes a point-in-time tree, and which holds the old tree after an
// exchange. Its state is in SPARE/.strata/swap-spare.json; the checks below
// refuse a spare that is missing, not empty (unless it is this mount's own
// unfinished prepare of the same source: a rerun resumes it), used by another
// mount or store, or on a file system too small for the tree.
import { readdir, readFile, stat, statfs, mkdir } from 'node:fs/promises';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { RESERVED_NAME } from '../store/local-store.js';
import { writeFileDurably } from '../store/durable-file.js';
import { swapRecordPath } from './record.js';
import { existsSync } from 'node:fs';
import { StoreDir } from '../store/store-dir.js';
import { removeFreshFsDir } from '../store/fresh-disk.js';
import type { SourcePoint } from './source.js';

/** A source point of one archive's volume. */
export type ArchivePoint = SourcePoint & { archive: string; volume: string };

export const SPARE_STATE_FILE = 'swap-spare.json';

export interface SpareState {
  format: 1;
  /** The --store path of the mount this spare belongs to. */
  store: string;
  mountpoint: string;
  /** What the tree in it is (the SOURCE of prepare, or `pre-swap tree`). */
  source: string;
  /** writing: prepare under way or interrupted; ready: complete and durable; previous: the tree before an exchange. */
  state: 'writing' | 'ready' | 'previous';
  /** Entries and regular-file bytes of the tree. */
  totals: { entries: number; bytes: number };
  /** The archive point the tree is (absent for the pre-swap tree and before this field existed). */
  point?: ArchivePoint;
  /**
   * Object ids of files whose contents a mirrored commit compares with the
   * archive even when their size and mtime are the archive's (a checkpoint
   * source: the files changed since the checkpoint).
   */
  compare?: string[];
  /** Which source of that name (a checkpoint's id). */
  sourceId?: string;
  updatedAt: string;
}

export function spareStatePath(spare: string): string {
  return join(spare, RESERVED_NAME, SPARE_STATE_FILE);
}

export async function readSpareState(spare: string): Promise<SpareState | null> {
  try {
    return JSON.parse(await readFile(spareStatePath(spare), 'utf8')) as SpareState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export async function writeSpareState(spare: string, s: SpareState): Promise<void> {
  await mkdir(join(spare, RESERVED_NAME), { recursive: true, mode: 0o700 });
  await writeFileDurably(spareStatePath(spare), `${JSON.stringify({ ...s, updatedAt: new Date().toISOString() }, null, 2)}\n`);
}

function within(parent: string, child: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** Stores other strata mounts serve (fsname strata:STORE in /proc/mounts). */
async function mountedStores(): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8').catch(() => '');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const dev = line.split(' ')[0] ?? '';
    if (dev.startsWith('strata:')) out.push(dev.slice('strata:'.length).replace(/\\040/g, ' '));
  }
  return out;
}

export interface SpareCheck {
  spare: string;
  /** A rerun of an interrupted prepare of the same source: continue it. */
  resume: boolean;
}

/**
 * Checks `spareArg` for a prepare of `source` for the mount of `store` whose
 * live store is `live`. Throws an Error whose message says what is wrong.
 */
export async function checkSpare(spareArg: string, o: { store: string; live: string; source: string; sourceId?: string; treeBytes: number }): Promise<SpareCheck> {
  const spare = resolve(spareArg);
  let st;
  try {
    st = await stat(spare);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`the spare ${spare} does not exist: create an empty directory for it (on a file system with room for the tree)`);
    throw err;
  }
  if (!st.isDirectory()) throw new Error(`the spare ${spare} is not a directory`);
  if (within(o.live, spare) || within(spare, o.live)) throw new Error(`the spare ${spare} overlaps the live store ${o.live}`);
  for (const s of await mountedStores()) {
    if (resolve(s) === resolve(o.store)) continue; // this mount (its live store is checked above)
    if (within(resolve(s), spare) || within(spare, resolve(s))) throw new Error(`the spare ${spare} is used by the strata mount of store ${s}`);
  }
  if (spare !== resolve(o.store) && existsSync(swapRecordPath(spare))) throw new Error(`the spare ${spare} is the store of another swap (${swapRecordPath(spare)})`);
  const priv = join(spare, RESERVED_NAME);
  const state = await readSpareState(spare);
  for (const f of state === null ? ['mirror.json', 'restore.json'] : []) {
    if (existsSync(join(priv, f))) throw new Error(`the spare ${spare} is a strata store (${join(priv, f)}): choose an empty directory`);
  }
  // A new disk mounted as the spare: its empty lost+found is not a tree.
  if (state === null) await StoreDir.using(spare, removeFreshFsDir);
  const names = (await readdir(spare)).filter((n) => n !== RESERVED_NAME);
  let resume = false;
  if (state !== null) {
    if (state.store !== resolve(o.store)) throw new Error(`the spare ${spare} belongs to the store ${state.store}`);
    if (state.state === 'previous') throw new Error(`the spare ${spare} holds the tree from before the last swap: \`strata swap back\` to use it, or \`strata swap discard\` first`);
    if (state.source !== o.source) {
      throw new Error(`the spare ${spare} holds ${state.state === 'ready' ? 'a prepared' : 'an unfinished'} tree of ${state.source}, not ${o.source}: \`strata swap discard\` first`);
    }
    if (state.sourceId !== o.sourceId) {
      throw new Error(`the spare ${spare} holds ${state.state === 'ready' ? 'a prepared' : 'an unfinished'} tree of an earlier ${state.source} (${state.sourceId ?? 'unknown'}), not of the one named so now (${o.sourceId ?? 'unknown'}): \`strata swap discard\` first`);
    }
    resume = true;
  } else if (names.length > 0 || (existsSync(priv) && (await readdir(priv)).some((n) => n !== 'daemon.log'))) {
    const shown = names.length > 0 ? names : [RESERVED_NAME];
    throw new Error(`the spare ${spare} is not empty (${shown.slice(0, 3).join(', ')}${shown.length > 3 ? ', ...' : ''}): give an empty directory`);
  }
  const fsInfo = await statfs(spare);
  const free = fsInfo.bavail * fsInfo.bsize;
  // Room for the tree's data plus a block per entry's metadata is not counted: data only, with 1% slack.
  if (!resume && free < o.treeBytes * 1.01) {
    throw new Error(`the file system of the spare ${spare} has ${free} bytes free, the tree needs ${o.treeBytes}`);
  }
  return { spare, resume };
}

/** Empties a spare (everything, its state too, but a daemon log: the daemon may still write it); the directory stays. */
export async function emptySpare(spare: string): Promise<void> {
  // Relative to the spare's descriptor: a tree as deep as a mount allows never outgrows PATH_MAX by the spare's path.
  await StoreDir.using(spare, async (dir) => {
    for (const { name } of await dir.readdirIno('.')) {
      if (name !== RESERVED_NAME) { await dir.rmTree(name); continue; }
      for (const p of await dir.readdirIno(name)) {
        if (p.name !== 'daemon.log') await dir.rmTree(`${name}/${p.name}`);
      }
    }
  });
}
