// The core's node-addressed API (src/core/nodes.ts) without FUSE: a seeded
// random sequence of operations, each made by node id as the kernel makes
// them (a path is looked up one name at a time; nodes are held past the loss
// of their last name, as by an open file or a working directory; forgotten
// once nothing holds them), and the same operation on a native directory
// through descriptors and paths. Every outcome (success or errno) and every
// attribute read must agree; at the end the two trees must be equal and the
// node table must be empty but for the root.
//
// STRATA_NODES_SEED / STRATA_NODES_RUNS choose other sequences (the seed of a
// failing run is in its message).
import test, { type ExecutionContext } from 'ava';
import { closeSync, constants as C, fstatSync, ftruncateSync, fchmodSync, futimesSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmdirSync, symlinkSync, unlinkSync, writeSync, type BigIntStats } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { Filesystem, type Caller } from '../../src/core/filesystem.js';
import { Nodes, ROOT_NODEID } from '../../src/core/nodes.js';
import * as native from '../../src/native/index.js';
import { enterTempStore } from '../helpers/core-store.js';
import { Rng } from '../helpers/model-tree.js';
import { pictureOf } from '../helpers/tree.js';

const { base, store, leave } = await enterTempStore('strata-nodes-');
test.after.always(leave);

const ROOT: Caller = { uid: 0, gid: 0, pid: process.pid };
const O_PATH = 0o10000000;
const NAMES = ['a', 'b', 'c', 'd'];

type Kind = 'file' | 'dir' | 'symlink';
type Outcome = string; // 'ok' or an errno code

async function outcomeOf(f: () => unknown): Promise<Outcome> {
  try {
    await f();
    return 'ok';
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    return code;
  }
}

function kindOf(st: { mode: bigint | number }): Kind {
  const t = Number(st.mode) & 0o170000;
  return t === 0o040000 ? 'dir' : t === 0o120000 ? 'symlink' : 'file';
}

/** What a program sees of an object's attributes, as compared between the two sides. */
function view(st: BigIntStats): string {
  const kind = kindOf(st);
  return `${kind} mode ${(Number(st.mode) & 0o7777).toString(8)} nlink ${st.nlink}${kind === 'file' ? ` size ${st.size}` : ''}`;
}

/** Every path under `root` (store-relative, '' for the root itself), with its kind. */
function walk(root: string): Array<{ path: string; kind: Kind }> {
  const out: Array<{ path: string; kind: Kind }> = [{ path: '', kind: 'dir' }];
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const kind = kindOf(lstatSync(join(root, path)));
      out.push({ path, kind });
      if (kind === 'dir') visit(path);
    }
  };
  visit('');
  return out;
}

interface Held { nodeid: number; kind: Kind; native: number }
interface OpenFile { nodeid: number; handle: number; native: number }

