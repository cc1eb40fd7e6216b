// Helpers for the snapshot tests: a volume fed with records (as a primary's
// shipper would), and a canonical dump of a volume's whole tree (names,
// attributes, link counts, xattrs, symlink targets, file contents' sha256)
// read through ArchiveStore, so a snapshot on a target can be compared with
// the head it was taken from.
import { createHash } from 'node:crypto';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import type { DirImage } from '../../src/protocol/images.js';
import { ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../../src/protocol/records.js';

export const T: Time = [1_700_000_000, 123];
export const T2: Time = [1_700_000_100, 456];
export const dirAttrs = (mode = 0o755): Attrs => ({ mode: 0o040000 | mode, uid: 1000, gid: 100, size: 4096, atime: T, mtime: T, rdev: 0 });
export const fileAttrs = (size = 0, mode = 0o644): Attrs => ({ mode: 0o100000 | mode, uid: 1000, gid: 100, size, atime: T, mtime: T, rdev: 0 });

let next = 0x5000;
export const newId = (): string => (next++).toString(16).padStart(32, '0');

export const mkdir = (parent: string, name: string, id: string): NewRecord => ({ op: 'create', parent, name, id, attrs: dirAttrs(), parentMtime: T2 });
export const mkfile = (parent: string, name: string, id: string, size = 0): NewRecord => ({ op: 'create', parent, name, id, attrs: fileAttrs(size), parentMtime: T2 });
export const write = (id: string, offset: number, data: Buffer): NewRecord => ({ op: 'write', id, offset, data });
export const unlink = (parent: string, name: string): NewRecord => ({ op: 'unlink', parent, name, parentMtime: T2 });
export const link = (parent: string, name: string, id: string): NewRecord => ({ op: 'link', parent, name, id, parentMtime: T2 });
export const setxattr = (id: string, name: string, value: string): NewRecord => ({ op: 'setxattr', id, name, value: Buffer.from(value) });

/** Numbers records after the volume's applied sequence and ships them as one batch. */
export class Feeder {
  constructor(private readonly store: ArchiveStore, readonly volume: string, public epoch = 1) {}
  send(...recs: NewRecord[]): number {
    const seq = this.store.volumeState(this.volume)!.appliedSeq;
    const frames = Buffer.concat(recs.map((r, i) => encodeRecord({ ...r, seq: seq + 1 + i } as Record)));
    return this.store.applyBatch(this.volume, this.epoch, frames).appliedSeq;
  }
}

/** Bytes that differ from block to block (no accidental dedup), never zero. */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = (x & 0xff) || 1;
  }
  return b;
}

/** One line per entry, sorted by path: the whole tree of `volume` in `store`. */
export function dumpTree(store: ArchiveStore, volume: string): string {
  const lines: string[] = [];
  const root = store.dirImage(volume, ROOT_ID);
  lines.push(`/ ${root.attrs.mode.toString(8)} ${root.nlink} ${JSON.stringify(root.totals)} ${JSON.stringify(root.xattrs)}`);
  const walk = (img: DirImage, path: string): void => {
    for (const e of img.entries) {
      const p = `${path}/${e.name}`;
      const a = e.attrs;
      let content = '';
      if ((a.mode & 0o170000) === 0o100000) {
        const h = createHash('sha256');
        for (let off = 0; off < a.size; off += 8 * 1024 * 1024) h.update(store.readRange(volume, e.id, off, Math.min(8 * 1024 * 1024, a.size - off)));
        content = h.digest('hex').slice(0, 16);
      }
      lines.push(`${p} ${e.id} ${a.mode.toString(8)} ${a.uid}:${a.gid} ${a.size} ${a.mtime.join('.')} ${e.nlink} ${e.target ?? ''} ${JSON.stringify(e.xattrs)} ${e.totals ? JSON.stringify(e.totals) : ''} ${content}`);
      if ((a.mode & 0o170000) === 0o040000) walk(store.dirImage(volume, e.id), p);
    }
  };
  walk(root, '');
  return lines.sort().join('\n');
}
