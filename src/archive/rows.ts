// Row shapes of the archive database and their conversions to the protocol's
// types. Shared by the record applier and the image readers.
import type { Attrs } from '../protocol/records.js';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;

/** The current row of an object (objects table). */
export interface ObjectRow {
  id: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime_s: number;
  atime_ns: number;
  mtime_s: number;
  mtime_ns: number;
  rdev: number;
  target: string | null;
  /** Directories: the directory holding their one entry (null for the root and non-directories). */
  parent: string | null;
}

/** Derived counts of an object (counts table, current state only). */
export interface CountsRow {
  nlink: number;
  sub_entries: number;
  sub_bytes: number;
}

export const OBJECT_VALUE_COLS = ['mode', 'uid', 'gid', 'size', 'atime_s', 'atime_ns', 'mtime_s', 'mtime_ns', 'rdev', 'target', 'parent'] as const;

export function objectValues(o: ObjectRow): (number | string | null)[] {
  return [o.mode, o.uid, o.gid, o.size, o.atime_s, o.atime_ns, o.mtime_s, o.mtime_ns, o.rdev, o.target, o.parent];
}

export const isDirMode = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isRegMode = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;

export function attrsOf(o: ObjectRow): Attrs {
  return { mode: o.mode, uid: o.uid, gid: o.gid, size: o.size, atime: [o.atime_s, o.atime_ns], mtime: [o.mtime_s, o.mtime_ns], rdev: o.rdev };
}

/** `o` with `a`'s attributes (target and parent kept). */
export function withAttrs(o: ObjectRow, a: Attrs): ObjectRow {
  return { ...o, mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, atime_s: a.atime[0], atime_ns: a.atime[1], mtime_s: a.mtime[0], mtime_ns: a.mtime[1], rdev: a.rdev };
}
