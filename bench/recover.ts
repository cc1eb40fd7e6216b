// `npm run bench:recover`: what `strata recover` promises, in one run, against
// a real `strata archive serve` process on 127.0.0.1:
//   1. time to serve (`strata recover --depth 2` returning) for volumes of
//      different sizes that share the same top tiers, next to the time until
//      the whole volume is local (the "restore everything, then serve" baseline);
//   2. the first access of a file 6 tiers below the depth, with the directory
//      fetches it took (and, for reference, the same while the background
//      restore runs);
//   3. background restore throughput vs `cp -a` of the same data on the same disk.
// ONE JSON document on stdout, progress on stderr. See bench/README.md
// ("Recovery benchmark").
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callControl } from '../src/daemon/control.js';
import { ArchiveServerProcess, drain } from './lib/mirror-archive.js';
import { envFlag, envInt } from './lib/env.js';
import { checkpoint, documentHead, finishDocument, installInterruptHandlers, Interrupted, partRunner, progress, removeWorkDir, run, wasInterrupted } from './lib/proc.js';
import { median, sig, sigOrNull, spread } from './lib/stats.js';
import { STRATA_CLI, StrataMount } from './lib/strata.js';
import { cpuBusyPercent, dropCaches, isMountPoint, machineFacts, syncAll } from './lib/system.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;
const PARTS = ['serve', 'first_access', 'throughput'] as const;
type Part = (typeof PARTS)[number];
// Issue 16's goals (time to serve <= 0.5 s flat; first access 6 tiers down <= 10 ms in one round trip).
const GOAL_SERVE_S = 0.5;
const GOAL_RESTORE_RATIO = 100;
const GOAL_FIRST_ACCESS_MS = 10;
const GOAL_THROUGHPUT_RATIO = 0.8;
/** Directories below each tier-2 directory: tiers 3..8 (a chain). */
const CHAIN = 6;

// ---------------------------------------------------------------- settings

function settings() {
  const only = process.env['BENCH_RECOVER_ONLY'] ? process.env['BENCH_RECOVER_ONLY'].split(',').map((s) => s.trim()).filter(Boolean) : null;
  for (const p of only ?? []) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`BENCH_RECOVER_ONLY: unknown part ${p} (known: ${PARTS.join(', ')})`);
  const sizesRaw = process.env['STRATA_BENCH_SIZES'] || '10000,100000';
  const sizes = sizesRaw.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`STRATA_BENCH_SIZES must be a comma-separated list of entry counts (got "${sizesRaw}")`);
  sizes.sort((a, b) => a - b);
  return {
    sizes: [...new Set(sizes)],
    runs: envInt('BENCH_RUNS', 3, 1),
    fullRuns: envInt('BENCH_RECOVER_FULL_RUNS', 1, 0),
    fullMaxS: envInt('BENCH_RECOVER_FULL_MAX_S', 180, 1),
    depth: envInt('BENCH_RECOVER_DEPTH', 2, 1),
    fanout: envInt('BENCH_RECOVER_FANOUT', 20, 1),
    fileBytes: envInt('BENCH_RECOVER_FILE_BYTES', 300, 1),
    tpMiB: envInt('BENCH_RECOVER_MIB', 512, 1),
    tpRuns: envInt('BENCH_RECOVER_TP_RUNS', 2, 1),
    tpMaxS: envInt('BENCH_RECOVER_TP_MAX_S', 600, 1),
    buildTimeoutS: envInt('BENCH_RECOVER_BUILD_TIMEOUT_S', 900, 1),
    benchParent: resolve(process.env['BENCH_DIR'] || '/var/tmp'),
    only: only as Part[] | null,
    serverLogLevel: process.env['BENCH_SERVER_LOG_LEVEL'] || 'warn',
    output: process.env['BENCH_RECOVER_OUTPUT'] ? resolve(process.env['BENCH_RECOVER_OUTPUT']) : null,
    keep: envFlag('BENCH_KEEP'),
    strict: envFlag('BENCH_STRICT'),
  };
}
type Settings = ReturnType<typeof settings>;

// ---------------------------------------------------------------- helpers

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function ratioOrNull(num: number | null | undefined, den: number | null | undefined): number | null {
  if (num === null || num === undefined || den === null || den === undefined || den === 0) return null;
  return num / den;
}

function medianOf(xs: readonly (number | null)[]): number | null {
  return median(xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)));
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Running and still a strata process (not a recycled pid). */
function strataAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('strata.js');
  } catch {
    return false;
  }
}

function gitFacts(): { commit: string; dirty: boolean } {
  const head = run('git', ['-C', REPO, 'rev-parse', 'HEAD'], { allowFailure: true, timeoutMs: 10_000 });
  const st = run('git', ['-C', REPO, 'status', '--porcelain'], { allowFailure: true, timeoutMs: 30_000 });
  return { commit: head.status === 0 ? head.stdout.trim() : 'unknown', dirty: st.stdout.trim() !== '' };
}

