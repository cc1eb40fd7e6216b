// Fault injection for the kill -9 tests (test/fault/recover-faults): with
// STRATA_CRASH_AT=<point>[:<n>] in its environment, the process kills itself
// with SIGKILL the n-th time (default 1st) it reaches <point>. The variable is
// read once at load; without it a crash point costs one comparison.
const spec = process.env.STRATA_CRASH_AT ?? '';
const [target, nth] = spec.split(':');
const limit = Math.max(1, Number(nth ?? '1') || 1);
let reached = 0;

export type CrashPoint =
  /** An object of a directory image is built under its temporary name, not renamed into place yet. */
  | 'materialise-object'
  /** A directory's entries are materialised; its pending mark is not cleared yet. */
  | 'materialise-dir'
  /** Fetched bytes are written and durable; the block map does not say so yet. */
  | 'fetch-written'
  /** The times of a file are recorded; fetched bytes are about to be written into it. */
  | 'fetch-times-recorded'
  /** Fetched bytes are written into a file (its mtime moved); its times are not put back yet. */
  | 'fetch-bytes-written'
  /** A file's times are put back after fetched bytes; its times record is still there. */
  | 'fetch-times-restored'
  /** The background restore made one more file local. */
  | 'background-file';

export function crashPoint(point: CrashPoint): void {
  if (target !== point) return;
  if (++reached >= limit) process.kill(process.pid, 'SIGKILL');
}
