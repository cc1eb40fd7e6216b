// Applies journal records to one volume's tree inside the caller's write
// transaction. Lenient where a crash-reconciler may resend state (a record
// naming an unknown id or a vanished parent is a no-op, a create over a name
// replaces it, an rmdir takes a whole subtree), strict where applying would
// corrupt the tree (a directory moved into itself, a type change): those
// throw EBADREQ and the caller rolls the whole batch back.
//
// Derived state kept incrementally, so images need no deep walk:
// - counts.nlink: a non-directory's number of names; a directory's 2 + subdirectories;
// - counts.sub_entries / sub_bytes: entries and regular-file bytes below a
//   directory (a hard-linked file counts once per name). Each change is added
//   along the directory's ancestor chain (a directory has exactly one parent).
//
// Writes coalesce: a run of `write` records edits blocks in memory (`dirty`)
// and the blocks are hashed and stored once, before the next other record or
// at the end of the batch, so sixteen 4 KiB writes store one 64 KiB block.
//
// A batch costs a few statements per touched row, not per record: the
// current object rows a batch reads are kept in memory for the batch (every
// change of an object goes through here, so the copy is exact), and the
// counts rows (nlink, subtree totals) are changed in memory and written once
// each at the end of the batch, so a thousand files created in one directory
// update that directory's and its ancestors' totals once, not a thousand
// times. Everything stays inside the caller's one transaction; a throw
// discards the memory with the rollback.
import type Database from 'better-sqlite3';
import { ArchiveError } from '../protocol/archive-api.js';
import { BLOCK_SIZE, type Attrs, type Record, type Time } from '../protocol/records.js';
import type { FileData } from './file-data.js';
import { LIVE } from './schema.js';
import { OBJECT_VALUE_COLS, S_IFMT, isDirMode, isRegMode, objectValues, withAttrs, type CountsRow, type ObjectRow } from './rows.js';
import { VersionedTable } from './versioned.js';

/** Dirty block bytes held before they are stored mid-batch. */
const MAX_DIRTY_BYTES = 32 * 1024 * 1024;
/** Deeper than any real tree: an ancestor walk this long means a cycle. */
const MAX_DEPTH = 1_000_000;
const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
/** Keys per set-based prefetch query. */
const PREFETCH_CHUNK = 128;
/** Block buffers kept for reuse between flushes (zeroing the used part beats allocating 64 KiB per small file). */
const POOL_BLOCKS = 64;

/**
 * A counts row as the batch sees it; `row` null: no row (absent or deleted);
 * undefined: not read, and `add` holds what this batch adds to it. Most
 * changes only add (a file created below a directory adds to its totals and
 * its ancestors'), so a row is read only when a record needs its value (a
 * link count reaching zero, a directory moved with its totals); the others
 * are one `UPDATE … SET n = n + ?` each at the batch's end, or nothing when
 * their additions cancel out (a rename within a directory).
 */
interface CountsState {
  row: CountsRow | null | undefined;
  add?: CountsRow;
  /** Changed in this batch: written back at its end (unless it is back to `orig`). */
  changed: boolean;
  /** The row as the database holds it (null: none); undefined: not read (written whatever it holds). */
  orig?: CountsRow | null;
}

interface DirtyBlock {
  /** BLOCK_SIZE bytes, zero past `hi`. */
  data: Buffer;
  /** Bytes [hi, BLOCK_SIZE) are zeros (what must be zeroed to reuse the buffer). */
  hi: number;
  /** The last record that changed it (becomes the block row's seq_from). */
  seq: number;
}

export class Applier {
  private readonly objects: VersionedTable;
  private readonly entries: VersionedTable;
  private readonly xattrs: VersionedTable;
  private readonly fileBlocks: VersionedTable;
  private readonly q: { [name: string]: Database.Statement };
  /** Prefetch queries by number of keys (powers of two up to PREFETCH_CHUNK: a batch of one record looks up one key, not 128). */
  private readonly objectsIn: Database.Statement[] = [];
  private readonly entriesIn: Database.Statement[] = [];

