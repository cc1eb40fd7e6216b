// `strata mount` in the foreground: prepares the store and the mountpoint,
// mounts, serves the control socket, and unmounts cleanly on request or on
// SIGTERM/SIGINT. The daemon never touches its own mountpoint once mounted.
import { resolve } from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { LOOP_PROBE_MS, loopLateness } from './loop-lateness.js';
import type { Server } from 'node:net';
import { LocalStore } from '../store/local-store.js';
import { Filesystem } from '../core/filesystem.js';
import { FuseAdapter, passthroughWritesWanted, type MountOptions, type DirectJournalStatus } from '../fuse/adapter.js';
import type { Features } from '../fuse/bridge.js';
import type { Logger } from '../log/logger.js';
import { serveControl, callControl, type ControlRequest } from './control.js';
import { probeMountpoint, detach } from './mount-table.js';
import { Mirror, type MirrorOptions, type MirrorStatus } from '../mirror/mirror.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import { reconcileBeforeServing } from '../mirror/startup.js';
import { prepareRecovery } from '../restore/recover.js';
import { ConditionWatcher, tapRequestErrors } from '../alerts/primary-conditions.js';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import type { SnapshotClient } from '../protocol/snapshot-api.js';
import { readRestoreState } from '../restore/state.js';
import { OnDemandRestore } from '../restore/on-demand.js';
import { BackgroundRestore, completedProgress, type RestoreProgress } from '../restore/background.js';
import { countHeldXattrObjects } from '../store/held-xattrs.js';
import { hostname } from 'node:os';
import { Checkpoints, type CheckpointListing } from '../checkpoint-service/manager.js';
import { BLOCK_SIZE as CHECKPOINT_BLOCK_SIZE } from '../checkpoint/state.js';
import { checkpointRequest } from './checkpoint-control.js';
import { SwapController, type SwapStatus } from '../swap/controller.js';
import { resolveLiveStore } from '../swap/record.js';
import { checkStore } from './store-check.js';
import { PhaseClock, type StartupTimes } from './phase-clock.js';

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
  /** `strata recover`: fence the volume and materialise its top tiers before serving (`force`: even while another primary's lease is live). */
  recover?: { depth: number; force?: boolean };
  /** Told of events the metrics time (src/daemon/metrics.ts). */
  observers?: DaemonObservers;
  /** Awaited (at most 1 s) when the daemon starts to stop, whatever the cause: systemd's STOPPING=1. */
  onStopping?: () => Promise<void>;
}

/** Events with a duration, for the metrics' histograms. */
export interface DaemonObservers {
  /** A request answered by the JavaScript thread: op, seconds from arrival to answer, errno of the error path (0: none). */
  request?: (op: string, seconds: number, errno: number) => void;
  /** An op waited for the archive's ack (fsync; every change in sync mode). */
  ackWait?: (seconds: number, acked: boolean) => void;
  /** The archive acked a shipped batch. */
  ship?: (records: number, bytes: number, seconds: number) => void;
  /** A request to the archive for a restore (directory image, blocks, a range of data) was answered. */
  fetch?: (seconds: number, ok: boolean) => void;
}

/** Figures the metrics read besides status(). */
export interface DaemonFigures {
  /** Bytes read and written through the mount (FUSE-thread reads: the sizes asked for). */
  bytes: { read: number; written: number };
  /** Records and bytes the archive acked from this daemon. */
  shipped: { records: number; bytes: number };
  /** The background restore's walk: directories queued and being visited. */
  restoreWalk: { queued: number; visiting: number };
}

