// Random trees for the model-based recovery test (test/integration/recover-model):
// a small seeded PRNG, a tree generator (directories several levels deep,
// hard-link groups whose names are spread over tiers, xattrs, sparse and
// large files, symlinks, fifos, odd names, modes, owners, times in ns), the
// code that builds such a tree in any directory (the same steps on a strata
// mount and on a native directory), and an exact picture of a live tree
// (names, types, modes, owners, sizes, mtimes in ns, symlink targets, xattrs,
// sha256 of every file, which names share an inode, link counts).
import { nameByteLength, nameBytes, nameFromBytes } from '../../src/protocol/names.js';
import * as fsp from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, posix } from 'node:path';
import { getxattr, listxattr, mknod, setxattr, utimens, type TimeSpec } from '../../src/native/index.js';
import { typeOfMode } from '../../src/protocol/records.js';
import { ID_XATTR } from '../../src/store/object-ids.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { ACL_ACCESS, ACL_DEFAULT, aclXattr } from './acl.js';

// ---- a seeded PRNG (sfc32) ----------------------------------------------------------------

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.next();
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    this.a >>>= 0; this.b >>>= 0; this.c >>>= 0; this.d >>>= 0;
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.next() / 0x1_0000_0000) * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[this.int(0, items.length - 1)]!;
  }

  /** One of `choices` by weight. */
  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    const total = choices.reduce((n, [, w]) => n + w, 0);
    let x = (this.next() / 0x1_0000_0000) * total;
    for (const [v, w] of choices) {
      if ((x -= w) < 0) return v;
    }
    return choices[choices.length - 1]![0];
  }

  /** A fresh seed for a sub-stream. */
  seed(): number {
    return this.next();
  }
}

/** `length` bytes, a pure function of (seed, fill). */
export function fillBytes(seed: number, length: number, fill: Fill): Buffer {
  const buf = Buffer.alloc(length);
  if (fill === 'zero') return buf;
  if (fill === 'text') {
    const line = Buffer.from(`line ${seed} of a text file, with ünïcödé and tabs\t.\n`);
    for (let o = 0; o < length; o += line.length) line.copy(buf, o, 0, Math.min(line.length, length - o));
    return buf;
  }
  const r = new Rng(seed);
  let o = 0;
  for (; o + 4 <= length; o += 4) buf.writeUInt32LE(r.next(), o);
  for (; o < length; o++) buf[o] = r.next() & 0xff;
  return buf;
}

export type Fill = 'random' | 'zero' | 'text';

/** A file's content: runs of bytes at offsets, holes elsewhere, then the size. */
export interface Content {
  size: number;
  runs: { offset: number; length: number; seed: number; fill: Fill }[];
}

// ---- trees ------------------------------------------------------------------------------------

export type BuildStep =
  | { k: 'mkdir'; path: string }
  | { k: 'file'; path: string; content: Content }
  | { k: 'symlink'; path: string; target: string }
  | { k: 'fifo'; path: string }
  | { k: 'link'; from: string; to: string }
  | { k: 'xattr'; path: string; name: string; value: string /* base64 */ }
  /** Extended attributes that fill the object's xattr space on a strata store (fillingXattrs). */
  | { k: 'fill'; path: string; kind: 'dir' | 'file' }
  | { k: 'own'; path: string; uid: number; gid: number }
  | { k: 'mode'; path: string; mode: number }
  | { k: 'times'; path: string; atime: { sec: number; nsec: number }; mtime: { sec: number; nsec: number } };

/**
 * A name's bytes, for Node's fs (which would turn the bytes that are not UTF-8
 * into U+FFFD): strata's mapping, src/protocol/names.ts.
 */
export function byteName(path: string): Buffer {
  return nameBytes(path);
}

/** readdir as strata's strings (names.ts), byte for byte. */
export async function readdirNames(path: string): Promise<string[]> {
  return (await fsp.readdir(byteName(path), { encoding: 'buffer' })).map((b) => nameFromBytes(b));
}

/** readlink as strata's string (names.ts), byte for byte. */
export async function readlinkName(path: string): Promise<string> {
  return nameFromBytes(await fsp.readlink(byteName(path), { encoding: 'buffer' }));
}

/**
 * Names a program may meet: spaces, unicode, leading dashes, quotes, dots, shell
 * characters, and bytes that are not UTF-8 (a Latin-1 name, lone 0xff/0xfe, the
 * UTF-8 of U+F780, which strata's mapping takes as three bytes), written as
 * strata holds them (src/protocol/names.ts: U+F700 + the byte).
 */
