// Snapshots on conditions, the archive's side (docs/snapshots.md): the
// catalog in the archive's database, placement on storage targets, the copy
// of a volume's tree at one applied record onto a target, verification,
// deletion with retention, alerts and the rules that turn them into
// snapshots, the choice of a snapshot for a recovery, the rollback of a
// volume's head to a snapshot, and garbage collection.
//
// Synchronous (better-sqlite3, fsync), like ArchiveStore: the archive server
// runs it on a thread of its own (snapshot-worker.ts), the `file://` tools in
// their process. It opens the archive's database with a connection of its
// own; SQLite's write lock orders it with the mirroring batches.
//
// How a snapshot stays consistent while mirroring goes on: taking one pins
// its record S in the same transaction that reads the volume's applied
// record (volumes.snapshot_floor = the newest record a copying snapshot
// pins). From then on the applier closes rows instead of rewriting them
// (versioned.ts), so the rows with seq_from <= S < seq_to are the tree at S
// for as long as the pin holds, however many batches arrive. The copy reads
// them in short transactions (keyset pages), never holding the write lock,
// and writes them into the target, where the snapshot is one volume of the
// target's own archive database. When the copy is complete (or failed, or
// deleted) the pin goes and the closed rows no copy needs are pruned.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { ArchiveError } from '../protocol/archive-api.js';
import type { VolumeState } from '../protocol/images.js';
import { ROOT_ID } from '../protocol/records.js';
import type {
  AlertDecision, AlertDecisionKind, GcResult, IncomingAlert, RollbackOptions, RollbackResult, SnapshotChoice, SnapshotInfo, SnapshotState,
  SnapshotTrigger, SnapshotVerification, TargetInfo,
} from '../protocol/snapshot-api.js';
import { isSnapshotId } from '../protocol/snapshot-api.js';
import { conditionMatches, EMPTY_RULES, volumeOf, type Rules } from '../alerts/rules.js';
import { Packs, BLOCK_HEADER_BYTES, packName, fsyncDir } from './packs.js';
import { openSealedPackStore } from './s3-packs.js';
import { HIDDEN_VOLUME_PREFIX, LIVE, NO_SNAPSHOT, openDatabase } from './schema.js';
import { deviceOf, initialiseTarget, noTarget, probeTarget, readMarker, TargetFailure, TargetStore, type TargetSpec } from './targets.js';
import { checkVolume } from '../protocol/wire-checks.js';

export interface EngineLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const SILENT: EngineLog = { info() {}, warn() {}, error() {} };

export interface EngineOptions {
  /**
   * The targets (`--target NAME=DIR`): registered in the catalog, new ones
   * initialised. Omitted: the targets the catalog already knows (a `file://`
   * tool on an archive whose server registered them).
   */
  targets?: TargetSpec[];
  rules?: Rules;
  log?: EngineLog;
  /** Rows per page of a copy step (default 2000). */
  pageRows?: number;
  /** Block bytes per copy step (default 32 MiB). */
  pageBytes?: number;
  /** How long a rewritten data pack is kept before it is unlinked (readers of other processes may still be reading it). */
  packGraceMs?: number;
  /** Clock (tests). */
  now?: () => number;
  /**
   * Finish a rollback's rebuild inside the rollback call (a `file://`
   * archive: no server thread goes on with it after the call). Default:
   * rebuilt in the background by step().
   */
  rebuildInline?: boolean;
}

/** After a rebuild step failed (its target unreadable, say), the next try waits this long. */
const REBUILD_RETRY_MS = 5_000;

const CATALOG = `
CREATE TABLE IF NOT EXISTS targets (
  name       TEXT PRIMARY KEY,
  path       TEXT NOT NULL,
  added_ms   INTEGER NOT NULL,
  retired_ms INTEGER
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS snapshots (
  id           TEXT PRIMARY KEY,
  volume       TEXT NOT NULL,
  vid          INTEGER NOT NULL,
  record       INTEGER NOT NULL,
  created_ms   INTEGER NOT NULL,
  target       TEXT,
  trigger      TEXT NOT NULL,
  condition    TEXT,
  reason       TEXT,
  labels       TEXT NOT NULL,
  annotations  TEXT NOT NULL,
  state        TEXT NOT NULL,
  error        TEXT,
  attempts     TEXT NOT NULL DEFAULT '[]',
  completed_ms INTEGER,
  size_bytes   INTEGER NOT NULL DEFAULT 0,
  block_count  INTEGER NOT NULL DEFAULT 0,
  entries      INTEGER NOT NULL DEFAULT 0,
  verified_ms  INTEGER,
  verification TEXT
);
CREATE INDEX IF NOT EXISTS snapshots_by_volume ON snapshots (volume, created_ms);

CREATE TABLE IF NOT EXISTS alerts (
  n           INTEGER PRIMARY KEY,
  received_ms INTEGER NOT NULL,
  source      TEXT NOT NULL,
  status      TEXT NOT NULL,
  alertname   TEXT,
  labels      TEXT NOT NULL,
  annotations TEXT NOT NULL,
  fingerprint TEXT,
  volume      TEXT,
  condition   TEXT,
  decision    TEXT NOT NULL,
  snapshot    TEXT,
  detail      TEXT NOT NULL
);
`;

/** Alert log rows kept (the oldest go first). */
const MAX_ALERT_ROWS = 100_000;

interface SnapshotRow {
  id: string;
  volume: string;
  vid: number;
  record: number;
  created_ms: number;
  target: string | null;
  trigger: SnapshotTrigger;
  condition: string | null;
  reason: string | null;
  labels: string;
  annotations: string;
  state: SnapshotState;
  error: string | null;
  attempts: string;
  completed_ms: number | null;
  size_bytes: number;
  block_count: number;
  entries: number;
  verified_ms: number | null;
  verification: string | null;
}

interface VolumeRow {
  vid: number;
  name: string;
  epoch: number;
  applied_seq: number;
  snapshot_floor: number;
}

type Phase = 'start' | 'objects' | 'entries' | 'xattrs' | 'blocks' | 'counts' | 'finish';

type RebuildPhase = 'objects' | 'entries' | 'xattrs' | 'blocks' | 'counts' | 'exchange';

/** A row of `rebuilds` (schema.ts): a volume's head being rebuilt from a snapshot. All of its progress is in the database. */
interface RebuildRow {
  volume: string;
  snapshot: string;
  target: string;
  target_path: string;
  new_vid: number;
  old_vid: number;
  seq: number;
  phase: RebuildPhase;
  cursor: string | null;
  rows_copied: number;
  blocks_copied: number;
  started_ms: number;
  error: string | null;
}

interface CopyJob {
  id: string;
  phase: Phase;
  /** Keyset cursor of the current phase (the last key copied), null before the first page. */
  cursor: (string | number)[] | null;
  store: TargetStore | null;
  /** The snapshot's vid in the target's database. */
  tvid: number;
  bytes: number;
}

const OBJECT_COLS = 'mode, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, rdev, target, parent';
const VERSIONED = ['objects', 'entries', 'xattrs', 'file_blocks'] as const;

export class SnapshotEngine {
  private readonly db: Database.Database;
  private readonly packs: Packs;
  private readonly log: EngineLog;
  private readonly now: () => number;
  private readonly pageRows: number;
  private readonly pageBytes: number;
  private readonly packGraceMs: number;
  private rules: Rules;
  archiveId: string;
  private readonly stores = new Map<string, TargetStore>();
  private readonly jobs = new Map<string, CopyJob>();
  private readonly rebuildInline: boolean;
  /** No rebuild step before this time (the last one failed). */
  private rebuildRetryAt = 0;
  private closed = false;

