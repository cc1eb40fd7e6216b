// Automatic takeover on the archive host (`strata archive serve --takeover-dir
// DIR`, docs/takeover.md). When a volume's lease has lapsed for
// `--takeover-after` seconds (always more than the holder's lease), this host
// recovers the volume itself into DIR/VOLUME/store and serves it at
// DIR/VOLUME/mnt: fenced at a new epoch, top tiers first, the rest on demand
// and in the background, mirroring its own changes into this archive.
//
// Layering: the archive never imports the primary's code. The takeover mount
// is a primary like any other: `strata recover` run as a child process (it
// returns once the mount serves and leaves its daemon detached, so the mount
// outlives a restart of this server), which renews its lease through this
// server like every primary. A failed attempt (archive data unreadable, disk
// full) is retried with backoff and reported; `strata recover` resumes a
// half-done restore, so no attempt leaves a half state. Then `--on-takeover
// CMD` runs with STRATA_VOLUME, STRATA_MOUNTPOINT, STRATA_EPOCH.
//
// A warm standby: the supervisor keeps one `strata standby` child waiting
// (Node started, strata's modules loaded). A takeover hands it the recover's
// command line (`--foreground --notify-parent`) and it becomes the takeover
// daemon in place, detached, reporting readiness over IPC; then a new standby
// is started. Without one ready (it died, or STRATA_TAKEOVER_STANDBY=0), the
// takeover runs `strata recover` as before.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';
import type { LeaseHolder, TakeoverInfo } from '../protocol/leases.js';
import type { LeaseTable } from './leases.js';
import { writeDurably } from './leases.js';
import type { TakeoverHooks } from './server.js';

export interface TakeoverOptions {
  dir: string;
  /** A lapse this long (ms) starts a takeover (never less than the holder's lease + 1 s). */
  afterMs: number;
  depth: number;
  onTakeover?: string;
  /** How the children reach this server. */
  archiveUrl: string;
  tokenFile: string;
  /** bin/strata.js of this installation. */
  cli: string;
  /** The takeover mount's own lease, seconds. */
  leaseSeconds: number;
  /** Extra environment for the children (NODE_EXTRA_CA_CERTS for stratas://). */
  env?: NodeJS.ProcessEnv;
  log: Logger;
  table: LeaseTable;
  /** The volume's current epoch (for the hook's STRATA_EPOCH and to tell an own store from a stale one). */
  epochOf: (volume: string) => Promise<number>;
}

interface Takeover extends TakeoverInfo {
  volume: string;
  running: boolean;
  retryAt: number | null;
  backoffMs: number;
}

interface Persisted {
  format: 1;
  takeovers: { volume: string; state: TakeoverInfo['state']; since: string | null; epoch: number | null }[];
}

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;

export class TakeoverSupervisor implements TakeoverHooks {
  private readonly takeovers = new Map<string, Takeover>();
  private timer: NodeJS.Timeout | null = null;
  private readonly host = hostname();
  private readonly file: string;
  /** The warm `strata standby` child, once it said it is ready. */
  private standby: ChildProcess | null = null;
  private standbyReady = false;
  private stopped = false;