async function runSequence(t: ExecutionContext, seed: number, steps: number): Promise<void> {
  const rng = new Rng(seed);
  const ref = join(base, `ref-${seed}`);
  const top = `run-${seed}`;
  mkdirSync(ref);
  const core = new Filesystem(store);
  await core.mkdir(`/${top}`, 0o755, ROOT);
  const storeTop = join(store.root, top);

  // What the bridge keeps per node: a descriptor of its object (here an O_PATH one, opened when the node is first seen).
  const pathFds = new Map<number, number>();
  const nodes = await Nodes.open(core, (() => { let next = ROOT_NODEID + 1; return () => next++; })(), {
    descriptorOf: (nodeid) => {
      const fd = pathFds.get(nodeid);
      return fd === undefined ? -1 : openSync(`/proc/self/fd/${fd}`, O_PATH);
    },
  });
  const lookups = new Map<number, number>();
  const held: Held[] = [];
  const open: OpenFile[] = [];
  const log: string[] = [];

  const seen = (nodeid: number, storePath: string): void => {
    lookups.set(nodeid, (lookups.get(nodeid) ?? 0) + 1);
    if (!pathFds.has(nodeid)) pathFds.set(nodeid, openSync(storePath, O_PATH | C.O_NOFOLLOW));
  };
  /** The node of `path` (relative to the run's top directory), looked up one name at a time; null when a name is missing. */
  const resolve = async (path: string): Promise<number | null> => {
    const top0 = await nodes.lookup(ROOT_NODEID, top);
    if (top0 === null) throw new Error('the run directory is gone');
    seen(top0.node.nodeid, storeTop);
    let nodeid = top0.node.nodeid;
    let at = '';
    for (const name of path === '' ? [] : path.split('/')) {
      const found = await nodes.lookup(nodeid, name);
      if (found === null) return null;
      at = at === '' ? name : `${at}/${name}`;
      seen(found.node.nodeid, join(storeTop, at));
      nodeid = found.node.nodeid;
    }
    return nodeid;
  };
  const same = (what: string, mine: Outcome, theirs: Outcome): boolean => {
    if (mine === theirs) return true;
    t.fail(`seed ${seed}: ${what}: strata ${mine}, native ${theirs}\n${log.slice(-15).join('\n')}`);
    return false;
  };
  const dropHeld = (i: number): void => {
    closeSync(held[i]!.native);
    held.splice(i, 1);
  };
  const closeUnknownDescriptors = (): void => {
    for (const [nodeid, fd] of pathFds) {
      if (nodes.table.find(nodeid) === undefined) {
        closeSync(fd);
        pathFds.delete(nodeid);
      }
    }
  };

  const done = new Map<string, number>();
  for (let step = 0; step < steps; step++) {
    const tree = walk(ref);
    const dirs = tree.filter((e) => e.kind === 'dir').map((e) => e.path);
    const named = tree.filter((e) => e.path !== '');
    const inDir = (): string => { const d = rng.pick(dirs); const n = rng.pick(NAMES); return d === '' ? n : `${d}/${n}`; };
    const op = rng.weighted([
      ['create', 6], ['mkdir', 3], ['symlink', 1], ['link', 2], ['unlink', 3], ['rmdir', 2], ['rename', 4],
      ['hold', 3], ['held', 8], ['write', 3], ['hsize', 1], ['release', 2], ['forget', 3], ['unhold', 1],
    ] as const);
    if (op === 'create') {
      const path = inDir();
      const there = tree.find((e) => e.path === path);
      // The kernel sends CREATE only for a name it found missing; an existing file is opened (OPEN).
      if (there !== undefined && there.kind !== 'file') continue;
      const mode = rng.pick([0o644, 0o600, 0o755]);
      const parent = await resolve(dirname(path) === '.' ? '' : dirname(path));
      if (parent === null) { t.fail(`seed ${seed}: directory of ${path} not found`); return; }
      log.push(`${step} ${there ? 'open' : 'create'} ${path}`);
      let opened: { nodeid: number; handle: number } | null = null;
      const mine = await outcomeOf(async () => {
        if (there === undefined) {
          const { node, res } = await nodes.create(parent, basename(path), mode, C.O_RDWR | C.O_CREAT | C.O_EXCL, ROOT);
          seen(node.nodeid, join(storeTop, path));
          opened = { nodeid: node.nodeid, handle: res.handle };
        } else {
          const nodeid = await resolve(path);
          const { res } = await nodes.open(nodeid!, C.O_RDWR, ROOT);
          opened = { nodeid: nodeid!, handle: res.handle };
        }
      });
      let fd = -1;
      const theirs = await outcomeOf(() => { fd = openSync(join(ref, path), C.O_RDWR | C.O_CREAT | (there ? 0 : C.O_EXCL), mode); });
      if (!same(`open/create ${path}`, mine, theirs) || opened === null) continue;
      const o: OpenFile = { ...(opened as { nodeid: number; handle: number }), native: fd };
      open.push(o);
      await writeBoth(o);
      if (rng.chance(0.5)) await releaseBoth(open.length - 1);
    } else if (op === 'mkdir' || op === 'symlink') {
      const path = inDir();
      const parent = await resolve(dirname(path) === '.' ? '' : dirname(path));
      if (parent === null) continue;
      const target = rng.pick(['a', '../b', '/nowhere', 'c/d']);
      log.push(`${step} ${op} ${path}`);
      const mine = await outcomeOf(async () => {
        const made = op === 'mkdir' ? await nodes.mkdir(parent, basename(path), 0o755, ROOT) : await nodes.symlink(parent, basename(path), target, ROOT);
        seen(made.node.nodeid, join(storeTop, path));
      });
      const theirs = await outcomeOf(() => (op === 'mkdir' ? mkdirSync(join(ref, path), 0o755) : symlinkSync(target, join(ref, path))));
      same(`${op} ${path}`, mine, theirs);
    } else if (op === 'link') {
      const from = named.filter((e) => e.kind !== 'dir');
      if (from.length === 0) continue;
      const src = rng.pick(from).path;
      const path = inDir();
      const node = await resolve(src);
      const parent = await resolve(dirname(path) === '.' ? '' : dirname(path));
      if (node === null || parent === null) { t.fail(`seed ${seed}: ${src} or the directory of ${path} not found`); return; }
      log.push(`${step} link ${src} ${path}`);
      const mine = await outcomeOf(async () => { seen((await nodes.link(node, parent, basename(path))).node.nodeid, join(storeTop, path)); });
      const theirs = await outcomeOf(() => linkSync(join(ref, src), join(ref, path)));
      same(`link ${src} ${path}`, mine, theirs);
    } else if (op === 'unlink' || op === 'rmdir') {
      const some = named.filter((e) => (op === 'rmdir') === (e.kind === 'dir'));
      if (some.length === 0) continue;
      const path = rng.pick(some).path;
      const parent = await resolve(dirname(path) === '.' ? '' : dirname(path));
      if (parent === null) continue;
      log.push(`${step} ${op} ${path}`);
      const mine = await outcomeOf(() => (op === 'unlink' ? nodes.unlink(parent, basename(path)) : nodes.rmdir(parent, basename(path))));
      const theirs = await outcomeOf(() => (op === 'unlink' ? unlinkSync(join(ref, path)) : rmdirSync(join(ref, path))));
      same(`${op} ${path}`, mine, theirs);
    } else if (op === 'rename') {
      if (named.length === 0) continue;
      const src = rng.pick(named).path;
      const dst = rng.chance(0.3) ? rng.pick(named).path : inDir();
      const flag = rng.weighted([[null, 4], ['noreplace', 1], ['exchange', 1]] as const);
      const from = await resolve(dirname(src) === '.' ? '' : dirname(src));
      const to = await resolve(dirname(dst) === '.' ? '' : dirname(dst));
      if (from === null || to === null) continue;
      log.push(`${step} rename${flag ? `(${flag})` : ''} ${src} ${dst}`);
      const mine = await outcomeOf(() => nodes.rename(from, basename(src), to, basename(dst), flag));
      const a = join(ref, src);
      const b = join(ref, dst);
      const theirs = await outcomeOf(() => (flag === 'exchange' ? native.renameExchangeAt(native.AT_FDCWD, a, b)
        : flag === 'noreplace' ? native.renameNoReplaceAt(native.AT_FDCWD, a, b) : renameSync(a, b)));
      same(`rename ${src} ${dst}`, mine, theirs);
    } else if (op === 'hold') {
      if (named.length === 0) continue;
      const e = rng.pick(named);
      const nodeid = await resolve(e.path);
      if (nodeid === null) { t.fail(`seed ${seed}: ${e.path} not found\n${log.slice(-15).join('\n')}`); return; }
      const flags = e.kind === 'file' ? C.O_RDWR : e.kind === 'dir' ? C.O_RDONLY | C.O_DIRECTORY : O_PATH | C.O_NOFOLLOW;
      const fd = openSync(join(ref, e.path), flags);
      log.push(`${step} hold ${e.path} as node ${nodeid}`);
      // One node per object: a held node of the same object (another hard link's name, or this one) is this node.
      const ino = fstatSync(fd).ino;
      for (const h of held) {
        if (fstatSync(h.native).ino === ino) t.is(h.nodeid, nodeid, `seed ${seed}: ${e.path} is another node than the same object held before\n${log.slice(-15).join('\n')}`);
      }
      held.push({ nodeid, kind: e.kind, native: fd });
    } else if (op === 'held') {
      if (held.length === 0) continue;
      const h = rng.pick(held);
      const what = rng.weighted([['getattr', 3], ['chmod', 1], ['size', 1], ['times', 1], ['write', 1], ['xattr', 1], ['list', 1]] as const);
      log.push(`${step} ${what} through node ${h.nodeid} (${h.kind})`);
      if (what === 'getattr') {
        const mine = (await nodes.getattr(h.nodeid, 0, false)).st;
        const theirs = fstatSync(h.native, { bigint: true });
        t.is(view(mine), view(theirs), `seed ${seed}: getattr of node ${h.nodeid}\n${log.slice(-15).join('\n')}`);
      } else if (what === 'chmod' && h.kind !== 'symlink') {
        const mode = rng.pick([0o600, 0o644, 0o700, 0o755]);
        const st = await nodes.setattr(h.nodeid, 0, { mode }, ROOT);
        fchmodSync(h.native, mode);
        t.is(view(st), view(fstatSync(h.native, { bigint: true })), `seed ${seed}: chmod through node ${h.nodeid}`);
      } else if (what === 'size' && h.kind === 'file') {
        const size = rng.int(0, 70_000);
        const st = await nodes.setattr(h.nodeid, 0, { size }, ROOT);
        ftruncateSync(h.native, size);
        t.is(view(st), view(fstatSync(h.native, { bigint: true })), `seed ${seed}: truncate through node ${h.nodeid}`);
      } else if (what === 'times' && h.kind !== 'symlink') {
        const sec = rng.int(1_000_000, 1_700_000_000);
        const st = await nodes.setattr(h.nodeid, 0, { atime: { sec, nsec: 0 }, mtime: { sec, nsec: 0 } }, ROOT);
        futimesSync(h.native, sec, sec);
        t.is(st.mtimeNs, BigInt(sec) * 1_000_000_000n, `seed ${seed}: utimens through node ${h.nodeid}`);
      } else if (what === 'write' && h.kind === 'file') {
        // open(2) of the node, as of /proc/PID/fd/N of a program holding it.
        const { res } = await nodes.open(h.nodeid, C.O_RDWR, ROOT);
        const o: OpenFile = { nodeid: h.nodeid, handle: res.handle, native: h.native };
        await writeBoth(o, false);
        await nodes.release(h.nodeid, res.handle);
      } else if (what === 'xattr' && h.kind !== 'symlink') {
        const value = Buffer.from(`v${rng.int(0, 999)}`);
        await nodes.setxattr(h.nodeid, 'user.k', value, 0, ROOT);
        await native.setxattr('', 'user.k', value, 0, h.native);
        t.deepEqual(await nodes.getxattr(h.nodeid, 'user.k'), value, `seed ${seed}: getxattr through node ${h.nodeid}`);
        t.true((await nodes.listxattr(h.nodeid)).includes('user.k'));
      } else if (what === 'list' && h.kind === 'dir') {
        const handle = await nodes.opendir(h.nodeid);
        try {
          const names = (await nodes.readdir(h.nodeid).catch((err: { code?: string }) => err.code ?? 'error'));
          const theirs = readdirSync(`/proc/self/fd/${h.native}`).sort();
          if (typeof names === 'string') t.is(names, 'ENOENT', `seed ${seed}: readdir of a directory with no name left`);
          else t.deepEqual(names.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), theirs, `seed ${seed}: readdir of node ${h.nodeid}`);
        } finally {
          await nodes.releasedir(h.nodeid, handle);
        }
      }
    } else if (op === 'write') {
      if (open.length === 0) continue;
      const o = rng.pick(open);
      log.push(`${step} write through handle ${o.handle}`);
      await writeBoth(o);
    } else if (op === 'hsize') {
      if (open.length === 0) continue;
      const o = rng.pick(open);
      const size = rng.int(0, 70_000);
      log.push(`${step} ftruncate handle ${o.handle} to ${size}`);
      const st = await nodes.setattr(o.nodeid, o.handle, { size }, ROOT);
      ftruncateSync(o.native, size);
      t.is(view(st), view(fstatSync(o.native, { bigint: true })), `seed ${seed}: ftruncate of handle ${o.handle}`);
    } else if (op === 'release') {
      if (open.length === 0) continue;
      await releaseBoth(rng.int(0, open.length - 1));
    } else if (op === 'unhold') {
      if (held.length === 0) continue;
      dropHeld(rng.int(0, held.length - 1));
    } else if (op === 'forget') {
      // The kernel forgets a node once nothing refers to it (no open file, no working directory: not held here).
      const free = [...lookups.keys()].filter((id) => !held.some((h) => h.nodeid === id) && !open.some((o) => o.nodeid === id));
      if (free.length === 0) continue;
      const nodeid = rng.pick(free);
      log.push(`${step} forget node ${nodeid} (${lookups.get(nodeid)} lookups)`);
      nodes.forget(nodeid, lookups.get(nodeid)!);
      lookups.delete(nodeid);
      t.is(nodes.table.find(nodeid), undefined, `seed ${seed}: node ${nodeid} stays in the table after its last lookup was forgotten`);
    }
    closeUnknownDescriptors();
    done.set(op, (done.get(op) ?? 0) + 1);
  }
  t.log(`seed ${seed}: ${[...done].map(([k, n]) => `${k} ${n}`).join(', ')}; ${log.filter((l) => / (create|mkdir|symlink|link|unlink|rmdir|rename)/.test(l)).length} names made or changed`);

  // Everything let go of: the table holds the root alone.
  while (open.length > 0) await releaseBoth(0);
  while (held.length > 0) dropHeld(0);
  for (const [nodeid, count] of lookups) nodes.forget(nodeid, count);
  closeUnknownDescriptors();
  t.is(nodes.size, 1, `seed ${seed}: nodes left in the table: ${nodes.size - 1}`);
  t.deepEqual(await pictureOf(storeTop), await pictureOf(ref), `seed ${seed}: the trees differ\n${log.slice(-30).join('\n')}`);

  async function writeBoth(o: OpenFile, compare = true): Promise<void> {
    const length = rng.int(1, 9000);
    const at = rng.int(0, 60_000);
    const data = Buffer.alloc(length, rng.int(1, 255));
    const n = await core.write(o.handle, data, length, at);
    writeSync(o.native, data, 0, length, at);
    t.is(n, length);
    if (!compare) return;
    const st = await core.fgetattr(o.handle);
    t.is(view(st), view(fstatSync(o.native, { bigint: true })), `seed ${seed}: after a write through handle ${o.handle}`);
    const back = Buffer.alloc(length);
    const theirs = Buffer.alloc(length);
    await core.read(o.handle, back, length, at);
    readSync(o.native, theirs, 0, length, at);
    t.true(back.equals(theirs), `seed ${seed}: bytes read back through handle ${o.handle}`);
  }

  async function releaseBoth(i: number): Promise<void> {
    const o = open[i]!;
    open.splice(i, 1);
    log.push(`release handle ${o.handle}`);
    await nodes.release(o.nodeid, o.handle);
    // The native descriptor may be a held node's too.
    if (!held.some((h) => h.native === o.native)) closeSync(o.native);
  }
}

