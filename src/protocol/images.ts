// What an archive serves about a volume's tree: directory images (one
// directory's entries with full attributes), block digests of a file, and the
// state of a volume. Shared by the archive (store, server) and its clients.
import type { Attrs, ObjectId } from './records.js';

/** Entries and bytes in a directory's whole subtree (the directory itself excluded). */
export interface SubtreeTotals {
  entries: number;
  bytes: number;
}

/** One entry of a directory image. */
export interface EntryImage {
  name: string;
  id: ObjectId;
  attrs: Attrs;
  /** Number of names the object has (directories: 2 + subdirectories). */
  nlink: number;
  /** Symlink target. */
  target?: string;
  /** Extended attributes, values base64-encoded. */
  xattrs: { [name: string]: string };
  /** Subtree totals, for directories. */
  totals?: SubtreeTotals;
}

/** One directory's image. */
export interface DirImage {
  id: ObjectId;
  /** Depth below the root (root = 0), when served as part of a tier stream. */
  tier?: number;
  attrs: Attrs;
  nlink: number;
  xattrs: { [name: string]: string };
  totals: SubtreeTotals;
  entries: EntryImage[];
}

/** The data blocks of a file: absent indices are holes (read as zeros). */
export interface FileBlocks {
  id: ObjectId;
  size: number;
  blockSize: number;
  blocks: { index: number; digest: string; length: number }[];
}

export interface VolumeState {
  name: string;
  /** Bumped by a fence; a primary shipping with an older epoch is refused. */
  epoch: number;
  /** Highest sequence number applied (0 before any record). */
  appliedSeq: number;
  /** Root subtree totals. */
  totals: SubtreeTotals;
}

/** A volume name: 1–64 of [A-Za-z0-9._-], not starting with '.'. */
export function badVolumeNameReason(name: unknown): string | null {
  if (typeof name !== 'string') return 'volume name is not a string';
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)) return `bad volume name ${JSON.stringify(name).slice(0, 80)} (1-64 of A-Z a-z 0-9 . _ -, not starting with ".")`;
  return null;
}
