// The archive node's storage: volumes, their trees (directory images) and
// file data, in one directory that the archive server and an in-process
// `file://` opener both open (one on-disk format, docs/archive-format.md):
//
//   DIR/archive.db      SQLite (WAL, synchronous=FULL): every piece of metadata
//   DIR/packs/*.pack    block data, deduplicated by sha256, verified on every read
//                       (with DIR/objects.json: sealed packs in a bucket, s3-packs.ts)
//
// Synchronous by design: the worker (worker.ts) runs it on a thread of its
// own. Every method validates its arguments and throws ArchiveError.
//
// Metadata is versioned for the snapshots that come next: each row of
// objects, entries, xattrs and file_blocks carries seq_from (the record that
// wrote it) and seq_to (LIVE while current). A volume's snapshot_floor is the
// newest sequence number a snapshot pins (-1: none). Changing a row with
// seq_from > floor rewrites it in place; otherwise the old row is closed at
// the changing record's seq and a new one inserted (versioned.ts). With no
// snapshot everything is in place (no bloat), and "which blocks changed since
// sequence S" is a seq_from range query on file_blocks. The derived counts
// (nlink, subtree totals) are current-state only; a snapshot view recomputes
// them from the versioned entries.
//
// A batch is one `BEGIN IMMEDIATE` transaction (one writer across
// processes): new blocks are appended to the current pack inside it, the
// pack is fsynced before COMMIT, and a rollback leaves at most unreferenced
// bytes at a pack's end.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { ArchiveError } from '../protocol/archive-api.js';
import { deepImageSelection, type DirImage, type EntryImage, type FileBlocks, type RawBlocks, type SubtreeTotals, type VolumeState } from '../protocol/images.js';
import { BLOCK_SIZE, ROOT_ID, badNameReason, decodeFrames, type Record } from '../protocol/records.js';
import { Applier } from './apply.js';
import { FileData } from './file-data.js';
import { DEFAULT_PACK_LIMIT, Packs } from './packs.js';
import { openSealedPackStore } from './s3-packs.js';
import { HIDDEN_VOLUME_PREFIX, LIVE, openDatabase } from './schema.js';
import { attrsOf, isDirMode, isRegMode, type CountsRow, type ObjectRow } from './rows.js';
import { LIMITS, checkBlockCount, checkDepth, checkEpoch, checkId, checkLength, checkOffset, checkVolume } from '../protocol/wire-checks.js';

export interface ArchiveStoreOptions {
  /** Roll over to a new pack file past this size (default 256 MiB; tests use small ones). */
  packLimitBytes?: number;
}

interface VolumeRow {
  vid: number;
  name: string;
  epoch: number;
  applied_seq: number;
  snapshot_floor: number;
}

type EntryRow = ObjectRow & CountsRow & { name: string };

const ROOT_MODE = 0o040755;

export class ArchiveStore {
  private readonly packs: Packs;
  private readonly data: FileData;
  private readonly applier: Applier;
  private readonly q: { [name: string]: Database.Statement };
  /** applyBatch's transaction, made once (better-sqlite3 builds four wrappers per `transaction()` call). */
  private readonly applyTx: Database.Transaction<(volume: string, epoch: number, records: Record[]) => { appliedSeq: number }>;
  /** Read-only views of storage targets a volume is being rebuilt from (by path), opened on first use. */
  private readonly sources = new Map<string, ArchiveStore>();
  private closed = false;

  static open(dir: string, options: ArchiveStoreOptions = {}): ArchiveStore {
    if (typeof dir !== 'string' || dir.length === 0) throw new ArchiveError('EBADREQ', 'archive directory must be a non-empty path');
    return guard(() => {
      mkdirSync(join(dir, 'packs'), { recursive: true });
      return new ArchiveStore(dir, openDatabase(join(dir, 'archive.db')), options);
    });
  }