  // The batch being applied.
  private volume = '';
  private vid = 0;
  private floor = 0;
  private readonly dirty = new Map<string, Map<number, DirtyBlock>>();
  private dirtyBytes = 0;
  private readonly pool: Buffer[] = [];
  /** Current object rows read or written in this batch (null: none). */
  private readonly objectCache = new Map<string, ObjectRow | null>();
  /** Objects whose current row this batch has written once: later changes wait for the batch's end (one UPDATE each). */
  private readonly objectsWritten = new Set<string>();
  /** Of those, the ones changed again since, with the last record that did. */
  private readonly objectsDeferred = new Map<string, number>();
  /** Entry lookups of this batch: `parent/name` -> child (null: no entry). */
  private readonly entryCache = new Map<string, string | null>();
  /** Counts rows read or changed in this batch. */
  private readonly countsCache = new Map<string, CountsState>();
  /**
   * The names of the objects this batch created (they had no row before it,
   * so every name they have was attached here): `parent/name` -> parent. A
   * size change of such a file needs no query for its names.
   */
  private readonly freshNames = new Map<string, Map<string, string>>();

  constructor(db: Database.Database, private readonly data: FileData) {
    this.objects = new VersionedTable(db, 'objects', ['vid', 'id'], OBJECT_VALUE_COLS);
    this.entries = new VersionedTable(db, 'entries', ['vid', 'parent', 'name'], ['child']);
    this.xattrs = new VersionedTable(db, 'xattrs', ['vid', 'id', 'name'], ['value']);
    this.fileBlocks = new VersionedTable(db, 'file_blocks', ['vid', 'id', 'idx'], ['digest', 'length']);
    const live = `seq_to = ${LIVE}`;
    for (let n = 1; n <= PREFETCH_CHUNK; n *= 2) {
      this.objectsIn[n] = db.prepare(`SELECT * FROM objects WHERE vid = ? AND id IN (${Array(n).fill('?').join(', ')}) AND ${live}`);
      this.entriesIn[n] = db.prepare(`SELECT parent, name, child FROM entries WHERE vid = ? AND (parent, name) IN (VALUES ${Array(n).fill('(?, ?)').join(', ')}) AND ${live}`);
    }
    this.q = {
      object: db.prepare(`SELECT * FROM objects WHERE vid = ? AND id = ? AND ${live}`),
      counts: db.prepare('SELECT nlink, sub_entries, sub_bytes FROM counts WHERE vid = ? AND id = ?'),
      writeCounts: db.prepare('INSERT OR REPLACE INTO counts (vid, id, nlink, sub_entries, sub_bytes) VALUES (?, ?, ?, ?, ?)'),
      addCounts: db.prepare('UPDATE counts SET nlink = nlink + ?, sub_entries = sub_entries + ?, sub_bytes = sub_bytes + ? WHERE vid = ? AND id = ?'),
      deleteCounts: db.prepare('DELETE FROM counts WHERE vid = ? AND id = ?'),
      entry: db.prepare(`SELECT child FROM entries WHERE vid = ? AND parent = ? AND name = ? AND ${live}`).pluck(),
      entriesOf: db.prepare(`SELECT name, child FROM entries WHERE vid = ? AND parent = ? AND ${live}`),
      namesOf: db.prepare(`SELECT parent, name FROM entries WHERE vid = ? AND child = ? AND ${live}`),
      hasBlock: db.prepare(`SELECT 1 FROM file_blocks WHERE vid = ? AND id = ? AND idx = ? AND ${live}`).pluck(),
      blocksFrom: db.prepare(`SELECT idx FROM file_blocks WHERE vid = ? AND id = ? AND idx >= ? AND ${live}`).pluck(),
    };
  }

  /** Applies `records` (already checked for sequence) to volume `vid`. */
  apply(volume: string, vid: number, floor: number, records: readonly Record[]): void {
    this.volume = volume;
    this.vid = vid;
    this.floor = floor;
    try {
      this.prefetch(records);
      for (const r of records) {
        if (r.op !== 'write') this.flush();
        this.applyOne(r);
        if (this.dirtyBytes > MAX_DIRTY_BYTES) this.flush();
      }
      this.flush();
      this.writeObjects();
      this.writeCounts();
    } finally {
      this.dirty.clear();
      this.dirtyBytes = 0;
      this.objectCache.clear();
      this.objectsWritten.clear();
      this.objectsDeferred.clear();
      this.entryCache.clear();
      this.countsCache.clear();
      this.freshNames.clear();
    }
  }

