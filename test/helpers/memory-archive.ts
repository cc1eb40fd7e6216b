// Test-only: an in-memory ArchiveClient that applies records with the archive
// store's semantics (create with a known id adds a name or moves the
// directory; create over a name replaces it; unlink/rmdir of an absent name is
// a no-op; rmdir deletes the subtree; an object whose last name goes is
// deleted; setattr truncates/extends; write is read-modify-write of blocks;
// records naming an unknown id are no-ops; parentMtime sets the parent's
// mtime). Plus the harness the tree-diff and reconcile tests share: a client
// factory list (this one, and the real file:// client) and a
// sink that ships what reconcile emits.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArchiveError, type ArchiveClient, type ShipResult } from '../../src/protocol/archive-api.js';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import { deepImageSelection, type DirImage, type EntryImage, type FileBlocks, type RawBlocks, type VolumeState } from '../../src/protocol/images.js';
import type { LeaseGrant, LeaseRelease, LeaseRenewal, VolumeLease } from '../../src/protocol/leases.js';
import { BLOCK_SIZE, ROOT_ID, decodeFrames, encodeRecord, type Attrs, type NewRecord, type ObjectId, type Record } from '../../src/protocol/records.js';

interface Obj {
  id: ObjectId;
  attrs: Attrs;
  target?: string;
  xattrs: Map<string, Buffer>;
  /** Directories: name → id. */
  children?: Map<string, ObjectId>;
  /** Directories: where they are. */
  parent?: { id: ObjectId; name: string };
  /** Files: full-size blocks by index. */
  blocks?: Map<number, Buffer>;
  names: number;
}

interface Vol {
  epoch: number;
  appliedSeq: number;
  objects: Map<ObjectId, Obj>;
}

const S_IFDIR = 0o040000;
const isDir = (o: Obj): boolean => o.children !== undefined;

export class MemoryArchive implements ArchiveClient {
  readonly url = 'memory://';
  private readonly vols = new Map<string, Vol>();

  async volumeState(volume: string): Promise<VolumeState | null> {
    const v = this.vols.get(volume);
    if (!v) return null;
    return { name: volume, epoch: v.epoch, appliedSeq: v.appliedSeq, totals: this.totals(v, v.objects.get(ROOT_ID)!) };
  }

  async createVolume(volume: string): Promise<VolumeState> {
    if (!this.vols.has(volume)) {
      const root: Obj = { id: ROOT_ID, attrs: { mode: S_IFDIR | 0o755, uid: 0, gid: 0, size: 0, atime: [0, 0], mtime: [0, 0], rdev: 0 }, xattrs: new Map(), children: new Map(), names: 1 };
      this.vols.set(volume, { epoch: 1, appliedSeq: 0, objects: new Map([[ROOT_ID, root]]) });
    }
    return (await this.volumeState(volume))!;
  }

  async ship(volume: string, epoch: number, frames: Buffer): Promise<ShipResult> {
    const v = this.vol(volume);
    if (epoch < v.epoch) throw new ArchiveError('EFENCED', 'old epoch');
    const recs = decodeFrames(frames);
    if (recs.length > 0 && recs[0]!.seq > v.appliedSeq + 1) throw new ArchiveError('EGAP', 'gap');
    for (const r of recs) {
      if (r.seq <= v.appliedSeq) continue;
      this.apply(v, r);
      v.appliedSeq = r.seq;
    }
    return { appliedSeq: v.appliedSeq };
  }

  async fence(volume: string): Promise<VolumeState> {
    this.vol(volume).epoch++;
    return (await this.volumeState(volume))!;
  }

  /** Like an in-process archive: no lease server, only the epoch is checked. */
  async renewLease(volume: string, r: LeaseRenewal): Promise<LeaseGrant> {
    const v = this.vol(volume);
    if (r.epoch < v.epoch) throw new ArchiveError('EFENCED', 'old epoch');
    return { epoch: v.epoch, leaseMs: r.leaseMs, enforced: false };
  }

  async releaseLease(volume: string, r: LeaseRelease): Promise<VolumeLease> {
    void r;
    return { ...this.row(volume), state: 'released' };
  }

  async leases(volume?: string): Promise<VolumeLease[]> {
    return [...this.vols.keys()].filter((n) => volume === undefined || n === volume).map((n) => this.row(n));
  }

