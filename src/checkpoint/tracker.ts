// Changed-block tracking for every checkpoint of a store: the core's
// ChangeGuard. Before each change, each valid checkpoint saves what the change
// would destroy of its T0 copy (attributes, a directory's listing, the old
// contents of the blocks about to be overwritten or cut, a file that may lose
// its last name) and waits until that is durable; only then does the core
// apply the change. A checkpoint that cannot save (its copy store is full or
// gone) is marked invalid, durably, and the change goes ahead: live writes
// never fail because of a checkpoint.
import { nameBytes, nameFromBytes } from '../protocol/names.js';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { ChangeGuard, GuardTarget } from '../ports/change-guard.js';
import type { StoreDir } from '../store/store-dir.js';
import type { Logger } from '../log/logger.js';
import { BLOCK_SIZE, SAVE_AHEAD, type CheckpointState, type LiveObject } from './state.js';

/**
 * The FUSE thread's table of blocks it may overwrite itself (the adapter's
 * `clearance`): per store inode, blocks whose old contents every checkpoint
 * has saved durably.
 */
export interface BlockClearance {
  /** Nothing is clear any more; blocks of `blockSize` bytes. */
  reset(blockSize: number): void;
  /** Blocks [first, first + count) of `ino`, and every block from `allFrom` on (-1: unknown), are clear. */
  mark(ino: bigint, allFrom: number, first: number, count: number): boolean;
  /** Nothing of `ino` is clear any more. */
  forget(ino: bigint): void;
}

export class Tracker implements ChangeGuard {
  private states: CheckpointState[] = [];
  private clearance: BlockClearance | null = null;
  /** Checkpoints being added: nothing is published meanwhile (their saves have not begun). */
  private adding = 0;

  /**
   * `root`: the store root (absolute), `dir` its objects (they stay this
   * store's through a swap). `invalidate` makes a checkpoint's
   * invalid state durable (it throws when it cannot: the change then fails).
   */
  constructor(
    private readonly root: string,
    private readonly dir: StoreDir,
    private readonly log: Logger,
    private readonly invalidate: (state: CheckpointState, reason: string) => Promise<void>,
  ) {}

  get active(): boolean {
    return this.states.length > 0;
  }

  /** The checkpoints being tracked. */
  get tracked(): readonly CheckpointState[] {
    return this.states;
  }

  add(state: CheckpointState): void {
    state.onIdent = (ino) => this.clearance?.forget(BigInt(ino));
    this.states.push(state);
  }

  /**
   * The FUSE thread's clearance table: from now on, the blocks every
   * checkpoint has saved are published to it after each guarded write.
   */
  setClearance(c: BlockClearance | null): void {
    this.clearance = c;
    c?.reset(BLOCK_SIZE);
  }

  /**
   * A checkpoint is about to be added: nothing is clear for it, so the table
   * is emptied and nothing is published until `endAdd` (after `add`, or on
   * failure). The caller then waits until no direct write that saw the old
   * table is still running (the adapter's trackingChanged).
   */
  beginAdd(): void {
    this.adding++;
    this.clearance?.reset(BLOCK_SIZE);
  }

  endAdd(): void {
    this.adding--;
  }

  remove(state: CheckpointState): void {
    this.states = this.states.filter((s) => s !== state);
  }

  async attrs(target: GuardTarget): Promise<void> {
    const obj = await this.resolve(target);
    if (obj) await this.each(async (s) => { const k = s.canon(obj.st.ino); if (k !== null) await s.ensureAttrs(k, obj); });
  }