  private applyOne(r: Record): void {
    switch (r.op) {
      case 'create': return this.create(r);
      case 'link': return this.link(r);
      case 'unlink':
      case 'rmdir': {
        if (!this.dir(r.parent)) return;
        this.dropName(r.parent, r.name, r.seq);
        this.setMtime(r.parent, r.parentMtime, r.seq);
        return;
      }
      case 'rename': return this.rename(r);
      case 'exchange': return this.exchange(r);
      case 'setattr': {
        const o = this.object(r.id);
        if (o) this.setAttrs(o, r.attrs, r.seq, r);
        return;
      }
      case 'write': return this.write(r);
      case 'setxattr':
        if (this.object(r.id)) this.xattrs.put([this.vid, r.id, r.name], [r.value], r.seq, this.floor);
        return;
      case 'removexattr':
        if (this.object(r.id)) this.xattrs.remove([this.vid, r.id, r.name], r.seq, this.floor);
        return;
    }
  }

  /**
   * Reads the current rows of every object and entry the records name with
   * a few set-based queries (PREFETCH_CHUNK keys each) instead of one point
   * query each as they are met: what a record creates is known absent
   * without a query of its own.
   */
  private prefetch(records: readonly Record[]): void {
    const ids = new Set<string>();
    const names = new Map<string, [string, string]>();
    const name = (parent: string, n: string): void => { names.set(`${parent}/${n}`, [parent, n]); };
    for (const r of records) {
      switch (r.op) {
        case 'create': case 'link': ids.add(r.parent); ids.add(r.id); name(r.parent, r.name); break;
        case 'unlink': case 'rmdir': ids.add(r.parent); name(r.parent, r.name); break;
        case 'rename': case 'exchange': ids.add(r.parent); ids.add(r.newParent); name(r.parent, r.name); name(r.newParent, r.newName); break;
        default: ids.add(r.id);
      }
    }
    const idList = [...ids];
    for (let i = 0; i < idList.length; i += PREFETCH_CHUNK) {
      const chunk = idList.slice(i, i + PREFETCH_CHUNK);
      for (const id of chunk) this.objectCache.set(id, null);
      const n = keysFor(chunk.length);
      while (chunk.length < n) chunk.push(chunk[0]!); // a prepared shape
      for (const o of this.objectsIn[n]!.all(this.vid, ...chunk) as ObjectRow[]) this.objectCache.set(o.id, o);
    }
    const nameList = [...names.values()];
    for (let i = 0; i < nameList.length; i += PREFETCH_CHUNK) {
      const chunk = nameList.slice(i, i + PREFETCH_CHUNK);
      for (const [p, n] of chunk) this.entryCache.set(`${p}/${n}`, null);
      const n = keysFor(chunk.length);
      while (chunk.length < n) chunk.push(chunk[0]!);
      for (const e of this.entriesIn[n]!.all(this.vid, ...chunk.flat()) as { parent: string; name: string; child: string }[]) this.entryCache.set(`${e.parent}/${e.name}`, e.child);
    }
  }

  // ---- records ---------------------------------------------------------------

