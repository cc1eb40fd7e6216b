// One checkpoint's copy: what it saved of the tree as it was when it was taken
// (T0), rebuilt from its pre-image log. The copy is lazy: an object's
// attributes, a directory's listing and a file's blocks are saved on their
// first change after T0, so anything not saved is still as it was at T0 in
// the live store.
//
// Objects are named by their T0 inode number (a "key"). An inode number is
// only reused after its object is gone, and every removal that can end an
// object saves it whole first; the identity map then tells a new object that
// got an old number apart (`ident`: live inode number -> the key of the T0
// object it is, or null for an object created after T0).
import * as fs from 'node:fs';
import type { BigIntStats } from 'node:fs';
import { ID_XATTR, isPrivateXattr } from '../store/object-ids.js';
import * as native from '../native/index.js';
import { isObjectId } from '../protocol/records.js';
import type { StoreDir } from '../store/store-dir.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { CheckpointLog, type Frame } from './log.js';

/** Bytes per tracked block: the unit of the change map, of saving and of rollback copies. */
export const BLOCK_SIZE = 64 * 1024;

/** Blocks saved ahead of a sequential writer (8 MiB). */
export const SAVE_AHEAD = 128;

export const REC_ATTRS = 1;
export const REC_LISTING = 2;
export const REC_BLOCK = 3;
export const REC_IDENT = 4;

export type ObjectKind = 'file' | 'dir' | 'symlink' | 'other';

/** An object's attributes at T0. */
export interface AttrRec {
  kind: ObjectKind;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atimeNs: string;
  mtimeNs: string;
  rdev: number;
  /** Extended attributes (strata's own excluded): name, base64 value. */
  xattrs: [string, string][];
  /** A symbolic link's target. */
  target?: string;
  /** strata's object id of it (absent: it had none, or saved by a version before this field); a swap prepare from the checkpoint gives it back. */
  oid?: string;
}

/** A directory's entry at T0: name, key of the object, d_type. */
export type ListEntry = [string, string, number];

/** What the registry keeps of a checkpoint. */
export interface CheckpointInfo {
  name: string;
  id: string;
  createdAt: string;
  /** The checkpoint's directory in its copy store. */
  dir: string;
  blockSize: number;
  status: 'valid' | 'invalid';
  reason?: string;
  invalidAt?: string;
}

/** An object about to change, resolved once per op for every checkpoint. */
export interface LiveObject {
  /** The store it is in (its objects; an absolute `rel` is taken as it is). */
  dir: StoreDir;
  /** Store-relative path (null: only known by a descriptor whose path could not be read). */
  rel: string | null;
  st: BigIntStats;
  /** An open descriptor of it, when the op came through one. */
  fd?: number;
  /** Finds `rel` when it is null (only needed to read its attributes the first time). */
  findRel?: () => Promise<string | null>;
}

export function kindOf(st: BigIntStats | fs.Stats): ObjectKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

const O_NOATIME = fs.constants.O_NOATIME ?? 0;

export class CheckpointState {
  readonly attrs = new Map<string, AttrRec>();
  readonly listings = new Map<string, ListEntry[]>();
  /** key -> block number -> where its old contents are in the log. */
  readonly blocks = new Map<string, Map<number, { off: number; len: number }>>();
  /** Live inode number -> key of the T0 object it is (a rollback recreated it), or null (created after T0). */
  readonly ident = new Map<string, string | null>();
  private readonly inflight = new Map<string, Promise<void>>();
  /** Per file: the block after the last write's range (sequential writers save ahead). */
  private readonly nextBlock = new Map<string, number>();
  /** Per file: the block saved ahead of a sequential writer that the FUSE thread must not answer (see ensureBlocks). */
  private readonly trip = new Map<string, number>();
  /** Told before a live inode number gets another identity (the tracker drops what the FUSE thread may write of it). */
  onIdent: ((ino: string) => void) | null = null;

  private constructor(public info: CheckpointInfo, readonly log: CheckpointLog) {}

