// `npm run bench:takeover`: automatic takeover (issue 15, docs/takeover.md),
// the scenario of examples/takeover-drill.sh measured. ONE JSON document on
// stdout, progress on stderr; nothing is asserted.
//
// A real `strata archive serve --takeover-dir --takeover-after BENCH_TAKEOVER_AFTER_S
// --takeover-lease BENCH_TAKEOVER_LEASE_S --on-takeover true` on 127.0.0.1, three
// primaries (alpha, beta, gamma: three stores, mounts, volumes; `--lease
// BENCH_TAKEOVER_LEASE_S`) each under a writer that writes+fsyncs small files
// (8 KiB) in a loop. After BENCH_TAKEOVER_WINDOW_S seconds (the "before" window)
// alpha's daemon is killed (kill -9) and the harness waits for the archive host
// to serve alpha.
//
//   failure_to_serving   from the kill to the takeover mount serving, broken down from
//                        the archive's JSON log lines (`event`, pino `time`, ms):
//                        detection (kill -> takeover-start: lease lapse + takeover-after),
//                        fence (takeover-start -> fenced: the `strata recover` CLI starting
//                        and fencing), top tiers (fenced -> takeover-serving: recover's
//                        restore of the top tiers, its daemon starting and mounting), hook
//                        (the --on-takeover command); plus `strata archive status --json`
//                        takeover.timings. Goal: serving <= detection + 1 s.
//   surviving_mirroring  beta+gamma: records acked by the archive per second (the daemons'
//                        mirror.ackedSeq, read over the control channel, no CLI start) and
//                        fsynced files per second, in the window before the kill and during
//                        the takeover (takeover-start -> takeover-serving, when the recover
//                        child runs on the archive host), and kill -> serving. Goal: the
//                        takeover window's acked-records rate >= 0.8x the before rate.
//
// Settings: BENCH_TAKEOVER_AFTER_S (5), BENCH_TAKEOVER_LEASE_S (2), BENCH_TAKEOVER_WINDOW_S (8),
// BENCH_TAKEOVER_PAUSE_MS (20, the writers' pause between files), BENCH_DIR (/var/tmp),
// BENCH_TAKEOVER_OUTPUT (also write the JSON there), BENCH_KEEP, BENCH_STRICT (exit 3 on a missed goal).
// Everything started is stopped and unmounted in `finally`, also on failure or Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { callControl } from '../src/daemon/control.js';
import type { VolumeLease } from '../src/protocol/leases.js';
import { envFlag, envInt } from './lib/env.js';
import { ArchiveServerProcess } from './lib/mirror-archive.js';
import { checkpoint, documentHead, finishDocument, installInterruptHandlers, progress, removeWorkDir, run, wasInterrupted } from './lib/proc.js';
import { STRATA_CLI, StrataMount } from './lib/strata.js';
import { isMountPoint } from './lib/system.js';

const VOLS = ['alpha', 'beta', 'gamma'] as const;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function settings() {
  return {
    afterS: envInt('BENCH_TAKEOVER_AFTER_S', 5, 1),
    leaseS: envInt('BENCH_TAKEOVER_LEASE_S', 2, 1),
    windowS: envInt('BENCH_TAKEOVER_WINDOW_S', 8, 1),
    pauseMs: envInt('BENCH_TAKEOVER_PAUSE_MS', 20, 0),
    benchParent: resolve(process.env['BENCH_DIR'] || '/var/tmp'),
    output: process.env['BENCH_TAKEOVER_OUTPUT'] ? resolve(process.env['BENCH_TAKEOVER_OUTPUT']) : null,
    keep: envFlag('BENCH_KEEP'),
    strict: envFlag('BENCH_STRICT'),
  };
}

/** Writes+fsyncs 8 KiB files in a loop under MNT/load; logs "i epoch_ms" per fsync that returned. */
const WRITER = `
import os, sys, time
d = os.path.join(sys.argv[1], 'load')
os.makedirs(d, exist_ok=True)
log = open(sys.argv[2], 'a')
data = (sys.argv[3] + ' ').encode() * 1
data = (data * (8192 // len(data) + 1))[:8192]
i = 0
while True:
    i += 1
    try:
        fd = os.open(os.path.join(d, 'f%d' % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        time.sleep(0.2)
        continue
    log.write('%d %d\\n' % (i, int(time.time() * 1000)))
    log.flush()
    time.sleep(float(sys.argv[4]))
`;

