// Seeded batches of records for the archive apply crash test
// (test/fault/archive-apply-crash.test.ts): what a primary ships, many records
// per batch touching the same objects again and again (an object created,
// written, resized and renamed in one batch; a directory's totals changed by
// many records; hard links, names replaced, subtrees removed, xattrs), so the
// applier's per-batch bookkeeping (rows kept in memory, object rows written
// once at the batch's end, counts added to without being read) is exercised
// against the in-memory reference archive. Every record is valid for the tree
// the batches build (no refusals): the generator keeps its own copy of the
// names. Some batches are marked `pinned`: the child applies them under a
// snapshot floor (rows closed, not rewritten in place).
import { ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../../src/protocol/records.js';
import type { Batch } from './objects-model.js';

const dirAttrs = (t: Time): Attrs => ({ mode: 0o040755, uid: 0, gid: 0, size: 4096, atime: t, mtime: t, rdev: 0 });
const fileAttrs = (size: number, t: Time): Attrs => ({ mode: 0o100644, uid: 1000, gid: 100, size, atime: t, mtime: t, rdev: 0 });

export interface ApplyBatch extends Batch { pinned: boolean }

export const APPLY_BATCHES = 40;

/** xorshift32: the same numbers for the same seed in every process. */
function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** APPLY_BATCHES batches of 1-160 records. */
export function applyBatches(seed: number): ApplyBatch[] {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  // The tree as the records leave it: each directory's names, each directory's place.
  const children = new Map<string, Map<string, string>>([[ROOT_ID, new Map()]]);
  const dirPlace = new Map<string, { parent: string; name: string }>();
  const fileNames = new Map<string, { parent: string; name: string }[]>();
  let ids = 0x200;
  let names = 0;
  let seq = 0;
  let tick = 0;
  const newId = (): string => (ids++).toString(16).padStart(32, '0');
  const now = (): Time => [1_700_000_000 + Math.floor(tick / 1000), (tick++ % 1000) * 1000];
  const dirs = (): string[] => [...children.keys()];
  const files = (): string[] => [...fileNames.keys()];
  const isWithin = (id: string, ancestor: string): boolean => {
    for (let cur: string | undefined = id; cur !== undefined; cur = dirPlace.get(cur)?.parent) if (cur === ancestor) return true;
    return false;
  };
  /** Forgets a name (and what goes with it: a directory's subtree, a file's last name). */
  const dropName = (parent: string, name: string): void => {
    const id = children.get(parent)!.get(name);
    if (id === undefined) return;
    children.get(parent)!.delete(name);
    if (children.has(id)) {
      for (const n of [...children.get(id)!.keys()]) dropName(id, n);
      children.delete(id);
      dirPlace.delete(id);
    } else {
      const left = fileNames.get(id)!.filter((x) => x.parent !== parent || x.name !== name);
      if (left.length === 0) fileNames.delete(id);
      else fileNames.set(id, left);
    }
  };
  const out: ApplyBatch[] = [];
  for (let b = 0; b < APPLY_BATCHES; b++) {
    const recs: NewRecord[] = [];
    const n = 1 + int(r() < 0.3 ? 10 : 160);
    for (let i = 0; i < n; i++) {
      const k = r();
      const fs = files();
      if (k < 0.08) {
        const parent = pick(dirs());
        const id = newId();
        const name = `d${names++}`;
        recs.push({ op: 'create', parent, name, id, attrs: dirAttrs(now()), parentMtime: now() });
        children.get(parent)!.set(name, id);
        children.set(id, new Map());
        dirPlace.set(id, { parent, name });
      } else if (k < 0.3 || fs.length < 3) {
        // A new file, often over an existing file's name; often written and closed in the same batch.
        const parent = pick(dirs());
        const taken = [...children.get(parent)!].filter(([, id]) => fileNames.has(id));
        const name = taken.length > 0 && r() < 0.25 ? pick(taken)[0] : `f${names++}`;
        dropName(parent, name);
        const id = newId();
        recs.push({ op: 'create', parent, name, id, attrs: fileAttrs(0, now()), parentMtime: now() });
        children.get(parent)!.set(name, id);
        fileNames.set(id, [{ parent, name }]);
        if (r() < 0.7) {
          const len = 1 + int(r() < 0.8 ? 4000 : 150_000);
          recs.push({ op: 'write', id, offset: 0, data: bytes(r, len) });
          recs.push({ op: 'setattr', id, attrs: fileAttrs(len, now()) });
        }
      } else if (k < 0.45) {
        const id = pick(fs);
        recs.push({ op: 'write', id, offset: int(200_000), data: bytes(r, 1 + int(r() < 0.8 ? 3000 : 70_000)) });
      } else if (k < 0.52) {
        recs.push({ op: 'setattr', id: pick(fs), attrs: fileAttrs(int(200_000), now()) });
      } else if (k < 0.6) {
        const id = pick(fs);
        const parent = pick(dirs());
        const name = `l${names++}`;
        recs.push({ op: 'link', parent, name, id, parentMtime: now() });
        children.get(parent)!.set(name, id);
        fileNames.get(id)!.push({ parent, name });
      } else if (k < 0.68) {
        const at = pick(fileNames.get(pick(fs))!);
        recs.push({ op: 'unlink', parent: at.parent, name: at.name, parentMtime: now() });
        dropName(at.parent, at.name);
      } else if (k < 0.70) {
        const ds = dirs().filter((d) => d !== ROOT_ID);
        if (ds.length === 0) continue;
        const at = dirPlace.get(pick(ds))!;
        recs.push({ op: 'rmdir', parent: at.parent, name: at.name, parentMtime: now() });
        dropName(at.parent, at.name);
      } else if (k < 0.86) {
        // A file's name moves: within its directory (totals unchanged) or elsewhere, sometimes over another file's name.
        const id = pick(fs);
        const from = pick(fileNames.get(id)!);
        const to = r() < 0.4 ? from.parent : pick(dirs());
        const taken = [...children.get(to)!].filter(([, other]) => fileNames.has(other) && other !== id);
        const name = taken.length > 0 && r() < 0.3 ? pick(taken)[0] : `r${names++}`;
        recs.push({ op: 'rename', parent: from.parent, name: from.name, newParent: to, newName: name, parentMtime: now(), newParentMtime: now() });
        dropName(to, name);
        children.get(from.parent)!.delete(from.name);
        children.get(to)!.set(name, id);
        fileNames.set(id, fileNames.get(id)!.map((x) => (x === from ? { parent: to, name } : x)));
      } else if (k < 0.92) {
        // A directory moves with its subtree (never into itself).
        const ds = dirs().filter((d) => d !== ROOT_ID);
        if (ds.length === 0) continue;
        const id = pick(ds);
        const to = pick(dirs().filter((d) => !isWithin(d, id)));
        const from = dirPlace.get(id)!;
        const name = `m${names++}`;
        recs.push({ op: 'rename', parent: from.parent, name: from.name, newParent: to, newName: name, parentMtime: now(), newParentMtime: now() });
        children.get(from.parent)!.delete(from.name);
        children.get(to)!.set(name, id);
        dirPlace.set(id, { parent: to, name });
      } else if (k < 0.97) {
        recs.push({ op: 'setxattr', id: pick(r() < 0.8 ? fs : dirs()), name: `user.k${int(3)}`, value: bytes(r, int(40)) });
      } else {
        recs.push({ op: 'removexattr', id: pick(fs), name: `user.k${int(3)}` });
      }
    }
    const frames = Buffer.concat(recs.map((x) => encodeRecord({ ...x, seq: ++seq } as Record)));
    out.push({ frames, last: seq, point: false, pinned: r() < 0.25 });
  }
  return out;
}

/** Compressible but not constant bytes (blocks differ between files). */
function bytes(r: () => number, len: number): Buffer {
  const out = Buffer.alloc(len);
  const seed = Math.floor(r() * 256);
  for (let j = 0; j < len; j++) out[j] = j % 64 === 0 ? Math.floor(r() * 256) : (seed + j) & 0xff;
  return out;
}
