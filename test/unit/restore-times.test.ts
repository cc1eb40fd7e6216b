// File times across a crash during a fetch (issue 10, item 2). Writing
// fetched bytes into a stub moves its mtime until the restore puts it back; a
// kill -9 in between used to leave the time of the crash as the file's mtime,
// and the start-up re-convergence then shipped it to the archive for good. The
// times are now recorded first (STORE/.strata/restore/times/<id>): whatever
// meets the file next — the re-convergence, a stat, a fetch — puts them back
// from the record instead. The state a crash leaves is built here by hand
// (record written, bytes written, mtime moved); the kill -9 tests do it for
// real (test/fault/).
import { AT_FDCWD } from '../../src/native/index.js';
import test from 'ava';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { reconcile } from '../../src/mirror/reconcile.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { PENDING_XATTR, clearPending, markPending, pendingNlink, readPendingMark, writeTimesRecord } from '../../src/store/restore-marks.js';
import { setxattr } from '../../src/native/index.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-restore-times-');
});
test.after.always(() => entered.leave());

const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 500], mtime: [3, 123456789], rdev: 0 });
const MTIME_NS = 3_123_456_789n;
const ids = { d: 'd'.repeat(32), a: 'a'.repeat(32), b: 'b'.repeat(32), c: 'c'.repeat(32) };
const DATA = Buffer.alloc(4 * BLOCK_SIZE, 7);

/** The state a kill -9 leaves between writing fetched bytes and putting the times back. */
async function crashedMidFetch(name: string, id: string): Promise<void> {
  await writeTimesRecord(entered.store.privateDir, id, { atime: { sec: 1, nsec: 500 }, mtime: { sec: 3, nsec: 123456789 } });
  const fd = openSync(`d/${name}`, 'r+');
  writeSync(fd, DATA, 0, BLOCK_SIZE, 0);
  closeSync(fd);
}

test.serial('a crash between fetched bytes and their times: re-convergence, stat and the next fetch put the times back, nothing is shipped', async (t) => {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const build = new ShippingSink(a, VOLUME);
  await build.append({ op: 'create', parent: ROOT_ID, name: 'd', id: ids.d, attrs: dir, parentMtime: [2, 0] });
  for (const [name, id] of [['a', ids.a], ['b', ids.b], ['c', ids.c]] as const) {
    await build.append({ op: 'create', parent: ids.d, name, id, attrs: file(0), parentMtime: [2, 0] });
    await build.append({ op: 'write', id, offset: 0, data: DATA });
    await build.append({ op: 'setattr', id, attrs: file(DATA.length) });
  }
  await build.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  for (const [name, id] of [['a', ids.a], ['b', ids.b], ['c', ids.c]] as const) await crashedMidFetch(name, id);
  t.not(statSync('d/a', { bigint: true }).mtimeNs, MTIME_NS, 'the crash moved the mtime');

  // Re-convergence after the unclean stop: the times come back from the record; no setattr is shipped.
  const sink = new ShippingSink(a, VOLUME);
  await reconcile({ store: entered.store.root, archive: a, volume: VOLUME, sink, content: 'all' });
  t.deepEqual(sink.records.map((r) => r.op), [], 'nothing changed: nothing shipped');
  for (const n of ['a', 'b', 'c']) t.is(statSync(`d/${n}`, { bigint: true }).mtimeNs, MTIME_NS, n);
  for (const id of [ids.a, ids.b, ids.c]) t.false(existsSync(join(entered.store.privateDir, 'restore', 'times', id)));

  // No re-convergence (a fenced store): a stat puts them back, and so does the next fetch.
  await crashedMidFetch('b', ids.b);
  await crashedMidFetch('c', ids.c);
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);
  t.is((await fs.getattr('/d/b')).mtimeNs, MTIME_NS, 'stat');
  t.is(statSync('d/b', { bigint: true }).mtimeNs, MTIME_NS);
  const o = await fs.open('/d/c', 0);
  const buf = Buffer.alloc(DATA.length);
  t.is(await fs.read(o.handle, buf, buf.length, 0), DATA.length);
  t.deepEqual(buf, DATA);
  await fs.release(o.handle);
  t.is(statSync('d/c', { bigint: true }).mtimeNs, MTIME_NS, 'the next fetch');
  t.false(existsSync(join(entered.store.privateDir, 'restore', 'times', ids.c)));
});

test('a pending mark keeps the archive link count and times; a mark without times (an older strata\'s) reads as the count alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-mark-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const times = { atime: { sec: 978307200, nsec: 123456789 }, mtime: { sec: -5, nsec: 999999999 } };
  await markPending(dir, dir, AT_FDCWD, 7, times);
  t.deepEqual(await readPendingMark(dir, dir, AT_FDCWD), { nlink: 7, times });
  t.is(await pendingNlink(dir, dir, AT_FDCWD), 7);
  await setxattr(dir, PENDING_XATTR, Buffer.from('4'), 0);
  t.deepEqual(await readPendingMark(dir, dir, AT_FDCWD), { nlink: 4, times: null });
  await markPending(dir, dir, AT_FDCWD);
  t.deepEqual(await readPendingMark(dir, dir, AT_FDCWD), { nlink: null, times: null });
  await setxattr(dir, PENDING_XATTR, Buffer.from('4 1 2 3'), 0);
  t.deepEqual(await readPendingMark(dir, dir, AT_FDCWD), { nlink: 4, times: null }, 'a value cut short gives no times');
  await setxattr(dir, PENDING_XATTR, Buffer.from('4 1 1000000000 3 4'), 0);
  t.is((await readPendingMark(dir, dir, AT_FDCWD))?.times, null, 'nanoseconds out of range give no times');
  await clearPending(dir, dir, AT_FDCWD);
  t.is(await readPendingMark(dir, dir, AT_FDCWD), null);
});
