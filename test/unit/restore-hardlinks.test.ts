// Hard links across restored and pending directories (issue 10, item 1): a
// file with names in a restored directory and in directories still pending
// must stay one inode through every order of lookup, readdir, link, unlink
// and rename, its data and block map intact, and `stat` must show its true
// link count meanwhile. Before the fix, listing a directory dropped the link
// registry once the local link count reached the archive's (a link made
// through the mount counted), and a deeper name was later materialised as a
// second inode whose empty map replaced the first's.
import test from 'ava';
import { readFileSync, statSync } from 'node:fs';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';
import { readRestoreState } from '../../src/restore/state.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-restore-links-');
});
test.after.always(() => entered.leave());

const id = (c: string): string => c.repeat(32);
const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });
const CONTENT = Buffer.from('hello, one inode\n');

/**
 * /misc/target.txt, /misc/hard1, /misc/sub/hard3 and /misc/sub/x/y/hard2: one
 * file with four names; /misc2/other: a second file with names in two pending
 * directories only.
 */
async function archive(): Promise<MemoryArchive> {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const pm: [number, number] = [2000, 2];
  await s.append({ op: 'create', parent: ROOT_ID, name: 'misc', id: id('1'), attrs: dir, parentMtime: [5, 0] });
  await s.append({ op: 'create', parent: id('1'), name: 'sub', id: id('2'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('2'), name: 'x', id: id('3'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('3'), name: 'y', id: id('4'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('1'), name: 'target.txt', id: id('a'), attrs: file(0), parentMtime: pm });
  await s.append({ op: 'write', id: id('a'), offset: 0, data: CONTENT });
  await s.append({ op: 'setattr', id: id('a'), attrs: file(CONTENT.length) });
  await s.append({ op: 'link', parent: id('1'), name: 'hard1', id: id('a'), parentMtime: pm });
  await s.append({ op: 'link', parent: id('2'), name: 'hard3', id: id('a'), parentMtime: pm });
  await s.append({ op: 'link', parent: id('4'), name: 'hard2', id: id('a'), parentMtime: pm });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'misc2', id: id('5'), attrs: dir, parentMtime: [5, 0] });
  await s.append({ op: 'create', parent: id('5'), name: 'p', id: id('6'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('5'), name: 'q', id: id('7'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('6'), name: 'other', id: id('b'), attrs: file(0), parentMtime: pm });
  await s.append({ op: 'write', id: id('b'), offset: 0, data: CONTENT });
  await s.append({ op: 'setattr', id: id('b'), attrs: file(CONTENT.length) });
  await s.append({ op: 'link', parent: id('7'), name: 'other', id: id('b'), parentMtime: pm });
  await s.ship();
  return a;
}

async function readAll(fs: Filesystem, path: string): Promise<string> {
  const o = await fs.open(path, 0);
  try {
    const buf = Buffer.alloc(4096);
    const n = await fs.read(o.handle, buf, buf.length, 0);
    return buf.subarray(0, n).toString();
  } finally {
    await fs.release(o.handle);
  }
}

test.serial('a hard link spanning restored and pending directories stays one inode, with its data and its true link count', async (t) => {
  const a = await archive();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);

  // The drill's order: stat, a link into a pending directory, a listing of the first directory.
  const st = await fs.lookup('/misc/target.txt');
  t.is(Number(st.nlink), 4, 'stat shows the names still in the archive');
  await fs.lookup('/misc/sub');
  await fs.link('/misc/target.txt', '/misc/sub/newlink2');
  t.is(Number((await fs.getattr('/misc/target.txt')).nlink), 5);
  await fs.readdir('/misc');
  t.is(Number((await fs.getattr('/misc/hard1')).nlink), 5);
  // The deep name, restored afterwards, is the same inode with the same data.
  for (const p of ['/misc/sub/x', '/misc/sub/x/y', '/misc/sub/x/y/hard2']) await fs.lookup(p);
  const ino = statSync('misc/target.txt').ino;
  for (const p of ['misc/hard1', 'misc/sub/newlink2', 'misc/sub/x/y/hard2']) t.is(statSync(p).ino, ino, p);
  t.is(await readAll(fs, '/misc/sub/x/y/hard2'), CONTENT.toString());
  t.is(await readAll(fs, '/misc/target.txt'), CONTENT.toString());
  // An unlink of one name: the others still count the one left in the archive (hard3 in misc/sub, pending).
  await fs.unlink('/misc/hard1');
  t.is(Number((await fs.getattr('/misc/target.txt')).nlink), 4);

  // Writes through two names land in the one inode.
  for (const p of ['/misc/sub/x/y/hard2', '/misc/target.txt']) {
    const o = await fs.open(p, 2 /* O_RDWR */);
    const size = Number((await fs.fgetattr(o.handle)).size);
    await fs.write(o.handle, Buffer.from(`+${p}\n`), p.length + 2, size);
    await fs.release(o.handle);
  }
  const want = `${CONTENT}+/misc/sub/x/y/hard2\n+/misc/target.txt\n`;
  t.is(readFileSync('misc/sub/x/y/hard2', 'utf8'), want);

  // The file whose every name is in a pending directory, both materialised by lookups in turn.
  await fs.lookup('/misc2/p');
  await fs.lookup('/misc2/q');
  t.is(Number((await fs.lookup('/misc2/p/other')).nlink), 2);
  await fs.unlink('/misc2/p/other');
  await fs.lookup('/misc2/q/other');
  t.is(await readAll(fs, '/misc2/q/other'), CONTENT.toString(), 'the last local name gone, the inode waits for the name still in the archive');
  t.is(Number((await fs.getattr('/misc2/q/other')).nlink), 1);

  // The background restore finishes: every name of each file one inode, the registry gone, counts exact.
  const state = (await readRestoreState(entered.store.privateDir))!;
  const bg = new BackgroundRestore(h, entered.store.privateDir, state, log);
  bg.start();
  await bg.whenDone();
  t.is(bg.progress().phase, 'complete');
  fs.restoreFinished();
  for (const p of ['misc/sub/hard3', 'misc/sub/newlink2', 'misc/sub/x/y/hard2']) t.is(statSync(p).ino, ino, p);
  t.is(statSync('misc/target.txt').nlink, 4);
  t.is(Number((await fs.getattr('/misc/target.txt')).nlink), 4);
  t.is(readFileSync('misc/sub/hard3', 'utf8'), want);
  t.is(statSync('misc2/q/other').nlink, 1);
  t.is(Number((await fs.getattr('/')).nlink), 4, "the root counts misc and misc2, not strata's private directory");
});