  constructor(private readonly o: TakeoverOptions) {
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    this.file = join(o.dir, 'takeovers.json');
    this.load();
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), 250);
    this.timer.unref();
    this.spawnStandby();
    this.o.log.info({ event: 'takeover-armed', dir: this.o.dir, afterSeconds: this.o.afterMs / 1000, depth: this.o.depth, onTakeover: this.o.onTakeover ?? null },
      'automatic takeover armed');
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stopped = true;
    if (this.standby !== null) {
      this.standby.kill();
      this.standby = null;
    }
    const serving = [...this.takeovers.values()].filter((t) => t.state === 'serving').map((t) => t.mountpoint);
    if (serving.length > 0) this.o.log.info({ serving }, 'takeover mounts keep serving (their daemons are detached); stop them with strata release or strata unmount');
  }

  mountpointOf(volume: string): string {
    return join(this.o.dir, volume, 'mnt');
  }

  isTakeover(h: LeaseHolder): boolean {
    if (h.host !== this.host) return false;
    const parts = h.mountpoint.split('/');
    const vol = parts[parts.length - 2];
    return vol !== undefined && h.mountpoint === this.mountpointOf(vol);
  }

  info(volume: string): TakeoverInfo | null {
    const t = this.takeovers.get(volume);
    if (!t) return null;
    const { state, store, mountpoint, since, epoch, attempts, lastError, timings } = t;
    const retryInSeconds = t.retryAt === null ? null : Math.max(0, Math.round((t.retryAt - performance.now()) / 100) / 10);
    return { state, store, mountpoint, since, epoch, attempts, lastError, retryInSeconds, timings };
  }

  /** `strata archive release VOLUME`: drains and releases the takeover mount (`strata release` on it). */
  async release(volume: string): Promise<boolean> {
    const t = this.takeovers.get(volume);
    if (!t || t.state !== 'serving') return false;
    this.o.log.info({ event: 'takeover-release', volume, mountpoint: t.mountpoint }, `releasing the takeover mount of ${volume}`);
    const r = await this.run(['release', '--timeout', '120', t.mountpoint], {});
    if (r.code !== 0) {
      t.lastError = `strata release failed: ${tail(r.out)}`;
      this.o.log.error({ event: 'takeover-release-failed', volume, out: tail(r.out) }, `release of the takeover mount of ${volume} failed`);
      return false;
    }
    t.state = 'released';
    this.save();
    this.o.log.info({ event: 'takeover-released', volume }, `takeover mount of ${volume} released and unmounted: the volume can fail back`);
    return true;
  }

  private tick(): void {
    const lapsed = this.o.table.tick();
    const now = performance.now();
    for (const row of lapsed) {
      const t = this.takeovers.get(row.volume);
      if (t?.running) continue;
      if (t?.retryAt != null && now < t.retryAt) continue;
      const age = this.o.table.ageMs(row) ?? 0;
      const threshold = Math.max(this.o.afterMs, row.leaseMs + 1000);
      if (age < threshold) continue;
      void this.attempt(row.volume, age);
    }
  }

  private async attempt(volume: string, lapsedMs: number): Promise<void> {
    const mnt = this.mountpointOf(volume);
    const store = join(this.o.dir, volume, 'store');
    let t = this.takeovers.get(volume);
    const fresh = !t || t.state === 'released' || t.state === 'cancelled' || t.state === 'serving';
    if (!t) {
      t = { volume, state: 'starting', store, mountpoint: mnt, since: null, epoch: null, attempts: 0, lastError: null, retryInSeconds: null, timings: null, running: false, retryAt: null, backoffMs: BACKOFF_MIN_MS };
      this.takeovers.set(volume, t);
    }
    const prevEpoch = t.epoch;
    t.running = true;
    t.state = 'starting';
    t.attempts = fresh ? 1 : t.attempts + 1;
    t.retryAt = null;
    const holder = this.o.table.get(volume)?.holder ?? null;
    this.o.log.warn({ event: 'takeover-start', volume, lapsedSeconds: lapsedMs / 1000, holder, attempt: t.attempts, store, mountpoint: mnt },
      `takeover of ${volume}: its lease lapsed ${(lapsedMs / 1000).toFixed(1)} s ago; recovering it at ${mnt}`);
    const started = performance.now();
    try {
      mkdirSync(mnt, { recursive: true });
      await this.prepareStore(volume, store, prevEpoch);
      const recoverArgs = [
        'recover', '--archive', this.o.archiveUrl, '--token-file', this.o.tokenFile, '--volume', volume, '--store', store,
        '--depth', String(this.o.depth), '--lease', String(this.o.leaseSeconds),
      ];
      const onStandby = this.runOnStandby([...recoverArgs, '--foreground', '--notify-parent', '--log-file', join(store, '.strata', 'daemon.log'), mnt]);
      const via = onStandby !== null ? 'standby' : 'strata recover';
      const r = onStandby !== null ? await onStandby : await this.run([...recoverArgs, mnt], {});
      const recoverS = (performance.now() - started) / 1000;
      if (r.code !== 0) {
        if (/EHELD|is held by/.test(r.out)) {
          // The holder came back before the fence: no takeover.
          t.state = 'cancelled';
          t.lastError = tail(r.out);
          this.o.log.info({ event: 'takeover-cancelled', volume, out: tail(r.out) }, `takeover of ${volume} cancelled: its holder renewed before the fence`);
          return;
        }
        throw new Error(tail(r.out) || `strata recover exited ${r.code}`);
      }
      const servedAfter = /serving after ([\d.]+) s/.exec(r.out);
      t.state = 'serving';
      t.since = new Date().toISOString();
      t.epoch = await this.o.epochOf(volume).catch(() => null);
      t.lastError = null;
      t.backoffMs = BACKOFF_MIN_MS;
      t.timings = { detection: lapsedMs / 1000, recover: recoverS, servedAfter: servedAfter ? Number(servedAfter[1]) : null, hook: null };
      this.save();
      this.o.log.warn({ event: 'takeover-serving', volume, mountpoint: mnt, epoch: t.epoch, detectionSeconds: lapsedMs / 1000, recoverSeconds: recoverS, servedAfter: t.timings.servedAfter, via },
        `takeover of ${volume}: serving at ${mnt} (epoch ${t.epoch}) ${recoverS.toFixed(2)} s after the lapse was detected (via ${via})`);
      if (this.o.onTakeover !== undefined) await this.hook(t);
    } catch (err) {
      const msg = (err as Error).message;
      t.state = 'failed';
      t.lastError = msg;
      t.retryAt = performance.now() + t.backoffMs;
      this.o.log.error({ event: 'takeover-failed', volume, attempt: t.attempts, err: msg, retryInSeconds: t.backoffMs / 1000 },
        `takeover of ${volume} failed (attempt ${t.attempts}); retrying in ${t.backoffMs / 1000} s`);
      t.backoffMs = Math.min(BACKOFF_MAX_MS, t.backoffMs * 2);
      this.save();
    } finally {
      t.running = false;
    }
  }

  /**
   * A store left by an earlier takeover of this volume at the current epoch
   * (its daemon died) is recovered again in place (`strata recover` resumes);
   * one from an older epoch (the volume moved on since) is kept aside, never
   * deleted.
   */
  private async prepareStore(volume: string, store: string, ownEpoch: number | null): Promise<void> {
    if (!existsSync(store) || readdirSync(store).length === 0) return;
    const current = await this.o.epochOf(volume);
    const restore = readJson(join(store, '.strata', 'restore.json')) as { epoch?: number; phase?: string } | null;
    if (restore !== null && restore.epoch === current && (ownEpoch === null || ownEpoch === current)) return;
    if (restore !== null && restore.phase === 'materialising' && ownEpoch === null) return; // an attempt of this takeover that stopped before serving
    const aside = `${store}.old-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(store, aside);
    this.o.log.warn({ event: 'takeover-store-aside', volume, store, aside }, `an older takeover store of ${volume} was moved aside to ${aside}`);
  }

  private async hook(t: Takeover): Promise<void> {
    const started = performance.now();
    const env = { STRATA_VOLUME: t.volume, STRATA_MOUNTPOINT: t.mountpoint, STRATA_EPOCH: String(t.epoch ?? '') };
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('/bin/sh', ['-c', this.o.onTakeover!], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
      p.stderr!.setEncoding('utf8').on('data', (s: string) => { out += s; });
      p.on('error', (err) => resolve({ code: null, out: err.message }));
      p.on('exit', (code) => resolve({ code, out }));
    });
    if (t.timings) t.timings.hook = (performance.now() - started) / 1000;
    const ctx = { event: 'takeover-hook', volume: t.volume, command: this.o.onTakeover, exit: r.code, output: tail(r.out, 2000) };
    if (r.code === 0) this.o.log.info(ctx, `--on-takeover for ${t.volume} succeeded`);
    else this.o.log.error(ctx, `--on-takeover for ${t.volume} failed (exit ${r.code}); the takeover mount serves regardless`);
  }

  /** Starts the warm standby (unless one exists, the supervisor stopped, or STRATA_TAKEOVER_STANDBY=0). */
  private spawnStandby(): void {
    if (this.stopped || this.standby !== null || process.env['STRATA_TAKEOVER_STANDBY'] === '0') return;
    const p = spawn(process.execPath, [this.o.cli, 'standby'], { detached: true, env: { ...process.env, ...this.o.env }, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    this.standby = p;
    this.standbyReady = false;
    p.on('message', (m: { type?: string }) => {
      if (m?.type === 'standby' && this.standby === p) this.standbyReady = true;
    });
    p.on('error', (err) => this.o.log.warn({ err: err.message }, 'takeover standby failed to start'));
    p.on('exit', (code, signal) => {
      if (this.standby !== p) return;
      this.standby = null;
      this.standbyReady = false;
      if (this.stopped) return;
      this.o.log.warn({ code, signal }, 'takeover standby exited; starting another in 5 s');
      setTimeout(() => this.spawnStandby(), 5000).unref();
    });
    p.unref();
    (p.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  /**
   * Runs a `strata recover --foreground --notify-parent` command line on the
   * warm standby: resolves like run() once it serves or failed, or null when
   * no standby is ready (the caller runs the CLI instead).
   */
  private runOnStandby(argv: string[]): Promise<{ code: number | null; out: string }> | null {
    const p = this.standby;
    if (p === null || !this.standbyReady || !p.connected) return null;
    this.standby = null;
    this.standbyReady = false;
    return new Promise((resolve) => {
      let settled = false;
      const done = (r: { code: number | null; out: string }): void => {
        if (settled) return;
        settled = true;
        // The next standby starts once this takeover is done with the CPU.
        setTimeout(() => this.spawnStandby(), 1000).unref();
        resolve(r);
      };
      p.on('message', (m: { type?: string; detail?: string; message?: string }) => {
        if (m?.type === 'ready') {
          if (p.connected) p.disconnect();
          done({ code: 0, out: m.detail ?? '' });
        } else if (m?.type === 'error') {
          const message = m.message ?? 'the takeover daemon refused to start';
          p.once('exit', (code) => done({ code: code ?? 1, out: message }));
          setTimeout(() => done({ code: 1, out: message }), 10_000).unref();
        }
      });
      p.on('exit', (code, signal) => done({ code: code ?? 1, out: `the takeover daemon exited before serving (${signal ?? `exit ${code}`})` }));
      p.send({ type: 'run', argv });
    });
  }

  /** Runs the strata CLI; resolves with its exit code and output. */
  private run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [this.o.cli, ...args], { env: { ...process.env, ...this.o.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
      p.stderr!.setEncoding('utf8').on('data', (s: string) => { out += s; });
      p.on('error', (err) => resolve({ code: null, out: err.message }));
      p.on('exit', (code) => resolve({ code, out }));
    });
  }

  private load(): void {
    const p = readJson(this.file) as Persisted | null;
    if (p === null || p.format !== 1) return;
    for (const x of p.takeovers) {
      this.takeovers.set(x.volume, {
        volume: x.volume, state: x.state === 'starting' ? 'failed' : x.state, store: join(this.o.dir, x.volume, 'store'), mountpoint: this.mountpointOf(x.volume),
        since: x.since, epoch: x.epoch, attempts: 0, lastError: null, retryInSeconds: null, timings: null, running: false, retryAt: null, backoffMs: BACKOFF_MIN_MS,
      });
    }
  }

  private save(): void {
    const p: Persisted = { format: 1, takeovers: [...this.takeovers.values()].map((t) => ({ volume: t.volume, state: t.state, since: t.since, epoch: t.epoch })) };
    try {
      writeDurably(this.file, `${JSON.stringify(p, null, 2)}\n`);
    } catch (err) {
      this.o.log.error({ err: (err as Error).message, file: this.file }, 'cannot record the takeovers');
    }
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

function tail(s: string, n = 500): string {
  const t = s.trim();
  return t.length <= n ? t : `…${t.slice(t.length - n)}`;
}
