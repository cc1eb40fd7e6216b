// Seeded batches of records for the object-storage crash test, and the
// comparison of an archive store with the in-memory reference archive
// (test/helpers/memory-archive.ts) fed the same records.
import type { ExecutionContext } from 'ava';
import type { ArchiveStore } from '../../src/archive/archive-store.js';
import type { DirImage } from '../../src/protocol/images.js';
import { ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../../src/protocol/records.js';
import { MemoryArchive } from './memory-archive.js';

export const OBJECTS_PACK_LIMIT = 512 * 1024;
const T: Time = [1_700_000_000, 0];
const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 4096, atime: T, mtime: T, rdev: 0 };
const fileAttrs = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: T, mtime: T, rdev: 0 });

export interface Batch { frames: Buffer; last: number; point: boolean }

/** xorshift32: the same numbers for the same seed in every process. */
function rng(seed: number): () => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** 60 batches of 1-8 records: directories, files, writes (up to 200 KiB), truncations, unlinks, renames. */
export function objectsBatches(seed: number): Batch[] {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const dirs = [ROOT_ID];
  const files: { id: string; parent: string; name: string }[] = [];
  let ids = 0x100;
  let names = 0;
  const id = (): string => (ids++).toString(16).padStart(32, '0');
  let seq = 0;
  const out: Batch[] = [];
  for (let b = 0; b < 60; b++) {
    const recs: NewRecord[] = [];
    const n = 1 + Math.floor(r() * 8);
    for (let i = 0; i < n; i++) {
      const k = r();
      if (k < 0.1 || files.length === 0) {
        const d = id();
        if (k < 0.05) {
          recs.push({ op: 'create', parent: pick(dirs), name: `d${names++}`, id: d, attrs: dirAttrs, parentMtime: T });
          dirs.push(d);
        } else {
          const f = { id: d, parent: pick(dirs), name: `f${names++}` };
          recs.push({ op: 'create', parent: f.parent, name: f.name, id: f.id, attrs: fileAttrs(0), parentMtime: T });
          files.push(f);
        }
      } else if (k < 0.7) {
        const f = pick(files);
        const len = 1 + Math.floor(r() * 200 * 1024);
        const data = Buffer.alloc(len);
        for (let j = 0; j < len; j++) data[j] = j % 4 === 0 ? Math.floor(r() * 256) : data[j - 1]! ^ j;
        recs.push({ op: 'write', id: f.id, offset: Math.floor(r() * 300 * 1024), data });
      } else if (k < 0.8) {
        recs.push({ op: 'setattr', id: pick(files).id, attrs: fileAttrs(Math.floor(r() * 300 * 1024)) });
      } else if (k < 0.9) {
        const f = files.splice(Math.floor(r() * files.length), 1)[0]!;
        recs.push({ op: 'unlink', parent: f.parent, name: f.name, parentMtime: T });
      } else {
        const f = pick(files);
        const to = { parent: pick(dirs), name: `r${names++}` };
        recs.push({ op: 'rename', parent: f.parent, name: f.name, newParent: to.parent, newName: to.name, parentMtime: T, newParentMtime: T });
        Object.assign(f, to);
      }
    }
    const frames = Buffer.concat(recs.map((x) => encodeRecord({ ...x, seq: ++seq } as Record)));
    out.push({ frames, last: seq, point: r() < 0.25 });
  }
  return out;
}

/** The reference archive after every batch up to record `upTo`. */
export async function modelAt(seed: number, upTo: number): Promise<MemoryArchive> {
  const mem = new MemoryArchive();
  await mem.createVolume('v');
  for (const b of objectsBatches(seed)) if (b.last <= upTo) await mem.ship('v', 1, b.frames);
  return mem;
}

const strip = (img: DirImage): DirImage => ({
  ...img,
  entries: [...img.entries].sort((x, y) => (x.name < y.name ? -1 : 1)),
  attrs: img.id === ROOT_ID ? { ...img.attrs, atime: [0, 0], mtime: [0, 0] } : img.attrs,
});

/** Asserts the store's volume v equals the model: every directory image and every file's bytes. */
export async function assertSameAsModel(t: ExecutionContext, store: ArchiveStore, mem: MemoryArchive, label: string): Promise<void> {
  const mine = [...store.tierImages('v', 64)].map(strip);
  const theirs: DirImage[] = [];
  for await (const img of mem.tierImages('v', 64)) theirs.push(strip(img));
  const byId = (a: DirImage, b: DirImage): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  // The same images; the order within a tier depends on the order of the entries (sorted here, insertion order there).
  t.deepEqual(mine.sort(byId), [...theirs].sort(byId), `${label}: directory images`);
  for (const img of theirs) {
    for (const e of img.entries) {
      if ((e.attrs.mode & 0o170000) !== 0o100000) continue;
      const got = store.readRange('v', e.id, 0, e.attrs.size);
      const want = await mem.readRange('v', e.id, 0, e.attrs.size);
      if (!got.equals(want)) t.fail(`${label}: ${img.id}/${e.name} differs`);
    }
  }
}
