// The local-object layer (src/store/store-dir.ts): the core reaches its store
// through the root's descriptor, never through the process's working directory.
//
// - A seeded random sequence of operations runs through two cores on two stores
//   in one process at once (the working directory elsewhere), and the same
//   operations with Node's fs on two native directories; each outcome (value or
//   error code) and, at the end, each whole tree must match its native copy.
// - A store-relative path near PATH_MAX works (no prefix is added to it).
// - Extended attributes of a symlink reached by a relative path are the
//   symlink's own (atpath.h: O_PATH + /proc/self/fd).
//
//   STRATA_STORE_DIR_SEED=<n> npx ava dist/test/unit/store-dir.test.js   # replay one seed
import test, { type ExecutionContext } from 'ava';
import { release } from 'node:os';
import { spawnSync } from 'node:child_process';
import { constants as C, mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Filesystem, type Caller } from '../../src/core/filesystem.js';
import { LocalStore, RESERVED_NAME } from '../../src/store/local-store.js';
import * as native from '../../src/native/index.js';
import { Rng } from '../helpers/model-tree.js';

const ROOT: Caller = { uid: 0, gid: 0, pid: process.pid };
const SEED = process.env.STRATA_STORE_DIR_SEED !== undefined ? Number(process.env.STRATA_STORE_DIR_SEED) : Math.floor(Math.random() * 2 ** 31);
const OPS = 400;

const base = mkdtempSync(join(tmpdir(), 'strata-store-dir-'));
const startCwd = process.cwd();
const startUmask = process.umask(0);
const elsewhere = join(base, 'elsewhere');
await fsp.mkdir(elsewhere);

interface Pair { store: LocalStore; core: Filesystem; native: string }

async function pair(name: string): Promise<Pair> {
  const store = new LocalStore(join(base, `${name}-store`));
  await store.init();
  await store.open();
  const nat = join(base, `${name}-native`);
  await fsp.mkdir(nat);
  return { store, core: new Filesystem(store), native: nat };
}

const a = await pair('a');
const b = await pair('b');

test.after.always(() => {
  a.store.close();
  b.store.close();
  process.chdir(startCwd);
  process.umask(startUmask);
  rmSync(base, { recursive: true, force: true });
});

type Op =
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'create'; path: string; data: string }
  | { op: 'write'; path: string; offset: number; data: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'symlink'; path: string; target: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'setxattr'; path: string; value: string }
  | { op: 'utimens'; path: string; sec: number }
  | { op: 'stat'; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'read'; path: string };

const NAMES = ['a', 'b', 'c', 'dir', 'x y', 'ü', 'long-' + 'n'.repeat(200)];

function randomPath(rng: Rng): string {
  const depth = 1 + rng.int(0, 3 - 1);
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) parts.push(rng.pick(NAMES));
  return '/' + parts.join('/');
}

function randomOp(rng: Rng): Op {
  const path = randomPath(rng);
  switch (rng.int(0, 16 - 1)) {
    case 0: case 1: return { op: 'mkdir', path, mode: rng.pick([0o755, 0o700, 0o2775]) };
    case 2: case 3: return { op: 'create', path, data: `c${rng.int(0, 1e6 - 1)}`.repeat(1 + rng.int(0, 50 - 1)) };
    case 4: return { op: 'write', path, offset: rng.int(0, 5000 - 1), data: `w${rng.int(0, 1e6 - 1)}`.repeat(1 + rng.int(0, 20 - 1)) };
    case 5: return { op: 'truncate', path, size: rng.int(0, 3000 - 1) };
    case 6: return { op: 'symlink', path, target: rng.pick(['a', '../b', '/etc/passwd', 'nowhere/' + 'z'.repeat(300)]) };
    case 7: return { op: 'link', from: path, to: randomPath(rng) };
    case 8: return { op: 'rename', from: path, to: randomPath(rng) };
    case 9: return { op: 'unlink', path };
    case 10: return { op: 'rmdir', path };
    case 11: return { op: 'chmod', path, mode: rng.pick([0o644, 0o600, 0o4755, 0o2755]) };
    case 12: return { op: 'setxattr', path, value: `v${rng.int(0, 1000 - 1)}` };
    case 13: return { op: 'utimens', path, sec: 1_600_000_000 + rng.int(0, 1e7 - 1) };
    case 14: return { op: rng.pick(['stat', 'readlink', 'readdir'] as const), path };
    default: return { op: 'read', path };
  }
}

