// `npm run bench:reference`: strata against native and against C FUSE
// passthroughs on this machine, in the same run, with the issue's full set of
// figures and goals, and what each strata feature is worth (one strata mount
// per feature switched). See bench/README.md, "Reference benchmark".
//
// Sides (each a directory on the same disk; BENCH_REF_SIDES picks some):
//   native                 a plain directory
//   strata                 `strata mount` with its defaults
//   strata_no_passthrough  --no-passthrough
//   strata_no_killpriv_v2  --no-killpriv-v2
//   strata_no_fast_paths   --no-direct-io (every request answered in JavaScript)
//   strata_writeback       --writeback-cache (opt-in)
//   strata_passthrough_writes --passthrough-writes (opt-in)
//   passthrough_hp         libfuse's C++ example (when PASSTHROUGH_HP names the binary)
//   passthrough_ll         libfuse's C example (when PASSTHROUGH_LL names the binary)
// Figures: the benchmarks of bench/benchmarks.ts (the same code `npm run bench`
// measures with): create_10k, stat_warm, untar_source_tree, seq_write_1m,
// seq_read_1m (cold), rand_read_4k_latency. Prints ONE JSON document on stdout.
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { configFromEnv, create10k, randRead, seqRead, seqWrite, statWarm, untar, type Benchmark, type Config, type Ctx, type Side } from './benchmarks.js';
import { envFlag } from './lib/env.js';
import { fioVersion } from './lib/fio.js';
import { checkpoint, installInterruptHandlers, Interrupted, progress, removeWorkDir, wasInterrupted } from './lib/proc.js';
import { evaluateGoals, featureEffects, ratioToNative, REFERENCE_GOALS, type FeatureSwitch, type Medians } from './lib/reference-goals.js';
import { ReferenceMount } from './lib/reference-mount.js';
import { median, medianExtras, sig, sigOrNull, spread } from './lib/stats.js';
import { gitFacts, StrataMount } from './lib/strata.js';
import { cpuBusyPercent, dropCaches, isMountPoint, machineFacts, ownCacheDrops, slabDropCount } from './lib/system.js';
import { buildTarball, tarballReport } from './lib/tarball.js';

/** The figures, in the order they run (stat_warm reuses create_10k's first tree). */
const FIGURES: readonly Benchmark[] = [create10k, statWarm, untar, seqWrite, seqRead, randRead];

interface StrataConfig {
  name: string;
  args: string[];
  /** The feature this mount switches, for the report's `features`. */
  feature: string | null;
  defaultOn: boolean;
  note: string;
}

const STRATA_CONFIGS: readonly StrataConfig[] = [
  { name: 'strata', args: [], feature: null, defaultOn: true, note: 'strata mount with its defaults: answers on the FUSE thread, FUSE passthrough, handle_killpriv_v2; no writeback cache' },
  { name: 'strata_no_passthrough', args: ['--no-passthrough'], feature: 'passthrough', defaultOn: true, note: 'reads of local files answered by the FUSE thread (splice from the store file) instead of the kernel' },
  { name: 'strata_no_killpriv_v2', args: ['--no-killpriv-v2'], feature: 'handle_killpriv_v2', defaultOn: true, note: 'the kernel asks for security.capability before writes and drops set-ID bits itself' },
  { name: 'strata_no_fast_paths', args: ['--no-direct-io'], feature: 'fuse_thread_answers', defaultOn: true, note: 'every request answered in JavaScript; this also leaves out the direct read/write handles, so no passthrough either (overlaps the passthrough switch)' },
  { name: 'strata_writeback', args: ['--writeback-cache'], feature: 'writeback_cache', defaultOn: false, note: 'opt-in: the kernel caches writes; strata does not ask for passthrough with it (the kernel refuses both)' },
  { name: 'strata_passthrough_writes', args: ['--passthrough-writes'], feature: 'passthrough_writes', defaultOn: false, note: 'opt-in: writable opens pass through too (the kernel writes the store file); handle_killpriv_v2 is then not asked for' },
];