function logTail(store: string, lines = 5): string {
  const log = join(store, '.strata', 'daemon.log');
  if (!existsSync(log)) return '';
  return readFileSync(log, 'utf8').trim().split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------- the trees

/**
 * The small-file volumes. Every size has the same top tiers: the root holds
 * `fanout` directories dNN (tier 1), each holding `fanout` directories sNN
 * (tier 2). Everything else is below the tier-2 directories: under each, a
 * chain of CHAIN directories t3/t4/.../t8 (tiers 3..8) and the files spread
 * over the 7 directories sNN, t3..t8. The entry count (every object but the
 * root, as the archive counts) is exactly `total`.
 */
interface TreeShape {
  total: number;
  top_entries: number;
  tier2_dirs: number;
  files: number;
  directories: number;
  file_bytes: number;
  max_entries_per_directory: number;
}

function fileContent(rel: string, bytes: number): Buffer {
  const line = Buffer.from(`${rel}\n`);
  const out = Buffer.alloc(bytes);
  for (let off = 0; off < bytes; off += line.length) line.copy(out, off, 0, Math.min(line.length, bytes - off));
  return out;
}

function tier2Dir(a: number, b: number): string {
  return `d${pad(a, 2)}/s${pad(b, 2)}`;
}

/** The file in the deepest directory (tier 8) of tier-2 directory (a, b): store-relative path. */
function deepFile(a: number, b: number): string {
  const chain = Array.from({ length: CHAIN }, (_, i) => `t${i + 3}`).join('/');
  return `${tier2Dir(a, b)}/${chain}/f000.txt`;
}

function shapeOf(total: number, fanout: number, fileBytes: number): TreeShape & { perSubtree: (k: number) => number } {
  const top = fanout + fanout * fanout;
  const subtrees = fanout * fanout;
  const rest = total - top;
  // Each subtree needs its chain and at least one file per chain level.
  const minPer = CHAIN + CHAIN + 1;
  if (rest < subtrees * minPer) {
    throw new Error(`STRATA_BENCH_SIZES: ${total} entries is too few for BENCH_RECOVER_FANOUT=${fanout} (needs at least ${top + subtrees * minPer}); lower the fan-out`);
  }
  const perSubtree = (k: number): number => Math.floor(rest / subtrees) + (k < rest % subtrees ? 1 : 0);
  const files = rest - subtrees * CHAIN;
  const maxFilesPerDir = Math.ceil((Math.floor(rest / subtrees) + 1 - CHAIN) / (CHAIN + 1));
  return {
    total, top_entries: top, tier2_dirs: subtrees, files, directories: top + subtrees * CHAIN, file_bytes: fileBytes,
    max_entries_per_directory: Math.max(fanout, maxFilesPerDir + 1), perSubtree,
  };
}

/** Writes the tree into `root` (a plain directory); returns its shape. */
function buildSmallTree(root: string, total: number, fanout: number, fileBytes: number): TreeShape {
  const shape = shapeOf(total, fanout, fileBytes);
  let written = 0;
  for (let a = 0; a < fanout; a++) {
    for (let b = 0; b < fanout; b++) {
      const k = a * fanout + b;
      const files = shape.perSubtree(k) - CHAIN;
      let rel = tier2Dir(a, b);
      mkdirSync(join(root, rel), { recursive: true });
      for (let lvl = 0; lvl <= CHAIN; lvl++) {
        const n = Math.floor(files / (CHAIN + 1)) + (lvl < files % (CHAIN + 1) ? 1 : 0);
        for (let f = 0; f < n; f++) {
          const frel = `${rel}/f${pad(f, 3)}.txt`;
          writeFileSync(join(root, frel), fileContent(frel, fileBytes));
          written++;
        }
        if (lvl < CHAIN) {
          rel = `${rel}/t${lvl + 3}`;
          mkdirSync(join(root, rel));
        }
      }
    }
  }
  if (written !== shape.files) throw new Error(`tree generator: wrote ${written} files, expected ${shape.files}`);
  const { perSubtree: _p, ...out } = shape;
  return out;
}

/**
 * The throughput volume: files of 1..64 MiB of random (incompressible) data,
 * `totalMiB` in all, under gN/hN/ (tiers 1 and 2), so that with --depth 2
 * every file is below a pending directory.
 */
function buildBigTree(root: string, totalMiB: number): { files: number; bytes: number; sizes_mib: number[] } {
  let left = totalMiB;
  const sizes: number[] = [];
  // Deterministic sizes (a simple LCG) so that runs are comparable.
  let x = 12345;
  while (left > 0) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const want = 1 + (x % 64);
    const size = Math.min(want, left);
    sizes.push(size);
    left -= size;
  }
  sizes.forEach((mib, i) => {
    const dir = join(root, `g${i % 4}`, `h${i % 3}`);
    mkdirSync(dir, { recursive: true });
    const fd = openSync(join(dir, `data-${pad(i, 3)}.bin`), 'w');
    try {
      for (let m = 0; m < mib; m++) writeSync(fd, randomBytes(MiB));
    } finally {
      closeSync(fd);
    }
  });
  return { files: sizes.length, bytes: totalMiB * MiB, sizes_mib: sizes };
}

// ---------------------------------------------------------------- strata processes

interface RestoreStatus {
  phase: 'restoring' | 'complete' | string;
  entries: { done: number; total: number };
  bytes: { done: number; total: number };
  rate: number;
  passes?: number;
  lastError?: string | null;
  fetch: { dirFetches: number; rangeFetches: number; blocksFetched: number; bytesFetched: number; entriesMaterialised?: number; failures?: number; lastError?: string | null };
  servingAt: string | null;
  completedAt: string | null;
}

async function restoreStatus(mnt: string): Promise<RestoreStatus> {
  const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { restore?: RestoreStatus | null };
  if (st.restore === undefined || st.restore === null) throw new Error(`${mnt}: status has no restore (not a recovered store?)`);
  return st.restore;
}

interface RecoverResult {
  /** Wall time of `strata recover` (the CLI process: start until it returned). */
  wall_s: number;
  /** The daemon's own figure: `serving after X s` (daemon start until the mount served). */
  daemon_serving_s: number | null;
  entries_local: number | null;
  pid: number | null;
}

class Harness {
  /** Daemon pids this harness started. */
  readonly pids: number[] = [];
  /** Mount points this harness uses. */
  readonly mountpoints = new Set<string>();

  constructor(private readonly s: Settings, private readonly server: ArchiveServerProcess) {}

  /** `strata recover`, timed from the start of the CLI until it returns. */
  recover(store: string, mnt: string, volume: string, extra: readonly string[]): RecoverResult {
    this.mountpoints.add(mnt);
    const r = run(process.execPath, [
      STRATA_CLI, 'recover', '--archive', this.server.url, '--token-file', this.server.tokenFile, '--volume', volume,
      '--store', store, '--depth', String(this.s.depth), ...extra, mnt,
    ], { allowFailure: true, timeoutMs: 300_000 });
    const pid = /daemon pid (\d+)/.exec(r.stdout);
    if (pid?.[1]) this.pids.push(Number(pid[1]));
    if (r.status !== 0) throw new Error(`strata recover failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}\n${logTail(store)}`);
    const serving = /serving after ([\d.]+) s/.exec(r.stdout);
    const local = /restore \w+: (\d+) of (\d+) entries local/.exec(r.stdout);
    return {
      wall_s: r.seconds,
      daemon_serving_s: serving?.[1] ? Number(serving[1]) : null,
      entries_local: local?.[1] ? Number(local[1]) : null,
      pid: pid?.[1] ? Number(pid[1]) : null,
    };
  }

  /** `strata mount` of a plain directory with --archive: the initial sync ships it before the mount serves. */
  mirrorMount(store: string, mnt: string, archiveUrl: string, volume: string): number {
    this.mountpoints.add(mnt);
    const r = run(process.execPath, [STRATA_CLI, 'mount', '--store', store, '--archive', archiveUrl, '--volume', volume, mnt],
      { allowFailure: true, timeoutMs: this.s.buildTimeoutS * 1000 });
    const pid = /daemon pid (\d+)/.exec(r.stdout);
    if (pid?.[1]) this.pids.push(Number(pid[1]));
    if (r.status !== 0) throw new Error(`strata mount --archive failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}\n${logTail(store)}`);
    return r.seconds;
  }