  private create(r: Extract<Record, { op: 'create' }>): void {
    if (!this.dir(r.parent)) return; // the parent went later in the primary's history
    const have = this.object(r.id);
    if (have && (have.mode & S_IFMT) !== (r.attrs.mode & S_IFMT)) throw bad(r, `object ${r.id} exists with another type (mode ${octal(have.mode)})`);
    const haveDir = have !== undefined && isDirMode(have.mode);
    if (haveDir && this.isWithin(r.parent, r.id)) throw bad(r, `would move directory ${r.id} into its own subtree`);
    if (this.entryOf(r.parent, r.name) !== r.id) {
      if (haveDir) {
        // A directory has one name: the create moves it here.
        const at = this.q.namesOf.get(this.vid, r.id) as { parent: string; name: string } | undefined;
        if (at) this.detach(at.parent, at.name, r.seq);
      }
      this.holding(have, () => {
        this.dropName(r.parent, r.name, r.seq);
        let o = this.object(r.id);
        if (!o) {
          o = withAttrs({ id: r.id, target: r.target ?? null, parent: isDirMode(r.attrs.mode) ? r.parent : null } as ObjectRow, r.attrs);
          this.putObject(o, r.seq, true);
          this.freshNames.set(r.id, new Map());
          this.countsCache.set(r.id, { row: { nlink: isDirMode(o.mode) ? 2 : 0, sub_entries: 0, sub_bytes: 0 }, changed: true });
        }
        this.attach(r.parent, r.name, o, r.seq);
      });
    }
    if (have) {
      const o = this.object(r.id)!;
      this.setAttrs(r.target !== undefined ? { ...o, target: r.target } : o, r.attrs, r.seq, r);
    }
    this.setMtime(r.parent, r.parentMtime, r.seq);
  }

  private link(r: Extract<Record, { op: 'link' }>): void {
    const o = this.object(r.id);
    if (!this.dir(r.parent) || !o || isDirMode(o.mode)) return;
    if (this.entryOf(r.parent, r.name) !== r.id) {
      this.holding(o, () => {
        this.dropName(r.parent, r.name, r.seq);
        this.attach(r.parent, r.name, this.object(r.id)!, r.seq);
      });
    }
    this.setMtime(r.parent, r.parentMtime, r.seq);
  }

  private rename(r: Extract<Record, { op: 'rename' }>): void {
    if (!this.dir(r.parent) || !this.dir(r.newParent)) return;
    const id = this.entryOf(r.parent, r.name);
    const o = id === undefined ? undefined : this.object(id);
    if (!o) return;
    // Same entry, or two names of one file: POSIX rename does nothing.
    const same = (r.parent === r.newParent && r.name === r.newName) || this.entryOf(r.newParent, r.newName) === o.id;
    if (!same) {
      if (isDirMode(o.mode) && this.isWithin(r.newParent, o.id)) throw bad(r, `would move directory ${o.id} into its own subtree`);
      this.holding(o, () => {
        this.detach(r.parent, r.name, r.seq);
        this.dropName(r.newParent, r.newName, r.seq);
        this.attach(r.newParent, r.newName, this.object(o.id)!, r.seq);
      });
    }
    this.setMtime(r.parent, r.parentMtime, r.seq);
    this.setMtime(r.newParent, r.newParentMtime, r.seq);
  }

  /** The objects of two names swap (renameat2's RENAME_EXCHANGE); both names exist, nothing is removed. */
  private exchange(r: Extract<Record, { op: 'exchange' }>): void {
    if (!this.dir(r.parent) || !this.dir(r.newParent)) return;
    const aId = this.entryOf(r.parent, r.name);
    const bId = this.entryOf(r.newParent, r.newName);
    const a = aId === undefined ? undefined : this.object(aId);
    const b = bId === undefined ? undefined : this.object(bId);
    if (!a || !b) return;
    // Two names of one file, or one name twice: the exchange changes nothing.
    if (a.id !== b.id) {
      if (isDirMode(a.mode) && this.isWithin(r.newParent, a.id)) throw bad(r, `would move directory ${a.id} into its own subtree`);
      if (isDirMode(b.mode) && this.isWithin(r.parent, b.id)) throw bad(r, `would move directory ${b.id} into its own subtree`);
      this.holding(a, () => this.holding(b, () => {
        this.detach(r.parent, r.name, r.seq);
        this.detach(r.newParent, r.newName, r.seq);
        this.attach(r.parent, r.name, this.object(b.id)!, r.seq);
        this.attach(r.newParent, r.newName, this.object(a.id)!, r.seq);
      }));
    }
    this.setMtime(r.parent, r.parentMtime, r.seq);
    this.setMtime(r.newParent, r.newParentMtime, r.seq);
  }

