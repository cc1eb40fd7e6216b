// Random operation sequences against a reference, as mountpoint-s3 does: fast-check
// generates seeded sequences of filesystem operations over a small name space;
// each sequence runs step by step on a native directory (the reference) and on
// a live strata mount of the same disk. After every step the outcomes must be
// the same (success or the same error code, and the same data: contents, listings,
// stat fields), in some runs also the stat of every name; after the sequence the
// two trees must be the same (stat of every entry, then pictureOf), and rm -rf
// of everything must work on both.
//
// Times: every explicit time is before 2001 and compared to the nanosecond;
// times the kernel sets ("now") only need to be recent on both sides. Atimes are
// compared only right after they were set: a read served from the page cache
// does not reach the store, so relatime updates legitimately differ.
//
// Eight mounts: the default one (the FUSE thread answers most requests itself,
// read-only opens pass through, handle_killpriv_v2), --no-direct-io (every
// request through the JavaScript core), no kernel caching with a tiny
// FUSE-thread node table, the same mirrored (every change through the journal
// and the core), one where steps run as other users (--allow-other),
// --writeback-cache (with another user), passthrough with another user and a
// tiny node table, and the fallbacks --no-passthrough --no-killpriv-v2. A 'forget' step makes the kernel drop
// every unused dentry and inode (FORGET requests), as memory pressure would.
//
// Replay a failure with the seed (and path) fast-check prints:
//   STRATA_FC_SEED=<seed> [STRATA_FC_PATH=<path>] npx ava dist/test/integration/random-ops.test.js
// STRATA_FC_RUNS=<n> changes the number of sequences; STRATA_FC_NOSHRINK=1 reports
// the first failing sequence as it was generated.
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { AssertionError } from 'node:assert';
import { isDeepStrictEqual } from 'node:util';
import * as fsp from 'node:fs/promises';
import { constants as C, type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { strata, withMount, type TestMount } from '../helpers/mount.js';
import { pictureOf } from '../helpers/tree.js';
import { ACL_ACCESS, ACL_DEFAULT, aclXattr, type AclSpec } from '../helpers/acl.js';
import { AT_FDCWD, renameExchangeAt, utimens, setxattr, getxattr, removexattr, listxattr, type TimeSpec } from '../../src/native/index.js';

// ---- the operations -----------------------------------------------------------------------

/** The name space: every path an operation may name (relative to the tree's root). */
const NAMES = ['a', 'b', 'c', 'd', 'd/e', 'd/f', 'g', 'g/h', 'g/h/i'] as const;
/** Directories readdir may list ('' is the root). */
const DIRS = ['', 'd', 'g', 'g/h', 'a'] as const;
/** Symlink targets: relative and without '..', so nothing ever resolves outside the tree. */
const TARGETS = ['a', 'b', 'd', 'd/e', 'g/h', 'e', 'zz'] as const;
const XATTRS = ['user.x', 'user.y'] as const;
const SLOTS = [0, 1] as const;
const OPEN_FLAGS = ['r', 'r+', 'w', 'a', 'wx', 'a+'] as const;
const OWNERS = [0, 1000, 4242] as const;

type Name = (typeof NAMES)[number];
type Slot = (typeof SLOTS)[number];
/** Content written: `text` repeated `times` (readable in a counterexample, big when needed). */
interface Data { text: string; times: number }

type Op =
  | { op: 'write'; path: Name; data: Data; offset: number }
  | { op: 'append'; path: Name; data: Data }
  | { op: 'truncate'; path: Name; size: number }
  | { op: 'mkdir'; path: Name; mode: number }
  | { op: 'rmdir'; path: Name }
  | { op: 'unlink'; path: Name }
  | { op: 'rename'; from: Name; to: Name }
  /** renameat2(RENAME_EXCHANGE) */
  | { op: 'exchange'; from: Name; to: Name }
  | { op: 'link'; from: Name; to: Name }
  | { op: 'symlink'; target: string; path: Name }
  | { op: 'readlink'; path: Name }
  | { op: 'chmod'; path: Name; mode: number }
  | { op: 'chown'; path: Name; uid: number; gid: number; noFollow: boolean }
  | { op: 'utimens'; path: Name; atime: TimeSpec; mtime: TimeSpec; noFollow: boolean }
  | { op: 'setxattr'; path: Name; name: string; value: string }
  | { op: 'getxattr'; path: Name; name: string }
  | { op: 'removexattr'; path: Name; name: string }
  | { op: 'listxattr'; path: Name }
  /** POSIX ACLs: set (the xattr), read and remove an access or default ACL. */
  | { op: 'setacl'; path: Name; kind: AclKind; acl: AclSpec }
  | { op: 'getacl'; path: Name; kind: AclKind }
  | { op: 'rmacl'; path: Name; kind: AclKind }
  | { op: 'read'; path: Name }
  | { op: 'readdir'; path: string }
  | { op: 'stat'; path: Name; noFollow: boolean }
  | { op: 'open'; slot: Slot; path: Name; flags: string }
  | { op: 'fdwrite'; slot: Slot; data: Data; offset: number }
  | { op: 'fdread'; slot: Slot; offset: number }
  | { op: 'fdstat'; slot: Slot }
  | { op: 'fdtruncate'; slot: Slot; size: number }
  | { op: 'fdchmod'; slot: Slot; mode: number }
  | { op: 'fdutimes'; slot: Slot; atime: number; mtime: number }
  | { op: 'close'; slot: Slot }
  /** The kernel drops every unused dentry and inode (FORGET to strata), as memory pressure would. */
  | { op: 'forget' };

type AclKind = 'access' | 'default';
const aclName = (k: AclKind): string => (k === 'access' ? ACL_ACCESS : ACL_DEFAULT);
const perm = fc.integer({ min: 0, max: 7 });
/** Named entries for the users the steps run as (and one nobody is), so that they decide outcomes. */
const aclSpec: fc.Arbitrary<AclSpec> = fc.record({
  user: perm, group: perm, other: perm,
  users: fc.uniqueArray(fc.tuple(fc.constantFrom(...OWNERS.filter((o) => o !== 0), 1001), perm), { maxLength: 2, selector: ([id]) => id }),
  groups: fc.uniqueArray(fc.tuple(fc.constantFrom(1000, 1001), perm), { maxLength: 2, selector: ([id]) => id }),
  // Named entries need a mask (EINVAL without one, on both sides).
  mask: fc.oneof({ arbitrary: perm, weight: 6 }, { arbitrary: fc.constant(null), weight: 1 }),
});
const aclKind = fc.constantFrom<AclKind>('access', 'default');

const name = fc.constantFrom(...NAMES);
/** A name that the prelude (below) creates, more often than chance would pick one. */
const existing = fc.oneof({ arbitrary: fc.constantFrom<Name>('a', 'd/e', 'g/h/i', 'd', 'g'), weight: 1 }, { arbitrary: name, weight: 2 });
/** Names that no prelude step uses, where symlinks go more often. */
const linkName = fc.oneof({ arbitrary: fc.constantFrom<Name>('b', 'c', 'd/f'), weight: 1 }, { arbitrary: name, weight: 1 });
const slot = fc.constantFrom(...SLOTS);
const mode = fc.oneof(fc.constantFrom(0o644, 0o755, 0o600, 0o777, 0o4755, 0o2775, 0o1777, 0), fc.integer({ min: 0, max: 0o7777 }));
const data: fc.Arbitrary<Data> = fc.record({
  text: fc.string({ minLength: 1, maxLength: 12 }),
  times: fc.oneof({ arbitrary: fc.constant(1), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 1500 }), weight: 1 }),
});
const offset = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 40 }), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 20_000 }), weight: 1 });
const size = fc.oneof({ arbitrary: fc.integer({ min: 0, max: 40 }), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 20_000 }), weight: 1 });
/** Explicit times are all before 2001; "now" is after 2017, so the two never mix up. */
const time: fc.Arbitrary<TimeSpec> = fc.oneof(
  { arbitrary: fc.record({ sec: fc.integer({ min: 0, max: 999_999_999 }), nsec: fc.integer({ min: 0, max: 999_999_999 }) }), weight: 4 },
  { arbitrary: fc.constantFrom<TimeSpec>('now', 'omit'), weight: 1 },
);

