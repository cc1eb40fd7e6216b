// The archive's metadata database: its tables, the format version, and the
// connection settings every opener uses (the archive server and an in-process
// `file://` opener open the same files, one after the other or at once).
// docs/archive-format.md describes the tables and the versioning plan.
import type Database from 'better-sqlite3';
import { openSqlite } from './sqlite.js';
import { ArchiveError } from '../protocol/archive-api.js';

/** Bumped on any change a reader of the previous version would misread. */
export const FORMAT_VERSION = 1;

/**
 * `seq_to` of a row that is current. Versioned rows are valid for record
 * sequence numbers [seq_from, seq_to); a live row has not ended yet. A literal
 * in the SQL (not a bound parameter) so SQLite can use the primary keys,
 * which end in seq_to, for point lookups.
 */
export const LIVE = Number.MAX_SAFE_INTEGER;

/**
 * Volume names starting with "." are never a client's (badVolumeNameReason):
 * the archive's own hidden volumes — a head being rebuilt from a snapshot
 * (`.rebuild-…`) and a rolled-back head whose rows wait to be dropped
 * (`.retired-…`). Listings leave them out.
 */
export const HIDDEN_VOLUME_PREFIX = '.';

/** `volumes.snapshot_floor` when no snapshot pins any row. */
export const NO_SNAPSHOT = -1;

const TABLES = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS volumes (
  vid            INTEGER PRIMARY KEY,
  name           TEXT NOT NULL UNIQUE,
  epoch          INTEGER NOT NULL,
  applied_seq    INTEGER NOT NULL,
  snapshot_floor INTEGER NOT NULL DEFAULT ${NO_SNAPSHOT},
  created_ms     INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS objects (
  vid      INTEGER NOT NULL,
  id       TEXT NOT NULL,
  seq_to   INTEGER NOT NULL,
  seq_from INTEGER NOT NULL,
  mode     INTEGER NOT NULL,
  uid      INTEGER NOT NULL,
  gid      INTEGER NOT NULL,
  size     INTEGER NOT NULL,
  atime_s  INTEGER NOT NULL,
  atime_ns INTEGER NOT NULL,
  mtime_s  INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  rdev     INTEGER NOT NULL,
  target   TEXT,
  parent   TEXT,
  PRIMARY KEY (vid, id, seq_to)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS entries (
  vid      INTEGER NOT NULL,
  parent   TEXT NOT NULL,
  name     TEXT NOT NULL,
  seq_to   INTEGER NOT NULL,
  seq_from INTEGER NOT NULL,
  child    TEXT NOT NULL,
  PRIMARY KEY (vid, parent, name, seq_to)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_child ON entries (vid, child, seq_to);

CREATE TABLE IF NOT EXISTS xattrs (
  vid      INTEGER NOT NULL,
  id       TEXT NOT NULL,
  name     TEXT NOT NULL,
  seq_to   INTEGER NOT NULL,
  seq_from INTEGER NOT NULL,
  value    BLOB NOT NULL,
  PRIMARY KEY (vid, id, name, seq_to)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS file_blocks (
  vid      INTEGER NOT NULL,
  id       TEXT NOT NULL,
  idx      INTEGER NOT NULL,
  seq_to   INTEGER NOT NULL,
  seq_from INTEGER NOT NULL,
  digest   BLOB NOT NULL,
  length   INTEGER NOT NULL,
  PRIMARY KEY (vid, id, idx, seq_to)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS counts (
  vid         INTEGER NOT NULL,
  id          TEXT NOT NULL,
  nlink       INTEGER NOT NULL,
  sub_entries INTEGER NOT NULL,
  sub_bytes   INTEGER NOT NULL,
  PRIMARY KEY (vid, id)
) WITHOUT ROWID;

-- A volume whose head is being rebuilt from a snapshot (docs/snapshots.md, "Rollback"):
-- its rows are copied from the snapshot's target into the hidden volume new_vid in
-- bounded steps; meanwhile reads of the volume are served from the snapshot on its
-- target and records are refused (EUNAVAILABLE: the shipper retries). The exchange
-- (new_vid takes the name, the old vid is retired) removes the row.
CREATE TABLE IF NOT EXISTS rebuilds (
  volume      TEXT PRIMARY KEY,
  snapshot    TEXT NOT NULL,
  target      TEXT NOT NULL,
  target_path TEXT NOT NULL,
  new_vid     INTEGER NOT NULL,
  old_vid     INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  phase       TEXT NOT NULL,
  cursor      TEXT,
  rows_copied INTEGER NOT NULL DEFAULT 0,
  blocks_copied INTEGER NOT NULL DEFAULT 0,
  started_ms  INTEGER NOT NULL,
  error       TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS blocks (
  digest BLOB PRIMARY KEY,
  pack   INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * Opens (creating when missing) the database at `path` and checks its format.
 * Two openers may race to create it: the schema is made under the write lock
 * and every statement tolerates an existing table.
 */
export function openDatabase(path: string): Database.Database {
  const db = openSqlite(path);
  try {
    // Another process may hold the write lock for a batch: wait, don't fail.
    db.pragma('busy_timeout = 10000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.transaction(() => {
      // Check an existing archive's format before touching any table of it.
      const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get() !== undefined;
      const row = hasMeta ? (db.prepare(`SELECT value FROM meta WHERE key = 'format_version'`).get() as { value: string } | undefined) : undefined;
      if (row !== undefined && row.value !== String(FORMAT_VERSION)) {
        throw new ArchiveError('EARCHIVE', `${path} has archive format ${row.value}; this strata reads format ${FORMAT_VERSION}`);
      }
      db.exec(TABLES);
      db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', ?)`).run(String(FORMAT_VERSION));
      db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('current_pack', '1')`).run();
    }).immediate();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
