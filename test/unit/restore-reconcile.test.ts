// Re-convergence (after an unclean stop) of a partly restored store: a
// pending directory's entries and a stub's missing blocks are only in the
// archive — nothing may be removed or overwritten there; what a program wrote
// locally (a block of a partial file) is shipped. And a recovery into a store
// root that was emptied but kept strata's marks (a reused disk) restores it all.
import test from 'ava';
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as native from '../../src/native/index.js';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { reconcile } from '../../src/mirror/reconcile.js';
import { diffTree } from '../../src/mirror/tree-diff.js';
import { materialiseOne } from '../../src/restore/materialise.js';
import { markBlocksPresent } from '../../src/store/restore-marks.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-restore-reconcile-');
});
test.after.always(() => entered.leave());

const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 0], mtime: [3, 0], rdev: 0 });

/** The store emptied again (as a reused disk's mountpoint), and a new archive volume with a sink to build it. */
async function emptiedStore(): Promise<{ a: MemoryArchive; build: ShippingSink }> {
  for (const name of readdirSync('.')) rmSync(name, { recursive: true, force: true });
  mkdirSync(entered.store.privateDir, { mode: 0o700 });
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  return { a, build: new ShippingSink(a, VOLUME) };
}

/** Recovers at depth 1 (every directory below the root pending), then materialises each [dir path, dir id, name] as a lookup does. */
async function recoverAndLookUp(a: MemoryArchive, lookups: [string, string, string][]): Promise<boolean[]> {
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const opts = { dir: entered.store.dir, privateDir: entered.store.privateDir, childDirsPending: true, log };
  const made: boolean[] = [];
  for (const [rel, id, name] of lookups) made.push(await materialiseOne(rel, (await a.dirImage(VOLUME, id)).entries.find((e) => e.name === name)!, opts));
  return made;
}

test.serial('a pending directory and the missing blocks of a partial file are left alone; a locally written block is shipped', async (t) => {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const build = new ShippingSink(a, VOLUME);
  const [d, sub, f, g] = ['d', 'e', 'f', 'a'].map((c) => c.repeat(32)) as [string, string, string, string];
  await build.append({ op: 'create', parent: ROOT_ID, name: 'd', id: d, attrs: dir, parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: 'sub', id: sub, attrs: dir, parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: sub, name: 'inside', id: g, attrs: file(0), parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: 'big', id: f, attrs: file(0), parentMtime: [2, 0] });
  await build.append({ op: 'write', id: f, offset: 0, data: Buffer.alloc(4 * BLOCK_SIZE, 7) });
  await build.append({ op: 'setattr', id: f, attrs: file(4 * BLOCK_SIZE) });
  await build.ship();
  // Depth 2: /d restored, /d/sub pending, /d/big a stub.
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  // A program wrote block 1 (as the core would: the bytes, then the map), without its record reaching the journal.
  const fd = openSync('d/big', 'r+');
  writeSync(fd, Buffer.alloc(BLOCK_SIZE, 9), 0, BLOCK_SIZE, BLOCK_SIZE);
  closeSync(fd);
  await markBlocksPresent(entered.store.privateDir, f, 1, 1);
  writeFileSync('d/new', 'x');

  const sink = new ShippingSink(a, VOLUME);
  await reconcile({ store: entered.store.root, archive: a, volume: VOLUME, sink, content: 'all' });
  t.is(sink.count('unlink') + sink.count('rmdir'), 0, JSON.stringify(sink.records.map((r) => r.op)));
  const writes = sink.records.filter((r) => r.op === 'write' && r.id === f);
  t.deepEqual(writes.map((w) => (w.op === 'write' ? [w.id, w.offset, w.data.length] : [])), [[f, BLOCK_SIZE, BLOCK_SIZE]]);
  t.is(sink.records.filter((r) => r.op === 'create').length, 1, 'the new file');
  await sink.ship();
  const inside = await a.dirImage(VOLUME, sub);
  t.deepEqual(inside.entries.map((e) => e.name), ['inside']);
  const data = await a.readRange(VOLUME, f, 0, 4 * BLOCK_SIZE);
  t.is(data[0], 7);
  t.is(data[BLOCK_SIZE], 9);
  t.is(data[2 * BLOCK_SIZE], 7);
});