/**
 * Modes without set-group-ID unless group-execute is set too. Used when other
 * users run steps: a write or truncate by a user outside the file's group drops
 * S_ISGID of a file without S_IXGRP natively (setattr_should_drop_sgid), but the
 * kernel's FUSE module, emulating kill-priv for a filesystem that does not
 * handle it (libfuse 2.9 cannot ask for FUSE_HANDLE_KILLPRIV), drops it only
 * when S_IXGRP is set (fuse_setattr). A known difference of libfuse-2 file
 * systems, which strata cannot see: the kernel asks for the mode change itself.
 *   write a; chmod 6726 a; as uid 1000: write ' ' at 0 to a
 *   native: mode 0726; strata: mode 2726
 */
const modeSgidWithGx = mode.map((m) => ((m & 0o2000) !== 0 && (m & 0o010) === 0 ? m | 0o010 : m));
/**
 * No set-group-ID at all: on a mirrored mount (no handle_killpriv_v2, the
 * kernel's FUSE rule: docs/SEMANTICS.md) an ACL whose mask lacks execute
 * takes group-execute away from a set-group-ID file, and another user's
 * write then keeps the bit that ext4 drops.
 */
const modeNoSgid = mode.map((m) => m & ~0o2000);

/** `acl`: POSIX ACL steps too (not on a mount that leaves them unenforced). */
function opArbWith(mode: fc.Arbitrary<number>, acl = true): fc.Arbitrary<Op> {
  const aclOps = acl ? [
    { arbitrary: fc.record({ op: fc.constant('setacl' as const), path: existing, kind: aclKind, acl: aclSpec }), weight: 5 },
    { arbitrary: fc.record({ op: fc.constant('getacl' as const), path: existing, kind: aclKind }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('rmacl' as const), path: existing, kind: aclKind }), weight: 1 },
  ] : [];
  return fc.oneof(
    ...aclOps,
    { arbitrary: fc.record({ op: fc.constant('write' as const), path: name, data, offset }), weight: 6 },
    { arbitrary: fc.record({ op: fc.constant('append' as const), path: name, data }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('truncate' as const), path: name, size }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: name, mode }), weight: 5 },
    { arbitrary: fc.record({ op: fc.constant('rmdir' as const), path: name }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('unlink' as const), path: name }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('rename' as const), from: existing, to: name }), weight: 4 },
    { arbitrary: fc.record({ op: fc.constant('exchange' as const), from: existing, to: existing }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('link' as const), from: existing, to: name }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('symlink' as const), target: fc.constantFrom(...TARGETS), path: linkName }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('readlink' as const), path: linkName }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('chmod' as const), path: existing, mode }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('chown' as const), path: name, uid: fc.constantFrom(...OWNERS), gid: fc.constantFrom(...OWNERS), noFollow: fc.boolean() }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('utimens' as const), path: name, atime: time, mtime: time, noFollow: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('setxattr' as const), path: existing, name: fc.constantFrom(...XATTRS), value: fc.string({ maxLength: 8 }) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('getxattr' as const), path: existing, name: fc.constantFrom(...XATTRS) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('removexattr' as const), path: existing, name: fc.constantFrom(...XATTRS) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('listxattr' as const), path: existing }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('read' as const), path: name }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('readdir' as const), path: fc.constantFrom(...DIRS) }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('stat' as const), path: name, noFollow: fc.boolean() }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('open' as const), slot, path: existing, flags: fc.constantFrom(...OPEN_FLAGS) }), weight: 6 },
    { arbitrary: fc.record({ op: fc.constant('fdwrite' as const), slot, data, offset }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('fdread' as const), slot, offset: fc.integer({ min: 0, max: 40 }) }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('fdstat' as const), slot }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('fdtruncate' as const), slot, size }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('fdchmod' as const), slot, mode }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('fdutimes' as const), slot, atime: fc.integer({ min: 0, max: 999_999_999 }), mtime: fc.integer({ min: 0, max: 999_999_999 }) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('close' as const), slot }), weight: 1 },
    { arbitrary: fc.constant<Op>({ op: 'forget' }), weight: 2 },
  );
}