  private constructor(readonly dir: string, private readonly db: Database.Database, options: ArchiveStoreOptions) {
    this.packs = new Packs(join(dir, 'packs'), options.packLimitBytes ?? DEFAULT_PACK_LIMIT, openSealedPackStore(dir));
    this.data = new FileData(db, this.packs);
    this.applier = new Applier(db, this.data);
    this.applyTx = db.transaction((volume: string, epoch: number, records: Record[]) => this.applyRecords(volume, epoch, records));
    const live = `seq_to = ${LIVE}`;
    this.q = {
      volume: db.prepare('SELECT vid, name, epoch, applied_seq, snapshot_floor FROM volumes WHERE name = ?'),
      volumes: db.prepare(`SELECT vid, name, epoch, applied_seq, snapshot_floor FROM volumes WHERE substr(name, 1, 1) != '${HIDDEN_VOLUME_PREFIX}' ORDER BY name`),
      rebuildOf: db.prepare('SELECT snapshot, target, target_path, rows_copied FROM rebuilds WHERE volume = ?'),
      rebuildPaths: db.prepare('SELECT target_path FROM rebuilds').pluck(),
      insertVolume: db.prepare('INSERT INTO volumes (name, epoch, applied_seq, created_ms) VALUES (?, 1, 0, ?)'),
      setApplied: db.prepare('UPDATE volumes SET applied_seq = ? WHERE vid = ?'),
      bumpEpoch: db.prepare('UPDATE volumes SET epoch = epoch + 1 WHERE vid = ?'),
      insertRoot: db.prepare(`INSERT INTO objects (vid, id, seq_to, seq_from, mode, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, rdev, target, parent)
        VALUES (?, ?, ${LIVE}, 0, ?, 0, 0, 0, ?, ?, ?, ?, 0, NULL, NULL)`),
      insertRootCounts: db.prepare('INSERT INTO counts (vid, id, nlink, sub_entries, sub_bytes) VALUES (?, ?, 2, 0, 0)'),
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?').pluck(),
      setMeta: db.prepare('UPDATE meta SET value = ? WHERE key = ?'),
      object: db.prepare(`SELECT * FROM objects WHERE vid = ? AND id = ? AND ${live}`),
      counts: db.prepare('SELECT nlink, sub_entries, sub_bytes FROM counts WHERE vid = ? AND id = ?'),
      xattrsOf: db.prepare(`SELECT name, value FROM xattrs WHERE vid = ? AND id = ? AND ${live} ORDER BY name`),
      entryRows: db.prepare(`SELECT e.name, o.*, c.nlink, c.sub_entries, c.sub_bytes
        FROM entries e
        JOIN objects o ON o.vid = e.vid AND o.id = e.child AND o.${live}
        LEFT JOIN counts c ON c.vid = e.vid AND c.id = e.child
        WHERE e.vid = ? AND e.parent = ? AND e.${live}
        ORDER BY e.name`),
      entryXattrs: db.prepare(`SELECT x.id, x.name, x.value
        FROM entries e JOIN xattrs x ON x.vid = e.vid AND x.id = e.child AND x.${live}
        WHERE e.vid = ? AND e.parent = ? AND e.${live}`),
      blockList: db.prepare(`SELECT idx, digest, length FROM file_blocks WHERE vid = ? AND id = ? AND ${live} ORDER BY idx`),
    };
  }

  volumeState(volume: string): VolumeState | null {
    checkVolume(volume);
    return this.run(() => {
      const { v, src } = this.read(() => ({ v: this.q.volume.get(volume) as VolumeRow | undefined, src: this.source(volume) }));
      if (v === undefined) return null;
      // Rebuilding from a snapshot: the tree (and so its totals) is the snapshot's; epoch and record are the volume's.
      if (src !== null) return { ...this.stateOf(v), totals: src.store.volumeState(src.name)?.totals ?? { entries: 0, bytes: 0 } };
      return this.stateOf(v);
    });
  }

  /** Every volume's state, by name. */
  listVolumes(): VolumeState[] {
    return this.run(() => this.read(() => (this.q.volumes.all() as VolumeRow[]).map((v) => this.stateOf(v))));
  }

  /** Creates the volume if missing (epoch 1, an empty root); returns its state. */
  createVolume(volume: string): VolumeState {
    checkVolume(volume);
    return this.run(() => this.db.transaction(() => {
      let v = this.q.volume.get(volume) as VolumeRow | undefined;
      if (v === undefined) {
        const nowMs = Date.now();
        const vid = Number(this.q.insertVolume.run(volume, nowMs).lastInsertRowid);
        const sec = Math.floor(nowMs / 1000);
        const nsec = (nowMs % 1000) * 1_000_000;
        this.q.insertRoot.run(vid, ROOT_ID, ROOT_MODE, sec, nsec, sec, nsec);
        this.q.insertRootCounts.run(vid, ROOT_ID);
        v = this.q.volume.get(volume) as VolumeRow;
      }
      return this.stateOf(v);
    }).immediate());
  }

