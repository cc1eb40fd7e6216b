// `npm run bench:checkpoints`: checkpoints (docs/checkpoints.md) on a real
// mount of an unmirrored store. ONE JSON document on stdout, progress on stderr.
//
//   create     `strata checkpoint create` on stores of BENCH_CK_FILES files
//              (default 10000,100000): the daemon's time and the CLI's wall time
//              (goal <= 100 ms, flat), median of BENCH_RUNS (3).
//   write      sequential 1 MiB overwrites of a BENCH_CK_WRITE_MIB (256) MiB file
//              (one fdatasync at the end): without a checkpoint, first overwrite of
//              each block after one, a later overwrite; ratios to no checkpoint
//              (goals >= 0.7 and >= 0.95), and native writes to the same disk.
//   rollback   a BENCH_CK_ROLLBACK_MIB (2048) MiB file with 1% of its 64 KiB blocks
//              changed: `strata rollback` of the file vs `cp` of the whole file
//              on the same disk (goal: >= 30x faster), bytes the rollback copied.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/strata.js', import.meta.url));
const MiB = 1024 * 1024;
const BS = 64 * 1024;
const env = (k: string, d: string): string => process.env[k] ?? d;
const log = (s: string): void => { process.stderr.write(`[bench:checkpoints] ${s}\n`); };
const RUNS = Number(env('BENCH_RUNS', '3'));

function strata(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 3_600_000 });
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

async function withMount<T>(base: string, f: (mnt: string, store: string) => Promise<T>, prepare?: (store: string) => Promise<void>): Promise<T> {
  const store = join(base, 'store');
  const mnt = join(base, 'mnt');
  await fsp.mkdir(store, { recursive: true });
  await fsp.mkdir(mnt, { recursive: true });
  if (prepare) await prepare(store);
  strata(['mount', '--store', store, mnt]);
  try {
    return await f(mnt, store);
  } finally {
    spawnSync(process.execPath, [CLI, 'unmount', mnt]);
  }
}

async function overwrite(path: string, mib: number, fill: number): Promise<number> {
  const buf = Buffer.alloc(MiB, fill);
  const fh = await fsp.open(path, 'r+');
  const t0 = now();
  for (let i = 0; i < mib; i++) await fh.write(buf, 0, MiB, i * MiB);
  await fh.datasync();
  const ms = now() - t0;
  await fh.close();
  return (mib / ms) * 1000;
}

async function createBench(base: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const n of env('BENCH_CK_FILES', '10000,100000').split(',').map(Number)) {
    const dir = join(base, `create-${n}`);
    log(`create: ${n} files`);
    const r = await withMount(dir, async (mnt) => {
      const daemon: number[] = [];
      const wall: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const t0 = now();
        const j = JSON.parse(strata(['checkpoint', 'create', mnt, '--name', `c${i}`, '--json'])) as { createMs: number };
        wall.push(now() - t0);
        daemon.push(j.createMs);
        strata(['checkpoint', 'delete', mnt, `c${i}`]);
      }
      return { files: n, daemonMs: median(daemon), cliWallMs: median(wall), runs: RUNS };
    }, async (store) => {
      // Built in the store before mounting (the tree's size is what matters, not how it got there).
      for (let d = 0; d < Math.ceil(n / 1000); d++) {
        const sub = join(store, `d${d}`);
        await fsp.mkdir(sub);
        await Promise.all(Array.from({ length: Math.min(1000, n - d * 1000) }, (_, i) => fsp.writeFile(join(sub, `f${i}`), `file ${d}/${i}\n`)));
      }
    });
    out.push(r);
    await fsp.rm(dir, { recursive: true, force: true });
  }
  return out;
}

