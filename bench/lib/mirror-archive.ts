// The archive side of bench/mirror.ts: a real `strata archive serve` process
// on 127.0.0.1, the daemon's control channel (drain = what `strata sync`
// does, status), archive ingest through ArchiveClient.ship(), and the
// protocol's loopback round trip.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import type { ArchiveClient } from '../../src/protocol/archive-api.js';
import { encodeRecord, ROOT_ID, type Attrs, type Record as StrataRecord, type Time } from '../../src/protocol/records.js';
import { callControl } from '../../src/daemon/control.js';
import { progress } from './proc.js';
import { STRATA_CLI } from './strata.js';
import { summarizeNs, type LatencySummary } from './mirror-stats.js';

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Running (and not a zombie). Works while the event loop is blocked (cleanup on a second signal). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * `strata archive serve --data DIR --listen 127.0.0.1:0 --token-file F`, its
 * stdout and stderr going to files (not pipes: the harness blocks in
 * spawnSync for long stretches and must never stall the server on a full pipe).
 */
export class ArchiveServerProcess {
  private proc: ChildProcess | null = null;
  hostPort = '';
  readonly tokenFile: string;
  readonly dataDir: string;
  readonly stdoutFile: string;
  readonly stderrFile: string;

  constructor(readonly dir: string, readonly logLevel: string, readonly extraArgs: readonly string[] = []) {
    mkdirSync(dir, { recursive: true });
    this.tokenFile = join(dir, 'token');
    this.dataDir = join(dir, 'data');
    this.stdoutFile = join(dir, 'server.out');
    this.stderrFile = join(dir, 'server.log');
  }

