// The end of a restore drops the hard-link registry (background.ts,
// dropLinkRegistry: the count of unrestored names first, then the registry
// name) without the lock that materialisation takes. A `stat` whose raw
// attributes were read before that, or that reads between its two steps, must
// still show the object's true link count, not one more for the registry name
// (seen in CI: recover-model seed 1652230812, nlink 5 for a file of 4 names,
// when the background restore completed during a lookup).
import test from 'ava';
import { lstatSync, rmSync } from 'node:fs';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';
import { UNRESTORED_NAMES_XATTR, linkPath } from '../../src/store/restore-marks.js';
import { removexattr } from '../../src/native/index.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-registry-race-');
});
test.after.always(() => entered.leave());

const id = (c: string): string => c.repeat(32);
const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });

test.serial('stat across the end of the restore: the registry name is never counted as a name', async (t) => {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const pm: [number, number] = [2000, 2];
  // /top/p/f and /top/q/g: one file, two names in two directories below the restored depth.
  await s.append({ op: 'create', parent: ROOT_ID, name: 'top', id: id('1'), attrs: dir, parentMtime: [5, 0] });
  await s.append({ op: 'create', parent: id('1'), name: 'p', id: id('2'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('1'), name: 'q', id: id('3'), attrs: dir, parentMtime: pm });
  await s.append({ op: 'create', parent: id('2'), name: 'f', id: id('a'), attrs: file(0), parentMtime: pm });
  await s.append({ op: 'write', id: id('a'), offset: 0, data: Buffer.from('one inode\n') });
  await s.append({ op: 'setattr', id: id('a'), attrs: file(10) });
  await s.append({ op: 'link', parent: id('3'), name: 'g', id: id('a'), parentMtime: pm });
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);
  for (const p of ['/top/p', '/top/p/f']) await fs.lookup(p);
  t.is(Number((await fs.getattr('/top/p/f')).nlink), 2, 'one name local, one still in the archive');
  for (const p of ['/top/q', '/top/q/g']) await fs.lookup(p);
  t.is(Number((await fs.getattr('/top/q/g')).nlink), 2, 'both names local');
  const registry = linkPath(entered.store.privateDir, id('a'));
  t.is(lstatSync('top/p/f').nlink, 3, 'the store counts the registry name too');

  // Halfway through the drop: the count gone, the registry name still there.
  const raw1 = lstatSync('top/p/f', { bigint: true });
  await removexattr(registry, UNRESTORED_NAMES_XATTR);
  t.is(Number((await h.shownStat(raw1, { at: entered.store.dir.fd, path: 'top/p/f', rel: 'top/p/f' }, null)).nlink), 2, 'between the count and the name');
  // Raw attributes read before the drop, shown after it.
  const raw2 = lstatSync('top/q/g', { bigint: true });
  t.is(raw2.nlink, 3n);
  rmSync(registry);
  t.is(Number((await h.shownStat(raw2, { at: entered.store.dir.fd, path: 'top/q/g', rel: 'top/q/g' }, null)).nlink), 2, 'read before the drop, shown after');
  t.is(lstatSync('top/q/g').nlink, 2);
});