/**
 * Steps that give the name space some shape, so that fewer random steps fail
 * on a missing parent. A run starts with some of them (shrinkable like the rest).
 */
const PRELUDE: readonly Op[] = [
  { op: 'mkdir', path: 'd', mode: 0o755 },
  { op: 'mkdir', path: 'g', mode: 0o755 },
  // What g/h and g/h/i inherit (the umask then does not apply), and user 1000 may do in them.
  { op: 'setacl', path: 'g', kind: 'default', acl: { user: 7, group: 5, other: 5, users: [[1000, 7]], groups: [], mask: 7 } },
  { op: 'mkdir', path: 'g/h', mode: 0o755 },
  { op: 'write', path: 'a', data: { text: 'alpha', times: 1 }, offset: 0 },
  { op: 'write', path: 'd/e', data: { text: 'echo', times: 1 }, offset: 0 },
  { op: 'write', path: 'g/h/i', data: { text: 'india', times: 1 }, offset: 0 },
];

/** An operation, run as the user `as` (uid and gid) when given, else as root. */
type Step = Op & { as?: number };

function stepArb(users: readonly number[], acl: boolean, sgid: boolean): fc.Arbitrary<Step> {
  if (users.length === 0) return opArbWith(mode, acl);
  // A 'forget' step writes to /proc as root, whoever asks.
  return fc.tuple(opArbWith(sgid ? modeSgidWithGx : modeNoSgid, acl), fc.constantFrom(0, ...users))
    .map(([op, uid]): Step => (uid === 0 || op.op === 'forget' ? op : { ...op, as: uid }));
}

interface Run {
  ops: Step[];
  /** Compare a snapshot of the whole name space after every step (not only outcomes). */
  checkEveryStep: boolean;
}

function runArb(users: readonly number[], acl: boolean, sgid: boolean): fc.Arbitrary<Run> {
  return fc.record({
    ops: fc.tuple(fc.subarray(PRELUDE.filter((o) => acl || o.op !== 'setacl')), fc.array(stepArb(users, acl, sgid), { minLength: 1, maxLength: 60, size: 'max' }))
      .map(([prelude, rest]): Step[] => [...prelude, ...rest]),
    checkEveryStep: fc.boolean(),
  });
}

// ---- applying an operation to one side --------------------------------------------------------

interface Side {
  root: string;
  /** The strata mount (else the native reference). */
  mounted: boolean;
  slots: Array<fsp.FileHandle | undefined>;
}

type Outcome = { ok: true; value?: unknown } | { ok: false; code: string };

function bytes(d: Data): Buffer {
  return Buffer.from(d.text.repeat(d.times));
}

const DROP_CACHES = '/proc/sys/vm/drop_caches';
/** Writing 2 there makes the kernel drop unused dentries and inodes (root only). */
const canDropCaches = await fsp.access(DROP_CACHES, C.W_OK).then(() => true, () => false);

const NOW_NS = BigInt(Date.now()) * 1_000_000n;
/** A time as compared: exact when set explicitly (before 2001), else only "recent". */
function timeOf(ns: bigint): string {
  if (ns < 1_500_000_000_000_000_000n) return ns.toString();
  return ns > NOW_NS - 3_600_000_000_000n ? 'recent' : `odd ${ns}`;
}

function typeName(modeBits: number): string {
  switch (modeBits & C.S_IFMT) {
    case C.S_IFREG: return 'file';
    case C.S_IFDIR: return 'dir';
    case C.S_IFLNK: return 'symlink';
    default: return `type ${(modeBits & C.S_IFMT).toString(8)}`;
  }
}