  get url(): string {
    return `strata://${this.hostPort}`;
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  async start(): Promise<void> {
    writeFileSync(this.tokenFile, `bench-${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
    const out = openSync(this.stdoutFile, 'w');
    const err = openSync(this.stderrFile, 'w');
    try {
      // Its own process group (detached): a Ctrl-C in the terminal must not stop
      // the archive under the sync-mode mount before that mount is unmounted.
      this.proc = spawn(process.execPath, [
        STRATA_CLI, 'archive', 'serve', '--data', this.dataDir, '--listen', '127.0.0.1:0', '--token-file', this.tokenFile, '--log-level', this.logLevel, ...this.extraArgs,
      ], { stdio: ['ignore', out, err], detached: true });
      this.proc.unref();
    } finally {
      closeSync(out);
      closeSync(err);
    }
    const t0 = Date.now();
    for (;;) {
      const text = existsSync(this.stdoutFile) ? readFileSync(this.stdoutFile, 'utf8') : '';
      const line = text.split('\n').find((l) => l.includes('"listening"'));
      if (line !== undefined) {
        this.hostPort = (JSON.parse(line) as { listening: string }).listening;
        return;
      }
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`strata archive serve exited (${this.proc.exitCode ?? this.proc.signalCode}) before listening: ${this.logTail()}`);
      if (Date.now() - t0 > 20_000) throw new Error(`strata archive serve not listening after 20 s: ${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  logTail(): string {
    try {
      return readFileSync(this.stderrFile, 'utf8').trim().split('\n').slice(-5).join('\n');
    } catch {
      return '';
    }
  }

  /**
   * SIGTERM, up to 15 s for a clean exit (the server's own shutdown grace is
   * 10 s), then SIGKILL. Keeps this process's event loop running meanwhile:
   * the server's graceful close of an HTTP/2 connection needs this side to
   * finish the TCP close, which a blocked event loop never does.
   */
  async stopAsync(): Promise<void> {
    const pid = this.terminate();
    if (pid === null) return;
    for (let i = 0; i < 150 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    this.stop();
  }

  /** Sends SIGTERM to a running server; its pid, or null when there is none. */
  private terminate(): number | null {
    const pid = this.proc?.pid;
    if (pid === undefined || !pidAlive(pid)) return null;
    progress(`stopping the archive server (pid ${pid})`);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return null;
    }
    return pid;
  }

  /** SIGTERM, up to 15 s for a clean exit, then SIGKILL. Synchronous (usable from a signal handler). */
  stop(): void {
    const pid = this.terminate();
    if (pid === null) return;
    for (let i = 0; i < 150 && pidAlive(pid); i++) sleepMs(100);
    if (pidAlive(pid)) {
      progress(`archive server ${pid} still running after 15 s: SIGKILL`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

// ---------------------------------------------------------------- control channel

export interface DrainReply {
  mirrored?: boolean;
  drained?: boolean;
  ackedSeq?: number;
  lastSeq?: number;
  connection?: string;
  lastError?: string | null;
}

/**
 * What `strata sync MNT` does, without the CLI's process start: the daemon
 * records pending attributes and waits until the archive acked every record.
 * Throws when it is not drained within timeoutS.
 */
export async function drain(mnt: string, timeoutS: number): Promise<DrainReply> {
  const r = (await callControl(mnt, { cmd: 'sync', timeoutMs: timeoutS * 1000 }, timeoutS * 1000 + 10_000)) as DrainReply;
  if (r.mirrored === false) throw new Error(`${mnt} is not mirrored`);
  if (r.drained !== true) throw new Error(`${mnt} not drained after ${timeoutS} s: archive has ${r.ackedSeq} of ${r.lastSeq} records (${r.connection}${r.lastError ? `: ${r.lastError}` : ''})`);
  return r;
}

export interface LagFigures {
  lag_records: number;
  lag_bytes: number;
  journal_bytes: number;
  writers_blocked: number;
}

/** The mirror's lag and journal from the daemon's status (NaN where the daemon does not say). */
export async function mirrorLag(mnt: string): Promise<LagFigures> {
  const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { mirror?: { lag?: { records?: number; bytes?: number }; journal?: { bytes?: number; writersBlocked?: number } } };
  const n = (v: unknown): number => (typeof v === 'number' ? v : NaN);
  return {
    lag_records: n(st.mirror?.lag?.records),
    lag_bytes: n(st.mirror?.lag?.bytes),
    journal_bytes: n(st.mirror?.journal?.bytes),
    writers_blocked: n(st.mirror?.journal?.writersBlocked),
  };
}

/** Requests the mount has answered so far, per op: all of them, and those the FUSE thread answered itself (`strata status`). */
export interface RequestCounts { requests: Record<string, number>; onFuseThread: Record<string, number> }

export async function requestCounts(mnt: string): Promise<RequestCounts> {
  const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { requests?: Record<string, number>; requestsOnFuseThread?: Record<string, number> };
  return { requests: st.requests ?? {}, onFuseThread: st.requestsOnFuseThread ?? {} };
}

/**
 * The requests between two readings, per op: those that reached JavaScript
 * (all less the FUSE thread's) and those the FUSE thread answered, with totals.
 */
export function requestsBetween(a: RequestCounts, b: RequestCounts): { to_js: Record<string, number>; on_fuse_thread: Record<string, number>; to_js_total: number; total: number } {
  const to_js: Record<string, number> = {};
  const on_fuse_thread: Record<string, number> = {};
  let jsTotal = 0;
  let total = 0;
  for (const op of [...new Set([...Object.keys(a.requests), ...Object.keys(b.requests)])].sort()) {
    const all = (b.requests[op] ?? 0) - (a.requests[op] ?? 0);
    if (all === 0) continue;
    const fast = (b.onFuseThread[op] ?? 0) - (a.onFuseThread[op] ?? 0);
    if (all - fast !== 0) to_js[op] = all - fast;
    if (fast !== 0) on_fuse_thread[op] = fast;
    jsTotal += all - fast;
    total += all;
  }
  return { to_js, on_fuse_thread, to_js_total: jsTotal, total };
}

// ---------------------------------------------------------------- ingest and round trips

const MiB = 1024 * 1024;

function nowTime(): Time {
  const ms = Date.now();
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000];
}

function fileAttrs(size: number): Attrs {
  const t = nowTime();
  return { mode: 0o100644, uid: 0, gid: 0, size, atime: t, mtime: t, rdev: 0 };
}

export interface IngestFigures {
  /** Payload bytes of the write records shipped. */
  bytes: number;
  batches: number;
  /** Time spent inside ship() calls only (building the frames and random data is excluded). */
  ship_seconds: number;
  mb_per_s: number;
  mib_per_s: number;
  batch_median_ms: number;
  batch_p99_ms: number;
}

/**
 * Ships `totalMiB` of 1 MiB `write` records of random data (after a `create`
 * for the file under the root, and a closing `setattr` with its size) to a
 * new volume, `recordsPerBatch` records per ship() call, one call in flight
 * (as the shipper does). Only the ship() calls are timed.
 */
export async function ingest(client: ArchiveClient, volume: string, totalMiB: number, recordsPerBatch: number): Promise<IngestFigures> {
  const state = await client.createVolume(volume);
  const epoch = state.epoch;
  let seq = state.appliedSeq + 1;
  const id = randomBytes(16).toString('hex');
  const durations: number[] = [];
  // The create goes alone first (it is tiny; not part of the figure).
  const create: StrataRecord = { op: 'create', seq: seq++, parent: ROOT_ID, name: `ingest-${id.slice(0, 8)}.dat`, id, attrs: fileAttrs(0), parentMtime: nowTime() };
  await client.ship(volume, epoch, encodeRecord(create));
  let written = 0;
  while (written < totalMiB) {
    const n = Math.min(recordsPerBatch, totalMiB - written);
    const frames: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      frames.push(encodeRecord({ op: 'write', seq: seq++, id, offset: (written + i) * MiB, data: randomBytes(MiB) }));
    }
    written += n;
    if (written >= totalMiB) frames.push(encodeRecord({ op: 'setattr', seq: seq++, id, attrs: fileAttrs(written * MiB) }));
    const batch = Buffer.concat(frames);
    const t0 = process.hrtime.bigint();
    const r = await client.ship(volume, epoch, batch);
    durations.push(Number(process.hrtime.bigint() - t0));
    if (r.appliedSeq !== seq - 1) throw new Error(`ship: archive applied up to ${r.appliedSeq}, expected ${seq - 1}`);
  }
  const shipNs = durations.reduce((a, b) => a + b, 0);
  const bytes = totalMiB * MiB;
  const lat = summarizeNs(durations);
  return {
    bytes,
    batches: durations.length,
    ship_seconds: shipNs / 1e9,
    mb_per_s: bytes / 1e6 / (shipNs / 1e9),
    mib_per_s: bytes / MiB / (shipNs / 1e9),
    batch_median_ms: lat.median_us / 1000,
    batch_p99_ms: lat.p99_us / 1000,
  };
}

/** `n` volumeState calls, one at a time, each timed (after 50 untimed). */
export async function volumeStateRoundTrips(client: ArchiveClient, volume: string, n: number): Promise<LatencySummary> {
  for (let i = 0; i < 50; i++) await client.volumeState(volume);
  const ns: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await client.volumeState(volume);
    ns.push(Number(process.hrtime.bigint() - t0));
  }
  return summarizeNs(ns);
}

/**
 * `n` ship() calls of one small record each (a `setattr` of one file, ~150
 * bytes), one at a time, each timed (after 20 untimed): what the archive
 * costs per acked record, the floor of a sync-mode op.
 */
export async function smallShipRoundTrips(client: ArchiveClient, volume: string, n: number): Promise<LatencySummary> {
  const state = await client.createVolume(volume);
  let seq = state.appliedSeq + 1;
  const id = randomBytes(16).toString('hex');
  await client.ship(volume, state.epoch, encodeRecord({ op: 'create', seq: seq++, parent: ROOT_ID, name: 'rtt.dat', id, attrs: fileAttrs(0), parentMtime: nowTime() }));
  const ns: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const frame = encodeRecord({ op: 'setattr', seq: seq++, id, attrs: fileAttrs(i) });
    const t0 = process.hrtime.bigint();
    await client.ship(volume, state.epoch, frame);
    if (i >= 20) ns.push(Number(process.hrtime.bigint() - t0));
  }
  return summarizeNs(ns);
}

export { openArchiveClient };
