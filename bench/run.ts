// `npm run bench`: every benchmark against a native directory and a strata
// mount on the same disk, in the same run; ONE JSON document on stdout,
// progress on stderr. See bench/README.md.
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, accessSync, constants } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL, configFromEnv, type Benchmark, type Config, type Ctx, type RunFigures, type Side, type SideName, type TarballInfo } from './benchmarks.js';
import { fioVersion } from './lib/fio.js';
import { checkpoint, installInterruptHandlers, Interrupted, progress, wasInterrupted, removeWorkDir } from './lib/proc.js';
import { median, medianExtras, ratioOf, sig, sigOrNull, spread } from './lib/stats.js';
import { gitFacts, StrataMount } from './lib/strata.js';
import { buildTarball, tarballReport } from './lib/tarball.js';
import { envFlag, envInt } from './lib/env.js';
import { cpuBusyPercent, isMountPoint, machineFacts, ownCacheDrops, slabDropCount, type MachineFacts } from './lib/system.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Signs that something else on the machine disturbed the measurements. */
const interference = {
  /** CPU busy (all cores) during 1 s before the harness started working. */
  cpu_busy_before_start_pct: 0,
  /** drop_caches writes by other programs during measured runs (from /proc/vmstat drop_slab). */
  foreign_cache_drops: 0,
  runs_with_foreign_cache_drops: [] as string[],
  /** Highest 1-minute load average seen at the start of a run (the harness itself accounts for ~1-2). */
  max_load_1m: 0,
  /** Seconds spent waiting for an idle machine first (BENCH_WAIT_QUIET_S). */
  waited_for_quiet_s: 0,
};

// ---------------------------------------------------------------- settings



interface Settings {
  cfg: Config;
  benchParent: string;
  only: string[] | null;
  keep: boolean;
  strict: boolean;
  smoke: boolean;
  mountArgs: string[];
  output: string | null;
  waitQuietS: number;
}

function settings(): Settings {
  const only = process.env['BENCH_ONLY'] ? process.env['BENCH_ONLY'].split(',').map((s) => s.trim()).filter(Boolean) : null;
  const known = new Set(ALL.map((b) => b.name));
  for (const name of only ?? []) if (!known.has(name)) throw new Error(`BENCH_ONLY: unknown benchmark ${name} (known: ${[...known].join(', ')})`);
  return {
    cfg: configFromEnv(5),

    benchParent: resolve(process.env['BENCH_DIR'] || '/var/tmp'),
    only,
    keep: envFlag('BENCH_KEEP'),
    strict: envFlag('BENCH_STRICT'),
    smoke: envFlag('BENCH_SMOKE_NO_MOUNT'),
    mountArgs: (process.env['BENCH_MOUNT_ARGS'] ?? '').split(/\s+/).filter(Boolean),
    output: process.env['BENCH_OUTPUT'] ? resolve(process.env['BENCH_OUTPUT']) : null,
    waitQuietS: envInt('BENCH_WAIT_QUIET_S', 0, 0),
  };
}

// ---------------------------------------------------------------- report types

interface RunRecord extends Record<string, number | string> {
  rep: number;
  /** 1 if this side ran first in its repetition, 2 if second (the sides alternate). */
  position: number;
}

interface BenchReport {
  description: string;
  metric: string;
  unit: string;
  native: number | null;
  strata: number | null;
  ratio: number | null;
  ratio_definition: string;
  target: { subject: string; op: string; value: number; text: string };
  met: boolean;
  /** Medians of the secondary figures, per side. */
  extra: { native: Record<string, number>; strata: Record<string, number> };
  /** The benchmark's headline secondary figures side by side (medians), e.g. p50 latency. */
  also: Record<string, { native: number | null; strata: number | null }>;
  /**
   * Each side's best run (highest throughput, lowest time or latency) and the ratio
   * of those: noise on this machine only ever makes a run slower, so this is a
   * second, less noise-sensitive reading. The target is judged on the medians.
   */
  best: { native: number | null; strata: number | null; ratio: number | null };
  /** (max - min) / median of the metric, per side: how noisy the runs were. */
  spread: { native: number | null; strata: number | null };
  runs: { native: RunRecord[]; strata: RunRecord[] };
  notes: string;
  remounted?: string;
  error?: string;
}