class Writer {
  private readonly proc: ChildProcess;
  constructor(mnt: string, readonly logFile: string, tag: string, pauseMs: number) {
    this.proc = spawn('python3', ['-c', WRITER, mnt, logFile, tag, String(pauseMs / 1000)], { stdio: 'ignore' });
    this.proc.on('error', () => {});
  }
  stop(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
  /** Epoch-ms times of the fsyncs that returned. */
  times(): number[] {
    if (!existsSync(this.logFile)) return [];
    return readFileSync(this.logFile, 'utf8').split('\n').filter((l) => l.includes(' ')).map((l) => Number(l.split(' ')[1]));
  }
  countIn(from: number, to: number): number {
    return this.times().filter((t) => t >= from && t < to).length;
  }
}

interface LogEvent { event: string; time: number; volume?: string; [k: string]: unknown }

function events(file: string): LogEvent[] {
  if (!existsSync(file)) return [];
  const out: LogEvent[] = [];
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l.includes('"event"')) continue;
    try {
      out.push(JSON.parse(l) as LogEvent);
    } catch {
      // a line being written
    }
  }
  return out;
}

async function ackedSeq(mnt: string): Promise<number> {
  const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { mirror?: { ackedSeq?: number } };
  const v = st.mirror?.ackedSeq;
  if (typeof v !== 'number') throw new Error(`no mirror.ackedSeq in the status of ${mnt}`);
  return v;
}

function daemonPid(mnt: string): number {
  const r = run(process.execPath, [STRATA_CLI, 'status', '--json', mnt], { timeoutMs: 30_000 });
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}