export interface DaemonStatus {
  state: 'starting' | 'recovering' | 'syncing' | 'serving' | 'unmounting';
  mountpoint: string;
  store: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  /** Where the start went: Node and module loading, then each phase of start() (docs/recovery.md, "Time to serve"). */
  startup: StartupTimes;
  openHandles: number;
  knownInodes: number;
  /** The kernel caches writes (--writeback-cache, granted by the kernel). */
  writebackCache: boolean;
  /**
   * What the FUSE connection negotiated with the kernel (null before init):
   * each feature strata asked for and the kernel granted, plus passthrough's
   * counters (docs/fuse-bridge.md).
   */
  fuseFeatures: FuseFeatures | null;
  /** Requests answered, per op (by JavaScript and by the FUSE thread). */
  requests: Record<string, number>;
  /** Of those, the ones the FUSE thread answered itself. */
  requestsOnFuseThread: Record<string, number>;
  /** With the archive's token file, when one is configured (`strata verify MOUNTPOINT` reads it). */
  mirror: (MirrorStatus & { tokenFile?: string }) | null;
  /** Why the mount answers EROFS to every change (fenced: by whom and when; released), or null. */
  readOnly: string | null;
  /** The restore after a recovery, while one is known to this store. */
  restore: RestoreProgress | null;
  /**
   * How late the JavaScript thread ran what was due (every request not
   * answered by the FUSE thread waits that long first), ms: percentiles of the
   * last complete 10-s window, and the largest since the start.
   */
  eventLoopDelayMs: { p50: number; p99: number; max: number; maxSinceStart: number };
  /** The store's checkpoints (docs/checkpoints.md); invalid ones say why. */
  checkpoints: CheckpointListing[];
  /**
   * Writes of direct handles while checkpoints are tracked: answered on the
   * FUSE thread (every block they touched already saved) and sent to the core
   * (a block to save first). Counted since the mount.
   */
  checkpointWrites: { direct: number; sentToCore: number };
  /** Journalled direct writes (docs/mirroring.md): on or off, how many writes the FUSE thread journalled through notices, how many went to the core. */
  directJournal: DirectJournalStatus | null;
  /** The spare store and swap (docs/swap.md). */
  swap: SwapStatus | null;
}

