// The benchmark definitions. Each one has an untimed prepare step (both sides)
// and a runOnce that measures one run on one side and returns its figures;
// run.ts interleaves the sides, takes medians and judges the target.
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { envInt } from './lib/env.js';
import { fileURLToPath } from 'node:url';
import { runFio } from './lib/fio.js';
import { run } from './lib/proc.js';
import { dropCaches, readToNull, syncAll } from './lib/system.js';

export type SideName = 'native' | 'strata';

export interface Side {
  /** 'native' and 'strata' in bench/run.ts; bench/reference.ts adds more mounts (strata configurations, C passthroughs). */
  name: string;
  /** The directory the benchmark works in: a native directory, or a mount point. */
  dir: string;
  /** A FUSE mount (strata or a reference file system), not the native directory underneath. */
  fuse: boolean;
}

export interface Config {
  runs: number;
  seqSizeMiB: number;
  randRuntimeS: number;
  files: number;
  dirs: number;
  fileBytes: number;
  tarSource: string;
}

/** The sizes of the file-system benchmarks, from BENCH_* (defaults: 1 GiB, 5 s, 10k files of 100 bytes in 10 dirs, /usr/include). */
export function configFromEnv(defaultRuns: number): Config {
  return {
    runs: envInt('BENCH_RUNS', defaultRuns, 1),
    seqSizeMiB: envInt('BENCH_SEQ_SIZE_MIB', 1024, 1),
    randRuntimeS: envInt('BENCH_RAND_RUNTIME_S', 5, 1),
    files: envInt('BENCH_FILES', 10_000, 1),
    dirs: envInt('BENCH_DIRS', 10, 1),
    fileBytes: envInt('BENCH_FILE_BYTES', 100, 0),
    tarSource: resolve(process.env['BENCH_TAR_SOURCE'] || '/usr/include'),
  };
}

export interface TarballInfo {
  path: string;
  source: string;
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  other: number;
  content_bytes: number;
  tarball_bytes: number;
}

export interface Ctx {
  cfg: Config;
  sides: readonly Side[];
  tarball: TarballInfo;
  /** Per side name: the first tree create_10k made, reused by stat_warm. */
  smallFileTree: Record<string, string>;
}

/** One measured run: `value` is the benchmark's metric, the rest are secondary figures. */
export type RunFigures = { value: number } & Record<string, number>;

export interface Target {
  /** What the target is about: the ratio (as defined by ratioDefinition) or strata's absolute figure. */
  subject: 'ratio' | 'strata';
  op: '>=' | '<=';
  value: number;
}

export interface Benchmark {
  name: string;
  description: string;
  metric: string;
  unit: string;
  /** Throughput: true; times and latencies: false. Picks each side's best run for `best`. */
  higherIsBetter: boolean;
  /** How `ratio` is computed from the two medians. */
  ratioDefinition: 'strata/native' | 'native/strata';
  target: Target;
  notes: string;
  /** Secondary figures (keys of RunFigures) shown side by side in the report's `also`. */
  alsoReport: readonly string[];
  prepare(ctx: Ctx): void;
  runOnce(ctx: Ctx, side: Side, rep: number): RunFigures;
}

const FILES_WORKER = fileURLToPath(new URL('./workers/files.js', import.meta.url));

/** Runs bench/workers/files.ts with `args`; its JSON figures (always `seconds`). */
export function filesWorker(args: readonly string[]): Record<string, number> {
  const r = run(process.execPath, [FILES_WORKER, ...args], { timeoutMs: 600_000 });
  const parsed: unknown = JSON.parse(r.stdout.trim());
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`files worker printed ${r.stdout}`);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(parsed)) if (typeof v === 'number') out[k] = v;
  if (out['seconds'] === undefined) throw new Error(`files worker printed no time: ${r.stdout}`);
  return out;
}

function fileIsComplete(path: string, bytes: number): boolean {
  try {
    return statSync(path).size === bytes;
  } catch {
    return false;
  }
}

const SEQ_READ_FILE = 'seq-read.dat';

