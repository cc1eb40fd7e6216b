// The background restore: after the mount serves, walks the local tree and
// makes everything local — pending directories materialised, stub files
// fetched — yielding to programs (every step waits until no on-demand fetch
// is in flight). A pass that finds nothing left to do ends it: leftover block
// maps (of files deleted while stubs) and link-registry names go, and the
// state says 'complete'.
//
// Memory: the walk holds one directory listing per level of the tree being
// walked and at most `concurrency` open files.
import * as fs from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as C } from 'node:fs';
import * as native from '../native/index.js';
import { BLOCK_SIZE, type ObjectId } from '../protocol/records.js';
import { readObjectId } from '../store/object-ids.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { MATERIALISING_PREFIX, linksDir, mapsDir } from '../store/restore-marks.js';
import { noFetches, type OnDemandRestore, type FetchStats } from './on-demand.js';
import { writeRestoreState, type RestoreState, type RestorePhase } from './state.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';

const DT_DIR = 4;
/** Directories materialised at the same time by the background restore. */
const DIRS_AT_ONCE = 8;
/** The rate (and so the ETA) looks at the last 10 seconds. */
const RATE_WINDOW_MS = 10_000;
const DT_REG = 8;

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
  fetch: FetchStats;
  servingAt: string | null;
  completedAt: string | null;
}

export interface BackgroundOptions {
  /** Files fetched at the same time (default 16: small files cost a round trip and an fdatasync each, and concurrent fdatasyncs share journal commits). */
  concurrency?: number;
  /** Called once everything is local. */
  onComplete?: () => void;
}

export class BackgroundRestore {
  private stopping = false;
  private running: Promise<void> | null = null;
  private passes = 0;
  private lastError: string | null = null;
  /** Progress saved before this daemon started (restore.json), which this run adds to. */
  private readonly base: { entries: number; bytes: number };
  private saveTimer: NodeJS.Timeout | null = null;
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