export class MountDaemon {
  private readonly store: LocalStore;
  private readonly mountpoint: string;
  private adapter: FuseAdapter | null = null;
  private control: Server | null = null;
  private fs: Filesystem | null = null;
  private checkpoints: Checkpoints | null = null;
  /** Checkpoints of a store that is no longer live, still guarding files opened before the swap (src/swap). */
  private spareCheckpoints: { store: string; cps: Checkpoints }[] = [];
  private readonly startedAt = new Date();
  private state: DaemonStatus['state'] = 'starting';
  private mirror: Mirror | null = null;
  /** The archive client while the mirror is being opened (closed by abort()). */
  private pendingClient: ArchiveClient | null = null;
  private stopping: Promise<void> | null = null;
  private onDemand: OnDemandRestore | null = null;
  /**
   * The restore's own connection to a remote archive: its bulk data must not
   * queue the lease renewals and journal batches of the mirror's connection
   * behind it (over a slow link the lease expired while a file was fetched).
   */
  private restoreClient: ArchiveClient | null = null;
  private background: BackgroundRestore | null = null;
  /** What status says of a restore that was complete before this daemon started. */
  private restoreCompleted: RestoreProgress | null = null;
  private conditions: ConditionWatcher | null = null;
  private swap: SwapController | null = null;
  private conditionClient: (() => SnapshotClient | null) | null = null;
  /** Where the start went (status `startup`). */
  private readonly startup = new PhaseClock();
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_PROBE_MS });
  private loopWindow = { p50: 0, p99: 0, max: 0 };
  private loopMax = 0;

  constructor(private readonly config: MountConfig, private readonly log: Logger) {
    this.store = new LocalStore(config.store);
    this.mountpoint = resolve(config.mountpoint);
    this.loopDelay.enable();
    setInterval(() => {
      this.loopWindow = loopLateness(this.loopDelay);
      this.loopMax = Math.max(this.loopMax, this.loopWindow.max);
      this.loopDelay.reset();
    }, 10_000).unref();
  }

  /** Prepares everything and mounts; resolves once the mount serves. */
  async start(): Promise<void> {
    await this.prepareMountpoint();
    // After a swap the live store is the directory the swap record names (src/swap/record.ts).
    const live = await resolveLiveStore(this.config.store);
    if (live !== this.store.root) this.store.moveTo(live);
    await checkStore(this.store.root);
    await this.store.init();
    this.swap = new SwapController({
      storeArg: resolve(this.config.store), store: this.store, mountpoint: this.mountpoint, log: this.log,
      adapter: () => this.adapter, fs: () => this.fs,
      mirror: () => (this.mirror && this.config.mirror ? { mirror: this.mirror, opts: { ...this.config.mirror, mountpoint: this.mountpoint } } : null),
      setMirror: (m) => { this.mirror = m; this.wireDirectJournal(); },
      checkpoints: () => (this.state === 'serving' ? this.checkpoints : null),
      storeSwitched: (oldRoot) => this.checkpointsFollowSwap(oldRoot),
      spareDiscarding: async (dir) => {
        for (const e of this.spareCheckpoints.filter((x) => x.store === dir)) this.fs?.unguardDetachedFiles(e.cps.tracker);
      },
      archive: () => {
        const m = this.config.mirror;
        return m ? { url: m.archiveUrl, volume: m.volume, ...(m.tokenFile !== undefined ? { tokenFile: m.tokenFile } : {}) } : null;
      },
    });
    await this.swap.load();
    this.startup.mark('store');
    // Modes arrive already masked by the caller's umask; never mask them again.
    process.umask(0);
    await this.store.open();
    // The control socket answers (status) while the store re-converges with its archive.
    this.control = await serveControl(this.mountpoint, (req) => this.onControl(req));
    this.startup.mark('control');
    if (this.config.mirror) await this.startMirror(this.config.mirror);
    if (!this.mirror && (await readRestoreState(this.store.privateDir)) !== null) {
      throw new Error('this store is a recovered volume: mount it with --archive and --volume (or run `strata recover` again)');
    }
    this.fs = new Filesystem(this.store, this.mirror, this.onDemand);
    // Tracking is on before the mount serves when checkpoints exist.
    this.checkpoints = await Checkpoints.load(this.store, this.fs, this.log);
    this.startup.mark('core');
    const adapterLog = this.config.mirror ? tapRequestErrors(this.log.child({}), this.startConditions(this.config.mirror)) : this.log;
    // handle_killpriv_v2 only without a mirror: under it the store's own kernel
    // drops a file capability (security.capability) when the daemon writes,
    // which no journal record would carry to the archive (docs/fuse-bridge.md).
    // Nor with passthrough writes: under it the kernel leaves dropping set-ID
    // bits on write to strata, which never sees a passthrough write.
    const killpriv = this.config.mirror || passthroughWritesWanted(this.config.options) ? { handleKillprivV2: false } : {};
    // Nor atomic O_TRUNC on a mirrored mount: the truncation then comes as a
    // SETATTR under the inode's lock, ordered with every write (docs/mirroring.md).
    const truncation = this.config.mirror ? { atomicOTrunc: false } : {};
    this.adapter = new FuseAdapter(this.fs, this.mountpoint, { fsname: `strata:${this.store.root}`, ...this.config.options, ...killpriv, ...truncation }, adapterLog);
    this.wireDirectJournal();
    // The restore tells the adapter before it changes an object behind the kernel (vouches for settled nodes).
    if (this.onDemand) this.onDemand.settleWatch = this.adapter.settleWatch;
    this.installObservers();
    const adapter = this.adapter;
    this.checkpoints.attach({ tracking: (on) => adapter.trackingChanged(on), passthroughWritersClosed: (ms) => adapter.passthroughWritersClosed(ms), clearance: adapter.clearance });
    await this.adapter.mount();
    this.startup.mark('mount');
    this.startup.serving();
    // Whether the store has room for the rest of the volume: said with "serving" (and in status).
    await this.background?.checkRoom().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'restore: cannot tell the store\'s free room'));
    this.state = 'serving';
    if (this.config.backgroundRestore !== false) this.background?.start();
    else this.background?.trackProgress();
    // Unmounted by someone else (umount, fusermount -u): nothing left to serve.
    void this.adapter.whenExited().then(async () => {
      if (this.stopping) return;
      this.log.warn({ mountpoint: this.mountpoint }, 'the kernel ended the connection (unmounted from outside); exiting');
      await this.tellStopping();
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
    this.log.info({ mountpoint: this.mountpoint, store: this.store.root, options: this.config.options, startup: this.startup.times() }, 'mounted');
  }

  /** Time from the daemon's construction to the mount serving, ms (null until it serves). */
  get timeToServeMs(): number | null {
    return this.startup.sinceCreatedMs();
  }

  status(): DaemonStatus {
    return {
      state: this.state,
      mountpoint: this.mountpoint,
      store: this.store.root,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      startup: this.startup.times(),
      openHandles: this.fs?.handles.size ?? 0,
      knownInodes: this.adapter?.knownInodes ?? 0,
      writebackCache: this.adapter?.writebackCache ?? false,
      fuseFeatures: this.adapter?.features ? fuseFeaturesOf(this.adapter.features, this.adapter.maxWrite) : null,
      requests: this.adapter?.requestCounts() ?? {},
      requestsOnFuseThread: this.adapter?.bridgeCounts() ?? {},
      mirror: this.mirror ? { ...this.mirror.status(), ...(this.config.mirror?.tokenFile !== undefined ? { tokenFile: this.config.mirror.tokenFile } : {}) } : null,
      readOnly: this.mirror?.readOnly ?? null,
      restore: this.background?.progress() ?? this.restoreCompleted,
      eventLoopDelayMs: { ...this.loopWindow, maxSinceStart: this.loopMax },
      checkpoints: this.checkpoints?.list() ?? [],
      checkpointWrites: this.adapter?.trackCounts() ?? { direct: 0, sentToCore: 0 },
      directJournal: this.adapter?.directJournalStatus() ?? null,
      swap: this.swap?.status() ?? null,
    };
  }

  /** Figures the metrics read besides status(). */
  figures(): DaemonFigures {
    return {
      bytes: this.adapter?.byteCounts() ?? { read: 0, written: 0 },
      shipped: { records: this.mirror?.shipper.shippedRecords ?? 0, bytes: this.mirror?.shipper.shippedBytes ?? 0 },
      restoreWalk: this.background?.walkState() ?? { queued: 0, visiting: 0 },
    };
  }

  /**
   * Journalled direct writes (docs/mirroring.md): the mirror's checkpoint
   * waits for the FUSE thread's writes that may precede it, and a full
   * journal takes the FUSE thread's unused credit back first.
   */
  private wireDirectJournal(): void {
    const m = this.mirror;
    if (!m) return;
    m.beforeCheckpoint = () => this.adapter?.directWritesJournaled() ?? Promise.resolve(true);
    m.reclaimReserved = () => this.adapter?.revokeCredit();
  }

  /** Connects config.observers to what exists so far (the adapter, the mirror, the restore). */
  private installObservers(): void {
    const o = this.config.observers;
    if (o === undefined) return;
    if (this.adapter && o.request) this.adapter.onAnswered = o.request;
    if (this.mirror && o.ackWait) this.mirror.onAckWait = o.ackWait;
    if (this.mirror && o.ship) this.mirror.shipper.onShipped = o.ship;
    if (this.onDemand && o.fetch) this.onDemand.onFetch = o.fetch;
  }

  /**
   * Opens the mirror; when the store may hold changes the archive lacks (first
   * mount with an archive, or after an unclean stop) ships them before serving.
   */
  private async startMirror(cfg: NonNullable<MountConfig['mirror']>): Promise<void> {
    const log = this.log.child({ component: 'mirror' });
    const client = await openArchiveClient(cfg.archiveUrl, cfg.tokenFile ? { tokenFile: cfg.tokenFile } : {});
    this.pendingClient = client;
    this.startup.mark('archive client');
    const leaseMs = cfg.leaseMs;
    if (this.config.recover) {
      this.state = 'recovering';
      // The fence names this store as the new holder of the lease; a live lease of another primary refuses it (unless --force).
      const holder = { host: hostname(), storeId: await Mirror.storeIdOf(this.store.privateDir), pid: process.pid, mountpoint: this.mountpoint };
      await prepareRecovery({
        client, volume: cfg.volume, depth: this.config.recover.depth, dir: this.store.dir, privateDir: this.store.privateDir,
        log: this.log.child({ component: 'restore' }),
        fence: { holder, ...(leaseMs !== undefined ? { leaseMs } : {}), ...(this.config.recover.force ? { force: true } : {}) },
        adoptStore: (volume, epoch) => Mirror.adopt(this.store.privateDir, volume, epoch, holder.storeId),
      });
      this.startup.mark('fence and top tiers');
    }
    const restore = await readRestoreState(this.store.privateDir);
    if (restore?.phase === 'materialising') {
      throw new Error('the recovery of this store stopped before its top tiers were in place: run `strata recover` again');
    }
    this.mirror = await Mirror.open(this.store.privateDir, client, { ...cfg, mountpoint: this.mountpoint }, log);
    this.pendingClient = null;
    this.installObservers();
    // Before serving: the lease (another primary's live lease refuses the mount; a fenced store serves read-only).
    const lease = await this.mirror.acquireLease();
    if (lease === 'fenced') this.log.error({ volume: cfg.volume, reason: this.mirror.readOnly }, 'this store was fenced off its volume: serving it read-only');
    await this.mirror.start();
    this.startup.mark('mirror and lease');
    const unreadable = restore?.unreadable ?? [];
    if (restore !== null && (restore.phase !== 'complete' || unreadable.length > 0)) {
      const rlog = this.log.child({ component: 'restore' });
      const mapCacheBytes = Number(process.env['STRATA_MAP_CACHE_BYTES'] ?? 0);
      // An embedded (file://) archive is this process's worker: one is enough.
      if (!cfg.archiveUrl.startsWith('file:')) this.restoreClient = await openArchiveClient(cfg.archiveUrl, cfg.tokenFile ? { tokenFile: cfg.tokenFile } : {});
      this.onDemand = new OnDemandRestore({
        client: this.restoreClient ?? client, volume: cfg.volume, store: this.store, privateDir: this.store.privateDir, log: rlog,
        ...(cfg.fetchTimeoutMs !== undefined ? { fetchTimeoutMs: cfg.fetchTimeoutMs } : {}),
        // Tests run the restore with a tiny block-map cache (maps let go and found again all the time).
        ...(mapCacheBytes > 0 ? { mapCacheBytes } : {}),
      });
    }
    if (restore !== null && restore.phase !== 'complete') {
      this.background = new BackgroundRestore(this.onDemand!, this.store.privateDir, restore, this.log.child({ component: 'restore' }), {
        onComplete: (left) => {
          // Files the archive could not deliver in full stay remote: the core keeps asking for those only.
          if (left.length === 0) this.fs?.restoreFinished();
          this.adapter?.enableFastPaths();
        },
      });
    } else if (restore !== null) {
      // Complete; files with unreadable blocks (if any) keep failing only the reads of those blocks.
      if (unreadable.length > 0) this.onDemand!.finishWithUnreadable(unreadable);
      this.restoreCompleted = completedProgress(restore, await countHeldXattrObjects(this.store.privateDir).catch(() => 0));
    }
    if (this.mirror.needsReconcile && this.mirror.readOnly === null) {
      this.state = 'syncing';
      await reconcileBeforeServing(this.mirror, this.store.root, cfg.archiveWaitMs ?? 60_000, log);
      this.startup.mark('reconcile');
    }
  }

  /** Conditions this primary raises to its archive (src/alerts/primary-conditions.ts). */
  private startConditions(cfg: NonNullable<MountConfig['mirror']>): ConditionWatcher {
    const remote = !cfg.archiveUrl.startsWith('file:');
    const log = this.log.child({ component: 'conditions' });
    let client: SnapshotClient | null = null;
    const watcher = new ConditionWatcher({
      volume: cfg.volume, storeDir: this.store.root, log,
      get client() { return client; },
      mirror: () => {
        const m = this.mirror?.status();
        return m ? { lag: { seconds: m.lag.seconds, bytes: m.lag.bytes }, journal: { limitBytes: m.journal.limitBytes }, connection: m.connection } : null;
      },
    });
    if (remote) {
      openSnapshotClient(cfg.archiveUrl, cfg.tokenFile ? { tokenFile: cfg.tokenFile, requestTimeoutMs: 10_000 } : { requestTimeoutMs: 10_000 })
        .then((c) => { client = c; }, (err: unknown) => log.warn({ err: (err as Error).message }, 'conditions will not reach the archive'));
    } else {
      log.info({}, 'file:// archive: conditions are logged here only (rules run on strata archive serve)');
    }
    this.conditions = watcher;
    this.conditionClient = () => client;
    watcher.start();
    return watcher;
  }

  private async stopMirror(): Promise<void> {
    this.conditions?.stop();
    await this.conditionClient?.()?.close().catch(() => {});
    await this.restoreClient?.close().catch(() => {});
    this.restoreClient = null;
    const m = this.mirror;
    if (!m) return;
    this.mirror = null;
    await this.fs?.recordDirtyAttrs().catch(() => {});
    await m.stop(5000).catch((err: unknown) => this.log.error({ err }, 'mirror stop failed'));
  }

  /** config.onStopping, once, bounded (a hung notification must not hold the stop). */
  private told = false;
  private async tellStopping(): Promise<void> {
    const f = this.config.onStopping;
    if (f === undefined || this.told) return;
    this.told = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([f().catch(() => {}), new Promise((r) => { timer = setTimeout(r, 1000); })]);
    clearTimeout(timer);
  }

  /** Releases what a failed start() had opened, so that the process can exit. */
  async abort(): Promise<void> {
    this.control?.close();
    this.control = null;
    const m = this.mirror;
    this.mirror = null;
    if (m) await m.abandon().catch(() => {});
    else await this.pendingClient?.close().catch(() => {});
    await this.restoreClient?.close().catch(() => {});
    this.restoreClient = null;
  }

  /** Unmounts (lazily when asked: on a signal the process is going away anyway). */
  stop(lazy: boolean): Promise<void> {
    this.stopping ??= this.doStop(lazy);
    return this.stopping;
  }

  private async doStop(lazy: boolean): Promise<void> {
    this.state = 'unmounting';
    await this.tellStopping();
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
    await this.swap?.stop();
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
      case 'checkpoint':
        return checkpointRequest(this.state === 'serving' ? this.checkpoints : null, this.adapter, this.mountpoint, req);
      case 'sync': {
        if (!this.mirror || !this.fs) return { mirrored: false };
        await this.fs.recordDirtyAttrs();
        // A fenced or failed shipper never drains: the answer says why, the daemon serves on.
        const drained = await this.mirror.drain(req.timeoutMs ?? 60_000).catch(() => false);
        return { mirrored: true, drained, ...this.mirror.status() };
      }
      case 'release': {
        // A planned move: no more writes, drain, give the lease up, unmount.
        if (!this.mirror || !this.fs) throw new Error('this mount is not mirrored: there is no lease to release');
        await this.fs.recordDirtyAttrs();
        await this.mirror.releaseForMove(req.timeoutMs ?? 60_000);
        const st = this.mirror.status();
        this.log.info({ event: 'released', volume: st.volume, epoch: st.epoch, appliedSeq: st.ackedSeq }, 'lease released after draining; unmounting');
        try {
          await this.stop(req.lazy ?? false);
        } catch (err) {
          throw new Error(`the lease is released and the mount is read-only, but the unmount failed: ${(err as Error).message} (strata unmount --lazy detaches it)`);
        }
        setTimeout(() => process.exit(0), 50);
        return { released: this.mountpoint, volume: st.volume, epoch: st.epoch, appliedSeq: st.ackedSeq, pid: process.pid };
      }
      case 'swap': {
        if (!this.swap) throw new Error('the daemon is starting');
        return this.swap.handle(req.swap);
      }
      case 'test-block': {
        // Test only (STRATA_TEST_HOOKS=1 in the daemon's environment): the
        // main thread busy-waits, so that tests can tell what the FUSE thread
        // answers without it.
        if (process.env['STRATA_TEST_HOOKS'] !== '1') throw new Error('test hooks are off (STRATA_TEST_HOOKS=1 turns them on)');
        const ms = Math.min(Math.max(0, req.ms), 10_000);
        const until = performance.now() + ms;
        while (performance.now() < until) { /* blocked on purpose */ }
        return { blockedMs: ms };
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

  /**
   * A swap switched the daemon to another store (requests are held).
   * Checkpoints stay with the store they were taken of (their pre-images name
   * that store's inodes): the new live store's registry is loaded and tracked
   * from now on (none after a prepare; after `swap back`, the ones taken
   * before the swap are live again), and the old store's go on guarding only
   * the files opened before the swap, which write the old store, so that
   * they are still right when a `swap back` brings them back. Until the last
   * of those files is closed every change goes through the core.
   */
  private async checkpointsFollowSwap(oldRoot: string): Promise<void> {
    const fs = this.fs!;
    const adapter = this.adapter!;
    const old = this.checkpoints;
    old?.detach();
    // Nothing the old store's checkpoints published may clear a direct write any more: every tracked write goes through the core
    // after a swap (the new store's checkpoints are attached without the clearance table).
    adapter.clearance.reset(CHECKPOINT_BLOCK_SIZE);
    // Never the old store's guard for the new store's objects, even for an instant.
    fs.guard = null;
    // The new live store's checkpoints may still be open, guarding files of an earlier swap: the same instance (one writer per log).
    const again = this.spareCheckpoints.find((e) => e.store === this.store.root);
    let cps: Checkpoints;
    if (again !== undefined) {
      this.spareCheckpoints = this.spareCheckpoints.filter((e) => e !== again);
      cps = again.cps;
      fs.guard = cps.tracker;
    } else {
      try {
        cps = await Checkpoints.load(this.store, fs, this.log);
      } catch (err) {
        // Decided, but the new store's checkpoints cannot be tracked: changes must not reach it untracked. The next start loads them (or says why not).
        this.log.fatal({ err }, 'swap: the new store\'s checkpoints cannot be loaded after the exchange; exiting (`strata mount` again serves the new store)');
        process.exit(1);
      }
    }
    this.checkpoints = cps;
    // Files of a former store whose checkpoints guard them keep every change going through the core, whatever the live store's do.
    cps.attach({ tracking: (on) => adapter.trackingChanged(on || this.spareCheckpoints.length > 0), passthroughWritersClosed: (ms) => adapter.passthroughWritersClosed(ms) });
    const oldGuard = old !== null && old.tracker.active ? old.tracker : null;
    const entry = old !== null && oldGuard !== null ? { store: oldRoot, cps: old } : null;
    if (entry !== null) this.spareCheckpoints.push(entry);
    fs.guardDetachedFiles(oldGuard, () => {
      if (entry !== null) this.spareCheckpoints = this.spareCheckpoints.filter((e) => e !== entry);
      // Unless a swap back made them live again, the old store's checkpoints need nothing any more.
      if (old !== null && this.checkpoints !== old && !this.spareCheckpoints.some((e) => e.cps === old)) void old.close();
      if (!adapter.holding) void adapter.trackingChanged(this.changesTracked());
    });
    adapter.setTrackingDuringHold(this.changesTracked());
  }

  /** Some checkpoints need every change to reach the core: the live store's, or a spare's guarding files opened before a swap. */
  private changesTracked(): boolean {
    return (this.checkpoints?.tracker.active ?? false) || this.spareCheckpoints.length > 0;
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

/** The FUSE connection's negotiated features, as `strata status` reports them. */
export interface FuseFeatures {
  writebackCache: boolean;
  /** Largest write request (max_write; libfuse asks for max_pages to match). */
  maxWriteBytes: number;
  passthrough: boolean;
  handleKillprivV2: boolean;
  /** Lookups and readdirs of one directory in parallel (FUSE_CAP_PARALLEL_DIROPS). */
  parallelDirops: boolean;
  /** READDIRPLUS: never (no readdirplus in the bridge). */
  readdirplus: boolean;
  /** POSIX ACLs enforced by the kernel (FUSE_CAP_POSIX_ACL, strata applying the umask). */
  posixAcl: boolean;
  /** O_TRUNC comes with the open (off on a mirrored mount). */
  atomicOTrunc: boolean;
  /** What the kernel offered that strata may ask for. */
  offered: { passthrough: boolean; handleKillprivV2: boolean; parallelDirops: boolean; posixAcl: boolean };
  passthroughOpens: number;
  passthroughShared: number;
  passthroughRefused: number;
  backingFiles: number;
  /** Writable opens pass through too (--passthrough-writes, with passthrough granted). */
  passthroughWrites: boolean;
  passthroughWriteOpens: number;
  /** Files open for writing in passthrough right now. */
  passthroughWriters: number;
}

function fuseFeaturesOf(f: Features, maxWrite: number): FuseFeatures {
  return {
    writebackCache: f.writebackCache,
    maxWriteBytes: maxWrite,
    passthrough: f.passthrough,
    handleKillprivV2: f.handleKillprivV2,
    parallelDirops: f.parallelDirops,
    readdirplus: f.readdirplus,
    posixAcl: f.posixAcl,
    atomicOTrunc: f.atomicOTrunc,
    offered: { passthrough: f.offeredPassthrough, handleKillprivV2: f.offeredKillprivV2, parallelDirops: f.offeredParallelDirops, posixAcl: f.offeredPosixAcl },
    passthroughOpens: f.passthroughOpens,
    passthroughShared: f.passthroughShared,
    passthroughRefused: f.passthroughRefused,
    backingFiles: f.backingFiles,
    passthroughWrites: f.passthroughWrites,
    passthroughWriteOpens: f.passthroughWriteOpens,
    passthroughWriters: f.passthroughWriters,
  };
}