/** The comparable part of a stat: type, mode, owner, nlink, size and the explicitly set times. */
function statView(st: BigIntStats, withAtime: boolean): Record<string, unknown> {
  const m = Number(st.mode);
  const v: Record<string, unknown> = {
    type: typeName(m), mode: (m & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid),
    nlink: Number(st.nlink), size: Number(st.size), mtime: timeOf(st.mtimeNs),
  };
  if (withAtime) v.atime = timeOf(st.atimeNs);
  return v;
}

async function apply(side: Side, op: Op): Promise<unknown> {
  const p = (rel: string): string => (rel === '' ? side.root : join(side.root, rel));
  const handle = (s: Slot): fsp.FileHandle => {
    const h = side.slots[s];
    if (h === undefined) throw Object.assign(new Error(`slot ${s} is not open`), { code: 'NO_SLOT' });
    return h;
  };
  switch (op.op) {
    case 'write': {
      const fh = await fsp.open(p(op.path), C.O_WRONLY | C.O_CREAT, 0o644);
      try {
        const b = bytes(op.data);
        return (await fh.write(b, 0, b.length, op.offset)).bytesWritten;
      } finally {
        await fh.close();
      }
    }
    case 'append': return fsp.appendFile(p(op.path), bytes(op.data));
    case 'truncate': return fsp.truncate(p(op.path), op.size);
    case 'mkdir': return fsp.mkdir(p(op.path), op.mode);
    case 'rmdir': return fsp.rmdir(p(op.path));
    case 'unlink': return fsp.unlink(p(op.path));
    case 'rename': return fsp.rename(p(op.from), p(op.to));
    case 'exchange': return renameExchangeAt(AT_FDCWD, p(op.from), p(op.to));
    case 'link': return fsp.link(p(op.from), p(op.to));
    case 'symlink': return fsp.symlink(op.target, p(op.path));
    case 'readlink': return fsp.readlink(p(op.path));
    case 'chmod': return fsp.chmod(p(op.path), op.mode);
    case 'chown': return op.noFollow ? fsp.lchown(p(op.path), op.uid, op.gid) : fsp.chown(p(op.path), op.uid, op.gid);
    case 'utimens': {
      await utimens(p(op.path), op.atime, op.mtime, { noFollow: op.noFollow });
      const st = await (op.noFollow ? fsp.lstat(p(op.path), { bigint: true }) : fsp.stat(p(op.path), { bigint: true }));
      // The atime is comparable right after it was set (see the header).
      return statView(st, op.atime !== 'omit');
    }
    case 'setxattr': return setxattr(p(op.path), op.name, Buffer.from(op.value), 0);
    case 'getxattr': return (await getxattr(p(op.path), op.name)).toString();
    case 'removexattr': return removexattr(p(op.path), op.name);
    case 'listxattr': return (await listxattr(p(op.path))).filter((n) => n.startsWith('user.') || n.startsWith('system.posix_acl_')).sort();
    case 'setacl': return setxattr(p(op.path), aclName(op.kind), aclXattr(op.acl), 0);
    case 'getacl': return (await getxattr(p(op.path), aclName(op.kind))).toString('base64');
    case 'rmacl': return removexattr(p(op.path), aclName(op.kind));
    case 'read': return (await fsp.readFile(p(op.path))).toString('base64');
    case 'readdir': {
      const entries = await fsp.readdir(p(op.path), { withFileTypes: true });
      return entries.map((e) => `${e.name}:${e.isDirectory() ? 'd' : e.isSymbolicLink() ? 'l' : e.isFile() ? 'f' : '?'}`).sort();
    }
    case 'stat': {
      const st = await (op.noFollow ? fsp.lstat(p(op.path), { bigint: true }) : fsp.stat(p(op.path), { bigint: true }));
      return statView(st, false);
    }
    case 'open': {
      await closeSlot(side, op.slot);
      const fh = await fsp.open(p(op.path), op.flags, 0o640);
      // Directories are not kept open: strata cannot serve fstat, fchmod or
      // futimens through the descriptor of a directory removed meanwhile (see
      // the 'known difference' test below).
      if ((await fh.stat()).isDirectory()) {
        await fh.close();
        return 'a directory (closed again)';
      }
      side.slots[op.slot] = fh;
      return undefined;
    }
    case 'fdwrite': {
      const b = bytes(op.data);
      return (await handle(op.slot).write(b, 0, b.length, op.offset)).bytesWritten;
    }
    case 'fdread': {
      const buf = Buffer.alloc(30_000);
      const { bytesRead } = await handle(op.slot).read(buf, 0, buf.length, op.offset);
      return buf.subarray(0, bytesRead).toString('base64');
    }
    case 'fdstat': return statView(await handle(op.slot).stat({ bigint: true }), false);
    case 'fdtruncate': return handle(op.slot).truncate(op.size);
    case 'fdchmod': return handle(op.slot).chmod(op.mode);
    case 'fdutimes': {
      const h = handle(op.slot);
      await h.utimes(op.atime, op.mtime);
      return statView(await h.stat({ bigint: true }), true);
    }
    case 'close': {
      handle(op.slot);
      return closeSlot(side, op.slot);
    }
    case 'forget':
      if (side.mounted && canDropCaches) await fsp.writeFile(DROP_CACHES, '2');
      return undefined;
  }
}