  async releaseVolume(volume: string): Promise<VolumeLease> {
    return this.row(volume);
  }

  private row(volume: string): VolumeLease {
    const v = this.vol(volume);
    return {
      volume, state: 'none', epoch: v.epoch, appliedSeq: v.appliedSeq, holder: null, holderEpoch: null, leaseAgeSeconds: null,
      leaseSeconds: null, lagRecords: null, releasedAt: null, fencedBy: null, takeover: null,
    };
  }

  async dirImage(volume: string, dirId: ObjectId): Promise<DirImage> {
    const img = this.imageNow(volume, dirId);
    if (img === null) throw new ArchiveError('ENOOBJECT', `no directory ${dirId}`);
    return img;
  }

  async deepImages(volume: string, dirId: ObjectId, name?: string): Promise<DirImage[]> {
    const first = await this.dirImage(volume, dirId);
    return deepImageSelection(first, name, (id) => this.imageNow(volume, id));
  }

  private imageNow(volume: string, dirId: ObjectId): DirImage | null {
    const v = this.vol(volume);
    const d = v.objects.get(dirId);
    if (!d || !isDir(d)) return null;
    const entries: EntryImage[] = [];
    for (const [name, id] of d.children!) {
      const o = v.objects.get(id)!;
      const e: EntryImage = { name, id, attrs: structuredClone(o.attrs), nlink: this.nlink(v, o), xattrs: this.xattrs(o) };
      if (o.target !== undefined) e.target = o.target;
      if (isDir(o)) e.totals = this.totals(v, o);
      entries.push(e);
    }
    return { id: dirId, attrs: structuredClone(d.attrs), nlink: this.nlink(v, d), xattrs: this.xattrs(d), totals: this.totals(v, d), entries };
  }

  async *tierImages(volume: string, depth: number): AsyncIterable<DirImage> {
    let level: ObjectId[] = [ROOT_ID];
    for (let tier = 0; tier <= depth && level.length > 0; tier++) {
      const next: ObjectId[] = [];
      for (const id of level) {
        const img = await this.dirImage(volume, id);
        yield { ...img, tier };
        for (const e of img.entries) if ((e.attrs.mode & 0o170000) === S_IFDIR) next.push(e.id);
      }
      level = next;
    }
  }

