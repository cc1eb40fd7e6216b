// The checkpoints of one store: the registry (STORE/.strata/checkpoints.json,
// replaced atomically and durably), the copy stores, and the tracker the core
// asks before every change. Creating a checkpoint is O(1): a directory and an
// empty log in the copy store and one durable registry write; from then on
// the tracker saves pre-images on first change.
import { mkdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Filesystem } from '../core/filesystem.js';
import { FsError } from '../errors/errno.js';
import type { Logger } from '../log/logger.js';
import { readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import type { StoreDir } from '../store/store-dir.js';
import type { LocalStore } from '../store/local-store.js';
import { BLOCK_SIZE, CheckpointState, type CheckpointInfo } from '../checkpoint/state.js';
import { Tracker, type BlockClearance } from '../checkpoint/tracker.js';
import { Rollback, type Area, type RollbackObserver, type RollbackReport } from './rollback.js';
import { diffCheckpoint, type DiffReport } from '../checkpoint/diff.js';

export const REGISTRY = 'checkpoints.json';
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface CheckpointListing extends CheckpointInfo {
  /** Bytes the checkpoint's log holds in its copy store. */
  logBytes: number;
  /** Objects with saved attributes, files with saved blocks, saved blocks. */
  objects: number;
  files: number;
  blocks: number;
}

/** How long `checkpoint create` waits for files open for writing in FUSE passthrough to close. */
export const DEFAULT_WAIT_WRITERS_MS = 10_000;

/** What the daemon does when tracking starts or stops (the FUSE adapter's fast paths). */
export interface TrackingSwitch {
  /**
   * Every change must reach the core from now on, except writes of blocks the
   * clearance table says are saved; resolves once no change that did not see
   * the switch (or the table's last reset) is in flight elsewhere.
   */
  tracking(on: boolean): Promise<void>;
  /**
   * After tracking(true): resolves once no file is open for writing in FUSE
   * passthrough (`--passthrough-writes`: the kernel writes those to the store
   * itself, unseen), waiting up to `timeoutMs`; fails with EBUSY after it.
   */
  passthroughWritersClosed?(timeoutMs: number): Promise<void>;
  /** The FUSE thread's table of blocks it may overwrite itself. */
  clearance?: BlockClearance;
}

export class Checkpoints {
  readonly tracker: Tracker;
  private infos: CheckpointInfo[] = [];
  private readonly states = new Map<string, CheckpointState>();
  /** One registry change or rollback at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private switcher: TrackingSwitch | null = null;
  /** Checkpoints read by someone outside (a swap prepare): not deleted meanwhile. */
  private readonly pins = new Map<string, number>();

  /** The store these checkpoints are of: its paths when they were loaded (a swap moves the daemon's LocalStore to another directory; they stay with this one). */
  private readonly store: { readonly root: string; readonly privateDir: string; readonly dir: StoreDir };

  private constructor(store: LocalStore, private readonly fs: Filesystem, private readonly log: Logger) {
    this.store = { root: store.root, privateDir: store.privateDir, dir: store.dir };
    this.tracker = new Tracker(store.root, store.dir, log, (s, reason) => this.markInvalid(s, reason));
  }

  /** Loads the registry and opens every valid checkpoint's log (before the mount serves). */
  static async load(store: LocalStore, core: Filesystem, log: Logger): Promise<Checkpoints> {
    const c = new Checkpoints(store, core, log.child({ component: 'checkpoints' }));
    const text = await readFileIfExists(join(store.privateDir, REGISTRY));
    c.infos = text === null ? [] : (JSON.parse(text) as { checkpoints: CheckpointInfo[] }).checkpoints;
    for (const info of c.infos) {
      if (info.status !== 'valid') continue;
      try {
        await stat(join(info.dir, 'log'));
        const s = await CheckpointState.open(info);
        c.states.set(info.name, s);
        c.tracker.add(s);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        info.status = 'invalid';
        info.reason = `copy store unreadable at start (${e.code ?? e.message}): ${info.dir}`;
        info.invalidAt = new Date().toISOString();
        c.log.error({ checkpoint: info.name, err: e.message }, 'checkpoint invalidated: its copy store is gone or unreadable');
      }
    }
    if (c.infos.some((i) => i.status === 'invalid')) await c.saveRegistry();
    core.guard = c.tracker;
    return c;
  }

  /** The daemon's adapter: told when tracking starts and stops. */
  attach(switcher: TrackingSwitch): void {
    this.switcher = switcher;
    this.tracker.setClearance(switcher.clearance ?? null);
  }

  get defaultCopyStore(): string {
    return join(this.store.privateDir, 'checkpoints');
  }

  list(): CheckpointListing[] {
    return this.infos.map((i) => {
      const s = this.states.get(i.name);
      let blocks = 0;
      for (const m of s?.blocks.values() ?? []) blocks += m.size;
      return { ...i, logBytes: s?.log.bytes ?? 0, objects: s?.attrs.size ?? 0, files: s?.blocks.size ?? 0, blocks };
    });
  }

  /** Invalid checkpoints, for `strata status`. */
  problems(): { name: string; reason: string }[] {
    return this.infos.filter((i) => i.status !== 'valid').map((i) => ({ name: i.name, reason: i.reason ?? 'invalid' }));
  }

  /** `waitWritersMs`: how long to wait for files open for writing in FUSE passthrough to close (default 10 s). */
  create(opts: { name?: string; copyStore?: string; waitWritersMs?: number }): Promise<CheckpointInfo & { createMs: number }> {
    return this.serial(async () => {
      const t0 = process.hrtime.bigint();
      const name = opts.name ?? defaultName();
      if (!NAME_RE.test(name)) throw new FsError('EINVAL', `checkpoint name ${JSON.stringify(name)}: letters, digits, '.', '_', '-' (at most 64, not starting with a punctuation mark)`);
      if (this.infos.some((i) => i.name === name)) throw new FsError('EEXIST', `checkpoint ${name} exists`);
      if (this.fs.restoring) throw new FsError('EBUSY', 'a restore from the archive is still under way: take the checkpoint once it is complete');
      const base = resolve(opts.copyStore ?? this.defaultCopyStore);
      if (opts.copyStore !== undefined) {
        const st = await stat(base).catch(() => null);
        if (!st || !st.isDirectory()) throw new FsError('ENOENT', `copy store ${base} is not a directory`);
        const inStore = base === this.store.root || base.startsWith(`${this.store.root}/`);
        const inPrivate = base === this.store.privateDir || base.startsWith(`${this.store.privateDir}/`);
        if (inStore && !inPrivate) throw new FsError('EINVAL', `copy store ${base} lies inside the mounted tree`);
        const free = await statfs(base);
        if (free.bavail * free.bsize < 4 * BLOCK_SIZE) throw new FsError('ENOSPC', `copy store ${base} is full`);
      }
      const id = `${name}-${randomBytes(4).toString('hex')}`;
      const dir = join(base, id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const info: CheckpointInfo = { name, id, createdAt: new Date().toISOString(), dir, blockSize: BLOCK_SIZE, status: 'valid' };
      await writeFile(join(dir, 'checkpoint.json'), JSON.stringify({ ...info, store: this.store.root }, null, 2) + '\n');
      const state = await CheckpointState.open(info);
      await fsyncDir(dir);
      await fsyncDir(base);
      // Every change reaches the core before the checkpoint exists: the FUSE
      // thread's table of saved blocks is emptied (nothing is saved for this
      // one yet), and no direct write that saw it before is still running.
      this.tracker.beginAdd();
      try {
        await this.switcher?.tracking(true);
        // New opens no longer pass through; the writers that do must be gone before T0.
        await this.switcher?.passthroughWritersClosed?.(opts.waitWritersMs ?? DEFAULT_WAIT_WRITERS_MS);
        this.infos.push(info);
        await this.saveRegistry();
      } catch (err) {
        this.tracker.endAdd();
        this.infos = this.infos.filter((i) => i !== info);
        await state.close();
        await rm(dir, { recursive: true, force: true });
        if (!this.tracker.active) await this.switcher?.tracking(false);
        throw err;
      }
      // No await between the durable registry and this: no change slips in untracked.
      this.states.set(name, state);
      this.tracker.add(state);
      this.tracker.endAdd();
      const createMs = Number(process.hrtime.bigint() - t0) / 1e6;
      this.log.info({ checkpoint: name, dir, createMs }, 'checkpoint created');
      return { ...info, createMs };
    });
  }

  /**
   * A valid checkpoint's state for a reader outside this class (`strata swap
   * prepare --from checkpoint:NAME`): it cannot be deleted until `unpin`.
   */
  pin(name: string): { state: CheckpointState; rootIno: () => Promise<bigint>; unpin: () => void } {
    const state = this.valid(name);
    this.pins.set(name, (this.pins.get(name) ?? 0) + 1);
    let done = false;
    const unpin = (): void => {
      if (done) return;
      done = true;
      const n = (this.pins.get(name) ?? 1) - 1;
      if (n <= 0) this.pins.delete(name);
      else this.pins.set(name, n);
    };
    return { state, rootIno: () => this.rootIno(), unpin };
  }

  /**
   * The store stopped being the live one (a swap, src/swap): its tracker goes
   * on guarding only the files opened before (the daemon hands it to them),
   * and says nothing to the adapter any more.
   */
  detach(): void {
    this.switcher = null;
    // The FUSE thread's clearance table speaks of this store's inodes: after a swap nothing of it may clear a write
    // (another store's inode numbers may collide). The caller resets the table; this tracker stops publishing to it.
    this.tracker.setClearance(null);
  }

  delete(name: string): Promise<void> {
    return this.serial(async () => {
      const info = this.find(name);
      if ((this.pins.get(name) ?? 0) > 0) {
        throw new FsError('EBUSY', `checkpoint ${name} is being read by \`strata swap prepare\` (strata status): delete it once the spare is ready, or \`strata swap discard\` first`);
      }
      const s = this.states.get(name);
      if (s) this.tracker.remove(s);
      this.infos = this.infos.filter((i) => i !== info);
      await this.saveRegistry();
      this.states.delete(name);
      await s?.close();
      await rm(info.dir, { recursive: true, force: true });
      if (!this.tracker.active) await this.switcher?.tracking(false);
      this.log.info({ checkpoint: name }, 'checkpoint deleted');
    });
  }

  diff(name: string, paths: string[]): Promise<DiffReport> {
    return this.serial(async () => diffCheckpoint(this.valid(name), await this.rootIno(), paths, this.store.dir));
  }

  rollback(name: string, areas: Area[], dryRun: boolean, observer: RollbackObserver | null): Promise<RollbackReport> {
    return this.serial(async () => {
      const s = this.valid(name);
      await stat(join(s.info.dir, 'log')).catch(() => { throw new FsError('ENOENT', `copy store of checkpoint ${name} is gone (${s.info.dir})`); });
      const t0 = process.hrtime.bigint();
      const report = await new Rollback(s, this.fs, await this.rootIno(), observer, dryRun, this.store.dir).run(areas);
      report.elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      this.log.info({ checkpoint: name, areas: report.areas, dryRun, bytesCopied: report.bytesCopied, changes: report.changed.length }, dryRun ? 'rollback planned' : 'rolled back');
      return report;
    });
  }

  private closed = false;

  /** Closes every log (once). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.states.values()) await s.close();
  }

  private find(name: string): CheckpointInfo {
    const info = this.infos.find((i) => i.name === name);
    if (!info) throw new FsError('ENOENT', `no checkpoint named ${name}`);
    return info;
  }

  private valid(name: string): CheckpointState {
    const info = this.find(name);
    const s = this.states.get(name);
    if (info.status !== 'valid' || !s) throw new FsError('EINVAL', `checkpoint ${name} is invalid (${info.reason ?? 'unknown'})`);
    return s;
  }

  private async rootIno(): Promise<bigint> {
    return (await this.store.dir.lstat('.')).ino;
  }

  private async markInvalid(s: CheckpointState, reason: string): Promise<void> {
    s.info.status = 'invalid';
    s.info.reason = reason;
    s.info.invalidAt = new Date().toISOString();
    try {
      await this.saveRegistry();
    } catch (err) {
      s.info.status = 'valid';
      delete s.info.reason;
      delete s.info.invalidAt;
      throw err;
    }
    // The tracker drops it right after this returns.
    setImmediate(() => { if (!this.tracker.active) void this.switcher?.tracking(false); });
  }

  private async saveRegistry(): Promise<void> {
    await writeFileDurably(join(this.store.privateDir, REGISTRY), JSON.stringify({ checkpoints: this.infos }, null, 2) + '\n');
    // The rename must be durable too: a checkpoint that lost saves must never come back valid.
    await fsyncDir(this.store.privateDir);
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.queue.then(f, f);
    this.queue = next.catch(() => {});
    return next;
  }
}

function defaultName(): string {
  return `ck-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`;
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await new Promise<number>((res, rej) => fs.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, (e, f) => (e ? rej(e) : res(f))));
  try {
    await new Promise<void>((res, rej) => fs.fsync(fd, (e) => (e ? rej(e) : res())));
  } finally {
    fs.close(fd, () => {});
  }
}
