// Behaviour of reconcile (src/mirror/reconcile.ts) with diffTree
// (src/mirror/tree-diff.ts) as the judge: a real tree in a temp dir is synced
// into an archive, must then compare equal, and after each kind of change
// diffTree names the change and a second reconcile brings the archive back to
// equal, shipping only what changed. Runs against every archive client that
// exists (the in-memory test archive and the real file:// client).
import { AT_FDCWD } from '../../src/native/index.js';
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { reconcile, type ReconcileOptions } from '../../src/mirror/reconcile.js';
import { diffTree, type Difference } from '../../src/mirror/tree-diff.js';
import { readObjectId } from '../../src/store/object-ids.js';
import { RESERVED_NAME } from '../../src/store/local-store.js';
import { BLOCK_SIZE, ROOT_ID } from '../../src/protocol/records.js';
import * as native from '../../src/native/index.js';
import type { ArchiveClient } from '../../src/protocol/archive-api.js';
import { ShippingSink, VOLUME, archiveFixtures, removeArchiveFixtures, type ArchiveFixture } from '../helpers/memory-archive.js';
import { aclXattr } from '../helpers/acl.js';

const base = mkdtempSync(join(tmpdir(), 'strata-reconcile-'));
test.after.always(() => rmSync(base, { recursive: true, force: true }));
test.after.always(removeArchiveFixtures);
let counter = 0;

const T0 = { sec: 1_700_000_000, nsec: 123_456_789 };

async function setTimes(p: string, sec: number, nsec: number): Promise<void> {
  await native.utimens(p, { sec, nsec }, { sec, nsec }, { noFollow: true });
}

/** A tree with every kind of object the archive keeps. */
async function buildTree(root: string): Promise<void> {
  await fsp.mkdir(join(root, RESERVED_NAME), { recursive: true });
  await fsp.writeFile(join(root, RESERVED_NAME, 'private'), 'not part of the tree');
  await fsp.mkdir(join(root, 'a/sub/deeper'), { recursive: true });
  await fsp.mkdir(join(root, 'b'));
  await fsp.writeFile(join(root, 'a/f1'), 'hello\n');
  await fsp.writeFile(join(root, 'a/sub/deeper/f2'), Buffer.alloc(3 * BLOCK_SIZE + 100, 7));
  await fsp.writeFile(join(root, 'a/sub/f3'), 'three');
  // A big file with distinct blocks.
  const big = Buffer.alloc(40 * BLOCK_SIZE + 1234);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  await fsp.writeFile(join(root, 'big'), big);
  // Sparse: data, a hole of 100 blocks, data at the end.
  const sparse = await fsp.open(join(root, 'sparse'), 'w');
  await sparse.write(Buffer.alloc(1000, 1), 0, 1000, 0);
  await sparse.write(Buffer.alloc(1000, 2), 0, 1000, 100 * BLOCK_SIZE);
  await sparse.close();
  execFileSync('truncate', ['-s', '50M', join(root, 'b/empty-sparse')]);
  await fsp.symlink('a/f1', join(root, 'link'));
  await fsp.symlink('/nowhere/at/all', join(root, 'b/dangling'));
  await native.mknod(join(root, 'b/fifo'), 0o010644, 0);
  await native.mknod(join(root, 'b/null'), 0o020600, native.makedev(1, 3));
  await fsp.link(join(root, 'a/f1'), join(root, 'b/f1-hard'));
  await native.setxattr(join(root, 'a/f1'), 'user.color', Buffer.from('blue'), 0);
  await native.setxattr(join(root, 'a'), 'user.dir', Buffer.from([0, 1, 2, 255]), 0);
  await native.setxattr(join(root, 'b/dangling'), 'trusted.note', Buffer.from('on a symlink'), 0);
  await fsp.chown(join(root, 'a/sub/f3'), 1234, 5678);
  await fsp.chmod(join(root, 'a/sub/f3'), 0o640);
  // Exact ns times everywhere, deepest first (a child's change moves its parent's mtime).
  for (const p of ['a/sub/deeper/f2', 'a/sub/deeper', 'a/sub/f3', 'a/sub', 'a/f1', 'big', 'sparse', 'b/empty-sparse', 'link', 'b/dangling', 'b/fifo', 'b/null', 'a', 'b', '.']) {
    await setTimes(join(root, p), T0.sec + (counter++ % 97), T0.nsec + counter);
  }
}

