// The swap's hold on requests (src/swap/controller.ts drives it through the
// adapter): which requests wait, which go on, which are answered EBUSY, and
// the figures of the wait. Kept out of adapter.ts; the adapter asks decide()
// for every request while a hold is on.
import { ll } from './bridge.js';
import type { NamespaceMode } from './namespace-lock.js';

const OP = ll.ops;

/**
 * Reads of open handles and releasedir go on during a hold: they use a
 * descriptor only, never a name, the store root or the journal, so a file
 * opened before the swap is read without waiting.
 */
const PASS_OPS: ReadonlySet<number> = new Set([OP.read, OP.releasedir]);
/** With --busy ebusy everything else is answered EBUSY, except what closes or syncs a handle. */
const WAIT_ALWAYS: ReadonlySet<number> = new Set([OP.release, OP.flush, OP.fsync]);
/**
 * Requests that change nothing in the store or the journal (a mirrored swap
 * lets them go on while the new store is re-converged with the archive; open
 * only without write access or O_TRUNC).
 */
const READ_OPS: ReadonlySet<number> = new Set([
  OP.lookup, OP.getattr, OP.readlink, OP.open, OP.read, OP.flush, OP.release, OP.opendir, OP.readdir, OP.releasedir,
  OP.statfs, OP.access, OP.getxattr, OP.listxattr,
]);
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

/** What a hold needs of a request: its op, and for open its flags (`mode`). */
export interface HeldRequest {
  op: number;
  mode: number;
}

/** Requests that use a handle's descriptor only: they never take the namespace lock (namespace-lock.ts). */
const HANDLE_OPS: ReadonlySet<number> = new Set([OP.read, OP.write, OP.flush, OP.release, OP.fsync, OP.fallocate, OP.releasedir, OP.fsyncdir]);

/** How a request holds the namespace lock: a rename alone, requests that name objects shared, handle-only ones not at all. */
export function namespaceModeOf(op: number): NamespaceMode {
  if (op === OP.rename) return 'exclusive';
  return HANDLE_OPS.has(op) ? 'none' : 'shared';
}

/** Counted as under way (quiesce waits for it): everything but PASS_OPS. */
export function countsAsInFlight(op: number): boolean {
  return !PASS_OPS.has(op);
}

export function isReadOnly(r: HeldRequest): boolean {
  if (!READ_OPS.has(r.op)) return false;
  return r.op !== OP.open || ((r.mode & O_ACCMODE) === 0 && (r.mode & O_TRUNC) === 0);
}

export interface HoldFigures {
  /** Requests held (run later). */
  held: number;
  /** Requests answered EBUSY. */
  ebusy: number;
  /** The longest any held request waited, ms. */
  longestWaitMs: number;
  /** The longest a held request that changes nothing waited, ms. */
  longestReadWaitMs: number;
}

export class RequestHold<R extends HeldRequest> {
  private queue: { r: R; at: number }[] = [];
  private writesOnly = false;
  private released = 0;
  private ebusy = 0;
  private longestReadWaitMs = 0;

  constructor(readonly mode: 'wait' | 'ebusy') {}

  /** 'run' now, 'held' (queued here), or 'ebusy' (the caller answers EBUSY). */
  decide(r: R): 'run' | 'held' | 'ebusy' {
    if (PASS_OPS.has(r.op) || (this.writesOnly && isReadOnly(r))) return 'run';
    if (this.mode === 'wait' || WAIT_ALWAYS.has(r.op)) {
      this.queue.push({ r, at: Date.now() });
      return 'held';
    }
    this.ebusy++;
    return 'ebusy';
  }

  /** From now on only requests that change something are held; returns the held ones that do not, to run now. */
  holdWritesOnly(): R[] {
    if (this.writesOnly) return [];
    this.writesOnly = true;
    const now = Date.now();
    const run: R[] = [];
    const keep: { r: R; at: number }[] = [];
    for (const q of this.queue) {
      if (!isReadOnly(q.r)) { keep.push(q); continue; }
      this.longestReadWaitMs = Math.max(this.longestReadWaitMs, now - q.at);
      run.push(q.r);
    }
    this.released += run.length;
    this.queue = keep;
    return run;
  }

  /** The end of the hold: every request still held (to run now, in order) and the figures. */
  end(): { run: R[]; figures: HoldFigures } {
    const now = Date.now();
    let longest = this.longestReadWaitMs;
    let longestRead = this.longestReadWaitMs;
    for (const { r, at } of this.queue) {
      longest = Math.max(longest, now - at);
      if (isReadOnly(r)) longestRead = Math.max(longestRead, now - at);
    }
    const run = this.queue.map((q) => q.r);
    this.queue = [];
    return { run, figures: { held: run.length + this.released, ebusy: this.ebusy, longestWaitMs: longest, longestReadWaitMs: longestRead } };
  }
}
