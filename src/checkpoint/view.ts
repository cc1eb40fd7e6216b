// Reading a checkpoint's T0 tree next to the live one: the T0 listing of a
// directory (saved, or the live one when it never changed), where a T0 object
// lives now, and what a T0 path named. Used by diff and rollback; it never
// changes anything.
import type { BigIntStats } from 'node:fs';
import * as native from '../native/index.js';
import type { StoreDir } from '../store/store-dir.js';
import { LocalStore, RESERVED_NAME } from '../store/local-store.js';
import { kindOf, type AttrRec, type CheckpointState, type ListEntry, type ObjectKind } from './state.js';

/** A T0 directory entry. */
export interface T0Entry {
  key: string;
  dtype: number;
}

export function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Is `path` the area `root` or under it? */
export function within(path: string, root: string): boolean {
  return root === '/' || path === root || path.startsWith(`${root}/`);
}

/** The live object at namespace path `path` of the store `dir` (null: nothing there). */
export async function lstatPath(dir: StoreDir, path: string): Promise<BigIntStats | null> {
  try {
    return await dir.lstat(LocalStore.relative(path));
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** The live entries of the directory at namespace path `path` of the store `dir` (the private directory left out). */
export async function liveEntries(dir: StoreDir, path: string): Promise<native.DirEntry[]> {
  const rel = LocalStore.relative(path);
  try {
    const all = await dir.readdirIno(rel);
    return rel === '.' ? all.filter((e) => e.name !== RESERVED_NAME) : all;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}

export const DT_DIR = native.DirentType.DIR;

export function kindOfDtype(dtype: number): ObjectKind {
  if (dtype === native.DirentType.DIR) return 'dir';
  if (dtype === native.DirentType.REG) return 'file';
  if (dtype === native.DirentType.LNK) return 'symlink';
  return 'other';
}

export class T0View {
  /** canonical key -> live paths, and path -> key (the whole live tree, built on first need, then kept up to date by the rollback). */
  private byKey: Map<string, Set<string>> | null = null;
  private byPath = new Map<string, string>();
  readonly rootKey: string;

  /** `dir`: the live store's objects. */
  constructor(readonly s: CheckpointState, rootIno: bigint, readonly dir: StoreDir) {
    this.rootKey = s.canon(rootIno) ?? String(rootIno);
  }

  noteAdded(path: string, key: string | null): void {
    if (!this.byKey || key === null) return;
    this.byPath.set(path, key);
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(path);
  }

  noteRemoved(path: string): void {
    const key = this.byPath.get(path);
    if (key === undefined) return;
    this.byPath.delete(path);
    this.byKey?.get(key)?.delete(path);
  }

  noteRenamed(from: string, to: string): void {
    if (!this.byKey) return;
    const moved: [string, string][] = [];
    for (const [p, k] of this.byPath) if (p === from || p.startsWith(`${from}/`)) moved.push([p, k]);
    for (const [p] of moved) this.noteRemoved(p);
    for (const [p, k] of moved) this.noteAdded(to + p.slice(from.length), k);
  }

  attrs(key: string): AttrRec | undefined {
    return this.s.attrs.get(key);
  }

  /** Key of the T0 object the live object `st` is (null: created after T0). */
  keyOf(st: BigIntStats): string | null {
    return this.s.canon(st.ino);
  }

  /** Live paths of T0 object `key` (a guess first: `hint`, then the whole live tree). */
  async locate(key: string, hint?: string): Promise<string[]> {
    if (hint !== undefined) {
      const st = await lstatPath(this.dir, hint);
      if (st && this.keyOf(st) === key) return [hint];
    }
    await this.liveIndex();
    const out: string[] = [];
    // Checked again: programs keep changing the tree while a rollback runs.
    for (const p of this.byKey!.get(key) ?? []) {
      const st = await lstatPath(this.dir, p);
      if (st && this.keyOf(st) === key) out.push(p);
    }
    return out;
  }

  /** The index being built (concurrent callers wait for the same walk: a swap prepare locates objects in parallel). */
  private indexing: Promise<void> | null = null;

  private liveIndex(): Promise<void> {
    this.indexing ??= (async () => {
      this.byKey = new Map();
      this.byPath = new Map();
      this.noteAdded('/', this.rootKey);
      const walk = async (dir: string): Promise<void> => {
        for (const e of await liveEntries(this.dir, dir)) {
          const p = joinPath(dir, e.name);
          this.noteAdded(p, this.s.canon(e.ino));
          if (e.type === DT_DIR) await walk(p);
        }
      };
      await walk('/');
    })();
    return this.indexing;
  }

  /** The T0 listing of directory `key`; `livePath` is where it is now, when known. Null: not a directory at T0. */
  async listing(key: string, livePath?: string): Promise<ListEntry[] | null> {
    const saved = this.s.listings.get(key);
    if (saved) return saved;
    const rec = this.s.attrs.get(key);
    if (rec && rec.kind !== 'dir') return null;
    // Never changed: its entries are the live ones (the original object, not a rollback's copy of it).
    const at = await this.whereIs(key, livePath);
    if (at === undefined) return null;
    const out: ListEntry[] = [];
    for (const e of await liveEntries(this.dir, at)) {
      const k = this.s.canon(e.ino);
      if (k !== null) out.push([e.name, k, e.type]);
    }
    return out;
  }

  /**
   * Where directory `key` is now: `hint` when it is there (every directory on
   * the way to `hint` must be a real one already), else found in the live tree.
   */
  async whereIs(key: string, hint?: string): Promise<string | undefined> {
    if (hint !== undefined && (await this.isOriginal(hint, key))) return hint;
    const locs = await this.locate(key);
    for (const p of locs) if (await this.isOriginal(p, key)) return p;
    return locs[0];
  }

  private async isOriginal(path: string, key: string): Promise<boolean> {
    const st = await lstatPath(this.dir, path);
    return st !== null && st.isDirectory() && this.keyOf(st) === key;
  }

  /** What the T0 path named (null: nothing). */
  async resolve(path: string): Promise<T0Entry | null> {
    if (path === '/') return { key: this.rootKey, dtype: DT_DIR };
    const parts = path.split('/').filter((p) => p.length > 0);
    let cur: T0Entry = { key: this.rootKey, dtype: DT_DIR };
    let at = '/';
    for (const name of parts) {
      if (cur.dtype !== DT_DIR) return null;
      // Children are looked for under where the directory really is (never through a symbolic link).
      at = (await this.whereIs(cur.key, at)) ?? at;
      const list = await this.listing(cur.key, at);
      const e = list?.find((x) => x[0] === name);
      if (!e) return null;
      cur = { key: e[1], dtype: e[2] };
      at = joinPath(at, name);
    }
    return cur;
  }

  /** The T0 size of file `key` (its live size when it never changed). */
  async t0Size(key: string, livePath: string): Promise<number> {
    const rec = this.s.attrs.get(key);
    if (rec) return rec.size;
    const st = await lstatPath(this.dir, livePath);
    return st ? Number(st.size) : 0;
  }

  /** Kind at T0. */
  kind(e: T0Entry): ObjectKind {
    const rec = this.s.attrs.get(e.key);
    return rec ? rec.kind : kindOfDtype(e.dtype);
  }
}

export { kindOf };
