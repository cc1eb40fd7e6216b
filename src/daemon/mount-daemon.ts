// `strata mount` in the foreground: prepares the store and the mountpoint,
// mounts, serves the control socket, and unmounts cleanly on request or on
// SIGTERM/SIGINT. The daemon never touches its own mountpoint once mounted.
import { resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Server } from 'node:net';
import { LocalStore } from '../store/local-store.js';
import { Filesystem } from '../core/filesystem.js';
import { FuseAdapter, type MountOptions } from '../fuse/adapter.js';
import type { Logger } from '../log/logger.js';
import { serveControl, callControl, type ControlRequest } from './control.js';
import { probeMountpoint, detach } from './mount-table.js';
import { Mirror, type MirrorOptions, type MirrorStatus } from '../mirror/mirror.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import { reconcileBeforeServing } from '../mirror/startup.js';
import { prepareRecovery } from '../restore/recover.js';
import { readRestoreState } from '../restore/state.js';
import { OnDemandRestore } from '../restore/on-demand.js';
import { BackgroundRestore, completedProgress, type RestoreProgress } from '../restore/background.js';

export interface MountConfig {
  store: string;
  mountpoint: string;
  options: MountOptions;
  /** Mirror every change to this archive volume. */
  mirror?: MirrorOptions & {
    archiveUrl: string;
    tokenFile?: string;
    /** How long to wait for the archive when the store must re-converge before serving, ms. */
    archiveWaitMs?: number;
    /** An op waiting for data of an unfinished restore fails with EIO after this many ms (default 5000). */
    fetchTimeoutMs?: number;
  };
  /** Restore what is still in the archive in the background (default true); false: only on demand. */
  backgroundRestore?: boolean;
  /** `strata recover`: fence the volume and materialise its top tiers before serving. */
  recover?: { depth: number };
}

export interface DaemonStatus {
  state: 'starting' | 'recovering' | 'syncing' | 'serving' | 'unmounting';
  mountpoint: string;
  store: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  openHandles: number;
  knownInodes: number;
  /** Requests answered, per op (by JavaScript and by the FUSE thread). */
  requests: Record<string, number>;
  /** Of those, the ones the FUSE thread answered itself. */
  requestsOnFuseThread: Record<string, number>;
  mirror: MirrorStatus | null;
  /** The restore after a recovery, while one is known to this store. */
  restore: RestoreProgress | null;
  /**
   * How late the JavaScript thread ran what was due (every request not
   * answered by the FUSE thread waits that long first), ms: percentiles of the
   * last complete 10-s window, and the largest since the start.
   */
  eventLoopDelayMs: { p50: number; p99: number; max: number; maxSinceStart: number };
}

export class MountDaemon {
  private readonly store: LocalStore;
  private readonly mountpoint: string;
  private adapter: FuseAdapter | null = null;
  private control: Server | null = null;
  private fs: Filesystem | null = null;
  private readonly startedAt = new Date();
  private state: DaemonStatus['state'] = 'starting';
  private mirror: Mirror | null = null;
  /** The archive client while the mirror is being opened (closed by abort()). */
  private pendingClient: ArchiveClient | null = null;
  private stopping: Promise<void> | null = null;
  private onDemand: OnDemandRestore | null = null;
  private background: BackgroundRestore | null = null;
  /** What status says of a restore that was complete before this daemon started. */
  private restoreCompleted: RestoreProgress | null = null;
  /** Time from start() to the mount serving, ms. */
  timeToServeMs: number | null = null;
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private loopWindow = { p50: 0, p99: 0, max: 0 };
  private loopMax = 0;

  constructor(private readonly config: MountConfig, private readonly log: Logger) {
    this.store = new LocalStore(config.store);
    this.mountpoint = resolve(config.mountpoint);
    this.loopDelay.enable();
    // The histogram holds the timer's whole interval (10 ms when on time): what is shown is the lateness.
    const ms = (ns: number): number => Math.max(0, Math.round(ns / 1e4) / 100 - 10);
    setInterval(() => {
      this.loopWindow = { p50: ms(this.loopDelay.percentile(50)), p99: ms(this.loopDelay.percentile(99)), max: ms(this.loopDelay.max) };
      this.loopMax = Math.max(this.loopMax, this.loopWindow.max);
      this.loopDelay.reset();
    }, 10_000).unref();
  }