  private write(r: Extract<Record, { op: 'write' }>): void {
    const o = this.object(r.id);
    if (!o) return;
    if (!isRegMode(o.mode)) throw bad(r, `object ${r.id} is not a regular file`);
    if (r.data.length === 0) return;
    const oldSize = o.size;
    const end = r.offset + r.data.length;
    if (end > oldSize) {
      this.resize(o, end, r.seq);
      this.putObject({ ...o, size: end }, r.seq);
    }
    for (let done = 0; done < r.data.length;) {
      const off = r.offset + done;
      const idx = Math.floor(off / BLOCK_SIZE);
      const inBlock = off - idx * BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - inBlock, r.data.length - done);
      // No read when the write covers every byte the block held.
      const coversOld = inBlock === 0 && n >= Math.min(BLOCK_SIZE, oldSize - idx * BLOCK_SIZE);
      const d = this.dirtyBlock(r.id, idx, r.seq, !coversOld);
      r.data.copy(d.data, inBlock, done, done + n);
      d.hi = Math.max(d.hi, inBlock + n);
      done += n;
    }
  }

  // ---- attributes and data ----------------------------------------------------

  private setAttrs(o: ObjectRow, a: Attrs, seq: number, r: Record): void {
    if ((a.mode & S_IFMT) !== (o.mode & S_IFMT)) throw bad(r, `mode ${octal(a.mode)} changes the type of ${o.id} (mode ${octal(o.mode)})`);
    if (isRegMode(o.mode) && a.size !== o.size) this.resize(o, a.size, seq);
    this.putObject(withAttrs(o, a), seq);
  }

  /**
   * Block and totals bookkeeping for a regular file's size change (the caller
   * writes the new size). Cutting drops the blocks past the end and zeroes
   * the new last block's tail; growing re-stores a short last block at its
   * new length (zero-padded), so every block row's length is its length
   * within the file and a digest always covers exactly the file's bytes.
   */
  private resize(o: ObjectRow, size: number, seq: number): void {
    const old = o.size;
    if (size < old) {
      const keep = Math.ceil(size / BLOCK_SIZE);
      for (const idx of this.q.blocksFrom.all(this.vid, o.id, keep) as number[]) this.fileBlocks.remove([this.vid, o.id, idx], seq, this.floor);
      const mine = this.dirty.get(o.id);
      for (const idx of [...(mine?.keys() ?? [])]) if (idx >= keep) this.dropDirty(o.id, idx);
      const tail = size % BLOCK_SIZE;
      if (tail !== 0 && this.hasData(o.id, keep - 1)) this.dirtyBlock(o.id, keep - 1, seq, true).data.fill(0, tail);
    } else if (size > old && old % BLOCK_SIZE !== 0) {
      const last = Math.floor(old / BLOCK_SIZE);
      if (this.hasData(o.id, last)) this.dirtyBlock(o.id, last, seq, true);
    }
    const fresh = this.freshNames.get(o.id);
    if (fresh !== undefined) for (const parent of fresh.values()) this.addToChain(parent, 0, size - old);
    else for (const { parent } of this.q.namesOf.all(this.vid, o.id) as { parent: string }[]) this.addToChain(parent, 0, size - old);
  }

  private hasData(id: string, idx: number): boolean {
    return this.dirty.get(id)?.has(idx) === true || this.q.hasBlock.get(this.vid, id, idx) !== undefined;
  }

  /** The in-memory copy of a block for this batch (loaded from the store when `load`). */
  private dirtyBlock(id: string, idx: number, seq: number, load: boolean): DirtyBlock {
    let mine = this.dirty.get(id);
    if (!mine) this.dirty.set(id, (mine = new Map()));
    const have = mine.get(idx);
    if (have) {
      have.seq = seq;
      return have;
    }
    const d: DirtyBlock = { data: this.pool.pop() ?? Buffer.alloc(BLOCK_SIZE), hi: 0, seq };
    if (load) d.hi = this.data.readBlock(this.volume, this.vid, id, idx)?.copy(d.data) ?? 0;
    mine.set(idx, d);
    this.dirtyBytes += BLOCK_SIZE;
    return d;
  }

  private dropDirty(id: string, idx: number): void {
    if (this.dirty.get(id)?.delete(idx)) this.dirtyBytes -= BLOCK_SIZE;
  }

  /**
   * Stores the dirty blocks at their length within their file; a block of
   * zeros is stored as a hole (no row), which reads the same.
   */
  private flush(): void {
    for (const [id, blocks] of this.dirty) {
      const o = this.object(id);
      if (!o) continue;
      for (const [idx, d] of [...blocks].sort((a, b) => a[0] - b[0])) {
        const len = Math.min(BLOCK_SIZE, o.size - idx * BLOCK_SIZE);
        const bytes = d.data.subarray(0, Math.max(0, len));
        if (len <= 0 || bytes.equals(ZERO_BLOCK.subarray(0, len))) {
          this.fileBlocks.remove([this.vid, id, idx], d.seq, this.floor);
        } else {
          this.fileBlocks.put([this.vid, id, idx], [this.data.store(bytes), len], d.seq, this.floor);
        }
        if (this.pool.length < POOL_BLOCKS) this.pool.push(d.data.fill(0, 0, d.hi));
      }
    }
    this.dirty.clear();
    this.dirtyBytes = 0;
  }

  // ---- names ------------------------------------------------------------------

  /** Adds entry parent/name -> o (the name must be free). */
  private attach(parent: string, name: string, o: ObjectRow, seq: number): void {
    this.entries.insertNew([this.vid, parent, name], [o.id], seq);
    this.entryCache.set(`${parent}/${name}`, o.id);
    this.freshNames.get(o.id)?.set(`${parent}/${name}`, parent);
    if (isDirMode(o.mode)) {
      if (o.parent !== parent) this.putObject({ ...o, parent }, seq);
      const c = this.counts(o.id);
      this.bumpNlink(parent, 1);
      this.addToChain(parent, 1 + c.sub_entries, c.sub_bytes);
    } else {
      this.bumpNlink(o.id, 1);
      this.addToChain(parent, 1, isRegMode(o.mode) ? o.size : 0);
    }
  }

  /** Removes entry parent/name and its counts; the object stays (see dropName). Returns it. */
  private detach(parent: string, name: string, seq: number): ObjectRow | undefined {
    const id = this.entryOf(parent, name);
    if (id === undefined) return undefined;
    this.entries.remove([this.vid, parent, name], seq, this.floor);
    this.entryCache.set(`${parent}/${name}`, null);
    this.freshNames.get(id)?.delete(`${parent}/${name}`);
    const o = this.object(id);
    if (!o) return undefined;
    if (isDirMode(o.mode)) {
      const c = this.counts(o.id);
      this.bumpNlink(parent, -1);
      this.addToChain(parent, -(1 + c.sub_entries), -c.sub_bytes);
    } else {
      this.bumpNlink(o.id, -1);
      this.addToChain(parent, -1, isRegMode(o.mode) ? -o.size : 0);
    }
    return o;
  }

  /** Removes a name; the object goes with its last name (a directory with its whole subtree). */
  private dropName(parent: string, name: string, seq: number): void {
    const o = this.detach(parent, name, seq);
    if (!o) return;
    if (isDirMode(o.mode)) this.deleteSubtree(o.id, seq);
    else if (this.counts(o.id).nlink <= 0) this.deleteObject(o.id, seq);
  }

  /**
   * Deletes a detached directory and everything below it. Its totals were
   * already taken off its ancestors by detach; a file below with a name
   * elsewhere only loses the names in here.
   */
  private deleteSubtree(dirId: string, seq: number): void {
    const stack = [dirId];
    for (let x = stack.pop(); x !== undefined; x = stack.pop()) {
      for (const e of this.q.entriesOf.all(this.vid, x) as { name: string; child: string }[]) {
        this.entries.remove([this.vid, x, e.name], seq, this.floor);
        this.entryCache.set(`${x}/${e.name}`, null);
        this.freshNames.get(e.child)?.delete(`${x}/${e.name}`);
        const c = this.object(e.child);
        if (!c) continue;
        if (isDirMode(c.mode)) {
          stack.push(c.id);
        } else {
          this.bumpNlink(c.id, -1);
          if (this.counts(c.id).nlink <= 0) this.deleteObject(c.id, seq);
        }
      }
      this.deleteObject(x, seq);
    }
  }

  private deleteObject(id: string, seq: number): void {
    const key = [this.vid, id];
    this.objects.remove(key, seq, this.floor);
    this.objectsWritten.delete(id);
    this.objectsDeferred.delete(id);
    this.xattrs.remove(key, seq, this.floor);
    this.fileBlocks.remove(key, seq, this.floor);
    this.objectCache.set(id, null);
    this.freshNames.delete(id);
    const had = this.countsCache.get(id);
    this.countsCache.set(id, { row: null, changed: true, orig: had?.orig });
    const mine = this.dirty.get(id);
    if (mine) {
      this.dirtyBytes -= mine.size * BLOCK_SIZE;
      this.dirty.delete(id);
    }
  }

  /**
   * Runs `fn` with a non-directory's link count raised by one, so that the
   * object survives while a name it is about to take is cleared (its other
   * names may be below a directory that goes with that name).
   */
  private holding(o: ObjectRow | undefined, fn: () => void): void {
    const hold = o !== undefined && !isDirMode(o.mode);
    if (hold) this.bumpNlink(o.id, 1);
    fn();
    if (hold) this.bumpNlink(o.id, -1);
  }

  /** Adds to the subtree totals of `dirId` and each of its ancestors. */
  private addToChain(dirId: string, entries: number, bytes: number): void {
    if (entries === 0 && bytes === 0) return;
    let cur: string | null | undefined = dirId;
    for (let depth = 0; cur; depth++) {
      if (depth > MAX_DEPTH) throw new ArchiveError('ECORRUPT', `volume ${this.volume}: directory ${dirId} has a cyclic ancestor chain`);
      this.addCounts(cur, 0, entries, bytes);
      cur = this.object(cur)?.parent;
    }
  }

  /** Whether `id` is `ancestor` or below it. */
  private isWithin(id: string, ancestor: string): boolean {
    let cur: string | null | undefined = id;
    for (let depth = 0; cur; depth++) {
      if (cur === ancestor) return true;
      if (depth > MAX_DEPTH) throw new ArchiveError('ECORRUPT', `volume ${this.volume}: directory ${id} has a cyclic ancestor chain`);
      cur = this.object(cur)?.parent;
    }
    return false;
  }

  // ---- rows -------------------------------------------------------------------

  private object(id: string): ObjectRow | undefined {
    let o = this.objectCache.get(id);
    if (o === undefined) {
      o = (this.q.object.get(this.vid, id) as ObjectRow | undefined) ?? null;
      this.objectCache.set(id, o);
    }
    return o ?? undefined;
  }

  private dir(id: string): ObjectRow | undefined {
    const o = this.object(id);
    return o && isDirMode(o.mode) ? o : undefined;
  }

  private counts(id: string): CountsRow {
    return this.countsState(id).row ?? { nlink: 0, sub_entries: 0, sub_bytes: 0 };
  }

  /** The counts state of `id` with its row read (and what the batch added to it applied). */
  private countsState(id: string): CountsState & { row: CountsRow | null } {
    const had = this.countsCache.get(id);
    if (had !== undefined && had.row !== undefined) return had as CountsState & { row: CountsRow | null };
    const got = this.q.counts.get(this.vid, id) as CountsRow | undefined;
    const orig = got === undefined ? null : { nlink: got.nlink, sub_entries: got.sub_entries, sub_bytes: got.sub_bytes };
    const row = orig === null ? null : { ...orig };
    const add = had?.add;
    if (row !== null && add !== undefined) {
      row.nlink += add.nlink;
      row.sub_entries += add.sub_entries;
      row.sub_bytes += add.sub_bytes;
    }
    const c = { row, changed: row !== null && had?.changed === true, orig };
    this.countsCache.set(id, c);
    return c;
  }

  /** Adds to an object's counts (no row: nothing, as an UPDATE of no row); reads nothing. */
  private addCounts(id: string, nlink: number, entries: number, bytes: number): void {
    let c = this.countsCache.get(id);
    if (c === undefined) this.countsCache.set(id, (c = { row: undefined, add: { nlink: 0, sub_entries: 0, sub_bytes: 0 }, changed: false }));
    const r = c.row === undefined ? c.add! : c.row;
    if (r === null) return;
    r.nlink += nlink;
    r.sub_entries += entries;
    r.sub_bytes += bytes;
    c.changed = true;
  }

  /** Adds to an object's link count (no row: nothing, as an UPDATE of no row). */
  private bumpNlink(id: string, n: number): void {
    this.addCounts(id, n, 0, 0);
  }

  /**
   * Writes the counts rows this batch changed: one statement per row, none
   * for a row back where it started (a rename within a directory takes an
   * entry off the directory's totals and adds it again).
   */
  private writeCounts(): void {
    for (const [id, c] of this.countsCache) {
      if (!c.changed) continue;
      const o = c.orig;
      if (c.row === undefined) {
        const a = c.add!;
        if (a.nlink !== 0 || a.sub_entries !== 0 || a.sub_bytes !== 0) this.q.addCounts.run(a.nlink, a.sub_entries, a.sub_bytes, this.vid, id);
      } else if (c.row === null) {
        if (o !== null) this.q.deleteCounts.run(this.vid, id);
      } else if (o == null || o.nlink !== c.row.nlink || o.sub_entries !== c.row.sub_entries || o.sub_bytes !== c.row.sub_bytes) {
        this.q.writeCounts.run(this.vid, id, c.row.nlink, c.row.sub_entries, c.row.sub_bytes);
      }
    }
  }

  private entryOf(parent: string, name: string): string | undefined {
    const key = `${parent}/${name}`;
    let child = this.entryCache.get(key);
    if (child === undefined) {
      child = (this.q.entry.get(this.vid, parent, name) as string | undefined) ?? null;
      this.entryCache.set(key, child);
    }
    return child ?? undefined;
  }

  /** Makes `o` the object's current row; `fresh`: the object has no current row (one INSERT). */
  //
  // The first change of an object in a batch is written at once (closing a
  // row a snapshot pins at that record, as always); after it the current row
  // has seq_from > floor, so every later change in the batch would rewrite it
  // in place: those wait in the cache and the last one is written at the
  // batch's end, with the last changing record as seq_from — the same row the
  // in-place rewrites would have left.
  //
  // With no snapshot floor (-1) nothing is closed, so every change waits for
  // the batch's end: an object created and changed in a batch (an untar's
  // create, write and setattr) is one INSERT, a directory whose mtime a
  // thousand creates set is one UPDATE.
  private putObject(o: ObjectRow, seq: number, fresh = false): void {
    this.objectCache.set(o.id, o);
    if (this.floor < 0 || this.objectsWritten.has(o.id)) {
      this.objectsDeferred.set(o.id, seq);
      return;
    }
    if (fresh) this.objects.insertNew([this.vid, o.id], objectValues(o), seq);
    else this.objects.put([this.vid, o.id], objectValues(o), seq, this.floor);
    this.objectsWritten.add(o.id);
  }

  /** Writes the object rows whose write waited for the batch's end (their last state): all of them with no snapshot floor, else those changed more than once. */
  private writeObjects(): void {
    for (const [id, seq] of this.objectsDeferred) {
      const o = this.objectCache.get(id);
      if (o) this.objects.put([this.vid, id], objectValues(o), seq, this.floor);
    }
  }

  private setMtime(dirId: string, t: Time, seq: number): void {
    const d = this.dir(dirId);
    if (d && (d.mtime_s !== t[0] || d.mtime_ns !== t[1])) this.putObject({ ...d, mtime_s: t[0], mtime_ns: t[1] }, seq);
  }
}

/** The prepared prefetch size for `n` keys: the next power of two. */
function keysFor(n: number): number {
  let k = 1;
  while (k < n) k *= 2;
  return k;
}

function bad(r: Record, why: string): ArchiveError {
  return new ArchiveError('EBADREQ', `${r.op} record ${r.seq}: ${why}`);
}

function octal(mode: number): string {
  return `0o${mode.toString(8)}`;
}
