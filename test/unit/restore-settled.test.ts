// Which objects the restore calls settled (the FUSE thread may answer for
// them: docs/recovery.md, "The mount's answers during a restore"), and that it
// tells the settle watch before it changes one behind the kernel.
import test from 'ava';
import * as fsp from 'node:fs/promises';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-restore-settled-');
});
test.after.always(() => entered.leave());

const id = (c: string): string => c.repeat(32);

test.serial('settled: a restored directory, a local single-link file; not the root, a pending directory, a stub, a hard-linked file with names in the archive, nor a file being fetched into', async (t) => {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 2], rdev: 0 };
  const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 0], mtime: [3, 6], rdev: 0 });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: id('d'), attrs: dir, parentMtime: [2, 0] });
  await s.append({ op: 'create', parent: id('d'), name: 'sub', id: id('e'), attrs: dir, parentMtime: [2, 2] });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'big', id: id('b'), attrs: file(0), parentMtime: [2, 0] });
  await s.append({ op: 'write', id: id('b'), offset: 0, data: Buffer.alloc(4 * BLOCK_SIZE, 7) });
  await s.append({ op: 'setattr', id: id('b'), attrs: file(4 * BLOCK_SIZE) });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'empty', id: id('c'), attrs: file(0), parentMtime: [2, 0] });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'h1', id: id('f'), attrs: file(0), parentMtime: [2, 0] });
  await s.append({ op: 'write', id: id('f'), offset: 0, data: Buffer.from('linked\n') });
  await s.append({ op: 'setattr', id: id('f'), attrs: file(7) });
  await s.append({ op: 'link', parent: id('d'), name: 'h2', id: id('f'), parentMtime: [2, 2] });
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const events: string[] = [];
  h.settleWatch = { begin: (ino) => events.push(`begin ${ino}`), end: (ino) => events.push(`end ${ino}`) };
  const fs = new Filesystem(entered.store, null, h);
  const settled = async (path: string): Promise<boolean> => (await fs.attrsSettled(path, false)).settled;

  t.false(await settled('/'), 'the root hides .strata');
  t.false(await settled('/d'), 'pending');
  t.false(await settled('/big'), 'a stub');
  t.true(await settled('/empty'), 'empty: nothing to fetch');
  t.false(await settled('/h1'), 'a name in a pending directory');
  t.is((await fs.attrsSettled('/h1', false)).st.nlink, 2n, 'the archive\'s count');

  // A fetch into the stub: the watch hears of it before and after, and the file is not settled meanwhile.
  const ino = (await fsp.lstat('big', { bigint: true })).ino;
  const o = await fs.open('/big', 0);
  let done = false;
  const reading = fs.read(o.handle, Buffer.alloc(4 * BLOCK_SIZE), 4 * BLOCK_SIZE, 0).finally(() => { done = true; });
  const during: boolean[] = [];
  while (!done && !events.includes(`end ${ino}`)) {
    during.push(await settled('/big'));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await reading;
  await fs.release(o.handle);
  t.true(events.indexOf(`begin ${ino}`) >= 0 && events.indexOf(`begin ${ino}`) < events.indexOf(`end ${ino}`), events.join(', '));
  t.false(during.some((x) => x), 'never settled while fetched into');
  t.true(await settled('/big'), 'local now');

  // Materialised: the directory is restored (settled), its subdirectory pending; all names of h1 are local, but it stays hard-linked.
  await h.restoreDir('d');
  t.true(await settled('/d'));
  t.false(await settled('/d/sub'));
  t.false(await settled('/d/h2'));
  t.is((await fs.attrsSettled('/d/h2', false)).st.nlink, 2n);
  // The lookup form: the same answer.
  t.true((await fs.attrsSettled('/d', true)).settled);
  t.deepEqual(events.filter((e) => e.startsWith('begin')).length, events.filter((e) => e.startsWith('end')).length);
});
