// The local side of a tree comparison (tree-diff.ts, reconcile.ts): one
// directory's entries with their bigint stats, an object's xattrs as the
// archive keeps them, attribute comparison, and a bounded look-ahead for
// fetching directory images. Read-only: nothing here changes the store.
import type { ScannedStat } from '../native/index.js';
import { childRel, type StoreDir } from '../store/store-dir.js';
import { ID_XATTR, isPrivateXattr } from '../store/object-ids.js';
import { isObjectId } from '../protocol/records.js';
import { RESERVED_NAME } from '../store/local-store.js';
import type { Attrs, Time } from '../protocol/records.js';

// The object types and mode rule live with the records (src/protocol/records.ts): restore uses them too.
import { typeOfMode, type ObjectType } from '../protocol/records.js';
export { S_IFMT, typeOfMode, type ObjectType } from '../protocol/records.js';

/** An object's lstat: the fields of Node's BigIntStats a comparison uses (a BigIntStats is one). */
export type LocalStat = ScannedStat;

/** One entry of a local directory. */
export interface LocalEntry {
  name: string;
  /** The store-relative path ('.' is the root), for calls through the walk's StoreDir. */
  rel: string;
  st: LocalStat;
  type: ObjectType;
  /**
   * Every extended attribute, strata's own included, read with the listing
   * (listLocalDir with `withXattrs`); undefined when not read then.
   */
  xattrs?: readonly [string, Buffer][];
}

/**
 * The entries of the local directory at `rel` (relative to `dir`, so a deep
 * tree is never lengthened by the store's own path), sorted by name, without
 * the store's private directory when `isRoot`, with their lstat and, when
 * `withXattrs`, their extended attributes: one native call per directory
 * (scanDir), not a few thread-pool trips per entry. An entry that vanished
 * between readdir and lstat is left out (the precondition is a quiet store;
 * this only keeps a stray temp file from failing a verify).
 */
export async function listLocalDir(dir: StoreDir, rel: string, isRoot: boolean, withXattrs = false): Promise<LocalEntry[]> {
  const out: LocalEntry[] = [];
  for (const e of await dir.scanDir(rel, withXattrs)) {
    if (isRoot && e.name === RESERVED_NAME) continue;
    out.push({ name: e.name, rel: childRel(rel, e.name), st: e.st, type: typeOfMode(e.st.mode), ...(withXattrs ? { xattrs: e.xattrs } : {}) });
  }
  return out.sort((a, b) => compareNames(a.name, b.name));
}

/** The object id among an entry's listed xattrs: null when it has none (or none valid), undefined when they were not read. */
export function listedObjectId(e: LocalEntry): string | null | undefined {
  if (e.xattrs === undefined) return undefined;
  const v = e.xattrs.find(([n]) => n === ID_XATTR)?.[1].toString('latin1');
  return v !== undefined && isObjectId(v) ? v : null;
}

/** The entry's extended attributes except strata's own, as localXattrs gives them: from the listing when read with it. */
export async function entryXattrs(dir: StoreDir, e: LocalEntry): Promise<{ [name: string]: string }> {
  if (e.xattrs === undefined) return localXattrs(dir, e.rel);
  const out: { [name: string]: string } = {};
  for (const [name, value] of [...e.xattrs].filter(([n]) => !isPrivateXattr(n)).sort(([a], [b]) => compareNames(a, b))) {
    out[name] = value.toString('base64');
  }
  return out;
}

/** One order for names on both sides (code units; only needs to be total and stable). */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The object's extended attributes except strata's own, values base64, as in an EntryImage. */
export async function localXattrs(dir: StoreDir, rel: string): Promise<{ [name: string]: string }> {
  const out: { [name: string]: string } = {};
  let names: string[];
  try {
    names = await dir.listxattr(rel);
  } catch (err) {
    // Filesystems or object types without xattr support have none.
    if ((err as { code?: string }).code === 'ENOTSUP') return out;
    throw err;
  }
  for (const name of names.filter((n) => !isPrivateXattr(n)).sort(compareNames)) {
    try {
      out[name] = (await dir.getxattr(rel, name)).toString('base64');
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENODATA') throw err;
    }
  }
  return out;
}

