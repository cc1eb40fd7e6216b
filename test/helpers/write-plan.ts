// A seeded plan of writes, truncates and fsyncs to one file, shared by the
// fault test that kills the primary in the middle of it
// (test/fault/mirror-write-kill.test.ts) and the child program that carries
// it out on the mount (write-plan-child.ts). The data of every write is
// derived from the seed and the op's index, so the test rebuilds the file's
// content after any prefix of the plan without having kept it.
import { Rng } from './model-tree.js';

export type PlanOp =
  | { kind: 'write'; off: number; len: number }
  | { kind: 'truncate'; size: number }
  /** fsync; the child prints `acked I` (I = this op's index) once it returned. */
  | { kind: 'fsync' };

export interface WritePlan {
  seed: number;
  ops: PlanOp[];
}

/**
 * One write is at most this long: the kernel sends it as one FUSE request
 * (max_write is 1 MiB), so it is one journal record, and the archive after
 * any number of records holds the file after a prefix of the plan.
 */
export const MAX_PLAN_WRITE = 256 * 1024;

export function makePlan(seed: number, nops: number, maxSize: number): WritePlan {
  const rng = new Rng(seed);
  const ops: PlanOp[] = [];
  let size = 0;
  for (let i = 0; i < nops; i++) {
    const kind = rng.weighted<PlanOp['kind']>([['write', 90], ['truncate', 3], ['fsync', 7]]);
    if (kind === 'write') {
      // Mostly appends and overwrites near the end (a large sequential write), some anywhere.
      const len = rng.int(1, MAX_PLAN_WRITE);
      const off = rng.chance(0.6) ? Math.min(size, maxSize - len) : rng.int(0, maxSize - len);
      ops.push({ kind, off, len });
      size = Math.max(size, off + len);
    } else if (kind === 'truncate') {
      size = rng.int(0, maxSize);
      ops.push({ kind, size });
    } else {
      ops.push({ kind });
    }
  }
  return { seed, ops };
}

/** The bytes written by op `index` of the plan of `seed`. */
export function planData(seed: number, index: number, len: number): Buffer {
  const rng = new Rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const words = new Uint32Array(Math.ceil(len / 4));
  for (let i = 0; i < words.length; i++) words[i] = rng.next();
  return Buffer.from(words.buffer, 0, len);
}
