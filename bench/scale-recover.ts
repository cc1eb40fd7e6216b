// `npm run bench:scale`: the background restore at scale. Builds a volume of
// SCALE_ENTRIES entries (default 1,000,000) directly in an archive data
// directory, through the archive store's own API (ArchiveStore.applyBatch:
// the records a primary would ship, applied by the code the server runs),
// then, against a `strata archive serve` process on 127.0.0.1:
//   1. first access of a file 6 tiers below the depth with
//      `--no-background-restore` (the reference), SCALE_FA_RUNS recoveries;
//   2. one `strata recover --depth 2` with the background restore, watched
//      until the phase is `complete`: time to serve, time to complete, the
//      daemon's RSS over time and at its peak, a sampler on the mount (statx
//      with AT_STATX_FORCE_SYNC of a file and a directory, and a lookup of a
//      name that does not exist, every ~100 ms: each goes to the daemon), the
//      first access of files 6 tiers below the depth while the restore runs,
//      the restore rate over time, and the unmount after it;
//   3. a check of the restored tree against the generator.
// ONE JSON document on stdout, progress on stderr. See bench/README.md
// ("Scale benchmark"). No figure is asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { crc32 } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { ArchiveStore } from '../src/archive/archive-store.js';
import { callControl } from '../src/daemon/control.js';
import { encodeRecord, ROOT_ID, type Attrs, type NewRecord, type Record as StrataRecord } from '../src/protocol/records.js';
import { ArchiveServerProcess } from './lib/mirror-archive.js';
import { envFlag, envInt } from './lib/env.js';
import { checkpoint, documentHead, finishDocument, installInterruptHandlers, progress, removeWorkDir, run, wasInterrupted } from './lib/proc.js';
import { median, sig, sigOrNull } from './lib/stats.js';
import { STRATA_CLI, StrataMount } from './lib/strata.js';
import { isMountPoint, machineFacts } from './lib/system.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;
/** Directory levels below each tier-2 directory (tiers 3..8). */
const LEVELS = 6;
/** Share of the entries below the top tiers that are directories. */
const DIR_SHARE = 0.12;

function settings() {
  const archive = process.env['SCALE_ARCHIVE'] || 'server';
  if (archive !== 'server' && archive !== 'file') throw new Error('SCALE_ARCHIVE must be server or file');
  const verify = process.env['SCALE_VERIFY'] || 'full';
  if (!['full', 'none'].includes(verify)) throw new Error('SCALE_VERIFY must be full or none');
  return {
    entries: envInt('SCALE_ENTRIES', 1_000_000, 2000),
    tier1: envInt('SCALE_TIER1', 20, 1),
    tier2: envInt('SCALE_TIER2', 49, 1),
    maxFileBytes: envInt('SCALE_MAX_FILE_BYTES', 4096, 0),
    maxS: envInt('SCALE_MAX_S', 3600, 10),
    faRuns: envInt('SCALE_FA_RUNS', 3, 1),
    faEveryS: envInt('SCALE_FA_EVERY_S', 30, 1),
    idleS: envInt('SCALE_IDLE_S', 10, 1),
    archive: archive as 'server' | 'file',
    verify: verify as 'full' | 'none',
    archiveDir: process.env['SCALE_ARCHIVE_DIR'] ? resolve(process.env['SCALE_ARCHIVE_DIR']) : null,
    benchParent: resolve(process.env['BENCH_DIR'] || '/var/tmp'),
    output: process.env['SCALE_OUTPUT'] ? resolve(process.env['SCALE_OUTPUT']) : null,
    keep: envFlag('BENCH_KEEP'),
    serverLogLevel: process.env['BENCH_SERVER_LOG_LEVEL'] || 'warn',
  };
}
type Settings = ReturnType<typeof settings>;

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the tree

/**
 * The shape: the root holds `tier1` directories dNN; each holds `tier2`
 * directories sNN and one file README (the top tiers: tier1 * (tier2 + 2)
 * entries, 1,020 with the defaults). Below every tier-2 directory a subtree
 * reaching tier 8: first a chain b0/b0/.../b0 (6 levels), then more
 * directories b0/b1 filled breadth first, DIR_SHARE of the subtree's entries;
 * its files (fNNN.txt, 0..maxFileBytes bytes, content derived from the path)
 * are dealt round-robin over the subtree's directories. Every entry but the
 * root counts, as the archive counts.
 */