export const ODD_NAMES = [
  'plain', 'with space', ' leading space', 'trailing space ', 'café', 'naïve ünïcödé', '日本語のファイル', 'emoji-🙂',
  '-rf', '--help', '-', '.hidden', '..dots', 'a.b.c', "it's", 'quote"d', 'back\\slash', '$HOME', 'star*', 'q?', '#hash',
  'tab\there', 'percent%s', '[brackets]', 'semi;colon', 'x'.repeat(200), 'Ω≈ç√', 'UPPER', 'ümlaut-ß',
  'caf\uf7e9-latin1', '\uf7ff', '\uf7fe', 'bad-\uf7c3\uf728', 'esc-\uf7ef\uf79e\uf780', '\uf7ff'.repeat(255),
] as const;

export const FILE_MODES = [0o644, 0o600, 0o755, 0o640, 0o444, 0o000, 0o4755, 0o2750, 0o1644, 0o664] as const;
export const DIR_MODES = [0o755, 0o700, 0o775, 0o1777, 0o2775, 0o555, 0o711] as const;
export const OWNERS = [[0, 0], [1000, 1000], [1234, 5678], [0, 5678]] as const;
export const XATTR_NAMES = ['user.a', 'user.color', 'user.ünï', 'user.long.name.with.dots', 'user.empty', 'user.latin1-\uf7e9'] as const;

/** Extended attributes a picture shows: users', and POSIX ACLs. */
export function pictured(name: string): boolean {
  return name.startsWith('user.') || name.startsWith('system.posix_acl_');
}

/** A random valid POSIX ACL (the xattr value): base entries, sometimes named users and groups with a mask. */
export function randomAcl(rng: Rng): Buffer {
  const perm = (): number => rng.int(0, 7);
  const named = rng.chance(0.7);
  return aclXattr({
    user: perm(), group: perm(), other: perm(),
    ...(named ? { users: rng.chance(0.7) ? [[1000, perm()]] : [], groups: rng.chance(0.5) ? [[5678, perm()]] : [], mask: perm() } : {}),
  });
}

export const BLOCK = 64 * 1024;

/** An explicit time: between 2000 and 2017, with nanoseconds (sometimes 0). */
export function randomTime(rng: Rng): { sec: number; nsec: number } {
  // Mostly this century; sometimes before 1970 (negative seconds: a time's
  // nanoseconds stay in [0, 1e9) and its seconds round down) or past 2038.
  const sec = rng.weighted([['now', 8], ['before-1970', 1], ['after-2038', 1]] as const);
  return {
    sec: sec === 'now' ? rng.int(946_684_800, 1_500_000_000) : sec === 'before-1970' ? rng.int(-2_147_483_648, -1) : rng.int(2_147_483_648, 16_000_000_000),
    nsec: rng.chance(0.15) ? 0 : rng.int(0, 999_999_999),
  };
}

export function randomContent(rng: Rng, kind?: 'small' | 'medium' | 'large' | 'sparse' | 'empty'): Content {
  const k = kind ?? rng.weighted([['small', 50], ['medium', 22], ['large', 8], ['sparse', 12], ['empty', 8]] as const);
  const fill = (): Fill => rng.weighted([['random', 6], ['text', 2], ['zero', 1]] as const);
  switch (k) {
    case 'empty': return { size: 0, runs: [] };
    case 'small': {
      const size = rng.int(1, 3000);
      return { size, runs: [{ offset: 0, length: size, seed: rng.seed(), fill: rng.chance(0.5) ? 'text' : 'random' }] };
    }
    case 'medium': {
      // Several blocks, sometimes a block of zeros in the middle (written, not a hole).
      const size = rng.int(BLOCK + 1, 6 * BLOCK + 777);
      if (rng.chance(0.3)) {
        const z = rng.int(1, Math.floor(size / BLOCK) - 1 || 1) * BLOCK;
        return {
          size, runs: [
            { offset: 0, length: z, seed: rng.seed(), fill: 'random' },
            { offset: z, length: Math.min(BLOCK, size - z), seed: 0, fill: 'zero' },
            ...(z + BLOCK < size ? [{ offset: z + BLOCK, length: size - z - BLOCK, seed: rng.seed(), fill: 'random' as Fill }] : []),
          ],
        };
      }
      return { size, runs: [{ offset: 0, length: size, seed: rng.seed(), fill: fill() }] };
    }
    case 'large': {
      // More than 1 MiB: reads fetch by range, the background restore in 4 MiB requests.
      const size = rng.int(1024 * 1024 + 1, 3 * 1024 * 1024 + 12345);
      return { size, runs: [{ offset: 0, length: size, seed: rng.seed(), fill: 'random' }] };
    }
    case 'sparse': {
      const size = rng.int(2 * BLOCK, 12 * 1024 * 1024);
      const runs: Content['runs'] = [];
      let at = rng.chance(0.5) ? 0 : rng.int(1, 3 * BLOCK);
      for (let i = rng.int(1, 3); i > 0 && at < size; i--) {
        const length = Math.min(size - at, rng.int(1, 2 * BLOCK + 100));
        runs.push({ offset: at, length, seed: rng.seed(), fill: 'random' });
        at += length + rng.int(BLOCK, 40 * BLOCK);
      }
      return { size, runs };
    }
  }
}

