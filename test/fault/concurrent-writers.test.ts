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
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { withMirroredMount, syncMount, killPrimary, forceUnmount, assertConverged, type MirroredMount } from '../helpers/mirror.js';
import { strata, withMount } from '../helpers/mount.js';
import { createCheckpoint, rollbackTo } from '../helpers/checkpoint.js';
import { startArchiveServer } from '../helpers/archive.js';
import { Rng } from '../helpers/model-tree.js';

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

interface Writers {
  pids: number[];
  /** Resolves with the total count of writes once every writer finished (rejects when one failed). */
  done: Promise<number>;
  /** How many writers have not exited yet. */
  running: () => number;
}

/** Starts the writers in `dir`. */
function startWriters(t: ExecutionContext, dir: string, seed: number): Writers {
  const pids: number[] = [];
  let exited = 0;
  const runs = Array.from({ length: WRITERS }, (_, i) => new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, String((seed + i * 7919) >>> 0), dir, String(FILES), String(ITERATIONS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    pids.push(child.pid!);
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('close', (code) => {
      exited++;
      const m = /^done (\d+)$/m.exec(out);
      if (code !== 0 || m === null) reject(new Error(`writer ${i} failed (${code}): ${err.slice(0, 2000)}`));
      else resolve(Number(m[1]));
    });
  }));
  const done = Promise.all(runs).then((counts) => {
    const total = counts.reduce((a, b) => a + b, 0);
    t.log(`seed ${seed}: ${total} writes by ${WRITERS} programs`);
    return total;
  });
  return { pids, done, running: () => WRITERS - exited };
}

/**
 * Stops the writers where they are (SIGSTOP: a request in flight is answered
 * first, so the mount is still after it), runs `fn`, and lets them go on.
 */
async function whileStopped<T>(w: Writers, fn: () => T): Promise<T> {
  for (const pid of w.pids) process.kill(pid, 'SIGSTOP');
  try {
    await sleep(300);
    if (w.running() < WRITERS) throw new Error(`only ${w.running()} of ${WRITERS} writers were still running when stopped`);
    return fn();
  } finally {
    for (const pid of w.pids) process.kill(pid, 'SIGCONT');
  }
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

/** Copies the files under `mnt` to `native` (a native directory) and returns their picture. */
function copyOut(mnt: string, native: string): Map<string, FilePicture> {
  mkdirSync(native, { recursive: true });
  const pic = picture(mnt);
  for (const name of pic.keys()) writeFileSync(join(native, name), readFileSync(join(mnt, name)));
  return pic;
}

/** The files under `mnt` are those of the native copy: names, size, mode, mtime and every byte. */
function checkAgainstCopy(t: ExecutionContext, mnt: string, native: string, before: Map<string, FilePicture>, label: string): void {
  const after = picture(mnt);
  t.deepEqual([...after.keys()], [...before.keys()], `${label}: the names`);
  for (const [name, want] of before) {
    t.deepEqual(after.get(name), want, `${label}: ${name}'s size, mode and mtime`);
    const bytes = readFileSync(join(mnt, name));
    const expected = readFileSync(join(native, name));
    if (!bytes.equals(expected)) {
      let first = 0;
      while (first < Math.min(bytes.length, expected.length) && bytes[first] === expected[first]) first++;
      t.fail(`${label}: ${name} differs from the native copy from byte ${first} (sizes ${bytes.length} and ${expected.length})`);
    }
  }
}

/** kill -9 of the primary, its store gone, `strata recover` into an empty one (on demand only unless `extra` says more). */
async function loseDiskAndRecover(t: ExecutionContext, m: MirroredMount, extra: string[], label: string): Promise<void> {
  await killPrimary(m);
  forceUnmount(m.mnt);
  spawnSync('rm', ['-rf', m.store]);
  const r = strata(['recover', ...m.args, '--depth', '1', '--no-background-restore', ...extra, m.mnt]);
  t.is(r.status, 0, `${label}: strata recover: ${r.stdout}${r.stderr}`);
}

async function oneRun(t: ExecutionContext, label: string, extraArgs: string[]): Promise<void> {
  const seed = seedOf(label);
  const m: MirroredMount = withMirroredMount(t, { extraArgs });
  await startWriters(t, m.mnt, seed).done;
  syncMount(m);
  // The native copy: what the programs left, read through the mount.
  const native = join(m.base, 'native');
  const before = copyOut(m.mnt, native);
  t.is(before.size, FILES, `seed ${seed}: every file was written`);
  assertConverged(t, m, `seed ${seed}, before the loss`);
  // The disk is lost; recover on demand (the files are read from the archive as they are compared).
  await loseDiskAndRecover(t, m, [], `seed ${seed}`);
  checkAgainstCopy(t, m.mnt, native, before, `seed ${seed}, recovered`);
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

// Point-in-time copies taken while the writers are stopped in the middle of
// their work, each with its files open (written, not yet closed: their
// attributes not yet recorded): what comes back must be the tree at that
// moment.
for (const mirrored of [false, true]) {
  test.serial(`checkpoint while concurrent writers are stopped with files open, rollback after they finished: the native copy taken then (${mirrored ? 'mirrored' : 'unmirrored'})`, async (t) => {
    t.timeout(240_000);
    const seed = seedOf(`checkpoint ${mirrored}`);
    const m = mirrored ? withMirroredMount(t) : withMount(t);
    const native = join(m.base, 'native');
    const w = startWriters(t, m.mnt, seed);
    await sleep(new Rng(seed).int(150, 700));
    const before = await whileStopped(w, () => {
      const pic = copyOut(m.mnt, native);
      createCheckpoint(m.mnt, 'ck');
      return pic;
    });
    await w.done;
    rollbackTo(m.mnt, 'ck');
    checkAgainstCopy(t, m.mnt, native, before, `seed ${seed}, rolled back`);
    if (mirrored) {
      syncMount(m as MirroredMount);
      assertConverged(t, m as MirroredMount, `seed ${seed}, rolled back`);
    }
  });
}

test.serial('archive snapshot while concurrent writers are stopped with files open, disk lost after they finished: strata recover --snapshot gives the native copy taken then', async (t) => {
  t.timeout(240_000);
  const seed = seedOf('snapshot');
  const targets = mkdtempSync(join(tmpdir(), 'strata-concurrent-targets-'));
  const server = await startArchiveServer({ extraArgs: ['--target', `A=${join(targets, 'A')}`] });
  t.teardown(async () => { await server.stop(); rmSync(targets, { recursive: true, force: true }); });
  const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
  const native = join(m.base, 'native');
  const w = startWriters(t, m.mnt, seed);
  await sleep(new Rng(seed).int(150, 700));
  const { before, id } = await whileStopped(w, () => {
    const pic = copyOut(m.mnt, native);
    const s = strata(['snapshot', 'create', m.mnt, '--token-file', server.tokenFile, '--wait', '--json']);
    if (s.status !== 0) throw new Error(`strata snapshot create: ${s.stdout}${s.stderr}`);
    return { before: pic, id: (JSON.parse(s.stdout) as { id: string }).id };
  });
  await w.done;
  await loseDiskAndRecover(t, m, ['--force', '--snapshot', id], `seed ${seed}`);
  checkAgainstCopy(t, m.mnt, native, before, `seed ${seed}, recovered from the snapshot`);
});
