// The swap, in the daemon: `strata swap prepare | commit | back | discard`
// arrive over the control socket and run here. docs/swap.md describes the
// whole; in short:
//  - prepare: checks (source, spare), then writes the source's tree into the
//    spare in the background (tree-writer.ts), resumable, with progress in
//    `strata status`;
//  - commit: hold the requests that name objects (the adapter), wait for
//    those under way, decide the exchange in one durable step (the swap
//    record, record.ts), switch the daemon to the new store (working
//    directory, the FUSE thread's node table, the inode table, open handles),
//    make the kernel drop every cached name and the root's attributes, then
//    release the held requests. Past --hold-timeout before the decision, the
//    exchange is rolled back and the held requests run against the old store.
//  - back: the same exchange with the spare that holds the pre-swap tree;
//  - discard: empty the spare.
import { lstat, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { syncfs } from '../store/syncfs.js';
import type { LocalStore } from '../store/local-store.js';
import type { FuseAdapter } from '../fuse/adapter.js';
import type { Filesystem } from '../core/filesystem.js';
import type { Logger } from '../log/logger.js';
import { readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import { readSwapRecord, removeSwapRecordTemp, writeSwapRecord, type SwapRecord } from './record.js';
import { checkSpare, emptySpare, readSpareState, spareStatePath, writeSpareState } from './spare.js';
import { formatSource, openSource, parseSource, type ArchiveRef } from './source.js';
import { writeTree, type WriteProgress } from './tree-writer.js';
import { swapCrashPoint } from './crash-points.js';
import type { Mirror, MirrorOptions } from '../mirror/mirror.js';
import { checkSnapshotTarget, handOver, HandoverClients, seedMirrorState, snapshotPreSwapHead, type HandoverInfo } from './mirror-handover.js';
import type { ArchivePoint } from './spare.js';
import type { Checkpoints } from '../checkpoint-service/manager.js';
import { checkpointTotals, writeCheckpointTree } from './checkpoint-writer.js';
import { readFile } from 'node:fs/promises';

export type BusyMode = 'wait' | 'ebusy';

export type SwapRequest =
  | { action: 'prepare'; spare: string; source: string; archive?: ArchiveRef }
  | { action: 'commit' | 'back'; holdTimeoutMs?: number; busy?: BusyMode }
  | { action: 'discard' };

export interface PrepareStatus {
  spare: string;
  source: string;
  /** What the source is (snapshot, record). */
  describe: string;
  state: 'writing' | 'ready' | 'failed' | 'interrupted';
  /** The archive point the tree is (a mirrored commit moves the archive there instead of comparing), null when not known. */
  point: ArchivePoint | null;
  resumed: boolean;
  totals: { entries: number; bytes: number };
  progress: WriteProgress;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export interface CommitResult {
  committed: boolean;
  direction: 'commit' | 'back';
  live: string;
  spare: string | null;
  generation: number;
  /** From the hold to the release, ms. */
  holdMs: number;
  /** Requests held, and the longest any of them waited, ms. */
  held: number;
  longestWaitMs: number;
  /** The longest a request that changes nothing waited, ms (a mirrored mount lets them go before the re-convergence). */
  longestReadWaitMs: number;
  /** Requests answered EBUSY (--busy ebusy). */
  ebusy: number;
  /** Why it was rolled back (committed false). */
  rolledBack: string | null;
  /** A mirrored mount: the archive snapshot that keeps the pre-swap head. */
  preSwapSnapshot: string | null;
  /** A mirrored mount: how the archive was brought to the new tree (moved to the source point, or a comparison walk). */
  handover: HandoverInfo | null;
  /** Where the hold went, ms: waiting for requests under way; drain, snapshot and the new store's mirror state (mirrored); the record; the switch (with the mirror's handover). */
  phases: { quiesceMs: number; beforeDecisionMs: number; recordMs: number; switchMs: number };
  at: string;
}

export interface SwapStatus {
  live: string;
  spare: string | null;
  generation: number;
  holding: boolean;
  prepare: PrepareStatus | null;
  lastCommit: CommitResult | null;
}

export interface SwapHost {
  /** The --store path (the swap record is named after it). */
  storeArg: string;
  store: LocalStore;
  mountpoint: string;
  adapter(): FuseAdapter | null;
  fs(): Filesystem | null;
  /** The mount's archive (a mirrored mount's), or null. */
  archive(): ArchiveRef | null;
  /** A mirrored mount's mirror and its options, and how to replace it after an exchange. */
  mirror(): { mirror: Mirror; opts: MirrorOptions } | null;
  setMirror(m: Mirror): void;
  /** The live store's checkpoints (a `checkpoint:NAME` source), null before the mount serves. */
  checkpoints(): Checkpoints | null;
  /**
   * Called during the hold, right after the daemon switched to the new store:
   * checkpoints stay with the store they were taken of (the new live store's
   * become the tracked ones; the old store's guard the files opened before).
   */
  storeSwitched(oldRoot: string): Promise<void>;
  /** The spare `dir` is about to be emptied (swap discard): nothing may write into it through checkpoints any more. */
  spareDiscarding(dir: string): Promise<void>;
  log: Logger;
}

/** A source opened for a prepare: what it is, its totals, and how to write its tree into the spare. */
interface OpenedSource {
  describe: string;
  /** Which one of the sources of that name it is (a checkpoint's id: a later checkpoint of the same name is another tree). */
  sourceId?: string;
  totals: { entries: number; bytes: number };
  point: ArchivePoint | null;
  /** Resolves with the ids of files a mirrored commit must compare whatever their size and mtime (SpareState.compare), if any. */
  write(spare: string, live: string, progress: WriteProgress, cancelled: () => boolean): Promise<string[] | undefined>;
  close(): Promise<void>;
}

const PREPARED_FILE = 'swap-prepared.json';
const DEFAULT_HOLD_MS = 5000;
/** Fault injection for the rollback test: the exchange stalls this long while requests are held. */
const STALL_MS = Number(process.env.STRATA_SWAP_STALL_MS ?? 0);


export class SwapController {
  private job: PrepareStatus | null = null;
  private running: Promise<void> | null = null;
  private cancel = false;
  private busy: string | null = null;
  private lastCommit: CommitResult | null = null;
  private record: SwapRecord | null = null;

  constructor(private readonly host: SwapHost) {}

  /** At start: the swap record, and a prepare this store remembers (ready, or interrupted). */
  async load(): Promise<void> {
    await removeSwapRecordTemp(this.host.storeArg);
    this.record = await readSwapRecord(this.host.storeArg);
    // The live store's own spare state is left over from an exchange that crashed before its bookkeeping.
    await rm(spareStatePath(this.host.store.root), { force: true });
    const text = await readFileIfExists(join(this.host.store.privateDir, PREPARED_FILE));
    if (text === null) return;
    const p = JSON.parse(text) as { spare: string; source: string };
    const st = await readSpareState(p.spare).catch(() => null);
    if (st === null || st.state === 'previous') return;
    this.job = {
      spare: p.spare, source: p.source, describe: st.source, state: st.state === 'ready' ? 'ready' : 'interrupted', point: st.point ?? null, resumed: false,
      totals: st.totals, progress: { entries: 0, bytes: 0, kept: 0, copiedBytes: 0, fetchedBytes: 0, logBytes: 0 },
      error: st.state === 'ready' ? null : 'interrupted (the daemon stopped): run `strata swap prepare` again to resume',
      startedAt: st.updatedAt, finishedAt: st.state === 'ready' ? st.updatedAt : null,
    };
  }

  status(): SwapStatus {
    return {
      live: this.host.store.root,
      spare: this.record?.spare ?? null,
      generation: this.record?.generation ?? 0,
      holding: this.busy === 'commit' || this.busy === 'back',
      prepare: this.job,
      lastCommit: this.lastCommit,
    };
  }

  async handle(req: SwapRequest): Promise<unknown> {
    switch (req.action) {
      case 'prepare': return this.prepare(req.spare, req.source, req.archive ?? null);
      case 'commit': case 'back': return this.exchange(req.action, req.holdTimeoutMs ?? DEFAULT_HOLD_MS, req.busy ?? 'wait');
      case 'discard': return this.discard();
      default: throw new Error(`unknown swap action ${(req as { action: string }).action}`);
    }
  }

  /** Stops a prepare under way (the daemon is stopping). */
  async stop(): Promise<void> {
    this.cancel = true;
    await this.running?.catch(() => {});
  }

  private exclusive(what: string): void {
    if (this.busy !== null) throw new Error(`a swap ${this.busy} is under way`);
    this.busy = what;
  }

  private async prepare(spareArg: string, sourceText: string, archiveArg: ArchiveRef | null): Promise<PrepareStatus> {
    if (this.running !== null) throw new Error(`a prepare of ${this.job?.spare ?? 'a spare'} is under way (strata status shows its progress)`);
    this.exclusive('prepare');
    try {
      const src = parseSource(sourceText);
      const source = formatSource(src);
      const reader = src.kind === 'checkpoint' ? await this.openCheckpoint(src.name) : await this.openArchive(src, archiveArg ?? this.host.archive());
      const point = reader.point;
      let check;
      try {
        check = await checkSpare(spareArg, {
          store: this.host.storeArg, live: this.host.store.root, source, treeBytes: reader.totals.bytes,
          ...(reader.sourceId !== undefined ? { sourceId: reader.sourceId } : {}),
        });
      } catch (err) {
        await reader.close().catch(() => {});
        throw err;
      }
      const { spare, resume } = check;
      const totals = { entries: reader.totals.entries, bytes: reader.totals.bytes };
      const ident = { ...(point !== null ? { point } : {}), ...(reader.sourceId !== undefined ? { sourceId: reader.sourceId } : {}) };
      try {
        await writeSpareState(spare, { format: 1, store: resolve(this.host.storeArg), mountpoint: this.host.mountpoint, source, state: 'writing', totals, ...ident, updatedAt: '' });
        await writeFileDurably(join(this.host.store.privateDir, PREPARED_FILE), `${JSON.stringify({ spare, source })}\n`);
      } catch (err) {
        await reader.close().catch(() => {});
        throw err;
      }
      const job: PrepareStatus = {
        spare, source, describe: reader.describe, state: 'writing', point, resumed: resume, totals,
        progress: { entries: 0, bytes: 0, kept: 0, copiedBytes: 0, fetchedBytes: 0, logBytes: 0 },
        error: null, startedAt: new Date().toISOString(), finishedAt: null,
      };
      this.job = job;
      this.cancel = false;
      const log = this.host.log.child({ component: 'swap' });
      log.info({ spare, source: reader.describe, resume, totals }, 'swap: preparing the spare');
      const started = Date.now();
      this.running = (async () => {
        try {
          const compare = await reader.write(spare, this.host.store.root, job.progress, () => this.cancel);
          const wrote = Date.now();
          await syncfs(spare);
          const synced = Date.now();
          await writeSpareState(spare, {
            format: 1, store: resolve(this.host.storeArg), mountpoint: this.host.mountpoint, source, state: 'ready', totals,
            ...ident, ...(compare !== undefined ? { compare } : {}), updatedAt: '',
          });
          job.state = 'ready';
          job.finishedAt = new Date().toISOString();
          log.info({ spare, ms: Date.now() - started, writeMs: wrote - started, syncfsMs: synced - wrote, ...job.progress }, 'swap: the spare is ready');
        } catch (err) {
          job.state = 'failed';
          job.error = (err as Error).message;
          job.finishedAt = new Date().toISOString();
          log.error({ err, spare }, 'swap: prepare failed');
        } finally {
          await reader.close().catch(() => {});
          this.running = null;
        }
      })();
      return job;
    } finally {
      this.busy = null;
    }
  }

  /** An archive source (snapshot, record, time). */
  private async openArchive(src: ReturnType<typeof parseSource>, archiveRef: ArchiveRef | null): Promise<OpenedSource> {
    const reader = await openSource(src, archiveRef);
    return {
      describe: reader.describe,
      totals: { entries: reader.totals.entries, bytes: reader.totals.bytes },
      point: archiveRef === null ? null : { ...reader.point, archive: archiveRef.url, volume: archiveRef.volume },
      write: async (spare, live, progress, cancelled) => { await writeTree({ client: reader.client, volume: reader.volume, spare, live, progress, cancelled, log: this.host.log.child({ component: 'swap' }) }); return undefined; },
      close: () => reader.close(),
    };
  }

  /**
   * A local checkpoint of the live store (src/swap/checkpoint-writer.ts): its
   * T0 tree, read off the live store and the checkpoint's pre-image log. The
   * checkpoint cannot be deleted while this reads it. Not a point of the
   * archive's history: a mirrored commit re-converges the archive by
   * comparison.
   */
  private async openCheckpoint(name: string): Promise<OpenedSource> {
    const cps = this.host.checkpoints();
    if (cps === null) throw new Error('the mount is not serving yet');
    let pin;
    try {
      pin = cps.pin(name);
    } catch (err) {
      throw new Error(`source checkpoint:${name}: ${(err as Error).message} (strata checkpoint list shows this mount's checkpoints)`);
    }
    try {
      const rootIno = await pin.rootIno();
      const liveDir = this.host.store.dir;
      const totals = await checkpointTotals(pin.state, rootIno, liveDir);
      const info = pin.state.info;
      return {
        describe: `checkpoint ${info.name} of ${info.createdAt}`,
        sourceId: info.id,
        totals: { entries: totals.entries, bytes: totals.bytes },
        point: null,
        write: (spare, live, progress, cancelled) => writeCheckpointTree({ state: pin.state, rootIno, live, liveDir, spare, progress, cancelled, parallel: 8 }, totals.multi),
        close: async () => pin.unpin(),
      };
    } catch (err) {
      pin.unpin();
      throw err;
    }
  }

  private async exchange(direction: 'commit' | 'back', holdTimeoutMs: number, busyMode: BusyMode): Promise<CommitResult> {
    if (this.running !== null) {
      throw new Error(`a prepare of ${this.job?.spare ?? 'a spare'} is under way: wait until \`strata status\` says it is ready (or \`strata swap discard\` it), then swap`);
    }
    const adapter = this.host.adapter();
    const fs = this.host.fs();
    if (adapter === null || fs === null) throw new Error('the mount is not serving yet');
    if (fs.restoring) throw new Error('this store is still being restored from the archive: swap once `strata status` says the restore is complete');
    const mirrored = fs.sink !== null ? this.host.mirror() : null;
    const archive = this.host.archive();
    if (fs.sink !== null && (mirrored === null || archive === null)) throw new Error('the mirror is not running');
    let clients: HandoverClients | null = null;
    if (mirrored !== null) {
      if (mirrored.mirror.readOnly !== null) throw new Error(`the mount is read-only (${mirrored.mirror.readOnly}): no swap`);
      // Opened before the hold (worker threads or connections take a while to start); the handover takes them over.
      clients = await HandoverClients.open(archive!);
      try {
        await checkSnapshotTarget(archive!, clients.snapshots);
      } catch (err) {
        await clients.abandon();
        throw err;
      }
    }
    let handedOver = false;
    try {
      return await this.exchangeWith(direction, holdTimeoutMs, busyMode, clients, () => { handedOver = true; });
    } finally {
      if (clients !== null && !handedOver) await clients.abandon();
    }
  }

  private async exchangeWith(direction: 'commit' | 'back', holdTimeoutMs: number, busyMode: BusyMode, clients: HandoverClients | null, handingOver: () => void): Promise<CommitResult> {
    const adapter = this.host.adapter()!;
    const fs = this.host.fs()!;
    const mirrored = fs.sink !== null ? this.host.mirror() : null;
    const archive = this.host.archive();
    let spare: string;
    let source: string;
    let point: ArchivePoint | null = null;
    if (direction === 'commit') {
      const job = this.job;
      if (job === null) throw new Error('no spare is prepared: run `strata swap prepare` first');
      if (job.state !== 'ready') throw new Error(`the spare ${job.spare} is not ready (${job.state}${job.error ? `: ${job.error}` : ''})`);
      spare = job.spare;
      source = job.source;
      point = job.point;
    } else {
      // The record is the authority: its spare holds the tree from before the last exchange (until discarded).
      const s = this.record?.spare ?? null;
      if (s === null) throw new Error('there is no pre-swap tree to go back to (no swap yet, or its spare was discarded)');
      spare = s;
      source = (await readSpareState(s).catch(() => null))?.source ?? `the tree before swap ${this.record!.generation}`;
    }
    const st = await lstat(spare, { bigint: true });
    // Files the mirrored handover compares whatever their size and mtime (a checkpoint source's changed files).
    const compare = direction === 'commit' && mirrored !== null ? new Set((await readSpareState(spare).catch(() => null))?.compare ?? []) : new Set<string>();
    this.exclusive(direction);
    const log = this.host.log.child({ component: 'swap' });
    const oldLive = this.host.store.root;
    const t0 = Date.now();
    const deadline = t0 + holdTimeoutMs;
    let committed = false;
    let rolledBack: string | null = null;
    let snapshot: string | null = null;
    let handover: HandoverInfo | null = null;
    const phases = { quiesceMs: 0, beforeDecisionMs: 0, recordMs: 0, switchMs: 0 };
    let mark = Date.now();
    const lap = (): number => { const now = Date.now(); const d = now - mark; mark = now; return d; };
    const generation = (this.record?.generation ?? 0) + 1;
    adapter.holdRequests(busyMode);
    try {
      const quiet = await adapter.quiesce(deadline);
      phases.quiesceMs = lap();
      if (!quiet) {
        rolledBack = `requests under way did not finish within the hold timeout (${holdTimeoutMs} ms)`;
      } else {
        swapCrashPoint('swap-held');
        if (STALL_MS > 0) await new Promise((r) => setTimeout(r, STALL_MS));
        if (mirrored !== null) rolledBack = await this.beforeDecision(mirrored.mirror, archive!, clients!, spare, deadline, generation, log).then((s) => { snapshot = s; return null; }, (err: unknown) => (err as Error).message);
        phases.beforeDecisionMs = lap();
        if (rolledBack === null && Date.now() >= deadline) rolledBack = `the exchange was not decided within the hold timeout (${holdTimeoutMs} ms)`;
      }
      if (rolledBack === null) {
        const next: SwapRecord = {
          format: 1, store: resolve(this.host.storeArg), live: spare, spare: oldLive,
          generation, at: new Date().toISOString(), source,
        };
        try {
          await writeSwapRecord(next);
        } catch (err) {
          await removeSwapRecordTemp(this.host.storeArg).catch(() => {});
          throw err;
        }
        phases.recordMs = lap();
        swapCrashPoint('swap-recorded');
        // Decided: from here on only forward.
        committed = true;
        this.record = next;
        await this.host.store.switchTo(spare);
        fs.detachOpenFiles();
        adapter.switchStore(st.ino);
        // Checkpoints stay with their store: the new store's are tracked from here on (before any change reaches it).
        await this.host.storeSwitched(oldLive);
        if (mirrored !== null) {
          // Reads go on against the new store while it is re-converged; changes wait for it.
          adapter.holdWritesOnly();
          try {
            handingOver();
            const h = await handOver(mirrored.mirror, archive!, clients!, mirrored.opts, spare, this.host.store.privateDir, log, point, snapshot,
              compare.size > 0 ? (_local, a) => compare.has(a.id) : undefined);
            handover = h.handover;
            fs.setSink(h.mirror);
            this.host.setMirror(h.mirror);
          } catch (err) {
            // Decided, but the archive did not take the new tree: the next start re-converges the new store before serving.
            log.fatal({ err }, 'swap: the new store could not be mirrored after the exchange; exiting (`strata mount` again re-converges it with the archive)');
            process.exit(1);
          }
        }
        phases.switchMs = lap();
        swapCrashPoint('swap-switched');
      }
    } finally {
      const h = adapter.releaseHeld();
      this.busy = null;
      const result: CommitResult = {
        committed, direction, live: this.host.store.root, spare: this.record?.spare ?? null, generation: this.record?.generation ?? 0,
        holdMs: Date.now() - t0, held: h.held, longestWaitMs: h.longestWaitMs, longestReadWaitMs: h.longestReadWaitMs, ebusy: h.ebusy, rolledBack, preSwapSnapshot: snapshot, handover, phases, at: new Date().toISOString(),
      };
      this.lastCommit = result;
      if (committed) log.info(result, 'swap: stores exchanged');
      else log.warn(result, 'swap: exchange rolled back; the old store serves on');
    }
    if (committed) {
      // Bookkeeping after the decision (a crash here loses nothing: the record decides).
      await writeSpareState(oldLive, {
        format: 1, store: resolve(this.host.storeArg), mountpoint: this.host.mountpoint, source: `the tree before swap ${this.record!.generation}`,
        state: 'previous', totals: { entries: 0, bytes: 0 }, updatedAt: '',
      }).catch((err: unknown) => log.warn({ err }, 'swap: cannot mark the old store as the spare'));
      await rm(spareStatePath(spare), { force: true });
      await rm(join(oldLive, '.strata', PREPARED_FILE), { force: true });
      if (direction === 'commit') this.job = null;
    }
    return this.lastCommit!;
  }

  /**
   * A mirrored mount, requests held: every change made so far reaches the
   * archive, the archive keeps that head as a snapshot, and the new store gets
   * the mirror's state. Resolves with the snapshot's id; rejects (the
   * exchange is rolled back) with why not.
   */
  private async beforeDecision(mirror: Mirror, archive: ArchiveRef, clients: HandoverClients, spare: string, deadline: number, generation: number, log: Logger): Promise<string> {
    const fs = this.host.fs()!;
    await fs.recordDirtyAttrs();
    if (!(await mirror.drain(Math.max(1, deadline - Date.now())).catch(() => false))) {
      throw new Error(`the journal did not drain to the archive within the hold timeout (${mirror.status().lag.records} records left)`);
    }
    const snap = await snapshotPreSwapHead(archive, clients, generation, log);
    log.info({ snapshot: snap.id, record: snap.record }, 'swap: the pre-swap head is kept as a snapshot');
    await seedMirrorState(this.host.store.privateDir, join(spare, '.strata'));
    return snap.id;
  }

  private async discard(): Promise<{ discarded: string }> {
    const target = this.job?.spare ?? this.record?.spare ?? null;
    if (target === null) throw new Error('there is no spare to discard');
    if (resolve(target) === this.host.store.root) throw new Error(`refusing to discard ${target}: it is the live store`);
    this.exclusive('discard');
    try {
      this.cancel = true;
      await this.running?.catch(() => {});
      await this.host.spareDiscarding(target);
      // Checkpoints of the tree being discarded: their copy stores go with it (the default one is inside it).
      const registry = await readFile(join(target, '.strata', 'checkpoints.json'), 'utf8').then((t) => (JSON.parse(t) as { checkpoints: { dir: string }[] }).checkpoints, () => []);
      for (const c of registry) await rm(c.dir, { recursive: true, force: true }).catch(() => {});
      await emptySpare(target);
      if (this.record?.spare === target) {
        const next = { ...this.record, spare: null };
        await writeSwapRecord(next);
        this.record = next;
      }
      await rm(join(this.host.store.privateDir, PREPARED_FILE), { force: true });
      this.job = null;
      this.host.log.info({ spare: target }, 'swap: spare discarded');
      return { discarded: target };
    } finally {
      this.busy = null;
    }
  }
}
