// `npm run bench:mirror`: what mirroring costs. In one run, on one disk:
// sequential write and untar on an unmirrored mount vs a mirrored mount in
// async mode (file:// archive), op latency on a sync-mode mount (strata://
// server on 127.0.0.1) next to the archive protocol's loopback round trip,
// and archive ingest MB/s. ONE JSON document on stdout, progress on stderr.
// See bench/README.md ("Mirroring benchmark").
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TarballInfo } from './benchmarks.js';
import { fioVersion, runFio } from './lib/fio.js';
import { ArchiveServerProcess, drain, ingest, mirrorLag, openArchiveClient, requestCounts, requestsBetween, smallShipRoundTrips, volumeStateRoundTrips, type IngestFigures } from './lib/mirror-archive.js';
import type { LatencySummary } from './lib/mirror-stats.js';
import { buildTarball, tarballReport } from './lib/tarball.js';
import { envFlag, envInt } from './lib/env.js';
import { checkpoint, documentHead, finishDocument, installInterruptHandlers, partRunner, progress, run, wasInterrupted, removeWorkDir } from './lib/proc.js';
import { median, sig, sigOrNull, spread } from './lib/stats.js';
import { StrataMount } from './lib/strata.js';
import { cpuBusyPercent, isMountPoint, machineFacts, readToNull, syncAll } from './lib/system.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const OPS_WORKER = fileURLToPath(new URL('./lib/mirror-ops-worker.js', import.meta.url));
const MiB = 1024 * 1024;
const GOAL_RATIO = 0.8;
const PHASES = ['seq_write', 'untar', 'op_latency', 'ingest'] as const;
type Phase = (typeof PHASES)[number];

// ---------------------------------------------------------------- settings



function envArgs(name: string): string[] {
  return (process.env[name] ?? '').split(/\s+/).filter(Boolean);
}

function settings() {
  // Own names for these two: bench/run.ts rejects unknown BENCH_ONLY names, and
  // `npm run bench` runs both programs (one BENCH_OUTPUT file would be overwritten).
  const only = process.env['BENCH_MIRROR_ONLY'] ? process.env['BENCH_MIRROR_ONLY'].split(',').map((s) => s.trim()).filter(Boolean) : null;
  for (const p of only ?? []) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`BENCH_MIRROR_ONLY: unknown part ${p} (known: ${PHASES.join(', ')})`);
  return {
    runs: envInt('BENCH_RUNS', 3, 1),
    benchParent: resolve(process.env['BENCH_DIR'] || '/var/tmp'),
    seqSizeMiB: envInt('BENCH_SEQ_SIZE_MIB', 1024, 1),
    tarSource: resolve(process.env['BENCH_TAR_SOURCE'] || '/usr/include'),
    ops: envInt('BENCH_OPS', 2000, 4),
    opsMaxS: envInt('BENCH_OPS_MAX_S', 60, 1),
    rttN: envInt('BENCH_RTT_N', 2000, 1),
    shipRttN: envInt('BENCH_SHIP_RTT_N', 500, 1),
    ingestMiB: envInt('BENCH_INGEST_MIB', 256, 1),
    ingestBatchMiB: envInt('BENCH_INGEST_BATCH_MIB', 4, 1),
    drainTimeoutS: envInt('BENCH_DRAIN_TIMEOUT_S', 600, 1),
    only: only as Phase[] | null,
    mountArgs: envArgs('BENCH_MOUNT_ARGS'),
    mirrorArgs: envArgs('BENCH_MIRROR_ARGS'),
    serverLogLevel: process.env['BENCH_SERVER_LOG_LEVEL'] || 'warn',
    output: process.env['BENCH_MIRROR_OUTPUT'] ? resolve(process.env['BENCH_MIRROR_OUTPUT']) : null,
    keep: envFlag('BENCH_KEEP'),
    strict: envFlag('BENCH_STRICT'),
  };
}
type Settings = ReturnType<typeof settings>;

// ---------------------------------------------------------------- helpers

type Figures = Record<string, number>;
interface RunRec extends Record<string, number> {
  rep: number;
  position: number;
}

function rounded(f: Figures): Figures {
  const out: Figures = {};
  for (const [k, v] of Object.entries(f)) out[k] = sig(v, 6);
  return out;
}

