// Fault injection for the kill -9 tests (test/fault/recover-faults): with
// STRATA_CRASH_AT=<point>[:<n>] in its environment, the process kills itself
// with SIGKILL the n-th time (default 1st) it reaches <point>. The variable is
// read once at load; without it a crash point costs one comparison.
import { crashAt } from '../store/crash-at.js';

export type CrashPoint =
  /** An object of a directory image is built under its temporary name, not renamed into place yet. */
  | 'materialise-object'
  /** A directory's entries are materialised; its pending mark is not cleared yet. */
  | 'materialise-dir'
  /** Fetched bytes are written and durable; the block map does not say so yet. */
  | 'fetch-written'
  /** The times of a file are recorded; fetched bytes are about to be written into it. */
  | 'fetch-times-recorded'
  /** A file's times are put back after fetched bytes; its times record is still there. */
  | 'fetch-times-restored'
  /** The background restore made one more file local. */
  | 'background-file'
  // Every place of src/restore that writes a block map, a link-registry name,
  // or a file's or directory's times (test/fault/recover-times.test.ts):
  /** A stub's empty block map is written; the object (under its temporary name) has no id, owner, mode or times yet. */
  | 'map-created'
  /** A lost map of a stub already in place was written again. */
  | 'map-recreated'
  /** The first name of a hard-linked object got its link-registry name; its temporary name is not renamed into place yet. */
  | 'registry-created'
  /** One more name of a hard-linked object was linked from its registry name; its count of names still in the archive is not lowered yet. */
  | 'registry-linked'
  /** The restore is complete: a hard-linked object's registry name was removed (dropLinkRegistry); restore.json does not say complete yet. */
  | 'registry-dropped'
  /** An object's (or a top-tier directory's) xattrs, owner and mode are set; its times not yet (applyAttrs). */
  | 'attrs-before-times'
  /** Entries were created in a pending directory (its mtime moved); its times are not put back yet. */
  | 'dir-before-times'
  /** Fetched bytes are written to a file (its mtime moved, its times record written); its times are not put back yet. */
  | 'fetch-before-times'
  /** A program's write to a file with a block map is done; the map does not say its blocks are local yet. */
  | 'write-before-map'
  /** Blocks that are holes on the archive are known; the map does not say they are local yet. */
  | 'holes-before-map'
  /** The background restore's bytes of a file are written and durable; its map does not say so yet. */
  | 'background-before-map'
  /** A file's map was removed for a truncation to size 0 (discard). */
  | 'discard-map'
  /** The background restore removed the leftover maps and registry names; restore.json does not say complete yet. */
  | 'finish-before-state';

/** Every crash point, for tests that go through them all. */
export const CRASH_POINTS: readonly CrashPoint[] = [
  'materialise-object', 'materialise-dir', 'fetch-written', 'fetch-times-recorded', 'fetch-times-restored', 'background-file',
  'map-created', 'map-recreated', 'registry-created', 'registry-linked', 'registry-dropped', 'attrs-before-times',
  'dir-before-times', 'fetch-before-times', 'write-before-map', 'holes-before-map', 'background-before-map',
  'discard-map', 'finish-before-state',
];

export function crashPoint(point: CrashPoint): void {
  crashAt(point);
}