/** The op through the core (namespace paths). */
async function viaCore(core: Filesystem, op: Op): Promise<unknown> {
  switch (op.op) {
    case 'mkdir': await core.mkdir(op.path, op.mode, ROOT); return;
    case 'create': {
      const { handle } = await core.create(op.path, 0o644, C.O_WRONLY | C.O_EXCL, ROOT);
      const buf = Buffer.from(op.data);
      try { await core.write(handle, buf, buf.length, 0); } finally { await core.release(handle); }
      return;
    }
    case 'write': {
      const { handle } = await core.open(op.path, C.O_WRONLY);
      const buf = Buffer.from(op.data);
      try { return await core.write(handle, buf, buf.length, op.offset); } finally { await core.release(handle); }
    }
    case 'truncate': await core.truncate(op.path, op.size); return;
    case 'symlink': await core.symlink(op.target, op.path, ROOT); return;
    case 'link': await core.link(op.from, op.to); return;
    case 'rename': await core.rename(op.from, op.to); return;
    case 'unlink': await core.unlink(op.path); return;
    case 'rmdir': await core.rmdir(op.path); return;
    case 'chmod': await core.chmod(op.path, op.mode); return;
    case 'setxattr': await core.setxattr(op.path, 'user.t', Buffer.from(op.value), 0); return;
    case 'utimens': await core.utimens(op.path, { sec: op.sec, nsec: 5 }, { sec: op.sec, nsec: 7 }); return;
    case 'stat': return statView(await core.getattr(op.path));
    case 'readlink': return core.readlink(op.path);
    case 'readdir': return (await core.readdir(op.path)).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
    case 'read': {
      const { handle } = await core.open(op.path, C.O_RDONLY);
      try {
        const buf = Buffer.alloc(1 << 16);
        const n = await core.read(handle, buf, buf.length, 0);
        return hash(buf.subarray(0, n));
      } finally { await core.release(handle); }
    }
  }
}

/** The same op with Node's fs on the native directory. */
async function viaNative(root: string, op: Op): Promise<unknown> {
  const p = (x: string): string => join(root, x);
  switch (op.op) {
    case 'mkdir': await fsp.mkdir(p(op.path), op.mode); return;
    case 'create': await fsp.writeFile(p(op.path), op.data, { flag: 'wx', mode: 0o644 }); return;
    case 'write': {
      const h = await fsp.open(p(op.path), C.O_WRONLY | C.O_NOFOLLOW);
      try { return (await h.write(Buffer.from(op.data), 0, op.data.length, op.offset)).bytesWritten; } finally { await h.close(); }
    }
    case 'truncate': {
      // The core never follows a symlink in its store (one could lead out of it): as O_NOFOLLOW does.
      const h = await fsp.open(p(op.path), C.O_WRONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
      try { await h.truncate(op.size); } finally { await h.close(); }
      return;
    }
    case 'symlink': await fsp.symlink(op.target, p(op.path)); return;
    case 'link': await fsp.link(p(op.from), p(op.to)); return;
    case 'rename': await fsp.rename(p(op.from), p(op.to)); return;
    case 'unlink': await fsp.unlink(p(op.path)); return;
    case 'rmdir': await fsp.rmdir(p(op.path)); return;
    case 'chmod': await fsp.chmod(p(op.path), op.mode); return;
    case 'setxattr': await native.setxattr(p(op.path), 'user.t', Buffer.from(op.value), 0); return;
    case 'utimens': await native.utimens(p(op.path), { sec: op.sec, nsec: 5 }, { sec: op.sec, nsec: 7 }, { noFollow: true }); return;
    case 'stat': return statView(await fsp.lstat(p(op.path), { bigint: true }));
    case 'readlink': return fsp.readlink(p(op.path));
    case 'readdir': return (await fsp.readdir(p(op.path))).sort();
    case 'read': {
      const h = await fsp.open(p(op.path), C.O_RDONLY | C.O_NOFOLLOW);
      try {
        const buf = Buffer.alloc(1 << 16);
        const { bytesRead } = await h.read(buf, 0, buf.length, 0);
        return hash(buf.subarray(0, bytesRead));
      } finally { await h.close(); }
    }
  }
}

function hash(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16);
}

function statView(st: { mode: bigint; size: bigint; nlink: bigint; mtimeNs: bigint; isDirectory(): boolean }): string {
  // A directory's size depends on the filesystem's own layout: compared by mode only. Times are
  // the moments of each side's own writes, except what utimens set (its nanoseconds: 7).
  const mtime = st.mtimeNs % 1_000_000_000n === 7n ? ` mtime ${st.mtimeNs}` : '';
  return st.isDirectory() ? `dir ${st.mode.toString(8)}${mtime}` : `${st.mode.toString(8)} size ${st.size} nlink ${st.nlink}${mtime}`;
}