/**
 * Names whose value differs between two xattr maps (present on one side only
 * included). `held`: names the archive holds that this store cannot
 * (store/held-xattrs.ts): one the store lacks is no difference.
 */
export function xattrDifferences(
  local: { readonly [name: string]: string },
  archive: { readonly [name: string]: string },
  held?: ReadonlySet<string>,
): { local: { [name: string]: string | null }; archive: { [name: string]: string | null } } | null {
  const l: { [name: string]: string | null } = {};
  const a: { [name: string]: string | null } = {};
  let any = false;
  for (const name of new Set([...Object.keys(local), ...Object.keys(archive).filter((n) => !isPrivateXattr(n))])) {
    const lv = local[name] ?? null;
    const av = archive[name] ?? null;
    if (lv === null && held?.has(name) === true) continue;
    if (lv !== av) {
      l[name] = lv;
      a[name] = av;
      any = true;
    }
  }
  return any ? { local: l, archive: a } : null;
}

export async function localTarget(dir: StoreDir, rel: string): Promise<string> {
  return dir.readlink(rel);
}

export function sameTime(a: Time, b: Time): boolean {
  return a[0] === b[0] && a[1] === b[1];
}

export function formatTime(t: Time): string {
  return `${t[0]}.${String(t[1]).padStart(9, '0')}`;
}

export function formatMode(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

/** An attribute that the archive keeps and a comparison looks at (atime never: reads change it). */
export type AttrKind = 'mode' | 'uid' | 'gid' | 'size' | 'mtime' | 'rdev';

/**
 * The attributes of `type` that differ. Size only counts for regular files
 * (a directory's or a symlink's size is the filesystem's business; a symlink's
 * target is compared on its own), rdev only for devices. The type bits of the
 * mode are the caller's 'type' comparison.
 */
export function attrDifferences(type: ObjectType, local: Attrs, archive: Attrs): { kind: AttrKind; local: string | number; archive: string | number }[] {
  const out: { kind: AttrKind; local: string | number; archive: string | number }[] = [];
  if ((local.mode & 0o7777) !== (archive.mode & 0o7777)) out.push({ kind: 'mode', local: formatMode(local.mode), archive: formatMode(archive.mode) });
  if (local.uid !== archive.uid) out.push({ kind: 'uid', local: local.uid, archive: archive.uid });
  if (local.gid !== archive.gid) out.push({ kind: 'gid', local: local.gid, archive: archive.gid });
  if (type === 'file' && local.size !== archive.size) out.push({ kind: 'size', local: local.size, archive: archive.size });
  if (!sameTime(local.mtime, archive.mtime)) out.push({ kind: 'mtime', local: formatTime(local.mtime), archive: formatTime(archive.mtime) });
  if ((type === 'chardev' || type === 'blockdev') && local.rdev !== archive.rdev) out.push({ kind: 'rdev', local: local.rdev, archive: archive.rdev });
  return out;
}

/**
 * Runs `fetch` for the items of a list a few ahead of the one being used, so
 * a walk that visits subdirectories in order does not wait one round trip per
 * directory, while at most `ahead` results are held beyond the current one.
 */
export class Lookahead<T, R> {
  private readonly started = new Map<number, Promise<R>>();

  constructor(
    private readonly items: readonly T[],
    private readonly fetch: (item: T) => Promise<R> | null,
    private readonly ahead: number,
  ) {}

  /** The result for item `i` (null when `fetch` declined it), starting the next few fetches. */
  async get(i: number): Promise<R | null> {
    for (let j = i; j < Math.min(this.items.length, i + 1 + this.ahead); j++) this.start(j);
    const p = this.started.get(i);
    this.started.delete(i);
    return p === undefined ? null : p;
  }

  private start(j: number): void {
    if (this.started.has(j) || j < 0) return;
    const p = this.fetch(this.items[j]!);
    if (p === null) return;
    // A fetch that fails before its turn is reported when its turn comes.
    p.catch(() => {});
    this.started.set(j, p);
  }
}