test.serial('a recovery into an emptied store root that kept its id and xattrs restores the root\'s entries', async (t) => {
  // The store of the test above, emptied as a reused disk's mountpoint would be: its root keeps its xattrs.
  const { a, build } = await emptiedStore();
  await native.setxattr('.', 'user.leftover', Buffer.from('x'), 0);
  await build.append({ op: 'create', parent: ROOT_ID, name: 'kept', id: '9'.repeat(32), attrs: dir, parentMtime: [2, 0] });
  await build.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  t.deepEqual(readdirSync('.').sort(), ['.strata', 'kept']);
  t.false((await native.listxattr('.')).includes('user.leftover'));
});

test.serial('verify compares the entries lookups materialised in a pending directory, and nothing else there', async (t) => {
  const { a, build } = await emptiedStore();
  const [d, sub, f, g, h] = ['1', '2', '3', '4', '5'].map((c) => c.repeat(32)) as [string, string, string, string, string];
  await build.append({ op: 'create', parent: ROOT_ID, name: 'd', id: d, attrs: dir, parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: 'sub', id: sub, attrs: dir, parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: sub, name: 'seen', id: g, attrs: file(0), parentMtime: [2, 0] });
  await build.append({ op: 'write', id: g, offset: 0, data: Buffer.alloc(BLOCK_SIZE, 5) });
  await build.append({ op: 'setattr', id: g, attrs: file(BLOCK_SIZE) });
  await build.append({ op: 'create', parent: sub, name: 'unseen', id: h, attrs: file(0), parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: 'top', id: f, attrs: file(0), parentMtime: [2, 0] });
  await build.ship();
  // Depth 1: /d pending. A lookup of d/sub and of d/sub/seen materialise those two only.
  t.deepEqual(await recoverAndLookUp(a, [['d', d, 'sub'], ['d/sub', sub, 'seen']]), [true, true]);

  const clean = await diffTree({ store: entered.store.root, archive: a, volume: VOLUME });
  t.deepEqual(clean.differences, [], 'names not materialised yet are not differences');
  t.is(clean.pendingDirs, 2);

  // A block a program wrote into the stub, with its record lost: verify sees it now.
  const fd = openSync('d/sub/seen', 'r+');
  writeSync(fd, Buffer.alloc(16, 9), 0, 16, 0);
  closeSync(fd);
  await markBlocksPresent(entered.store.privateDir, g, 0, 1);
  await native.setxattr('d/sub/seen', 'user.added', Buffer.from('x'), 0);
  const dirty = await diffTree({ store: entered.store.root, archive: a, volume: VOLUME });
  t.deepEqual(dirty.differences.map((x) => `${x.path}:${x.kind}`).sort(), ['/d/sub/seen:content', '/d/sub/seen:mtime', '/d/sub/seen:xattrs']);
});

test.serial('in a pending directory, a program\'s name that starts like the restore\'s temporaries is compared; only a temporary (prefix and object id, not in the archive) is left out', async (t) => {
  const { a, build } = await emptiedStore();
  const [d, g, h] = ['6', '7', '8'].map((c) => c.repeat(32)) as [string, string, string];
  await build.append({ op: 'create', parent: ROOT_ID, name: 'd', id: d, attrs: dir, parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: '.strata-restoring.mine', id: g, attrs: file(0), parentMtime: [2, 0] });
  await build.append({ op: 'create', parent: d, name: 'other', id: h, attrs: file(0), parentMtime: [2, 0] });
  await build.ship();
  // Depth 1: /d pending; a lookup materialised the program's file only.
  t.deepEqual(await recoverAndLookUp(a, [['d', d, '.strata-restoring.mine']]), [true]);
  // A temporary a crash left (the prefix and an object id): not the program's, not a difference.
  writeFileSync(`d/.strata-restoring.${'9'.repeat(32)}`, 'half made');
  t.deepEqual((await diffTree({ store: entered.store.root, archive: a, volume: VOLUME })).differences, []);
  // The program's file changed with its record lost: verify sees it, and the re-convergence ships it.
  await native.setxattr('d/.strata-restoring.mine', 'user.added', Buffer.from('x'), 0);
  const dirty = await diffTree({ store: entered.store.root, archive: a, volume: VOLUME });
  t.deepEqual(dirty.differences.map((x) => `${x.path}:${x.kind}`), ['/d/.strata-restoring.mine:xattrs']);
  const sink = new ShippingSink(a, VOLUME);
  await reconcile({ store: entered.store.root, archive: a, volume: VOLUME, sink, content: 'all' });
  t.deepEqual(sink.records.map((r) => r.op), ['setxattr']);
});