  async data(target: GuardTarget, offset: number, length: number): Promise<void> {
    const obj = await this.resolve(target);
    if (obj) {
      const first = Math.floor(offset / BLOCK_SIZE);
      const last = Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE);
      await this.each(async (s) => {
        const k = s.canon(obj.st.ino);
        if (k === null) return;
        await s.ensureAttrs(k, obj);
        await s.ensureBlocks(k, obj, offset, length, () => this.publish(obj.st.ino, last + 1, last + 1 + 2 * SAVE_AHEAD));
      });
      // Later writes to these blocks (and to those saved ahead) need no save: the FUSE thread may answer them.
      if (length > 0) this.publish(obj.st.ino, first, last + 1 + SAVE_AHEAD);
    }
  }

  /**
   * Publishes to the FUSE thread which of blocks [first, end) of live inode
   * `ino` every checkpoint has saved durably (a block's entry in a state's map
   * is only made once its save is durable), and from which block on none
   * needs saving (past every checkpoint's T0 size; 0 for a file created after
   * every checkpoint). Synchronous: the set of checkpoints cannot change
   * between the look and the mark.
   */
  private publish(ino: bigint, first: number, end: number): void {
    const c = this.clearance;
    if (c === null || this.adding > 0 || this.states.length === 0) return;
    let allFrom = 0;
    const keyed: [CheckpointState, string][] = [];
    for (const s of this.states) {
      const k = s.canon(ino);
      if (k === null) continue;
      const rec = s.attrs.get(k);
      if (rec === undefined || rec.kind !== 'file') return;
      allFrom = Math.max(allFrom, Math.ceil(rec.size / BLOCK_SIZE));
      keyed.push([s, k]);
    }
    const stop = Math.min(end, allFrom);
    let run = -1;
    let marked = false;
    for (let b = first; b <= stop; b++) {
      const clear = b < stop && keyed.every(([s, k]) => s.blocks.get(k)?.has(b) === true && !s.isTripwire(k, b));
      if (clear && run < 0) run = b;
      if (!clear && run >= 0) {
        c.mark(ino, allFrom, run, b - run);
        marked = true;
        run = -1;
      }
    }
    if (!marked) c.mark(ino, allFrom, 0, 0);
  }

  async size(target: GuardTarget, size: number): Promise<void> {
    const obj = await this.resolve(target);
    if (obj) {
      await this.each(async (s) => {
        const k = s.canon(obj.st.ino);
        if (k === null) return;
        const rec = await s.ensureAttrs(k, obj);
        // Everything past the new end goes, and the tail of the block it ends in.
        if (size < rec.size) await s.ensureBlocks(k, obj, size, rec.size - size);
      });
    }
  }

  async names(parentRel: string, removes?: string): Promise<void> {
    if (!this.active) return;
    const parent = await this.lstatObject(parentRel);
    const gone = removes !== undefined ? await this.lstatObject(removes) : null;
    await this.each(async (s) => {
      if (parent) {
        const k = s.canon(parent.st.ino);
        if (k !== null) {
          await s.ensureAttrs(k, parent);
          await s.ensureListing(k, this.dir, parentRel);
        }
      }
      // A directory, or a file losing its last name: it may end here, so all of it is saved.
      if (gone && (gone.st.isDirectory() || gone.st.nlink <= 1n)) {
        const k = s.canon(gone.st.ino);
        if (k !== null) await s.ensureWhole(k, gone);
      }
    });
  }

  async created(rel: string): Promise<void> {
    if (!this.active) return;
    let ino: string;
    try {
      ino = String((await this.dir.lstat(rel)).ino);
    } catch {
      return;
    }
    await this.each(async (s) => {
      // A number that named a T0 object (now gone) or a recreated one: the new object must never be taken for it.
      const known = s.ident.get(ino);
      if (known === null) return;
      const reused = known !== undefined || s.attrs.has(ino) || s.listings.has(ino);
      await s.setIdent(ino, null, reused);
    });
  }

  /** Runs `f` for every valid checkpoint; one that fails is invalidated (and the change goes on). */
  private async each(f: (s: CheckpointState) => Promise<void>): Promise<void> {
    const states = this.states;
    if (states.length === 1) {
      await this.guarded(states[0]!, f);
      return;
    }
    await Promise.all(states.map((s) => this.guarded(s, f)));
  }

  private async guarded(s: CheckpointState, f: (s: CheckpointState) => Promise<void>): Promise<void> {
    try {
      await f(s);
    } catch (err) {
      if (!this.states.includes(s)) return;
      const e = err as NodeJS.ErrnoException;
      const reason = e.code === 'ENOSPC' || e.code === 'EDQUOT'
        ? `copy store full (${e.code}): the checkpoint no longer holds the tree as it was`
        : `cannot save into the copy store: ${e.code ?? ''} ${e.message}`.trim();
      // Durably invalid first: until the registry says so, no change may go ahead untracked
      // (if it cannot be written, the change fails, and the next one tries again).
      await this.invalidate(s, reason);
      this.remove(s);
      this.log.error({ checkpoint: s.info.name, err: e.message, code: e.code }, `checkpoint invalidated: ${reason}`);
    }
  }

  /** The object an op changes (null: nothing is tracked, or it has no name left: not part of any T0 tree that still needs saving). */
  private async resolve(target: GuardTarget): Promise<LiveObject | null> {
    if (!this.active) return null;
    if ('rel' in target) return this.lstatObject(target.rel);
    const st = await new Promise<fs.BigIntStats>((resolve, reject) => fs.fstat(target.fd, { bigint: true }, (err, s) => (err ? reject(err) : resolve(s))));
    // No name left: it was saved whole when it lost its last name (or was not in the tree at T0).
    if (st.nlink === 0n) return null;
    // Its path is read only when its attributes are saved (once per object), not on every write.
    // Absolute: after a swap (src/swap) the files opened before write the old store, which is
    // no longer the daemon's store, and this store's tracker still guards them.
    // As bytes: a name that is not UTF-8 must not turn into another (src/protocol/names.ts).
    const findRel = async (): Promise<string | null> => {
      try {
        const p = await fsp.readlink(`/proc/self/fd/${target.fd}`, { encoding: 'buffer' });
        const root = nameBytes(this.root);
        if (p.equals(root)) return this.root;
        if (!(p.length > root.length && p[root.length] === 0x2f && p.subarray(0, root.length).equals(root))) return null;
        return (await fsp.lstat(p, { bigint: true }).then((l) => l.ino === st.ino, () => false)) ? nameFromBytes(p) : null;
      } catch {
        return null;
      }
    };
    return { dir: this.dir, rel: null, st, fd: target.fd, findRel };
  }

  private async lstatObject(rel: string): Promise<LiveObject | null> {
    try {
      return { dir: this.dir, rel, st: await this.dir.lstat(rel) };
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT' || (err as { code?: string }).code === 'ENOTDIR') return null;
      throw err;
    }
  }
}