function targetText(b: Benchmark): string {
  const subject = b.target.subject === 'ratio' ? b.ratioDefinition : `strata ${b.metric} (${b.unit})`;
  return `${subject} ${b.target.op} ${b.target.value}`;
}

function judge(b: Benchmark, ratio: number | null, strata: number | null): boolean {
  const v = b.target.subject === 'ratio' ? ratio : strata;
  if (v === null || !Number.isFinite(v)) return false;
  return b.target.op === '>=' ? v >= b.target.value : v <= b.target.value;
}

function summarize(b: Benchmark, runs: { native: RunRecord[]; strata: RunRecord[] }, error: string | null, remounted: string | null): BenchReport {
  const values = (rs: RunRecord[]): number[] => rs.map((r) => r['value']).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const nat = median(values(runs.native));
  const str = median(values(runs.strata));
  const ratio = b.ratioDefinition === 'strata/native' ? ratioOf(str, nat) : ratioOf(nat, str);
  const bestOf = (xs: number[]): number | null => (xs.length === 0 ? null : b.higherIsBetter ? Math.max(...xs) : Math.min(...xs));
  const bestN = bestOf(values(runs.native));
  const bestS = bestOf(values(runs.strata));
  const bestRatio = b.ratioDefinition === 'strata/native' ? ratioOf(bestS, bestN) : ratioOf(bestN, bestS);
  const extra = { native: medianExtras(runs.native), strata: medianExtras(runs.strata) };
  const also = Object.fromEntries(b.alsoReport.map((k) => [k, { native: extra.native[k] ?? null, strata: extra.strata[k] ?? null }]));
  const report: BenchReport = {
    description: b.description,
    metric: b.metric,
    unit: b.unit,
    native: sigOrNull(nat),
    strata: sigOrNull(str),
    ratio: sigOrNull(ratio, 3),
    ratio_definition: b.ratioDefinition,
    target: { ...b.target, text: targetText(b) },
    met: error === null && judge(b, ratio, str),
    also,
    extra,
    best: { native: sigOrNull(bestN), strata: sigOrNull(bestS), ratio: sigOrNull(bestRatio, 3) },
    spread: { native: sigOrNull(spread(values(runs.native)), 3), strata: sigOrNull(spread(values(runs.strata)), 3) },
    runs,
    notes: b.notes,
  };
  if (remounted !== null) report.remounted = remounted;
  if (error !== null) report.error = error;
  return report;
}

// ---------------------------------------------------------------- the tarball




// ---------------------------------------------------------------- main

function preflight(): string {
  if (process.getuid?.() !== 0) throw new Error('the benchmarks need root (mount, drop_caches)');
  accessSync('/proc/sys/vm/drop_caches', constants.W_OK);
  try {
    return fioVersion();
  } catch {
    throw new Error('fio is not installed: apt-get update && apt-get install -y fio');
  }
}

async function runBenchmark(b: Benchmark, ctx: Ctx, strata: StrataMount): Promise<BenchReport> {
  const runs: { native: RunRecord[]; strata: RunRecord[] } = { native: [], strata: [] };
  let remounted: string | null = null;
  let error: string | null = null;
  try {
    remounted = strata.ensure();
    progress(`${b.name}: preparing`);
    await checkpoint();
    b.prepare(ctx);
    for (let rep = 1; rep <= ctx.cfg.runs; rep++) {
      // Alternate which side goes first, so drift (thermal, host load, dirty
      // writeback) does not always favour the same side.
      const order: readonly Side[] = rep % 2 === 1 ? ctx.sides : [...ctx.sides].reverse();
      for (const [i, side] of order.entries()) {
        await checkpoint();
        const load = loadavg()[0] ?? 0;
        const slab0 = slabDropCount();
        const own0 = ownCacheDrops();
        const fig: RunFigures = b.runOnce(ctx, side, rep);
        const foreign = slabDropCount() - slab0 - (ownCacheDrops() - own0);
        const rec: RunRecord = { rep, position: i + 1 };
        for (const [k, v] of Object.entries(fig)) rec[k] = sig(v, 6);
        rec['load_1m'] = sig(load, 3);
        rec['foreign_cache_drops'] = foreign;
        interference.max_load_1m = Math.max(interference.max_load_1m, sig(load, 3));
        if (foreign > 0) {
          interference.foreign_cache_drops += foreign;
          interference.runs_with_foreign_cache_drops.push(`${b.name} ${side.name} run ${rep}`);
          progress(`warning: another program dropped the kernel caches ${foreign}x during that run`);
        }
        runs[side.name as SideName].push(rec);
        progress(`${b.name} ${side.name.padEnd(6)} run ${rep}/${ctx.cfg.runs}: ${sig(fig.value)} ${b.unit}`);
      }
    }
  } catch (err) {
    if (err instanceof Interrupted) throw err;
    // fio and tar exit non-zero on Ctrl-C without dying of the signal: if a
    // signal is pending, this is an interruption, not a benchmark failure.
    await checkpoint();
    error = err instanceof Error ? err.message : String(err);
    progress(`${b.name}: FAILED: ${error}`);
  }
  const rep = summarize(b, runs, error, remounted);
  progress(`${b.name}: native ${rep.native} ${b.unit}, strata ${rep.strata} ${b.unit}, ratio ${rep.ratio} (${rep.target.text}) -> ${rep.met ? 'met' : 'NOT met'}`);
  return rep;
}