const firstSeed = Number(process.env['STRATA_NODES_SEED'] ?? 20261206);
const runs = Number(process.env['STRATA_NODES_RUNS'] ?? 6);

test.serial(`the node API against a native directory: ${runs} seeded sequences of 250 operations from seed ${firstSeed}`, async (t) => {
  for (let i = 0; i < runs; i++) await runSequence(t, firstSeed + i, 250);
});

test.serial('a hard-linked file keeps its node when one name goes, though the other was never looked up since', async (t) => {
  const core = new Filesystem(store);
  const nodes = await Nodes.open(core, (() => { let next = 1000; return () => next++; })(), { descriptorOf: () => -1 });
  const top = await nodes.mkdir(ROOT_NODEID, 'hardlinks', 0o755, ROOT);
  const { node, res } = await nodes.create(top.node.nodeid, 'a', 0o644, C.O_RDWR | C.O_CREAT, ROOT);
  await nodes.link(node.nodeid, top.node.nodeid, 'b');
  // The kernel forgets the name b (its dentry went), keeps the file open through a.
  nodes.table.forgetName(top.node, 'b', true);
  await nodes.unlink(top.node.nodeid, 'a');
  const b = await nodes.lookup(top.node.nodeid, 'b');
  t.is(b?.node, node, 'b is the node the open file has');
  t.is(b?.st.nlink, 1n);
  await nodes.release(node.nodeid, res.handle);
  // Nameless and without handles or a descriptor: ENOENT, as on a mount that keeps none.
  await nodes.unlink(top.node.nodeid, 'b');
  await t.throwsAsync(nodes.getattr(node.nodeid, 0, false), { code: 'ENOENT' });
});