async function outcome(f: () => Promise<unknown>): Promise<string> {
  try {
    return `ok ${JSON.stringify(await f()) ?? ''}`;
  } catch (err) {
    return `error ${(err as { code?: string }).code ?? String(err)}`;
  }
}

/** Every object under `root` (the private directory left out): type, mode, size, nlink, times of files, content, target, user xattrs. */
async function treeOf(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await fsp.readdir(join(root, rel))).sort()) {
      if (rel === '' && name === RESERVED_NAME) continue;
      const r = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, r);
      const st = await fsp.lstat(full, { bigint: true });
      const xs = (await native.listxattr(full)).filter((n) => n.startsWith('user.')).sort();
      const xv = await Promise.all(xs.map(async (n) => `${n}=${(await native.getxattr(full, n)).toString()}`));
      let what = `${statView(st)} xattrs [${xv.join(',')}]`;
      if (st.isSymbolicLink()) what += ` -> ${await fsp.readlink(full)}`;
      else if (st.isFile()) what += ` data ${hash(await fsp.readFile(full))}`;
      out[r] = what;
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return out;
}

async function modelRun(t: ExecutionContext, seed: number): Promise<void> {
  t.log(`seed ${seed} (replay: STRATA_STORE_DIR_SEED=${seed})`);
  process.chdir(elsewhere);
  const rngs = [new Rng(seed), new Rng(seed ^ 0x2545f491)];
  const pairs = [a, b];
  for (let i = 0; i < OPS; i++) {
    // Both stores' ops at once: neither may land in the other's tree.
    const ops = rngs.map((r) => randomOp(r));
    const results = await Promise.all(pairs.map(async (p, k) => {
      const op = ops[k]!;
      const [got, want] = await Promise.all([outcome(() => viaCore(p.core, op)), outcome(() => viaNative(p.native, op))]);
      return { op, got, want };
    }));
    for (const [k, r] of results.entries()) {
      if (r.got !== r.want) t.fail(`store ${k ? 'b' : 'a'} op ${i} ${JSON.stringify(r.op)}: strata ${r.got}, native ${r.want}`);
    }
  }
  t.deepEqual(await treeOf(a.store.root), await treeOf(a.native), 'store a');
  t.deepEqual(await treeOf(b.store.root), await treeOf(b.native), 'store b');
  t.deepEqual(await fsp.readdir(elsewhere), [], 'nothing reached the working directory');
}

test.serial(`two stores in one process, working directory elsewhere: every outcome and both trees as on native directories (seed ${SEED})`, async (t) => {
  await modelRun(t, SEED);
});

test.serial(`the same with the *xattrat calls off (their fallback; seed ${SEED + 1})`, async (t) => {
  const was = native.xattrAt();
  native.xattrAt(false);
  try {
    await modelRun(t, SEED + 1);
  } finally {
    native.xattrAt(was);
  }
});

test.serial('a store-relative path near PATH_MAX works through the core (no prefix is added to it)', async (t) => {
  process.chdir('/');
  const name = 'p'.repeat(250);
  let path = '';
  for (let i = 0; i < 15; i++) {
    path += `/${name}`;
    await a.core.mkdir(path, 0o755, ROOT);
  }
  // One shorter directory so that the file's namespace path is 4095 bytes (4094 store-relative).
  path += `/${'q'.repeat(4095 - path.length - 2 - 250)}`;
  await a.core.mkdir(path, 0o755, ROOT);
  const file = `${path}/${'f'.repeat(250)}`;
  t.is(file.length, 4095);
  const { handle } = await a.core.create(file, 0o600, C.O_WRONLY, ROOT);
  await a.core.release(handle);
  t.is(Number((await a.core.getattr(file)).size), 0);
  await a.core.unlink(file);
  // Past PATH_MAX (4096 with its NUL) one system call cannot take it, but the kernel's FUSE hands a tree
  // deeper than that over one name at a time: the layer opens the directory part in pieces (atpath.h).
  const past = `${path}/${'f'.repeat(252)}`;
  t.is(await outcome(() => a.core.getattr(past)), 'error ENOENT');
  const made = await a.core.create(past, 0o600, C.O_WRONLY, ROOT);
  await a.core.release(made.handle);
  t.is(Number((await a.core.getattr(past)).size), 0);
  await a.core.unlink(past);
});

/** chdir into `root`, then into each of `names` in turn (a directory deeper than PATH_MAX is reached so natively). */
function chdirDeep(root: string, names: string[]): void {
  process.chdir(root);
  for (const n of names) process.chdir(n);
}