async function closeSlot(side: Side, s: Slot): Promise<void> {
  const h = side.slots[s];
  side.slots[s] = undefined;
  if (h !== undefined) await h.close();
}

/**
 * Runs `f` with the effective uid and gid (and only group) of `uid`. Credentials
 * are per process, so the tests of this file run serially.
 */
async function asUser<T>(uid: number | undefined, f: () => Promise<T>): Promise<T> {
  if (uid === undefined || uid === 0) return f();
  const { getgroups, setgroups, getegid, setegid, geteuid, seteuid } = process;
  if (getgroups === undefined || setgroups === undefined || getegid === undefined || setegid === undefined ||
    geteuid === undefined || seteuid === undefined) throw new Error('no credential calls on this platform');
  const [groups, egid, euid] = [getgroups(), getegid(), geteuid()];
  setgroups([uid]);
  setegid(uid);
  seteuid(uid);
  try {
    return await f();
  } finally {
    seteuid(euid);
    setegid(egid);
    setgroups(groups);
  }
}

async function outcome(side: Side, step: Step): Promise<Outcome> {
  try {
    const value = await asUser(step.as, () => apply(side, step));
    return value === undefined ? { ok: true } : { ok: true, value };
  } catch (err) {
    const code = err !== null && typeof err === 'object' && 'code' in err ? (err as { code: unknown }).code : undefined;
    if (typeof code !== 'string') throw err;
    return { ok: false, code };
  }
}

/** Every name of the name space, as lstat shows it (or its error). */
async function snapshot(root: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const n of NAMES) {
    try {
      out[n] = statView(await fsp.lstat(join(root, n), { bigint: true }), false);
    } catch (err) {
      out[n] = (err as { code?: unknown }).code;
    }
  }
  return out;
}

/** The whole tree, beyond the name space too (writes through symlinks may create other names). */
async function walk(root: string, rel = '', out: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  for (const n of (await fsp.readdir(rel === '' ? root : join(root, rel))).sort()) {
    const r = rel === '' ? n : `${rel}/${n}`;
    const st = await fsp.lstat(join(root, r), { bigint: true });
    out[r] = statView(st, false);
    if (st.isDirectory()) await walk(root, r, out);
  }
  return out;
}

async function clear(side: Side): Promise<void> {
  for (const s of SLOTS) await closeSlot(side, s).catch(() => {});
  for (const n of await fsp.readdir(side.root)) await fsp.rm(join(side.root, n), { recursive: true, force: true });
}

async function clearOutcome(side: Side): Promise<Outcome> {
  try {
    await clear(side);
    return { ok: true };
  } catch (err) {
    return { ok: false, code: `${String((err as { code?: unknown }).code)} (${err instanceof Error ? err.message : String(err)})` };
  }
}

/**
 * Empties both trees before a run. When a failed run left the mount in a state
 * that rm -rf through it cannot clear (that run has already failed), the store
 * is emptied behind strata's back and the kernel made to forget, so that
 * fast-check can go on shrinking.
 */
async function reset(native: Side, mounted: Side, store: string): Promise<void> {
  await clear(native);
  if ((await clearOutcome(mounted)).ok) return;
  for (const n of await fsp.readdir(store)) {
    if (n !== '.strata') await fsp.rm(join(store, n), { recursive: true, force: true });
  }
  if (canDropCaches) await fsp.writeFile(DROP_CACHES, '2');
  const left = await fsp.readdir(mounted.root);
  if (left.length > 0) throw new Error(`cannot empty the mount for the next run: ${left.join(' ')}`);
}

function describe(op: Step): string {
  return JSON.stringify(op);
}

function mismatch(what: string, native: unknown, strata: unknown): never {
  throw new AssertionError({
    message: `${what}\n  native: ${JSON.stringify(native)}\n  strata: ${JSON.stringify(strata)}`,
    actual: strata, expected: native, operator: 'deepStrictEqual',
  });
}

// ---- the test ------------------------------------------------------------------------------

/** Outcome counts per operation, for the log: how much each kind was exercised. */
class Tally {
  private readonly counts = new Map<string, { ok: number; errors: Map<string, number> }>();
  add(op: Op, o: Outcome): void {
    let c = this.counts.get(op.op);
    if (c === undefined) this.counts.set(op.op, (c = { ok: 0, errors: new Map() }));
    if (o.ok) c.ok++;
    else c.errors.set(o.code, (c.errors.get(o.code) ?? 0) + 1);
  }
  get total(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c.ok + [...c.errors.values()].reduce((x, y) => x + y, 0);
    return n;
  }
  get succeeded(): number {
    return [...this.counts.values()].reduce((n, c) => n + c.ok, 0);
  }
  toString(): string {
    return [...this.counts.entries()].sort(([x], [y]) => x.localeCompare(y))
      .map(([k, c]) => `${k} ok ${c.ok}${[...c.errors.entries()].map(([e, n]) => ` ${e} ${n}`).join('')}`).join('; ');
  }
}

const envInt = (name: string): number | undefined => {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : Number.parseInt(v, 10);
};