interface Ctx {
  store: string;
  client: ArchiveClient;
}

async function setup(fx: ArchiveFixture): Promise<Ctx> {
  const store = join(base, `store-${counter++}`);
  await fsp.mkdir(store);
  await buildTree(store);
  const client = await fx.open();
  await client.createVolume(VOLUME);
  return { store, client };
}

async function sync(c: Ctx, extra: Partial<ReconcileOptions> = {}): Promise<ShippingSink> {
  const sink = new ShippingSink(c.client, VOLUME);
  await reconcile({ store: c.store, archive: c.client, volume: VOLUME, sink, ...extra });
  await sink.ship();
  return sink;
}

async function diff(c: Ctx): Promise<Difference[]> {
  return (await diffTree({ store: c.store, archive: c.client, volume: VOLUME })).differences;
}

function kinds(ds: Difference[]): string[] {
  return ds.map((d) => `${d.path}:${d.kind}`).sort();
}

const fixtures = archiveFixtures();

for (const fx of fixtures) {
  test(`[${fx.name}] initial sync: the archive equals the store, ids are assigned, a second run emits nothing`, async (t) => {
    const c = await setup(fx);
    const before = await diff(c);
    t.true(before.some((d) => d.kind === 'missing-on-archive' && d.path === '/a'));
    const totals: number[] = [];
    const first = await sync(c, { onProgress: (done) => totals.push(done.entries) });
    t.deepEqual(await diff(c), []);
    t.is(await readObjectId(c.store, AT_FDCWD), ROOT_ID);
    t.truthy(await readObjectId(join(c.store, 'a/sub/deeper/f2'), AT_FDCWD));
    t.is(await readObjectId(join(c.store, 'a/f1'), AT_FDCWD), await readObjectId(join(c.store, 'b/f1-hard'), AT_FDCWD));
    t.is(first.count('link'), 1);
    // Holes are not shipped: big + f2 + f3 + f1 + the two data blocks of sparse (a whole one, then the short last one).
    t.is(first.writeBytes(), 40 * BLOCK_SIZE + 1234 + 3 * BLOCK_SIZE + 100 + 5 + 6 + BLOCK_SIZE + 1000);
    t.true(totals.length > 0);
    const second = await sync(c);
    t.deepEqual(second.records, []);
    // Even comparing every block: nothing to ship.
    const third = await sync(c, { content: 'all' });
    t.deepEqual(third.records, []);
    // The private directory never reached the archive.
    const root = await c.client.dirImage(VOLUME, ROOT_ID);
    t.false(root.entries.some((e) => e.name === RESERVED_NAME));
    await c.client.close();
  });

  /** One change: what diffTree must report, and what the second reconcile may ship. */
  interface Scenario {
    name: string;
    change(root: string): Promise<void>;
    /** Every `path:kind` reported (exactly). */
    expect: string[];
    writeBytes: number;
    options?: (changeStartNs: bigint) => Partial<ReconcileOptions>;
  }

  const scenarios: Scenario[] = [
    {
      name: 'rename a file across directories',
      change: async (r) => { await fsp.rename(join(r, 'a/sub/f3'), join(r, 'b/f3-moved')); },
      expect: ['/a/sub/f3:missing-locally', '/a/sub:mtime', '/b/f3-moved:missing-on-archive', '/b:mtime'],
      writeBytes: 0,
    },
    {
      name: 'move a directory with its subtree',
      change: async (r) => { await fsp.rename(join(r, 'a/sub'), join(r, 'b/sub-moved')); },
      expect: ['/a/sub:missing-locally', '/a:mtime', '/b/sub-moved:missing-on-archive', '/b:mtime'],
      writeBytes: 0,
    },
    {
      // renameat2(RENAME_EXCHANGE) whose record a crash lost: two objects swapped names.
      name: 'exchange two files, and a directory with a fifo, across directories',
      change: async (r) => {
        await native.renameExchangeAt(AT_FDCWD, join(r, 'a/f1'), join(r, 'b/empty-sparse'));
        await native.renameExchangeAt(AT_FDCWD, join(r, 'a/sub'), join(r, 'b/fifo'));
      },
      expect: [
        '/a/f1:id', '/a/f1:mtime', '/a/f1:size', '/a/f1:xattrs', '/a/sub:type', '/a:mtime',
        '/b/empty-sparse:id', '/b/empty-sparse:mtime', '/b/empty-sparse:size', '/b/empty-sparse:xattrs',
        '/b/f1-hard:hard-link', '/b/fifo:type', '/b:mtime',
      ],
      writeBytes: 0,
    },
    {
      // A setfacl, and a chmod that moved its mask, whose records a crash lost.
      name: 'a POSIX ACL set and its mask moved by a chmod',
      change: async (r) => {
        await native.setxattr(join(r, 'a/f1'), 'system.posix_acl_access', aclXattr({ user: 6, group: 4, other: 4, users: [[4242, 7]], mask: 7 }), 0);
        await fsp.chmod(join(r, 'a/f1'), 0o640);
      },
      expect: ['/a/f1:mode', '/a/f1:xattrs', '/b/f1-hard:mode', '/b/f1-hard:xattrs'],
      writeBytes: 0,
    },
    {
      name: 'swap the nesting of two directories',
      change: async (r) => {
        await fsp.rename(join(r, 'a/sub/deeper'), join(r, 'deeper'));
        await fsp.rename(join(r, 'a'), join(r, 'deeper/a'));
      },
      expect: ['/:mtime', '/a:missing-locally', '/deeper:missing-on-archive'],
      writeBytes: 0,
    },
    {
      name: 'edit a block in the middle of a big file, mtime restored (caught by ctime)',
      change: async (r) => {
        const p = join(r, 'big');
        const st = await fsp.stat(p, { bigint: true });
        const fh = await fsp.open(p, 'r+');
        await fh.write(Buffer.from('changed!'), 0, 8, 17 * BLOCK_SIZE + 99);
        await fh.close();
        await native.utimens(p, 'omit', { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) });
      },
      expect: ['/big:content'],
      writeBytes: BLOCK_SIZE,
      options: (since) => ({ changedSinceNs: since }),
    },
    {
      name: 'chmod',
      change: async (r) => { await fsp.chmod(join(r, 'a/f1'), 0o600); await fsp.chmod(join(r, 'a/sub'), 0o700); },
      expect: ['/a/f1:mode', '/a/sub:mode', '/b/f1-hard:mode'],
      writeBytes: 0,
    },
    {
      name: 'chown',
      change: async (r) => { await fsp.lchown(join(r, 'link'), 42, 43); await fsp.chown(join(r, 'b'), 7, 0); },
      expect: ['/b:uid', '/link:gid', '/link:uid'],
      writeBytes: 0,
    },
    {
      name: 'xattr added, changed, removed',
      change: async (r) => {
        await native.setxattr(join(r, 'big'), 'user.new', Buffer.from('x'), 0);
        await native.setxattr(join(r, 'a'), 'user.dir', Buffer.from('other'), 0);
        await native.removexattr(join(r, 'a/f1'), 'user.color');
        await native.setxattr(r, 'user.on-root', Buffer.from('r'), 0);
      },
      expect: ['/:xattrs', '/a/f1:xattrs', '/a:xattrs', '/b/f1-hard:xattrs', '/big:xattrs'],
      writeBytes: 0,
    },
    {
      name: 'truncate: shrink at a block boundary and grow with a hole',
      change: async (r) => {
        await fsp.truncate(join(r, 'big'), 2 * BLOCK_SIZE);
        await fsp.truncate(join(r, 'a/sub/f3'), 10 * BLOCK_SIZE);
        await setTimes(join(r, 'big'), 1, 1);
        await setTimes(join(r, 'a/sub/f3'), 2, 2);
      },
      expect: ['/a/sub/f3:mtime', '/a/sub/f3:size', '/big:mtime', '/big:size'],
      writeBytes: 0,
    },
    {
      name: 'replace a file by a directory of the same name',
      change: async (r) => {
        await fsp.unlink(join(r, 'a/f1'));
        await fsp.mkdir(join(r, 'a/f1'));
        await fsp.writeFile(join(r, 'a/f1/inside'), 'new data');
      },
      expect: ['/a/f1:type', '/a:mtime'],
      writeBytes: 8,
    },
    {
      name: 'add a hard link, and turn a separate file into a link',
      change: async (r) => {
        await fsp.link(join(r, 'big'), join(r, 'a/big-link'));
        await fsp.unlink(join(r, 'b/f1-hard'));
        await fsp.link(join(r, 'big'), join(r, 'b/f1-hard'));
      },
      expect: [
        '/a/big-link:missing-on-archive', '/a:mtime', '/b:mtime',
        '/b/f1-hard:id', '/b/f1-hard:hard-link', '/b/f1-hard:size', '/b/f1-hard:mtime', '/b/f1-hard:xattrs',
      ],
      writeBytes: 0,
    },
    {
      name: 'delete a subtree',
      change: async (r) => { await fsp.rm(join(r, 'a/sub'), { recursive: true }); },
      expect: ['/a/sub:missing-locally', '/a:mtime'],
      writeBytes: 0,
    },
    {
      name: 'a symlink replaced by another with a different target',
      change: async (r) => {
        const st = await fsp.lstat(join(r, 'link'), { bigint: true });
        await fsp.unlink(join(r, 'link'));
        await fsp.symlink('b/fifo', join(r, 'link'));
        await native.utimens(join(r, 'link'), 'omit', { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) }, { noFollow: true });
        await setTimes(r, 5, 5);
      },
      expect: ['/:mtime', '/link:id', '/link:target'],
      writeBytes: 0,
    },
  ];

  for (const s of scenarios) {
    test(`[${fx.name}] ${s.name}: reported, then reconciled shipping only the change`, async (t) => {
      const c = await setup(fx);
      await sync(c);
      t.deepEqual(await diff(c), []);
      const since = BigInt(Date.now()) * 1_000_000n - 5_000_000_000n;
      await s.change(c.store);
      const found = kinds(await diff(c));
      t.deepEqual(found, [...s.expect].sort());
      const fix = await sync(c, s.options?.(since) ?? {});
      t.deepEqual(await diff(c), [], `after reconcile (${fix.records.map((r) => r.op).join(' ')})`);
      t.is(fix.writeBytes(), s.writeBytes);
      const again = await sync(c);
      t.deepEqual(again.records.map((r) => r.op), []);
      await c.client.close();
    });
  }

  test(`[${fx.name}] a file edited with its mtime restored is only shipped when its ctime is in scope`, async (t) => {
    const c = await setup(fx);
    await sync(c);
    const p = join(c.store, 'a/sub/deeper/f2');
    const st = await fsp.stat(p, { bigint: true });
    const fh = await fsp.open(p, 'r+');
    await fh.write(Buffer.from('Z'), 0, 1, BLOCK_SIZE + 5);
    await fh.close();
    await native.utimens(p, 'omit', { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) });
    // A checkpoint after the change: out of scope, nothing shipped.
    const late = await sync(c, { changedSinceNs: BigInt(Date.now() + 60_000) * 1_000_000n });
    t.is(late.writeBytes(), 0);
    t.deepEqual(kinds(await diff(c)), ['/a/sub/deeper/f2:content']);
    // A content predicate (or 'all') finds it.
    const fix = await sync(c, { content: (local) => local.size > 1000n });
    t.is(fix.writeBytes(), BLOCK_SIZE);
    t.deepEqual(await diff(c), []);
    await c.client.close();
  });

  test(`[${fx.name}] an object found by id at another archive name loses the xattrs only the archive has (another name of it, or a removed archive directory)`, async (t) => {
    const c = await setup(fx);
    await native.setxattr(join(c.store, 'a/sub/deeper/f2'), 'user.later', Buffer.from('archive only'), 0);
    await sync(c);
    t.deepEqual(await diff(c), []);
    // A hard-linked file moved to a name visited before its archive name, its xattr removed:
    // the other name (b/f1-hard) is visited later and carries the archive's xattrs.
    await native.removexattr(join(c.store, 'a/f1'), 'user.color');
    await fsp.rename(join(c.store, 'a/f1'), join(c.store, 'a0'));
    // A single-name file moved out of a directory that is then removed: only the removed
    // archive directory still has its entry.
    await native.removexattr(join(c.store, 'a/sub/deeper/f2'), 'user.later');
    await fsp.rename(join(c.store, 'a/sub/deeper/f2'), join(c.store, 'f2-moved'));
    await fsp.rm(join(c.store, 'a/sub'), { recursive: true });
    const fix = await sync(c);
    t.deepEqual(await diff(c), [], `after reconcile (${fix.records.map((r) => r.op).join(' ')})`);
    t.true(fix.records.filter((r) => r.op === 'removexattr').length >= 2);
    t.is(fix.writeBytes(), 0, 'nothing shipped again: the objects were found by id');
    await c.client.close();
  });

  test(`[${fx.name}] reconcile honours an abort signal and a rerun completes`, async (t) => {
    const c = await setup(fx);
    const ac = new AbortController();
    ac.abort();
    await t.throwsAsync(sync(c, { signal: ac.signal }), { any: true, name: 'AbortError' });
    await sync(c);
    t.deepEqual(await diff(c), []);
    await c.client.close();
  });

  test(`[${fx.name}] an interrupted initial sync (half the records shipped) converges on the next run`, async (t) => {
    const c = await setup(fx);
    const sink = new ShippingSink(c.client, VOLUME);
    await reconcile({ store: c.store, archive: c.client, volume: VOLUME, sink });
    sink.records.splice(Math.floor(sink.records.length / 2));
    await sink.ship();
    t.true((await diff(c)).length > 0);
    await sync(c);
    t.deepEqual(await diff(c), []);
    await c.client.close();
  });
}