interface SideInfo {
  kind: 'native' | 'strata' | 'reference';
  description: string;
  mount_args?: string[];
  binary?: string;
  command?: string[];
  /** The reference daemon's descriptor limit, soft:hard (see bench/lib/reference-mount.ts). */
  nofile_limit?: string | null;
}

interface RunRecord extends Record<string, number | string> {
  rep: number;
  position: number;
}

interface FigureReport {
  metric: string;
  unit: string;
  ratio_definition: string;
  description: string;
  median: Record<string, number | null>;
  /**
   * The median of the runs during which no other program wrote drop_caches
   * (null when every run saw one): the warm figures (stat_warm above all) of a
   * run that did are not warm. Other helpers' tests do that on this machine.
   */
  median_without_foreign_drops: Record<string, number | null>;
  ratio_to_native: Record<string, number | null>;
  spread: Record<string, number | null>;
  extra: Record<string, Record<string, number>>;
  runs: Record<string, RunRecord[]>;
  errors?: Record<string, string>;
}

function preflight(): string {
  if (process.getuid?.() !== 0) throw new Error('bench:reference needs root (mount, drop_caches)');
  try {
    return fioVersion();
  } catch {
    throw new Error('fio is not installed: apt-get update && apt-get install -y fio');
  }
}

function binaryFromEnv(name: string): string | null {
  const v = process.env[name];
  if (!v) return null;
  const p = resolve(v);
  if (!existsSync(p)) throw new Error(`${name}=${p} does not exist (scripts/build-reference-fs.sh builds it)`);
  return p;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const fioV = preflight();
  const cfg: Config = configFromEnv(3);

  const only = process.env['BENCH_ONLY'] ? process.env['BENCH_ONLY'].split(',').map((s) => s.trim()).filter(Boolean) : null;
  for (const n of only ?? []) if (!FIGURES.some((b) => b.name === n)) throw new Error(`BENCH_ONLY: unknown figure ${n} (known: ${FIGURES.map((b) => b.name).join(', ')})`);
  const figures = FIGURES.filter((b) => only === null || only.includes(b.name));
  const hp = binaryFromEnv('PASSTHROUGH_HP');
  const ll = binaryFromEnv('PASSTHROUGH_LL');
  const known = ['native', ...STRATA_CONFIGS.map((c) => c.name), 'passthrough_hp', 'passthrough_ll'];
  const wanted = process.env['BENCH_REF_SIDES'] ? process.env['BENCH_REF_SIDES'].split(',').map((s) => s.trim()).filter(Boolean) : null;
  for (const n of wanted ?? []) if (!known.includes(n)) throw new Error(`BENCH_REF_SIDES: unknown side ${n} (known: ${known.join(', ')})`);
  // native and strata always run: every ratio and goal is about them.
  const wants = (n: string): boolean => n === 'native' || n === 'strata' || wanted === null || wanted.includes(n);
  if (wanted?.includes('passthrough_hp') && hp === null) throw new Error('BENCH_REF_SIDES names passthrough_hp: set PASSTHROUGH_HP to its binary');
  if (wanted?.includes('passthrough_ll') && ll === null) throw new Error('BENCH_REF_SIDES names passthrough_ll: set PASSTHROUGH_LL to its binary');

  const parent = resolve(process.env['BENCH_DIR'] || '/var/tmp');
  mkdirSync(parent, { recursive: true });
  const work = mkdtempSync(join(parent, 'strata-ref-'));
  const sides: Side[] = [{ name: 'native', dir: join(work, 'native'), fuse: false }];
  const info: Record<string, SideInfo> = { native: { kind: 'native', description: 'a plain directory on the same file system' } };
  const strataMounts: { name: string; m: StrataMount }[] = [];
  const refMounts: ReferenceMount[] = [];
  for (const c of STRATA_CONFIGS) {
    if (!wants(c.name)) continue;
    const m = new StrataMount(join(work, `${c.name}-store`), join(work, `${c.name}-mnt`), c.args, false);
    strataMounts.push({ name: c.name, m });
    sides.push({ name: c.name, dir: m.mountpoint, fuse: true });
    info[c.name] = { kind: 'strata', description: c.note, mount_args: c.args };
  }
  const refs: { name: string; bin: string | null; args: (src: string, mnt: string) => string[]; description: string }[] = [
    {
      name: 'passthrough_hp',
      bin: hp,
      args: (src, mnt) => ['--foreground', src, mnt],
      description: "libfuse's example/passthrough_hp.cc (libfuse 3.14 era) with its defaults: attribute/entry timeout 86400 s and the writeback cache, splice read and write, keep_cache, libfuse's multi-threaded loop (default thread limits; --num-threads unset; --clone-fd is parsed but not used by this version), default_permissions; --foreground only so that the harness owns the process",
    },
    {
      name: 'passthrough_ll',
      bin: ll,
      args: (src, mnt) => ['-f', '-o', `source=${src}`, mnt],
      description: "libfuse's example/passthrough_ll.c as Debian ships it (libfuse 3.14) with its defaults: timeout 1 s (cache=normal), no writeback cache, no xattrs, libfuse's multi-threaded loop; -f only so that the harness owns the process",
    },
  ];
  for (const r of refs) {
    if (r.bin === null || !wants(r.name)) continue;
    const src = join(work, `${r.name}-src`);
    const mnt = join(work, `${r.name}-mnt`);
    const args = r.args(src, mnt);
    refMounts.push(new ReferenceMount(r.name, r.bin, args, mnt, join(work, `${r.name}.log`)));
    sides.push({ name: r.name, dir: mnt, fuse: true });
    info[r.name] = { kind: 'reference', description: r.description, binary: r.bin, command: [r.bin, ...args] };
  }

  let cleanedUp = false;
  const cleanup = (): { unmounted: boolean; removed: boolean } => {
    if (cleanedUp) return { unmounted: true, removed: !existsSync(work) };
    cleanedUp = true;
    progress('cleaning up: unmounting');
    let unmounted = true;
    for (const r of refMounts) unmounted = r.unmount() && unmounted;
    for (const { m } of strataMounts) unmounted = m.unmount() && unmounted;
    if (!unmounted || sides.some((s) => s.fuse && isMountPoint(s.dir))) {
      progress(`WARNING: something is still mounted; leaving ${work} in place`);
      return { unmounted: false, removed: false };
    }
    if (envFlag('BENCH_KEEP')) return { unmounted, removed: false };
    return { unmounted, removed: removeWorkDir(work) };
  };
  installInterruptHandlers(() => cleanup());

  const machine = machineFacts(work, fioV);
  const loadStart = loadavg().map((x) => sig(x, 3));
  const interference = {
    cpu_busy_before_start_pct: cpuBusyPercent(1000),
    /** drop_caches writes by other programs during measured runs (/proc/vmstat drop_slab minus the harness's own). */
    foreign_cache_drops: 0,
    runs_with_foreign_cache_drops: [] as string[],
    max_load_1m: 0,
  };
  const reports: Record<string, FigureReport> = {};
  let tarball: ReturnType<typeof buildTarball> | null = null;
  let fatal: string | null = null;
  let cleanupResult = { unmounted: false, removed: false };
  try {
    for (const s of sides) mkdirSync(s.dir);
    for (const r of refs) if (sides.some((s) => s.name === r.name)) mkdirSync(join(work, `${r.name}-src`));
    progress(`work dir ${work}; sides: ${sides.map((s) => s.name).join(', ')}; ${cfg.runs} runs; load ${loadStart.join(' ')}`);
    if (figures.includes(untar)) {
      tarball = buildTarball(cfg.tarSource, work);
      progress(`tarball: ${tarball.entries} entries, ${(tarball.tarball_bytes / 1048576).toFixed(1)} MiB`);
    }
    for (const { name, m } of strataMounts) {
      progress(`mounting ${name} (${m.extraArgs.join(' ') || 'defaults'})`);
      m.mount();
    }
    for (const r of refMounts) {
      progress(`mounting ${r.name}`);
      r.mount();
      const si = info[r.name];
      if (si !== undefined) si.nofile_limit = r.nofile();
    }
    const ctx: Ctx = {
      cfg,
      sides,
      tarball: tarball ?? { path: '', source: '', entries: 0, files: 0, directories: 0, symlinks: 0, other: 0, content_bytes: 0, tarball_bytes: 0 },
      smallFileTree: {},
    };
    for (const b of figures) {
      await checkpoint();
      const runs: Record<string, RunRecord[]> = Object.fromEntries(sides.map((s) => [s.name, []]));
      const errors: Record<string, string> = {};
      for (const { name, m } of strataMounts) {
        const note = m.ensure();
        if (note !== null) errors[name] = `remounted before ${b.name}: ${note}`;
      }
      progress(`${b.name}: preparing`);
      // Each side on its own, so that a side that fails drops out of this figure only.
      const live: Side[] = [];
      for (const side of sides) {
        try {
          b.prepare({ ...ctx, sides: [side] });
          live.push(side);
        } catch (err) {
          if (err instanceof Interrupted) throw err;
          errors[side.name] = `prepare: ${err instanceof Error ? err.message : String(err)}`;
          progress(`${b.name} ${side.name}: prepare FAILED: ${errors[side.name]}`);
        }
      }
      for (let rep = 1; rep <= cfg.runs; rep++) {
        // Rotate the order every repetition, so that no side always runs first or last.
        const k = (rep - 1) % Math.max(1, live.length);
        const order = [...live.slice(k), ...live.slice(0, k)];
        for (const [i, side] of order.entries()) {
          if (errors[side.name]?.startsWith('run')) continue;
          await checkpoint();
          const load = loadavg()[0] ?? 0;
          const slab0 = slabDropCount();
          const own0 = ownCacheDrops();
          try {
            // Runs that make thousands of nodes start with the kernel's dentries and
            // inodes dropped (every side alike): the kernel then forgets the nodes of
            // earlier runs, and the C references close the descriptor they keep for
            // each, which would otherwise run out (see bench/lib/reference-mount.ts).
            if (b === create10k || b === untar) dropCaches();
            const fig = b.runOnce(ctx, side, rep);
            const rec: RunRecord = { rep, position: i + 1 };
            for (const [key, v] of Object.entries(fig)) rec[key] = sig(v, 6);
            rec['load_1m'] = sig(load, 3);
            const foreign = slabDropCount() - slab0 - (ownCacheDrops() - own0);
            rec['foreign_cache_drops'] = foreign;
            interference.max_load_1m = Math.max(interference.max_load_1m, sig(load, 3));
            if (foreign > 0) {
              interference.foreign_cache_drops += foreign;
              interference.runs_with_foreign_cache_drops.push(`${b.name} ${side.name} run ${rep}`);
            }
            runs[side.name]?.push(rec);
            progress(`${b.name} ${side.name.padEnd(22)} run ${rep}/${cfg.runs}: ${sig(fig.value)} ${b.unit}`);
          } catch (err) {
            if (err instanceof Interrupted) throw err;
            await checkpoint();
            errors[side.name] = `run ${rep}: ${err instanceof Error ? err.message : String(err)}`;
            progress(`${b.name} ${side.name}: FAILED: ${errors[side.name]}`);
          }
        }
      }
      const values = (n: string): number[] => (runs[n] ?? []).map((r) => r['value']).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
      const med: Record<string, number | null> = Object.fromEntries(sides.map((s) => [s.name, sigOrNull(median(values(s.name)))]));
      const report: FigureReport = {
        metric: b.metric,
        unit: b.unit,
        ratio_definition: b.ratioDefinition.replace('strata', 'side'),
        description: b.description,
        median: med,
        median_without_foreign_drops: Object.fromEntries(sides.map((s) => [s.name, sigOrNull(median((runs[s.name] ?? []).filter((r) => r['foreign_cache_drops'] === 0).map((r) => r['value']).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))))])),
        ratio_to_native: Object.fromEntries(sides.map((s) => [s.name, sigOrNull(ratioToNative(b, median(values(s.name)), median(values('native'))), 3)])),
        spread: Object.fromEntries(sides.map((s) => [s.name, sigOrNull(spread(values(s.name)), 3)])),
        extra: Object.fromEntries(sides.map((s) => [s.name, medianExtras(runs[s.name] ?? [])])),
        runs,
      };
      if (Object.keys(errors).length > 0) report.errors = errors;
      reports[b.name] = report;
      progress(`${b.name}: ${sides.map((s) => `${s.name} ${med[s.name]}`).join(', ')} ${b.unit}`);
    }
  } catch (err) {
    fatal = err instanceof Error ? err.message : String(err);
    progress(`FATAL: ${fatal}`);
  } finally {
    cleanupResult = cleanup();
  }

  const medians: Medians = Object.fromEntries(Object.entries(reports).map(([n, r]) => [n, r.median]));
  const goals = evaluateGoals(REFERENCE_GOALS, figures, medians, 'strata');
  const switches: FeatureSwitch[] = STRATA_CONFIGS.filter((c) => c.feature !== null && sides.some((s) => s.name === c.name)).map((c) => ({ feature: c.feature as string, side: c.name, defaultOn: c.defaultOn }));
  const effects = featureEffects(figures, medians, 'strata', switches);
  const doc = {
    schema: 'strata-bench-reference/2',
    started_at: startedAt,
    finished_at: new Date().toISOString(),
    duration_s: Math.round((Date.now() - t0) / 100) / 10,
    complete: fatal === null && !wasInterrupted() && figures.every((b) => reports[b.name] !== undefined && reports[b.name]?.errors === undefined),
    fatal_error: fatal,
    loadavg: { start: loadStart, end: loadavg().map((x) => sig(x, 3)) },
    interference,
    summary: {
      goals: goals.map((g) => `${g.met === null ? 'not judged' : g.met ? 'met' : 'NOT met'}: ${g.text} (measured ${g.measured === null ? 'n/a' : sig(g.measured, 3)})${g.why ? `; ${g.why}` : ''}`),
      medians: Object.fromEntries(Object.entries(reports).map(([n, r]) => [`${n} (${r.unit})`, r.median])),
      ratio_to_native: Object.fromEntries(Object.entries(reports).map(([n, r]) => [`${n} (${r.ratio_definition})`, r.ratio_to_native])),
      // A warm stat pass that another program's drop_caches hit is one LOOKUP per file, not warm.
      stat_warm_without_foreign_drops: reports[statWarm.name]?.median_without_foreign_drops ?? null,
      foreign_cache_drops: interference.foreign_cache_drops,
    },
    goals: goals.map((g) => ({ ...g, measured: sigOrNull(g.measured, 3) })),
    features: {
      definition: 'speedup: how much better the figure is with the feature than without (>1 helps; for times time_without/time_with, for throughput with/without), the default strata mount against the mount with that one switch; share: ln(speedup) over the sum of ln(speedup) of the default-on features of that figure, when that sum is positive. --no-direct-io also switches passthrough off, so the switches overlap.',
      effects: Object.fromEntries(Object.entries(effects).map(([fig, e]) => [fig, Object.fromEntries(Object.entries(e).map(([f, v]) => [f, { side: v.side, speedup: sigOrNull(v.speedup, 3), share: sigOrNull(v.share, 3) }]))])),
    },
    sides: info,
    machine,
    strata: gitFacts(),
    config: { runs: cfg.runs, seq_size_mib: cfg.seqSizeMiB, rand_runtime_s: cfg.randRuntimeS, files: cfg.files, dirs: cfg.dirs, file_bytes: cfg.fileBytes, only, sides: sides.map((s) => s.name), statistic: 'median of the runs per side; ratios from the medians; the order of the sides rotates every repetition' },
    layout: { work_dir: work, ...cleanupResult },
    tarball: tarball === null ? null : tarballReport(tarball),
    figures: reports,
  };
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  process.stdout.write(text);
  if (process.env['BENCH_OUTPUT']) writeFileSync(resolve(process.env['BENCH_OUTPUT']), text);
  progress(`done in ${doc.duration_s} s${doc.complete ? '' : ' (INCOMPLETE run)'}; load ${doc.loadavg.end.join(' ')}`);
  if (wasInterrupted()) return 130;
  return doc.complete ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:reference: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