  async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    const o = this.file(volume, id);
    const end = Math.min(o.attrs.size, offset + length);
    const out = Buffer.alloc(Math.max(0, end - offset));
    for (let off = offset; off < end;) {
      const i = Math.floor(off / BLOCK_SIZE);
      const inBlock = off - i * BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - inBlock, end - off);
      o.blocks!.get(i)?.copy(out, off - offset, inBlock, inBlock + n);
      off += n;
    }
    return out;
  }

  /**
   * The stored blocks with the digests of what was stored, their bytes taken
   * through `readRange` (so a subclass that fails or alters readRange acts
   * on these too, as an archive that sends unverified pack bytes would).
   */
  async readBlocks(volume: string, id: ObjectId, first: number, count: number): Promise<RawBlocks> {
    const o = this.file(volume, id);
    const bytes = await this.readRange(volume, id, first * BLOCK_SIZE, Math.max(0, Math.min(count * BLOCK_SIZE, o.attrs.size - first * BLOCK_SIZE)));
    const blocks: RawBlocks['blocks'] = [];
    const parts: Buffer[] = [];
    for (const [index, b] of [...o.blocks!].sort((x, y) => x[0] - y[0])) {
      const length = Math.min(BLOCK_SIZE, o.attrs.size - index * BLOCK_SIZE);
      if (index < first || index >= first + count || length <= 0) continue;
      blocks.push({ index, length, digest: createHash('sha256').update(b.subarray(0, length)).digest('hex') });
      parts.push(bytes.subarray((index - first) * BLOCK_SIZE, (index - first) * BLOCK_SIZE + length));
    }
    return { id, size: o.attrs.size, blocks, data: Buffer.concat(parts) };
  }

  async fileBlocks(volume: string, id: ObjectId): Promise<FileBlocks> {
    const o = this.file(volume, id);
    const blocks: FileBlocks['blocks'] = [];
    for (const [index, b] of [...o.blocks!].sort((x, y) => x[0] - y[0])) {
      const length = Math.min(BLOCK_SIZE, o.attrs.size - index * BLOCK_SIZE);
      if (length <= 0) continue;
      blocks.push({ index, length, digest: createHash('sha256').update(b.subarray(0, length)).digest('hex') });
    }
    return { id, size: o.attrs.size, blockSize: BLOCK_SIZE, blocks };
  }

  async close(): Promise<void> {}

  // ---- application of records ------------------------------------------------

  private vol(volume: string): Vol {
    const v = this.vols.get(volume);
    if (!v) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    return v;
  }

  private file(volume: string, id: ObjectId): Obj {
    const o = this.vol(volume).objects.get(id);
    if (!o || !o.blocks) throw new ArchiveError('ENOOBJECT', `no file ${id}`);
    return o;
  }

  private nlink(v: Vol, o: Obj): number {
    if (!isDir(o)) return o.names;
    let n = 2;
    for (const id of o.children!.values()) if (isDir(v.objects.get(id)!)) n++;
    return n;
  }

  private xattrs(o: Obj): { [name: string]: string } {
    const out: { [name: string]: string } = {};
    for (const [k, val] of o.xattrs) out[k] = val.toString('base64');
    return out;
  }

  private totals(v: Vol, d: Obj): { entries: number; bytes: number } {
    const t = { entries: 0, bytes: 0 };
    for (const id of d.children!.values()) {
      const o = v.objects.get(id)!;
      t.entries++;
      if (o.blocks) t.bytes += o.attrs.size;
      if (isDir(o)) {
        const s = this.totals(v, o);
        t.entries += s.entries;
        t.bytes += s.bytes;
      }
    }
    return t;
  }

  private dir(v: Vol, id: ObjectId): Obj | undefined {
    const d = v.objects.get(id);
    return d && isDir(d) ? d : undefined;
  }

  /** Removes one name; deletes the object when it was its last (a directory: with its subtree). */
  private dropName(v: Vol, parent: Obj, name: string): void {
    const id = parent.children!.get(name);
    if (id === undefined) return;
    parent.children!.delete(name);
    const o = v.objects.get(id)!;
    o.names--;
    if (isDir(o)) {
      for (const child of [...o.children!.keys()]) this.dropName(v, o, child);
      v.objects.delete(id);
    } else if (o.names === 0) v.objects.delete(id);
  }

  private place(v: Vol, parent: Obj, name: string, o: Obj): void {
    if (parent.children!.get(name) === o.id) return;
    this.dropName(v, parent, name);
    parent.children!.set(name, o.id);
    o.names++;
    if (isDir(o)) o.parent = { id: parent.id, name };
  }

  private apply(v: Vol, r: Record): void {
    switch (r.op) {
      case 'create': {
        const p = this.dir(v, r.parent);
        if (!p) return;
        const have = v.objects.get(r.id);
        if (have && isDir(have)) {
          const old = have.parent && this.dir(v, have.parent.id);
          if (old && old.children!.get(have.parent!.name) === have.id) {
            old.children!.delete(have.parent!.name);
            have.names--;
          }
          this.place(v, p, r.name, have);
        } else if (have) {
          this.place(v, p, r.name, have);
        } else {
          const o: Obj = { id: r.id, attrs: structuredClone(r.attrs), xattrs: new Map(), names: 0 };
          const type = r.attrs.mode & 0o170000;
          if (type === S_IFDIR) o.children = new Map();
          if (type === 0o100000) o.blocks = new Map();
          if (r.target !== undefined) o.target = r.target;
          v.objects.set(r.id, o);
          this.place(v, p, r.name, o);
        }
        p.attrs.mtime = r.parentMtime;
        return;
      }
      case 'link': {
        const p = this.dir(v, r.parent);
        const o = v.objects.get(r.id);
        if (!p || !o || isDir(o)) return;
        this.place(v, p, r.name, o);
        p.attrs.mtime = r.parentMtime;
        return;
      }
      case 'unlink':
      case 'rmdir': {
        const p = this.dir(v, r.parent);
        if (!p) return;
        this.dropName(v, p, r.name);
        p.attrs.mtime = r.parentMtime;
        return;
      }
      case 'rename': {
        const p = this.dir(v, r.parent);
        const np = this.dir(v, r.newParent);
        if (!p || !np) return;
        const id = p.children!.get(r.name);
        if (id === undefined) return;
        const o = v.objects.get(id)!;
        p.children!.delete(r.name);
        o.names--;
        this.place(v, np, r.newName, o);
        p.attrs.mtime = r.parentMtime;
        np.attrs.mtime = r.newParentMtime;
        return;
      }
      case 'exchange': {
        const p = this.dir(v, r.parent);
        const np = this.dir(v, r.newParent);
        if (!p || !np) return;
        const a = p.children!.get(r.name);
        const b = np.children!.get(r.newName);
        if (a === undefined || b === undefined) return;
        p.children!.set(r.name, b);
        np.children!.set(r.newName, a);
        p.attrs.mtime = r.parentMtime;
        np.attrs.mtime = r.newParentMtime;
        return;
      }
      case 'setattr': {
        const o = v.objects.get(r.id);
        if (!o) return;
        if (o.blocks) this.resize(o, r.attrs.size);
        o.attrs = structuredClone(r.attrs);
        return;
      }
      case 'write': {
        const o = v.objects.get(r.id);
        if (!o || !o.blocks) return;
        for (let done = 0; done < r.data.length;) {
          const off = r.offset + done;
          const i = Math.floor(off / BLOCK_SIZE);
          const inBlock = off - i * BLOCK_SIZE;
          const n = Math.min(BLOCK_SIZE - inBlock, r.data.length - done);
          let b = o.blocks.get(i);
          if (!b) o.blocks.set(i, (b = Buffer.alloc(BLOCK_SIZE)));
          r.data.copy(b, inBlock, done, done + n);
          done += n;
        }
        o.attrs.size = Math.max(o.attrs.size, r.offset + r.data.length);
        return;
      }
      case 'setxattr':
        v.objects.get(r.id)?.xattrs.set(r.name, Buffer.from(r.value));
        return;
      case 'removexattr':
        v.objects.get(r.id)?.xattrs.delete(r.name);
        return;
    }
  }

  /** Cuts the data at `size` (zeroing the tail of the last block, so a later extension reads zeros). */
  private resize(o: Obj, size: number): void {
    for (const [i, b] of o.blocks!) {
      const start = i * BLOCK_SIZE;
      if (start >= size) o.blocks!.delete(i);
      else if (start + BLOCK_SIZE > size) b.fill(0, size - start);
    }
  }
}