  static open(dataDir: string, opts: EngineOptions = {}): SnapshotEngine {
    fs.mkdirSync(join(dataDir, 'packs'), { recursive: true });
    const db = openDatabase(join(dataDir, 'archive.db'));
    try {
      return new SnapshotEngine(dataDir, db, opts);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(readonly dataDir: string, db: Database.Database, opts: EngineOptions) {
    this.db = db;
    this.log = opts.log ?? SILENT;
    this.now = opts.now ?? Date.now;
    this.pageRows = opts.pageRows ?? 2000;
    this.pageBytes = opts.pageBytes ?? 32 * 1024 * 1024;
    this.packGraceMs = opts.packGraceMs ?? 60_000;
    this.rules = opts.rules ?? EMPTY_RULES;
    this.rebuildInline = opts.rebuildInline ?? false;
    this.packs = new Packs(join(dataDir, 'packs'), undefined, openSealedPackStore(dataDir));
    this.db.exec(CATALOG);
    this.archiveId = this.db.transaction(() => {
      this.db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('archive_id', ?)`).run(randomBytes(8).toString('hex'));
      return this.db.prepare(`SELECT value FROM meta WHERE key = 'archive_id'`).pluck().get() as string;
    }).immediate();
    if (opts.targets !== undefined) {
      this.registerTargets(opts.targets);
      this.importFromTargets();
    }
    // Copies a crash interrupted start again (blocks already on the target are not copied twice).
    for (const r of this.db.prepare(`SELECT id FROM snapshots WHERE state = 'copying' ORDER BY created_ms`).all() as { id: string }[]) {
      this.jobs.set(r.id, { id: r.id, phase: 'start', cursor: null, store: null, tvid: 0, bytes: 0 });
      this.log.info({ snapshot: r.id }, 'snapshot copy interrupted earlier: starting it again');
    }
    for (const r of this.db.prepare('SELECT volume, snapshot, phase FROM rebuilds').all() as { volume: string; snapshot: string; phase: string }[]) {
      this.log.info({ volume: r.volume, snapshot: r.snapshot, phase: r.phase }, 'a rollback\'s rebuild was interrupted earlier: going on with it');
    }
    this.repinAll();
  }

  setRules(rules: Rules): void {
    this.rules = rules;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.stores.values()) {
      try { s.close(); } catch { /* closing anyway */ }
    }
    this.stores.clear();
    this.packs.close();
    this.db.close();
  }

  // ---- targets ---------------------------------------------------------------

  private registerTargets(specs: TargetSpec[]): void {
    const names = new Set<string>();
    for (const s of specs) {
      if (names.has(s.name)) throw new Error(`target ${s.name} is given twice`);
      names.add(s.name);
    }
    // A new data directory given an archive's old targets (the data directory was lost) adopts them and their snapshots.
    const empty = this.db.prepare('SELECT (SELECT COUNT(*) FROM targets) + (SELECT COUNT(*) FROM volumes) + (SELECT COUNT(*) FROM snapshots)').pluck().get() === 0;
    const foreign = empty ? specs.map((s) => readMarker(s.path)).find((m) => m !== null && m.archive !== this.archiveId) : undefined;
    if (foreign) {
      this.db.prepare(`UPDATE meta SET value = ? WHERE key = 'archive_id'`).run(foreign.archive);
      this.log.warn({ archive: foreign.archive }, 'new data directory: adopting the targets (and snapshots) of the archive they belong to');
      this.archiveId = foreign.archive;
    }
    const known = new Map((this.db.prepare('SELECT name, path, retired_ms FROM targets').all() as { name: string; path: string; retired_ms: number | null }[]).map((r) => [r.name, r]));
    for (const s of specs) {
      const k = known.get(s.name);
      const marker = readMarker(s.path);
      if (marker === null && k !== undefined && k.path === s.path) {
        // Registered (and marked) before, but its marker is gone: the disk is not mounted, or was replaced. Never initialise over it.
        this.log.warn({ target: s.name, path: s.path }, 'target has lost its marker (disk not mounted, or replaced?): it takes no snapshot and its snapshots are lost');
      } else if (marker === null && k !== undefined && k.path !== s.path && this.holding(s.name) > 0) {
        throw new Error(`target ${s.name} was ${k.path} and holds ${this.holding(s.name)} snapshots; ${s.path} is not that disk (no marker). ` +
          'Give a new disk a new target name');
      } else {
        initialiseTarget(s, this.archiveId); // checks an existing marker: this archive, this name
      }
      this.db.prepare(`INSERT INTO targets (name, path, added_ms, retired_ms) VALUES (?, ?, ?, NULL)
        ON CONFLICT (name) DO UPDATE SET path = excluded.path, retired_ms = NULL`).run(s.name, s.path, this.now());
    }
    for (const k of known.values()) {
      if (!names.has(k.name) && k.retired_ms === null) {
        this.db.prepare('UPDATE targets SET retired_ms = ? WHERE name = ?').run(this.now(), k.name);
        this.log.warn({ target: k.name, path: k.path }, 'target no longer configured: it takes no new snapshot; its snapshots stay readable while its directory is there');
      }
    }
  }

  /** Complete snapshots a target holds that the catalog does not list (a new or restored data directory) go into the catalog. */
  private importFromTargets(): void {
    for (const t of this.targetSpecs(false)) {
      let rows: { id: string; volume: string; record: number; created_ms: number; trigger: string; condition: string | null; reason: string | null; labels: string; annotations: string; completed_ms: number | null }[];
      try {
        if (!fs.existsSync(join(t.path, 'archive.db')) || readMarker(t.path)?.archive !== this.archiveId) continue;
        rows = this.store(t.name).db.prepare(`SELECT * FROM snapshot_info WHERE state = 'complete'`).all() as typeof rows;
      } catch (err) {
        this.log.warn({ target: t.name, err: (err as Error).message }, 'cannot read the target\'s snapshots');
        continue;
      }
      let n = 0;
      for (const r of rows) {
        if (this.db.prepare('SELECT 1 FROM snapshots WHERE id = ?').get(r.id) !== undefined) continue;
        const vid = (this.db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(r.volume) as number | undefined) ?? 0;
        this.db.prepare(`INSERT INTO snapshots (id, volume, vid, record, created_ms, target, trigger, condition, reason, labels, annotations, state, completed_ms)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'complete', ?)`).run(r.id, r.volume, vid, r.record, r.created_ms, t.name, r.trigger, r.condition, r.reason, r.labels, r.annotations, r.completed_ms);
        n++;
      }
      if (n > 0) this.log.warn({ target: t.name, snapshots: n }, 'snapshots found on a target but not in the catalog: added (sizes are filled in by verify)');
    }
  }

  private holding(target: string): number {
    return this.db.prepare(`SELECT COUNT(*) FROM snapshots WHERE target = ? AND state IN ('copying', 'complete', 'lost')`).pluck().get(target) as number;
  }

  private targetSpecs(includeRetired = true): (TargetSpec & { retired: boolean })[] {
    const rows = this.db.prepare('SELECT name, path, retired_ms FROM targets ORDER BY name').all() as { name: string; path: string; retired_ms: number | null }[];
    return rows.filter((r) => includeRetired || r.retired_ms === null).map((r) => ({ name: r.name, path: r.path, retired: r.retired_ms !== null }));
  }

  targets(): TargetInfo[] {
    const specs = this.targetSpecs(false);
    const dataDev = deviceOf(this.dataDir);
    const infos: TargetInfo[] = specs.map((s) => ({
      ...probeTarget(s, this.archiveId),
      sharesDeviceWith: [],
      snapshots: this.db.prepare(`SELECT COUNT(*) FROM snapshots WHERE target = ? AND state = 'complete'`).pluck().get(s.name) as number,
    }));
    for (const a of infos) {
      if (a.device === null) continue;
      if (a.device === dataDev) a.sharesDeviceWith.push('data');
      for (const b of infos) if (b !== a && b.device === a.device) a.sharesDeviceWith.push(b.name);
    }
    this.refreshLost(infos);
    return infos;
  }

  /** Snapshots on a target that is gone become `lost`; lost ones whose target is back become `complete` again. */
  private refreshLost(infos: TargetInfo[]): void {
    for (const t of infos) {
      if (!t.readable) {
        const n = this.db.prepare(`UPDATE snapshots SET state = 'lost', error = ? WHERE target = ? AND state = 'complete'`).run(`target ${t.name} unreadable: ${t.problem}`, t.name).changes;
        if (n > 0) this.log.warn({ target: t.name, problem: t.problem, snapshots: n }, 'target unreadable: its snapshots are lost');
      } else {
        const lost = this.db.prepare(`SELECT id FROM snapshots WHERE target = ? AND state = 'lost'`).pluck().all(t.name) as string[];
        for (const id of lost) {
          if (this.targetHolds(t.name, id)) {
            this.db.prepare(`UPDATE snapshots SET state = 'complete', error = NULL WHERE id = ?`).run(id);
            this.log.info({ target: t.name, snapshot: id }, 'target readable again: snapshot complete');
          }
        }
      }
    }
  }

  private targetHolds(target: string, id: string): boolean {
    try {
      const st = this.store(target);
      return st.db.prepare(`SELECT state FROM snapshot_info WHERE id = ?`).pluck().get(id) === 'complete';
    } catch {
      return false;
    }
  }

  /** The target's store, opened once (dropped again when it fails). */
  private store(name: string): TargetStore {
    let s = this.stores.get(name);
    if (s !== undefined) {
      // A directory replaced or unmounted under an open database must not be written through stale descriptors.
      if (readMarker(s.dir)?.archive === this.archiveId && fs.existsSync(join(s.dir, 'archive.db'))) return s;
      this.dropStore(name);
    }
    const spec = this.targetSpecs().find((t) => t.name === name);
    if (spec === undefined) throw noTarget(`no target ${name}`);
    const m = readMarker(spec.path);
    if (m === null || m.archive !== this.archiveId || m.name !== name) throw new TargetFailure(name, new Error(`${spec.path} is not this archive's target ${name} (no matching ${'strata-target.json'})`));
    try {
      s = new TargetStore(name, spec.path);
    } catch (err) {
      throw new TargetFailure(name, err);
    }
    this.stores.set(name, s);
    return s;
  }

  private dropStore(name: string): void {
    const s = this.stores.get(name);
    this.stores.delete(name);
    try { s?.close(); } catch { /* it failed already */ }
  }

  // ---- catalog ---------------------------------------------------------------

  listSnapshots(filter: { volume?: string; condition?: string } = {}): SnapshotInfo[] {
    this.targets(); // states follow the targets' health
    let sql = 'SELECT * FROM snapshots WHERE 1 = 1';
    const args: string[] = [];
    if (filter.volume !== undefined) { sql += ' AND volume = ?'; args.push(checkVolume(filter.volume)); }
    if (filter.condition !== undefined) { sql += ' AND condition = ?'; args.push(String(filter.condition)); }
    sql += ' ORDER BY created_ms, rowid';
    return (this.db.prepare(sql).all(...args) as SnapshotRow[]).map((r) => this.info(r));
  }

  getSnapshot(id: string): SnapshotInfo {
    return this.info(this.row(id));
  }

  private row(id: string): SnapshotRow {
    if (!isSnapshotId(id)) throw new ArchiveError('EBADREQ', `bad snapshot id ${JSON.stringify(id).slice(0, 80)} (s-YYYYMMDD-HHMMSS-xxxxxx)`);
    const r = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(id) as SnapshotRow | undefined;
    if (r === undefined) throw new ArchiveError('ENOSNAPSHOT', `no snapshot ${id}`);
    return r;
  }

  private info(r: SnapshotRow): SnapshotInfo {
    return {
      id: r.id, volume: r.volume, target: r.target, trigger: r.trigger, condition: r.condition, reason: r.reason, state: r.state, record: r.record,
      createdAt: new Date(r.created_ms).toISOString(), completedAt: r.completed_ms === null ? null : new Date(r.completed_ms).toISOString(),
      labels: JSON.parse(r.labels) as { [k: string]: string }, annotations: JSON.parse(r.annotations) as { [k: string]: string },
      sizeBytes: r.size_bytes, blockCount: r.block_count, entries: r.entries, error: r.error,
      attempts: JSON.parse(r.attempts) as { target: string; error: string }[],
      lastVerification: r.verification === null ? null : JSON.parse(r.verification) as SnapshotVerification,
    };
  }

  // ---- taking a snapshot -----------------------------------------------------

  createSnapshot(volume: string, opts: { trigger?: SnapshotTrigger; condition?: string | null; reason?: string | null; labels?: { [k: string]: string }; annotations?: { [k: string]: string } } = {}): SnapshotInfo {
    checkVolume(volume);
    const trigger = opts.trigger ?? 'manual';
    if (opts.reason !== undefined && opts.reason !== null && (typeof opts.reason !== 'string' || opts.reason.length > 1000)) throw new ArchiveError('EBADREQ', 'reason must be a string of at most 1000 characters');
    const v = this.db.prepare('SELECT vid, name, epoch, applied_seq, snapshot_floor FROM volumes WHERE name = ?').get(volume) as VolumeRow | undefined;
    if (v === undefined) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
    this.refuseWhileRebuilding(volume, 'a snapshot of it can be taken');
    const target = this.place(volume, trigger, new Set());
    const id = this.newId();
    const info = this.db.transaction(() => {
      this.refuseWhileRebuilding(volume, 'a snapshot of it can be taken');
      const cur = this.db.prepare('SELECT vid, applied_seq FROM volumes WHERE name = ?').get(volume) as VolumeRow;
      const nowMs = this.now();
      this.db.prepare(`INSERT INTO snapshots (id, volume, vid, record, created_ms, target, trigger, condition, reason, labels, annotations, state)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'copying')`).run(
        id, volume, cur.vid, cur.applied_seq, nowMs, target, trigger, opts.condition ?? null, opts.reason ?? null,
        JSON.stringify(opts.labels ?? {}), JSON.stringify(opts.annotations ?? {}));
      this.repin(cur.vid);
      return this.getSnapshot(id);
    }).immediate();
    this.jobs.set(id, { id, phase: 'start', cursor: null, store: null, tvid: 0, bytes: 0 });
    this.log.info({ snapshot: id, volume, record: info.record, target, trigger, condition: opts.condition ?? null }, 'snapshot taken; copying');
    return info;
  }

  private newId(): string {
    const d = new Date(this.now());
    const p = (n: number, w = 2): string => String(n).padStart(w, '0');
    for (;;) {
      const id = `s-${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}-${randomBytes(3).toString('hex')}`;
      if (this.db.prepare('SELECT 1 FROM snapshots WHERE id = ?').get(id) === undefined) return id;
    }
  }

  /**
   * The target for a new snapshot of `volume`: a healthy one other than the
   * one holding the volume's previous snapshot (the point is another disk),
   * the least recently used for this volume first. Condition (`alert`)
   * snapshots are refused when no such target exists; the others fall back
   * to the previous snapshot's target if it is healthy.
   */
  private place(volume: string, trigger: SnapshotTrigger, tried: Set<string>): string {
    const all = this.targetSpecs(false);
    if (all.length === 0) throw noTarget('this archive has no storage targets: start the server with --target NAME=DIR (two or more, on separate disks)');
    if (trigger === 'alert' && all.length < 2) {
      throw noTarget(`a condition snapshot goes to another disk than the previous one, and this archive has only one target (${all[0]!.name}): add a second --target`);
    }
    const prev = this.db.prepare(`SELECT id, target FROM snapshots WHERE volume = ? AND state IN ('copying', 'complete') AND target IS NOT NULL
      ORDER BY created_ms DESC, rowid DESC LIMIT 1`).get(volume) as { id: string; target: string } | undefined;
    const infos = all.filter((s) => !tried.has(s.name)).map((s) => probeTarget(s, this.archiveId));
    const healthy = infos.filter((i) => i.healthy);
    const others = healthy.filter((i) => i.name !== prev?.target);
    const lastUse = (name: string): number => (this.db.prepare(`SELECT MAX(created_ms) FROM snapshots WHERE volume = ? AND target = ?`).pluck().get(volume, name) as number | null) ?? -1;
    // Free space decides only when it clearly differs (two directories on one disk report slightly different figures from one moment to the next).
    const roomier = (a: { freeBytes: number | null }, b: { freeBytes: number | null }): number => {
      const fa = a.freeBytes ?? 0;
      const fb = b.freeBytes ?? 0;
      return Math.abs(fa - fb) <= 0.05 * Math.max(fa, fb) ? 0 : fb - fa;
    };
    const pick = (list: typeof healthy): string => [...list].sort((a, b) => lastUse(a.name) - lastUse(b.name) || roomier(a, b) || a.name.localeCompare(b.name))[0]!.name;
    if (others.length > 0) return pick(others);
    const why = infos.filter((i) => !i.healthy).map((i) => `${i.name}: ${i.problem}`).join('; ');
    if (trigger !== 'alert' && healthy.length > 0) {
      this.log.warn({ volume, target: healthy[0]!.name, previous: prev?.id }, 'no other healthy target: this snapshot goes to the same target as the previous one');
      return healthy[0]!.name;
    }
    throw noTarget(`no healthy target${prev ? ` other than ${prev.target} (which holds the previous snapshot ${prev.id} of ${volume})` : ''}` +
      `${tried.size > 0 ? ` and not already tried (${[...tried].join(', ')})` : ''}${why ? `; ${why}` : ''}`);
  }

  /** Sets the volume's floor to the newest record a copying snapshot pins, and prunes the closed rows no copy needs. */
  private repin(vid: number): number {
    const pins = this.db.prepare(`SELECT MIN(record) AS lo, MAX(record) AS hi FROM snapshots WHERE vid = ? AND state = 'copying'`).get(vid) as { lo: number | null; hi: number | null };
    this.db.prepare('UPDATE volumes SET snapshot_floor = ? WHERE vid = ?').run(pins.hi ?? NO_SNAPSHOT, vid);
    // A row closed at or before the oldest pin is invisible to every pinned record.
    let pruned = 0;
    for (const t of VERSIONED) {
      pruned += pins.lo === null
        ? this.db.prepare(`DELETE FROM ${t} WHERE vid = ? AND seq_to != ${LIVE}`).run(vid).changes
        : this.db.prepare(`DELETE FROM ${t} WHERE vid = ? AND seq_to != ${LIVE} AND seq_to <= ?`).run(vid, pins.lo).changes;
    }
    return pruned;
  }

  private repinAll(): void {
    this.db.transaction(() => {
      for (const vid of this.db.prepare('SELECT vid FROM volumes').pluck().all() as number[]) this.repin(vid);
    }).immediate();
  }

  // ---- copying ---------------------------------------------------------------

  /** Copies, rebuilds or retired heads to drop that can go on now. */
  get busy(): boolean {
    return this.jobs.size > 0 || this.nextRebuild() !== undefined || this.nextRetired() !== undefined;
  }

  /**
   * Does one bounded step: of a rollback's rebuild first (its volume's
   * records wait for it), else of the oldest copy, else drops a page of a
   * retired head. Returns whether work remains.
   */
  step(): boolean {
    const rb = this.nextRebuild();
    if (rb !== undefined) {
      this.rebuildStep(rb);
      return this.busy;
    }
    const job = this.jobs.values().next().value as CopyJob | undefined;
    if (job === undefined) {
      const vid = this.nextRetired();
      if (vid !== undefined) this.retireStep(vid);
      return this.busy;
    }
    const r = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(job.id) as SnapshotRow | undefined;
    if (r === undefined || r.state !== 'copying') {
      this.jobs.delete(job.id); // deleted meanwhile
      return this.busy;
    }
    try {
      this.copyStep(job, r);
    } catch (err) {
      if (err instanceof TargetFailure) this.moveOn(job, r, err);
      else this.fail(job, r, err);
    }
    return this.busy;
  }

  /** Runs every copy to its end (the `file://` tools; tests). */
  drain(): void {
    while (this.step()) { /* next step */ }
  }

  private copyStep(job: CopyJob, r: SnapshotRow): void {
    const tname = r.target!;
    const onTarget = <T>(fn: (s: TargetStore) => T): T => {
      try {
        return fn(job.store ?? this.store(tname));
      } catch (err) {
        if (err instanceof TargetFailure) throw err;
        if (err instanceof ArchiveError && err.code !== 'EARCHIVE' && err.code !== 'ECORRUPT') throw err;
        throw new TargetFailure(tname, err);
      }
    };
    const S = r.record;
    const visible = `vid = ? AND seq_from <= ? AND seq_to > ?`;
    switch (job.phase) {
      case 'start': {
        job.store = onTarget((s) => s);
        job.tvid = onTarget((s) => s.db.transaction(() => {
          this.dropOnTarget(s, r.id);
          const tvid = Number(s.db.prepare('INSERT INTO volumes (name, epoch, applied_seq, created_ms) VALUES (?, 1, ?, ?)').run(r.id, r.record, r.created_ms).lastInsertRowid);
          s.db.prepare(`INSERT INTO snapshot_info (id, volume, record, created_ms, trigger, condition, reason, labels, annotations, state)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'copying')`).run(r.id, r.volume, r.record, r.created_ms, r.trigger, r.condition, r.reason, r.labels, r.annotations);
          return tvid;
        }).immediate());
        job.phase = 'objects';
        job.cursor = null;
        job.bytes = 0;
        return;
      }
      case 'objects': {
        const rows = this.db.prepare(`SELECT id, ${OBJECT_COLS} FROM objects WHERE ${visible} ${job.cursor ? 'AND id > ?' : ''} ORDER BY id LIMIT ?`)
          .all(r.vid, S, S, ...(job.cursor ?? []), this.pageRows) as { id: string; size: number; mode: number }[];
        onTarget((s) => s.db.transaction(() => {
          const ins = s.db.prepare(`INSERT INTO objects (vid, id, seq_to, seq_from, ${OBJECT_COLS}) VALUES (?, ?, ${LIVE}, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
          for (const o of rows as unknown as { [k: string]: string | number | null }[]) {
            ins.run(job.tvid, o.id, o.mode, o.uid, o.gid, o.size, o.atime_s, o.atime_ns, o.mtime_s, o.mtime_ns, o.rdev, o.target, o.parent);
          }
        }).immediate());
        return this.advance(job, rows.length, rows.length > 0 ? [rows[rows.length - 1]!.id] : null, 'entries');
      }
      case 'entries': {
        const rows = this.db.prepare(`SELECT parent, name, child FROM entries WHERE ${visible} ${job.cursor ? 'AND (parent, name) > (?, ?)' : ''} ORDER BY parent, name LIMIT ?`)
          .all(r.vid, S, S, ...(job.cursor ?? []), this.pageRows) as { parent: string; name: string; child: string }[];
        onTarget((s) => s.db.transaction(() => {
          const ins = s.db.prepare(`INSERT INTO entries (vid, parent, name, seq_to, seq_from, child) VALUES (?, ?, ?, ${LIVE}, 0, ?)`);
          for (const e of rows) ins.run(job.tvid, e.parent, e.name, e.child);
        }).immediate());
        const last = rows[rows.length - 1];
        return this.advance(job, rows.length, last ? [last.parent, last.name] : null, 'xattrs');
      }
      case 'xattrs': {
        const rows = this.db.prepare(`SELECT id, name, value FROM xattrs WHERE ${visible} ${job.cursor ? 'AND (id, name) > (?, ?)' : ''} ORDER BY id, name LIMIT ?`)
          .all(r.vid, S, S, ...(job.cursor ?? []), this.pageRows) as { id: string; name: string; value: Buffer }[];
        onTarget((s) => s.db.transaction(() => {
          const ins = s.db.prepare(`INSERT INTO xattrs (vid, id, name, seq_to, seq_from, value) VALUES (?, ?, ?, ${LIVE}, 0, ?)`);
          for (const x of rows) ins.run(job.tvid, x.id, x.name, x.value);
        }).immediate());
        const last = rows[rows.length - 1];
        return this.advance(job, rows.length, last ? [last.id, last.name] : null, 'blocks');
      }
      case 'blocks': {
        // Source rows first (and their bytes, verified), then one target transaction.
        const rows = this.db.prepare(`SELECT fb.id, fb.idx, fb.digest, fb.length, b.pack, b.offset, b.length AS blen
          FROM file_blocks fb LEFT JOIN blocks b ON b.digest = fb.digest
          WHERE fb.vid = ? AND fb.seq_from <= ? AND fb.seq_to > ? ${job.cursor ? 'AND (fb.id, fb.idx) > (?, ?)' : ''} ORDER BY fb.id, fb.idx LIMIT ?`)
          .all(r.vid, S, S, ...(job.cursor ?? []), this.pageRows) as { id: string; idx: number; digest: Buffer; length: number; pack: number | null; offset: number | null; blen: number | null }[];
        const s = onTarget((st) => st);
        const has = s.db.prepare('SELECT 1 FROM blocks WHERE digest = ?').pluck();
        const fresh = new Map<string, Buffer>();
        let taken = 0;
        let bytes = 0;
        for (const b of rows) {
          const key = b.digest.toString('hex');
          if (!fresh.has(key) && onTarget(() => has.get(b.digest)) === undefined) {
            if (b.pack === null || b.offset === null || b.blen === null) {
              throw new ArchiveError('ECORRUPT', `volume ${r.volume} object ${b.id} block ${b.idx}: no stored block for digest ${key}`);
            }
            const data = this.packs.read({ pack: b.pack, offset: b.offset, length: b.blen }, b.digest, `volume ${r.volume} object ${b.id} block ${b.idx}`);
            fresh.set(key, data);
            bytes += data.length;
          }
          taken++;
          if (bytes >= this.pageBytes) break;
        }
        const page = rows.slice(0, taken);
        onTarget((st) => {
          st.db.transaction(() => {
            st.packs.begin(Number(st.db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get()));
            try {
              const insBlock = st.db.prepare('INSERT OR IGNORE INTO blocks (digest, pack, offset, length) VALUES (?, ?, ?, ?)');
              for (const [key, data] of fresh) {
                const digest = Buffer.from(key, 'hex');
                const loc = st.packs.append(digest, data);
                insBlock.run(digest, loc.pack, loc.offset, loc.length);
              }
              const cur = st.packs.currentPack;
              if (cur !== null) st.db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(cur));
              const ins = st.db.prepare(`INSERT INTO file_blocks (vid, id, idx, seq_to, seq_from, digest, length) VALUES (?, ?, ?, ${LIVE}, 0, ?, ?)`);
              for (const b of page) ins.run(job.tvid, b.id, b.idx, b.digest, b.length);
              st.packs.sync(); // the bytes are durable before the rows that point at them
            } finally {
              st.packs.abort();
            }
          }).immediate();
        });
        job.bytes += bytes;
        const last = page[page.length - 1];
        return this.advance(job, rows.length, last ? [last.id, last.idx] : null, 'counts');
      }
      case 'counts': {
        onTarget((st) => computeCounts(st.db, job.tvid));
        job.phase = 'finish';
        return;
      }
      case 'finish': {
        const totals = onTarget((st) => st.db.transaction(() => {
          const c = st.db.prepare('SELECT sub_entries, sub_bytes FROM counts WHERE vid = ? AND id = ?').get(job.tvid, ROOT_ID) as { sub_entries: number; sub_bytes: number } | undefined;
          const blocks = st.db.prepare('SELECT COUNT(DISTINCT digest) FROM file_blocks WHERE vid = ?').pluck().get(job.tvid) as number;
          st.db.prepare(`UPDATE snapshot_info SET state = 'complete', completed_ms = ? WHERE id = ?`).run(this.now(), r.id);
          return { entries: c?.sub_entries ?? 0, bytes: c?.sub_bytes ?? 0, blocks };
        }).immediate());
        this.db.transaction(() => {
          this.db.prepare(`UPDATE snapshots SET state = 'complete', completed_ms = ?, entries = ?, size_bytes = ?, block_count = ?, error = NULL WHERE id = ?`)
            .run(this.now(), totals.entries, totals.bytes, totals.blocks, r.id);
          this.repin(r.vid);
        }).immediate();
        this.jobs.delete(job.id);
        this.log.info({ snapshot: r.id, volume: r.volume, target: tname, entries: totals.entries, bytes: totals.bytes, blocks: totals.blocks, newBlockBytes: job.bytes }, 'snapshot complete');
        this.applyRetention(r.volume);
        return;
      }
    }
  }

  private advance(job: CopyJob, got: number, cursor: (string | number)[] | null, next: Phase): void {
    if (got < this.pageRows || cursor === null) {
      job.phase = next;
      job.cursor = null;
    } else {
      job.cursor = cursor;
    }
  }

  /** The target failed under the copy: what was written there goes (if it can), and the next eligible target takes over. */
  private moveOn(job: CopyJob, r: SnapshotRow, err: TargetFailure): void {
    const tname = r.target!;
    this.log.warn({ snapshot: r.id, target: tname, err: err.message }, 'snapshot copy failed on its target; trying another');
    this.cleanupOnTarget(tname, r.id);
    this.dropStore(tname);
    const attempts = [...(JSON.parse(r.attempts) as { target: string; error: string }[]), { target: tname, error: err.message }];
    let next: string | null = null;
    let why = '';
    try {
      next = this.place(r.volume, r.trigger, new Set(attempts.map((a) => a.target)));
    } catch (e) {
      why = (e as Error).message;
    }
    if (next === null) {
      this.db.transaction(() => {
        this.db.prepare(`UPDATE snapshots SET state = 'failed', attempts = ?, error = ? WHERE id = ?`).run(JSON.stringify(attempts), `${err.message}; ${why}`, r.id);
        this.repin(r.vid);
      }).immediate();
      this.jobs.delete(job.id);
      this.log.error({ snapshot: r.id, attempts }, 'snapshot failed: no other target can take it');
      return;
    }
    this.db.prepare('UPDATE snapshots SET target = ?, attempts = ? WHERE id = ?').run(next, JSON.stringify(attempts), r.id);
    Object.assign(job, { phase: 'start', cursor: null, store: null, tvid: 0, bytes: 0 });
  }

  private fail(job: CopyJob, r: SnapshotRow, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.log.error({ snapshot: r.id, err: message }, 'snapshot failed');
    if (r.target !== null) this.cleanupOnTarget(r.target, r.id);
    this.db.transaction(() => {
      this.db.prepare(`UPDATE snapshots SET state = 'failed', error = ? WHERE id = ?`).run(message, r.id);
      this.repin(r.vid);
    }).immediate();
    this.jobs.delete(job.id);
  }

  /** Removes a snapshot's rows from a target, best effort (a full or vanished disk may refuse; GC and the next copy clean up). */
  private cleanupOnTarget(target: string, id: string): void {
    try {
      const s = this.store(target);
      s.db.transaction(() => this.dropOnTarget(s, id)).immediate();
    } catch (err) {
      this.log.warn({ target, snapshot: id, err: (err as Error).message }, 'could not remove a snapshot from its target (removed at its next use)');
    }
  }

  private dropOnTarget(s: TargetStore, id: string): void {
    const tvid = s.db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(id) as number | undefined;
    if (tvid !== undefined) {
      for (const t of [...VERSIONED, 'counts']) s.db.prepare(`DELETE FROM ${t} WHERE vid = ?`).run(tvid);
      s.db.prepare('DELETE FROM volumes WHERE vid = ?').run(tvid);
    }
    s.db.prepare('DELETE FROM snapshot_info WHERE id = ?').run(id);
  }

  // ---- verify, delete, retention --------------------------------------------

  verifySnapshot(id: string): SnapshotInfo {
    const r = this.row(id);
    if (r.state !== 'complete' && r.state !== 'lost') throw new ArchiveError('EBADREQ', `snapshot ${id} is ${r.state}: only a complete snapshot can be verified`);
    const v: SnapshotVerification = { at: new Date(this.now()).toISOString(), ok: true, blocks: 0, bad: 0, errors: [] };
    const problem = (msg: string): void => {
      v.ok = false;
      if (v.errors.length < 20) v.errors.push(msg);
    };
    let s: TargetStore | null = null;
    try {
      s = this.store(r.target!);
    } catch (err) {
      problem(`target ${r.target} cannot be opened: ${(err as Error).message}`);
    }
    if (s !== null) {
      const tvid = s.db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(id) as number | undefined;
      const state = s.db.prepare('SELECT state FROM snapshot_info WHERE id = ?').pluck().get(id) as string | undefined;
      if (tvid === undefined || state !== 'complete') {
        problem(`target ${r.target} does not hold snapshot ${id} complete`);
      } else {
        const root = s.db.prepare(`SELECT 1 FROM objects WHERE vid = ? AND id = ? AND seq_to = ${LIVE}`).get(tvid, ROOT_ID);
        if (root === undefined) problem('the snapshot has no root directory');
        const it = s.db.prepare(`SELECT DISTINCT fb.digest, b.pack, b.offset, b.length FROM file_blocks fb LEFT JOIN blocks b ON b.digest = fb.digest WHERE fb.vid = ?`)
          .iterate(tvid) as Iterable<{ digest: Buffer; pack: number | null; offset: number | null; length: number | null }>;
        for (const b of it) {
          v.blocks++;
          if (b.pack === null || b.offset === null || b.length === null) {
            v.bad++;
            problem(`block ${b.digest.toString('hex')}: not in the target's block store`);
            continue;
          }
          try {
            s.packs.read({ pack: b.pack, offset: b.offset, length: b.length }, b.digest, `snapshot ${id} block ${b.digest.toString('hex').slice(0, 16)}`);
          } catch (err) {
            v.bad++;
            problem((err as Error).message);
          }
        }
      }
    }
    this.db.prepare('UPDATE snapshots SET verified_ms = ?, verification = ? WHERE id = ?').run(this.now(), JSON.stringify(v), id);
    this.log[v.ok ? 'info' : 'error']({ snapshot: id, target: r.target, blocks: v.blocks, bad: v.bad }, v.ok ? 'snapshot verified' : 'snapshot verification FAILED');
    return this.getSnapshot(id);
  }

  deleteSnapshot(id: string): SnapshotInfo {
    const r = this.row(id);
    const rb = this.db.prepare('SELECT volume FROM rebuilds WHERE snapshot = ?').pluck().get(id) as string | undefined;
    if (rb !== undefined) throw new ArchiveError('EUNAVAILABLE', `snapshot ${id} is the tree volume ${rb} is being rebuilt from: it can be deleted once that is done`);
    const before = this.info(r);
    this.jobs.delete(id);
    let reclaim: string | null = null;
    if (r.target !== null && r.state !== 'failed') {
      try {
        const s = this.store(r.target);
        s.db.transaction(() => this.dropOnTarget(s, id)).immediate();
        reclaim = r.target;
      } catch (err) {
        // A lost target: nothing to remove there; the catalog row goes anyway.
        if (r.state === 'complete' || r.state === 'copying') {
          throw new ArchiveError('EARCHIVE', `snapshot ${id} could not be removed from target ${r.target}: ${(err as Error).message}`);
        }
      }
    }
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
      this.repin(r.vid);
    }).immediate();
    this.log.info({ snapshot: id, volume: r.volume, target: r.target, state: r.state }, 'snapshot deleted');
    if (reclaim !== null) {
      try {
        this.gcTarget(reclaim);
      } catch (err) {
        this.log.warn({ target: reclaim, err: (err as Error).message }, 'garbage collection after a delete failed (the next one retries)');
      }
    }
    return before;
  }

  /** Keeps each condition's newest `keep` complete snapshots per volume (and none beyond max-age); the same per schedule. */
  applyRetention(volume?: string): string[] {
    const deleted: string[] = [];
    const nowMs = this.now();
    const prune = (rows: SnapshotRow[], keep: number, maxAgeMs: number | null): void => {
      rows.forEach((r, i) => {
        if (i >= keep || (maxAgeMs !== null && nowMs - r.created_ms > maxAgeMs)) {
          try {
            this.deleteSnapshot(r.id);
            deleted.push(r.id);
          } catch (err) {
            this.log.warn({ snapshot: r.id, err: (err as Error).message }, 'retention could not delete a snapshot');
          }
        }
      });
    };
    const vols = volume !== undefined ? [volume] : (this.db.prepare('SELECT DISTINCT volume FROM snapshots').pluck().all() as string[]);
    for (const vol of vols) {
      for (const c of this.rules.conditions) {
        prune(this.db.prepare(`SELECT * FROM snapshots WHERE volume = ? AND trigger = 'alert' AND condition = ? AND state IN ('complete', 'lost') ORDER BY created_ms DESC`)
          .all(vol, c.name) as SnapshotRow[], c.keep, c.maxAgeMs);
      }
      for (const s of this.rules.schedules) {
        prune(this.db.prepare(`SELECT * FROM snapshots WHERE volume = ? AND trigger = 'schedule' AND condition = ? AND state IN ('complete', 'lost') ORDER BY created_ms DESC`)
          .all(vol, s.name) as SnapshotRow[], s.keep, null);
      }
    }
    return deleted;
  }

  /** Starts the scheduled snapshots that are due; returns their ids. */
  runSchedules(): string[] {
    const started: string[] = [];
    const nowMs = this.now();
    for (const s of this.rules.schedules) {
      const vols = s.volumes ?? (this.db.prepare(`SELECT name FROM volumes WHERE substr(name, 1, 1) != '${HIDDEN_VOLUME_PREFIX}' ORDER BY name`).pluck().all() as string[]);
      for (const vol of vols) {
        const last = this.db.prepare(`SELECT MAX(created_ms) FROM snapshots WHERE volume = ? AND trigger = 'schedule' AND condition = ? AND state != 'failed'`).pluck().get(vol, s.name) as number | null;
        if (last !== null && nowMs - last < s.everyMs) continue;
        try {
          started.push(this.createSnapshot(vol, { trigger: 'schedule', condition: s.name, reason: `schedule ${s.name}` }).id);
        } catch (err) {
          this.log.warn({ schedule: s.name, volume: vol, err: (err as Error).message }, 'scheduled snapshot not taken');
        }
      }
    }
    return started;
  }

  // ---- alerts ----------------------------------------------------------------

  receiveAlert(alert: IncomingAlert, source: 'alertmanager' | 'primary'): AlertDecision {
    const labels = alert.labels;
    const alertname = labels.alertname ?? null;
    const d: AlertDecision = {
      receivedAt: new Date(this.now()).toISOString(), source, status: alert.status, alertname, labels, volume: null, condition: null,
      decision: 'no-match', snapshot: null, detail: '',
    };
    const decide = (kind: AlertDecisionKind, detail: string): void => { d.decision = kind; d.detail = detail; };
    const c = this.rules.conditions.find((x) => conditionMatches(x, labels));
    if (c === undefined) {
      decide(alert.status === 'resolved' ? 'resolved' : 'no-match', alert.status === 'resolved' ? 'resolved alert: logged' : `no condition matches (${this.rules.conditions.length} conditions)`);
    } else {
      d.condition = c.name;
      const vol = volumeOf(c, labels);
      if ('problem' in vol) {
        decide(alert.status === 'resolved' ? 'resolved' : vol.problem, vol.detail);
      } else {
        d.volume = vol.volume;
        if (alert.status === 'resolved') {
          decide('resolved', 'resolved alert: logged, no snapshot');
        } else if (this.db.prepare('SELECT 1 FROM volumes WHERE name = ?').get(vol.volume) === undefined) {
          decide('unknown-volume', `this archive has no volume ${vol.volume}`);
        } else {
          const last = this.db.prepare(`SELECT id, created_ms FROM snapshots WHERE volume = ? AND trigger = 'alert' AND condition = ? AND state != 'failed'
            ORDER BY created_ms DESC, rowid DESC LIMIT 1`).get(vol.volume, c.name) as { id: string; created_ms: number } | undefined;
          if (last !== undefined && this.now() - last.created_ms < c.minIntervalMs) {
            decide('suppressed', `snapshot ${last.id} of ${vol.volume} for ${c.name} was taken ${Math.round((this.now() - last.created_ms) / 1000)} s ago (min-interval ${Math.round(c.minIntervalMs / 1000)} s)`);
            d.snapshot = last.id;
          } else {
            try {
              const snap = this.createSnapshot(vol.volume, {
                trigger: 'alert', condition: c.name, labels, annotations: alert.annotations,
                reason: `${source === 'primary' ? 'raised by the primary' : 'alert'} ${alertname ?? '(no alertname)'}${alert.annotations.summary ? `: ${alert.annotations.summary.slice(0, 200)}` : ''}`,
              });
              d.snapshot = snap.id;
              decide('snapshot', `snapshot ${snap.id} of ${vol.volume} at record ${snap.record} on target ${snap.target}`);
            } catch (err) {
              decide('refused', err instanceof Error ? err.message : String(err));
            }
          }
        }
      }
    }
    this.db.prepare(`INSERT INTO alerts (received_ms, source, status, alertname, labels, annotations, fingerprint, volume, condition, decision, snapshot, detail)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(this.now(), source, alert.status, alertname, JSON.stringify(labels), JSON.stringify(alert.annotations),
      alert.fingerprint ?? null, d.volume, d.condition, d.decision, d.snapshot, d.detail);
    const n = this.db.prepare('SELECT MAX(n) FROM alerts').pluck().get() as number;
    if (n % 1000 === 0) this.db.prepare('DELETE FROM alerts WHERE n <= ?').run(n - MAX_ALERT_ROWS);
    const level = d.decision === 'refused' || d.decision === 'no-volume' || d.decision === 'unknown-volume' ? 'warn' : 'info';
    this.log[level]({ source, status: d.status, alertname, volume: d.volume, condition: d.condition, decision: d.decision, snapshot: d.snapshot, detail: d.detail }, 'alert');
    return d;
  }

  alerts(limit = 100): AlertDecision[] {
    const n = Math.max(1, Math.min(10_000, Math.floor(Number(limit) || 100)));
    const rows = this.db.prepare('SELECT * FROM alerts ORDER BY n DESC LIMIT ?').all(n) as {
      received_ms: number; source: 'alertmanager' | 'primary'; status: 'firing' | 'resolved'; alertname: string | null; labels: string; volume: string | null;
      condition: string | null; decision: AlertDecisionKind; snapshot: string | null; detail: string;
    }[];
    return rows.map((r) => ({
      receivedAt: new Date(r.received_ms).toISOString(), source: r.source, status: r.status, alertname: r.alertname, labels: JSON.parse(r.labels) as { [k: string]: string },
      volume: r.volume, condition: r.condition, decision: r.decision, snapshot: r.snapshot, detail: r.detail,
    }));
  }

  // ---- recovery from a snapshot --------------------------------------------

  chooseSnapshot(volume: string, opts: { condition: string; before?: string }): SnapshotChoice {
    checkVolume(volume);
    if (typeof opts.condition !== 'string' || opts.condition.length === 0 || opts.condition.length > 64) throw new ArchiveError('EBADREQ', 'condition must be a name');
    let beforeMs = Number.MAX_SAFE_INTEGER;
    if (opts.before !== undefined) {
      beforeMs = Date.parse(opts.before);
      if (!Number.isFinite(beforeMs)) throw new ArchiveError('EBADREQ', `--before ${JSON.stringify(opts.before).slice(0, 60)} is not a time (ISO 8601, e.g. 2025-01-02T03:04:05Z)`);
    }
    const infos = new Map(this.targets().map((t) => [t.name, t]));
    const rows = this.db.prepare(`SELECT * FROM snapshots WHERE volume = ? AND condition = ? AND created_ms < ? ORDER BY created_ms DESC, rowid DESC`)
      .all(volume, opts.condition, beforeMs) as SnapshotRow[];
    const skipped: SnapshotChoice['skipped'] = [];
    for (const r of rows) {
      const t = r.target === null ? undefined : infos.get(r.target);
      let why: string | null = null;
      if (r.state !== 'complete') why = `${r.state}${r.error ? ` (${r.error})` : ''}`;
      else if (t === undefined) why = `its target ${r.target} is not configured`;
      else if (!t.readable) why = `its target ${t.name} is unreadable: ${t.problem}`;
      else if (!this.targetHolds(t.name, r.id)) why = `its target ${t.name} does not hold it complete`;
      else if (r.verification !== null && !(JSON.parse(r.verification) as SnapshotVerification).ok) why = 'its last verification failed';
      if (why !== null) {
        skipped.push({ id: r.id, target: r.target, why });
        continue;
      }
      const info = this.info(r);
      const whyText = `newest complete snapshot of ${volume} for condition ${opts.condition}${opts.before ? ` taken before ${opts.before}` : ''} on a readable target: ` +
        `${r.id} (record ${r.record}, taken ${info.createdAt}, target ${r.target})${skipped.length > 0 ? `; skipped ${skipped.map((s) => `${s.id}: ${s.why}`).join('; ')}` : ''}`;
      return { snapshot: info, why: whyText, skipped };
    }
    throw new ArchiveError('ENOSNAPSHOT', `no complete snapshot of ${volume} for condition ${opts.condition}${opts.before ? ` taken before ${opts.before}` : ''} on a readable target` +
      `${skipped.length > 0 ? ` (skipped ${skipped.map((s) => `${s.id}: ${s.why}`).join('; ')})` : rows.length === 0 ? ' (the catalog has none)' : ''}`);
  }

  /**
   * Makes the volume's head the snapshot's tree, deciding it in one small
   * transaction and building the new head's rows in the background
   * (docs/snapshots.md, "Rollback"). First the head is kept: a `rollback`
   * snapshot pins it (and copies it to a target in the background), so
   * nothing is lost by choosing an old point. Then one transaction records
   * the decision: the volume's record goes up by one, its epoch too (a
   * fence: the old primary is refused), a hidden volume is made for the new
   * head and a `rebuilds` row says "rebuilding from snapshot S". From then
   * on reads of the volume are served from the snapshot on its target
   * (archive-store.ts), and its records are refused as retryable until
   * step() has copied the snapshot's rows into the hidden volume, page by
   * page, and exchanged the two (rebuildStep). The old head's rows stay in
   * their vid, untouched, until no copy needs them (retireStep).
   * The volume's own primary (a swap) passes `opts.holder`: the epoch must be
   * that one and stays (the lease holder is checked by the server); and
   * `opts.keptBy`, a snapshot that already keeps the head (docs/swap.md).
   */
  rollback(volume: string, snapshotId: string, opts: RollbackOptions = {}): RollbackResult {
    checkVolume(volume);
    const r = this.row(snapshotId);
    if (r.volume !== volume) throw new ArchiveError('EBADREQ', `snapshot ${snapshotId} is of volume ${r.volume}, not ${volume}`);
    if (r.state !== 'complete') throw new ArchiveError('EBADREQ', `snapshot ${snapshotId} is ${r.state}${r.error ? ` (${r.error})` : ''}: only a complete snapshot can be recovered from`);
    const src = this.store(r.target!);
    const tvid = src.db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(snapshotId) as number | undefined;
    if (tvid === undefined || src.db.prepare('SELECT state FROM snapshot_info WHERE id = ?').pluck().get(snapshotId) !== 'complete') {
      throw new ArchiveError('ENOTARGET', `target ${r.target} does not hold snapshot ${snapshotId} complete`);
    }
    const root = src.db.prepare('SELECT sub_entries, sub_bytes FROM counts WHERE vid = ? AND id = ?').get(tvid, ROOT_ID) as { sub_entries: number; sub_bytes: number } | undefined;
    const totals = { entries: root?.sub_entries ?? 0, bytes: root?.sub_bytes ?? 0 };
    const volumeRow = (): VolumeRow | undefined => this.db.prepare('SELECT vid, name, epoch, applied_seq, snapshot_floor FROM volumes WHERE name = ?').get(volume) as VolumeRow | undefined;
    const checkHolder = (v: VolumeRow | undefined): void => {
      if (opts.holder === undefined) return;
      if (v === undefined) throw new ArchiveError('ENOVOLUME', `no volume ${volume}`);
      if (v.epoch !== opts.holder.epoch) throw new ArchiveError('EFENCED', `volume ${volume} is at epoch ${v.epoch}; epoch ${opts.holder.epoch} was fenced`);
    };
    const bump = opts.holder === undefined ? 1 : 0;
    let v = volumeRow();
    checkHolder(v);
    const ongoing = this.db.prepare('SELECT snapshot FROM rebuilds WHERE volume = ?').pluck().get(volume) as string | undefined;
    if (ongoing !== undefined) {
      if (ongoing !== snapshotId) {
        throw new ArchiveError('EUNAVAILABLE', `volume ${volume} is being rebuilt from snapshot ${ongoing}: a rollback to another snapshot can start once that is done; try again`);
      }
      // The same rollback again (a rerun after a failure): the head is that snapshot's tree already; only the fence is new.
      const state = this.db.transaction(() => {
        const cur = volumeRow()!;
        checkHolder(cur);
        this.db.prepare('UPDATE volumes SET epoch = epoch + ? WHERE vid = ?').run(bump, cur.vid);
        return { name: volume, epoch: cur.epoch + bump, appliedSeq: cur.applied_seq, totals };
      }).immediate();
      this.log.info({ volume, snapshot: snapshotId, epoch: state.epoch }, 'rollback asked again while its rebuild goes on: the head is that snapshot already');
      if (this.rebuildInline) this.finishRebuild(volume);
      return { state, from: this.getSnapshot(snapshotId), kept: null };
    }
    let kept: SnapshotInfo | null = null;
    if (v !== undefined && v.applied_seq > 0 && opts.keptBy !== undefined) {
      const k = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(opts.keptBy) as SnapshotRow | undefined;
      if (k !== undefined && k.volume === volume && k.record === v.applied_seq && (k.state === 'copying' || k.state === 'complete')) kept = this.info(k);
    }
    if (kept === null && v !== undefined && v.applied_seq > 0) {
      kept = this.createSnapshot(volume, { trigger: 'rollback', reason: `the head at record ${v.applied_seq}, kept before the rollback to ${snapshotId}` });
    }
    const state = this.db.transaction((): VolumeState => {
      v = volumeRow();
      if (v === undefined) {
        // A new data directory (the old one was lost): the volume comes back from the snapshot alone.
        const vid = Number(this.db.prepare('INSERT INTO volumes (name, epoch, applied_seq, created_ms) VALUES (?, 1, 0, ?)').run(volume, this.now()).lastInsertRowid);
        v = { vid, name: volume, epoch: 1, applied_seq: 0, snapshot_floor: NO_SNAPSHOT };
        this.db.prepare('UPDATE snapshots SET vid = ? WHERE volume = ?').run(vid, volume);
      }
      checkHolder(v);
      if (opts.keptBy !== undefined && kept !== null && v.applied_seq !== kept.record) throw new ArchiveError('EBADREQ', `volume ${volume} moved from record ${kept.record} to ${v.applied_seq} during the rollback: try again`);
      this.refuseWhileRebuilding(volume, 'it can be rolled back again');
      const seq = v.applied_seq + 1;
      const newVid = Number(this.db.prepare('INSERT INTO volumes (name, epoch, applied_seq, created_ms) VALUES (?, 0, ?, ?)')
        .run(`${HIDDEN_VOLUME_PREFIX}rebuild-${v.vid}-${randomBytes(4).toString('hex')}`, seq, this.now()).lastInsertRowid);
      this.db.prepare(`INSERT INTO rebuilds (volume, snapshot, target, target_path, new_vid, old_vid, seq, phase, cursor, started_ms)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'objects', NULL, ?)`).run(volume, snapshotId, r.target, src.dir, newVid, v.vid, seq, this.now());
      this.db.prepare('UPDATE volumes SET applied_seq = ?, epoch = epoch + ? WHERE vid = ?').run(seq, bump, v.vid);
      return { name: volume, epoch: v.epoch + bump, appliedSeq: seq, totals };
    }).immediate();
    this.rebuildRetryAt = 0;
    this.log.info({ volume, snapshot: snapshotId, record: state.appliedSeq, epoch: state.epoch, kept: kept?.id ?? null },
      'volume rolled back to a snapshot: its head is rebuilt in the background, read from the snapshot meanwhile');
    if (this.rebuildInline) this.finishRebuild(volume);
    return { state, from: this.getSnapshot(snapshotId), kept: kept === null ? null : this.getSnapshot(kept.id) };
  }

  /**
   * One step of a rollback's rebuild, nothing else (a `file://` archive's
   * worker finishing a rebuild it found: worker.ts). Returns whether a
   * rebuild that can go on now remains.
   */
  stepRebuild(): boolean {
    const rb = this.nextRebuild();
    if (rb === undefined) return false;
    this.rebuildStep(rb);
    return this.nextRebuild() !== undefined;
  }

  /** Whether any rebuild is recorded (ready or waiting out a failure). */
  get rebuilding(): boolean {
    return this.db.prepare('SELECT 1 FROM rebuilds LIMIT 1').get() !== undefined;
  }

  /** Rebuild state of a volume (null: none going on). */
  rebuildOf(volume: string): { snapshot: string; phase: string; rowsCopied: number; blocksCopied: number; error: string | null } | null {
    const r = this.db.prepare('SELECT * FROM rebuilds WHERE volume = ?').get(checkVolume(volume)) as RebuildRow | undefined;
    return r === undefined ? null : { snapshot: r.snapshot, phase: r.phase, rowsCopied: r.rows_copied, blocksCopied: r.blocks_copied, error: r.error };
  }

  private refuseWhileRebuilding(volume: string, what: string): void {
    const snap = this.db.prepare('SELECT snapshot FROM rebuilds WHERE volume = ?').pluck().get(volume) as string | undefined;
    if (snap !== undefined) throw new ArchiveError('EUNAVAILABLE', `volume ${volume} is being rebuilt from snapshot ${snap}: ${what} once that is done; try again`);
  }

  private nextRebuild(): RebuildRow | undefined {
    if (this.rebuildRetryAt > 0 && this.now() < this.rebuildRetryAt) return undefined;
    return this.db.prepare('SELECT * FROM rebuilds ORDER BY started_ms, volume LIMIT 1').get() as RebuildRow | undefined;
  }

  /** A retired head (the rows a rollback replaced) that no copy reads any more. */
  private nextRetired(): number | undefined {
    return this.db.prepare(`SELECT v.vid FROM volumes v WHERE v.name >= '${HIDDEN_VOLUME_PREFIX}retired-' AND v.name < '${HIDDEN_VOLUME_PREFIX}retired.'
      AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.vid = v.vid AND s.state = 'copying') LIMIT 1`).pluck().get() as number | undefined;
  }

  /** Runs the volume's rebuild to its end (a `file://` rollback); a step that fails throws (the rebuild stays recorded and goes on at the next open). */
  private finishRebuild(volume: string): void {
    for (;;) {
      const r = this.db.prepare('SELECT * FROM rebuilds WHERE volume = ?').get(volume) as RebuildRow | undefined;
      if (r === undefined) return;
      this.rebuildPage(r);
    }
  }

  private rebuildStep(r: RebuildRow): void {
    try {
      this.rebuildPage(r);
      this.rebuildRetryAt = 0;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.rebuildRetryAt = this.now() + REBUILD_RETRY_MS;
      if (err instanceof TargetFailure) this.dropStore(r.target);
      try {
        this.db.prepare('UPDATE rebuilds SET error = ? WHERE volume = ?').run(message, r.volume);
      } catch { /* recorded next time */ }
      this.log.warn({ volume: r.volume, snapshot: r.snapshot, phase: r.phase, err: message }, `rebuild from a snapshot could not go on; trying again in ${REBUILD_RETRY_MS / 1000} s`);
    }
  }

  /**
   * One page of a rebuild: rows of the snapshot's volume on its target
   * (objects, entries, xattrs, file blocks with the blocks the data
   * directory lacks, counts), keyset by key, written into the hidden volume
   * in one short transaction together with the new cursor — so a crash
   * anywhere leaves a cursor that matches the rows, and the next step goes
   * on from it. The last step is the exchange.
   */
  private rebuildPage(r: RebuildRow): void {
    const s = this.store(r.target);
    const tvid = s.db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(r.snapshot) as number | undefined;
    if (tvid === undefined) throw new ArchiveError('ENOTARGET', `target ${r.target} no longer holds snapshot ${r.snapshot}`);
    const cur = r.cursor === null ? null : JSON.parse(r.cursor) as (string | number)[];
    const n = this.pageRows;
    const live = `seq_to = ${LIVE}`;
    /** Writes a page and moves the cursor, in one transaction; a page another engine wrote already (same phase and cursor moved) is skipped. */
    const commit = (got: number, last: (string | number)[] | null, done: boolean, next: RebuildPhase, write: () => number): void => {
      this.db.transaction(() => {
        const now = this.db.prepare('SELECT phase, cursor FROM rebuilds WHERE volume = ?').get(r.volume) as { phase: string; cursor: string | null } | undefined;
        if (now === undefined || now.phase !== r.phase || now.cursor !== r.cursor) return;
        const blocks = write();
        const finished = done || last === null;
        this.db.prepare('UPDATE rebuilds SET phase = ?, cursor = ?, rows_copied = rows_copied + ?, blocks_copied = blocks_copied + ?, error = NULL WHERE volume = ?')
          .run(finished ? next : r.phase, finished ? null : JSON.stringify(last), got, blocks, r.volume);
      }).immediate();
    };
    switch (r.phase) {
      case 'objects': {
        const rows = s.db.prepare(`SELECT id, ${OBJECT_COLS} FROM objects WHERE vid = ? AND ${live} ${cur ? 'AND id > ?' : ''} ORDER BY id LIMIT ?`)
          .all(tvid, ...(cur ?? []), n) as { [k: string]: string | number | null }[];
        commit(rows.length, rows.length > 0 ? [rows[rows.length - 1]!.id as string] : null, rows.length < n, 'entries', () => {
          const ins = this.db.prepare(`INSERT INTO objects (vid, id, seq_to, seq_from, ${OBJECT_COLS}) VALUES (?, ?, ${LIVE}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
          for (const o of rows) ins.run(r.new_vid, o.id, r.seq, o.mode, o.uid, o.gid, o.size, o.atime_s, o.atime_ns, o.mtime_s, o.mtime_ns, o.rdev, o.target, o.parent);
          return 0;
        });
        return;
      }
      case 'entries': {
        const rows = s.db.prepare(`SELECT parent, name, child FROM entries WHERE vid = ? AND ${live} ${cur ? 'AND (parent, name) > (?, ?)' : ''} ORDER BY parent, name LIMIT ?`)
          .all(tvid, ...(cur ?? []), n) as { parent: string; name: string; child: string }[];
        const last = rows[rows.length - 1];
        commit(rows.length, last ? [last.parent, last.name] : null, rows.length < n, 'xattrs', () => {
          const ins = this.db.prepare(`INSERT INTO entries (vid, parent, name, seq_to, seq_from, child) VALUES (?, ?, ?, ${LIVE}, ?, ?)`);
          for (const e of rows) ins.run(r.new_vid, e.parent, e.name, r.seq, e.child);
          return 0;
        });
        return;
      }
      case 'xattrs': {
        const rows = s.db.prepare(`SELECT id, name, value FROM xattrs WHERE vid = ? AND ${live} ${cur ? 'AND (id, name) > (?, ?)' : ''} ORDER BY id, name LIMIT ?`)
          .all(tvid, ...(cur ?? []), n) as { id: string; name: string; value: Buffer }[];
        const last = rows[rows.length - 1];
        commit(rows.length, last ? [last.id, last.name] : null, rows.length < n, 'blocks', () => {
          const ins = this.db.prepare(`INSERT INTO xattrs (vid, id, name, seq_to, seq_from, value) VALUES (?, ?, ?, ${LIVE}, ?, ?)`);
          for (const x of rows) ins.run(r.new_vid, x.id, x.name, r.seq, x.value);
          return 0;
        });
        return;
      }
      case 'blocks': {
        const rows = s.db.prepare(`SELECT fb.id, fb.idx, fb.digest, fb.length, b.pack, b.offset, b.length AS blen
          FROM file_blocks fb LEFT JOIN blocks b ON b.digest = fb.digest
          WHERE fb.vid = ? AND fb.${live} ${cur ? 'AND (fb.id, fb.idx) > (?, ?)' : ''} ORDER BY fb.id, fb.idx LIMIT ?`)
          .all(tvid, ...(cur ?? []), n) as { id: string; idx: number; digest: Buffer; length: number; pack: number | null; offset: number | null; blen: number | null }[];
        // Blocks the data directory lacks (collected, or a new data directory) come back from the target, verified,
        // inside the write transaction (a collection cannot drop a block between the check and the rows that use it).
        this.db.transaction(() => {
          const now = this.db.prepare('SELECT phase, cursor FROM rebuilds WHERE volume = ?').get(r.volume) as { phase: string; cursor: string | null } | undefined;
          if (now === undefined || now.phase !== r.phase || now.cursor !== r.cursor) return;
          const has = this.db.prepare('SELECT 1 FROM blocks WHERE digest = ?').pluck();
          const fresh = new Map<string, Buffer>();
          let taken = 0;
          let bytes = 0;
          for (const b of rows) {
            const key = b.digest.toString('hex');
            if (!fresh.has(key) && has.get(b.digest) === undefined) {
              if (b.pack === null || b.offset === null || b.blen === null) {
                throw new ArchiveError('ECORRUPT', `snapshot ${r.snapshot} on target ${r.target}: object ${b.id} block ${b.idx} has no stored block (digest ${key})`);
              }
              let data: Buffer;
              try {
                data = s.packs.read({ pack: b.pack, offset: b.offset, length: b.blen }, b.digest, `snapshot ${r.snapshot} object ${b.id} block ${b.idx}`);
              } catch (err) {
                throw new TargetFailure(r.target, err);
              }
              fresh.set(key, data);
              bytes += data.length;
            }
            taken++;
            if (bytes >= this.pageBytes) break;
          }
          const page = rows.slice(0, taken);
          if (fresh.size > 0) {
            this.packs.begin(Number(this.db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get()));
            try {
              const insBlock = this.db.prepare('INSERT OR IGNORE INTO blocks (digest, pack, offset, length) VALUES (?, ?, ?, ?)');
              for (const [key, data] of fresh) {
                const digest = Buffer.from(key, 'hex');
                const loc = this.packs.append(digest, data);
                insBlock.run(digest, loc.pack, loc.offset, loc.length);
              }
              const cp = this.packs.currentPack;
              if (cp !== null) this.db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(cp));
              this.packs.sync(); // the bytes are durable before the rows that point at them
            } finally {
              this.packs.abort();
            }
          }
          const ins = this.db.prepare(`INSERT INTO file_blocks (vid, id, idx, seq_to, seq_from, digest, length) VALUES (?, ?, ?, ${LIVE}, ?, ?, ?)`);
          for (const b of page) ins.run(r.new_vid, b.id, b.idx, r.seq, b.digest, b.length);
          const last = page[page.length - 1];
          const finished = (taken === rows.length && rows.length < n) || last === undefined;
          this.db.prepare('UPDATE rebuilds SET phase = ?, cursor = ?, rows_copied = rows_copied + ?, blocks_copied = blocks_copied + ?, error = NULL WHERE volume = ?')
            .run(finished ? 'counts' : r.phase, finished ? null : JSON.stringify([last.id, last.idx]), page.length, fresh.size, r.volume);
        }).immediate();
        return;
      }
      case 'counts': {
        const rows = s.db.prepare(`SELECT id, nlink, sub_entries, sub_bytes FROM counts WHERE vid = ? ${cur ? 'AND id > ?' : ''} ORDER BY id LIMIT ?`)
          .all(tvid, ...(cur ?? []), n) as { id: string; nlink: number; sub_entries: number; sub_bytes: number }[];
        commit(rows.length, rows.length > 0 ? [rows[rows.length - 1]!.id] : null, rows.length < n, 'exchange', () => {
          const ins = this.db.prepare('INSERT INTO counts (vid, id, nlink, sub_entries, sub_bytes) VALUES (?, ?, ?, ?, ?)');
          for (const c of rows) ins.run(r.new_vid, c.id, c.nlink, c.sub_entries, c.sub_bytes);
          return 0;
        });
        return;
      }
      case 'exchange': {
        const done = this.db.transaction(() => {
          const now = this.db.prepare('SELECT phase FROM rebuilds WHERE volume = ?').pluck().get(r.volume);
          if (now !== 'exchange') return false;
          const v = this.db.prepare('SELECT vid, epoch, applied_seq, created_ms FROM volumes WHERE name = ?').get(r.volume) as { vid: number; epoch: number; applied_seq: number; created_ms: number } | undefined;
          if (v === undefined || v.vid !== r.old_vid) throw new ArchiveError('EARCHIVE', `volume ${r.volume} is not vid ${r.old_vid} any more: the rebuild cannot be exchanged`);
          // The old head keeps its rows under a hidden name until no copy reads them; the new head takes the name,
          // the epoch (a fence during the rebuild counts) and the record (no record was taken meanwhile).
          this.db.prepare('UPDATE volumes SET name = ? WHERE vid = ?').run(`${HIDDEN_VOLUME_PREFIX}retired-${v.vid}`, v.vid);
          this.db.prepare('UPDATE volumes SET name = ?, epoch = ?, applied_seq = ?, snapshot_floor = ?, created_ms = ? WHERE vid = ?')
            .run(r.volume, v.epoch, v.applied_seq, NO_SNAPSHOT, v.created_ms, r.new_vid);
          this.db.prepare('DELETE FROM rebuilds WHERE volume = ?').run(r.volume);
          return true;
        }).immediate();
        if (done) {
          this.log.info({ volume: r.volume, snapshot: r.snapshot, rows: r.rows_copied, blocksCopiedBack: r.blocks_copied, ms: this.now() - r.started_ms },
            'volume rebuilt from a snapshot: its head is the snapshot\'s tree, and takes records again');
        }
        return;
      }
    }
  }

  /** Drops a page of a retired head's rows (a rollback replaced it and no copy reads it); the last step drops its volume row. */
  private retireStep(vid: number): void {
    const keys: { [t: string]: string } = { objects: 'id, seq_to', entries: 'parent, name, seq_to', xattrs: 'id, name, seq_to', file_blocks: 'id, idx, seq_to', counts: 'id' };
    const page = this.pageRows * 5;
    this.db.transaction(() => {
      let left = page;
      for (const [t, k] of Object.entries(keys)) {
        if (left <= 0) return;
        left -= this.db.prepare(`DELETE FROM ${t} WHERE vid = ? AND (${k}) IN (SELECT ${k} FROM ${t} WHERE vid = ? LIMIT ?)`).run(vid, vid, left).changes;
      }
      if (left > 0) {
        this.db.prepare('DELETE FROM volumes WHERE vid = ?').run(vid);
        this.log.info({ vid }, 'a rolled-back head\'s rows are dropped (its snapshot keeps it)');
      }
    }).immediate();
  }

  // ---- garbage collection ----------------------------------------------------

  /**
   * Reclaims blocks nothing references: on the data directory (no versioned
   * row of any volume, live or pinned) and on every readable target (no
   * snapshot's row). Unreferenced block rows go in one write transaction (so
   * no batch or copy can start using a block between the check and the
   * removal: they store a block anew when its row is gone); packs that are
   * mostly garbage are rewritten, their live blocks appended to the current
   * pack under the write lock, the old file unlinked (on the data directory
   * only after packGraceMs, for readers in other processes).
   */
  gc(): GcResult {
    const out: GcResult = { stores: [] };
    const pruned = this.db.transaction(() => {
      let n = 0;
      for (const vid of this.db.prepare('SELECT vid FROM volumes').pluck().all() as number[]) n += this.repin(vid);
      return n;
    }).immediate();
    out.stores.push({ store: 'data', ...collect(this.db, this.packs, this.packGraceMs, this.now()), rowsPruned: pruned });
    for (const t of this.targetSpecs()) {
      try {
        out.stores.push(this.gcTarget(t.name));
      } catch (err) {
        this.log.warn({ target: t.name, err: (err as Error).message }, 'garbage collection skipped a target');
      }
    }
    this.log.info({ stores: out.stores }, 'garbage collected');
    return out;
  }

  private gcTarget(name: string): GcResult['stores'][number] {
    // A rebuild reads this target (rows and packs, the archive worker too): no collection, no pack rewritten under it.
    if (this.db.prepare('SELECT 1 FROM rebuilds WHERE target = ?').get(name) !== undefined) {
      return { store: name, blocksDropped: 0, bytesReclaimed: 0, packsRewritten: 0, rowsPruned: 0 };
    }
    if (this.busy) {
      // A copy to this target in progress writes rows for blocks it has appended: its blocks are referenced only once the page commits,
      // which happens in the same transaction. Still, keep it simple: no target collection while any copy runs.
      for (const j of this.jobs.values()) if ((this.db.prepare('SELECT target FROM snapshots WHERE id = ?').pluck().get(j.id) as string | null) === name) {
        return { store: name, blocksDropped: 0, bytesReclaimed: 0, packsRewritten: 0, rowsPruned: 0 };
      }
    }
    const s = this.store(name);
    // Orphans: snapshot volumes on the target that the catalog does not list as complete or copying (a crash, a failed cleanup).
    const live = new Set(this.db.prepare(`SELECT id FROM snapshots WHERE target = ? AND state IN ('complete', 'copying', 'lost')`).pluck().all(name) as string[]);
    let rowsPruned = 0;
    s.db.transaction(() => {
      for (const id of s.db.prepare('SELECT name FROM volumes').pluck().all() as string[]) {
        if (!live.has(id)) {
          this.dropOnTarget(s, id);
          rowsPruned++;
        }
      }
    }).immediate();
    return { store: name, ...collect(s.db, s.packs, 0, this.now()), rowsPruned };
  }
}

/** nlink and subtree totals of one volume of a database, from its entries (a snapshot copy's last step). Memory: one record per directory. */
export function computeCounts(db: Database.Database, vid: number): void {
  db.transaction(() => {
    db.prepare('DELETE FROM counts WHERE vid = ?').run(vid);
    db.prepare(`INSERT INTO counts (vid, id, nlink, sub_entries, sub_bytes)
      SELECT ?, o.id,
        CASE WHEN (o.mode & 61440) = 16384
          THEN 2 + (SELECT COUNT(*) FROM entries e JOIN objects c ON c.vid = e.vid AND c.id = e.child AND c.seq_to = ${LIVE}
                    WHERE e.vid = o.vid AND e.parent = o.id AND e.seq_to = ${LIVE} AND (c.mode & 61440) = 16384)
          ELSE (SELECT COUNT(*) FROM entries e WHERE e.vid = o.vid AND e.child = o.id AND e.seq_to = ${LIVE}) END,
        0, 0
      FROM objects o WHERE o.vid = ? AND o.seq_to = ${LIVE}`).run(vid, vid);
    // Direct totals per directory, then added up each directory's ancestor chain, deepest first.
    const dirs = new Map<string, { parent: string | null; entries: number; bytes: number }>();
    for (const d of db.prepare(`SELECT id, parent FROM objects WHERE vid = ? AND seq_to = ${LIVE} AND (mode & 61440) = 16384`).iterate(vid) as Iterable<{ id: string; parent: string | null }>) {
      dirs.set(d.id, { parent: d.parent, entries: 0, bytes: 0 });
    }
    for (const r of db.prepare(`SELECT e.parent, COUNT(*) AS n, SUM(CASE WHEN (o.mode & 61440) = 32768 THEN o.size ELSE 0 END) AS bytes
      FROM entries e JOIN objects o ON o.vid = e.vid AND o.id = e.child AND o.seq_to = ${LIVE}
      WHERE e.vid = ? AND e.seq_to = ${LIVE} GROUP BY e.parent`).iterate(vid) as Iterable<{ parent: string; n: number; bytes: number | null }>) {
      const d = dirs.get(r.parent);
      if (d) { d.entries = r.n; d.bytes = r.bytes ?? 0; }
    }
    const depth = new Map<string, number>();
    const depthOf = (id: string): number => {
      const chain: string[] = [];
      let cur: string | null = id;
      let base = 0;
      while (cur !== null) {
        const known = depth.get(cur);
        if (known !== undefined) { base = known; break; }
        chain.push(cur);
        const p: string | null = dirs.get(cur)?.parent ?? null;
        if (chain.length > 1_000_000) throw new Error('directory cycle');
        cur = p;
        if (cur === null) base = -1;
      }
      for (let i = chain.length - 1; i >= 0; i--) depth.set(chain[i]!, ++base);
      return depth.get(id)!;
    };
    const order = [...dirs.keys()].sort((a, b) => depthOf(b) - depthOf(a));
    const sub = new Map<string, { entries: number; bytes: number }>();
    for (const id of order) {
      const d = dirs.get(id)!;
      const own = sub.get(id) ?? { entries: 0, bytes: 0 };
      own.entries += d.entries;
      own.bytes += d.bytes;
      sub.set(id, own);
      if (d.parent !== null && dirs.has(d.parent)) {
        const p = sub.get(d.parent) ?? { entries: 0, bytes: 0 };
        p.entries += own.entries;
        p.bytes += own.bytes;
        sub.set(d.parent, p);
      }
    }
    const upd = db.prepare('UPDATE counts SET sub_entries = ?, sub_bytes = ? WHERE vid = ? AND id = ?');
    for (const [id, t] of sub) upd.run(t.entries, t.bytes, vid, id);
  }).immediate();
}

/** Drops unreferenced blocks and rewrites packs that are mostly garbage. */
function collect(db: Database.Database, packs: Packs, graceMs: number, nowMs: number): { blocksDropped: number; bytesReclaimed: number; packsRewritten: number } {
  const dir = packs.dir;
  let blocksDropped = 0;
  db.transaction(() => {
    db.exec('CREATE TEMP TABLE IF NOT EXISTS gc_live (digest BLOB PRIMARY KEY) WITHOUT ROWID; DELETE FROM temp.gc_live;');
    db.exec('INSERT OR IGNORE INTO temp.gc_live SELECT digest FROM file_blocks');
    blocksDropped = db.prepare('DELETE FROM blocks WHERE digest NOT IN (SELECT digest FROM temp.gc_live)').run().changes;
    db.exec('DELETE FROM temp.gc_live');
  }).immediate();
  // Packs whose live bytes are under 3/4 of their size are rewritten: their live blocks are appended to the
  // current pack (the current pack's own to a new one, which becomes current), all under the write lock.
  let bytesReclaimed = 0;
  let packsRewritten = 0;
  const current = (): number => Number(db.prepare(`SELECT value FROM meta WHERE key = 'current_pack'`).pluck().get());
  const retired = new Set((JSON.parse((db.prepare(`SELECT value FROM meta WHERE key = 'gc_dead_packs'`).pluck().get() as string | undefined) ?? '[]') as { pack: number }[]).map((d) => d.pack));
  const local = fs.readdirSync(dir).filter((n) => /^\d{6}\.pack$/.test(n)).map((n) => Number(n.slice(0, 6)));
  const files = [...new Set([...local, ...(packs.sealed?.list().keys() ?? [])])].sort((a, b) => a - b);
  for (const pack of files) {
    if (retired.has(pack)) continue;
    const rewritten = db.transaction(() => {
      const cur = current();
      if (pack > cur) return false; // a pack a concurrent writer is starting
      const size = packs.size(pack) ?? 0;
      const live = db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(length), 0) AS bytes FROM blocks WHERE pack = ?').get(pack) as { n: number; bytes: number };
      const liveBytes = live.bytes + live.n * BLOCK_HEADER_BYTES;
      if (size === 0 || liveBytes > size * 0.75) return false;
      const dest = pack === cur ? cur + 1 : cur;
      const rows = db.prepare('SELECT digest, offset, length FROM blocks WHERE pack = ? ORDER BY offset').all(pack) as { digest: Buffer; offset: number; length: number }[];
      let newCurrent = dest;
      if (rows.length > 0) {
        packs.begin(dest);
        try {
          const upd = db.prepare('UPDATE blocks SET pack = ?, offset = ? WHERE digest = ?');
          for (const b of rows) {
            const data = packs.read({ pack, offset: b.offset, length: b.length }, b.digest, `pack ${packName(pack)} block ${b.digest.toString('hex').slice(0, 16)}`);
            const loc = packs.append(b.digest, data);
            upd.run(loc.pack, loc.offset, b.digest);
          }
          newCurrent = Math.max(dest, packs.currentPack ?? dest);
          packs.sync();
        } finally {
          packs.abort();
        }
      }
      if (newCurrent !== cur) db.prepare(`UPDATE meta SET value = ? WHERE key = 'current_pack'`).run(String(newCurrent));
      bytesReclaimed += size - liveBytes;
      return true;
    }).immediate();
    if (!rewritten) continue;
    packsRewritten++;
    retirePack(db, packs, pack, graceMs, nowMs);
  }
  // Packs retired by an earlier run whose grace is over.
  const dead = JSON.parse((db.prepare(`SELECT value FROM meta WHERE key = 'gc_dead_packs'`).pluck().get() as string | undefined) ?? '[]') as { pack: number; at: number }[];
  const keep = dead.filter((d) => {
    if (nowMs - d.at < graceMs) return true;
    // In object storage the last uploaded metadata may still point into the pack: it goes once a newer one is up (object-sync.ts).
    if (packs.sealed !== undefined && !(d.at < Number(db.prepare(`SELECT value FROM meta WHERE key = 'objects_metadata_ms'`).pluck().get() ?? 0))) return true;
    const still = db.prepare('SELECT 1 FROM blocks WHERE pack = ? LIMIT 1').get(d.pack) !== undefined;
    if (!still) packs.remove(d.pack);
    return false;
  });
  if (keep.length !== dead.length) db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('gc_dead_packs', ?)`).run(JSON.stringify(keep));
  if (packsRewritten > 0) fsyncDir(dir);
  return { blocksDropped, bytesReclaimed, packsRewritten };
}

function retirePack(db: Database.Database, packs: Packs, pack: number, graceMs: number, nowMs: number): void {
  if (graceMs <= 0 && packs.sealed === undefined) {
    packs.remove(pack);
    return;
  }
  const dead = JSON.parse((db.prepare(`SELECT value FROM meta WHERE key = 'gc_dead_packs'`).pluck().get() as string | undefined) ?? '[]') as { pack: number; at: number }[];
  if (!dead.some((d) => d.pack === pack)) dead.push({ pack, at: nowMs });
  db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('gc_dead_packs', ?)`).run(JSON.stringify(dead));
}
