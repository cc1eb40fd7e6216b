// Writes to a versioned table (objects, entries, xattrs, file_blocks). Each
// row is valid for record sequence numbers [seq_from, seq_to); the current
// row has seq_to = LIVE. A volume's `snapshot_floor` is the newest sequence
// number a snapshot pins (NO_SNAPSHOT = -1: none). A change to a current row
// with seq_from > floor rewrites it in place (no snapshot can see it);
// otherwise the row is closed (seq_to = the changing record's seq) and a new
// one inserted, so the snapshot still finds the old one. With no snapshot
// every change is in place: the tables hold only current rows.
//
// With no snapshot (floor < 0) a change is one statement: an upsert on the
// primary key (which ends in seq_to, so a conflict is exactly "a current row
// exists"), the same row put's UPDATE-then-INSERT leaves, at half the
// statements when the row is new.
import type Database from 'better-sqlite3';
import { LIVE } from './schema.js';

type Value = string | number | bigint | Buffer | null;

export class VersionedTable {
  private readonly inPlace: Database.Statement;
  private readonly closeLive: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly upsert: Database.Statement;
  private readonly removers = new Map<number, { close: Database.Statement; del: Database.Statement }>();

  /**
   * `keyCols` start with `vid`; `valueCols` are everything but the key and
   * seq_from/seq_to. Column names are this module's constants, never input.
   */
  constructor(private readonly db: Database.Database, private readonly table: string, private readonly keyCols: readonly string[], valueCols: readonly string[]) {
    const where = keyCols.map((k) => `${k} = ?`).join(' AND ');
    this.inPlace = db.prepare(`UPDATE ${table} SET ${valueCols.map((c) => `${c} = ?`).join(', ')}, seq_from = ? WHERE ${where} AND seq_to = ${LIVE} AND seq_from > ?`);
    this.closeLive = db.prepare(`UPDATE ${table} SET seq_to = ? WHERE ${where} AND seq_to = ${LIVE}`);
    const cols = [...keyCols, 'seq_to', 'seq_from', ...valueCols];
    this.insert = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
    this.upsert = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})
      ON CONFLICT (${keyCols.join(', ')}, seq_to) DO UPDATE SET ${[...valueCols, 'seq_from'].map((c) => `${c} = excluded.${c}`).join(', ')}`);
  }

  /** Makes `values` the current row of `key` as of record `seq`. */
  put(key: readonly Value[], values: readonly Value[], seq: number, floor: number): void {
    if (floor < 0) {
      // No snapshot: every current row is rewritten in place (seq_from > floor always holds).
      this.upsert.run(...key, LIVE, seq, ...values);
      return;
    }
    if (this.inPlace.run(...values, seq, ...key, floor).changes > 0) return;
    // A row a snapshot pins, if any (with no snapshot, seq_from > floor holds for every row: none).
    if (floor >= 0) this.closeLive.run(seq, ...key);
    this.insert.run(...key, LIVE, seq, ...values);
  }

  /**
   * Makes `values` the current row of `key` when the caller knows it has no
   * current row (a new object, a name just cleared): one INSERT instead of
   * put's two UPDATEs that find nothing. A current row would make it fail
   * (primary key), never silently keep two.
   */
  insertNew(key: readonly Value[], values: readonly Value[], seq: number): void {
    this.insert.run(...key, LIVE, seq, ...values);
  }

  /**
   * Ends the current rows whose key starts with `keyPrefix` (e.g. [vid, id]:
   * every xattr of an object) as of record `seq`. Returns how many ended.
   */
  remove(keyPrefix: readonly Value[], seq: number, floor: number): number {
    const r = this.remover(keyPrefix.length);
    const closed = floor >= 0 ? r.close.run(seq, ...keyPrefix, floor).changes : 0;
    return closed + r.del.run(...keyPrefix).changes;
  }

  private remover(n: number): { close: Database.Statement; del: Database.Statement } {
    let r = this.removers.get(n);
    if (r === undefined) {
      const where = this.keyCols.slice(0, n).map((k) => `${k} = ?`).join(' AND ');
      r = {
        close: this.db.prepare(`UPDATE ${this.table} SET seq_to = ? WHERE ${where} AND seq_to = ${LIVE} AND seq_from <= ?`),
        del: this.db.prepare(`DELETE FROM ${this.table} WHERE ${where} AND seq_to = ${LIVE}`),
      };
      this.removers.set(n, r);
    }
    return r;
  }
}
