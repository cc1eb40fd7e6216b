// Several programs write the same files at once on a mirrored mount, each
// opening and closing them over and over (appending, or writing at random
// offsets; sometimes fsync, truncate, chmod, utimes). One program's close
// (FLUSH, RELEASE: the attributes after its writes are recorded then) falls
// among the others' writes and setattrs. Then the disk is lost: the recovered
// files must be what the programs left on the mount — content, size, mode and
// mtime, compared with a native copy taken before the loss — and `strata
// verify` must find the archive equal to the store.
//
// Before 2026-12-05 the attributes recorded at a close were read before the
// record took its place in the journal: another program's write in between
// came first in the journal, and the stale size behind it truncated the
// archive's file (its bytes read as zeros after recovery). Seen with four
// programs appending to one file in about one run in three.
//
//   npx ava dist/test/fault/concurrent-writers.test.js
//   STRATA_CONCURRENT_SEED=<seed> npx ava dist/test/fault/concurrent-writers.test.js   # replay one
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { withMirroredMount, syncMount, killPrimary, forceUnmount, assertConverged, type MirroredMount } from '../helpers/mirror.js';
import { strata } from '../helpers/mount.js';

const CHILD = fileURLToPath(new URL('../helpers/concurrent-writer-child.js', import.meta.url));
const WRITERS = 4;
const FILES = 3;
const ITERATIONS = Number(process.env['STRATA_CONCURRENT_ITERATIONS'] ?? 150);

function seedOf(label: string): number {
  const fixed = process.env['STRATA_CONCURRENT_SEED'];
  if (fixed !== undefined && fixed !== '') return Number(fixed) >>> 0;
  let h = (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
  for (const c of label) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0;
  return h;
}

/** Runs the writers to the end; resolves with their total count of writes. */
async function runWriters(t: ExecutionContext, dir: string, seed: number): Promise<number> {
  const runs = Array.from({ length: WRITERS }, (_, i) => new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, String((seed + i * 7919) >>> 0), dir, String(FILES), String(ITERATIONS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('close', (code) => {
      const m = /^done (\d+)$/m.exec(out);
      if (code !== 0 || m === null) reject(new Error(`writer ${i} failed (${code}): ${err.slice(0, 2000)}`));
      else resolve(Number(m[1]));
    });
  }));
  const counts = await Promise.all(runs);
  const total = counts.reduce((a, b) => a + b, 0);
  t.log(`seed ${seed}: ${total} writes by ${WRITERS} programs`);
  return total;
}

interface FilePicture { size: number; mode: number; mtimeNs: bigint }

function picture(dir: string): Map<string, FilePicture> {
  const out = new Map<string, FilePicture>();
  for (const name of readdirSync(dir).sort()) {
    const st = lstatSync(join(dir, name), { bigint: true });
    out.set(name, { size: Number(st.size), mode: Number(st.mode), mtimeNs: st.mtimeNs });
  }
  return out;
}

async function oneRun(t: ExecutionContext, label: string, extraArgs: string[]): Promise<void> {
  const seed = seedOf(label);
  const m: MirroredMount = withMirroredMount(t, { extraArgs });
  await runWriters(t, m.mnt, seed);
  syncMount(m);
  // The native copy: what the programs left, read through the mount.
  const native = join(m.base, 'native');
  mkdirSync(native);
  const before = picture(m.mnt);
  t.is(before.size, FILES, `seed ${seed}: every file was written`);
  for (const name of before.keys()) writeFileSync(join(native, name), readFileSync(join(m.mnt, name)));
  assertConverged(t, m, `seed ${seed}, before the loss`);

  // The disk is lost; recover on demand (the files are read from the archive as they are compared).
  await killPrimary(m);
  forceUnmount(m.mnt);
  spawnSync('rm', ['-rf', m.store]);
  const r = strata(['recover', ...m.args, '--depth', '1', '--no-background-restore', m.mnt]);
  t.is(r.status, 0, `seed ${seed}: strata recover: ${r.stdout}${r.stderr}`);
  const after = picture(m.mnt);
  t.deepEqual([...after.keys()], [...before.keys()], `seed ${seed}: the recovered names`);
  for (const [name, want] of before) {
    const got = after.get(name);
    t.deepEqual(got, want, `seed ${seed}: ${name}'s size, mode and mtime after recovery`);
    const bytes = readFileSync(join(m.mnt, name));
    const expected = readFileSync(join(native, name));
    if (!bytes.equals(expected)) {
      let first = 0;
      while (first < Math.min(bytes.length, expected.length) && bytes[first] === expected[first]) first++;
      t.fail(`seed ${seed}: ${name} differs from the native copy from byte ${first} (sizes ${bytes.length} and ${expected.length})`);
    }
  }
  syncMount(m);
  assertConverged(t, m, `seed ${seed}, after the recovery`);
}

const CONFIGS: readonly (readonly [string, readonly string[]])[] = [
  ['async mode, writes journalled on the FUSE thread', []],
  ['async mode, writes through the core', ['--no-direct-journal']],
  ['sync mode', ['--mirror', 'sync']],
  ['async mode with the writeback cache', ['--writeback-cache']],
];

for (const [label, args] of CONFIGS) {
  test.serial(`concurrent writers and closes, then disk loss: ${label}`, async (t) => {
    t.timeout(240_000);
    await oneRun(t, label, [...args]);
  });
}