/** Writes (untimed) the file that seq_read_1m and rand_read_4k_latency read, unless it is already there. */
function ensureReadFile(ctx: Ctx, side: Side): string {
  const path = join(side.dir, SEQ_READ_FILE);
  if (fileIsComplete(path, ctx.cfg.seqSizeMiB * 1048576)) return path;
  rmSync(path, { force: true });
  runFio({ name: 'prepare', filename: path, rw: 'write', bs: '1M', size: `${ctx.cfg.seqSizeMiB}m`, endFsync: true });
  if (!fileIsComplete(path, ctx.cfg.seqSizeMiB * 1048576)) throw new Error(`${path} does not have the expected size after writing it`);
  return path;
}

export const seqWrite: Benchmark = {
  name: 'seq_write_1m',
  description: 'fio sequential write of a new file, 1 MiB blocks, psync, queue depth 1, end_fsync=1 (the final fsync is inside the measured time)',
  metric: 'throughput',
  unit: 'MiB/s',
  higherIsBetter: true,
  ratioDefinition: 'strata/native',
  target: { subject: 'ratio', op: '>=', value: 0.6 },
  notes: 'The file is deleted and everything synced before each run, so each run allocates a fresh file. fallocate=none on both sides.',
  alsoReport: ['runtime_ms'],
  prepare() {},
  runOnce(ctx, side) {
    const path = join(side.dir, 'seq-write.dat');
    rmSync(path, { force: true });
    syncAll();
    const f = runFio({ name: 'seq_write_1m', filename: path, rw: 'write', bs: '1M', size: `${ctx.cfg.seqSizeMiB}m`, endFsync: true });
    rmSync(path, { force: true });
    return { value: f.bwMiBs, runtime_ms: f.runtimeMs, io_bytes: f.ioBytes, clat_mean_us: f.clatMeanUs };
  },
};

export const seqRead: Benchmark = {
  name: 'seq_read_1m',
  description: 'fio sequential read, 1 MiB blocks, psync, queue depth 1, of a file written (and fsynced) beforehand; `sync; echo 3 > /proc/sys/vm/drop_caches` before every run',
  metric: 'throughput',
  unit: 'MiB/s',
  higherIsBetter: true,
  ratioDefinition: 'strata/native',
  target: { subject: 'ratio', op: '>=', value: 0.8 },
  notes: 'drop_caches empties the mount\'s page cache and the store\'s page cache alike, so both sides read from the disk.',
  alsoReport: ['runtime_ms'],
  prepare(ctx) {
    for (const side of ctx.sides) ensureReadFile(ctx, side);
  },
  runOnce(ctx, side) {
    const path = join(side.dir, SEQ_READ_FILE);
    dropCaches();
    const f = runFio({ name: 'seq_read_1m', filename: path, rw: 'read', bs: '1M', size: `${ctx.cfg.seqSizeMiB}m` });
    return { value: f.bwMiBs, runtime_ms: f.runtimeMs, io_bytes: f.ioBytes, clat_mean_us: f.clatMeanUs };
  },
};

export const seqReadWarm: Benchmark = {
  name: 'seq_read_warm_store',
  description: 'fio sequential read, 1 MiB blocks, psync, queue depth 1, of the seq_read_1m file while it is in the page cache of the file system underneath: native reads it warm (invalidate=0); strata drops only the mount\'s own page cache of it first (invalidate=1: POSIX_FADV_DONTNEED of the mount\'s file), so every byte crosses FUSE (or FUSE passthrough) from the store\'s page cache',
  metric: 'throughput',
  unit: 'MiB/s',
  higherIsBetter: true,
  ratioDefinition: 'strata/native',
  target: { subject: 'ratio', op: '>=', value: 0.8 },
  notes: 'What the FUSE path itself costs for a sequential read, without the disk (seq_read_1m reads the disk on both sides). With FUSE passthrough (docs/fuse-bridge.md) no READ request reaches strata; with --no-passthrough the FUSE thread answers each with a splice from the store file. The file is read once in full on both sides beforehand.',
  alsoReport: ['runtime_ms'],
  prepare(ctx) {
    for (const side of ctx.sides) readToNull(ensureReadFile(ctx, side));
  },
  runOnce(ctx, side) {
    const path = join(side.dir, SEQ_READ_FILE);
    const f = runFio({ name: 'seq_read_warm_store', filename: path, rw: 'read', bs: '1M', size: `${ctx.cfg.seqSizeMiB}m`, invalidate: side.fuse });
    return { value: f.bwMiBs, runtime_ms: f.runtimeMs, io_bytes: f.ioBytes, clat_mean_us: f.clatMeanUs };
  },
};