// ---- harness ----------------------------------------------------------------------

/** An archive client to test against, with a fresh volume. */
export interface ArchiveFixture {
  name: string;
  open(): Promise<ArchiveClient>;
}

export const VOLUME = 'vol1';

/** Directories of the file:// archives the fixtures made (see removeArchiveFixtures). */
const fixtureDirs: string[] = [];

/** The clients the behavioural tests run against: the in-memory one and the real file:// one. */
export function archiveFixtures(): ArchiveFixture[] {
  return [
    { name: 'memory', open: async () => new MemoryArchive() },
    {
      name: 'file',
      open: async () => {
        const dir = await mkdtemp(join(tmpdir(), 'strata-archive-'));
        fixtureDirs.push(dir);
        return openArchiveClient(`file://${dir}`);
      },
    },
  ];
}

/** Removes the file:// archives made by the fixtures (a test file's `test.after.always`). */
export async function removeArchiveFixtures(): Promise<void> {
  await Promise.all(fixtureDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Collects emitted records; `ship` sends them as frames after the volume's applied sequence. */
export class ShippingSink {
  readonly records: NewRecord[] = [];

  constructor(private readonly client: ArchiveClient, private readonly volume: string) {}

  async append(rec: NewRecord): Promise<void> {
    this.records.push(rec);
  }

  writeBytes(): number {
    return this.records.reduce((n, r) => n + (r.op === 'write' ? r.data.length : 0), 0);
  }

  count(op: NewRecord['op']): number {
    return this.records.filter((r) => r.op === op).length;
  }

  async ship(): Promise<void> {
    const state = await this.client.volumeState(this.volume);
    if (!state) throw new Error('no volume');
    let seq = state.appliedSeq;
    let batch: Buffer[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      await this.client.ship(this.volume, state.epoch, Buffer.concat(batch));
      batch = [];
      bytes = 0;
    };
    for (const r of this.records) {
      const frame = encodeRecord({ ...r, seq: ++seq } as Record);
      batch.push(frame);
      bytes += frame.length;
      if (bytes > 4 * 1024 * 1024) await flush();
    }
    await flush();
  }
}