  start(): void {
    if (this.running || this.state.phase === 'complete') return;
    this.saveTimer = setInterval(() => { void this.save().catch(() => {}); }, 5000);
    this.saveTimer.unref();
    this.running = this.run().catch((err: unknown) => {
      this.log.error({ err }, 'restore: background restore stopped');
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.wake();
    }
    if (this.saveTimer) clearInterval(this.saveTimer);
    await this.running;
    if (this.state.phase !== 'complete') await this.save().catch(() => {});
  }

  /** Resolves when everything is local (or the restore was stopped). */
  whenDone(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  progress(): RestoreProgress {
    const s = this.hooks.stats;
    const complete = this.state.phase === 'complete';
    const total = this.state.totals;
    const entries = complete ? total.entries : Math.min(total.entries, this.base.entries + s.entriesMaterialised);
    const bytes = complete ? total.bytes : Math.min(total.bytes, this.base.bytes + this.bytesMadeLocal());
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
      fetch: { ...s },
      servingAt: this.state.servingAt,
      completedAt: this.state.completedAt,
    };
  }

  /** Bytes this daemon made local: fetched, or holes on the archive that needed no fetch. */
  private bytesMadeLocal(): number {
    return this.hooks.stats.bytesFetched + this.hooks.stats.holesSkipped * BLOCK_SIZE;
  }

  /** Bytes made local per second over the last RATE_WINDOW_MS (since the start before that). */
  private rate(): number {
    const now = Date.now();
    const done = this.bytesMadeLocal();
    this.samples.push([now, done]);
    while (this.samples.length > 2 && this.samples[1]![0] <= now - RATE_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0]!;
    return now > t0 ? Math.round(((done - b0) * 1000) / (now - t0)) : 0;
  }

  private async save(): Promise<void> {
    const p = this.progress();
    this.state.done = { entries: p.entries.done, bytes: p.bytes.done };
    await writeRestoreState(this.privateDir, this.state);
  }

  private async run(): Promise<void> {
    let backoff = 1000;
    while (!this.stopping) {
      this.passes++;
      let work: number;
      try {
        work = await this.pass();
        this.lastError = null;
        backoff = 1000;
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
   * Directories are materialised several at a time (each directory's own
   * entries are created one after another by the kernel anyway), files
   * fetched `concurrency` at a time.
   */
  private async pass(): Promise<number> {
    let work = 0;
    const inFlight = new Set<Promise<void>>();
    let failure: unknown = null;
    const limit = this.opts.concurrency ?? 16;
    const dirs = new Semaphore(DIRS_AT_ONCE);
    const walk = async (rel: string): Promise<void> => {
      if (this.stopping || failure !== null) return;
      let whole: Set<string> | null = null;
      const entries = await dirs.run(async () => {
        await this.hooks.whenIdle();
        whole = await this.hooks.restoreDir(rel);
        if (whole !== null) work++;
        try {
          return await native.readdirIno(rel);
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'ENOENT' || code === 'ENOTDIR') return []; // moved or removed meanwhile
          throw err;
        }
      });
      const createdWhole: Set<string> = whole ?? new Set();
      const subdirs: string[] = [];
      for (const e of entries) {
        if (this.stopping || failure !== null) return;
        if (rel === '.' && e.name === RESERVED_NAME) continue;
        if (e.name.startsWith(MATERIALISING_PREFIX)) continue;
        const child = rel === '.' ? e.name : `${rel}/${e.name}`;
        if (e.type === DT_DIR) {
          subdirs.push(child);
        } else if (e.type === DT_REG && !createdWhole.has(e.name)) {
          while (inFlight.size >= limit) await Promise.race(inFlight);
          const p: Promise<void> = this.restoreFile(child).then(
            (did) => { if (did) { work++; crashPoint('background-file'); } },
            (err: unknown) => { failure ??= err; },
          ).finally(() => inFlight.delete(p));
          inFlight.add(p);
        }
      }
      // A few subdirectories at a time (so what waits stays bounded by the tree's depth).
      for (let i = 0; i < subdirs.length; i += DIRS_AT_ONCE) {
        await Promise.all(subdirs.slice(i, i + DIRS_AT_ONCE).map((d) => walk(d).catch((err: unknown) => { failure ??= err; })));
      }
    };
    await walk('.');
    await Promise.all(inFlight);
    if (failure !== null) throw failure;
    return work;
  }

  /** Fetches what is missing of the file at `rel`; true when something was. */
  private async restoreFile(rel: string): Promise<boolean> {
    let id: ObjectId | null;
    try {
      id = await readObjectId(rel);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    if (id === null) return false;
    const map = await this.hooks.mapOf(id);
    if (map === null) return false;
    let fd: number;
    try {
      fd = await new Promise<number>((resolve, reject) =>
        fs.open(rel, C.O_RDONLY | C.O_NOFOLLOW | C.O_NOATIME, (err, n) => (err ? reject(err) : resolve(n))));
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    try {
      await this.hooks.restoreFileData(id, fd);
    } finally {
      fs.close(fd, () => {});
    }
    return true;
  }

  private async finish(): Promise<void> {
    // Whatever is left: maps of files deleted while stubs, registry names of
    // hard-linked files that lost a name before all were restored.
    await rm(mapsDir(this.privateDir), { recursive: true, force: true });
    await rm(linksDir(this.privateDir), { recursive: true, force: true });
    crashPoint('finish-before-state');
    this.state.phase = 'complete';
    this.state.completedAt = new Date().toISOString();
    this.state.done = { ...this.state.totals };
    await writeRestoreState(this.privateDir, this.state);
    if (this.saveTimer) clearInterval(this.saveTimer);
    this.log.info({ volume: this.state.volume, passes: this.passes, fetch: this.hooks.stats }, 'restore: complete, the volume is fully local');
    this.opts.onComplete?.();
  }
}


/** At most `n` calls of run() at a time; the others wait in order. */
class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await f();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/** The progress of a restore that was complete before this daemon started. */
export function completedProgress(state: RestoreState): RestoreProgress {
  return {
    phase: state.phase, volume: state.volume, epoch: state.epoch, depth: state.depth, recoveredSeq: state.recoveredSeq,
    entries: { done: state.totals.entries, total: state.totals.entries },
    bytes: { done: state.totals.bytes, total: state.totals.bytes },
    rate: 0, etaSeconds: 0, passes: 0, lastError: null, fetch: noFetches(),
    servingAt: state.servingAt, completedAt: state.completedAt,
  };
}