export const randRead: Benchmark = {
  name: 'rand_read_4k_latency',
  description: 'fio 4 KiB random reads, psync, queue depth 1, time based with 1 s ramp; completion latency (clat) mean and p50. strata: --direct=1 on the mount, so every read is a FUSE request. native: buffered reads with the file fully in the page cache (invalidate=0)',
  metric: 'clat_mean',
  unit: 'µs',
  higherIsBetter: false,
  ratioDefinition: 'strata/native',
  target: { subject: 'strata', op: '<=', value: 40 },
  notes: 'The target is absolute: strata\'s mean completion latency. On the native side O_DIRECT would measure the virtual disk (tens of µs) while strata\'s O_DIRECT reads are served by the daemon from the store file\'s page cache; so the native baseline is a warm buffered read (the syscall + page cache copy), and strata minus native is the cost of the FUSE round trip. The native O_DIRECT figures are reported too (extra.native.o_direct_clat_mean_us and o_direct_clat_p50_us) for reference only. The file (the one seq_read_1m read) is read once in full on both sides beforehand to warm the page cache.',
  alsoReport: ['clat_p50_us', 'clat_p99_us', 'iops'],
  prepare(ctx) {
    for (const side of ctx.sides) readToNull(ensureReadFile(ctx, side));
  },
  runOnce(ctx, side) {
    const path = join(side.dir, SEQ_READ_FILE);
    const job = {
      name: 'rand_read_4k',
      filename: path,
      rw: 'randread' as const,
      bs: '4k',
      size: `${ctx.cfg.seqSizeMiB}m`,
      invalidate: false,
      runtimeS: ctx.cfg.randRuntimeS,
      rampS: 1,
    };
    const f = runFio({ ...job, direct: side.fuse });
    const out: RunFigures = { value: f.clatMeanUs, clat_p50_us: f.clatP50Us, clat_p99_us: f.clatP99Us, clat_max_us: f.clatMaxUs, iops: f.iops };
    if (!side.fuse) {
      const d = runFio({ ...job, direct: true });
      out['o_direct_clat_mean_us'] = d.clatMeanUs;
      out['o_direct_clat_p50_us'] = d.clatP50Us;
    }
    return out;
  },
};

function smallFileArgs(ctx: Ctx): string[] {
  return [String(ctx.cfg.files), String(ctx.cfg.dirs)];
}

export const create10k: Benchmark = {
  name: 'create_10k',
  description: 'one Node process (bench/workers/files.ts) makes 10 directories and 10,000 files of 100 bytes: open(O_CREAT|O_EXCL) + write + close each; time of that loop only (process start excluded)',
  metric: 'time',
  unit: 's',
  higherIsBetter: false,
  ratioDefinition: 'native/strata',
  target: { subject: 'ratio', op: '>=', value: 0.35 },
  notes: 'Each run creates a fresh tree (create/rN); `sync` before each run; no fsync inside the timed loop on either side.',
  alsoReport: ['files_per_s'],
  prepare(ctx) {
    for (const side of ctx.sides) mkdirSync(join(side.dir, 'create'), { recursive: true });
  },
  runOnce(ctx, side, rep) {
    const root = join(side.dir, 'create', `r${rep}`);
    mkdirSync(root);
    syncAll();
    const r = filesWorker(['create', root, ...smallFileArgs(ctx), String(ctx.cfg.fileBytes)]);
    ctx.smallFileTree[side.name] ??= root;
    const seconds = r['seconds'] ?? NaN;
    return { value: seconds, files_per_s: ctx.cfg.files / seconds };
  },
};