interface Config {
  title: string;
  args: string[];
  runs: number;
  /** Users (besides root) the steps run as; needs --allow-other. */
  users: readonly number[];
  /** Environment of the daemon. */
  env?: NodeJS.ProcessEnv;
  /** The mount must have served read-only opens through FUSE passthrough (checked after the sequences). */
  passthrough?: boolean;
  /** The mount must have passed writable opens through (--passthrough-writes; checked after the sequences). */
  passthroughWrites?: boolean;
  /** Mirror to a fresh file:// archive: every change goes through the journal and the core. */
  mirrored?: boolean;
  /** No POSIX ACL steps (a mount that does not enforce them: --no-posix-acl). */
  noAcl?: boolean;
  /** Mirrored: `strata verify` after every n-th sequence (default 8). */
  verifyEvery?: number;
  /** Steps by other users: no set-group-ID modes at all (modeNoSgid). */
  noSgid?: boolean;
}

const CONFIGS: readonly Config[] = [
  { title: 'default mount (reads and writes on the FUSE thread, kernel caches on)', args: [], runs: 150, users: [] },
  { title: '--no-direct-io (every request through the JavaScript core)', args: ['--no-direct-io'], runs: 100, users: [] },
  {
    // A node table of 4 descriptors: nodes leave it all the time, so the FUSE
    // thread and the JavaScript core take turns at answering for the same nodes.
    title: 'no kernel caching (every name looked up, every attribute asked for), FUSE-thread node table of 4',
    args: ['--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0'], runs: 100, users: [], env: { STRATA_NODE_TABLE_MAX: '4' },
  },
  {
    // Every create, mkdir, symlink, link and setattr goes through the core
    // (journalled); the nodes it makes get their descriptors from its answers
    // (fast_entry_fd), and a table of 4 makes them leave it all the time.
    title: 'mirrored (file:// archive: every change through the journal), no kernel caching, FUSE-thread node table of 4',
    args: ['--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0'], runs: 80, users: [], env: { STRATA_NODE_TABLE_MAX: '4' }, mirrored: true,
  },
  {
    // What the store's file system changes unasked when other users act (set-ID bits dropped, ACLs), recorded:
    // strata verify after every sequence. Set-group-ID modes included: a mirrored mount has no handle_killpriv_v2,
    // and strata drops what the kernel's FUSE rule leaves (set-group-ID without group execute).
    title: 'mirrored, steps by two users (--allow-other), sync mode',
    args: ['--allow-other', '--mirror', 'sync'], runs: 64, users: [1000], mirrored: true, verifyEvery: 1,
  },
  {
    // The kernel keeps size and mtime and sends writes late, in pages; what reaches the journal must still be the
    // store's tree (strata verify after every sequence). No set-group-ID modes (as above).
    title: 'mirrored with --writeback-cache, steps by two users (--allow-other)',
    args: ['--writeback-cache', '--allow-other'], runs: 60, users: [1000], mirrored: true, verifyEvery: 1, noSgid: true,
  },
  { title: 'steps by three users in a sticky world-writable root (--allow-other)', args: ['--allow-other'], runs: 150, users: [1000, 1001] },
  // The kernel caches writes and sends them later in pages, keeps size and
  // mtime itself, and reads pages of write-only handles (the bridge opens them
  // read-write and without O_APPEND).
  { title: '--writeback-cache (the kernel caches writes), steps by two users (--allow-other)', args: ['--writeback-cache', '--allow-other'], runs: 120, users: [1000] },
  // Passthrough and handle_killpriv_v2 are on by default (the configurations
  // above run with them, but for --writeback-cache, which the kernel does not
  // combine with passthrough); here with other users' writes (set-ID bits
  // dropped by strata) and a tiny node table (opens answered by both sides
  // meet on one inode), checked to have passed opens through.
  {
    title: 'FUSE passthrough and handle_killpriv_v2 (the defaults), steps by two users, FUSE-thread node table of 4',
    args: ['--allow-other'], runs: 100, users: [1000], env: { STRATA_NODE_TABLE_MAX: '4' }, passthrough: true,
  },
  {
    // Writable opens pass through too: the kernel writes the store's files
    // itself, and drops set-ID bits before other users' writes (with
    // handle_killpriv_v2 off, as the daemon has it with this option).
    title: '--passthrough-writes (the kernel writes local files), steps by two users, FUSE-thread node table of 4',
    args: ['--allow-other', '--passthrough-writes'], runs: 100, users: [1000], env: { STRATA_NODE_TABLE_MAX: '4' }, passthroughWrites: true,
  },
  {
    // Without POSIX ACLs the kernel checks mode bits only, unlike ext4 once an ACL is set: no ACL steps here.
    title: 'fallbacks: --no-passthrough --no-killpriv-v2 --no-parallel-dirops --no-posix-acl, steps by two users',
    args: ['--no-passthrough', '--no-killpriv-v2', '--no-parallel-dirops', '--no-posix-acl', '--allow-other'], runs: 80, users: [1000], noAcl: true,
  },
];

