// Checkpoint helpers for the integration and fault tests: the CLI with JSON
// output, the random-change actions on a real mount (plain system calls), and
// the block-by-block comparison the diff is checked against.
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { strata } from './mount.js';
import type { Actions } from './checkpoint-ops.js';
import type { DiffReport } from '../../src/checkpoint/diff.js';
import type { RollbackReport } from '../../src/checkpoint-service/rollback.js';

/** Runs `strata ARGS --json` and parses its output; throws with stderr when it fails. */
export function strataJson<T>(args: string[]): T {
  const r = strata([...args, '--json']);
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

export const diffOf = (mnt: string, name: string, paths: string[] = []): DiffReport => strataJson<DiffReport>(['checkpoint', 'diff', mnt, name, ...paths]);
export const rollbackTo = (mnt: string, name: string, areas: string[] = [], dryRun = false): RollbackReport =>
  strataJson<RollbackReport>(['rollback', mnt, '--to', name, ...areas, ...(dryRun ? ['--dry-run'] : [])]);
export function createCheckpoint(mnt: string, name: string, extra: string[] = []): void {
  strataJson(['checkpoint', 'create', mnt, '--name', name, ...extra]);
}

/** Changed byte ranges between two versions of a file at `bs` granularity, as the diff reports them. */
export function blockRanges(before: Buffer, after: Buffer, bs: number): [number, number][] {
  const out: [number, number][] = [];
  const add = (off: number, len: number): void => {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === off) last[1] += len;
    else out.push([off, len]);
  };
  const common = Math.min(before.length, after.length);
  for (let off = 0; off < common; off += bs) {
    const end = Math.min(off + bs, common);
    if (!before.subarray(off, end).equals(after.subarray(off, end))) add(off, end - off);
  }
  if (before.length !== after.length) add(common, Math.abs(before.length - after.length));
  return out;
}

/** The random-change actions of test/helpers/checkpoint-ops.ts on a mounted tree (`root`: the mountpoint). */
export function mountActions(root: string): Actions {
  const at = (p: string): string => join(root, p);
  return {
    async write(p, off, data) { const fh = await fsp.open(at(p), 'r+'); try { await fh.write(data, 0, data.length, off); } finally { await fh.close(); } },
    truncate: (p, size) => fsp.truncate(at(p), size),
    create: (p, data) => fsp.writeFile(at(p), data),
    mkdir: (p) => fsp.mkdir(at(p)),
    unlink: (p) => fsp.unlink(at(p)),
    rmdir: (p) => fsp.rmdir(at(p)),
    rename: (a, b) => fsp.rename(at(a), at(b)),
    link: (a, b) => fsp.link(at(a), at(b)),
    symlink: (target, p) => fsp.symlink(target, at(p)),
    chmod: (p, mode) => fsp.chmod(at(p), mode),
    chown: (p, u, g) => fsp.lchown(at(p), u, g),
    utimes: (p, sec, nsec) => fsp.utimes(at(p), sec + nsec / 1e9, sec + nsec / 1e9),
    async setxattr(p, name, value) { const { setxattr } = await import('../../src/native/index.js'); await setxattr(at(p), name, value, 0); },
    async removexattr(p, name) { const { removexattr } = await import('../../src/native/index.js'); await removexattr(at(p), name); },
  };
}