interface Shape {
  entries: number;
  top_entries: number;
  subtrees: number;
  directories: number;
  files: number;
  bytes: number;
  dirs_per_subtree: [number, number];
  max_file_bytes: number;
}

function fileSize(rel: string, max: number): number {
  return max === 0 ? 0 : crc32(rel) % (max + 1);
}

function fileContent(rel: string, size: number): Buffer {
  const line = Buffer.from(`${rel}\n`);
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += line.length) line.copy(out, off, 0, Math.min(line.length, size - off));
  return out;
}

/** The relative directory paths of a subtree with `n` directories (the chain first, then breadth first). */
function subtreeDirs(n: number): string[] {
  const chain: string[] = [];
  for (let l = 1, p = 'b0'; l <= LEVELS; l++, p += '/b0') chain.push(p);
  const out = [...chain];
  const inChain = new Set(chain);
  let level = ['b0', 'b1'];
  for (let l = 1; l <= LEVELS && out.length < n; l++) {
    const next: string[] = [];
    for (const d of level) {
      if (!inChain.has(d) && out.length < n) out.push(d);
      next.push(`${d}/b0`, `${d}/b1`);
    }
    level = next;
  }
  return out.slice(0, n);
}

interface TreeItem { rel: string; dir: boolean; size: number }

class Tree {
  readonly subtrees: number;
  readonly top: number;
  constructor(readonly s: Settings) {
    this.subtrees = s.tier1 * s.tier2;
    this.top = s.tier1 * (s.tier2 + 2);
    const minPer = 2 * LEVELS + 1;
    if (s.entries < this.top + this.subtrees * minPer) throw new Error(`SCALE_ENTRIES=${s.entries} is too few for this shape (at least ${this.top + this.subtrees * minPer})`);
  }

  tier2(k: number): string {
    return `d${pad(Math.floor(k / this.s.tier2), 2)}/s${pad(k % this.s.tier2, 2)}`;
  }

  subtreeEntries(k: number): number {
    const rest = this.s.entries - this.top;
    return Math.floor(rest / this.subtrees) + (k < rest % this.subtrees ? 1 : 0);
  }

  /** Every object, parents before children. */
  *items(): Generator<TreeItem> {
    for (let a = 0; a < this.s.tier1; a++) {
      yield { rel: `d${pad(a, 2)}`, dir: true, size: 0 };
      const readme = `d${pad(a, 2)}/README`;
      yield { rel: readme, dir: false, size: fileSize(readme, this.s.maxFileBytes) };
    }
    for (let k = 0; k < this.subtrees; k++) yield { rel: this.tier2(k), dir: true, size: 0 };
    for (let k = 0; k < this.subtrees; k++) {
      const e = this.subtreeEntries(k);
      const nd = Math.min(Math.max(LEVELS, Math.round(e * DIR_SHARE)), 2 ** (LEVELS + 1) - 2);
      const base = this.tier2(k);
      const dirs = subtreeDirs(nd).map((d) => `${base}/${d}`);
      for (const d of dirs) yield { rel: d, dir: true, size: 0 };
      const all = [base, ...dirs];
      const counts = new Array<number>(all.length).fill(0);
      for (let f = 0; f < e - nd; f++) {
        const i = f % all.length;
        const rel = `${all[i]}/f${pad(counts[i]!++, 3)}.txt`;
        yield { rel, dir: false, size: fileSize(rel, this.s.maxFileBytes) };
      }
    }
  }

  /** The first file of the deepest chain directory of subtree k: 8 directory levels, 6 tiers below the depth. */
  deepFile(k: number): string {
    return `${this.tier2(k)}/${Array.from({ length: LEVELS }, () => 'b0').join('/')}/f000.txt`;
  }

  /** The tier-3 directory of subtree k (absent from the store while the subtree is untouched). */
  tier3(k: number): string {
    return `${this.tier2(k)}/b0`;
  }
}

