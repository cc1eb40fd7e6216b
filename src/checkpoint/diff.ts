// `strata checkpoint diff`: what changed since a checkpoint. Names come from
// comparing the T0 tree (saved listings, or the live ones where a directory
// never changed) with the live tree; attributes from the saved records; data
// from the saved blocks, each compared with the live block (a block that was
// written with the same bytes is not reported), plus a change of size.
import * as fs from 'node:fs';
import type { StoreDir } from '../store/store-dir.js';
import { LocalStore } from '../store/local-store.js';
import { isPrivateXattr } from '../store/object-ids.js';
import { BLOCK_SIZE, type CheckpointState } from './state.js';
import { T0View, joinPath, liveEntries, lstatPath, within, DT_DIR } from './view.js';
import { readAt } from '../store/fd-io.js';

export interface DiffReport {
  checkpoint: string;
  createdAt: string;
  blockSize: number;
  created: string[];
  removed: string[];
  renamed: { from: string; to: string }[];
  /** Another name of an object that existed at T0 (a hard link made since). */
  linked: { path: string; to: string }[];
  attrs: { path: string; fields: string[] }[];
  /** Changed byte ranges of files that existed at T0 ([offset, length] pairs), and their sizes then and now. */
  data: { path: string; t0Size: number; size: number; ranges: [number, number][] }[];
}

export async function diffCheckpoint(s: CheckpointState, rootIno: bigint, filters: string[], dir: StoreDir): Promise<DiffReport> {
  const view = new T0View(s, rootIno, dir);
  const keep = (p: string): boolean => filters.length === 0 || filters.some((f) => within(p, f));
  // The two trees: path -> key.
  const t0 = new Map<string, string>();
  const t0Paths = new Map<string, string[]>();
  // `real`: where the directory is in the live tree now (its T0 path may lead elsewhere, or through a symbolic link).
  const walkT0 = async (dir: string, key: string, real: string | undefined): Promise<void> => {
    for (const [name, k, dtype] of (await view.listing(key, real)) ?? []) {
      const p = joinPath(dir, name);
      t0.set(p, k);
      const l = t0Paths.get(k);
      if (l) l.push(p); else t0Paths.set(k, [p]);
      if (dtype === DT_DIR) await walkT0(p, k, s.listings.has(k) ? undefined : await view.whereIs(k, real === undefined ? undefined : joinPath(real, name)));
    }
  };
  await walkT0('/', view.rootKey, '/');
  const live = new Map<string, string | null>();
  const livePaths = new Map<string, string[]>();
  const walkLive = async (at: string): Promise<void> => {
    for (const e of await liveEntries(dir, at)) {
      const p = joinPath(at, e.name);
      const k = s.canon(e.ino);
      live.set(p, k);
      if (k !== null) {
        const l = livePaths.get(k);
        if (l) l.push(p); else livePaths.set(k, [p]);
      }
      if (e.type === DT_DIR) await walkLive(p);
    }
  };
  await walkLive('/');

  const out: DiffReport = { checkpoint: s.info.name, createdAt: s.info.createdAt, blockSize: BLOCK_SIZE, created: [], removed: [], renamed: [], linked: [], attrs: [], data: [] };
  const renamedFrom = new Set<string>();
  for (const [p, k] of live) {
    if (t0.get(p) === k) continue;
    const was = k === null ? undefined : t0Paths.get(k);
    if (was === undefined) {
      if (keep(p)) out.created.push(p);
      continue;
    }
    const gone = was.filter((x) => live.get(x) !== k);
    const now = (livePaths.get(k!) ?? []).filter((x) => t0.get(x) !== k);
    if (gone.length === 1 && now.length === 1) {
      renamedFrom.add(gone[0]!);
      if (keep(p) || keep(gone[0]!)) out.renamed.push({ from: gone[0]!, to: p });
    } else if (keep(p)) {
      out.linked.push({ path: p, to: was[0]! });
    }
  }
  for (const [p, k] of t0) {
    if (live.get(p) === k || renamedFrom.has(p)) continue;
    // Under a renamed directory: its new place covers it.
    if (keep(p)) out.removed.push(p);
  }
  // Attributes and data of the objects that have records.
  for (const [k, rec] of s.attrs) {
    const paths = livePaths.get(k);
    if (!paths || paths.length === 0) continue;
    const path = paths[0]!;
    if (!paths.some(keep)) continue;
    const st = await lstatPath(dir, path);
    if (!st) continue;
    const fields: string[] = [];
    if (!st.isSymbolicLink() && (Number(st.mode) & 0o7777) !== (rec.mode & 0o7777)) fields.push('mode');
    if (Number(st.uid) !== rec.uid) fields.push('uid');
    if (Number(st.gid) !== rec.gid) fields.push('gid');
    if (st.mtimeNs.toString() !== rec.mtimeNs) fields.push('mtime');
    const rel = LocalStore.relative(path);
    const have = (await dir.listxattr(rel)).filter((n) => !isPrivateXattr(n)).sort();
    const want = rec.xattrs.map(([n]) => n).sort();
    let xattrsDiffer = have.join('\0') !== want.join('\0');
    if (!xattrsDiffer) {
      for (const [n, v] of rec.xattrs) {
        const cur = await dir.getxattr(rel, n).catch(() => null);
        if (!cur || !cur.equals(Buffer.from(v, 'base64'))) { xattrsDiffer = true; break; }
      }
    }
    if (xattrsDiffer) fields.push('xattrs');
    if (fields.length > 0) out.attrs.push({ path, fields });
    if (rec.kind === 'file' && st.isFile()) {
      const size = Number(st.size);
      const ranges = await changedRanges(dir, s, k, path, rec.size, size);
      if (ranges.length > 0) out.data.push({ path, t0Size: rec.size, size, ranges });
    }
  }
  for (const list of [out.created, out.removed]) list.sort();
  out.attrs.sort((a, b) => a.path.localeCompare(b.path));
  out.data.sort((a, b) => a.path.localeCompare(b.path));
  return out;
}

/** Byte ranges of the file that differ from T0 (block granularity; merged). */
async function changedRanges(dir: StoreDir, s: CheckpointState, key: string, path: string, t0Size: number, size: number): Promise<[number, number][]> {
  const ranges: [number, number][] = [];
  const add = (off: number, len: number): void => {
    const last = ranges[ranges.length - 1];
    if (last && last[0] + last[1] === off) last[1] += len;
    else ranges.push([off, len]);
  };
  const fd = await dir.openQuiet(LocalStore.relative(path));
  try {
    const common = Math.min(t0Size, size);
    for (const [b, w] of s.savedBlocks(key)) {
      const off = b * BLOCK_SIZE;
      if (off >= common) continue;
      const len = Math.min(w.len, common - off);
      const [old, now] = await Promise.all([s.log.read(w.off, len), readAt(fd, off, len)]);
      if (!old.equals(now)) add(off, len);
    }
  } finally {
    fs.close(fd, () => {});
  }
  if (size !== t0Size) add(Math.min(size, t0Size), Math.abs(size - t0Size));
  return ranges;
}