test.serial('a directory removed while the kernel holds it (a working directory) stays reachable with no descriptor from the mount; its descriptor goes with the node', async (t) => {
  const core = new Filesystem(store);
  const nodes = await Nodes.open(core, (() => { let next = 2000; return () => next++; })(), { descriptorOf: () => -1 });
  const top = await nodes.mkdir(ROOT_NODEID, 'cwd-removed', 0o755, ROOT);
  const d = await nodes.mkdir(top.node.nodeid, 'd', 0o755, ROOT);
  const e = await nodes.mkdir(top.node.nodeid, 'e', 0o700, ROOT);
  await nodes.rmdir(top.node.nodeid, 'd');
  // As natively: stat and opendir of the removed directory work (a link count of 0).
  const st = (await nodes.getattr(d.node.nodeid, 0, false)).st;
  t.true(st.isDirectory());
  t.is(st.nlink, 0n);
  const h = await nodes.opendir(d.node.nodeid);
  await nodes.releasedir(d.node.nodeid, h);
  t.is((await nodes.setattr(d.node.nodeid, 0, { mode: 0o711 }, ROOT)).mode & 0o7777n, 0o711n);
  // Renamed over by another (empty) directory: the same.
  await nodes.mkdir(top.node.nodeid, 'f', 0o755, ROOT);
  await nodes.rename(top.node.nodeid, 'f', top.node.nodeid, 'e', null);
  t.is((await nodes.getattr(e.node.nodeid, 0, false)).st.mode & 0o7777n, 0o700n);
  // A failed rmdir keeps nothing: the directory still has its name.
  await nodes.mkdir(top.node.nodeid, 'g', 0o755, ROOT);
  const g = await nodes.lookup(top.node.nodeid, 'g');
  await nodes.mknod(g!.node.nodeid, 'inside', 0o100644, 0, ROOT);
  await t.throwsAsync(nodes.rmdir(top.node.nodeid, 'g'), { code: 'ENOTEMPTY' });
  // Forgotten: gone from the table (with its descriptor).
  nodes.forget(d.node.nodeid, d.node.nlookup);
  t.is(nodes.table.find(d.node.nodeid), undefined);
  await t.throwsAsync(nodes.getattr(d.node.nodeid, 0, false), { code: 'ESTALE' });
});