export interface TreeSpec {
  steps: BuildStep[];
  /** Directories by tier (root = tier 0). */
  dirsByTier: string[][];
  files: string[];
}

/**
 * A random tree: directories down to tier 5, files of every kind, 2-3
 * hard-link groups with names on different tiers and in other subtrees (one
 * group always spans tier 1 and tier 3 or deeper), symlinks, maybe a fifo,
 * xattrs, modes, owners and explicit times (ns) on everything.
 */
export function randomTree(rng: Rng): TreeSpec {
  const steps: BuildStep[] = [];
  const dirsByTier: string[][] = [[''], [], [], [], [], []];
  const files: string[] = [];
  const used = new Map<string, Set<string>>();
  const fresh = (dir: string, prefix: string): string => {
    let names = used.get(dir);
    if (names === undefined) used.set(dir, (names = new Set()));
    for (;;) {
      const base = rng.chance(0.45) ? rng.pick(ODD_NAMES) : `${prefix}${rng.int(0, 99)}`;
      const name = names.has(base) ? `${base}~${rng.int(0, 999)}` : base;
      if (names.has(name) || name === '.strata' || nameByteLength(name) > 255) continue;
      names.add(name);
      return dir === '' ? name : `${dir}/${name}`;
    }
  };
  let budget = rng.int(25, 55);
  const maxDirs = [0, rng.int(2, 4), 3, 3, 2, 1];
  const gen = (dir: string, tier: number): void => {
    const nfiles = tier === 0 ? rng.int(1, 3) : rng.int(0, 3);
    for (let i = 0; i < nfiles && budget > 0; i++, budget--) {
      const p = fresh(dir, 'f');
      steps.push({ k: 'file', path: p, content: randomContent(rng) });
      files.push(p);
    }
    if (tier >= 5) return;
    const ndirs = tier === 0 ? maxDirs[1]! : rng.int(tier <= 2 ? 1 : 0, maxDirs[tier + 1]!);
    for (let i = 0; i < ndirs && budget > 0; i++, budget--) {
      const p = fresh(dir, 'd');
      steps.push({ k: 'mkdir', path: p });
      dirsByTier[tier + 1]!.push(p);
      gen(p, tier + 1);
    }
  };
  gen('', 0);
  // At most three large files: they cost time on every full comparison.
  let large = 0;
  for (const s of steps) {
    if (s.k === 'file' && s.content.size > 1024 * 1024 && s.content.runs.length === 1 && s.content.runs[0]!.length === s.content.size) {
      if (++large > 3) s.content = randomContent(rng, 'small');
    }
  }
  // A file deep down if none is there, so that a hard-link group can reach it.
  const allDirs = dirsByTier.flat();
  const deepDirs = dirsByTier.slice(3).flat();
  if (deepDirs.length === 0) {
    let parent = dirsByTier[1]![0] ?? '';
    for (let tier = parent === '' ? 1 : 2; tier <= 3; tier++) {
      const p = fresh(parent, 'deep');
      steps.push({ k: 'mkdir', path: p });
      dirsByTier[tier]!.push(p);
      parent = p;
    }
    deepDirs.push(parent);
    allDirs.push(...dirsByTier.flat().filter((d) => !allDirs.includes(d)));
  }
  // Hard-link groups: the first spans a shallow and a deep tier, the others anywhere.
  const groups = rng.int(2, 3);
  for (let g = 0; g < groups; g++) {
    const shallow = files.filter((f) => tierOf(f) <= 2);
    const from = g === 0 && shallow.length > 0 ? rng.pick(shallow) : files.length > 0 ? rng.pick(files) : null;
    if (from === null) break;
    const extra = rng.int(1, 3);
    for (let i = 0; i < extra; i++) {
      const dir = g === 0 && i === 0 ? rng.pick(deepDirs) : rng.pick(allDirs);
      steps.push({ k: 'link', from, to: fresh(dir, 'ln') });
    }
  }
  // Symlinks (never followed by the test): relative, dangling, absolute, odd.
  for (let i = rng.int(1, 4); i > 0; i--) {
    const dir = rng.pick(allDirs);
    const target = rng.weighted([
      [files.length > 0 ? posix.relative(dir === '' ? '.' : dir, rng.pick(files)) || '.' : 'nowhere', 4],
      ['nowhere/at all', 1], ['/absolute/ünï path', 1], ['../'.repeat(rng.int(1, 4)) + 'up', 1], ['x'.repeat(rng.int(1, 300)), 1],
    ] as const);
    steps.push({ k: 'symlink', path: fresh(dir, 'sym'), target });
  }
  if (rng.chance(0.4)) steps.push({ k: 'fifo', path: fresh(rng.pick(allDirs), 'fifo') });
  const objects = steps.filter((s): s is BuildStep & { path: string } => s.k === 'mkdir' || s.k === 'file' || s.k === 'symlink' || s.k === 'fifo').map((s) => ({ path: s.path, k: s.k }));
  // xattrs (not on symlinks or fifos: user.* is not allowed there).
  for (const o of objects) {
    if (o.k === 'symlink' || o.k === 'fifo' || !rng.chance(0.3)) continue;
    for (let i = rng.int(1, 2); i > 0; i--) {
      const name = rng.pick(XATTR_NAMES);
      const value = name === 'user.empty' ? Buffer.alloc(0) : rng.chance(0.5) ? Buffer.from(`value ${rng.int(0, 1e6)} ✓`) : fillBytes(rng.seed(), rng.int(1, 200), 'random');
      steps.push({ k: 'xattr', path: o.path, name, value: value.toString('base64') });
    }
  }
  // POSIX ACLs (not on symlinks), before the modes (a chmod then moves the mask); default ACLs of directories set
  // after their entries exist, which a restore that creates those entries there must not let them inherit.
  for (const o of objects) {
    if (o.k === 'symlink' || !rng.chance(0.15)) continue;
    steps.push({ k: 'xattr', path: o.path, name: ACL_ACCESS, value: randomAcl(rng).toString('base64') });
  }
  for (const o of objects) {
    if (o.k !== 'mkdir' || !rng.chance(0.25)) continue;
    steps.push({ k: 'xattr', path: o.path, name: ACL_DEFAULT, value: randomAcl(rng).toString('base64') });
  }
  // Owners and modes (after every object exists: no set-group-ID inheritance at build time).
  for (const o of objects) {
    if (rng.chance(0.35)) {
      const [uid, gid] = rng.pick(OWNERS);
      steps.push({ k: 'own', path: o.path, uid, gid });
    }
    if (o.k === 'file') steps.push({ k: 'mode', path: o.path, mode: rng.pick(FILE_MODES) });
    if (o.k === 'mkdir') steps.push({ k: 'mode', path: o.path, mode: rng.pick(DIR_MODES) });
    if (o.k === 'fifo') steps.push({ k: 'mode', path: o.path, mode: rng.pick([0o644, 0o600, 0o666]) });
  }
  steps.push({ k: 'own', path: '', uid: 0, gid: 0 }, { k: 'mode', path: '', mode: 0o755 });
  // Times last: files and symlinks, then directories from the deepest up, the root last.
  for (const o of objects) if (o.k !== 'mkdir') steps.push({ k: 'times', path: o.path, atime: randomTime(rng), mtime: randomTime(rng) });
  for (let tier = 5; tier >= 0; tier--) {
    for (const d of dirsByTier[tier]!) steps.push({ k: 'times', path: d, atime: randomTime(rng), mtime: randomTime(rng) });
  }
  // Last (older seeds keep their steps): sometimes an object or two whose xattrs fill ext4's space,
  // as a program may leave them: the restore's own marks must make room (store/restore-marks.ts).
  if (rng.chance(0.35)) {
    const withXattrs = new Set(steps.filter((st) => st.k === 'xattr').map((st) => (st as { path: string }).path));
    const candidates = objects.filter((o) => (o.k === 'mkdir' || o.k === 'file') && !withXattrs.has(o.path));
    for (let i = rng.int(1, 2); i > 0 && candidates.length > 0; i--) {
      const o = candidates.splice(rng.int(0, candidates.length - 1), 1)[0]!;
      steps.push({ k: 'fill', path: o.path, kind: o.k === 'mkdir' ? 'dir' : 'file' });
    }
  }
  return { steps, dirsByTier, files };
}