/**
 * Waits (up to `maxS` seconds) until the machine looks idle: under 20% CPU and
 * nobody writing drop_caches, for 10 s in a row. Returns the seconds waited.
 */
async function waitForQuiet(maxS: number): Promise<number> {
  const t0 = Date.now();
  let lastNote = 0;
  let quietSamples = 0;
  for (;;) {
    await checkpoint();
    const drops0 = slabDropCount();
    const busy = cpuBusyPercent(2000);
    const drops = slabDropCount() - drops0;
    const waited = (Date.now() - t0) / 1000;
    quietSamples = busy < 20 && drops === 0 ? quietSamples + 1 : 0;
    if (quietSamples >= 5) return Math.round(waited);
    if (waited >= maxS) {
      progress(`machine still busy after ${Math.round(waited)} s (CPU ${busy}%, ${drops} foreign drop_caches): starting anyway`);
      return Math.round(waited);
    }
    if (waited - lastNote >= 30 || lastNote === 0) {
      progress(`waiting for a quiet machine (CPU ${busy}% busy, ${drops} foreign drop_caches in 2 s; up to ${maxS} s)`);
      lastNote = waited || 0.001;
    }
  }
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const s = settings();
  const fioV = preflight();
  const benches = ALL.filter((b) => s.only === null || s.only.includes(b.name));
  if (s.waitQuietS > 0) interference.waited_for_quiet_s = await waitForQuiet(s.waitQuietS);

  mkdirSync(s.benchParent, { recursive: true });
  const workDir = mkdtempSync(join(s.benchParent, 'strata-bench-'));
  const layout = { work_dir: workDir, native: join(workDir, 'native'), store: join(workDir, 'store'), mountpoint: join(workDir, 'mnt') };
  mkdirSync(layout.native);
  mkdirSync(layout.mountpoint);
  const strata = new StrataMount(layout.store, layout.mountpoint, s.mountArgs, s.smoke);

  let cleanedUp = false;
  const cleanup = (): { unmounted: boolean; removed: boolean } => {
    if (cleanedUp) return { unmounted: true, removed: !existsSync(workDir) };
    cleanedUp = true;
    progress('cleaning up: unmounting strata');
    const unmounted = strata.unmount();
    let removed = false;
    if (!unmounted || isMountPoint(layout.mountpoint)) {
      progress(`WARNING: ${layout.mountpoint} is still mounted; leaving ${workDir} in place`);
    } else if (s.keep) {
      progress(`BENCH_KEEP: leaving ${workDir}`);
    } else {
      progress(`cleaning up: removing ${workDir}`);
      removed = removeWorkDir(workDir);
    }
    return { unmounted, removed };
  };
  installInterruptHandlers(() => cleanup());

  const machine: MachineFacts = machineFacts(workDir, fioV);
  interference.cpu_busy_before_start_pct = cpuBusyPercent(1000);
  if (interference.cpu_busy_before_start_pct > 25) {
    progress(`warning: the CPUs were ${interference.cpu_busy_before_start_pct}% busy before the benchmarks started: something else is running, figures will be noisy`);
  }
  const benchmarks: Record<string, BenchReport> = {};
  let tarball: TarballInfo | null = null;
  let fatal: string | null = null;
  let cleanupResult = { unmounted: false, removed: false };
  try {
    progress(`work dir ${workDir} (${machine.bench_filesystem.fstype} on ${machine.bench_filesystem.source}); ${s.cfg.runs} runs per side`);
    if (s.smoke) progress('BENCH_SMOKE_NO_MOUNT: the "strata" side is a plain directory; these figures are NOT strata\'s');
    if (benches.some((b) => b.name === 'untar_source_tree')) {
      progress(`building the tarball from ${s.cfg.tarSource}`);
      tarball = buildTarball(s.cfg.tarSource, workDir);
      progress(`tarball: ${tarball.entries} entries, ${(tarball.tarball_bytes / 1048576).toFixed(1)} MiB`);
    }
    progress('mounting strata');
    strata.mount();
    const ctx: Ctx = {
      cfg: s.cfg,
      sides: [
        { name: 'native', dir: layout.native, fuse: false },
        { name: 'strata', dir: layout.mountpoint, fuse: true },
      ],
      tarball: tarball ?? { path: '', source: '', entries: 0, files: 0, directories: 0, symlinks: 0, other: 0, content_bytes: 0, tarball_bytes: 0 },
      smallFileTree: {},
    };
    for (const b of benches) {
      await checkpoint();
      benchmarks[b.name] = await runBenchmark(b, ctx, strata);
    }
  } catch (err) {
    fatal = err instanceof Error ? err.message : String(err);
    progress(`FATAL: ${fatal}`);
  } finally {
    cleanupResult = cleanup();
  }

  const reports = Object.values(benchmarks);
  const warnings: string[] = [];
  if (interference.cpu_busy_before_start_pct > 25) warnings.push(`CPUs ${interference.cpu_busy_before_start_pct}% busy before the start: another workload was running`);
  if (interference.foreign_cache_drops > 0) warnings.push(`another program wrote drop_caches ${interference.foreign_cache_drops}x during measured runs (${interference.runs_with_foreign_cache_drops.join(', ')}): warm-cache figures of those runs are not warm`);
  for (const [name, r] of Object.entries(benchmarks)) {
    if ((r.spread.native ?? 0) > 0.5 || (r.spread.strata ?? 0) > 0.5) warnings.push(`${name}: runs spread widely (native ${r.spread.native}, strata ${r.spread.strata}); see runs`);
  }
  const doc = {
    schema: 'strata-bench/1',
    started_at: startedAt,
    finished_at: new Date().toISOString(),
    duration_s: Math.round((Date.now() - t0) / 100) / 10,
    complete: fatal === null && !wasInterrupted() && reports.length === benches.length && reports.every((r) => r.error === undefined),
    interrupted: wasInterrupted(),
    fatal_error: fatal,
    smoke_test_no_mount: s.smoke,
    summary: {
      met: reports.filter((r) => r.met).length,
      total: benches.length,
      all_met: reports.length === benches.length && reports.every((r) => r.met),
      warnings,
      table: Object.fromEntries(Object.entries(benchmarks).map(([name, r]) => [name, `${r.met ? 'met' : 'NOT met'}: ${r.target.subject === 'ratio' ? `ratio ${r.ratio}` : `strata ${r.strata} ${r.unit}`} (${r.target.text}); native ${r.native} ${r.unit}, strata ${r.strata} ${r.unit}`])),
    },
    machine,
    interference,
    strata: {
      ...gitFacts(),
      cli: join(REPO, 'bin', 'strata.js'),
      mount_args: s.mountArgs,
      remounts: strata.remounts.length,
    },
    config: {
      runs: s.cfg.runs,
      seq_size_mib: s.cfg.seqSizeMiB,
      rand_runtime_s: s.cfg.randRuntimeS,
      rand_ramp_s: 1,
      files: s.cfg.files,
      dirs: s.cfg.dirs,
      file_bytes: s.cfg.fileBytes,
      only: s.only,
      statistic: 'median of the runs per side; ratio computed from the two medians',
    },
    layout: { ...layout, unmounted: cleanupResult.unmounted, removed: cleanupResult.removed },
    tarball: tarball === null ? null : tarballReport(tarball),
    benchmarks,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  if (s.output !== null) writeFileSync(s.output, `${JSON.stringify(doc, null, 2)}\n`);
  progress(`done in ${doc.duration_s} s: ${doc.summary.met}/${doc.summary.total} targets met${doc.complete ? '' : ' (INCOMPLETE run)'}`);
  if (wasInterrupted()) return 130;
  if (!doc.complete) return 1;
  if (s.strict && !doc.summary.all_met) return 3;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