  /**
   * Applies a batch of whole frames in one transaction, all or nothing.
   * Records at or below the applied sequence are skipped (a resend); the rest
   * must continue it (else EGAP).
   */
  applyBatch(volume: string, epoch: number, frames: Buffer): { appliedSeq: number } {
    checkVolume(volume);
    checkEpoch(epoch);
    if (!Buffer.isBuffer(frames)) throw new ArchiveError('EBADREQ', 'frames must be a Buffer');
    if (frames.length > LIMITS.maxShipBytes) throw new ArchiveError('EBADREQ', `batch of ${frames.length} bytes exceeds ${LIMITS.maxShipBytes}`);
    let records: Record[];
    try {
      records = decodeFrames(frames);
    } catch (err) {
      throw new ArchiveError('EBADREQ', (err as Error).message);
    }
    for (let i = 1; i < records.length; i++) {
      if (records[i]!.seq !== records[0]!.seq + i) throw new ArchiveError('EBADREQ', `record ${records[i]!.seq} follows ${records[i - 1]!.seq}: sequence numbers must be consecutive`);
    }
    return this.run(() => this.applyTx.immediate(volume, epoch, records));
  }

  /** applyBatch inside its BEGIN IMMEDIATE transaction. */
  private applyRecords(volume: string, epoch: number, records: Record[]): { appliedSeq: number } {
    const v = this.volumeRow(volume);
    if (epoch < v.epoch) throw new ArchiveError('EFENCED', `volume ${volume} is at epoch ${v.epoch}; epoch ${epoch} was fenced`);
    if (epoch > v.epoch) throw new ArchiveError('EBADREQ', `unknown epoch ${epoch} (volume ${volume} is at ${v.epoch})`);
    const pending = records.filter((r) => r.seq > v.applied_seq);
    if (pending.length === 0) return { appliedSeq: v.applied_seq };
    const rb = this.q.rebuildOf.get(volume) as { snapshot: string; rows_copied: number } | undefined;
    if (rb !== undefined) {
      // Retryable (the shipper backs off and sends again; acknowledged records stay in its journal).
      throw new ArchiveError('EUNAVAILABLE', `volume ${volume} is being rebuilt from snapshot ${rb.snapshot} (${rb.rows_copied} rows so far): its records are taken once that is done; try again`);
    }
    if (pending[0]!.seq !== v.applied_seq + 1) throw new ArchiveError('EGAP', `volume ${volume} has applied up to ${v.applied_seq}; the batch starts at ${pending[0]!.seq}`);
    const pack = Number(this.q.getMeta.get('current_pack'));
    this.packs.begin(pack);
    try {
      this.applier.apply(volume, v.vid, v.snapshot_floor, pending);
      const now = this.packs.currentPack;
      if (now !== null && now !== pack) this.q.setMeta.run(String(now), 'current_pack');
      const last = pending[pending.length - 1]!.seq;
      this.q.setApplied.run(last, v.vid);
      this.packs.sync(); // block data durable before the rows that point at it
      return { appliedSeq: last };
    } finally {
      this.packs.abort();
    }
  }

  /** Raises the volume's epoch by one: a primary shipping with the old one gets EFENCED. */
  fence(volume: string): VolumeState {
    checkVolume(volume);
    return this.run(() => this.db.transaction(() => {
      const v = this.volumeRow(volume);
      this.q.bumpEpoch.run(v.vid);
      return this.stateOf({ ...v, epoch: v.epoch + 1 });
    }).immediate());
  }

  dirImage(volume: string, dirId: string): DirImage {
    checkVolume(volume);
    checkId(dirId);
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.dirImage(src.name, dirId);
    return this.run(() => this.read(() => {
      const img = this.image(this.volumeRow(volume).vid, dirId);
      if (img === null) throw new ArchiveError('ENOOBJECT', `volume ${volume} has no directory ${dirId}`);
      return img;
    }));
  }

  /**
   * The image of `dirId` and, below its subdirectory `name` (or below it,
   * without a name), the images a program walking down will need, within
   * DEEP_MAX_IMAGES / DEEP_MAX_ENTRIES (deepImageSelection). One read
   * transaction: the images are of one committed state.
   */
  deepImages(volume: string, dirId: string, name?: string): DirImage[] {
    checkVolume(volume);
    checkId(dirId);
    if (name !== undefined) {
      const why = badNameReason(name);
      if (why !== null) throw new ArchiveError('EBADREQ', why);
    }
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.deepImages(src.name, dirId, name);
    return this.run(() => this.read(() => {
      const vid = this.volumeRow(volume).vid;
      const first = this.image(vid, dirId);
      if (first === null) throw new ArchiveError('ENOOBJECT', `volume ${volume} has no directory ${dirId}`);
      return deepImageSelection(first, name, (id) => this.image(vid, id));
    }));
  }