/** Writes the tree into volume `name` of the archive in `dataDir` through ArchiveStore.applyBatch. */
function buildArchive(dataDir: string, name: string, tree: Tree): Shape {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = ArchiveStore.open(dataDir);
  try {
    const state = store.createVolume(name);
    if (state.appliedSeq !== 0) throw new Error(`volume ${name} in ${dataDir} is not empty`);
    let seq = 0;
    let frames: Buffer[] = [];
    let bytes = 0;
    const flush = (): void => {
      if (frames.length === 0) return;
      store.applyBatch(name, state.epoch, Buffer.concat(frames));
      frames = [];
      bytes = 0;
    };
    const push = (r: NewRecord): void => {
      const f = encodeRecord({ ...r, seq: ++seq } as StrataRecord);
      frames.push(f);
      bytes += f.length;
      if (bytes >= 32 * MiB) flush();
    };
    const ids = new Map<string, string>([['', ROOT_ID]]);
    let next = 2;
    const t: Attrs['mtime'] = [1_700_000_000, 0];
    const shape: Shape = { entries: 0, top_entries: tree.top, subtrees: tree.subtrees, directories: 0, files: 0, bytes: 0, dirs_per_subtree: [Infinity, 0], max_file_bytes: tree.s.maxFileBytes };
    let lastReport = Date.now();
    for (const it of tree.items()) {
      const slash = it.rel.lastIndexOf('/');
      const parent = ids.get(slash < 0 ? '' : it.rel.slice(0, slash));
      if (parent === undefined) throw new Error(`generator: ${it.rel} before its parent`);
      const id = (next++).toString(16).padStart(32, '0');
      const attrs: Attrs = { mode: it.dir ? 0o040755 : 0o100644, uid: 0, gid: 0, size: 0, atime: t, mtime: t, rdev: 0 };
      push({ op: 'create', parent, name: it.rel.slice(slash + 1), id, attrs, parentMtime: t });
      if (it.dir) {
        ids.set(it.rel, id);
        shape.directories++;
      } else {
        if (it.size > 0) push({ op: 'write', id, offset: 0, data: fileContent(it.rel, it.size) });
        shape.files++;
        shape.bytes += it.size;
      }
      shape.entries++;
      if (Date.now() - lastReport > 15_000) {
        lastReport = Date.now();
        progress(`  building: ${shape.entries} of ${tree.s.entries} entries`);
      }
    }
    flush();
    // The files' ids are not needed once written: only directories were kept.
    const perSubtree = (shape.directories - tree.s.tier1 - tree.subtrees) / tree.subtrees;
    shape.dirs_per_subtree = [Math.floor(perSubtree), Math.ceil(perSubtree)];
    return shape;
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------- the daemon, observed

interface RestoreStatus {
  phase: string;
  entries: { done: number; total: number };
  bytes: { done: number; total: number };
  passes?: number;
  lastError?: string | null;
  fetch: { dirFetches: number; rangeFetches: number; bytesFetched: number; failures?: number };
}

interface LoopDelay { p50: number; p99: number; max: number; maxSinceStart: number }
/** The daemon's event-loop delay from its last status (older daemons do not say). */
let lastLoopDelay: LoopDelay | null = null;

async function restoreStatus(mnt: string, timeoutMs = 10_000): Promise<RestoreStatus> {
  const st = (await callControl(mnt, { cmd: 'status' }, timeoutMs)) as { restore?: RestoreStatus | null; eventLoopDelayMs?: LoopDelay };
  if (!st.restore) throw new Error(`${mnt}: status has no restore`);
  lastLoopDelay = st.eventLoopDelayMs ?? null;
  return st.restore;
}

function procStatus(pid: number): { rss_mib: number; hwm_mib: number } | null {
  try {
    const t = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
    return { rss_mib: sig(kb('VmRSS') / 1024, 4), hwm_mib: sig(kb('VmHWM') / 1024, 4) };
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('strata.js');
  } catch {
    return false;
  }
}

/**
 * The mount sampler: statx(AT_STATX_FORCE_SYNC) of a file and of a directory
 * (the kernel's attribute cache would answer a plain stat for 60 s; this
 * flag sends every one to the daemon) and a lookup of a new missing name each
 * time (a negative entry is cached per name), every ~100 ms, one JSON line
 * each. Python's ctypes: Node has no statx with flags.
 */
const SAMPLER = String.raw`
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, FORCE_SYNC, NOFOLLOW, BASIC = -100, 0x2000, 0x100, 0x7ff
buf = ctypes.create_string_buffer(512)
def probe(path):
    t = time.monotonic()
    r = libc.statx(AT_FDCWD, path.encode(), FORCE_SYNC | NOFOLLOW, BASIC, buf)
    ms = (time.monotonic() - t) * 1000
    return ms, (ctypes.get_errno() if r != 0 else 0)
mnt, f, d, m = sys.argv[1:5]
i = 0
while True:
    i += 1
    fm, fe = probe(os.path.join(mnt, f))
    dm, de = probe(os.path.join(mnt, d))
    mm, me = probe(os.path.join(mnt, m, '.no-such-name-%d-%d' % (os.getpid(), i)))
    print(json.dumps({'t': time.time(), 'file': fm, 'dir': dm, 'missing': mm, 'errno': [fe, de, me]}), flush=True)
    time.sleep(0.1)
`;

interface Sample { t: number; file: number; dir: number; missing: number; errno: [number, number, number] }

function readSamples(path: string): Sample[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Sample);
}

function pct(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function latencySummary(xs: number[]): { n: number; median_ms: number | null; p99_ms: number | null; max_ms: number | null } {
  return { n: xs.length, median_ms: sigOrNull(median(xs), 3), p99_ms: sigOrNull(pct(xs, 99), 3), max_ms: sigOrNull(xs.length ? Math.max(...xs) : null, 4) };
}

function catTimed(path: string, want: Buffer): { ms: number; error: string | null } {
  const r = run('cat', [path], { allowFailure: true, timeoutMs: 60_000 });
  let error: string | null = null;
  if (r.status !== 0) error = `cat exited ${r.status}: ${r.stderr.trim()}`;
  else if (r.stdout !== want.toString('utf8')) error = `cat printed ${r.stdout.length} bytes that differ from the ${want.length} written`;
  return { ms: sig(r.seconds * 1000, 4), error };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const s = settings();
  if (process.getuid?.() !== 0) throw new Error('the scale benchmark needs root (mounts)');
  const tree = new Tree(s);
  mkdirSync(s.benchParent, { recursive: true });
  const workDir = mkdtempSync(join(s.benchParent, 'strata-bench-scale-'));
  const L = { mnt: join(workDir, 'mnt'), rec: join(workDir, 'rec'), server: join(workDir, 'server'), sampler: join(workDir, 'sampler.py'), samples: join(workDir, 'samples.jsonl') };
  for (const d of [L.mnt, L.rec]) mkdirSync(d, { recursive: true });
  // SCALE_ARCHIVE_DIR: the archive (in its data/ directory) is kept there and reused by later runs.
  const server = new ArchiveServerProcess(s.archiveDir ?? L.server, s.serverLogLevel);
  const dataDir = server.dataDir;
  const volume = `scale-${s.entries}-${s.tier1}x${s.tier2}-${s.maxFileBytes}`;
  const mount = new StrataMount('', L.mnt, [], false);
  const pids: number[] = [];
  let sampler: ChildProcess | null = null;
  let fatal: string | null = null;
  const errors: Record<string, string> = {};
  const results: Record<string, unknown> = {};
  const problems: string[] = [];

  const unmountAll = (): { seconds: number; status: number; output: string } => {
    const r = isMountPoint(L.mnt) ? run(process.execPath, [STRATA_CLI, 'unmount', L.mnt], { allowFailure: true, timeoutMs: 120_000 }) : { seconds: 0, status: 0, stdout: '', stderr: '' };
    if (isMountPoint(L.mnt)) mount.unmount();
    for (const pid of pids) {
      for (let i = 0; i < 100 && alive(pid); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      if (alive(pid)) {
        progress(`daemon ${pid} still running 10 s after its unmount: SIGTERM`);
        try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      }
    }
    return { seconds: sig(r.seconds), status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
  };
  let cleanedUp = false;
  const cleanup = (): void => {
    if (cleanedUp) return;
    cleanedUp = true;
    sampler?.kill('SIGTERM');
    unmountAll();
    server.stop();
    if (isMountPoint(L.mnt)) progress(`WARNING: ${L.mnt} still mounted; leaving ${workDir}`);
    else if (s.keep) progress(`BENCH_KEEP: leaving ${workDir}`);
    else removeWorkDir(workDir);
  };
  installInterruptHandlers(cleanup);

  const recover = (store: string, extra: string[]): { wall_s: number; daemon_serving_s: number | null; pid: number } => {
    const url = s.archive === 'server' ? server.url : `file://${dataDir}`;
    const auth = s.archive === 'server' ? ['--token-file', server.tokenFile] : [];
    const r = run(process.execPath, [STRATA_CLI, 'recover', '--archive', url, ...auth, '--volume', volume, '--store', store, '--depth', '2', ...extra, L.mnt],
      { allowFailure: true, timeoutMs: 300_000 });
    const pid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1] ?? NaN);
    if (Number.isFinite(pid)) pids.push(pid);
    if (r.status !== 0) throw new Error(`strata recover failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}`);
    const serving = /serving after ([\d.]+) s/.exec(r.stdout);
    return { wall_s: sig(r.seconds), daemon_serving_s: serving?.[1] ? Number(serving[1]) : null, pid };
  };

  const machine = machineFacts(workDir, 'not used');
  const head = run('git', ['-C', REPO, 'rev-parse', 'HEAD'], { allowFailure: true }).stdout.trim();
  const dirty = run('git', ['-C', REPO, 'status', '--porcelain'], { allowFailure: true }).stdout.trim() !== '';
  let shape: Shape | null = null;
  let buildS: number | null = null;
  try {
    // ------------------------------------------------------------ the archive
    const have = existsSync(join(dataDir, 'archive.db')) && (() => {
      const st = ArchiveStore.open(dataDir);
      try { return st.volumeState(volume) !== null; } finally { st.close(); }
    })();
    if (have) {
      progress(`reusing volume ${volume} in ${dataDir}`);
      const shapeFile = join(dataDir, `${volume}.shape.json`);
      shape = existsSync(shapeFile) ? (JSON.parse(readFileSync(shapeFile, 'utf8')) as Shape) : null;
    } else {
      progress(`building volume ${volume} (${s.entries} entries) in ${dataDir} through ArchiveStore.applyBatch`);
      const tb = Date.now();
      shape = buildArchive(dataDir, volume, tree);
      buildS = sig((Date.now() - tb) / 1000);
      writeFileSync(join(dataDir, `${volume}.shape.json`), JSON.stringify(shape));
      progress(`  built in ${buildS} s: ${shape.directories} directories, ${shape.files} files, ${(shape.bytes / MiB).toFixed(0)} MiB`);
    }
    if (s.archive === 'server') {
      await server.start();
      progress(`archive server at ${server.url}`);
    }
    writeFileSync(L.sampler, SAMPLER);

    /** Subtrees for the first accesses: spread over the volume (first, last, middle, ...). */
    const spreadPick = (n: number): number[] => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push(Math.min(tree.subtrees - 1, Math.round(((i * 0.618034) % 1) * (tree.subtrees - 1))));
      return out;
    };

    // ------------------------------------------------------------ 1. first access without the background restore
    await checkpoint();
    const without: { path: string; ms: number; dir_fetches: number; range_fetches: number; recover_wall_s: number; after_recover: boolean }[] = [];
    const picks = spreadPick(s.faRuns * 3);
    for (let i = 0; i < s.faRuns; i++) {
      const k = picks[i * 3]!;
      await checkpoint();
      const store = join(L.rec, `nobg-${k}`);
      const r = recover(store, ['--no-background-restore']);
      try {
        if (i === 0) {
          // The floor: the same sampler on the same mount with nothing else to do (the machine's own load shows here).
          const idleFile = join(workDir, 'idle.jsonl');
          const idle = spawn('python3', [L.sampler, L.mnt, 'd00/README', tree.tier2(0), 'd00'], { stdio: ['ignore', openSync(idleFile, 'w'), 'ignore'] });
          await sleep(s.idleS * 1000);
          idle.kill('SIGTERM');
          await sleep(200);
          const xs = readSamples(idleFile);
          results['mount_latency_idle'] = {
            note: `the sampler for ${s.idleS} s on a recovered mount without the background restore, before any access`,
            file: latencySummary(xs.map((x) => x.file)), dir: latencySummary(xs.map((x) => x.dir)), missing: latencySummary(xs.map((x) => x.missing)),
            longest_ms: sigOrNull(xs.length ? Math.max(...xs.map((x) => Math.max(x.file, x.dir, x.missing))) : null, 4),
            load_1m: loadavg()[0],
          };
        }
        // The first cat right after recover returned (the daemon's first requests to the archive), then two more
        // of other subtrees a second apart (like those during the background restore, which come later).
        for (const [j, kk] of [k, picks[i * 3 + 1]!, picks[i * 3 + 2]!].entries()) {
          if (j > 0) await sleep(1000);
          const rel = tree.deepFile(kk);
          const before = await restoreStatus(L.mnt);
          const c = catTimed(join(L.mnt, rel), fileContent(rel, fileSize(rel, s.maxFileBytes)));
          const after = await restoreStatus(L.mnt);
          if (c.error) problems.push(`cat ${rel} (no background restore): ${c.error}`);
          without.push({ path: rel, ms: c.ms, dir_fetches: after.fetch.dirFetches - before.fetch.dirFetches, range_fetches: after.fetch.rangeFetches - before.fetch.rangeFetches, recover_wall_s: r.wall_s, after_recover: j === 0 });
          progress(`first access without background restore: cat ${rel}: ${c.ms} ms${j === 0 ? ' (right after recover)' : ''}`);
        }
      } finally {
        unmountAll();
        removeWorkDir(store);
      }
    }
    results['first_access_without_background'] = {
      runs: without,
      median_ms: sigOrNull(median(without.map((x) => x.ms))),
      median_right_after_recover_ms: sigOrNull(median(without.filter((x) => x.after_recover).map((x) => x.ms))),
      median_later_ms: sigOrNull(median(without.filter((x) => !x.after_recover).map((x) => x.ms))),
    };

    // ------------------------------------------------------------ 2. the full restore, observed
    await checkpoint();
    const store = join(L.rec, 'full');
    progress(`strata recover --depth 2 of ${volume}, background restore on`);
    const r = recover(store, []);
    progress(`  serving: recover returned after ${r.wall_s} s (daemon: ${r.daemon_serving_s} s); daemon pid ${r.pid}`);
    const tStart = Date.now();
    sampler = spawn('python3', [L.sampler, L.mnt, `d00/README`, tree.tier2(0), 'd00'], { stdio: ['ignore', openSync(L.samples, 'w'), 'ignore'] });
    const series: { t_s: number; entries_done: number; bytes_done: number; rss_mib: number | null; passes: number | null; status_ms: number; loop: LoopDelay | null }[] = [];
    const during: { t_s: number; path: string; ms: number; dir_fetches_incl_background: number; error: string | null }[] = [];
    let last: RestoreStatus | null = null;
    let completeS: number | null = null;
    let allEntriesS: number | null = null;
    let nextCat = 0;
    let statusFailures = 0;
    const faOrder = spreadPick(tree.subtrees);
    let faIdx = 0;
    for (;;) {
      await checkpoint();
      const t = (Date.now() - tStart) / 1000;
      const ts = Date.now();
      let st: RestoreStatus | null = null;
      try {
        st = await restoreStatus(L.mnt, 30_000);
      } catch (err) {
        statusFailures++;
        progress(`  status failed at ${t.toFixed(0)} s: ${errMsg(err)}`);
      }
      const statusMs = Date.now() - ts;
      const ps = procStatus(r.pid);
      if (st) {
        last = st;
        series.push({ t_s: sig(t), entries_done: st.entries.done, bytes_done: st.bytes.done, rss_mib: ps?.rss_mib ?? null, passes: st.passes ?? null, status_ms: statusMs, loop: lastLoopDelay });
        if (allEntriesS === null && st.entries.done >= st.entries.total) allEntriesS = sig(t);
        if (st.phase === 'complete') {
          completeS = sig(t);
          break;
        }
      }
      if (t >= s.maxS) break;
      // A first access now and then, of a subtree the restore has not touched yet.
      if (t >= nextCat) {
        nextCat = t + s.faEveryS;
        while (faIdx < faOrder.length && existsSync(join(store, tree.tier3(faOrder[faIdx]!)))) faIdx++;
        const k = faOrder[faIdx++];
        if (k !== undefined) {
          const rel = tree.deepFile(k);
          const before = st;
          const c = catTimed(join(L.mnt, rel), fileContent(rel, fileSize(rel, s.maxFileBytes)));
          const after = await restoreStatus(L.mnt, 30_000).catch(() => null);
          if (c.error) problems.push(`cat ${rel} during the background restore: ${c.error}`);
          during.push({ t_s: sig(t), path: rel, ms: c.ms, dir_fetches_incl_background: before && after ? after.fetch.dirFetches - before.fetch.dirFetches : -1, error: c.error });
          progress(`  ${t.toFixed(0)} s: first access of ${rel} during the background restore: ${c.ms} ms`);
        }
      }
      if (series.length % 30 === 1 && st) progress(`  ${t.toFixed(0)} s: ${st.entries.done} of ${st.entries.total} entries, ${(st.bytes.done / MiB).toFixed(0)} of ${(st.bytes.total / MiB).toFixed(0)} MiB, pass ${st.passes}, RSS ${ps?.rss_mib} MiB`);
      await sleep(Math.max(0, 1000 - (Date.now() - ts)));
    }
    const hwm = procStatus(r.pid)?.hwm_mib ?? null;
    sampler.kill('SIGTERM');
    sampler = null;
    await sleep(200);
    const samples = readSamples(L.samples);
    const endT = tStart / 1000 + (completeS ?? (Date.now() - tStart) / 1000);
    const inRestore = samples.filter((x) => x.t <= endT);
    const unmount = unmountAll();
    progress(`  ${completeS !== null ? `complete after ${completeS} s` : `NOT complete after ${s.maxS} s`}; peak RSS ${hwm} MiB; unmount ${unmount.seconds} s (exit ${unmount.status})`);

    // The rate: entries and bytes made local per 10 s interval.
    const rate: { t_s: number; entries_per_s: number; mib_per_s: number }[] = [];
    for (let i = 0, j = 0; i < series.length; i++) {
      if (series[i]!.t_s - series[j]!.t_s >= 10 || i === series.length - 1) {
        const a = series[j]!;
        const b = series[i]!;
        if (b.t_s > a.t_s) rate.push({ t_s: b.t_s, entries_per_s: Math.round((b.entries_done - a.entries_done) / (b.t_s - a.t_s)), mib_per_s: sig((b.bytes_done - a.bytes_done) / MiB / (b.t_s - a.t_s), 3) });
        j = i;
      }
    }
    const entryRates = rate.map((x) => x.entries_per_s);
    const tenth = Math.max(1, Math.floor(entryRates.length / 10));
    results['restore'] = {
      time_to_serve_s: r.wall_s,
      time_to_serve_daemon_s: r.daemon_serving_s,
      completed: completeS !== null,
      time_to_complete_s: completeS,
      time_to_complete_from_recover_start_s: completeS !== null ? sig(completeS + r.wall_s) : null,
      all_entries_local_s: allEntriesS,
      tail_after_all_entries_local_s: completeS !== null && allEntriesS !== null ? sig(completeS - allEntriesS) : null,
      last_status: last,
      passes: last?.passes ?? null,
      entries_per_s_overall: completeS !== null && last ? Math.round(last.entries.total / completeS) : null,
      entries_per_s_first_tenth: median(entryRates.slice(0, tenth)),
      entries_per_s_last_tenth_before_all_local: (() => {
        const upTo = allEntriesS === null ? rate : rate.filter((x) => x.t_s <= allEntriesS!);
        return median(upTo.slice(-Math.max(1, Math.floor(upTo.length / 10))).map((x) => x.entries_per_s));
      })(),
      daemon_peak_rss_mib: hwm,
      daemon_rss_max_sampled_mib: Math.max(...series.map((x) => x.rss_mib ?? 0)),
      status_call_max_ms: Math.max(0, ...series.map((x) => x.status_ms)),
      daemon_event_loop_delay_ms: series.length > 0 && series[series.length - 1]!.loop ? {
        note: 'the daemon\'s own figure (status eventLoopDelayMs, 10-s windows): how late its JavaScript thread ran what was due',
        max_since_start: series[series.length - 1]!.loop!.maxSinceStart,
        window_p99_median: median(series.filter((x, i) => x.loop && i % 10 === 0).map((x) => x.loop!.p99)),
        window_p99_max: Math.max(...series.map((x) => x.loop?.p99 ?? 0)),
      } : null,
      status_failures: statusFailures,
      mount_latency_during_restore: {
        note: 'statx(AT_STATX_FORCE_SYNC) of d00/README and of d00/s00, lookup of a new missing name in d00, every ~100 ms while the background restore ran; each goes to the daemon',
        file: latencySummary(inRestore.map((x) => x.file)),
        dir: latencySummary(inRestore.map((x) => x.dir)),
        missing: latencySummary(inRestore.map((x) => x.missing)),
        longest_ms: sigOrNull(inRestore.length ? Math.max(...inRestore.map((x) => Math.max(x.file, x.dir, x.missing))) : null, 4),
        unexpected_errnos: inRestore.filter((x) => x.errno[0] !== 0 || x.errno[1] !== 0 || x.errno[2] !== 2).length,
        over_50ms: inRestore.filter((x) => Math.max(x.file, x.dir, x.missing) > 50).slice(0, 200)
          .map((x) => ({ t_s: sig(x.t - tStart / 1000, 4), file: sig(x.file, 3), dir: sig(x.dir, 3), missing: sig(x.missing, 3) })),
      },
      first_access_during_background: { runs: during, median_ms: sigOrNull(median(during.map((x) => x.ms))), max_ms: during.length ? Math.max(...during.map((x) => x.ms)) : null },
      unmount,
      rate_per_10s: rate,
      rss_series_mib: series.filter((_, i) => i % 10 === 0).map((x) => [x.t_s, x.rss_mib]),
    };
    const fa = results['first_access_without_background'] as { median_ms: number | null; median_later_ms: number | null };
    const dm = (results['restore'] as { first_access_during_background: { median_ms: number | null } }).first_access_during_background.median_ms;
    results['first_access_ratio_during_over_without'] = dm !== null && fa.median_ms ? sig(dm / fa.median_ms, 3) : null;
    results['first_access_ratio_during_over_without_later'] = dm !== null && fa.median_later_ms ? sig(dm / fa.median_later_ms, 3) : null;

    // ------------------------------------------------------------ 3. the restored tree
    if (completeS !== null && s.verify === 'full') {
      await checkpoint();
      progress('checking the restored store against the generator');
      const tv = Date.now();
      const v = verifyStore(store, tree);
      results['verify'] = { ...v, seconds: sig((Date.now() - tv) / 1000) };
      if (v.problems.length > 0) problems.push(...v.problems.slice(0, 20).map((p) => `restored tree: ${p}`));
      progress(`  ${v.entries} entries checked: ${v.problems.length === 0 ? 'identical' : `${v.problems.length} problems`}`);
    }
  } catch (err) {
    fatal = errMsg(err);
    progress(`FATAL: ${fatal}`);
  } finally {
    cleanup();
  }

  const rs = results['restore'] as { time_to_serve_s: number; time_to_complete_s: number | null; daemon_peak_rss_mib: number | null; mount_latency_during_restore: { longest_ms: number | null }; first_access_during_background: { median_ms: number | null }; tail_after_all_entries_local_s: number | null; unmount: { seconds: number } } | undefined;
  const fa = results['first_access_without_background'] as { median_ms: number | null } | undefined;
  const doc = {
    ...documentHead('strata-bench-scale/1', startedAt, t0, fatal === null && !wasInterrupted(), fatal, errors),
    strata_problems: problems,
    summary: {
      goals_met: 0, goals_total: 0, all_met: true,
      table: rs ? {
        time_to_serve_s: rs.time_to_serve_s,
        time_to_complete_s: rs.time_to_complete_s,
        tail_after_all_entries_local_s: rs.tail_after_all_entries_local_s,
        daemon_peak_rss_mib: rs.daemon_peak_rss_mib,
        longest_mount_latency_ms: rs.mount_latency_during_restore.longest_ms,
        first_access_ms_during_background: rs.first_access_during_background.median_ms,
        first_access_ms_without_background: fa?.median_ms ?? null,
        unmount_s: rs.unmount.seconds,
      } : {},
    },
    machine,
    interference: { load_1m_at_end: loadavg()[0] },
    strata: { commit: head, dirty },
    config: { ...s, volume, archive_url: s.archive === 'server' ? 'strata://127.0.0.1:PORT (strata archive serve, data on the same disk)' : 'file:// (the daemon\'s archive worker thread)' },
    build: { shape, seconds: buildS, how: 'ArchiveStore.applyBatch in this process: create and write records, 32 MiB batches' },
    results,
  };
  return finishDocument(doc, s.output, false);
}

/** Walks the restored store (not the mount) and compares every entry with the generator. */
function verifyStore(store: string, tree: Tree): { entries: number; problems: string[] } {
  const problems: string[] = [];
  let entries = 0;
  const buf = Buffer.alloc(1 << 20);
  const seen = new Set<string>();
  for (const it of tree.items()) {
    entries++;
    const p = join(store, it.rel);
    try {
      if (it.dir) {
        seen.add(it.rel);
        continue;
      }
      const fd = openSync(p, 'r');
      try {
        const n = readSync(fd, buf, 0, buf.length, 0);
        if (!buf.subarray(0, n).equals(fileContent(it.rel, it.size))) problems.push(`${it.rel}: content differs (${n} bytes, ${it.size} written)`);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      problems.push(`${it.rel}: ${errMsg(err)}`);
    }
    if (problems.length > 1000) break;
  }
  // Nothing extra: every directory holds exactly the generator's names.
  let extra = 0;
  const walk = (rel: string): void => {
    for (const name of readdirSync(rel === '' ? store : join(store, rel))) {
      if (rel === '' && name === '.strata') continue;
      const child = rel === '' ? name : `${rel}/${name}`;
      extra++;
      if (seen.has(child)) walk(child);
    }
  };
  walk('');
  if (extra !== entries) problems.push(`the store holds ${extra} entries, the volume ${entries}`);
  return { entries, problems };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:scale: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