/** `op` with its paths under the namespace directory `prefix`. */
function under(prefix: string, op: Op): Op {
  return 'path' in op ? { ...op, path: prefix + op.path } : { ...op, from: prefix + op.from, to: prefix + op.to };
}

test.serial(`below a directory deeper than PATH_MAX (a program reaches it through relative paths; the kernel hands its names over one at a time): every outcome and the tree as on a native directory (seed ${SEED + 2})`, async (t) => {
  const seed = SEED + 2;
  t.log(`seed ${seed} (replay: STRATA_STORE_DIR_SEED=${seed - 2})`);
  const names = ['deep', ...Array.from({ length: 24 }, (_, i) => `${i}-${'d'.repeat(200)}`)];
  const prefix = `/${names.join('/')}`;
  t.true(Buffer.byteLength(prefix) > 4096, `${Buffer.byteLength(prefix)} bytes`);
  for (let i = 1; i <= names.length; i++) await a.core.mkdir(`/${names.slice(0, i).join('/')}`, 0o755, ROOT);
  process.chdir(a.native);
  for (const n of names) {
    await fsp.mkdir(n, 0o755);
    process.chdir(n);
  }
  try {
    // The native side works relative to the deep directory (the working directory), as a program would.
    const rng = new Rng(seed);
    for (let i = 0; i < OPS; i++) {
      const op = randomOp(rng);
      const [got, want] = await Promise.all([outcome(() => viaCore(a.core, under(prefix, op))), outcome(() => viaNative('.', op))]);
      if (got !== want) t.fail(`op ${i} ${JSON.stringify(op)}: strata ${got}, native ${want}`);
    }
    chdirDeep(a.store.root, names);
    const store = await treeOf('.');
    chdirDeep(a.native, names);
    t.deepEqual(store, await treeOf('.'));
    t.true(Object.keys(store).length > 0, 'the ops left something to compare');
  } finally {
    process.chdir(elsewhere);
    // rm walks a tree deeper than PATH_MAX relative to its directories (Node's rmSync builds whole paths).
    for (const root of [a.native, a.store.root]) spawnSync('rm', ['-rf', 'deep'], { cwd: root });
  }
});

async function symlinkXattrs(t: ExecutionContext, sub: string): Promise<void> {
  const dir = a.store.dir;
  await dir.mkdir(sub, 0o755);
  await fsp.writeFile(join(a.store.root, `${sub}/target`), 'x');
  await dir.symlink('target', `${sub}/link`);
  await dir.setxattr(`${sub}/link`, 'trusted.strata.test', Buffer.from('on-link'), 0);
  t.is((await dir.getxattr(`${sub}/link`, 'trusted.strata.test')).toString(), 'on-link');
  t.true((await dir.listxattr(`${sub}/link`)).includes('trusted.strata.test'));
  t.false((await native.listxattr(join(a.store.root, `${sub}/target`))).includes('trusted.strata.test'), 'the target has none');
  t.true((await native.listxattr(join(a.store.root, `${sub}/link`))).includes('trusted.strata.test'), 'lgetxattr sees it on the link');
  await dir.removexattr(`${sub}/link`, 'trusted.strata.test');
  t.is(await outcome(() => dir.getxattr(`${sub}/link`, 'trusted.strata.test')), 'error ENODATA');
  t.is(await outcome(() => dir.getxattr(`${sub}/none`, 'user.x')), 'error ENOENT');
}

test.serial("extended attributes of a symlink reached relative to the root are the symlink's own (the kernel's *xattrat calls, Linux 6.13 on)", async (t) => {
  await symlinkXattrs(t, 'xs');
  const [maj, min] = release().split('.').map(Number) as [number, number];
  if (maj > 6 || (maj === 6 && min >= 13)) t.true(native.xattrAt(), `this kernel (${release()}) has them: no fallback was taken`);
});

test.serial('the fallback for a kernel without the *xattrat calls (O_PATH + /proc/self/fd) gives the same answers', async (t) => {
  const was = native.xattrAt();
  native.xattrAt(false);
  try {
    await symlinkXattrs(t, 'xs-fallback');
    t.false(native.xattrAt());
  } finally {
    native.xattrAt(was);
  }
});

test.serial('the layer refuses a bad directory descriptor and names the failing call', async (t) => {
  await t.throwsAsync(() => native.statAt(-5, 'x'), { instanceOf: RangeError });
  const err = await t.throwsAsync(() => a.store.dir.lstat('no/such'));
  t.is((err as { code?: string }).code, 'ENOENT');
  t.is((err as { syscall?: string }).syscall, 'lstat');
  t.is((err as { path?: string }).path, 'no/such');
});