/** Median of every numeric key over the runs. */
function medians(runs: readonly Figures[]): Figures {
  const keys = new Set(runs.flatMap((r) => Object.keys(r)).filter((k) => k !== 'rep' && k !== 'position'));
  const out: Figures = {};
  for (const k of keys) {
    const m = median(runs.map((r) => r[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
    if (m !== null) out[k] = sig(m);
  }
  return out;
}

function errMsg(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const v = await f();
  return [v, Number(process.hrtime.bigint() - t0) / 1e9];
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const s: Settings = settings();
  if (process.getuid?.() !== 0) throw new Error('the mirror benchmark needs root (mount)');
  accessSync('/dev/fuse', constants.R_OK | constants.W_OK);
  let fioV: string;
  try {
    fioV = fioVersion();
  } catch {
    throw new Error('fio is not installed: apt-get update && apt-get install -y fio');
  }
  const wants = (p: Phase): boolean => s.only === null || s.only.includes(p);

  mkdirSync(s.benchParent, { recursive: true });
  const workDir = mkdtempSync(join(s.benchParent, 'strata-bench-mirror-'));
  const L = {
    work_dir: workDir,
    plain: { store: join(workDir, 'plain', 'store'), mnt: join(workDir, 'plain', 'mnt') },
    async: { store: join(workDir, 'async', 'store'), mnt: join(workDir, 'async', 'mnt'), archive: join(workDir, 'async', 'archive') },
    sync: { store: join(workDir, 'sync', 'store'), mnt: join(workDir, 'sync', 'mnt') },
    server: join(workDir, 'server'),
    ingest: join(workDir, 'ingest'),
  };
  for (const d of [L.plain.mnt, L.async.mnt, L.async.archive, L.sync.mnt, L.ingest]) mkdirSync(d, { recursive: true });

  const server = new ArchiveServerProcess(L.server, s.serverLogLevel);
  const plain = new StrataMount(L.plain.store, L.plain.mnt, s.mountArgs, false);
  const asyncM = new StrataMount(L.async.store, L.async.mnt, [
    '--archive', `file://${L.async.archive}`, '--volume', 'bench-async', '--mirror', 'async', ...s.mountArgs, ...s.mirrorArgs,
  ], false);
  let syncM: StrataMount | null = null; // needs the server's port first
  const mounts = (): StrataMount[] => [plain, asyncM, ...(syncM ? [syncM] : [])];

  let cleanedUp = false;
  const cleanup = (): { unmounted: boolean; removed: boolean } => {
    if (cleanedUp) return { unmounted: true, removed: !existsSync(workDir) };
    cleanedUp = true;
    let unmounted = true;
    // The mounts first (the sync-mode one needs its archive to unmount cleanly), then the server.
    for (const m of mounts()) {
      if (!isMountPoint(m.mountpoint)) continue;
      progress(`cleaning up: unmounting ${m.mountpoint}`);
      if (!m.unmount()) unmounted = false;
    }
    server.stop();
    let removed = false;
    const still = mounts().filter((m) => isMountPoint(m.mountpoint));
    if (!unmounted || still.length > 0) {
      progress(`WARNING: ${still.map((m) => m.mountpoint).join(', ')} still mounted; leaving ${workDir} in place`);
    } else if (s.keep) {
      progress(`BENCH_KEEP: leaving ${workDir}`);
    } else {
      progress(`cleaning up: removing ${workDir}`);
      removed = removeWorkDir(workDir);
    }
    return { unmounted: unmounted && still.length === 0, removed };
  };
  installInterruptHandlers(() => cleanup());

  const machine = machineFacts(workDir, fioV);
  const cpuBusyBefore = cpuBusyPercent(1000);
  if (cpuBusyBefore > 25) progress(`warning: the CPUs were ${cpuBusyBefore}% busy before the start: figures will be noisy`);
  let maxLoad = 0;
  const noteLoad = (): void => {
    maxLoad = Math.max(maxLoad, sig(loadavg()[0] ?? 0, 3));
  };

  const results: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  let tarball: TarballInfo | null = null;
  let fatal: string | null = null;
  let cleanupResult = { unmounted: false, removed: false };

  /** Runs one part; an error there is recorded and the next part still runs (unless interrupted). */
  const part = partRunner<Phase>({
    wants, results, errors,
    afterFailure: () => {
      // A part may have died with a mount broken: remount for the next one.
      for (const m of mounts()) {
        try {
          const note = m.ensure();
          if (note) progress(`remounted ${m.mountpoint}`);
        } catch (e) {
          progress(`could not remount ${m.mountpoint}: ${errMsg(e)}`);
        }
      }
    },
  });

  /**
   * BENCH_RUNS repetitions of unmirrored vs mirrored-async, alternating which
   * goes first. Returns the raw runs per side.
   */
  const paired = async (
    label: string,
    once: (side: 'unmirrored' | 'mirrored_async', m: StrataMount, rep: number) => Promise<Figures>,
    show: (f: Figures) => string,
  ): Promise<{ unmirrored: RunRec[]; mirrored_async: RunRec[] }> => {
    const runs = { unmirrored: [] as RunRec[], mirrored_async: [] as RunRec[] };
    const sides = [['unmirrored', plain], ['mirrored_async', asyncM]] as const;
    for (let rep = 1; rep <= s.runs; rep++) {
      const order = rep % 2 === 1 ? sides : [sides[1], sides[0]];
      for (const [i, [name, m]] of order.entries()) {
        await checkpoint();
        noteLoad();
        const f = await once(name, m, rep);
        runs[name].push({ rep, position: i + 1, ...rounded(f), load_1m: sig(loadavg()[0] ?? 0, 3) });
        progress(`${label} ${name.padEnd(14)} run ${rep}/${s.runs}: ${show(f)}`);
      }
    }
    return runs;
  };

  const drainTimed = async (mnt: string): Promise<number> => (await timed(() => drain(mnt, s.drainTimeoutS)))[1];

  try {
    progress(`work dir ${workDir} (${machine.bench_filesystem.fstype} on ${machine.bench_filesystem.source}); ${s.runs} runs per side`);
    if (wants('untar')) {
      progress(`building the tarball from ${s.tarSource}`);
      tarball = buildTarball(s.tarSource, workDir);
      progress(`tarball: ${tarball.entries} entries, ${(tarball.tarball_bytes / MiB).toFixed(1)} MiB`);
    }
    if (wants('op_latency') || wants('ingest')) {
      progress('starting strata archive serve on 127.0.0.1');
      await server.start();
      progress(`archive server listening on ${server.hostPort} (pid ${server.pid})`);
      syncM = new StrataMount(L.sync.store, L.sync.mnt, [
        '--archive', server.url, '--token-file', server.tokenFile, '--volume', 'bench-sync', '--mirror', 'sync', ...s.mountArgs, ...s.mirrorArgs,
      ], false);
    }
    progress('mounting: unmirrored, mirrored async (file://)' + (syncM && wants('op_latency') ? ', mirrored sync (strata://)' : ''));
    if (wants('seq_write') || wants('untar') || wants('op_latency')) plain.mount();
    if (wants('seq_write') || wants('untar') || wants('op_latency')) asyncM.mount();
    if (syncM && wants('op_latency')) syncM.mount();

    // ------------------------------------------------------------ 1. sequential write
    await part('seq_write', async () => {
      const size = s.seqSizeMiB;
      const runs = await paired('seq_write', async (side, m) => {
        const path = join(m.mountpoint, 'seq-write.dat');
        rmSync(path, { force: true });
        syncAll();
        if (side === 'mirrored_async') await drain(m.mountpoint, s.drainTimeoutS); // the unlink of the last run: untimed
        const f = runFio({ name: 'seq_write_1m', filename: path, rw: 'write', bs: '1M', size: `${size}m`, endFsync: true }, 1_200_000);
        const out: Figures = { value: f.bwMiBs, write_returned_mib_s: f.bwMiBs, runtime_ms: f.runtimeMs, clat_mean_us: f.clatMeanUs, clat_p99_us: f.clatP99Us };
        if (side === 'mirrored_async') {
          const tq = process.hrtime.bigint();
          const lag = await mirrorLag(m.mountpoint);
          const statusS = Number(process.hrtime.bigint() - tq) / 1e9;
          const drainS = statusS + (await drainTimed(m.mountpoint));
          Object.assign(out, {
            lag_records_at_return: lag.lag_records,
            lag_mib_at_return: lag.lag_bytes / MiB,
            drain_after_return_s: drainS,
            write_drained_mib_s: (f.ioBytes / MiB) / (f.runtimeMs / 1000 + drainS),
          });
        }
        rmSync(path, { force: true });
        return out;
      }, (f) => `${sig(f['value'] ?? NaN)} MiB/s` + (f['write_drained_mib_s'] !== undefined ? `, ${sig(f['write_drained_mib_s'])} MiB/s until drained (drain ${sig(f['drain_after_return_s'] ?? NaN, 3)} s after fio returned)` : ''));
      const u = medians(runs.unmirrored);
      const a = medians(runs.mirrored_async);
      const ratio = sigOrNull(ratioOrNull(a['write_returned_mib_s'], u['write_returned_mib_s']), 3);
      const ratioDrained = sigOrNull(ratioOrNull(a['write_drained_mib_s'], u['write_returned_mib_s']), 3);
      return {
        description: `fio --rw=write --bs=1M --size=${size}m --ioengine=psync --end_fsync=1 --fallocate=none into a new file on the unmirrored mount and on the mirrored (async, file:// archive on the same disk) mount; "write returned" = fio's throughput (its runtime includes the final fsync); "write + drained" = bytes / (fio runtime + time from fio's return until the daemon reports the archive holds everything, as \`strata sync\` does)`,
        unit: 'MiB/s',
        unmirrored: u['write_returned_mib_s'] ?? null,
        mirrored_async_write_returned: a['write_returned_mib_s'] ?? null,
        mirrored_async_write_drained: a['write_drained_mib_s'] ?? null,
        drain_after_return_s: a['drain_after_return_s'] ?? null,
        lag_records_at_return: a['lag_records_at_return'] ?? null,
        ratio,
        ratio_definition: 'mirrored_async_write_returned / unmirrored',
        ratio_drained: ratioDrained,
        ratio_drained_definition: 'mirrored_async_write_drained / unmirrored',
        overhead_pct: ratio === null ? null : sig((1 - ratio) * 100, 3),
        goal: { subject: 'ratio', op: '>=', value: GOAL_RATIO, text: `mirrored_async/unmirrored >= ${GOAL_RATIO} (DRBD promises < 3% overhead, i.e. >= 0.97)` },
        met: ratio !== null && ratio >= GOAL_RATIO,
        medians: { unmirrored: u, mirrored_async: a },
        spread: { unmirrored: sigOrNull(spread(runs.unmirrored.map((r) => r.value ?? NaN)), 3), mirrored_async: sigOrNull(spread(runs.mirrored_async.map((r) => r.value ?? NaN)), 3) },
        runs,
      };
    });

    // ------------------------------------------------------------ 2. untar
    await part('untar', async () => {
      const tb = tarball;
      if (tb === null) throw new Error('no tarball');
      for (const m of [plain, asyncM]) mkdirSync(join(m.mountpoint, 'untar'), { recursive: true });
      const requests: Record<string, ReturnType<typeof requestsBetween>> = {};
      const runs = await paired('untar', async (side, m, rep) => {
        const dest = join(m.mountpoint, 'untar', `r${rep}`);
        mkdirSync(dest);
        syncAll();
        if (side === 'mirrored_async') await drain(m.mountpoint, s.drainTimeoutS);
        readToNull(tb.path);
        const counted = rep === 1 ? await requestCounts(m.mountpoint) : null;
        const t = run('tar', ['-xf', tb.path, '-C', dest], { timeoutMs: 900_000 });
        if (counted !== null) requests[side] = requestsBetween(counted, await requestCounts(m.mountpoint));
        const out: Figures = { value: t.seconds, tar_s: t.seconds };
        if (side === 'mirrored_async') {
          const lag = await mirrorLag(m.mountpoint);
          const drainS = await drainTimed(m.mountpoint);
          Object.assign(out, { lag_records_at_return: lag.lag_records, lag_mib_at_return: lag.lag_bytes / MiB, drain_after_tar_s: drainS, tar_plus_drain_s: t.seconds + drainS });
        }
        const sy = run('sync', [], { timeoutMs: 600_000 });
        out['sync_after_s'] = sy.seconds;
        if (rep === 1) {
          const found = run('find', [dest, '-mindepth', '1', '-printf', '.'], { timeoutMs: 300_000 }).stdout.length;
          if (found !== tb.entries) throw new Error(`${side}: extracted ${found} entries, the tarball has ${tb.entries}`);
        }
        return out;
      }, (f) => `tar ${sig(f['value'] ?? NaN, 3)} s` + (f['drain_after_tar_s'] !== undefined ? `, drained ${sig(f['drain_after_tar_s'], 3)} s later` : ''));
      const u = medians(runs.unmirrored);
      const a = medians(runs.mirrored_async);
      const ratio = sigOrNull(ratioOrNull(u['tar_s'], a['tar_s']), 3);
      return {
        description: '`tar -xf` of the source-tree tarball into an empty directory on the unmirrored and the mirrored-async mount (as root); timed figure: tar alone; on the mirrored mount also the time from tar\'s return until the archive holds everything (drain), then `sync` (both sides, extra)',
        unit: 's',
        unmirrored: u['tar_s'] ?? null,
        mirrored_async: a['tar_s'] ?? null,
        mirrored_async_tar_plus_drain: a['tar_plus_drain_s'] ?? null,
        drain_after_tar_s: a['drain_after_tar_s'] ?? null,
        lag_records_at_return: a['lag_records_at_return'] ?? null,
        ratio,
        ratio_definition: 'unmirrored_time / mirrored_async_time (>= 0.8 <=> mirrored <= 1.25x unmirrored)',
        ratio_drained: sigOrNull(ratioOrNull(u['tar_s'], a['tar_plus_drain_s']), 3),
        ratio_drained_definition: 'unmirrored tar time / mirrored (tar + drain) time',
        goal: { subject: 'ratio', op: '>=', value: GOAL_RATIO, text: `unmirrored/mirrored_async time >= ${GOAL_RATIO} (mirrored <= ${sig(1 / GOAL_RATIO, 3)}x unmirrored)` },
        met: ratio !== null && ratio >= GOAL_RATIO,
        medians: { unmirrored: u, mirrored_async: a },
        spread: { unmirrored: sigOrNull(spread(runs.unmirrored.map((r) => r.value ?? NaN)), 3), mirrored_async: sigOrNull(spread(runs.mirrored_async.map((r) => r.value ?? NaN)), 3) },
        requests_run1: {
          description: 'requests of the first untar on each side, per op, from `strata status` before and after tar: to_js = reached the JavaScript core, on_fuse_thread = answered by the bridge\'s FUSE thread',
          ...requests,
        },
        runs,
      };
    });

    // ------------------------------------------------------------ 3. op latency
    await part('op_latency', async () => {
      if (syncM === null) throw new Error('no sync-mode mount');
      const targets: { name: string; m: StrataMount; mirrored: boolean }[] = [
        { name: 'mirrored_sync', m: syncM, mirrored: true },
        { name: 'mirrored_async', m: asyncM, mirrored: true },
        { name: 'unmirrored', m: plain, mirrored: false },
      ];
      type OpsOut = { ops: number; seconds: number; ops_per_s: number; truncated: number } & Record<'all' | 'mkdir' | 'rmdir' | 'create' | 'unlink', LatencySummary>;
      const raw: Record<string, (Figures & { rep: number })[]> = { mirrored_sync: [], mirrored_async: [], unmirrored: [], loopback_volume_state: [], loopback_ship_small_record: [], file_ship_small_record: [] };
      const remote = await openArchiveClient(server.url, { tokenFile: server.tokenFile });
      const fileDir = join(L.ingest, 'rtt-file');
      mkdirSync(fileDir, { recursive: true });
      const local = await openArchiveClient(`file://${fileDir}`);
      try {
        for (let rep = 1; rep <= s.runs; rep++) {
          // Rotate the order of the mounts from one repetition to the next.
          const order = [...targets.slice((rep - 1) % targets.length), ...targets.slice(0, (rep - 1) % targets.length)];
          for (const t of order) {
            await checkpoint();
            noteLoad();
            syncAll();
            if (t.mirrored) await drain(t.m.mountpoint, s.drainTimeoutS);
            const r = run(process.execPath, [OPS_WORKER, t.m.mountpoint, String(s.ops), String(s.opsMaxS)], { timeoutMs: 900_000 });
            const o = JSON.parse(r.stdout.trim()) as OpsOut;
            const f: Figures & { rep: number } = { rep, ops: o.ops, truncated: o.truncated, seconds: sig(o.seconds), ops_per_s: sig(o.ops_per_s), median_us: o.all.median_us, p99_us: o.all.p99_us, mean_us: o.all.mean_us, max_us: o.all.max_us };
            for (const k of ['mkdir', 'rmdir', 'create', 'unlink'] as const) {
              f[`${k}_median_us`] = o[k].median_us;
              f[`${k}_p99_us`] = o[k].p99_us;
            }
            raw[t.name]!.push(f);
            progress(`op_latency ${t.name.padEnd(14)} run ${rep}/${s.runs}: median ${o.all.median_us} µs, p99 ${o.all.p99_us} µs over ${o.ops} ops${o.truncated ? ` (stopped at BENCH_OPS_MAX_S=${s.opsMaxS} s)` : ''}`);
          }
          await checkpoint();
          const vs = await volumeStateRoundTrips(remote, 'bench-sync', s.rttN);
          raw['loopback_volume_state']!.push({ rep, n: vs.n, median_us: vs.median_us, p99_us: vs.p99_us, mean_us: vs.mean_us, max_us: vs.max_us });
          const sr = await smallShipRoundTrips(remote, `bench-rtt-r${rep}`, s.shipRttN);
          raw['loopback_ship_small_record']!.push({ rep, n: sr.n, median_us: sr.median_us, p99_us: sr.p99_us, mean_us: sr.mean_us, max_us: sr.max_us });
          const fr = await smallShipRoundTrips(local, `bench-rtt-r${rep}`, s.shipRttN);
          raw['file_ship_small_record']!.push({ rep, n: fr.n, median_us: fr.median_us, p99_us: fr.p99_us, mean_us: fr.mean_us, max_us: fr.max_us });
          progress(`op_latency loopback run ${rep}/${s.runs}: volumeState median ${vs.median_us} µs p99 ${vs.p99_us} µs; ship(1 small record) strata:// median ${sr.median_us} µs p99 ${sr.p99_us} µs, file:// median ${fr.median_us} µs p99 ${fr.p99_us} µs`);
        }
      } finally {
        await remote.close().catch(() => undefined);
        await local.close().catch(() => undefined);
      }
      const med = Object.fromEntries(Object.entries(raw).map(([k, rs]) => [k, medians(rs)]));
      const pick = (k: string): { median_us: number | null; p99_us: number | null } => ({ median_us: med[k]?.['median_us'] ?? null, p99_us: med[k]?.['p99_us'] ?? null });
      const syncMed = med['mirrored_sync']?.['median_us'];
      const rttMed = med['loopback_volume_state']?.['median_us'];
      return {
        description: `one process (bench/lib/mirror-ops-worker.ts) does ${s.ops} small mutating ops (rounds of mkdir, rmdir, create = open(O_CREAT|O_EXCL)+close, unlink), each timed on its own (a run stops after ${s.opsMaxS} s, BENCH_OPS_MAX_S, with fewer ops: see runs[].ops and truncated); on a sync-mode mount (strata:// server on 127.0.0.1: every op waits for the archive's ack), an async-mode mount (file://) and an unmirrored mount. Next to it, the archive protocol's loopback round trip: ${s.rttN} volumeState calls through the remote client, and ${s.shipRttN} ship() calls of one small record each (strata:// and file://), one at a time.`,
        unit: 'µs',
        statistic: 'median over the runs of each run\'s median and p99',
        mirrored_sync: pick('mirrored_sync'),
        loopback_round_trip_volume_state: pick('loopback_volume_state'),
        loopback_ship_small_record: pick('loopback_ship_small_record'),
        file_ship_small_record: pick('file_ship_small_record'),
        mirrored_async: pick('mirrored_async'),
        unmirrored: pick('unmirrored'),
        sync_median_over_round_trip: syncMed !== undefined && rttMed !== undefined && rttMed > 0 ? sig(syncMed / rttMed, 3) : null,
        medians: med,
        runs: raw,
      };
    });

    // ------------------------------------------------------------ 4. ingest
    await part('ingest', async () => {
      const raw: { file: (IngestFigures & { rep: number; position: number })[]; strata: (IngestFigures & { rep: number; position: number })[] } = { file: [], strata: [] };
      for (let rep = 1; rep <= s.runs; rep++) {
        const order = rep % 2 === 1 ? (['file', 'strata'] as const) : (['strata', 'file'] as const);
        for (const [i, kind] of order.entries()) {
          await checkpoint();
          noteLoad();
          syncAll();
          const url = kind === 'file' ? `file://${join(L.ingest, `file-r${rep}`)}` : server.url;
          if (kind === 'file') mkdirSync(join(L.ingest, `file-r${rep}`), { recursive: true });
          const client = await openArchiveClient(url, kind === 'strata' ? { tokenFile: server.tokenFile, requestTimeoutMs: 120_000 } : {});
          try {
            const f = await ingest(client, `bench-ingest-r${rep}`, s.ingestMiB, s.ingestBatchMiB);
            const rec = { rep, position: i + 1, ...(rounded(f as unknown as Figures) as unknown as IngestFigures) };
            raw[kind].push(rec);
            progress(`ingest ${kind === 'file' ? 'file://  ' : 'strata://'} run ${rep}/${s.runs}: ${sig(f.mb_per_s)} MB/s (${f.batches} batches, batch median ${sig(f.batch_median_ms, 3)} ms)`);
          } finally {
            await client.close().catch(() => undefined);
          }
        }
      }
      const mf = medians(raw.file as unknown as Figures[]);
      const ms = medians(raw.strata as unknown as Figures[]);
      return {
        description: `${s.ingestMiB} MiB of 1 MiB \`write\` records of random data (after a \`create\` of the file; a closing \`setattr\`), ${s.ingestBatchMiB} records per ship() call, one call in flight, straight through ArchiveClient.ship() into a new volume of (a) a file:// archive on the bench disk (store in a worker thread of this process) and (b) the strata:// server on 127.0.0.1; only the ship() calls are timed`,
        unit: 'MB/s (10^6 bytes/s of write payload)',
        file: mf['mb_per_s'] ?? null,
        strata: ms['mb_per_s'] ?? null,
        file_mib_per_s: mf['mib_per_s'] ?? null,
        strata_mib_per_s: ms['mib_per_s'] ?? null,
        medians: { file: mf, strata: ms },
        runs: raw,
      };
    });
  } catch (err) {
    fatal = errMsg(err);
    progress(`FATAL: ${fatal}`);
  } finally {
    const serverLog = server.logTail();
    // Unmount (the sync-mode mount needs its archive), then stop the server
    // with the event loop running (see stopAsync), then the rest of the cleanup.
    if (!cleanedUp) {
      for (const m of mounts()) if (isMountPoint(m.mountpoint)) m.unmount();
      await server.stopAsync();
    }
    cleanupResult = cleanup();
    if (serverLog && (fatal !== null || Object.keys(errors).length > 0)) progress(`archive server log tail:\n${serverLog}`);
  }

  const wanted = PHASES.filter(wants);
  const table: Record<string, string> = {};
  const sw = results['seq_write'] as { ratio: number | null; met: boolean; unmirrored: number | null; mirrored_async_write_returned: number | null; mirrored_async_write_drained: number | null } | undefined;
  if (sw) table['seq_write'] = `${sw.met ? 'met' : 'NOT met'}: ratio ${sw.ratio} (>= ${GOAL_RATIO}); unmirrored ${sw.unmirrored} MiB/s, mirrored async ${sw.mirrored_async_write_returned} MiB/s (write returned), ${sw.mirrored_async_write_drained} MiB/s (write + drained)`;
  const ut = results['untar'] as { ratio: number | null; met: boolean; unmirrored: number | null; mirrored_async: number | null; mirrored_async_tar_plus_drain: number | null } | undefined;
  if (ut) table['untar'] = `${ut.met ? 'met' : 'NOT met'}: ratio ${ut.ratio} (unmirrored/mirrored >= ${GOAL_RATIO}); unmirrored ${ut.unmirrored} s, mirrored async ${ut.mirrored_async} s (tar), ${ut.mirrored_async_tar_plus_drain} s (tar + drained)`;
  const ol = results['op_latency'] as { mirrored_sync: { median_us: number | null; p99_us: number | null }; loopback_round_trip_volume_state: { median_us: number | null; p99_us: number | null }; loopback_ship_small_record: { median_us: number | null; p99_us: number | null }; mirrored_async: { median_us: number | null; p99_us: number | null }; unmirrored: { median_us: number | null; p99_us: number | null } } | undefined;
  if (ol) {
    const f = (x: { median_us: number | null; p99_us: number | null }): string => `median ${x.median_us} µs, p99 ${x.p99_us} µs`;
    table['op_latency'] = `sync mode ${f(ol.mirrored_sync)}; loopback volumeState ${f(ol.loopback_round_trip_volume_state)}; ship(1 small record) ${f(ol.loopback_ship_small_record)}; async ${f(ol.mirrored_async)}; unmirrored ${f(ol.unmirrored)}`;
  }
  const ig = results['ingest'] as { file: number | null; strata: number | null } | undefined;
  if (ig) table['ingest'] = `file:// ${ig.file} MB/s, strata:// ${ig.strata} MB/s`;
  for (const [k, e] of Object.entries(errors)) table[k] = `FAILED: ${e}`;
  const goals = [sw, ut].filter((x): x is NonNullable<typeof x> => x !== undefined);
  const complete = fatal === null && !wasInterrupted() && wanted.every((p) => results[p] !== undefined);
  const doc = {
    ...documentHead('strata-bench-mirror/1', startedAt, t0, complete, fatal, errors),
    summary: {
      goals_met: goals.filter((g) => g.met).length,
      goals_total: (wants('seq_write') ? 1 : 0) + (wants('untar') ? 1 : 0),
      all_met: goals.length === (wants('seq_write') ? 1 : 0) + (wants('untar') ? 1 : 0) && goals.every((g) => g.met),
      table,
    },
    machine,
    interference: { cpu_busy_before_start_pct: cpuBusyBefore, max_load_1m: maxLoad },
    strata: {
      ...gitFacts(),
      cli: join(REPO, 'bin', 'strata.js'),
      mount_args: s.mountArgs,
      mirror_args: s.mirrorArgs,
      remounts: mounts().reduce((n, m) => n + m.remounts.length, 0),
    },
    config: {
      runs: s.runs,
      seq_size_mib: s.seqSizeMiB,
      ops: s.ops,
      ops_max_s: s.opsMaxS,
      rtt_n: s.rttN,
      ship_rtt_n: s.shipRttN,
      ingest_mib: s.ingestMiB,
      ingest_records_per_batch: s.ingestBatchMiB,
      only: s.only,
      archives: {
        mirrored_async: 'file:// archive in the work directory (same disk); its store runs in a worker thread of the mount daemon',
        mirrored_sync: 'strata://127.0.0.1:PORT, a `strata archive serve` process with its data in the work directory (same disk)',
      },
      drain: 'the daemon\'s control request {cmd:"sync"}, what `strata sync MNT` sends, timed in-process (without the ~0.1-0.2 s of starting the CLI)',
      statistic: 'median of the runs per side; ratios computed from the two medians',
    },
    layout: { work_dir: workDir, unmounted: cleanupResult.unmounted, removed: cleanupResult.removed },
    tarball: tarball === null ? null : tarballReport(tarball),
    results,
  };
  return finishDocument(doc, s.output, s.strict);
}

function ratioOrNull(num: number | undefined, den: number | undefined): number | null {
  if (num === undefined || den === undefined || den === 0) return null;
  return num / den;
}

function gitFacts(): { commit: string; dirty: boolean } {
  const head = run('git', ['-C', REPO, 'rev-parse', 'HEAD'], { allowFailure: true, timeoutMs: 10_000 });
  const st = run('git', ['-C', REPO, 'status', '--porcelain'], { allowFailure: true, timeoutMs: 30_000 });
  return { commit: head.status === 0 ? head.stdout.trim() : 'unknown', dirty: st.stdout.trim() !== '' };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:mirror: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