  /** Prepares everything and mounts; resolves once the mount serves. */
  async start(): Promise<void> {
    await this.prepareMountpoint();
    await checkStore(this.store.root);
    await this.store.init();
    // Modes arrive already masked by the caller's umask; never mask them again.
    process.umask(0);
    this.store.enter();
    // The control socket answers (status) while the store re-converges with its archive.
    this.control = await serveControl(this.mountpoint, (req) => this.onControl(req));
    if (this.config.mirror) await this.startMirror(this.config.mirror);
    if (!this.mirror && (await readRestoreState(this.store.privateDir)) !== null) {
      throw new Error('this store is a recovered volume: mount it with --archive and --volume (or run `strata recover` again)');
    }
    this.fs = new Filesystem(this.store, this.mirror, this.onDemand);
    this.adapter = new FuseAdapter(this.fs, this.mountpoint, { fsname: `strata:${this.store.root}`, ...this.config.options }, this.log);
    await this.adapter.mount();
    this.state = 'serving';
    this.timeToServeMs = Date.now() - this.startedAt.getTime();
    if (this.config.backgroundRestore !== false) this.background?.start();
    else this.background?.trackProgress();
    // Unmounted by someone else (umount, fusermount -u): nothing left to serve.
    void this.adapter.whenExited().then(async () => {
      if (this.stopping) return;
      this.log.warn({ mountpoint: this.mountpoint }, 'the kernel ended the connection (unmounted from outside); exiting');
      this.adapter?.release();
      await this.background?.stop();
      await this.fs?.closeAll();
      await this.stopMirror();
      this.control?.close();
      process.exit(0);
    });
    // A failed unmount on a signal must not become an unhandled rejection that
    // leaves the process hanging or crashing without a word in the log.
    const onSignal = (signal: NodeJS.Signals): void => {
      this.log.info({ signal }, 'signal received, unmounting');
      this.stop(true).then(
        () => process.exit(0),
        (err: unknown) => { this.log.error({ err, signal }, 'unmount on signal failed'); process.exit(1); },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    this.log.info({ mountpoint: this.mountpoint, store: this.store.root, options: this.config.options }, 'mounted');
  }

  status(): DaemonStatus {
    return {
      state: this.state,
      mountpoint: this.mountpoint,
      store: this.store.root,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      openHandles: this.fs?.handles.size ?? 0,
      knownInodes: this.adapter?.knownInodes ?? 0,
      requests: this.adapter?.requestCounts() ?? {},
      requestsOnFuseThread: this.adapter?.bridgeCounts() ?? {},
      mirror: this.mirror?.status() ?? null,
      restore: this.background?.progress() ?? this.restoreCompleted,
      eventLoopDelayMs: { ...this.loopWindow, maxSinceStart: this.loopMax },
    };
  }

  /**
   * Opens the mirror; when the store may hold changes the archive lacks (first
   * mount with an archive, or after an unclean stop) ships them before serving.
   */
  private async startMirror(cfg: NonNullable<MountConfig['mirror']>): Promise<void> {
    const log = this.log.child({ component: 'mirror' });
    const client = await openArchiveClient(cfg.archiveUrl, cfg.tokenFile ? { tokenFile: cfg.tokenFile } : {});
    this.pendingClient = client;
    if (this.config.recover) {
      this.state = 'recovering';
      await prepareRecovery({
        client, volume: cfg.volume, depth: this.config.recover.depth, privateDir: this.store.privateDir,
        log: this.log.child({ component: 'restore' }),
      });
    }
    const restore = await readRestoreState(this.store.privateDir);
    if (restore?.phase === 'materialising') {
      throw new Error('the recovery of this store stopped before its top tiers were in place: run `strata recover` again');
    }
    this.mirror = await Mirror.open(this.store.privateDir, client, cfg, log);
    this.pendingClient = null;
    await this.mirror.start();
    if (restore !== null && restore.phase !== 'complete') {
      const rlog = this.log.child({ component: 'restore' });
      this.onDemand = new OnDemandRestore({
        client, volume: cfg.volume, privateDir: this.store.privateDir, log: rlog,
        ...(cfg.fetchTimeoutMs !== undefined ? { fetchTimeoutMs: cfg.fetchTimeoutMs } : {}),
      });
      this.background = new BackgroundRestore(this.onDemand, this.store.privateDir, restore, rlog, {
        onComplete: () => {
          this.fs?.restoreFinished();
          this.adapter?.enableFastPaths();
        },
      });
    } else if (restore !== null) {
      this.restoreCompleted = completedProgress(restore);
    }
    if (this.mirror.needsReconcile) {
      this.state = 'syncing';
      await reconcileBeforeServing(this.mirror, this.store.root, cfg.archiveWaitMs ?? 60_000, log);
    }
  }

  private async stopMirror(): Promise<void> {
    const m = this.mirror;
    if (!m) return;
    this.mirror = null;
    await this.fs?.recordDirtyAttrs().catch(() => {});
    await m.stop(5000).catch((err: unknown) => this.log.error({ err }, 'mirror stop failed'));
  }

  /** Releases what a failed start() had opened, so that the process can exit. */
  async abort(): Promise<void> {
    this.control?.close();
    this.control = null;
    const m = this.mirror;
    this.mirror = null;
    if (m) await m.abandon().catch(() => {});
    else await this.pendingClient?.close().catch(() => {});
  }

  /** Unmounts (lazily when asked: on a signal the process is going away anyway). */
  stop(lazy: boolean): Promise<void> {
    this.stopping ??= this.doStop(lazy);
    return this.stopping;
  }

  private async doStop(lazy: boolean): Promise<void> {
    this.state = 'unmounting';
    this.log.info({ lazy }, 'unmounting');
    // Answer what is in flight first (see FuseAdapter.whenIdle).
    await this.adapter?.whenIdle(2000);
    try {
      await detach(this.mountpoint, lazy);
    } catch (err) {
      this.state = 'serving';
      this.stopping = null;
      throw err;
    }
    await Promise.race([this.adapter?.whenExited(), new Promise((r) => setTimeout(r, 5000))]);
    this.adapter?.release();
    await this.background?.stop();
    await this.fs?.closeAll();
    await this.stopMirror();
    this.control?.close();
    this.log.info('unmounted');
  }

  private async onControl(req: ControlRequest): Promise<unknown> {
    switch (req.cmd) {
      case 'status':
        return this.status();
      case 'sync': {
        if (!this.mirror || !this.fs) return { mirrored: false };
        await this.fs.recordDirtyAttrs();
        // A fenced or failed shipper never drains: the answer says why, the daemon serves on.
        const drained = await this.mirror.drain(req.timeoutMs ?? 60_000).catch(() => false);
        return { mirrored: true, drained, ...this.mirror.status() };
      }
      case 'unmount':
        await this.stop(req.lazy ?? false);
        // Reply first, then leave.
        setTimeout(() => process.exit(0), 50);
        return { unmounted: this.mountpoint, pid: process.pid };
      default:
        throw new Error(`unknown command ${(req as { cmd: string }).cmd}`);
    }
  }

  private async prepareMountpoint(): Promise<void> {
    const state = await probeMountpoint(this.mountpoint);
    if (state === 'missing') throw new Error(`mountpoint ${this.mountpoint} does not exist or is not a directory`);
    if (state === 'stale') {
      this.log.warn({ mountpoint: this.mountpoint }, 'clearing a stale mount left by a dead daemon');
      await detach(this.mountpoint, true);
      return;
    }
    if (state === 'mounted') {
      const alive = await callControl(this.mountpoint, { cmd: 'status' }, 2000).then(() => true, () => false);
      throw new Error(alive ? `${this.mountpoint} is already served by a strata daemon` : `${this.mountpoint} is already a mountpoint`);
    }
  }
}

/**
 * Refuses a store path that exists but is not a directory, with a message that
 * says so (instead of "ENOTDIR: mkdir STORE/.strata"). A missing store is fine:
 * it is created.
 */
export async function checkStore(store: string): Promise<void> {
  const root = resolve(store);
  let isDir: boolean;
  try {
    isDir = (await stat(root)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new Error(`store ${root}: a component of the path is not a directory`);
    throw err;
  }
  if (!isDir) throw new Error(`store ${root} exists and is not a directory`);
}
