// `npm run bench:swap`: the spare store and swap (issue 13, docs/swap.md)
// measured. ONE JSON document on stdout, progress on stderr; nothing asserted.
//
// For each tree size (BENCH_SWAP_FILES, default "10000,100000"; files of
// BENCH_SWAP_FILE_BYTES, default 2048, in directories of 500):
//  1. the tree is written natively into a store, mounted with a file://
//     archive (the initial sync ships it), snapshotted (the good point);
//  2. 1% of the files are changed through the mount ("the damage"), synced;
//  3. prepare (mirrored mount) from the snapshot: time, bytes copied locally
//     and fetched, against `cp -a` of the same tree on the same disk (native);
//  4. commit while a prober (its own process) stats and reads random files
//     of the mount in a loop, each call timed; the kernel knows every node
//     (a `find -ls` of the mount first). Figures: the longest any prober
//     call took across the commit (its calls only read: stat, open, read,
//     close), the daemon's longest wait of a held request (of any, and of one
//     that changes nothing: on a mirrored mount those go on while the new store
//     is re-converged, changes wait for it), the hold and its phases; the prober's longest call over a window of the same length
//     without a swap (baseline) and the ratio;
//  5. the same on a mount without an archive (a copy of the store with its
//     object ids), where the exchange does not include the mirror's handover.
// Goal (issue): the longest wait <= 100 ms, flat in tree size.
// Settings: BENCH_DIR (/var/tmp), BENCH_KEEP (keep the work directory).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { envFlag, envInt } from './lib/env.js';
import { STRATA_CLI } from './lib/strata.js';

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

