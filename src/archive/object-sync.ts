// Metadata points of an archive on object storage (docs/object-storage.md).
//
// syncPoint(): one consistent copy of the metadata database goes to the
// bucket, after every pack it points into:
//   1. `VACUUM INTO` a temporary file: one read transaction, so one committed
//      state; N = its current pack (every block it knows is in a pack <= N);
//   2. seal pack N in the live database (current_pack = N + 1, under the
//      write lock), unless N holds no bytes: nothing appends to it again;
//   3. upload every sealed pack still in DIR/packs (a PUT of the whole file,
//      skipped when the bucket already has it at that size), then delete the
//      local file: reads of it become ranged GETs;
//   4. upload the copy as PREFIX/metadata/archive-<ms>.db (ms: step 1's time),
//      keep the newest three, and record the time in meta.objects_metadata_ms
//      (garbage collection deletes a pack from the bucket only when an
//      uploaded copy newer than its retirement exists).
// A failure anywhere leaves the previous metadata point in place; the next
// call redoes what is missing.
//
// rebuildFromObjects(): a new archive host (empty DIR) takes the newest
// metadata copy from the bucket and continues after the last pack there.
import type Database from 'better-sqlite3';
import { openSqlite } from './sqlite.js';
import { existsSync, readdirSync, rmSync, statSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { packName } from './packs.js';
import { S3PackStore, type SyncObjects } from './s3-packs.js';

export interface SyncPointResult {
  /** The metadata object uploaded. */
  key: string;
  /** When its copy was taken (ms since the epoch): the archive's state at this time is what a rebuild serves. */
  takenMs: number;
  packsUploaded: number;
  bytesUploaded: number;
  /** Every volume's applied sequence number in the copy. */
  volumes: { name: string; appliedSeq: number }[];
}

const KEEP_METADATA = 3;
const METADATA_RE = /metadata\/archive-(\d{15})\.db$/;

function metadataKey(objects: SyncObjects, ms: number): string {
  return `${objects.prefix}metadata/archive-${String(ms).padStart(15, '0')}.db`;
}

function openLive(dir: string): Database.Database {
  const db = openSqlite(join(dir, 'archive.db'), { fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  return db;
}

/** One metadata point (see the top of this file). Synchronous; throws ArchiveError when the store fails. */
export function syncPoint(dir: string, store: S3PackStore): SyncPointResult {
  const objects = store.objects;
  const copy = join(dir, 'metadata-upload.db');
  rmSync(copy, { force: true });
  const db = openLive(dir);
  let takenMs: number;
  let sealedUpTo: number;
  let volumes: { name: string; appliedSeq: number }[];
  try {
    takenMs = Date.now();
    db.prepare('VACUUM INTO ?').run(copy);
    const c = openSqlite(copy, { readonly: true });
    try {
      sealedUpTo = Number(c.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get());
      volumes = (c.prepare('SELECT name, applied_seq AS appliedSeq FROM volumes ORDER BY name').all() as { name: string; appliedSeq: number }[]);
    } finally {
      c.close();
    }
    const nPath = join(dir, 'packs', packName(sealedUpTo));
    const nBytes = existsSync(nPath) ? statSync(nPath).size : 0;
    if (nBytes > 0) {
      db.transaction(() => {
        const cur = Number(db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get());
        if (cur <= sealedUpTo) db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(sealedUpTo + 1));
      }).immediate();
    } else {
      sealedUpTo -= 1; // the current pack holds nothing the copy points at
    }
  } finally {
    db.close();
  }
  // 3. the sealed packs still local
  let packsUploaded = 0;
  let bytesUploaded = 0;
  const local = readdirSync(join(dir, 'packs')).filter((n) => /^\d{6,}\.pack$/.test(n)).map((n) => Number(n.slice(0, -5))).filter((p) => p <= sealedUpTo).sort((a, b) => a - b);
  for (const pack of local) {
    const file = join(dir, 'packs', packName(pack));
    const size = statSync(file).size;
    if (store.size(pack) !== size) {
      store.put(pack, file);
      packsUploaded++;
      bytesUploaded += size;
    }
    rmSync(file, { force: true });
  }
  // 4. the metadata copy
  const key = metadataKey(objects, takenMs);
  objects.put(key, copy);
  rmSync(copy, { force: true });
  const live = openLive(dir);
  try {
    live.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('objects_metadata_ms', ?)`).run(String(takenMs));
  } finally {
    live.close();
  }
  const old = objects.list(`${objects.prefix}metadata/`).map((o) => o.key).filter((k) => METADATA_RE.test(k)).sort();
  for (const k of old.slice(0, Math.max(0, old.length - KEEP_METADATA))) objects.delete(k);
  return { key, takenMs, packsUploaded, bytesUploaded, volumes };
}

export interface RebuildResult {
  key: string;
  takenMs: number;
  currentPack: number;
  volumes: { name: string; appliedSeq: number }[];
}

/** The newest metadata copy in the bucket, or null when there is none. */
export function latestMetadata(objects: SyncObjects): { key: string; takenMs: number } | null {
  const keys = objects.list(`${objects.prefix}metadata/`).map((o) => o.key).filter((k) => METADATA_RE.test(k)).sort();
  const key = keys.at(-1);
  return key === undefined ? null : { key, takenMs: Number(METADATA_RE.exec(key)![1]) };
}

/**
 * An empty archive directory (no archive.db) takes the newest metadata copy
 * from the bucket; appends continue in a pack after every pack there. Null when
 * the bucket has no metadata yet (a new archive) or DIR already has a database.
 */
export function rebuildFromObjects(dir: string, store: S3PackStore): RebuildResult | null {
  if (existsSync(join(dir, 'archive.db'))) return null;
  const objects = store.objects;
  const latest = latestMetadata(objects);
  if (latest === null) return null;
  const tmp = join(dir, 'archive.db.rebuild');
  rmSync(tmp, { force: true });
  objects.download(latest.key, tmp);
  const packs = store.list();
  const db = openSqlite(tmp);
  let currentPack: number;
  let volumes: { name: string; appliedSeq: number }[];
  try {
    const cur = Number(db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get());
    currentPack = Math.max(cur, ...packs.keys()) + 1;
    db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(currentPack));
    db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('objects_metadata_ms', ?)`).run(String(latest.takenMs));
    volumes = db.prepare('SELECT name, applied_seq AS appliedSeq FROM volumes ORDER BY name').all() as { name: string; appliedSeq: number }[];
  } finally {
    db.close();
  }
  renameSync(tmp, join(dir, 'archive.db'));
  return { key: latest.key, takenMs: latest.takenMs, currentPack, volumes };
}

/**
 * Keeps appends clear of the bucket's packs: a new archive directory on a
 * prefix that already holds packs (no metadata copy there: a first archive
 * lost before its first point) continues after them; an existing database
 * whose current pack is not past every pack in the bucket shares the prefix
 * with another archive: refused, since its seals would overwrite their packs.
 * Returns the highest pack in the bucket (0: none).
 */
export function checkPackNumbers(dir: string, store: S3PackStore, created: boolean): number {
  const top = Math.max(0, ...store.list().keys());
  if (top === 0) return 0;
  const db = openLive(dir);
  try {
    const cur = Number(db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get());
    if (cur > top) return top;
    if (!created) {
      throw new Error(`${store.name} holds packs up to ${packName(top)} that the database in ${dir} (current pack ${packName(cur)}) does not know: is another archive using this bucket prefix?`);
    }
    db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(top + 1));
    return top;
  } finally {
    db.close();
  }
}