async function main(): Promise<number> {
  const s = settings();
  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  mkdirSync(s.benchParent, { recursive: true });
  const workDir = mkdtempSync(join(s.benchParent, 'strata-bench-takeover-'));
  const takeoverDir = join(workDir, 'takeover');
  const server = new ArchiveServerProcess(join(workDir, 'archive'), 'info', [
    '--takeover-dir', takeoverDir, '--takeover-after', String(s.afterS), '--takeover-lease', String(s.leaseS), '--takeover-depth', '2', '--on-takeover', 'true',
  ]);
  const prims: StrataMount[] = [];
  const writers: Writer[] = [];
  const takeoverMount = new StrataMount(join(takeoverDir, 'alpha', 'store'), join(takeoverDir, 'alpha', 'mnt'), [], false);
  let cleaned = { unmounted: false, removed: false };
  const cleanup = (): { unmounted: boolean; removed: boolean } => {
    for (const w of writers) w.stop();
    for (const m of prims) m.unmount();
    // The takeover daemons are detached from the server: unmount every one there is.
    if (existsSync(takeoverDir)) {
      for (const v of readdirSync(takeoverDir)) {
        const mnt = join(takeoverDir, v, 'mnt');
        if (existsSync(mnt) && isMountPoint(mnt)) (v === 'alpha' ? takeoverMount : new StrataMount(join(takeoverDir, v, 'store'), mnt, [], false)).unmount();
      }
    }
    server.stop();
    const still = [...prims.map((m) => m.mountpoint), takeoverMount.mountpoint].filter((m) => existsSync(m) && isMountPoint(m));
    if (still.length > 0) {
      progress(`WARNING: ${still.join(', ')} still mounted; leaving ${workDir} in place`);
      return { unmounted: false, removed: false };
    }
    if (s.keep) {
      progress(`BENCH_KEEP: leaving ${workDir}`);
      return { unmounted: true, removed: false };
    }
    return { unmounted: true, removed: removeWorkDir(workDir) };
  };
  installInterruptHandlers(() => cleanup());

  const errors: Record<string, string> = {};
  let fatal: string | null = null;
  const results: Record<string, unknown> = {};
  let maxLoad = 0;
  const noteLoad = (): void => { maxLoad = Math.max(maxLoad, r2(loadavg()[0] ?? 0)); };
  try {
    progress(`archive server with --takeover-dir, --takeover-after ${s.afterS}, --takeover-lease ${s.leaseS}`);
    await server.start();
    for (const v of VOLS) {
      const mnt = join(workDir, `mnt-${v}`);
      mkdirSync(mnt);
      const m = new StrataMount(join(workDir, `store-${v}`), mnt, ['--archive', server.url, '--token-file', server.tokenFile, '--volume', v, '--lease', String(s.leaseS)], false);
      prims.push(m);
      progress(`mounting ${v}`);
      m.mount();
    }
    for (const [i, v] of VOLS.entries()) writers.push(new Writer(prims[i]!.mountpoint, join(workDir, `load-${v}.log`), v, s.pauseMs));
    // Warm-up: every writer has fsynced files, the leases are held.
    for (let i = 0; i < 600 && !writers.every((w) => w.times().length >= 10); i++) { await checkpoint(); await sleep(100); }
    if (!writers.every((w) => w.times().length >= 10)) throw new Error('the writers did not get 10 fsyncs each within 60 s');
    const survivors = prims.slice(1).map((m) => m.mountpoint);
    const acked = async (): Promise<number> => (await Promise.all(survivors.map(ackedSeq))).reduce((a, b) => a + b, 0);

    progress(`before window: ${s.windowS} s`);
    const b0 = Date.now();
    const a0 = await acked();
    await sleep(s.windowS * 1000);
    await checkpoint();
    const a1 = await acked();
    const b1 = Date.now();
    noteLoad();

    const pid = daemonPid(prims[0]!.mountpoint);
    const logFile = server.stderrFile;
    const kill = Date.now();
    const aKill = await acked();
    process.kill(pid, 'SIGKILL');
    writers[0]!.stop();
    progress(`killed alpha's daemon (pid ${pid}); waiting for the takeover`);
    // Poll the server's log file (cheap: no process start that would load the machine).
    let aStart: number | null = null;
    let startAt: number | null = null;
    let serving: LogEvent | undefined;
    const deadline = Date.now() + (s.afterS + 120) * 1000;
    while (Date.now() < deadline) {
      await checkpoint();
      const ev = events(logFile).filter((e) => e.volume === 'alpha');
      if (aStart === null) {
        const st = ev.find((e) => e.event === 'takeover-start');
        if (st) { aStart = await acked(); startAt = Date.now(); }
      }
      serving = ev.find((e) => e.event === 'takeover-serving');
      if (serving) break;
      const failed = ev.find((e) => e.event === 'takeover-failed');
      if (failed) throw new Error(`takeover failed: ${JSON.stringify(failed)}`);
      await sleep(50);
    }
    const servingSeen = Date.now();
    const aServing = await acked();
    noteLoad();
    if (!serving) throw new Error(`alpha not served ${(Date.now() - kill) / 1000} s after the kill; server log: ${server.logTail()}`);
    // The hook runs right after; give it a moment to be logged.
    for (let i = 0; i < 50 && !events(logFile).some((e) => e.event === 'takeover-hook' && e.volume === 'alpha'); i++) await sleep(100);
    const ev = events(logFile).filter((e) => e.volume === 'alpha');
    const at = (name: string, pred: (e: LogEvent) => boolean = () => true): number | null => ev.find((e) => e.event === name && pred(e))?.time ?? null;
    const tLapsed = at('lease-lapsed');
    const tStart = at('takeover-start');
    const tFenced = at('fenced', (e) => e.takeover === true);
    const tServing = serving.time;
    const hookEv = ev.find((e) => e.event === 'takeover-hook');
    const sec = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : r3((b - a) / 1000));
    // The takeover mount answers (from this side), once.
    const answered = run('ls', ['-a', takeoverMount.mountpoint], { allowFailure: true, timeoutMs: 10_000 }).status === 0;
    const statusRun = run(process.execPath, [STRATA_CLI, 'archive', 'status', '--json', '--archive', server.url, '--token-file', server.tokenFile], { allowFailure: true, timeoutMs: 30_000 });
    let row: VolumeLease | undefined;
    try {
      row = (JSON.parse(statusRun.stdout) as VolumeLease[]).find((r) => r.volume === 'alpha');
    } catch {
      row = undefined;
    }
    const detection = sec(kill, tStart);
    const total = sec(kill, tServing)!;
    const afterDetection = sec(tStart, tServing);
    results['failure_to_serving'] = {
      total_s: total,
      breakdown_s: {
        detection: detection,
        detection_parts: { kill_to_lease_lapsed: sec(kill, tLapsed), lease_lapsed_to_takeover_start: sec(tLapsed, tStart) },
        fence: sec(tStart, tFenced),
        top_tiers_until_serving: sec(tFenced, tServing),
        recover_child_total: afterDetection,
        recover_daemon_own_serving_after: (serving['servedAfter'] as number | null | undefined) ?? null,
        hook: row?.takeover?.timings?.hook == null ? null : r3(row.takeover.timings.hook),
        hook_exit: hookEv?.['exit'] ?? null,
      },
      kill_to_hook_logged_s: hookEv ? sec(kill, hookEv.time) : null,
      takeover_mount_answers: answered,
      archive_status_timings: row?.takeover?.timings ? Object.fromEntries(Object.entries(row.takeover.timings).map(([k, v]) => [k, v === null ? null : r3(v)])) : null,
      archive_status: row ? { state: row.state, epoch: row.epoch, takeover_state: row.takeover?.state ?? null, attempts: row.takeover?.attempts ?? null } : null,
      goal: 'serving <= detection + 1 s (from takeover-start to takeover-serving <= 1 s)',
      goal_s: detection === null ? null : r3(detection + 1),
      met: afterDetection !== null && afterDetection <= 1,
      note: `detection is bounded below by --takeover-after ${s.afterS} s minus the lease age at the kill (renewals every ${Math.min(1, s.leaseS / 4)} s), plus the archive's tick`,
    };

    const rate = (n: number, ms: number): number => (ms > 0 ? n / (ms / 1000) : NaN);
    const filesIn = (from: number, to: number): number => writers.slice(1).reduce((n, w) => n + w.countIn(from, to), 0);
    const before = { seconds: r2((b1 - b0) / 1000), acked_records_per_s: r2(rate(a1 - a0, b1 - b0)), fsynced_files_per_s: r2(rate(filesIn(b0, b1), b1 - b0)) };
    const win = startAt === null ? null : {
      seconds: r2((servingSeen - startAt) / 1000),
      acked_records_per_s: r2(rate(aServing - aStart!, servingSeen - startAt)),
      fsynced_files_per_s: r2(rate(filesIn(startAt, servingSeen), servingSeen - startAt)),
    };
    const whole = {
      seconds: r2((servingSeen - kill) / 1000),
      acked_records_per_s: r2(rate(aServing - aKill, servingSeen - kill)),
      fsynced_files_per_s: r2(rate(filesIn(kill, servingSeen), servingSeen - kill)),
    };
    const ratio = win === null ? null : r2(win.acked_records_per_s / before.acked_records_per_s);
    results['surviving_mirroring'] = {
      primaries: ['beta', 'gamma'],
      load: `per primary: one writer, 8 KiB file written + fsynced, ${s.pauseMs} ms pause, in a loop`,
      before,
      during_takeover: win,
      kill_to_serving: whole,
      ratio_acked_records: ratio,
      ratio_fsynced_files: win === null ? null : r2(win.fsynced_files_per_s / before.fsynced_files_per_s),
      ratio_kill_to_serving_acked_records: r2(whole.acked_records_per_s / before.acked_records_per_s),
      goal_ratio: 0.8,
      met: ratio !== null && ratio >= 0.8,
      windows: 'before: the last BENCH_TAKEOVER_WINDOW_S s before the kill; during_takeover: from the harness seeing takeover-start in the log to seeing takeover-serving (polled every 50 ms); acked records from mirror.ackedSeq of beta+gamma',
    };
    for (const w of writers) w.stop();
  } catch (err) {
    if (wasInterrupted()) fatal = 'interrupted';
    else fatal = err instanceof Error ? err.message : String(err);
    progress(`FAILED: ${fatal}`);
  } finally {
    cleaned = cleanup();
  }

  const goals = ['failure_to_serving', 'surviving_mirroring'].map((k) => results[k] as { met: boolean } | undefined).filter((g): g is { met: boolean } => g !== undefined);
  const complete = fatal === null && goals.length === 2;
  const fts = results['failure_to_serving'] as { total_s: number; breakdown_s: { detection: number | null; fence: number | null; top_tiers_until_serving: number | null; hook: number | null }; met: boolean } | undefined;
  const sm = results['surviving_mirroring'] as { ratio_acked_records: number | null; met: boolean } | undefined;
  const table: Record<string, string> = {};
  if (fts) table['failure_to_serving'] = `${fts.total_s} s (detection ${fts.breakdown_s.detection} s, fence ${fts.breakdown_s.fence} s, top tiers until serving ${fts.breakdown_s.top_tiers_until_serving} s, hook ${fts.breakdown_s.hook} s): goal detection + 1 s ${fts.met ? 'met' : 'NOT met'}`;
  if (sm) table['surviving_mirroring'] = `${sm.ratio_acked_records}x of before: goal >= 0.8x ${sm.met ? 'met' : 'NOT met'}`;
  const doc = {
    ...documentHead('strata-bench-takeover/1', startedAt, t0, complete, fatal, errors),
    summary: { goals_met: goals.filter((g) => g.met).length, goals_total: 2, all_met: goals.length === 2 && goals.every((g) => g.met), table },
    machine: { cpus: cpus().length, max_load_1m: maxLoad },
    config: {
      takeover_after_s: s.afterS, lease_s: s.leaseS, takeover_lease_s: s.leaseS, takeover_depth: 2, window_s: s.windowS, writer_pause_ms: s.pauseMs,
      archive: 'strata archive serve on 127.0.0.1 (--log-level info, its log read for the event lines), data on the same disk',
    },
    layout: { work_dir: workDir, ...cleaned },
    results,
  };
  return finishDocument(doc, s.output, s.strict);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:takeover: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