/** The xattr a filled object carries first: random ops leave such objects' xattrs alone (no room on a strata store). */
export const FULL_XATTR = 'user.full';

const fillingLists = new Map<'dir' | 'file', [string, Buffer][]>();

/**
 * The user xattrs (FULL_XATTR first) that fill a new object's xattr space
 * on this machine's temporary file system, measured on a scratch object that
 * carries a strata object id first, as a store's object does: set in this
 * order on a strata mount's object, every one fits and the space is full.
 * (Where ext4 puts each attribute, in the inode or its block, depends on the
 * order.) A file system without a small bound gets them all (100 per size).
 */
export function fillingXattrs(kind: 'dir' | 'file'): [string, Buffer][] {
  const known = fillingLists.get(kind);
  if (known !== undefined) return known;
  const d = mkdtempSync(join(tmpdir(), 'strata-fill-'));
  try {
    const p = join(d, 'o');
    if (kind === 'dir') mkdirSync(p);
    else writeFileSync(p, '');
    const out: [string, Buffer][] = [];
    const set = (name: string, value: Buffer): boolean => spawnSync('setfattr', ['-n', name, '-v', `0x${value.toString('hex')}`, p]).status === 0;
    if (!set(ID_XATTR, Buffer.from('f'.repeat(32)))) throw new Error(`cannot set ${ID_XATTR} in ${tmpdir()}`);
    if (!set(FULL_XATTR, Buffer.from('1'))) throw new Error(`cannot set user xattrs in ${tmpdir()}`);
    out.push([FULL_XATTR, Buffer.from('1')]);
    for (const size of [200, 50, 10, 1]) {
      for (let i = 0; i < 100; i++) {
        const name = `user.fill${size}_${i}`;
        const value = Buffer.alloc(size, 0x61 + (i % 26));
        if (!set(name, value)) break;
        out.push([name, value]);
      }
    }
    fillingLists.set(kind, out);
    return out;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

/** Tier of an object at `path` (an entry of the root is at tier 1). */
export function tierOf(path: string): number {
  return path === '' ? 0 : path.split('/').length;
}

/** Writes `content` into the open file `fh` (runs, then the size). */
export async function writeContent(fh: fsp.FileHandle, content: Content): Promise<void> {
  for (const r of content.runs) {
    const b = fillBytes(r.seed, r.length, r.fill);
    let off = 0;
    while (off < b.length) off += (await fh.write(b, off, Math.min(b.length - off, 1024 * 1024), r.offset + off)).bytesWritten;
  }
  await fh.truncate(content.size);
}

/** Builds a tree in `root` (a strata mount or a native directory) with the same system calls. */
export async function applyBuild(root: string, steps: readonly BuildStep[]): Promise<void> {
  // Native calls take the string (the addon maps it to bytes); Node's fs takes the bytes (byteName).
  const p = (rel: string): string => (rel === '' ? root : join(root, rel));
  const pb = (rel: string): Buffer => byteName(p(rel));
  for (const s of steps) {
    try {
      switch (s.k) {
        case 'mkdir': await fsp.mkdir(pb(s.path), 0o755); break;
        case 'file': {
          const fh = await fsp.open(pb(s.path), 'wx', 0o644);
          try {
            await writeContent(fh, s.content);
          } finally {
            await fh.close();
          }
          break;
        }
        case 'symlink': await fsp.symlink(byteName(s.target), pb(s.path)); break;
        case 'fifo': await mknod(p(s.path), 0o010644, 0); break;
        case 'link': await fsp.link(pb(s.from), pb(s.to)); break;
        case 'xattr': await setxattr(p(s.path), s.name, Buffer.from(s.value, 'base64'), 0); break;
        case 'fill': for (const [name, value] of fillingXattrs(s.kind)) await setxattr(p(s.path), name, value, 0); break;
        case 'own': await fsp.lchown(pb(s.path), s.uid, s.gid); break;
        case 'mode': await fsp.chmod(pb(s.path), s.mode); break;
        case 'times': await utimens(p(s.path), s.atime, s.mtime, { noFollow: true }); break;
      }
    } catch (err) {
      throw new Error(`building ${root}: ${JSON.stringify(s).slice(0, 300)}: ${(err as Error).message}`);
    }
  }
}

// ---- pictures -------------------------------------------------------------------------------

/** One object as compared: everything the design's I2 lists, mtimes in ns. */
export interface ObjectPicture {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime: string;
  size?: number;
  sha256?: string;
  target?: string;
  xattrs?: Record<string, string>;
  /** Files with more than one name: the first (sorted) path of the group. */
  linkGroup?: string;
  /** Link count (files; directories too where exact). */
  nlink?: number;
}

export type Picture = Record<string, ObjectPicture>;

export interface LivePictureOptions {
  /** Record link counts (exact only once a restore is complete; see docs/recovery.md, Known limits). */
  nlink?: boolean;
  /** Leave out a top-level name (the native directory holds nothing else, but a store root has .strata). */
  ignoreTop?: string[];
}

export function timeNs(t: TimeSpec | { sec: number; nsec: number }): string {
  if (typeof t === 'string') throw new Error('not an explicit time');
  return (BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec)).toString();
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fsp.open(byteName(path), 'r');
  try {
    const buf = Buffer.alloc(1024 * 1024);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** The picture of the live tree at `root` ('.' is the root itself). Reading it through a recovering mount fetches everything. */
export async function livePicture(root: string, opts: LivePictureOptions = {}): Promise<Picture> {
  const out: Picture = {};
  const byIno = new Map<bigint, string[]>();
  async function visit(rel: string): Promise<void> {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await fsp.lstat(byteName(abs), { bigint: true });
    const type = typeOfMode(st.mode);
    const e: ObjectPicture = {
      type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), mtime: st.mtimeNs.toString(),
    };
    if (type === 'file') {
      e.size = Number(st.size);
      e.sha256 = await sha256File(abs);
      const names = byIno.get(st.ino);
      if (names) names.push(rel); else byIno.set(st.ino, [rel]);
    }
    if (type === 'symlink') e.target = await readlinkName(abs);
    // (Not the root's: a store root's count includes strata's private directory.)
    if (opts.nlink && (type === 'file' || (type === 'dir' && rel !== '.'))) e.nlink = Number(st.nlink);
    if (type !== 'symlink') {
      const names = (await listxattr(abs)).filter(pictured).sort();
      if (names.length > 0) {
        e.xattrs = {};
        for (const n of names) e.xattrs[n] = (await getxattr(abs, n)).toString('base64');
      }
    }
    out[rel] = e;
    if (type === 'dir') {
      const names = (await readdirNames(abs)).sort();
      for (const name of names) {
        if (rel === '.' && opts.ignoreTop?.includes(name)) continue;
        await visit(rel === '.' ? name : `${rel}/${name}`);
      }
    }
  }
  await visit('.');
  for (const names of byIno.values()) {
    if (names.length < 2) continue;
    const first = [...names].sort()[0]!;
    for (const n of names) out[n]!.linkGroup = first;
  }
  return out;
}

/** The differences between two pictures, one line each (empty: equal). */
export function diffPictures(want: Picture, got: Picture, wantName = 'model', gotName = 'strata'): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
  for (const k of keys) {
    const a = want[k];
    const b = got[k];
    if (a === undefined) { out.push(`${JSON.stringify(k)}: only in ${gotName}: ${JSON.stringify(b)}`); continue; }
    if (b === undefined) { out.push(`${JSON.stringify(k)}: only in ${wantName}: ${JSON.stringify(a)}`); continue; }
    const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort() as (keyof ObjectPicture)[];
    for (const f of fields) {
      const x = JSON.stringify(a[f]);
      const y = JSON.stringify(b[f]);
      if (x !== y) out.push(`${JSON.stringify(k)} ${f}: ${wantName} ${x?.slice(0, 200)}, ${gotName} ${y?.slice(0, 200)}`);
    }
  }
  return out;
}