test.serial('a name in a directory node, and the node it names, are reached through the directory node\'s descriptor (its path only where the mount keeps none)', async (t) => {
  const core = new Filesystem(store);
  const fds = new Map<number, number>();
  let useDescriptors = true;
  const nodes = await Nodes.open(core, (() => { let next = 3000; return () => next++; })(), {
    descriptorOf: (nodeid) => {
      const fd = fds.get(nodeid);
      return useDescriptors && fd !== undefined ? openSync(`/proc/self/fd/${fd}`, O_PATH) : -1;
    },
  });
  const top = await nodes.mkdir(ROOT_NODEID, 'by-descriptor', 0o755, ROOT);
  const d = await nodes.mkdir(top.node.nodeid, 'd', 0o755, ROOT);
  fds.set(d.node.nodeid, openSync(join(store.root, 'by-descriptor', 'd'), O_PATH));
  // Moved behind the table's back: its path ('by-descriptor/d') names nothing now; its descriptor still names it.
  renameSync(join(store.root, 'by-descriptor', 'd'), join(store.root, 'by-descriptor', 'moved'));
  const made = await nodes.mkdir(d.node.nodeid, 'x', 0o755, ROOT);
  t.is(lstatSync(join(store.root, 'by-descriptor', 'moved', 'x')).ino, Number(made.st.ino));
  const { node: f, res } = await nodes.create(d.node.nodeid, 'f', 0o644, C.O_RDWR | C.O_CREAT, ROOT);
  await nodes.release(f.nodeid, res.handle);
  t.true((await nodes.lookup(d.node.nodeid, 'f')) !== null);
  // The nodes in it too: by their names relative to its descriptor.
  t.is((await nodes.setattr(f.nodeid, 0, { mode: 0o600 }, ROOT)).mode & 0o7777n, 0o600n);
  t.is((await nodes.getattr(f.nodeid, 0, false)).st.mode & 0o7777n, 0o600n);
  await nodes.setxattr(f.nodeid, 'user.k', Buffer.from('v'), 0, ROOT);
  t.deepEqual(await nodes.getxattr(f.nodeid, 'user.k'), Buffer.from('v'));
  t.deepEqual(await nodes.listxattr(f.nodeid), ['user.k']);
  await nodes.removexattr(f.nodeid, 'user.k');
  const opened = await nodes.open(f.nodeid, C.O_RDONLY, ROOT);
  await nodes.release(f.nodeid, opened.res.handle);
  await nodes.access(f.nodeid, C.R_OK);
  t.deepEqual((await nodes.readdir(made.node.nodeid)).map((e) => e.name), ['.', '..']);
  const linked = await nodes.link(f.nodeid, d.node.nodeid, 'f2');
  t.is(linked.st.nlink, 2n);
  await nodes.unlink(d.node.nodeid, 'f2');
  t.is(lstatSync(join(store.root, 'by-descriptor', 'moved', 'f')).mode & 0o7777, 0o600);
  await nodes.rename(d.node.nodeid, 'f', d.node.nodeid, 'g', null);
  await nodes.unlink(d.node.nodeid, 'g');
  await nodes.rmdir(d.node.nodeid, 'x');
  t.deepEqual(readdirSync(join(store.root, 'by-descriptor', 'moved')), []);
  // Without the descriptor, the path: nothing there.
  useDescriptors = false;
  await t.throwsAsync(nodes.mkdir(d.node.nodeid, 'y', 0o755, ROOT), { code: 'ENOENT' });
  closeSync(fds.get(d.node.nodeid)!);
});