for (const config of CONFIGS) {
  // Serial: the steps of other users switch the credentials of the whole process.
  test.serial(`random operation sequences: same outcomes and trees as a native directory; ${config.title}`, async (t) => {
    let args = config.args;
    let archiveUrl: string | null = null;
    if (config.mirrored) {
      const archive = await fsp.mkdtemp(join(tmpdir(), 'strata-rops-archive-'));
      t.teardown(() => fsp.rm(archive, { recursive: true, force: true }));
      archiveUrl = `file://${archive}`;
      args = [...args, '--archive', archiveUrl, '--volume', 'random-ops'];
    }
    const m = withMount(t, args, config.env);
    if (config.users.length > 0) {
      // Let the users reach both trees (mkdtemp makes the base 0700), and create at the top.
      await fsp.chmod(m.base, 0o711);
      await fsp.chmod(m.native, 0o1777);
      await fsp.chmod(m.mnt, 0o1777);
    }
    const native: Side = { root: m.native, mounted: false, slots: [undefined, undefined] };
    const mounted: Side = { root: m.mnt, mounted: true, slots: [undefined, undefined] };
    if (!canDropCaches) t.log(`${DROP_CACHES} is not writable: 'forget' steps do nothing`);
    t.teardown(async () => {
      for (const s of SLOTS) {
        await closeSlot(native, s).catch(() => {});
        await closeSlot(mounted, s).catch(() => {});
      }
    });

    const seed = envInt('STRATA_FC_SEED') ?? (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
    const path = process.env.STRATA_FC_PATH;
    const numRuns = envInt('STRATA_FC_RUNS') ?? config.runs;
    t.log(`fast-check seed ${seed}${path ? ` path ${path}` : ''}, ${numRuns} runs (replay: STRATA_FC_SEED=${seed})`);
    const tally = new Tally();
    let sequences = 0;
    let verified = 0;

    const property = fc.asyncProperty(runArb(config.users, config.noAcl !== true, config.noSgid !== true), async ({ ops, checkEveryStep }) => {
      await reset(native, mounted, m.store);
      for (const [i, op] of ops.entries()) {
        const a = await outcome(native, op);
        const b = await outcome(mounted, op);
        tally.add(op, a);
        if (!isDeepStrictEqual(a, b)) mismatch(`step ${i}: ${describe(op)}`, a, b);
        if (checkEveryStep) {
          const [sa, sb] = [await snapshot(native.root), await snapshot(mounted.root)];
          if (!isDeepStrictEqual(sa, sb)) mismatch(`names after step ${i}: ${describe(op)}`, sa, sb);
        }
      }
      for (const s of SLOTS) {
        await closeSlot(native, s);
        await closeSlot(mounted, s);
      }
      const [wa, wb] = [await walk(native.root), await walk(mounted.root)];
      if (!isDeepStrictEqual(wa, wb)) mismatch('tree after the sequence (stat)', wa, wb);
      const [pa, pb] = [await pictureOf(native.root), await pictureOf(mounted.root)];
      if (!isDeepStrictEqual(pa, pb)) mismatch('tree after the sequence (picture)', pa, pb);
      // Mirrored: every 8th sequence (verifyEvery), the archive holds the store's tree, what the store's file system changed
      // unasked included (the mode an ACL sets, the mask a chmod sets, ACLs inherited from a default ACL).
      if (archiveUrl !== null && ++sequences % (config.verifyEvery ?? 8) === 0) {
        const synced = strata(['sync', m.mnt]);
        if (synced.status !== 0) throw new Error(`strata sync: ${synced.stdout}${synced.stderr}`);
        const v = strata(['verify', '--store', m.store, '--archive', archiveUrl, '--volume', 'random-ops']);
        if (v.status !== 0) mismatch('strata verify after the sequence', 'equal', v.stdout + v.stderr);
        verified++;
      }
      // Removing everything (rm -rf) is part of the run: it must work on the mount too.
      const [ca, cb] = [await clearOutcome(native), await clearOutcome(mounted)];
      if (!isDeepStrictEqual(ca, cb)) mismatch('rm -rf of everything after the sequence', ca, cb);
    });

    const params: fc.Parameters<[Run]> = { seed, numRuns, includeErrorInReport: true };
    if (path) params.path = path;
    if (process.env.STRATA_FC_NOSHRINK) params.endOnFailure = true;
    const started = Date.now();
    await fc.assert(property, params);
    t.log(`${tally.total} operations, ${tally.succeeded} succeeded, in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (config.passthrough) {
      const st = JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { fuseFeatures: { passthrough: boolean; handleKillprivV2: boolean; passthroughOpens: number } };
      t.log(`passthrough opens: ${st.fuseFeatures.passthroughOpens}`);
      t.true(st.fuseFeatures.passthrough && st.fuseFeatures.handleKillprivV2, 'both negotiated');
      t.true(st.fuseFeatures.passthroughOpens > 0, 'read-only opens passed through');
    }
    if (config.passthroughWrites) {
      const st = JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { fuseFeatures: { passthroughWrites: boolean; handleKillprivV2: boolean; passthroughWriteOpens: number } };
      t.log(`passthrough write opens: ${st.fuseFeatures.passthroughWriteOpens}`);
      t.true(st.fuseFeatures.passthroughWrites && !st.fuseFeatures.handleKillprivV2, 'passthrough writes on, handle_killpriv_v2 off');
      t.true(st.fuseFeatures.passthroughWriteOpens > 0, 'writable opens passed through');
    }
    if (archiveUrl !== null) t.log(`strata verify equal after ${verified} sequences`);
    t.log(tally.toString());
    t.pass();
  });
}

// ---- regressions found by the sequences above, and a known difference ----------------------

/** Runs `steps` on the native directory and on the mount; their results must be equal. */
async function sameOnBoth(t: ExecutionContext, m: TestMount, steps: (root: string) => Promise<unknown[]>): Promise<void> {
  const native = await steps(m.native);
  const mounted = await steps(m.mnt);
  t.deepEqual(mounted, native);
  t.deepEqual(await pictureOf(m.mnt), await pictureOf(m.native));
}

// These need the kernel to forget inodes (writing /proc/sys/vm/drop_caches, root only).
const forgetTest = canDropCaches ? test.serial : test.serial.skip;
if (!canDropCaches) console.error(`random-ops: regression tests skipped: ${DROP_CACHES} is not writable (they need root)`);

forgetTest('regression: a hard-linked file stays one object when the only name the kernel knows is removed while open', async (t) => {
  // The kernel forgot the file; only 'a' was looked up again. Removing 'a' used
  // to unmap the backing inode, so a lookup of 'b' made a second node (kernel
  // inode) for the same file: stale size and stale cached pages through 'b'.
  const m = withMount(t);
  await sameOnBoth(t, m, async (root) => {
    const out: unknown[] = [];
    await fsp.writeFile(join(root, 'a'), 'hello');
    await fsp.link(join(root, 'a'), join(root, 'b'));
    await fsp.writeFile(DROP_CACHES, '2');
    const fh = await fsp.open(join(root, 'a'), 'r+');
    await fsp.unlink(join(root, 'a'));
    out.push((await fsp.readFile(join(root, 'b'))).toString(), Number((await fsp.stat(join(root, 'b'))).size));
    await fh.write(Buffer.from('HELLO'), 0, 5, 0); // same size: only the cached pages can tell
    out.push((await fsp.readFile(join(root, 'b'))).toString());
    await fh.write(Buffer.from(', world'), 0, 7, 5);
    out.push(Number((await fsp.stat(join(root, 'b'))).size));
    await fh.close();
    out.push((await fsp.readFile(join(root, 'b'))).toString());
    return out;
  });
});

forgetTest('regression: a hard link in a directory the kernel forgot stays reachable after the other name goes', async (t) => {
  // The kernel forgot directory 'd' while the file stayed known through 'a';
  // its name 'e' still went through the dropped node, so once 'a' was removed
  // the file had no usable path: getattr of d/e gave ENOENT and rm -rf failed.
  const m = withMount(t, ['--attr-timeout', '0', '--entry-timeout', '0']);
  await sameOnBoth(t, m, async (root) => {
    const out: unknown[] = [];
    await fsp.mkdir(join(root, 'd'));
    await fsp.writeFile(join(root, 'a'), 'alpha');
    await fsp.link(join(root, 'a'), join(root, 'd/e'));
    const fh = await fsp.open(join(root, 'a'), 'r');
    await fsp.writeFile(DROP_CACHES, '2');
    await fh.close();
    out.push((await fsp.readdir(join(root, 'd'))).length, Number((await fsp.lstat(join(root, 'd/e'))).nlink));
    await fsp.unlink(join(root, 'a'));
    out.push(Number((await fsp.lstat(join(root, 'd/e'))).nlink), (await fsp.readFile(join(root, 'd/e'))).toString());
    await fsp.rm(join(root, 'd'), { recursive: true });
    out.push(await fsp.readdir(root));
    return out;
  });
});

test.serial('regression: a truncating open by another user drops set-user-ID and set-group-ID as natively', async (t) => {
  // The kernel leaves O_TRUNC to strata (atomic_o_trunc): opened with O_TRUNC and
  // not written, a group-writable set-ID file used to keep its bits.
  const m = withMount(t, ['--allow-other']);
  await fsp.chmod(m.base, 0o711);
  await sameOnBoth(t, m, async (root) => {
    const out: unknown[] = [];
    for (const [name, mode] of [['suid', 0o4775], ['sgid', 0o2775], ['sgid-nox', 0o2765]] as const) {
      const p = join(root, name);
      await fsp.writeFile(p, 'content');
      await fsp.chown(p, 0, 1001);
      await fsp.chmod(p, mode);
      await asUser(1001, async () => (await fsp.open(p, 'w')).close());
      out.push(`${name} ${((await fsp.stat(p)).mode & 0o7777).toString(8)}`);
    }
    return out;
  });
});

// The node's O_PATH descriptor on the FUSE thread answers getattr and setattr of
// a directory that has no name left; through the JavaScript core (--no-direct-io)
// the opendir handle's own descriptor does (it used to fail with ENOENT: the core
// had only the directory's path).
for (const args of [[], ['--no-direct-io']] as const) {
  const title = args.length === 0
    ? 'fstat and futimens through the descriptor of a removed directory work as on ext4 (answered on the FUSE thread)'
    : `fstat and futimens through the descriptor of a removed directory work as on ext4 (the core, through the directory handle's descriptor: ${args.join(' ')})`;
  test.serial(title, async (t) => {
    const m = withMount(t, [...args]);
    await sameOnBoth(t, m, async (root) => {
      await fsp.mkdir(join(root, 'd'));
      const fh = await fsp.open(join(root, 'd'), 'r');
      try {
        await fsp.rmdir(join(root, 'd'));
        await fh.utimes(1, 2);
        const st = await fh.stat({ bigint: true });
        return [Number(st.nlink), st.mtimeNs.toString()];
      } catch (err) {
        return [(err as { code?: unknown }).code];
      } finally {
        await fh.close();
      }
    });
  });
}
