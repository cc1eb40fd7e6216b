// `npm run bench:swap-checkpoint`: prepare of a spare from a local checkpoint
// (issue 13 with issue 12, docs/swap.md) where 1% of the data changed, against
// a full copy. ONE JSON document on stdout, progress on stderr; nothing
// asserted.
//
//  1. a tree of BENCH_CKSWAP_FILES files (default 10000) holding
//     BENCH_CKSWAP_MIB MiB of random data in all (default 1024), in
//     directories of 500, written natively into a store; mounted without an
//     archive; `strata checkpoint create`;
//  2. BENCH_CKSWAP_CHANGED_PERMILLE (default 10 = 1%) of the tree's 64 KiB
//     blocks overwritten through the mount (whole blocks, random files and
//     offsets, distinct blocks);
//  3. `cp -a` of the store's tree (the full copy, same disk), then
//     `strata swap prepare --from checkpoint:NAME` into an empty spare on the
//     same disk, then `cp -a` again (the page cache is as warm for both; the
//     two cp figures show the noise): wall times, and the prepare's bytes:
//     read from the checkpoint's log, copied from the live store by the
//     native block copy (FICLONE where the file system shares blocks: the
//     JSON says which it did), against the tree's size.
// Settings: BENCH_DIR (/var/tmp), BENCH_KEEP (keep the work directory).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, openSync, closeSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { envFlag, envInt } from './lib/env.js';
import { STRATA_CLI } from './lib/strata.js';
import * as native from '../src/native/index.js';

const BLOCK = 64 * 1024;
const r1 = (x: number): number => Math.round(x * 10) / 10;
const r4 = (x: number): number => Math.round(x * 10000) / 10000;

