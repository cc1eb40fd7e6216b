// A program's new times for a file a fetch is writing into (the restore's
// bytes, then the file's own times put back) are the file's afterwards: the
// fetch and the times are exclusive (RestoreHooks.exclusive). Seen in
// recover-model (2026-12-05): utimes of a file the background restore was
// filling; the fetch read the file's times before the program's utimens and
// put them back after it.
import test from 'ava';
import { statSync } from 'node:fs';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore } from '../helpers/core-store.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
const entered = await enterTempStore('strata-restore-times-race-');
test.after.always(() => entered.leave());

const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 500], mtime: [3, 123456789], rdev: 0 });
const DATA = Buffer.alloc(4 * BLOCK_SIZE, 7);

test.serial('a program\'s new times while a fetch writes into the file are the file\'s afterwards (the fetch puts its own back first)', async (t) => {
  // Several files, each read (a fetch) and given new times at once.
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const build = new ShippingSink(a, VOLUME);
  const names = Array.from({ length: 24 }, (_, i) => `r${i}`);
  const idOf = (i: number): string => i.toString(16).padStart(32, 'e');
  await build.append({ op: 'create', parent: ROOT_ID, name: 'rd', id: 'f'.repeat(32), attrs: dir, parentMtime: [2, 0] });
  for (const [i, name] of names.entries()) {
    await build.append({ op: 'create', parent: 'f'.repeat(32), name, id: idOf(i), attrs: file(0), parentMtime: [2, 0] });
    await build.append({ op: 'write', id: idOf(i), offset: 0, data: DATA });
    await build.append({ op: 'setattr', id: idOf(i), attrs: file(DATA.length) });
  }
  await build.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);
  const wanted = { sec: 1_700_000_000, nsec: 42 };
  const lost: string[] = [];
  for (const [i, name] of names.entries()) {
    const o = await fs.open(`/rd/${name}`, 0);
    const buf = Buffer.alloc(DATA.length);
    // The read's fetch and the new times at once; the times a little later each round.
    const reading = fs.read(o.handle, buf, buf.length, 0);
    for (let k = 0; k < i % 6; k++) await Promise.resolve();
    await Promise.all([reading, fs.setattr({ path: `/rd/${name}` }, { atime: wanted, mtime: wanted })]);
    await fs.release(o.handle);
    if (statSync(`rd/${name}`, { bigint: true }).mtimeNs !== 1_700_000_000_000_000_042n) lost.push(name);
  }
  t.deepEqual(lost, [], 'files whose new times a fetch put back over');
});
