// Objects whose extended attributes fill ext4's xattr space (about 4 KiB per
// inode) on the primary: the restore's own marks (a pending directory's
// trusted.strata.pending, a hard-linked file's count of names still in the
// archive) are xattrs on the same inode, so until 2026-12-06 they did not
// fit: materialising the parent failed with ENOSPC, the parent could never
// be listed and the background restore waited forever. A mark that does not
// fit is now a side mark (store/restore-marks.ts), and marks already in place
// move aside when a program's own attribute needs their room. Runs on ext4,
// where the space is bounded (else skipped, saying why).
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { existsSync, readdirSync, statSync } from 'node:fs';
import * as native from '../../src/native/index.js';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { readRestoreState } from '../../src/restore/state.js';
import { fillingXattrs } from '../helpers/model-tree.js';
import { isPending, sideMarksDir } from '../../src/store/restore-marks.js';
import { ROOT_ID, type Attrs, type NewRecord, type ObjectId } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: process.env.DEBUG_XS ? 'debug' : 'silent' });
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const onExt4 = fsType === 'ext2/ext3';
const ext4Test = (title: string, f: (t: ExecutionContext) => Promise<void>): void => {
  if (onExt4) test.serial(title, f);
  else test.skip(`${title} (skipped: ${tmpdir()} is ${fsType}, not ext4, whose xattr space is bounded)`, () => {});
};

const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
const fileAttrs = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });
const id = (c: string): ObjectId => c.repeat(32);

async function userXattrs(path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const n of (await native.listxattr(path)).filter((x) => x.startsWith('user.')).sort()) out.set(n, (await native.getxattr(path, n)).toString('hex'));
  return out;
}

function expected(xattrs: [string, Buffer][]): Map<string, string> {
  return new Map([...xattrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([n, v]) => [n, v.toString('hex')]));
}

interface Recovered {
  entered: EnteredStore;
  fs: Filesystem;
  restore: OnDemandRestore;
  archive: MemoryArchive;
}

async function recoverFrom(records: NewRecord[], depth: number, prefix: string): Promise<Recovered> {
  const entered = await enterTempStore(prefix);
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  for (const r of records) await s.append(r);
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const restore = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  return { entered, fs: new Filesystem(entered.store, null, restore), restore, archive: a };
}

async function completeBackground(r: Recovered): Promise<void> {
  const bg = new BackgroundRestore(r.restore, r.entered.store.privateDir, (await readRestoreState(r.entered.store.privateDir))!, log);
  bg.start();
  await bg.whenDone();
  if (bg.progress().phase !== 'complete') throw new Error(`background restore ended ${bg.progress().phase}`);
  r.fs.restoreFinished();
}

const setxattrs = (target: ObjectId, xattrs: [string, Buffer][]): NewRecord[] => xattrs.map(([name, value]) => ({ op: 'setxattr', id: target, name, value }));

ext4Test('a directory whose xattrs fill ext4\'s xattr space is restored with them, pending until listed; its parent lists; the background restore completes', async (t) => {
  const xattrs = fillingXattrs('dir');
  t.true(xattrs.length > 5);
  const pm: [number, number] = [5, 0];
  const r = await recoverFrom([
    { op: 'create', parent: ROOT_ID, name: 'top', id: id('1'), attrs: dirAttrs, parentMtime: pm },
    { op: 'create', parent: id('1'), name: 'full', id: id('2'), attrs: dirAttrs, parentMtime: pm },
    { op: 'create', parent: id('2'), name: 'inner', id: id('3'), attrs: fileAttrs(0), parentMtime: pm },
    ...setxattrs(id('2'), xattrs),
  ], 1, 'strata-restore-xattr-space-');
  t.teardown(() => r.entered.leave());
  t.deepEqual((await r.fs.readdir('/top')).map((e) => e.name).filter((n) => n === 'full'), ['full']);
  t.deepEqual(await userXattrs('top/full'), expected(xattrs), 'every xattr of the primary');
  t.true(await isPending(r.entered.store.privateDir, 'top/full', r.entered.store.dir.fd), 'pending (by its side mark)');
  t.deepEqual(readdirSync(sideMarksDir(r.entered.store.privateDir)), [`${id('2')}.pending`]);
  t.is(Number((await r.fs.getattr('/top/full')).mtimeNs), 5_000_000_000, 'stat shows the archive\'s times');
  t.deepEqual((await r.fs.readdir('/top/full')).map((e) => e.name).filter((n) => n !== '.' && n !== '..'), ['inner']);
  t.false(await isPending(r.entered.store.privateDir, 'top/full', r.entered.store.dir.fd), 'listed: no longer pending');
  t.deepEqual(readdirSync(sideMarksDir(r.entered.store.privateDir)), [], 'its side mark went with it');
  await completeBackground(r);
  t.false(existsSync(sideMarksDir(r.entered.store.privateDir)), 'a complete restore keeps no side marks');
  t.deepEqual(await userXattrs('top/full'), expected(xattrs));
});