  /**
   * Every directory of tiers 0..depth (root = 0), breadth first, one image at
   * a time. Each image is read in a transaction of its own (the stream holds
   * no transaction between images), so a directory removed while the stream
   * runs is left out.
   */
  tierImages(volume: string, depth: number): Iterable<DirImage> {
    checkVolume(volume);
    checkDepth(depth);
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.tierImages(src.name, depth);
    const vid = this.run(() => this.volumeRow(volume).vid);
    return this.tiers(vid, depth);
  }

  /** Up to `length` bytes from `offset`: short at end of file, holes as zeros, every block verified. */
  readRange(volume: string, id: string, offset: number, length: number): Buffer {
    checkVolume(volume);
    checkId(id);
    checkOffset(offset);
    checkLength(length);
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.readRange(src.name, id, offset, length);
    return this.run(() => this.read(() => {
      const v = this.volumeRow(volume);
      const o = this.regularFile(v, id);
      const end = Math.min(o.size, offset + length);
      if (end <= offset) return Buffer.alloc(0);
      const out = Buffer.alloc(end - offset);
      const first = Math.floor(offset / BLOCK_SIZE);
      const last = Math.floor((end - 1) / BLOCK_SIZE);
      for (const { idx, data } of this.data.readBlocks(volume, v.vid, id, first, last)) {
        const start = idx * BLOCK_SIZE;
        const from = Math.max(offset, start);
        const to = Math.min(end, start + data.length);
        if (to > from) data.copy(out, from - offset, from - start, to - start);
      }
      return out;
    }));
  }

  /**
   * Blocks first..first+count-1 of a file as stored (holes left out), with
   * their digests; the bytes are not re-hashed here (pack headers are
   * checked): the receiver verifies each block against its digest.
   */
  readBlocks(volume: string, id: string, first: number, count: number): RawBlocks {
    checkVolume(volume);
    checkId(id);
    checkOffset(first);
    checkBlockCount(count);
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.readBlocks(src.name, id, first, count);
    return this.run(() => this.read(() => {
      const v = this.volumeRow(volume);
      const o = this.regularFile(v, id);
      const r = this.data.readBlocksUnhashed(volume, v.vid, id, first, first + count - 1);
      return { id, size: o.size, blocks: r.blocks.map((b) => ({ index: b.idx, length: b.length, digest: b.digest.toString('hex') })), data: r.data };
    }));
  }

