// File data in the archive: a file's block map (file_blocks: index -> digest,
// length) over the deduplicated block store (blocks: digest -> place in a
// pack). A block is stored once whatever number of files or volumes hold it;
// every read re-hashes it (Packs.read), so corrupt data is never returned.
import type Database from 'better-sqlite3';
import { ArchiveError } from '../protocol/archive-api.js';
import { LIVE } from './schema.js';
import { Packs, sha256, type BlockLocation } from './packs.js';

interface StoredBlockRow {
  idx: number;
  digest: Buffer;
  length: number;
  pack: number | null;
  offset: number | null;
  blen: number | null;
}

export class FileData {
  private readonly blockAt: Database.Statement;
  private readonly blocksFrom: Database.Statement;
  private readonly insertBlock: Database.Statement;

  constructor(db: Database.Database, readonly packs: Packs) {
    const select = `SELECT fb.idx, fb.digest, fb.length, b.pack, b.offset, b.length AS blen
      FROM file_blocks fb LEFT JOIN blocks b ON b.digest = fb.digest
      WHERE fb.vid = ? AND fb.id = ? AND fb.seq_to = ${LIVE}`;
    this.blockAt = db.prepare(`${select} AND fb.idx = ?`);
    this.blocksFrom = db.prepare(`${select} AND fb.idx >= ? AND fb.idx <= ? ORDER BY fb.idx`);
    this.insertBlock = db.prepare('INSERT OR IGNORE INTO blocks (digest, pack, offset, length) VALUES (?, ?, ?, ?)');
  }

  /** Block `idx` of a file, verified; null for a hole. `volume` names it in errors. */
  readBlock(volume: string, vid: number, id: string, idx: number): Buffer | null {
    const row = this.blockAt.get(vid, id, idx) as StoredBlockRow | undefined;
    return row === undefined ? null : this.load(volume, id, row);
  }

  /** The stored blocks first..last of a file (holes left out), verified, in order. */
  *readBlocks(volume: string, vid: number, id: string, first: number, last: number): Generator<{ idx: number; data: Buffer }> {
    const rows = this.blocksFrom.all(vid, id, first, last) as StoredBlockRow[];
    for (const row of rows) yield { idx: row.idx, data: this.load(volume, id, row) };
  }

  /**
   * The stored blocks first..last of a file (holes left out), in order, with
   * their digests, NOT re-hashed (pack headers are checked): for a receiver
   * that verifies every block against its digest (the restore does). Their
   * bytes are read straight into one buffer of their own (one preadv per run
   * of blocks that follow one another in a pack), which the caller may hand on
   * (transfer) as it is.
   */
  readBlocksUnhashed(volume: string, vid: number, id: string, first: number, last: number): { blocks: { idx: number; digest: Buffer; length: number }[]; data: Buffer } {
    const rows = this.blocksFrom.all(vid, id, first, last) as StoredBlockRow[];
    const items: { loc: BlockLocation; digest: Buffer; what: string; at: number }[] = [];
    let at = 0;
    for (const row of rows) {
      const what = `volume ${volume} object ${id} block ${row.idx}`;
      items.push({ loc: this.location(what, row), digest: row.digest, what, at });
      at += row.length;
    }
    const data = Buffer.allocUnsafeSlow(at);
    this.packs.readInto(items, data);
    return { blocks: rows.map((r) => ({ idx: r.idx, digest: r.digest, length: r.length })), data };
  }

  /**
   * Stores `data` once; returns its digest. Only inside a write transaction.
   * One statement: the row goes in with the place the append will take
   * (`INSERT OR IGNORE`); only when it went in (a new digest) are the bytes
   * appended there. A throw between the two rolls the transaction back.
   */
  store(data: Buffer): Buffer {
    const digest = sha256(data);
    const loc = this.packs.nextLocation(data.length);
    if (this.insertBlock.run(digest, loc.pack, loc.offset, loc.length).changes > 0) {
      const got = this.packs.append(digest, data);
      if (got.pack !== loc.pack || got.offset !== loc.offset) throw new ArchiveError('EARCHIVE', `block appended at pack ${got.pack} offset ${got.offset}, expected ${loc.pack}/${loc.offset}`);
    }
    return digest;
  }

  private load(volume: string, id: string, row: StoredBlockRow, hash = true): Buffer {
    const what = `volume ${volume} object ${id} block ${row.idx}`;
    return this.packs.read(this.location(what, row), row.digest, what, hash);
  }

  /** Where a block row's bytes are; ECORRUPT when the block store does not have them as the file's map says. */
  private location(what: string, row: StoredBlockRow): BlockLocation {
    if (row.pack === null || row.offset === null || row.blen === null) throw new ArchiveError('ECORRUPT', `${what}: no stored block for digest ${row.digest.toString('hex')}`);
    if (row.blen !== row.length) throw new ArchiveError('ECORRUPT', `${what}: block map says ${row.length} bytes, block store ${row.blen}`);
    return { pack: row.pack, offset: row.offset, length: row.blen };
  }
}