  static async open(info: CheckpointInfo): Promise<CheckpointState> {
    const frames: Frame[] = [];
    const log = await CheckpointLog.open(`${info.dir}/log`, (f) => frames.push(f));
    const s = new CheckpointState(info, log);
    for (const f of frames) s.apply(f);
    return s;
  }

  private apply(f: Frame): void {
    const j = f.json as Record<string, unknown>;
    switch (f.type) {
      case REC_ATTRS: this.attrs.set(j['key'] as string, j['rec'] as AttrRec); break;
      case REC_LISTING: this.listings.set(j['key'] as string, j['entries'] as ListEntry[]); break;
      case REC_BLOCK: this.blockMap(j['key'] as string).set(j['block'] as number, { off: f.dataOffset, len: f.dataLength }); break;
      case REC_IDENT: this.ident.set(j['ino'] as string, j['key'] as string | null); break;
      default: break;
    }
  }

  blockMap(key: string): Map<number, { off: number; len: number }> {
    let m = this.blocks.get(key);
    if (m === undefined) this.blocks.set(key, (m = new Map()));
    return m;
  }

  /** The key of the T0 object a live inode is, or null when it was created after T0. */
  canon(ino: bigint | string): string | null {
    const k = String(ino);
    const v = this.ident.get(k);
    return v === undefined ? k : v;
  }

  /** Records that live inode `ino` is T0 object `key` (null: a new object); durable before it resolves when `durable`. */
  async setIdent(ino: bigint | string, key: string | null, durable: boolean): Promise<void> {
    const k = String(ino);
    this.onIdent?.(k);
    this.ident.set(k, key);
    const { durable: done } = this.log.append(REC_IDENT, { ino: k, key });
    if (durable) await done;
    else done.catch(() => {});
  }

  // ---- saving pre-images -------------------------------------------------------