test('the progress callback gets a total from a local walk when the archive is empty', async (t: ExecutionContext) => {
  const fx = fixtures[0]!;
  const c = await setup(fx);
  const calls: { done: { entries: number; bytes: number }; total?: { entries: number; bytes: number } }[] = [];
  const stats = await reconcile({
    store: c.store, archive: c.client, volume: VOLUME, sink: new ShippingSink(c.client, VOLUME),
    onProgress: (done, total) => calls.push(total ? { done, total } : { done }),
  });
  const last = calls.at(-1)!;
  t.deepEqual(last.done, last.total);
  t.is(last.done.entries, stats.entries);
  t.true(stats.bytes > 40 * BLOCK_SIZE);
});

// An object that reached the store without strata, whose own xattrs fill the file system's space for them:
// its id does not fit. The first mirroring of such a store says which object and what to do (it said
// "ENOSPC … lsetxattr 'd'" until 2026-12-06); once there is room it mirrors. Runs on ext4 (bounded space).
const reconcileFsType = execFileSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).trim();
const fullTitle = 'an object whose xattrs leave no room for strata\'s id: a clear error naming it; mirrored once there is room';
(reconcileFsType === 'ext2/ext3' ? test : test.skip)(reconcileFsType === 'ext2/ext3' ? fullTitle : `${fullTitle} (skipped: ${tmpdir()} is ${reconcileFsType}, not ext4)`, async (t: ExecutionContext) => {
  const c = await setup(fixtures[0]!);
  const full = join(c.store, 'b');
  const set: string[] = [];
  for (const size of [200, 50, 10, 1]) {
    for (let i = 0; i < 100; i++) {
      const name = `user.f${size}_${i}`;
      const ok = await native.setxattr(full, name, Buffer.alloc(size, 0x61), 0).then(() => true, () => false);
      if (!ok) break;
      set.push(name);
    }
  }
  const err = await t.throwsAsync(sync(c));
  t.regex(err?.message ?? '', /^b: its extended attributes leave no room for strata's object id \(trusted\.strata\.id, 32 bytes\).*remove one of them/);
  t.is((err as { code?: string } | undefined)?.code, 'ENOSPC');
  await native.removexattr(full, set[0]!);
  await sync(c);
  t.deepEqual((await diffTree({ store: c.store, archive: c.client, volume: VOLUME })).differences, []);
  t.not(await readObjectId(full, AT_FDCWD), null);
});
