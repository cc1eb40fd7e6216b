// A file with as many names as the store's file system allows (ext4: 65 000):
// the restore links every name of a hard-linked file to a registry name in
// the private directory, one link more than the file's names, so its last
// name hit EMLINK, and a volume with such a file could not be recovered at
// all (strata recover failed on the root's names). The registry name now
// becomes that last name (materialise.ts lastNameAtLinkLimit).
import test from 'ava';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { readRestoreState } from '../../src/restore/state.js';
import { linkPath } from '../../src/store/restore-marks.js';
import { ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
/** ext4's most links of one inode; the test needs a store on ext4 (stat -f says ext2/ext3 for it). */
const EXT4_LINK_MAX = 65_000;
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const onExt4 = fsType === 'ext2/ext3';
const title = 'a file with as many names as ext4 allows (65 000), some in a pending directory, recovers: one inode, its data, its link count; the background restore completes';

(onExt4 ? test : test.skip)(onExt4 ? title : `${title} (skipped: ${tmpdir()} is ${fsType}, not ext4, so there is no link limit to meet)`, async (t) => {
  const entered: EnteredStore = await enterTempStore('strata-restore-link-limit-');
  t.teardown(() => entered.leave());
  const id = (c: string): string => c.repeat(32);
  const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
  const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });
  const content = Buffer.from('one inode, every name\n');
  const inPending = 1000;
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const pm: [number, number] = [2000, 2];
  await s.append({ op: 'create', parent: ROOT_ID, name: 'f0', id: id('a'), attrs: file(0), parentMtime: pm });
  await s.append({ op: 'write', id: id('a'), offset: 0, data: content });
  await s.append({ op: 'setattr', id: id('a'), attrs: file(content.length) });
  for (let i = 1; i < EXT4_LINK_MAX - inPending; i++) await s.append({ op: 'link', parent: ROOT_ID, name: `f${i}`, id: id('a'), parentMtime: pm });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'p', id: id('1'), attrs: dir, parentMtime: pm });
  for (let i = 0; i < inPending; i++) await s.append({ op: 'link', parent: id('1'), name: `g${i}`, id: id('a'), parentMtime: pm });
  await s.ship();

  // Depth 1: the root's 64 000 names are made now, p stays pending.
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);
  t.is(Number((await fs.getattr('/f0')).nlink), EXT4_LINK_MAX, 'stat counts the names still in the archive');
  // Listing p makes its 1000 names: the last one at the limit takes the registry name's place.
  t.is((await fs.readdir('/p')).filter((e) => e.name.startsWith('g')).length, inPending);
  t.false(existsSync(linkPath(entered.store.privateDir, id('a'))), 'no registry name left');
  const ino = statSync('f0').ino;
  for (const p of ['f1', `f${EXT4_LINK_MAX - inPending - 1}`, 'p/g0', `p/g${inPending - 1}`]) t.is(statSync(p).ino, ino, p);
  t.is(statSync('f0').nlink, EXT4_LINK_MAX);
  t.is(Number((await fs.getattr(`/p/g${inPending - 1}`)).nlink), EXT4_LINK_MAX);
  const o = await fs.open(`/p/g${inPending - 1}`, 0);
  const buf = Buffer.alloc(100);
  t.is(buf.subarray(0, await fs.read(o.handle, buf, buf.length, 0)).toString(), content.toString());
  await fs.release(o.handle);

  const bg = new BackgroundRestore(h, entered.store.privateDir, (await readRestoreState(entered.store.privateDir))!, log);
  bg.start();
  await bg.whenDone();
  t.is(bg.progress().phase, 'complete');
  fs.restoreFinished();
  t.is(Number((await fs.getattr('/f0')).nlink), EXT4_LINK_MAX);
  t.is(readFileSync('f5', 'utf8'), content.toString());
});
