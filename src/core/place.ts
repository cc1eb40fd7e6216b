// Where a name is, as the core's namespace operations reach it: a directory
// through a descriptor of it (the node's, as libfuse's passthrough_hp works
// relative to its nodes' descriptors) and a name in it. The store-relative
// path comes along only to say which object it is (to the checkpoint guard,
// which keeps copies by path, in logs and errors, and to tell the root): the
// object is never reached through it.
import type { ObjectAt } from '../ports/restore-hooks.js';
import type { StoreDir } from '../store/store-dir.js';

export interface Place {
  /** The local-object layer over a descriptor of the directory (O_PATH will do); the caller's, open until the operation settles. */
  readonly dir: StoreDir;
  /** The name in it (never '', '.', '..', or containing '/', but for the root's own place: '.'). */
  readonly name: string;
  /** The name's store-relative path ('a/b'; '.' the root). */
  readonly rel: string;
}

/** Store-relative path of the directory holding `rel` ('.' for a top-level name and for the root). */
export function parentRelOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '.' : rel.slice(0, i);
}

/** The directory `p` is in, as an ObjectAt (how the restore and the core's by-name ops take it). */
export function placeDir(p: Place): ObjectAt {
  return { at: p.dir.fd, path: '.', rel: parentRelOf(p.rel) };
}

/** The object named at `p`, as an ObjectAt. */
export function placeEntry(p: Place): ObjectAt {
  return { at: p.dir.fd, path: p.name, rel: p.rel };
}