  /** The file's stored blocks (absent indices are holes); each length is the block's length within the file. */
  fileBlocks(volume: string, id: string): FileBlocks {
    checkVolume(volume);
    checkId(id);
    const src = this.run(() => this.source(volume));
    if (src !== null) return src.store.fileBlocks(src.name, id);
    return this.run(() => this.read(() => {
      const v = this.volumeRow(volume);
      const o = this.regularFile(v, id);
      const rows = this.q.blockList.all(v.vid, id) as { idx: number; digest: Buffer; length: number }[];
      return { id, size: o.size, blockSize: BLOCK_SIZE, blocks: rows.map((r) => ({ index: r.idx, digest: r.digest.toString('hex'), length: r.length })) };
    }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sources.values()) s.close();
    this.sources.clear();
    this.packs.close();
    this.db.close();
  }

  // ---- internals -----------------------------------------------------------------

  private *tiers(vid: number, depth: number): Generator<DirImage> {
    let level = [ROOT_ID];
    for (let tier = 0; tier <= depth && level.length > 0; tier++) {
      const next: string[] = [];
      for (const id of level) {
        const img = this.run(() => this.read(() => this.image(vid, id)));
        if (img === null) continue;
        img.tier = tier;
        if (tier < depth) for (const e of img.entries) if (isDirMode(e.attrs.mode)) next.push(e.id);
        yield img;
      }
      level = next;
    }
  }

  /** One directory's image, or null when `dirId` is not a directory of the volume. */
  private image(vid: number, dirId: string): DirImage | null {
    const d = this.q.object.get(vid, dirId) as ObjectRow | undefined;
    if (d === undefined || !isDirMode(d.mode)) return null;
    const c = this.countsOf(vid, dirId);
    const xattrs = new Map<string, { [name: string]: string }>();
    for (const x of this.q.entryXattrs.iterate(vid, dirId) as Iterable<{ id: string; name: string; value: Buffer }>) {
      let m = xattrs.get(x.id);
      if (!m) xattrs.set(x.id, (m = {}));
      m[x.name] = x.value.toString('base64');
    }
    const entries: EntryImage[] = [];
    for (const row of this.q.entryRows.iterate(vid, dirId) as Iterable<EntryRow>) {
      const e: EntryImage = { name: row.name, id: row.id, attrs: attrsOf(row), nlink: row.nlink ?? 0, xattrs: sortedKeys(xattrs.get(row.id) ?? {}) };
      if (row.target !== null) e.target = row.target;
      if (isDirMode(row.mode)) e.totals = { entries: row.sub_entries ?? 0, bytes: row.sub_bytes ?? 0 };
      entries.push(e);
    }
    return { id: dirId, attrs: attrsOf(d), nlink: c.nlink, xattrs: this.xattrsOf(vid, dirId), totals: { entries: c.sub_entries, bytes: c.sub_bytes }, entries };
  }

  private xattrsOf(vid: number, id: string): { [name: string]: string } {
    const out: { [name: string]: string } = {};
    for (const x of this.q.xattrsOf.iterate(vid, id) as Iterable<{ name: string; value: Buffer }>) out[x.name] = x.value.toString('base64');
    return out;
  }

  private countsOf(vid: number, id: string): CountsRow {
    return (this.q.counts.get(vid, id) as CountsRow | undefined) ?? { nlink: 0, sub_entries: 0, sub_bytes: 0 };
  }

  private stateOf(v: VolumeRow): VolumeState {
    const c = this.countsOf(v.vid, ROOT_ID);
    const totals: SubtreeTotals = { entries: c.sub_entries, bytes: c.sub_bytes };
    return { name: v.name, epoch: v.epoch, appliedSeq: v.applied_seq, totals };
  }

  /** Whether some volume's head is being rebuilt from a snapshot (rows in `rebuilds`). */
  rebuildPending(): boolean {
    return this.run(() => (this.q.rebuildPaths.all() as string[]).length > 0);
  }

  /**
   * Where a volume's tree is read from while its head is being rebuilt from a
   * snapshot (the snapshot's volume on its target: the same ids, a complete,
   * immutable tree, blocks verified by digest as everywhere), else null.
   * Targets no rebuild needs any more are closed here.
   */
  private source(volume: string): { store: ArchiveStore; name: string } | null {
    const rb = this.q.rebuildOf.get(volume) as { snapshot: string; target: string; target_path: string } | undefined;
    if (rb === undefined) {
      if (this.sources.size > 0) {
        const used = new Set(this.q.rebuildPaths.all() as string[]);
        for (const [path, s] of this.sources) {
          if (!used.has(path)) {
            this.sources.delete(path);
            s.close();
          }
        }
      }
      return null;
    }
    let s = this.sources.get(rb.target_path);
    if (s === undefined) {
      // Never create an archive in a directory that is not one (an unmounted disk's empty mountpoint).
      if (!existsSync(join(rb.target_path, 'archive.db'))) {
        throw new ArchiveError('EUNAVAILABLE', `volume ${volume} is being rebuilt from snapshot ${rb.snapshot}, and its target ${rb.target} (${rb.target_path}) is not readable`);
      }
      s = ArchiveStore.open(rb.target_path);
      this.sources.set(rb.target_path, s);
    }
    return { store: s, name: rb.snapshot };
  }

  private volumeRow(volume: string): VolumeRow {
    const v = this.q.volume.get(volume) as VolumeRow | undefined;
    if (v === undefined) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    return v;
  }

  private regularFile(v: VolumeRow, id: string): ObjectRow {
    const o = this.q.object.get(v.vid, id) as ObjectRow | undefined;
    if (o === undefined || !isRegMode(o.mode)) throw new ArchiveError('ENOOBJECT', `volume ${v.name} has no regular file ${id}`);
    return o;
  }

  /** Runs reads in one (deferred) transaction, so they see one committed state. */
  private read<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn)();
  }

  private run<T>(fn: () => T): T {
    if (this.closed) throw new ArchiveError('EARCHIVE', `archive store ${this.dir} is closed`);
    return guard(fn);
  }
}

/** Anything that is not already an ArchiveError (SQLite, the filesystem) becomes EARCHIVE. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    const e = err as { code?: unknown; message?: unknown };
    throw new ArchiveError('EARCHIVE', `${typeof e.code === 'string' ? `${e.code}: ` : ''}${String(e.message ?? err)}`);
  }
}

function sortedKeys(o: { [name: string]: string }): { [name: string]: string } {
  const out: { [name: string]: string } = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k]!;
  return out;
}
