// Storage targets: named directories, each meant to be a separate disk, that
// hold snapshots (docs/snapshots.md). A target directory is itself an archive
// directory (archive.db + packs/, the on-disk format of docs/archive-format.md)
// in which every snapshot is one volume named by the snapshot's id, plus
//
//   DIR/strata-target.json   {"format":1,"name":"A","archive":"<archive id>","createdAt":...}
//
// The marker ties the directory to one target of one archive: a disk that is
// not mounted (an empty mountpoint), or another archive's target, is never
// mistaken for this one, and never written to.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import { ArchiveError } from '../protocol/archive-api.js';
import type { TargetInfo } from '../protocol/snapshot-api.js';
import { FileData } from './file-data.js';
import { Packs, fsyncDir } from './packs.js';
import { openDatabase } from './schema.js';

export const TARGET_MARKER = 'strata-target.json';
/** A target with less free space than this takes no new snapshot. */
export const MIN_FREE_BYTES = 1024 * 1024;

export interface TargetSpec {
  name: string;
  path: string;
}

const TARGET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** "NAME=DIR" of `--target`. */
export function parseTargetSpec(v: string): TargetSpec {
  const i = v.indexOf('=');
  const name = i === -1 ? '' : v.slice(0, i);
  const path = i === -1 ? '' : v.slice(i + 1);
  if (!TARGET_NAME_RE.test(name) || name === 'data' || path === '') {
    throw new Error(`--target ${JSON.stringify(v)}: expected NAME=DIR, NAME 1-32 of A-Z a-z 0-9 . _ - (not "data")`);
  }
  return { name, path: resolve(path) };
}

interface Marker {
  format: 1;
  name: string;
  archive: string;
  createdAt: string;
}

export function readMarker(dir: string): Marker | null {
  try {
    const m = JSON.parse(fs.readFileSync(join(dir, TARGET_MARKER), 'utf8')) as Partial<Marker>;
    if (m.format !== 1 || typeof m.name !== 'string' || typeof m.archive !== 'string') return null;
    return m as Marker;
  } catch {
    return null;
  }
}

/**
 * Makes `dir` target `name` of archive `archiveId`: creates the directory if
 * needed and writes the marker. Refuses a directory that holds anything else
 * (another archive's data, someone's files).
 */
export function initialiseTarget(spec: TargetSpec, archiveId: string): void {
  fs.mkdirSync(spec.path, { recursive: true, mode: 0o700 });
  const m = readMarker(spec.path);
  if (m !== null) {
    if (m.archive !== archiveId) throw new Error(`target ${spec.name}: ${spec.path} is a target of another archive (${m.archive})`);
    if (m.name !== spec.name) throw new Error(`target ${spec.name}: ${spec.path} is this archive's target ${m.name}`);
    return;
  }
  const names = fs.readdirSync(spec.path).filter((n) => n !== 'lost+found');
  if (names.length > 0) throw new Error(`target ${spec.name}: ${spec.path} is not empty and has no ${TARGET_MARKER} (holds ${names.slice(0, 3).join(', ')})`);
  const marker: Marker = { format: 1, name: spec.name, archive: archiveId, createdAt: new Date().toISOString() };
  const tmp = join(spec.path, `.${TARGET_MARKER}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(marker)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, join(spec.path, TARGET_MARKER));
  fsyncDir(spec.path);
}

export function deviceOf(path: string): string | null {
  try {
    const dev = fs.statSync(path, { bigint: true }).dev;
    // glibc's gnu_dev_major / gnu_dev_minor
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    return `${major}:${minor}`;
  } catch {
    return null;
  }
}

/** What a look at the target's directory says now (no cache: a disk can go at any time). */
export function probeTarget(spec: TargetSpec, archiveId: string): Omit<TargetInfo, 'sharesDeviceWith' | 'snapshots'> {
  const info: Omit<TargetInfo, 'sharesDeviceWith' | 'snapshots'> = {
    name: spec.name, path: spec.path, device: null, freeBytes: null, totalBytes: null, readable: false, writable: false, healthy: false, problem: null,
  };
  try {
    const st = fs.statSync(spec.path);
    if (!st.isDirectory()) { info.problem = `${spec.path} is not a directory`; return info; }
  } catch (err) {
    info.problem = `${spec.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    return info;
  }
  info.device = deviceOf(spec.path);
  const m = readMarker(spec.path);
  if (m === null) { info.problem = `${spec.path} has no ${TARGET_MARKER} (disk not mounted, or replaced?)`; return info; }
  if (m.archive !== archiveId || m.name !== spec.name) { info.problem = `${spec.path} is target ${m.name} of archive ${m.archive}, not ${spec.name} of this one`; return info; }
  try {
    fs.accessSync(join(spec.path, 'archive.db'), fs.constants.R_OK);
    info.readable = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') info.readable = true; // no snapshot written yet
    else { info.problem = `${spec.path}/archive.db: ${(err as NodeJS.ErrnoException).code}`; return info; }
  }
  try {
    const s = fs.statfsSync(spec.path);
    info.freeBytes = s.bavail * s.bsize;
    info.totalBytes = s.blocks * s.bsize;
  } catch (err) {
    info.problem = `statfs ${spec.path}: ${(err as NodeJS.ErrnoException).code}`;
    return info;
  }
  // A test write: a disk that turned read-only or fails writes takes no new snapshot.
  const probe = join(spec.path, `.probe-${randomBytes(4).toString('hex')}`);
  try {
    const fd = fs.openSync(probe, 'w', 0o600);
    try {
      fs.writeSync(fd, 'probe');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(probe, { force: true });
    }
  } catch (err) {
    info.problem = `test write to ${spec.path} failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    return info;
  }
  if ((info.freeBytes ?? 0) < MIN_FREE_BYTES) {
    info.problem = `${spec.path} has only ${info.freeBytes} bytes free`;
    return info;
  }
  info.writable = true;
  info.healthy = true;
  return info;
}

/**
 * One target's archive directory, opened: its database (the standard tables,
 * each snapshot a volume; plus snapshot_info, the catalog rows of the
 * snapshots it holds, so the target describes itself) and its packs.
 */
export class TargetStore {
  readonly db: Database.Database;
  readonly packs: Packs;
  readonly data: FileData;

  constructor(readonly name: string, readonly dir: string) {
    fs.mkdirSync(join(dir, 'packs'), { recursive: true });
    this.db = openDatabase(join(dir, 'archive.db'));
    try {
      this.db.exec(`CREATE TABLE IF NOT EXISTS snapshot_info (
        id TEXT PRIMARY KEY, volume TEXT NOT NULL, record INTEGER NOT NULL, created_ms INTEGER NOT NULL,
        trigger TEXT NOT NULL, condition TEXT, reason TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
        state TEXT NOT NULL, completed_ms INTEGER)`);
      this.packs = new Packs(join(dir, 'packs'));
      this.data = new FileData(this.db, this.packs);
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  close(): void {
    try {
      this.packs.close();
    } finally {
      this.db.close();
    }
  }
}

/** An error on a target's disk (as opposed to the archive's own data): the copy moves on to another target. */
export class TargetFailure extends Error {
  constructor(readonly target: string, cause: unknown) {
    const e = cause as { code?: unknown; message?: unknown };
    super(`target ${target}: ${typeof e.code === 'string' && !String(e.message).includes(e.code) ? `${e.code}: ` : ''}${String(e.message ?? cause)}`);
    this.name = 'TargetFailure';
  }
}

export function noTarget(message: string): ArchiveError {
  return new ArchiveError('ENOTARGET', message);
}