export const statWarm: Benchmark = {
  name: 'stat_warm',
  description: 'one Node process lstat()s the 10,000 files create_10k made, once to warm, then times a second full pass',
  metric: 'time',
  unit: 's',
  higherIsBetter: false,
  ratioDefinition: 'native/strata',
  target: { subject: 'ratio', op: '>=', value: 0.3 },
  notes: 'Paths are computed, not listed, so only lstat is timed. The warm-up pass time is in extra.warm_pass_seconds. strata is measured with its default mount options (the kernel attribute/entry cache timeouts are whatever `strata mount` defaults to). A warm pass on strata is served by the kernel\'s dentry/attribute cache without a FUSE request; anything that empties that cache (`echo 2 > /proc/sys/vm/drop_caches` by another program, memory pressure) turns it into one LOOKUP round trip per file, 30x slower: check runs[].foreign_cache_drops.',
  alsoReport: ['warm_pass_seconds', 'stats_per_s'],
  prepare(ctx) {
    for (const side of ctx.sides) {
      if (ctx.smallFileTree[side.name] !== undefined) continue;
      const root = join(side.dir, 'stat-tree');
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root, { recursive: true });
      filesWorker(['create', root, ...smallFileArgs(ctx), String(ctx.cfg.fileBytes)]);
      ctx.smallFileTree[side.name] = root;
    }
  },
  runOnce(ctx, side) {
    const root = ctx.smallFileTree[side.name];
    if (root === undefined) throw new Error('no small-file tree');
    const r = filesWorker(['stat', root, ...smallFileArgs(ctx)]);
    const seconds = r['seconds'] ?? NaN;
    return { value: seconds, warm_pass_seconds: r['warm_seconds'] ?? NaN, stats_per_s: ctx.cfg.files / seconds };
  },
};

export const untar: Benchmark = {
  name: 'untar_source_tree',
  description: '`tar -xf` of a tarball of a real source tree (see tarball) into an empty directory; the timed figure is tar alone, a `sync` right after it is timed separately (extra.sync_seconds, extra.tar_plus_sync_seconds)',
  metric: 'time',
  unit: 's',
  higherIsBetter: false,
  ratioDefinition: 'strata/native',
  target: { subject: 'ratio', op: '<=', value: 3.0 },
  notes: 'Before each run: `sync` (no dirty backlog from the previous run) and the tarball read to /dev/null (so neither side pays for reading it from disk). tar runs as root, so it also restores owners, modes and mtimes on both sides. The target is judged on tar alone (what a user waits for); with the sync the disk write dominates both sides. The first run of each side also checks that the extracted entry count matches the tarball.',
  alsoReport: ['sync_seconds', 'tar_plus_sync_seconds'],
  prepare(ctx) {
    for (const side of ctx.sides) mkdirSync(join(side.dir, 'untar'), { recursive: true });
  },
  runOnce(ctx, side, rep) {
    const dest = join(side.dir, 'untar', `r${rep}`);
    mkdirSync(dest);
    syncAll();
    readToNull(ctx.tarball.path);
    const t = run('tar', ['-xf', ctx.tarball.path, '-C', dest], { timeoutMs: 600_000 });
    const s = run('sync', [], { timeoutMs: 600_000 });
    if (rep === 1) {
      const found = run('find', [dest, '-mindepth', '1', '-printf', '.'], { timeoutMs: 300_000 }).stdout.length;
      if (found !== ctx.tarball.entries) throw new Error(`extracted ${found} entries, the tarball has ${ctx.tarball.entries}`);
    }
    return { value: t.seconds, sync_seconds: s.seconds, tar_plus_sync_seconds: t.seconds + s.seconds };
  },
};

export const ALL: readonly Benchmark[] = [seqWrite, seqRead, seqReadWarm, randRead, create10k, statWarm, untar];