async function writeBench(base: string): Promise<unknown> {
  const mib = Number(env('BENCH_CK_WRITE_MIB', '256'));
  const dir = join(base, 'write');
  log(`write: ${mib} MiB`);
  const native = join(dir, 'native.bin');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(native, Buffer.alloc(0));
  await fsp.truncate(native, mib * MiB);
  await overwrite(native, mib, 1);
  const nativeMiBs = await overwrite(native, mib, 2);
  await fsp.rm(native);
  return withMount(dir, async (mnt) => {
    const f = join(mnt, 'f.bin');
    await fsp.writeFile(f, Buffer.alloc(0));
    await fsp.truncate(f, mib * MiB);
    await overwrite(f, mib, 1);
    // Each round: without a checkpoint, then the first and a later overwrite under a fresh one.
    const none: number[] = [];
    const firsts: number[] = [];
    const laters: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      none.push(await overwrite(f, mib, 2));
      strata(['checkpoint', 'create', mnt, '--name', `w${i}`]);
      firsts.push(await overwrite(f, mib, 3));
      laters.push(await overwrite(f, mib, 4));
      strata(['checkpoint', 'delete', mnt, `w${i}`]);
    }
    const after = await overwrite(f, mib, 5);
    const [n, first, later] = [median(none), median(firsts), median(laters)];
    return {
      fileMiB: mib, runs: RUNS, nativeMiBs: round(nativeMiBs), noCheckpointMiBs: round(n), firstOverwriteMiBs: round(first), laterOverwriteMiBs: round(later),
      afterDeleteMiBs: round(after), firstRatio: round(first / n, 3), laterRatio: round(later / n, 3), noCheckpointVsNative: round(n / nativeMiBs, 3),
      perRun: { none: none.map((x) => round(x)), first: firsts.map((x) => round(x)), later: laters.map((x) => round(x)) },
    };
  });
}

async function rollbackBench(base: string): Promise<unknown> {
  const mib = Number(env('BENCH_CK_ROLLBACK_MIB', '2048'));
  const dir = join(base, 'rollback');
  log(`rollback: ${mib} MiB file, 1% of its blocks changed`);
  return withMount(dir, async (mnt, store) => {
    const f = join(mnt, 'big.bin');
    const fh = await fsp.open(f, 'w');
    const buf = Buffer.alloc(8 * MiB);
    for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let i = 0; i < mib / 8; i++) await fh.write(buf, 0, buf.length, i * buf.length);
    await fh.close();
    strata(['checkpoint', 'create', mnt, '--name', 'r']);
    const blocks = (mib * MiB) / BS;
    const changed = Math.max(1, Math.round(blocks / 100));
    const w = await fsp.open(f, 'r+');
    const dirty = Buffer.alloc(BS, 0xee);
    let x = 12345;
    const picked = new Set<number>();
    while (picked.size < changed) { x = (x * 1103515245 + 12345) >>> 0; picked.add(x % blocks); }
    for (const b of picked) await w.write(dirty, 0, BS, b * BS);
    await w.close();
    const t0 = now();
    const rep = JSON.parse(strata(['rollback', mnt, '--to', 'r', f, '--json'])) as { bytesCopied: number; elapsedMs: number };
    const rollbackMs = now() - t0;
    const src = join(store, 'big.bin');
    const t1 = now();
    spawnSync('cp', ['--reflink=never', src, join(store, '.strata', 'copy.bin')]);
    const copyMs = now() - t1;
    fs.rmSync(join(store, '.strata', 'copy.bin'));
    return {
      fileMiB: mib, changedBlocks: changed, blockSize: BS, bytesCopied: rep.bytesCopied, expectedBytes: changed * BS,
      rollbackCliMs: round(rollbackMs), rollbackDaemonMs: round(rep.elapsedMs), fullCopyMs: round(copyMs),
      speedupCli: round(copyMs / rollbackMs, 2), speedupDaemon: round(copyMs / rep.elapsedMs, 2),
    };
  });
}

function round(n: number, d = 1): number {
  const f = 10 ** d;
  return Math.round(n * f) / f;
}

const base = fs.mkdtempSync(join(env('BENCH_DIR', '/var/tmp'), 'strata-bench-ck-'));
try {
  const result = {
    bench: 'checkpoints',
    create: await createBench(base),
    write: await writeBench(base),
    rollback: await rollbackBench(base),
    notes: 'create: the daemon\'s time (registry + copy-store directory, fsyncs) and the CLI\'s wall time (process start included); write ratios are to the same mount without a checkpoint; rollback speedup = full cp time / rollback time (CLI wall time, which includes ~0.25 s of process start, and the daemon\'s own time).',
  };
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