function progress(msg: string): void {
  process.stderr.write(`[bench:swap ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function strata(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [STRATA_CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 3_600_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function must(args: string[]): string {
  const r = strata(args);
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function timed<T>(f: () => T): { ms: number; value: T } {
  const t0 = process.hrtime.bigint();
  const value = f();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

const PROBER = `
const fs = require('fs');
const [dir, listFile, stopFile, outFile] = process.argv.slice(1);
const files = fs.readFileSync(listFile, 'utf8').split('\\n').filter(Boolean);
let max = 0, n = 0, errors = 0; const lat = [];
const buf = Buffer.alloc(4096);
while (!fs.existsSync(stopFile)) {
  const f = dir + '/' + files[Math.floor(Math.random() * files.length)];
  const t0 = process.hrtime.bigint();
  try { fs.statSync(f); const fd = fs.openSync(f, 'r'); fs.readSync(fd, buf, 0, 4096, 0); fs.closeSync(fd); } catch (e) { errors++; }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (ms > max) max = ms; n++; lat.push(ms);
}
lat.sort((a, b) => a - b);
fs.writeFileSync(outFile, JSON.stringify({ max, n, errors, p99: lat[Math.floor(lat.length * 0.99)] || 0 }));
`;

interface ProbeFigures { max: number; n: number; errors: number; p99: number }

async function probe(mnt: string, list: string, work: string, during: () => Promise<void> | void): Promise<ProbeFigures> {
  const stop = join(work, `stop-${Date.now()}`);
  const out = `${stop}.json`;
  const p = spawn(process.execPath, ['-e', PROBER, mnt, list, stop, out], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  await during();
  await new Promise((r) => setTimeout(r, 500));
  writeFileSync(stop, '');
  await new Promise((r) => p.once('exit', r));
  return JSON.parse(readFileSync(out, 'utf8')) as ProbeFigures;
}

async function writeTree(root: string, files: number, bytes: number): Promise<string[]> {
  const names: string[] = [];
  const per = 500;
  const buf = Buffer.alloc(bytes);
  for (let d = 0; d * per < files; d++) {
    const dir = join(root, `d${d}`);
    await fsp.mkdir(dir, { recursive: true });
    const jobs: Promise<void>[] = [];
    for (let i = d * per; i < Math.min(files, (d + 1) * per); i++) {
      buf.writeUInt32LE(i, 0);
      names.push(`d${d}/f${i}`);
      jobs.push(fsp.writeFile(join(dir, `f${i}`), Buffer.from(buf)));
    }
    await Promise.all(jobs);
  }
  return names;
}

interface CommitFigures {
  longest_request_ms: number;
  prober_p99_ms: number;
  prober_calls: number;
  prober_errors: number;
  daemon_longest_held_ms: number;
  daemon_longest_held_read_ms: number;
  hold_ms: number;
  hold_phases_ms: Record<string, number>;
  held_requests: number;
  /** Mirrored: how the archive was brought to the new tree (rollback / head: moved to the source point; reconcile: a comparison walk), and its ms (changes wait this long). */
  handover: { kind: string; ms: number; records: number } | null;
  baseline_longest_request_ms: number;
  ratio_longest_vs_baseline: number | null;
}

async function commitUnderLoad(mnt: string, list: string, work: string): Promise<CommitFigures> {
  spawnSync('find', [mnt, '-ls'], { stdio: 'ignore' });
  let holdMs = 0;
  let result: { longestWaitMs: number; longestReadWaitMs: number; holdMs: number; held: number; phases: Record<string, number>; handover?: { kind: string; ms: number; records: number } | null } = { longestWaitMs: 0, longestReadWaitMs: 0, holdMs: 0, held: 0, phases: {} };
  const swapped = await probe(mnt, list, work, () => {
    const out = must(['swap', 'commit', mnt, '--json', '--hold-timeout', '600']);
    result = JSON.parse(out) as typeof result;
    holdMs = result.holdMs;
  });
  const base = await probe(mnt, list, work, () => new Promise((r) => setTimeout(r, Math.max(100, holdMs))));
  return {
    longest_request_ms: r3(swapped.max), prober_p99_ms: r3(swapped.p99), prober_calls: swapped.n, prober_errors: swapped.errors,
    daemon_longest_held_ms: result.longestWaitMs, daemon_longest_held_read_ms: result.longestReadWaitMs, hold_ms: result.holdMs, hold_phases_ms: result.phases, held_requests: result.held,
    handover: result.handover ? { kind: result.handover.kind, ms: result.handover.ms, records: result.handover.records } : null,
    baseline_longest_request_ms: r3(base.max), ratio_longest_vs_baseline: base.max > 0 ? r1(swapped.max / base.max) : null,
  };
}

async function one(files: number, bytes: number, parent: string, keep: boolean): Promise<Record<string, unknown>> {
  const work = mkdtempSync(join(parent, 'strata-bench-swap-'));
  const store = join(work, 'store'), mnt = join(work, 'mnt'), archive = `file://${join(work, 'archive')}`;
  const mntB = join(work, 'mntB'), storeB = join(work, 'storeB');
  for (const d of [mnt, mntB, join(work, 'target'), join(work, 'spare'), join(work, 'spareB')]) mkdirSync(d, { recursive: true });
  try {
    progress(`${files} files: writing the tree`);
    const names = await writeTree(store, files, bytes);
    const list = join(work, 'list');
    writeFileSync(list, names.join('\n'));
    progress('mounting with an archive (initial sync)');
    must(['mount', mnt, '--store', store, '--archive', archive, '--volume', 'v', '--archive-wait', '3600']);
    must(['sync', mnt, '--timeout', '3600']);
    must(['archive', 'targets', '--archive', archive, '--target', `A=${join(work, 'target')}`]);
    const snap = JSON.parse(must(['snapshot', 'create', mnt, '--wait', '--json'])) as { id: string };
    progress('changing 1% of the files');
    const changed = Math.max(1, Math.floor(files / 100));
    for (let i = 0; i < changed; i++) await fsp.writeFile(join(mnt, names[(i * 97) % names.length]!), Buffer.alloc(bytes, 0x5a));
    must(['sync', mnt, '--timeout', '3600']);
    progress('native copy (cp -a) of the store');
    const cp = timed(() => spawnSync('cp', ['-a', `${store}/.`, storeB]));
    spawnSync('sync', ['-f', storeB]);
    rmSync(join(storeB, '.strata'), { recursive: true, force: true });
    progress('prepare (mirrored mount)');
    const prep = timed(() => must(['swap', 'prepare', mnt, '--spare', join(work, 'spare'), '--from', `snapshot:${snap.id}`, '--json']));
    const p = JSON.parse(prep.value.trim().split('\n').pop()!) as { totals: { bytes: number; entries: number }; progress: { copiedBytes: number; fetchedBytes: number } };
    progress('commit under a prober (mirrored mount)');
    const mirrored = await commitUnderLoad(mnt, list, work);
    progress('mount without an archive (the copy), prepare, commit');
    must(['mount', mntB, '--store', storeB]);
    must(['swap', 'prepare', mntB, '--spare', join(work, 'spareB'), '--from', `snapshot:${snap.id}`, '--archive', archive, '--volume', 'v', '--json']);
    const plain = await commitUnderLoad(mntB, list, work);
    return {
      files, file_bytes: bytes, tree_bytes: p.totals.bytes, entries: p.totals.entries,
      prepare: {
        ms: Math.round(prep.ms), bytes_copied_locally: p.progress.copiedBytes, bytes_fetched: p.progress.fetchedBytes,
        fetched_vs_tree: p.totals.bytes > 0 ? r3(p.progress.fetchedBytes / p.totals.bytes) : null,
        native_cp_a_ms: Math.round(cp.ms), ratio_vs_native_copy: r1(prep.ms / cp.ms),
      },
      commit_mirrored: mirrored,
      commit_without_archive: plain,
    };
  } finally {
    for (const m of [mnt, mntB]) if (spawnSync('mountpoint', ['-q', m]).status === 0) { strata(['unmount', m]); if (spawnSync('mountpoint', ['-q', m]).status === 0) spawnSync('umount', ['-l', m]); }
    if (!keep && existsSync(work)) rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const sizes = (process.env['BENCH_SWAP_FILES'] || '10000,100000').split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
  const bytes = envInt('BENCH_SWAP_FILE_BYTES', 2048, 1);
  const parent = resolve(process.env['BENCH_DIR'] || '/var/tmp');
  const startedAt = new Date().toISOString();
  const results: Record<string, unknown>[] = [];
  for (const n of sizes) results.push(await one(n, bytes, parent, envFlag('BENCH_KEEP')));
  const goalMs = 100;
  process.stdout.write(JSON.stringify({
    schema: 'strata-bench-swap/1', startedAt, finishedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, loadavg: loadavg().map(r1) },
    goal: { longest_request_ms_max: goalMs, flat_in_tree_size: true },
    results,
    summary: results.map((r) => ({
      files: r['files'],
      mirrored_longest_ms: (r['commit_mirrored'] as CommitFigures).longest_request_ms,
      without_archive_longest_ms: (r['commit_without_archive'] as CommitFigures).longest_request_ms,
      met: (r['commit_mirrored'] as CommitFigures).longest_request_ms <= goalMs && (r['commit_without_archive'] as CommitFigures).longest_request_ms <= goalMs,
    })),
  }, null, 2) + '\n');
}

main().catch((err: unknown) => { process.stderr.write(`bench:swap failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1); });