  /** Unmounts by every means (strata unmount, --lazy, fusermount -uz, umount -l); then stops our daemon of that mount point if it lingers. */
  unmount(mnt: string): boolean {
    if (isMountPoint(mnt)) new StrataMount('', mnt, [], false).unmount();
    for (const pid of this.pids) if (daemonOf(pid) === mnt) this.stopDaemon(pid);
    return !isMountPoint(mnt);
  }

  /** Our daemons still running although their mount point is not mounted: SIGTERM. */
  reapDaemons(): void {
    for (const pid of this.pids) {
      const mnt = daemonOf(pid);
      if (mnt !== null && !isMountPoint(mnt)) this.stopDaemon(pid);
    }
  }

  /** Gives a daemon 5 s to exit after its unmount, then SIGTERM. */
  private stopDaemon(pid: number): void {
    for (let i = 0; i < 50 && strataAlive(pid); i++) sleepMs(100);
    if (!strataAlive(pid)) return;
    progress(`strata daemon ${pid} still running after its unmount: SIGTERM`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
}

/** The mount point of a running strata daemon (the last argument of its command line), or null. */
function daemonOf(pid: number): string | null {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    if (!args.some((a) => a.endsWith('strata.js'))) return null;
    return args[args.length - 1] ?? null;
  } catch {
    return null;
  }
}

interface WaitResult {
  completed: boolean;
  /** Seconds from the call until the status said 'complete' (or until giving up). */
  seconds: number;
  last: RestoreStatus;
  polls: number;
}

/** Polls the daemon's status every 100 ms until the restore is complete, at most maxS seconds. */
async function waitComplete(mnt: string, store: string, maxS: number, label: string): Promise<WaitResult> {
  const t0 = process.hrtime.bigint();
  let polls = 0;
  let lastReport = 0;
  for (;;) {
    let st: RestoreStatus;
    try {
      st = await restoreStatus(mnt);
    } catch (err) {
      throw new Error(`${label}: status failed while waiting for the restore: ${errMsg(err)}\n${logTail(store)}`);
    }
    polls++;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (st.phase === 'complete') return { completed: true, seconds: s, last: st, polls };
    if (s >= maxS) return { completed: false, seconds: s, last: st, polls };
    if (s - lastReport >= 15) {
      lastReport = s;
      progress(`${label}: ${Math.round(s)} s: ${st.entries.done} of ${st.entries.total} entries, ${(st.bytes.done / MiB).toFixed(1)} of ${(st.bytes.total / MiB).toFixed(1)} MiB local (${st.fetch.dirFetches} directory fetches, ${st.fetch.rangeFetches} range fetches${st.lastError ? `; last error: ${st.lastError}` : ''})`);
    }
    await checkpoint();
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `cat PATH` in a child process, timed (spawn included); its output must be `expect`. */
function catTimed(path: string, expect: Buffer | null): { ms: number; ok: boolean; status: number; error: string | null } {
  const r = run('cat', [path], { allowFailure: true, timeoutMs: 60_000 });
  const ok = r.status === 0 && (expect === null || r.stdout === expect.toString('utf8'));
  let error: string | null = null;
  if (r.status !== 0) error = `cat exited ${r.status}: ${r.stderr.trim()}`;
  else if (!ok) error = `cat printed ${r.stdout.length} bytes that differ from the file written (${expect?.length ?? 0} bytes)`;
  return { ms: r.seconds * 1000, ok, status: r.status, error };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const s: Settings = settings();
  if (process.getuid?.() !== 0) throw new Error('the recovery benchmark needs root (mount, drop_caches)');
  const wants = (p: Part): boolean => s.only === null || s.only.includes(p);
  // Fail early on sizes that do not fit the fan-out.
  for (const n of s.sizes) shapeOf(n, s.fanout, s.fileBytes);

  mkdirSync(s.benchParent, { recursive: true });
  const workDir = mkdtempSync(join(s.benchParent, 'strata-bench-recover-'));
  const L = {
    build: join(workDir, 'build'),
    buildMnt: join(workDir, 'build-mnt'),
    rec: join(workDir, 'rec'),
    mnt: join(workDir, 'mnt'),
    tpSrc: join(workDir, 'tp-src'),
    cpDst: join(workDir, 'cp-dst'),
    server: join(workDir, 'server'),
    ref: join(workDir, 'ref.txt'),
  };
  for (const d of [L.build, L.buildMnt, L.rec, L.mnt]) mkdirSync(d, { recursive: true });

  const server = new ArchiveServerProcess(L.server, s.serverLogLevel);
  mkdirSync(server.dataDir, { recursive: true, mode: 0o700 });
  const archiveFileUrl = `file://${server.dataDir}`;
  const h = new Harness(s, server);

  let cleanedUp = false;
  const cleanup = (): { unmounted: boolean; removed: boolean } => {
    if (cleanedUp) return { unmounted: true, removed: !existsSync(workDir) };
    cleanedUp = true;
    for (const m of h.mountpoints) {
      if (!isMountPoint(m)) continue;
      progress(`cleaning up: unmounting ${m}`);
      h.unmount(m);
    }
    h.reapDaemons();
    server.stop();
    const still = [...h.mountpoints].filter((m) => isMountPoint(m));
    let removed = false;
    if (still.length > 0) {
      progress(`WARNING: ${still.join(', ')} still mounted; leaving ${workDir} in place`);
    } else if (s.keep) {
      progress(`BENCH_KEEP: leaving ${workDir}`);
    } else {
      progress(`cleaning up: removing ${workDir}`);
      removed = removeWorkDir(workDir);
    }
    return { unmounted: still.length === 0, removed };
  };
  installInterruptHandlers(() => cleanup());

  const machine = machineFacts(workDir, 'not used');
  const cpuBusyBefore = cpuBusyPercent(1000);
  if (cpuBusyBefore > 25) progress(`warning: the CPUs were ${cpuBusyBefore}% busy before the start: figures will be noisy`);
  let maxLoad = 0;
  const noteLoad = (): number => {
    const l = sig(loadavg()[0] ?? 0, 3);
    maxLoad = Math.max(maxLoad, l);
    return l;
  };
  const git = gitFacts();
  const recoverHelp = run(process.execPath, [STRATA_CLI, 'recover', '--help'], { allowFailure: true, timeoutMs: 30_000 }).stdout;
  const hasNoBackground = recoverHelp.includes('--no-background-restore');

  const results: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  const build: Record<string, unknown> = {};
  /** Things strata itself got wrong during the run (failed starts, differing content): listed in the JSON. */
  const problems: string[] = [];
  const volumes = new Map<number, { name: string; shape: TreeShape; store: string }>();
  let tpVolume: { name: string; files: number; bytes: number; sizes_mib: number[] } | null = null;
  let fatal: string | null = null;
  let cleanupResult = { unmounted: false, removed: false };

  const part = partRunner<Part>({
    wants, results, errors,
    afterFailure: () => {
      for (const m of h.mountpoints) if (isMountPoint(m)) h.unmount(m);
    },
  });

  /** Mirrors the plain directory `store` into volume `name` of the archive (file://, before the server runs). */
  const mirrorInto = async (store: string, name: string): Promise<{ mount_s: number; drain_s: number; unmount_s: number; mount_attempts: number; mount_errors: string[] }> => {
    // A failed start is retried (up to 3 times): the next start resumes the
    // initial sync where it stopped. Each failure is reported in the JSON.
    const mountErrors: string[] = [];
    let mountS = 0;
    for (let attempt = 1; ; attempt++) {
      await checkpoint();
      const ta = process.hrtime.bigint();
      try {
        h.mirrorMount(store, L.buildMnt, archiveFileUrl, name);
        mountS += Number(process.hrtime.bigint() - ta) / 1e9;
        break;
      } catch (err) {
        mountS += Number(process.hrtime.bigint() - ta) / 1e9;
        if (err instanceof Interrupted) throw err;
        const msg = errMsg(err).split('\n')[0] ?? '';
        mountErrors.push(msg);
        problems.push(`strata mount --archive (initial sync) of volume ${name}, attempt ${attempt}: ${msg}`);
        progress(`  strata mount --archive failed (attempt ${attempt}): ${msg}`);
        if (isMountPoint(L.buildMnt)) h.unmount(L.buildMnt);
        if (attempt >= 3) throw err;
        progress('  mounting again: the initial sync resumes');
      }
    }
    const td = process.hrtime.bigint();
    await drain(L.buildMnt, s.buildTimeoutS);
    const drainS = Number(process.hrtime.bigint() - td) / 1e9;
    const tu = process.hrtime.bigint();
    if (!h.unmount(L.buildMnt)) throw new Error(`could not unmount ${L.buildMnt}`);
    const unmountS = Number(process.hrtime.bigint() - tu) / 1e9;
    return { mount_s: sig(mountS), drain_s: sig(drainS), unmount_s: sig(unmountS), mount_attempts: mountErrors.length + 1, mount_errors: mountErrors };
  };

  let storeSeq = 0;
  const newStore = (label: string): string => join(L.rec, `${label}-${++storeSeq}`);
  const dropStore = (store: string): void => {
    // rm -rf: several times faster than fs.rmSync on a store of ~100k entries.
    if (!isMountPoint(L.mnt)) removeWorkDir(store);
  };

  try {
    progress(`work dir ${workDir} (${machine.bench_filesystem.fstype} on ${machine.bench_filesystem.source}); sizes ${s.sizes.join(', ')}, depth ${s.depth}, ${s.runs} runs`);
    if (!hasNoBackground) progress('note: `strata recover --help` has no --no-background-restore: the first-access runs measure with the background restore running');

    // ------------------------------------------------------------ build the volumes
    const smallNeeded = wants('serve') || wants('first_access');
    if (smallNeeded) {
      const sizes = wants('serve') ? s.sizes : [s.sizes[s.sizes.length - 1]!];
      for (const n of sizes) {
        await checkpoint();
        const store = join(L.build, `vol-${n}`);
        const name = `recover-${n}`;
        progress(`building the ${n}-entry tree in a plain directory`);
        const tg = process.hrtime.bigint();
        const shape = buildSmallTree(store, n, s.fanout, s.fileBytes);
        const genS = Number(process.hrtime.bigint() - tg) / 1e9;
        progress(`  ${shape.files} files, ${shape.directories} directories written in ${genS.toFixed(1)} s; mirroring it into volume ${name} (strata mount --archive: the initial sync ships it)`);
        const m = await mirrorInto(store, name);
        progress(`  mirrored: mount (initial sync) ${m.mount_s} s${m.mount_attempts > 1 ? ` in ${m.mount_attempts} attempts` : ''}, drain ${m.drain_s} s, unmount ${m.unmount_s} s`);
        volumes.set(n, { name, shape, store });
        build[name] = { shape, generate_s: sig(genS), ...m };
      }
    }
    if (wants('throughput')) {
      await checkpoint();
      progress(`writing ${s.tpMiB} MiB of random data in files of 1-64 MiB (the native copy for cp -a)`);
      const tg = process.hrtime.bigint();
      const big = buildBigTree(L.tpSrc, s.tpMiB);
      const genS = Number(process.hrtime.bigint() - tg) / 1e9;
      const store = join(L.build, 'vol-tp');
      const tc = process.hrtime.bigint();
      run('cp', ['-a', `${L.tpSrc}/.`, store], { timeoutMs: 600_000 });
      const copyS = Number(process.hrtime.bigint() - tc) / 1e9;
      const name = 'recover-throughput';
      progress(`  ${big.files} files in ${genS.toFixed(1)} s; mirroring a copy into volume ${name}`);
      const m = await mirrorInto(store, name);
      progress(`  mirrored: mount (initial sync) ${m.mount_s} s${m.mount_attempts > 1 ? ` in ${m.mount_attempts} attempts` : ''}, drain ${m.drain_s} s, unmount ${m.unmount_s} s`);
      rmSync(store, { recursive: true, force: true });
      tpVolume = { name, ...big };
      build[name] = { files: big.files, bytes: big.bytes, sizes_mib: big.sizes_mib, generate_s: sig(genS), copy_s: sig(copyS), ...m };
    }

    progress('starting strata archive serve on 127.0.0.1');
    await server.start();
    progress(`archive server listening on ${server.hostPort} (pid ${server.pid})`);

    // Spawn cost of `cat` (a 300-byte file on the native disk, warm): the floor of the first-access figure.
    writeFileSync(L.ref, fileContent('ref', s.fileBytes));
    for (let i = 0; i < 3; i++) catTimed(L.ref, null);
    const catFloorMs = medianOf(Array.from({ length: 7 }, () => catTimed(L.ref, null).ms));

    // ------------------------------------------------------------ 1. time to serve
    await part('serve', async () => {
      type ServeRun = {
        rep: number; position: number; load_1m: number; wall_s: number; daemon_serving_s: number | null; entries_local_at_serve: number | null;
        first_access_during_background_ms: number | null; first_access_dir_fetches_during_background: number | null;
        unmount_s?: number;
        full_restore?: { completed: boolean; wait_s: number; from_recover_start_s: number; entries_done: number; entries_total: number; bytes_done: number; bytes_total: number; dir_fetches: number; range_fetches: number; estimated_full_s: number | null; verified: string | null };
      };
      const raw: Record<string, ServeRun[]> = {};
      for (const n of s.sizes) raw[String(n)] = [];
      for (let rep = 1; rep <= s.runs; rep++) {
        const order = rep % 2 === 1 ? s.sizes : [...s.sizes].reverse();
        for (const [i, n] of order.entries()) {
          await checkpoint();
          const vol = volumes.get(n)!;
          const store = newStore(`serve-${n}`);
          const load = noteLoad();
          syncAll();
          const r = h.recover(store, L.mnt, vol.name, []);
          const rec: ServeRun = {
            rep, position: i + 1, load_1m: load, wall_s: sig(r.wall_s), daemon_serving_s: r.daemon_serving_s, entries_local_at_serve: r.entries_local,
            first_access_during_background_ms: null, first_access_dir_fetches_during_background: null,
          };
          try {
            // A deep file right away, with the background restore running.
            const a = (rep * 7) % s.fanout;
            const b = (rep * 13 + 5) % s.fanout;
            const rel = deepFile(a, b);
            const before = await restoreStatus(L.mnt);
            const c = catTimed(join(L.mnt, rel), fileContent(rel, s.fileBytes));
            const after = await restoreStatus(L.mnt);
            if (c.error) {
              problems.push(`cat ${rel} right after recovering ${vol.name} (background restore running): ${c.error}`);
              progress(`serve ${n}: cat ${rel} FAILED: ${c.error}`);
            } else {
              rec.first_access_during_background_ms = sig(c.ms);
              rec.first_access_dir_fetches_during_background = after.fetch.dirFetches - before.fetch.dirFetches;
            }
            if (rep <= s.fullRuns) {
              progress(`serve ${n}: run ${rep}: served after ${sig(r.wall_s, 3)} s; waiting up to ${s.fullMaxS} s for the whole volume to be local`);
              const w = await waitComplete(L.mnt, store, s.fullMaxS, `full restore of ${n}`);
              const elapsed = r.wall_s + w.seconds;
              const lt = w.last;
              let verified: string | null = null;
              if (w.completed) {
                const d = run('diff', ['-rq', '--no-dereference', '-x', '.strata', vol.store, L.mnt], { allowFailure: true, timeoutMs: 600_000 });
                verified = d.status === 0 ? 'identical (diff -rq against the tree as written)' : `DIFFERENT: ${(d.stdout || d.stderr).trim().split('\n').slice(0, 5).join('; ')}`;
                if (d.status !== 0) {
                  progress(`serve ${n}: the restored tree differs from the one written: ${verified}`);
                  problems.push(`full restore of ${vol.name}: ${verified}`);
                }
              }
              const doneFrac = lt.entries.total > 0 ? lt.entries.done / lt.entries.total : 0;
              rec.full_restore = {
                completed: w.completed,
                wait_s: sig(w.seconds),
                from_recover_start_s: sig(elapsed),
                entries_done: lt.entries.done, entries_total: lt.entries.total,
                bytes_done: lt.bytes.done, bytes_total: lt.bytes.total,
                dir_fetches: lt.fetch.dirFetches, range_fetches: lt.fetch.rangeFetches,
                // Not complete: the whole at the entry rate seen so far (the entries below the top tiers).
                estimated_full_s: w.completed ? sig(elapsed) : doneFrac > 0 && r.entries_local !== null && lt.entries.done > r.entries_local
                  ? sig(r.wall_s + w.seconds * (lt.entries.total - r.entries_local) / (lt.entries.done - r.entries_local)) : null,
                verified,
              };
              progress(`serve ${n}: run ${rep}: ${w.completed ? `complete ${sig(elapsed, 4)} s after recover started` : `NOT complete after ${sig(elapsed, 4)} s (${lt.entries.done} of ${lt.entries.total} entries; estimated ${rec.full_restore.estimated_full_s} s in all)`}`);
            }
          } finally {
            const tu = process.hrtime.bigint();
            h.unmount(L.mnt);
            rec.unmount_s = sig(Number(process.hrtime.bigint() - tu) / 1e9);
            dropStore(store);
          }
          raw[String(n)]!.push(rec);
          progress(`serve ${String(n).padStart(7)} run ${rep}/${s.runs}: recover returned after ${sig(r.wall_s, 3)} s (daemon: serving after ${r.daemon_serving_s} s); deep cat during the background restore ${rec.first_access_during_background_ms} ms, ${rec.first_access_dir_fetches_during_background} directory fetches; unmount ${rec.unmount_s} s`);
        }
      }
      const perSize: Record<string, unknown> = {};
      const ratios: { n: number; ratio: number | null; lower_bound: boolean }[] = [];
      for (const n of s.sizes) {
        const rs = raw[String(n)]!;
        const serveMed = medianOf(rs.map((x) => x.wall_s));
        const daemonMed = medianOf(rs.map((x) => x.daemon_serving_s));
        const fulls = rs.map((x) => x.full_restore).filter((f): f is NonNullable<typeof f> => f !== undefined);
        const completed = fulls.filter((f) => f.completed);
        const fullMed = medianOf(completed.map((f) => f.from_recover_start_s));
        const lowerBound = completed.length === 0 && fulls.length > 0 ? medianOf(fulls.map((f) => f.from_recover_start_s)) : null;
        const estimated = medianOf(fulls.map((f) => f.estimated_full_s));
        const ratio = ratioOrNull(fullMed ?? lowerBound, serveMed);
        ratios.push({ n, ratio, lower_bound: fullMed === null });
        perSize[String(n)] = {
          volume: volumes.get(n)!.name,
          entries: n,
          time_to_serve_s: sigOrNull(serveMed),
          time_to_serve_daemon_s: sigOrNull(daemonMed),
          time_to_serve_spread: sigOrNull(spread(rs.map((x) => x.wall_s)), 3),
          full_restore_s: sigOrNull(fullMed),
          full_restore_completed: completed.length > 0,
          full_restore_at_least_s: sigOrNull(lowerBound),
          full_restore_estimated_s: sigOrNull(estimated),
          ratio: sigOrNull(ratio, 4),
          ratio_is_lower_bound: fullMed === null && lowerBound !== null,
          ratio_estimated: sigOrNull(ratioOrNull(estimated, serveMed), 4),
          first_access_during_background_ms: sigOrNull(medianOf(rs.map((x) => x.first_access_during_background_ms))),
          first_access_dir_fetches_during_background: medianOf(rs.map((x) => x.first_access_dir_fetches_during_background)),
          unmount_s: sigOrNull(medianOf(rs.map((x) => x.unmount_s ?? null))),
          unmount_max_s: sigOrNull(Math.max(...rs.map((x) => x.unmount_s ?? 0))),
        };
      }
      const serveMeds = s.sizes.map((n) => (perSize[String(n)] as { time_to_serve_s: number | null }).time_to_serve_s);
      const flatMet = serveMeds.every((x) => x !== null && x <= GOAL_SERVE_S);
      const growth = serveMeds.length >= 2 ? sigOrNull(ratioOrNull(serveMeds[serveMeds.length - 1], serveMeds[0]), 3) : null;
      const ratioMet = ratios.length > 0 && ratios.every((x) => x.ratio !== null && x.ratio >= GOAL_RESTORE_RATIO);
      return {
        description: `For each volume size (entries; all share the same top tiers: ${s.fanout} directories at tier 1, ${s.fanout} at tier 2 below each, everything else deeper, files of ${s.fileBytes} bytes), ${s.runs} runs of \`strata recover --depth ${s.depth}\` from the strata:// server on 127.0.0.1 into a new empty store, timed from the start of the CLI until it returned (the mount serves then; the daemon's own "serving after" figure is next to it); sizes alternate order per run. In the first ${s.fullRuns} run(s) per size, the status is then polled every 100 ms until the restore phase is "complete" (at most BENCH_RECOVER_FULL_MAX_S = ${s.fullMaxS} s): the time from the start of \`strata recover\` until everything is local is the baseline "restore everything, then serve". Every run also cats one file 6 tiers below the depth right after recover returned, with the background restore running (see first_access for the clean figure). Each run is unmounted afterwards.`,
        unit: 's',
        per_size: perSize,
        time_to_serve: {
          goal: { subject: 'time_to_serve_s of every size', op: '<=', value: GOAL_SERVE_S, text: `strata recover returns within ${GOAL_SERVE_S} s at every size (flat)` },
          met: flatMet,
          growth_largest_over_smallest: growth,
        },
        restore_ratio: {
          ratio_definition: 'full_restore_s / time_to_serve_s (medians); when the full restore did not finish within BENCH_RECOVER_FULL_MAX_S, the time waited is a lower bound of full_restore_s, so the ratio is a lower bound too (ratio_is_lower_bound)',
          goal: { subject: 'ratio of every size', op: '>=', value: GOAL_RESTORE_RATIO, text: `restore-everything-first / time-to-serve >= ${GOAL_RESTORE_RATIO}x at every size` },
          met: ratioMet,
          judged_on_lower_bound: ratios.some((x) => x.lower_bound),
        },
        runs: raw,
      };
    });

    // ------------------------------------------------------------ 2. first access, 6 tiers below the depth
    await part('first_access', async () => {
      const n = s.sizes[s.sizes.length - 1]!;
      const vol = volumes.get(n)!;
      const extra = hasNoBackground ? ['--no-background-restore'] : [];
      type FaRun = { rep: number; load_1m: number; path: string; first_ms: number; second_ms: number; dir_fetches: number; range_fetches: number; blocks_fetched: number; bytes_fetched: number; recover_wall_s: number };
      const raw: FaRun[] = [];
      for (let rep = 1; rep <= s.runs; rep++) {
        await checkpoint();
        const store = newStore(`first-${n}`);
        const load = noteLoad();
        syncAll();
        const r = h.recover(store, L.mnt, vol.name, extra);
        try {
          const a = (rep * 11 + 3) % s.fanout;
          const b = (rep * 5 + 9) % s.fanout;
          const rel = deepFile(a, b);
          const want = fileContent(rel, s.fileBytes);
          const before = await restoreStatus(L.mnt);
          const c1 = catTimed(join(L.mnt, rel), want);
          const after = await restoreStatus(L.mnt);
          if (c1.error) {
            problems.push(`first cat ${rel} after recovering ${vol.name}: ${c1.error}`);
            throw new Error(`cat ${rel} on the recovered mount: ${c1.error}`);
          }
          const c2 = catTimed(join(L.mnt, rel), want);
          if (c2.error) {
            problems.push(`second cat ${rel} after recovering ${vol.name}: ${c2.error}`);
            throw new Error(`second cat ${rel}: ${c2.error}`);
          }
          const f: FaRun = {
            rep, load_1m: load, path: rel, first_ms: sig(c1.ms), second_ms: sig(c2.ms),
            dir_fetches: after.fetch.dirFetches - before.fetch.dirFetches,
            range_fetches: after.fetch.rangeFetches - before.fetch.rangeFetches,
            blocks_fetched: after.fetch.blocksFetched - before.fetch.blocksFetched,
            bytes_fetched: after.fetch.bytesFetched - before.fetch.bytesFetched,
            recover_wall_s: sig(r.wall_s),
          };
          raw.push(f);
          progress(`first_access run ${rep}/${s.runs}: cat ${rel}: ${f.first_ms} ms (again: ${f.second_ms} ms), ${f.dir_fetches} directory fetches, ${f.range_fetches} range fetches`);
        } finally {
          h.unmount(L.mnt);
          dropStore(store);
        }
      }
      const firstMed = medianOf(raw.map((x) => x.first_ms));
      const serveRuns = (results['serve'] as { per_size?: Record<string, { first_access_during_background_ms: number | null; first_access_dir_fetches_during_background: number | null }> } | undefined)?.per_size?.[String(n)];
      return {
        description: `\`strata recover --depth ${s.depth}${hasNoBackground ? ' --no-background-restore' : ''}\` of the ${n}-entry volume into a new empty store, then \`cat\` (a child process, timed with its spawn) of a ${s.fileBytes}-byte file in a tier-8 directory (dNN/sNN/t3/.../t8/f000.txt: 8 directory levels, the file 6 tiers below the pending tier-${s.depth} directories); restore.fetch counters read from the daemon's status before and after; the output is checked against what was written. The second cat of the same file (all local then) and a cat of a file on the native disk (cat_spawn_floor_ms) show the cost of starting cat itself. ${hasNoBackground ? 'No background restore runs, so the counters are the cat\'s alone.' : 'The background restore runs meanwhile (this strata has no --no-background-restore): the counters include its fetches.'}`,
        unit: 'ms',
        volume_entries: n,
        background_restore: hasNoBackground ? 'off (--no-background-restore)' : 'running',
        path_tiers: { directory_levels: 2 + CHAIN, file_tier: 3 + CHAIN, tiers_below_depth: 2 + CHAIN - s.depth },
        first_access_ms: sigOrNull(firstMed),
        dir_fetches: medianOf(raw.map((x) => x.dir_fetches)),
        range_fetches: medianOf(raw.map((x) => x.range_fetches)),
        second_access_ms: sigOrNull(medianOf(raw.map((x) => x.second_ms))),
        cat_spawn_floor_ms: sigOrNull(catFloorMs),
        first_access_minus_spawn_floor_ms: sigOrNull(firstMed !== null && catFloorMs !== null ? firstMed - catFloorMs : null),
        during_background_restore: serveRuns ? { first_access_ms: serveRuns.first_access_during_background_ms, dir_fetches: serveRuns.first_access_dir_fetches_during_background, note: 'from the serve runs of this size: cat right after recover returned, background restore running (its fetches may have been ahead of or behind the cat)' } : null,
        goal: { subject: 'first_access_ms', op: '<=', value: GOAL_FIRST_ACCESS_MS, text: `first read of a file 6 tiers below the depth <= ${GOAL_FIRST_ACCESS_MS} ms on loopback (cat's own start included)` },
        met: firstMed !== null && firstMed <= GOAL_FIRST_ACCESS_MS,
        spread: sigOrNull(spread(raw.map((x) => x.first_ms)), 3),
        runs: raw,
      };
    });

    // ------------------------------------------------------------ 3. background restore throughput vs cp -a
    await part('throughput', async () => {
      const vol = tpVolume;
      if (vol === null) throw new Error('no throughput volume');
      type TpStrata = { rep: number; position: number; load_1m: number; recover_wall_s: number; restore_s: number; from_recover_start_s: number; bytes: number; mib_per_s: number; mib_per_s_from_start: number; range_fetches: number; verified?: string };
      type TpCp = { rep: number; position: number; load_1m: number; cp_s: number; sync_s: number; cp_plus_sync_s: number; bytes: number; mib_per_s: number; mib_per_s_with_sync: number };
      const raw = { strata: [] as TpStrata[], cp: [] as TpCp[] };
      const sides = ['strata', 'cp'] as const;
      for (let rep = 1; rep <= s.tpRuns; rep++) {
        const order = rep % 2 === 1 ? sides : ([sides[1], sides[0]] as const);
        for (const [i, side] of order.entries()) {
          await checkpoint();
          if (side === 'strata') {
            const store = newStore('tp');
            dropCaches();
            const load = noteLoad();
            const r = h.recover(store, L.mnt, vol.name, []);
            try {
              const w = await waitComplete(L.mnt, store, s.tpMaxS, 'throughput restore');
              if (!w.completed) throw new Error(`the restore of ${vol.name} was not complete after ${s.tpMaxS} s (BENCH_RECOVER_TP_MAX_S): ${(w.last.bytes.done / MiB).toFixed(1)} of ${(w.last.bytes.total / MiB).toFixed(1)} MiB`);
              const bytes = w.last.bytes.total;
              const rec: TpStrata = {
                rep, position: i + 1, load_1m: load, recover_wall_s: sig(r.wall_s), restore_s: sig(w.seconds), from_recover_start_s: sig(r.wall_s + w.seconds),
                bytes, mib_per_s: sig(bytes / MiB / w.seconds), mib_per_s_from_start: sig(bytes / MiB / (r.wall_s + w.seconds)), range_fetches: w.last.fetch.rangeFetches,
              };
              if (rep === 1) {
                const d = run('diff', ['-rq', '--no-dereference', L.tpSrc, L.mnt], { allowFailure: true, timeoutMs: 600_000 });
                rec.verified = d.status === 0 ? 'identical (diff -rq against the files as written)' : `DIFFERENT: ${(d.stdout || d.stderr).trim().split('\n').slice(0, 5).join('; ')}`;
                if (d.status !== 0) {
                  progress(`throughput: the restored files differ from the ones written: ${rec.verified}`);
                  problems.push(`restore of ${vol.name}: ${rec.verified}`);
                }
              }
              raw.strata.push(rec);
              progress(`throughput strata run ${rep}/${s.tpRuns}: ${(bytes / MiB).toFixed(0)} MiB local ${rec.restore_s} s after recover returned: ${rec.mib_per_s} MiB/s (${rec.mib_per_s_from_start} MiB/s from the start of recover)`);
            } finally {
              h.unmount(L.mnt);
              dropStore(store);
            }
          } else {
            rmSync(L.cpDst, { recursive: true, force: true });
            dropCaches();
            const load = noteLoad();
            const c = run('cp', ['-a', L.tpSrc, L.cpDst], { timeoutMs: 900_000 });
            const sy = run('sync', [], { timeoutMs: 300_000 });
            const rec: TpCp = {
              rep, position: i + 1, load_1m: load, cp_s: sig(c.seconds), sync_s: sig(sy.seconds), cp_plus_sync_s: sig(c.seconds + sy.seconds), bytes: vol.bytes,
              mib_per_s: sig(vol.bytes / MiB / c.seconds), mib_per_s_with_sync: sig(vol.bytes / MiB / (c.seconds + sy.seconds)),
            };
            raw.cp.push(rec);
            rmSync(L.cpDst, { recursive: true, force: true });
            progress(`throughput cp -a   run ${rep}/${s.tpRuns}: ${rec.cp_s} s (${rec.mib_per_s} MiB/s), + sync ${rec.sync_s} s (${rec.mib_per_s_with_sync} MiB/s)`);
          }
        }
      }
      const strataMiBs = medianOf(raw.strata.map((x) => x.mib_per_s));
      const cpMiBs = medianOf(raw.cp.map((x) => x.mib_per_s));
      const cpSyncMiBs = medianOf(raw.cp.map((x) => x.mib_per_s_with_sync));
      const ratio = ratioOrNull(strataMiBs, cpMiBs);
      return {
        description: `${vol.files} files of 1-64 MiB of random data, ${s.tpMiB} MiB in all, under gN/hN/ (tiers 1-2). strata: \`sync; echo 3 > drop_caches\`, \`strata recover --depth ${s.depth}\` from the strata:// server on 127.0.0.1 (its data on the same disk) into a new empty store, then the status polled every 100 ms until the restore phase is "complete"; figure = bytes / (time from recover returning to complete) (the background restore fdatasyncs what it fetches). cp: \`sync; echo 3 > drop_caches\`, \`cp -a\` of the same files as written (a plain directory on the same disk) to a new directory; figure = bytes / cp time; the \`sync\` after it is timed separately (mib_per_s_with_sync). ${s.tpRuns} runs per side, alternating which goes first.`,
        unit: 'MiB/s',
        bytes: vol.bytes,
        strata: sigOrNull(strataMiBs),
        strata_from_recover_start: sigOrNull(medianOf(raw.strata.map((x) => x.mib_per_s_from_start))),
        cp: sigOrNull(cpMiBs),
        cp_with_sync: sigOrNull(cpSyncMiBs),
        ratio: sigOrNull(ratio, 3),
        ratio_definition: 'strata / cp (MiB/s, medians)',
        ratio_vs_cp_with_sync: sigOrNull(ratioOrNull(strataMiBs, cpSyncMiBs), 3),
        goal: { subject: 'ratio', op: '>=', value: GOAL_THROUGHPUT_RATIO, text: `background restore >= ${GOAL_THROUGHPUT_RATIO}x the throughput of cp -a on the same disk` },
        met: ratio !== null && ratio >= GOAL_THROUGHPUT_RATIO,
        spread: { strata: sigOrNull(spread(raw.strata.map((x) => x.mib_per_s)), 3), cp: sigOrNull(spread(raw.cp.map((x) => x.mib_per_s)), 3) },
        runs: raw,
      };
    });
  } catch (err) {
    fatal = errMsg(err);
    progress(`FATAL: ${fatal}`);
  } finally {
    const serverLog = server.logTail();
    if (!cleanedUp) {
      for (const m of h.mountpoints) if (isMountPoint(m)) h.unmount(m);
      h.reapDaemons();
      await server.stopAsync();
    }
    cleanupResult = cleanup();
    if (serverLog && (fatal !== null || Object.keys(errors).length > 0)) progress(`archive server log tail:\n${serverLog}`);
  }

  // ------------------------------------------------------------ report
  const wanted = PARTS.filter(wants);
  const table: Record<string, string> = {};
  const goals: { name: string; met: boolean }[] = [];
  const sv = results['serve'] as { per_size: Record<string, { time_to_serve_s: number | null; time_to_serve_daemon_s: number | null; full_restore_s: number | null; full_restore_at_least_s: number | null; full_restore_estimated_s: number | null; ratio: number | null; ratio_is_lower_bound: boolean }>; time_to_serve: { met: boolean; growth_largest_over_smallest: number | null }; restore_ratio: { met: boolean } } | undefined;
  if (sv) {
    const parts = Object.entries(sv.per_size).map(([n, x]) => `${n} entries ${x.time_to_serve_s} s (daemon ${x.time_to_serve_daemon_s} s)`);
    table['time_to_serve'] = `${sv.time_to_serve.met ? 'met' : 'NOT met'} (<= ${GOAL_SERVE_S} s at every size): ${parts.join(', ')}; largest/smallest ${sv.time_to_serve.growth_largest_over_smallest}`;
    const rparts = Object.entries(sv.per_size).map(([n, x]) => `${n} entries ${x.ratio_is_lower_bound ? '>= ' : ''}${x.ratio}x (full restore ${x.full_restore_s ?? `>= ${x.full_restore_at_least_s}`} s${x.full_restore_s === null && x.full_restore_estimated_s !== null ? `, ~${x.full_restore_estimated_s} s estimated` : ''})`);
    table['restore_ratio'] = `${sv.restore_ratio.met ? 'met' : 'NOT met'} (>= ${GOAL_RESTORE_RATIO}x): ${rparts.join(', ')}`;
    goals.push({ name: 'time_to_serve', met: sv.time_to_serve.met }, { name: 'restore_ratio', met: sv.restore_ratio.met });
  }
  const fa = results['first_access'] as { met: boolean; first_access_ms: number | null; dir_fetches: number | null; range_fetches: number | null; cat_spawn_floor_ms: number | null; background_restore: string } | undefined;
  if (fa) {
    table['first_access'] = `${fa.met ? 'met' : 'NOT met'} (<= ${GOAL_FIRST_ACCESS_MS} ms): ${fa.first_access_ms} ms, ${fa.dir_fetches} directory fetches + ${fa.range_fetches} range fetch(es) (cat itself: ${fa.cat_spawn_floor_ms} ms; background restore ${fa.background_restore})`;
    goals.push({ name: 'first_access', met: fa.met });
  }
  const tp = results['throughput'] as { met: boolean; ratio: number | null; strata: number | null; cp: number | null; cp_with_sync: number | null; ratio_vs_cp_with_sync: number | null } | undefined;
  if (tp) {
    table['throughput'] = `${tp.met ? 'met' : 'NOT met'} (>= ${GOAL_THROUGHPUT_RATIO}x): ratio ${tp.ratio}; background restore ${tp.strata} MiB/s, cp -a ${tp.cp} MiB/s (${tp.cp_with_sync} MiB/s with the sync after it: ratio ${tp.ratio_vs_cp_with_sync})`;
    goals.push({ name: 'throughput', met: tp.met });
  }
  for (const [k, e] of Object.entries(errors)) table[k] = `FAILED: ${e}`;
  const goalsTotal = (wants('serve') ? 2 : 0) + (wants('first_access') ? 1 : 0) + (wants('throughput') ? 1 : 0);
  const complete = fatal === null && !wasInterrupted() && wanted.every((p) => results[p] !== undefined);
  const doc = {
    ...documentHead('strata-bench-recover/1', startedAt, t0, complete, fatal, errors),
    strata_problems: problems,
    summary: {
      goals_met: goals.filter((g) => g.met).length,
      goals_total: goalsTotal,
      all_met: goals.length === goalsTotal && goals.every((g) => g.met),
      table,
    },
    machine,
    interference: { cpu_busy_before_start_pct: cpuBusyBefore, max_load_1m: maxLoad },
    strata: {
      ...git,
      commit_note: 'read when the run started (dist/ was compiled from that tree just before)',
      cli: join(REPO, 'bin', 'strata.js'),
      recover_has_no_background_restore: hasNoBackground,
    },
    config: {
      sizes: s.sizes,
      depth: s.depth,
      fanout: s.fanout,
      file_bytes: s.fileBytes,
      runs: s.runs,
      full_restore_runs: s.fullRuns,
      full_restore_max_s: s.fullMaxS,
      throughput_mib: s.tpMiB,
      throughput_runs: s.tpRuns,
      only: s.only,
      archive: 'strata://127.0.0.1:PORT, a `strata archive serve` process with its data in the work directory (same disk); the volumes were mirrored into that data directory through file:// before the server started',
      statistic: 'median of the runs; ratios computed from medians',
    },
    layout: { work_dir: workDir, unmounted: cleanupResult.unmounted, removed: cleanupResult.removed },
    build,
    results,
  };
  return finishDocument(doc, s.output, s.strict);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:recover: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