  /** Runs `save` once for `id` (concurrent callers wait for the same save). */
  private async once(id: string, saved: () => boolean, save: () => Promise<void>): Promise<void> {
    if (saved()) return;
    const running = this.inflight.get(id);
    if (running) return running;
    const p = save().finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  /** Saves the object's T0 attributes (before anything of it changes). */
  async ensureAttrs(key: string, obj: LiveObject): Promise<AttrRec> {
    await this.once(`a${key}`, () => this.attrs.has(key), async () => {
      const rec = await readAttrs(obj);
      await this.log.append(REC_ATTRS, { key, rec }).durable;
      this.attrs.set(key, rec);
    });
    return this.attrs.get(key)!;
  }

  /** Saves the T0 listing of the directory `key` at store path `rel` of the store `dir`. */
  async ensureListing(key: string, dir: StoreDir, rel: string): Promise<void> {
    await this.once(`l${key}`, () => this.listings.has(key), async () => {
      const entries: ListEntry[] = [];
      for (const e of await dir.readdirIno(rel)) {
        if (rel === '.' && e.name === RESERVED_NAME) continue;
        const k = this.canon(e.ino);
        if (k !== null) entries.push([e.name, k, e.type]);
      }
      await this.log.append(REC_LISTING, { key, entries }).durable;
      this.listings.set(key, entries);
    });
  }

  /** Saves the T0 contents of every block of file `key` that [offset, offset + length) touches. */
  async ensureBlocks(key: string, obj: LiveObject, offset: number, length: number, onAhead?: () => void): Promise<void> {
    const rec = this.attrs.get(key);
    if (rec === undefined || rec.kind !== 'file' || length <= 0) return;
    const end = Math.min(offset + length, rec.size);
    if (offset >= end) return;
    const map = this.blockMap(key);
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((end - 1) / BLOCK_SIZE);
    const waits: Promise<void>[] = [];
    const missing: number[] = [];
    for (let b = first; b <= last; b++) {
      if (map.has(b)) continue;
      const running = this.inflight.get(`b${key}:${b}`);
      if (running) waits.push(running);
      else missing.push(b);
    }
    // A writer going through the file in order: the blocks it will overwrite next are saved
    // with these, one fdatasync for SAVE_AHEAD of them (a saved block need not change), and
    // the SAVE_AHEAD after those are saved in the background (published to the FUSE thread by
    // `onAhead` once durable). The FUSE thread answers the writer's writes of saved blocks, so
    // the first block saved ahead is kept back from it (a "tripwire", `isTripwire`): the writer
    // comes back here when it reaches it, which starts the next background save while it
    // writes the blocks saved before, and so on.
    const tripped = this.trip.get(key) === first;
    const sequential = this.nextBlock.get(key) === first || tripped;
    this.nextBlock.set(key, last + 1);
    const background: number[] = [];
    // (A write whose blocks were all saved and that is not at the tripwire saves nothing ahead:
    // a rollback putting back adjacent blocks, a write that came here for another reason.)
    if (sequential && (missing.length > 0 || tripped)) {
      const limit = Math.ceil(rec.size / BLOCK_SIZE);
      const stop = Math.min(last + 1 + 2 * SAVE_AHEAD, limit);
      const withThese = missing.length > 0 ? Math.min(last + 1 + SAVE_AHEAD, stop) : last + 1;
      for (let b = last + 1; b < stop; b++) {
        if (map.has(b) || this.inflight.has(`b${key}:${b}`)) continue;
        (b < withThese ? missing : background).push(b);
      }
      if (last + 1 + SAVE_AHEAD < limit) this.trip.set(key, last + 1 + SAVE_AHEAD);
      else this.trip.delete(key);
    }
    if (missing.length > 0) waits.push(this.startSave(key, rec.size, openForRead(obj), missing));
    if (background.length > 0) {
      // The descriptor is opened now: the handle the write came through may be closed before the save runs.
      const fd = await openForRead(obj).catch(() => null);
      // (Not opened: the blocks are saved when a write needs them.) Another write may have
      // started saving some of them meanwhile: those are left to it.
      const still = background.filter((b) => !map.has(b) && !this.inflight.has(`b${key}:${b}`));
      if (fd !== null && still.length > 0) this.startSave(key, rec.size, Promise.resolve(fd), still).then(() => onAhead?.(), () => {});
      else if (fd !== null) fs.close(fd, () => {});
    }
    await Promise.all(waits);
  }

  /** Is block `b` of `key` where a sequential writer must come back to the core (to save further ahead)? */
  isTripwire(key: string, b: number): boolean {
    return this.trip.get(key) === b;
  }

  /** Saves `blocks` of `key` from the descriptor `fd` resolves to (closed after), registered as in flight until durable. */
  private startSave(key: string, t0Size: number, fd: Promise<number>, blocks: number[]): Promise<void> {
    const save = fd.then(async (f) => {
      try {
        await this.saveBlocks(key, t0Size, f, blocks);
      } finally {
        fs.close(f, () => {});
      }
    });
    for (const b of blocks) {
      const id = `b${key}:${b}`;
      const p = save.finally(() => this.inflight.delete(id));
      p.catch(() => {});
      this.inflight.set(id, p);
    }
    return save;
  }

  private async saveBlocks(key: string, t0Size: number, fd: number, blocks: number[]): Promise<void> {
    const map = this.blockMap(key);
    const done: Promise<void>[] = [];
    const placed: [number, { off: number; len: number }][] = [];
    // Contiguous runs are read with one pread each (at most 1 MiB at a time).
    let i = 0;
    while (i < blocks.length) {
      let j = i;
      while (j + 1 < blocks.length && blocks[j + 1] === blocks[j]! + 1 && j + 1 - i < 16) j++;
      const start = blocks[i]! * BLOCK_SIZE;
      const stop = Math.min((blocks[j]! + 1) * BLOCK_SIZE, t0Size);
      const buf = Buffer.allocUnsafe(stop - start);
      // Bytes past the live end of file (cut since T0 and saved then, or never there) read as zeros.
      let got = 0;
      while (got < buf.length) {
        const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, got, buf.length - got, start + got, (err, r) => (err ? reject(err) : resolve(r))));
        if (n === 0) break;
        got += n;
      }
      buf.fill(0, got);
      for (let b = blocks[i]!; b <= blocks[j]!; b++) {
        const from = b * BLOCK_SIZE - start;
        const data = buf.subarray(from, Math.min(from + BLOCK_SIZE, buf.length));
        const a = this.log.append(REC_BLOCK, { key, block: b }, data);
        done.push(a.durable);
        placed.push([b, { off: a.dataOffset, len: data.length }]);
      }
      i = j + 1;
    }
    await Promise.all(done);
    // The first save of a block is its T0 contents: a later one (two saves raced) may have
    // read it after a change that the first one allowed, and must not replace it.
    for (const [b, where] of placed) if (!map.has(b)) map.set(b, where);
  }

  /** Everything of the object that a removal could end (it may lose its last name). */
  async ensureWhole(key: string, obj: LiveObject): Promise<void> {
    const rec = await this.ensureAttrs(key, obj);
    if (rec.kind === 'file') await this.ensureBlocks(key, obj, 0, rec.size);
    else if (rec.kind === 'dir' && obj.rel !== null) await this.ensureListing(key, obj.dir, obj.rel);
  }

  /**
   * Every block of T0 file `key` is saved: the file can be made of the log
   * alone. A file is saved whole before it loses its last name, so a T0 file
   * not found in the live tree is gone only when this holds (else a program
   * moved it while the tree was looked through).
   */
  savedWhole(key: string): boolean {
    const rec = this.attrs.get(key);
    if (rec === undefined || rec.kind !== 'file') return false;
    const map = this.blocks.get(key);
    for (let b = 0, n = Math.ceil(rec.size / BLOCK_SIZE); b < n; b++) if (map?.has(b) !== true) return false;
    return true;
  }

  /** Blocks saved for `key`, in order. */
  savedBlocks(key: string): [number, { off: number; len: number }][] {
    return [...(this.blocks.get(key) ?? new Map<number, { off: number; len: number }>()).entries()].sort((a, b) => a[0] - b[0]);
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

/** A read-only descriptor of the object (never updating its atime). */
async function openForRead(obj: LiveObject): Promise<number> {
  const path = obj.fd !== undefined ? `/proc/self/fd/${obj.fd}` : obj.rel!;
  const flags = fs.constants.O_RDONLY | O_NOATIME | (obj.fd !== undefined ? 0 : fs.constants.O_NOFOLLOW);
  return obj.dir.open(path, flags);
}

/** The attributes of a live object, as a T0 record. */
export async function readAttrs(obj: LiveObject): Promise<AttrRec> {
  // An open file's through its descriptor: no path is needed (its path may be
  // longer than the kernel can give back through /proc, and then none is found).
  if (obj.fd !== undefined && kindOf(obj.st) === 'file') return attrRecOf(obj.st, await native.readXattrs('', obj.fd));
  if (obj.rel === null && obj.findRel) obj.rel = await obj.findRel();
  if (obj.rel === null) return attrRecOf(obj.st, []);
  const [xattrs, target] = await Promise.all([
    native.readXattrs(obj.rel, obj.dir.fd),
    kindOf(obj.st) === 'symlink' ? obj.dir.readlink(obj.rel) : undefined,
  ]);
  return attrRecOf(obj.st, xattrs, target);
}

/**
 * A T0 record of an object from its lstat, all its extended attributes (as
 * native.readXattrs gives them; its id among them, strata's other private
 * ones left out) and a symbolic link's target.
 */
export function attrRecOf(st: BigIntStats, xattrs: readonly [string, Buffer][], target?: string): AttrRec {
  const rec: AttrRec = {
    kind: kindOf(st), mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size),
    atimeNs: st.atimeNs.toString(), mtimeNs: st.mtimeNs.toString(), rdev: Number(st.rdev), xattrs: [],
  };
  for (const [name, value] of xattrs) {
    if (name === ID_XATTR) {
      const oid = value.toString('latin1');
      if (isObjectId(oid)) rec.oid = oid;
    } else if (!isPrivateXattr(name)) {
      rec.xattrs.push([name, value.toString('base64')]);
    }
  }
  if (target !== undefined) rec.target = target;
  return rec;
}
