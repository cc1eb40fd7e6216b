// The background restore: after the mount serves, walks the local tree and
// makes everything local — pending directories materialised, stub files
// fetched — behind the programs: its archive fetches go in the background
// lane of the fetch scheduler (fetch-scheduler.ts), sent only while no
// program waits for the restore. A pass that finds nothing left to do ends
// it: leftover block maps (of files deleted while stubs) and link-registry
// names go, and the state says 'complete'.
//
// Cost and memory (I5): a walk is a depth-first stack of directory paths
// worked on by a few workers (DIRS_AT_ONCE); each directory's files are
// checked and fetched through one bounded pool (`concurrency`) whose waiters
// are woken one at a time. Nothing waits per entry on anything that grows
// with the tree, so a pass costs the same per entry from the first directory
// to the last, and memory holds the stack (the unvisited siblings along the
// paths being walked), the workers' listings and the files in flight. Long
// listings give the event loop back every LISTING_SLICE entries.
//
// Progress (entries and bytes made local) is persisted in restore.json every
// second and `strata status` shows the persisted figures, never more: a
// restart (even after kill -9) starts from them, so progress never goes
// backwards.
import * as fs from 'node:fs';
import { opendir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../native/index.js';
import { BLOCK_SIZE, type ObjectId } from '../protocol/records.js';
import { readObjectId } from '../store/object-ids.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { clearLinking, clearUnrestoredNames, forgetSideMarks, linksDir, mapsDir, removeMapTemps, sideMarksDir, timesDir } from '../store/restore-marks.js';
import { noFetches, type OnDemandRestore, type FetchStats, type UnreadableObject } from './on-demand.js';
import { writeRestoreState, type RestoreState, type RestorePhase } from './state.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';
import { freeRoomAt, roomShortfall } from './room.js';
import { countHeldXattrObjects } from '../store/held-xattrs.js';

/*
 * NAMES_FIRST. On a store without room for the rest of the volume (checkRoom),
 * the first pass makes every directory local and no file's data (small files
 * become stubs too), and only then do passes fetch data. Otherwise the walk,
 * which fetches each directory's files as it goes, filled the disk with data
 * while directories deeper down were still pending, and a pending directory
 * cannot be made local on a full disk (its entries, stubs and block maps need
 * room): `ls` of it, and `cat` of a file in it, said ENOSPC for as long as the
 * store was full, where the reads of files are answered from the archive
 * (found 2026-12-06 by a hand probe: a 22 MiB volume recovered into a 12 MiB
 * store; fault recover-faults *a store too small for the volume…*). With room
 * for everything the order does not matter, and small files are still made
 * whole as their directory is (one write each, no map).
 */
const DT_DIR = 4;
const DT_REG = 8;
/** Directories worked on at the same time by the background restore. */
const DIRS_AT_ONCE = 8;
/** A listing is gone through this many entries at a time, the event loop served in between. */
const LISTING_SLICE = 512;
/** The rate (and so the ETA) looks at the last 10 seconds. */
const RATE_WINDOW_MS = 10_000;

export interface RestoreProgress {
  phase: RestorePhase;
  volume: string;
  epoch: number;
  depth: number;
  recoveredSeq: number;
  entries: { done: number; total: number };
  bytes: { done: number; total: number };
  /** Bytes per second made local over the last 10 s. */
  rate: number;
  /** Seconds left at that rate (null: unknown). */
  etaSeconds: number | null;
  passes: number;
  /** Why the background restore is waiting (the archive is away), if it is. */
  lastError: string | null;
  /** What the store lacks to hold what is not local yet, as last checked (room.ts); null: it has room. */
  room: string | null;
  fetch: FetchStats;
  /** Files with blocks the archive could not deliver (corrupt or missing there): reads of those blocks fail with EIO. */
  unreadable: UnreadableObject[];
  /** Objects restored without xattrs this store's file system cannot hold (the archive keeps them: store/held-xattrs.ts). */
  heldXattrObjects: number;
  servingAt: string | null;
  completedAt: string | null;
}

export interface BackgroundOptions {
  /** Files checked or fetched at the same time (default 16). */
  concurrency?: number;
  /** Directories worked on at the same time (default 8). */
  dirs?: number;
  /** How often progress is persisted, ms (default 1000). */
  saveEveryMs?: number;
  /** Called once everything is local, but for the files with blocks the archive could not deliver. */
  onComplete?: (unreadable: UnreadableObject[]) => void;
}

export class BackgroundRestore {
  private stopping = false;
  private running: Promise<void> | null = null;
  private passes = 0;
  private lastError: string | null = null;
  private room: string | null = null;
  /** Objects with xattrs only the archive holds, as last counted (every save, once a second, and at the end). */
  private heldXattrObjects = 0;
  /** The pass under way (its stack of directories), for walkState(). */
  private walk: Walk | null = null;
  /** Progress saved before this daemon started (restore.json), which this run adds to. */
  private readonly base: { entries: number; bytes: number };
  private saveTimer: NodeJS.Timeout | null = null;
  private saving: Promise<void> | null = null;
  private sleeper: { timer: NodeJS.Timeout; wake: () => void } | null = null;
  /** (time, bytes made local) samples for the rate, oldest first; the first one is the start. */
  private readonly samples: [number, number][] = [[Date.now(), 0]];

  constructor(
    private readonly hooks: OnDemandRestore,
    private readonly privateDir: string,
    private readonly state: RestoreState,
    private readonly log: Logger,
    private readonly opts: BackgroundOptions = {},
  ) {
    this.base = { ...state.done };
  }

  /** Starts the walk (and the progress bookkeeping). */
  start(): void {
    if (this.running || this.state.phase === 'complete') return;
    this.trackProgress();
    this.running = this.run().catch((err: unknown) => {
      this.log.error({ err }, 'restore: background restore stopped');
    });
  }

  /** Persists progress every second (also without a walk: what programs fetch counts too). */
  trackProgress(): void {
    if (this.saveTimer || this.state.phase === 'complete') return;
    this.saveTimer = setInterval(() => { void this.save().catch(() => {}); }, this.opts.saveEveryMs ?? 1000);
    this.saveTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.wake();
    }
    if (this.saveTimer) clearInterval(this.saveTimer);
    this.saveTimer = null;
    this.hooks.cancelBackground();
    await this.running;
    if (this.state.phase !== 'complete') await this.save().catch(() => {});
  }

  /** Resolves when everything is local (or the restore was stopped). */
  whenDone(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /**
   * Progress as persisted (restore.json, at most a second old): a restart
   * starts from exactly these figures, so what status shows never goes back.
   */
  progress(): RestoreProgress {
    const s = this.hooks.stats;
    const complete = this.state.phase === 'complete';
    const total = this.state.totals;
    const entries = complete ? total.entries : Math.min(total.entries, this.state.done.entries);
    const bytes = complete ? total.bytes : Math.min(total.bytes, this.state.done.bytes);
    const rate = this.rate();
    return {
      phase: this.state.phase,
      volume: this.state.volume,
      epoch: this.state.epoch,
      depth: this.state.depth,
      recoveredSeq: this.state.recoveredSeq,
      entries: { done: entries, total: total.entries },
      bytes: { done: bytes, total: total.bytes },
      rate,
      etaSeconds: complete ? 0 : rate > 0 ? Math.round((total.bytes - bytes) / rate) : null,
      passes: this.passes,
      lastError: this.lastError,
      room: complete ? null : this.room,
      fetch: { ...s },
      unreadable: complete ? (this.state.unreadable ?? []) : this.hooks.unreadableObjects(),
      heldXattrObjects: this.heldXattrObjects,
      servingAt: this.state.servingAt,
      completedAt: this.state.completedAt,
    };
  }

  /**
   * The walk of the pass under way: directories found and not visited yet
   * (queued), and being visited (materialised when pending, listed). Both 0
   * between passes and once the restore is complete.
   */
  walkState(): { queued: number; visiting: number } {
    const w = this.walk;
    return w === null || this.state.phase === 'complete' ? { queued: 0, visiting: 0 } : { queued: w.stack.length, visiting: w.busy };
  }

  /** Bytes this daemon made local: fetched, or holes on the archive that needed no fetch. */
  private bytesMadeLocal(): number {
    return this.hooks.stats.bytesFetched + this.hooks.stats.holesSkipped * BLOCK_SIZE;
  }

  /** Bytes made local per second over the last RATE_WINDOW_MS (since the start before that). */
  private rate(): number {
    const now = Date.now();
    const done = this.bytesMadeLocal();
    const last = this.samples[this.samples.length - 1]!;
    if (now - last[0] >= 100 || this.samples.length === 1) this.samples.push([now, done]);
    while (this.samples.length > 2 && this.samples[1]![0] <= now - RATE_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return now > t0 ? Math.round(((done - b0) * 1000) / (now - t0)) : 0;
  }

  /** Persists the progress made so far (never less than what was persisted before). */
  private save(): Promise<void> {
    // One write at a time: a slow disk must not pile up writers of one file.
    this.saving ??= (async () => {
      try {
        this.heldXattrObjects = await countHeldXattrObjects(this.privateDir).catch(() => this.heldXattrObjects);
        if (this.state.phase === 'complete') return;
        const entries = Math.max(this.state.done.entries, this.base.entries + this.hooks.stats.entriesMaterialised);
        const bytes = Math.max(this.state.done.bytes, this.base.bytes + this.bytesMadeLocal());
        if (entries === this.state.done.entries && bytes === this.state.done.bytes) return;
        await writeRestoreState(this.privateDir, { ...this.state, done: { entries, bytes } });
        // Shown once it is on disk (finish() waits for this write before it changes the state).
        this.state.done = { entries, bytes };
      } finally {
        this.saving = null;
      }
    })();
    return this.saving;
  }

  /**
   * Checks whether the store has room for what is not local yet (at the start
   * and before every pass); logs a change. Returns what it lacks (null: room).
   */
  async checkRoom(): Promise<string | null> {
    const total = this.state.totals;
    const done = this.state.done;
    const need = { bytes: Math.max(0, total.bytes - done.bytes), entries: Math.max(0, total.entries - done.entries) };
    const room = roomShortfall(await freeRoomAt(this.privateDir), need);
    if (room !== null && this.room === null) this.log.warn({ room }, `restore: ${room}`);
    if (room === null && this.room !== null) this.log.info('restore: the store has room for the rest of the volume now');
    this.room = room;
    return room;
  }

  private async run(): Promise<void> {
    let backoff = 1000;
    // Names first on a store short of room: see NAMES_FIRST at the top of this file.
    let namesLocal = false;
    while (!this.stopping) {
      this.passes++;
      const room = await this.checkRoom().catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'restore: cannot tell the store\'s free room');
        return null;
      });
      const namesOnly = room !== null && !namesLocal;
      let work: number;
      try {
        work = await this.pass(namesOnly);
        this.lastError = null;
        backoff = 1000;
        if (namesOnly) {
          namesLocal = true;
          this.log.info({ directories: work }, 'restore: every directory is local (names first: the store is short of room); now the files\' data');
          continue;
        }
      } catch (err) {
        if (this.stopping) return;
        this.lastError = (err as Error).message;
        this.log.warn({ err: this.lastError, retryMs: backoff }, 'restore: background pass failed; retrying');
        await this.sleep(backoff);
        backoff = Math.min(30_000, backoff * 2);
        continue;
      }
      if (this.stopping) return;
      if (work === 0) {
        await this.finish();
        return;
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.sleeper = null; resolve(); }, ms);
      this.sleeper = { timer, wake: resolve };
    });
  }

  /**
   * One walk of the tree; returns how many directories and files it restored.
   * A depth-first stack of directories, DIRS_AT_ONCE workers taking from it;
   * files go through one pool of `concurrency`. `namesOnly`: directories
   * only, every file a stub (NAMES_FIRST).
   */
  private async pass(namesOnly = false): Promise<number> {
    const walk: Walk = this.walk = {
      namesOnly,
      stack: ['.'],
      busy: 0,
      idle: [],
      work: 0,
      failure: null,
      files: new Pool(this.opts.concurrency ?? 16),
    };
    const wakeIdle = (): void => {
      const idle = walk.idle;
      walk.idle = [];
      for (const w of idle) w();
    };
    const worker = async (): Promise<void> => {
      while (!this.stopping && walk.failure === null) {
        const rel = walk.stack.pop();
        if (rel === undefined) {
          if (walk.busy === 0) break;
          // Another worker may still push subdirectories.
          await new Promise<void>((resolve) => walk.idle.push(resolve));
          continue;
        }
        walk.busy++;
        try {
          await this.visit(rel, walk);
        } catch (err) {
          walk.failure ??= err;
        } finally {
          walk.busy--;
          wakeIdle();
        }
      }
      wakeIdle();
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.dirs ?? DIRS_AT_ONCE) }, worker));
    await walk.files.drained();
    if (walk.failure !== null) throw walk.failure;
    return walk.work;
  }

  /**
   * One directory: materialised when pending (small files whole), listed; its
   * subdirectories go on the stack, its files that may still need data into
   * the file pool.
   */
  private async visit(rel: string, walk: Walk): Promise<void> {
    // Programs first: while one waits for the archive, no new step starts.
    await this.hooks.whenIdle();
    const whole = await this.hooks.restoreDir(rel, !walk.namesOnly);
    if (whole !== null) walk.work++;
    let entries: native.DirEntry[];
    try {
      entries = await this.hooks.dir.readdirIno(rel);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return; // moved or removed meanwhile
      throw err;
    }
    // A file needs data only while it has a block map: none at all (checked
    // after the listing, and a map is written before its file gets its name)
    // means none of these files does.
    let checkFiles: boolean | null = null;
    const subdirs: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      if (this.stopping || walk.failure !== null) return;
      if (i > 0 && i % LISTING_SLICE === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const e = entries[i]!;
      if (rel === '.' && e.name === RESERVED_NAME) continue;
      // A name that starts like a materialisation's temporary one (MATERIALISING_PREFIX) is walked like any
      // other: it may be a program's file (until 2026-12-05 one such was never fetched, and read as zeros once
      // the restore said complete), and a temporary one that is renamed or removed meanwhile is ENOENT below.
      const child = rel === '.' ? e.name : `${rel}/${e.name}`;
      if (e.type === DT_DIR) {
        subdirs.push(child);
      } else if (e.type === DT_REG && !walk.namesOnly && !(whole?.has(e.name) ?? false)) {
        checkFiles ??= await this.anyBlockMaps();
        if (!checkFiles) continue;
        await walk.files.acquire();
        await this.hooks.whenIdle();
        this.restoreFile(child).then(
          (did) => { if (did) { walk.work++; crashPoint('background-file'); } },
          (err: unknown) => { walk.failure ??= err; },
        ).finally(() => walk.files.release());
      }
    }
    // Reversed: the stack gives them back in the listing's order.
    for (let i = subdirs.length - 1; i >= 0; i--) walk.stack.push(subdirs[i]!);
  }

  /** Whether any file of the store still has a block map (some of its data is only in the archive). */
  private async anyBlockMaps(): Promise<boolean> {
    let dir: fs.Dir;
    try {
      dir = await opendir(mapsDir(this.privateDir), { bufferSize: 1 });
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    try {
      return (await dir.read()) !== null;
    } finally {
      await dir.close();
    }
  }

  /** Fetches what is missing of the file at `rel`; true when something was. */
  private async restoreFile(rel: string): Promise<boolean> {
    let id: ObjectId | null;
    try {
      id = await readObjectId(rel, this.hooks.dir.fd);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    if (id === null) return false;
    const map = await this.hooks.mapOf(id);
    if (map === null) return false;
    // What is left of it the archive cannot deliver: nothing to do (it is listed as unreadable).
    if (this.hooks.onlyUnreadableLeft(id, map)) {
      this.hooks.notePath(id, rel);
      return false;
    }
    let fd: number;
    try {
      fd = await this.hooks.dir.openQuiet(rel);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    try {
      await this.hooks.restoreFileData(id, fd);
    } finally {
      fs.close(fd, () => {});
      this.hooks.notePath(id, rel);
    }
    return true;
  }

  private async finish(): Promise<void> {
    // Whatever is left: maps of files deleted while stubs, registry names of
    // hard-linked files that lost a name before all were restored.
    // Files with blocks the archive cannot deliver keep their maps (reads of those blocks fail, and retry).
    const unreadable = this.hooks.unreadableObjects();
    await removeMapsExcept(this.privateDir, new Set(unreadable.map((o) => o.id)));
    await removeMapTemps(this.privateDir);
    await rm(timesDir(this.privateDir), { recursive: true, force: true });
    await dropLinkRegistry(this.privateDir);
    // No directory is pending and no registry name is left: no side mark is anybody's.
    await rm(sideMarksDir(this.privateDir), { recursive: true, force: true });
    forgetSideMarks(this.privateDir);
    await this.saving;
    // What the last pass held (the saves stop with the restore).
    this.heldXattrObjects = await countHeldXattrObjects(this.privateDir).catch(() => this.heldXattrObjects);
    crashPoint('finish-before-state');
    this.state.phase = 'complete';
    this.state.completedAt = new Date().toISOString();
    this.state.done = { ...this.state.totals };
    this.state.unreadable = unreadable;
    await writeRestoreState(this.privateDir, this.state);
    if (this.saveTimer) clearInterval(this.saveTimer);
    this.saveTimer = null;
    if (unreadable.length > 0) {
      this.hooks.finishWithUnreadable(unreadable);
      this.log.error({ volume: this.state.volume, unreadable }, `restore: complete with ${unreadable.length} unreadable objects (the archive cannot deliver some of their blocks)`);
    } else {
      this.log.info({ volume: this.state.volume, passes: this.passes, fetch: this.hooks.stats }, 'restore: complete, the volume is fully local');
    }
    this.opts.onComplete?.(unreadable);
  }
}

/** The state of one pass. */
interface Walk {
  /** Directories only (NAMES_FIRST): no file's data is fetched, small files too are stubs. */
  namesOnly: boolean;
  /** Directories still to visit (store-relative paths), depth first. */
  stack: string[];
  /** Workers inside a directory (they may push more). */
  busy: number;
  /** Workers waiting for the stack to fill or the pass to end. */
  idle: (() => void)[];
  /** Directories and files restored by this pass. */
  work: number;
  failure: unknown;
  files: Pool;
}

/** Block maps go, but those of `keep`. */
async function removeMapsExcept(privateDir: string, keep: ReadonlySet<ObjectId>): Promise<void> {
  if (keep.size === 0) {
    await rm(mapsDir(privateDir), { recursive: true, force: true });
    return;
  }
  for (const name of await readdir(mapsDir(privateDir)).catch(() => [] as string[])) {
    if (!keep.has(name)) await rm(join(mapsDir(privateDir), name), { force: true });
  }
}

/**
 * Once every name is restored: the registry names of hard-linked files go,
 * and with them the count of unrestored names on their inodes.
 */
async function dropLinkRegistry(privateDir: string): Promise<void> {
  const dir = linksDir(privateDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) {
    await clearUnrestoredNames(privateDir, join(dir, name), native.AT_FDCWD);
    await clearLinking(privateDir, join(dir, name), native.AT_FDCWD);
    await rm(join(dir, name), { force: true });
    crashPoint('registry-dropped');
  }
  await rm(dir, { recursive: true, force: true });
}

/** At most `size` holders at a time; waiters get in in order, woken one at a time. */
class Pool {
  private held = 0;
  private waiting: (() => void)[] = [];
  private head = 0;
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly size: number) {}

  acquire(): Promise<void> {
    if (this.held < this.size && this.head === this.waiting.length) {
      this.held++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined as unknown as () => void;
      if (this.head === this.waiting.length) {
        this.waiting = [];
        this.head = 0;
      }
      next(); // the slot passes on
      return;
    }
    this.held--;
    if (this.held === 0) {
      const d = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of d) w();
    }
  }

  /** Resolves when nothing holds the pool. */
  drained(): Promise<void> {
    if (this.held === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }
}

/** The progress of a restore that was complete before this daemon started. */
export function completedProgress(state: RestoreState, heldXattrObjects = 0): RestoreProgress {
  return {
    phase: state.phase, volume: state.volume, epoch: state.epoch, depth: state.depth, recoveredSeq: state.recoveredSeq,
    entries: { done: state.totals.entries, total: state.totals.entries },
    bytes: { done: state.totals.bytes, total: state.totals.bytes },
    rate: 0, etaSeconds: 0, passes: 0, lastError: null, room: null, fetch: noFetches(), unreadable: state.unreadable ?? [], heldXattrObjects,
    servingAt: state.servingAt, completedAt: state.completedAt,
  };
}