function progress(msg: string): void {
  process.stderr.write(`[bench:swap-checkpoint ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function strata(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [STRATA_CLI, ...args], { encoding: 'utf8', timeout: 3_600_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function must(args: string[]): string {
  const r = strata(args);
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function wallMs(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** A simple deterministic generator (the changed blocks are the same for a given size). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function writeTree(root: string, files: number, totalBytes: number): Promise<{ names: string[]; sizes: number[] }> {
  const names: string[] = [];
  const sizes: number[] = [];
  const per = 500;
  const size = Math.floor(totalBytes / files);
  const buf = Buffer.alloc(size);
  for (let d = 0; d * per < files; d++) {
    const dir = join(root, `d${d}`);
    await fsp.mkdir(dir, { recursive: true });
    const jobs: Promise<void>[] = [];
    for (let i = d * per; i < Math.min(files, (d + 1) * per); i++) {
      randomFillSync(buf);
      names.push(`d${d}/f${i}`);
      sizes.push(size);
      jobs.push(fsp.writeFile(join(dir, `f${i}`), Buffer.from(buf)));
    }
    await Promise.all(jobs);
  }
  return { names, sizes };
}

async function main(): Promise<void> {
  const files = envInt('BENCH_CKSWAP_FILES', 10000, 1);
  const mib = envInt('BENCH_CKSWAP_MIB', 1024, 1);
  const permille = envInt('BENCH_CKSWAP_CHANGED_PERMILLE', 10, 1);
  const work = mkdtempSync(join(resolve(process.env.BENCH_DIR ?? '/var/tmp'), 'strata-bench-ckswap-'));
  const store = join(work, 'store');
  const mnt = join(work, 'mnt');
  const spare = join(work, 'spare');
  const copy = join(work, 'cp-copy');
  mkdirSync(store);
  mkdirSync(mnt);
  mkdirSync(spare);
  let mounted = false;
  try {
    progress(`writing ${files} files, ${mib} MiB`);
    const { names, sizes } = await writeTree(store, files, mib * 1024 * 1024);
    const treeBytes = sizes.reduce((a, b) => a + b, 0);
    must(['mount', '--store', store, mnt]);
    mounted = true;
    must(['checkpoint', 'create', mnt, '--name', 'good']);

    // Distinct whole blocks, permille of all of the tree's blocks.
    const blocks: [number, number][] = [];
    names.forEach((_, i) => { for (let b = 0; b * BLOCK < sizes[i]!; b++) blocks.push([i, b]); });
    const want = Math.max(1, Math.round((blocks.length * permille) / 1000));
    const rand = rng(files * 7919 + mib);
    for (let i = blocks.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [blocks[i], blocks[j]] = [blocks[j]!, blocks[i]!];
    }
    const chosen = blocks.slice(0, want);
    progress(`overwriting ${want} of ${blocks.length} blocks through the mount`);
    const data = Buffer.alloc(BLOCK);
    let changedBytes = 0;
    for (const [fi, b] of chosen) {
      const len = Math.min(BLOCK, sizes[fi]! - b * BLOCK);
      randomFillSync(data, 0, len);
      const fd = openSync(join(mnt, names[fi]!), 'r+');
      try { writeSync(fd, data, 0, len, b * BLOCK); } finally { closeSync(fd); }
      changedBytes += len;
    }
    spawnSync('sync');

    // The clone method the block copy uses between these directories (FICLONE or a copy of the data extents).
    const probeSrc = join(store, names[0]!);
    const probeDst = join(work, 'clone-probe');
    const inFd = openSync(probeSrc, 'r');
    const outFd = openSync(probeDst, 'w');
    const cloneMethod = await native.cloneFile(inFd, outFd);
    closeSync(inFd);
    closeSync(outFd);
    rmSync(probeDst);

    const cpA = (): number => {
      rmSync(copy, { recursive: true, force: true });
      const ms = wallMs(() => {
        const r = spawnSync('cp', ['-a', '--reflink=auto', store, copy]);
        if (r.status !== 0) throw new Error(`cp -a failed: ${r.stderr}`);
        spawnSync('sync', ['-f', copy]);
      });
      rmSync(copy, { recursive: true, force: true });
      return ms;
    };
    progress('cp -a (1)');
    const cp1 = cpA();
    progress('strata swap prepare --from checkpoint:good');
    const prepMs = wallMs(() => { must(['swap', 'prepare', mnt, '--spare', spare, '--from', 'checkpoint:good']); });
    const st = JSON.parse(must(['status', '--json', mnt])) as { swap: { prepare: { state: string; startedAt: string; finishedAt: string; totals: { entries: number; bytes: number }; progress: { entries: number; bytes: number; copiedBytes: number; logBytes: number; fetchedBytes: number } } } };
    const p = st.swap.prepare;
    progress('cp -a (2)');
    const cp2 = cpA();
    const cpMedian = (cp1 + cp2) / 2;
    const out = {
      benchmark: 'swap-prepare-from-checkpoint',
      machine: { cpus: cpus().length, loadavg_end: loadavg().map(r1), filesystem_clone: cloneMethod },
      tree: { files, bytes: treeBytes, blocks_64k: blocks.length },
      changed: { blocks: want, bytes: changedBytes, fraction: r4(changedBytes / treeBytes) },
      prepare: {
        state: p.state,
        wall_ms: r1(prepMs),
        daemon_ms: Date.parse(p.finishedAt) - Date.parse(p.startedAt),
        bytes_from_checkpoint_log: p.progress.logBytes,
        bytes_copied_from_live_store: p.progress.copiedBytes,
        bytes_fetched: p.progress.fetchedBytes,
        log_bytes_vs_tree: r4(p.progress.logBytes / treeBytes),
        log_bytes_vs_changed: r4(p.progress.logBytes / changedBytes),
        all_bytes_written_vs_tree: r4((p.progress.logBytes + p.progress.copiedBytes) / treeBytes),
      },
      full_copy: { cp_a_ms: [r1(cp1), r1(cp2)], bytes: treeBytes },
      ratio_prepare_vs_cp_a: r4(prepMs / cpMedian),
      note: 'prepare = wall time of the CLI (includes Node start-up, the T0 walk and the final syncfs); cp -a is followed by sync -f as well',
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    if (mounted) strata(['unmount', mnt]);
    if (!envFlag('BENCH_KEEP')) rmSync(work, { recursive: true, force: true });
    else progress(`kept ${work}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