ext4Test('the root whose xattrs fill ext4\'s xattr space is recovered with them, at depth 0 and at depth 1', async (t) => {
  const xattrs = fillingXattrs('dir');
  for (const depth of [0, 1]) {
    const r = await recoverFrom([
      { op: 'create', parent: ROOT_ID, name: 'a', id: id('1'), attrs: dirAttrs, parentMtime: [5, 0] },
      { op: 'create', parent: id('1'), name: 'b', id: id('2'), attrs: fileAttrs(0), parentMtime: [5, 0] },
      ...setxattrs(ROOT_ID, xattrs),
    ], depth, `strata-restore-xattr-root-${depth}-`);
    try {
      t.deepEqual(await userXattrs('.'), expected(xattrs), `depth ${depth}: the root's xattrs`);
      t.deepEqual((await r.fs.readdir('/')).map((e) => e.name).filter((n) => n === 'a'), ['a'], `depth ${depth}`);
      t.deepEqual((await r.fs.readdir('/a')).map((e) => e.name).filter((n) => n === 'b'), ['b'], `depth ${depth}`);
      await completeBackground(r);
      t.deepEqual(await userXattrs('.'), expected(xattrs), `depth ${depth}: after the background restore`);
    } finally {
      await r.entered.leave();
    }
  }
});

ext4Test('a hard-linked file whose xattrs fill ext4\'s xattr space: its names come back with its xattrs, stat counts the names still in the archive', async (t) => {
  const xattrs = fillingXattrs('file');
  const content = Buffer.from('hard-linked, full of xattrs\n');
  const pm: [number, number] = [5, 0];
  const r = await recoverFrom([
    { op: 'create', parent: ROOT_ID, name: 'p', id: id('1'), attrs: dirAttrs, parentMtime: pm },
    { op: 'create', parent: ROOT_ID, name: 'q', id: id('2'), attrs: dirAttrs, parentMtime: pm },
    { op: 'create', parent: id('1'), name: 'f', id: id('a'), attrs: fileAttrs(0), parentMtime: pm },
    { op: 'write', id: id('a'), offset: 0, data: content },
    { op: 'setattr', id: id('a'), attrs: fileAttrs(content.length) },
    { op: 'link', parent: id('2'), name: 'g', id: id('a'), parentMtime: pm },
    ...setxattrs(id('a'), xattrs),
  ], 1, 'strata-restore-xattr-link-');
  t.teardown(() => r.entered.leave());
  t.is(Number((await r.fs.lookup('/p/f')).nlink), 2, 'the name in q, still in the archive, is counted');
  t.deepEqual(await userXattrs('p/f'), expected(xattrs));
  t.deepEqual(readdirSync(sideMarksDir(r.entered.store.privateDir)), [`${id('a')}.unrestored-names`], 'its count of names is a side mark');
  t.is(Number((await r.fs.lookup('/q/g')).nlink), 2);
  t.is(statSync('p/f').ino, statSync('q/g').ino, 'one inode');
  const o = await r.fs.open('/q/g', 0);
  const buf = Buffer.alloc(100);
  t.is(buf.subarray(0, await r.fs.read(o.handle, buf, buf.length, 0)).toString(), content.toString());
  await r.fs.release(o.handle);
  await completeBackground(r);
  t.is(Number((await r.fs.getattr('/p/f')).nlink), 2);
  t.deepEqual(await userXattrs('q/g'), expected(xattrs));
});

ext4Test('a program fills a pending directory\'s xattr space as it could on the primary: the restore\'s mark makes room, and the directory still lists its entries', async (t) => {
  const xattrs = fillingXattrs('dir');
  const pm: [number, number] = [5, 0];
  const r = await recoverFrom([
    { op: 'create', parent: ROOT_ID, name: 'd', id: id('1'), attrs: dirAttrs, parentMtime: pm },
    { op: 'create', parent: id('1'), name: 'x', id: id('2'), attrs: fileAttrs(0), parentMtime: pm },
  ], 1, 'strata-restore-xattr-program-');
  t.teardown(() => r.entered.leave());
  t.true(await isPending(r.entered.store.privateDir, 'd', r.entered.store.dir.fd));
  for (const [name, value] of xattrs) await r.fs.setxattr('/d', name, value, 0);
  t.deepEqual(await userXattrs('d'), expected(xattrs));
  t.true(await isPending(r.entered.store.privateDir, 'd', r.entered.store.dir.fd), 'still pending (its mark moved aside)');
  t.deepEqual((await r.fs.readdir('/d')).map((e) => e.name).filter((n) => n === 'x'), ['x']);
  t.false(await isPending(r.entered.store.privateDir, 'd', r.entered.store.dir.fd));
});
