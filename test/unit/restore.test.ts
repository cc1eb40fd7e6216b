// The restore without FUSE or network: prepareRecovery materialises the top
// tiers from an in-memory archive; the filesystem core, given the on-demand
// hooks, fetches a pending directory once for concurrent requests, only the
// blocks a read needs, only the partly covered blocks of a write, nothing for
// a truncation to 0; an archive that does not answer gives EIO after the bound.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import { isPending } from '../../src/store/restore-marks.js';
import { createLogger } from '../../src/log/logger.js';
import type { ArchiveClient } from '../../src/protocol/archive-api.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;

test.before(async () => {
  entered = await enterTempStore('strata-restore-unit-');
});
test.after.always(() => entered.leave());

/** Counts the archive calls the restore makes. */
class Counting extends MemoryArchive {
  dirImages = 0;
  ranges: { offset: number; length: number }[] = [];
  hang = false;
  override async dirImage(volume: string, id: ObjectId) {
    this.dirImages++;
    if (this.hang) await new Promise(() => {});
    return super.dirImage(volume, id);
  }
  override async readRange(volume: string, id: ObjectId, offset: number, length: number) {
    this.ranges.push({ offset, length });
    if (this.hang) await new Promise(() => {});
    return super.readRange(volume, id, offset, length);
  }
}

const ids = { d: 'd'.repeat(32), sub: 'e'.repeat(32), big: 'b'.repeat(32), small: 'c'.repeat(32), sparse: 'f'.repeat(32), d2: '2'.repeat(32), x: '3'.repeat(32), y: '4'.repeat(32) };
const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
const fileAttrs = (size: number): Attrs => ({ mode: 0o100644, uid: 12, gid: 34, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });
const bigData = Buffer.alloc(10 * BLOCK_SIZE + 123);
for (let i = 0; i < bigData.length; i++) bigData[i] = (i * 7 + (i >> 16)) & 0xff;

/** A volume: /d (dir) holding big (10 blocks and a bit), small, and sub/ (a dir). */
async function archive(): Promise<Counting> {
  const a = new Counting();
  await a.createVolume(VOLUME);
  const sink = new ShippingSink(a, VOLUME);
  await sink.append({ op: 'create', parent: ROOT_ID, name: 'd', id: ids.d, attrs: dirAttrs, parentMtime: [5, 0] });
  await sink.append({ op: 'create', parent: ids.d, name: 'sub', id: ids.sub, attrs: dirAttrs, parentMtime: [2000, 2] });
  await sink.append({ op: 'create', parent: ROOT_ID, name: 'd2', id: ids.d2, attrs: dirAttrs, parentMtime: [5, 0] });
  await sink.append({ op: 'create', parent: ids.d2, name: 'x', id: ids.x, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'create', parent: ids.d2, name: 'y', id: ids.y, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'create', parent: ids.d, name: 'big', id: ids.big, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'write', id: ids.big, offset: 0, data: bigData });
  await sink.append({ op: 'setattr', id: ids.big, attrs: fileAttrs(bigData.length) });
  await sink.append({ op: 'create', parent: ids.d, name: 'small', id: ids.small, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'write', id: ids.small, offset: 0, data: Buffer.from('hello') });
  await sink.append({ op: 'setattr', id: ids.small, attrs: fileAttrs(5) });
  // 20 blocks, data in block 5 only.
  await sink.append({ op: 'create', parent: ids.d, name: 'sparse', id: ids.sparse, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'write', id: ids.sparse, offset: 5 * BLOCK_SIZE + 7, data: Buffer.from('data') });
  await sink.append({ op: 'setattr', id: ids.sparse, attrs: fileAttrs(20 * BLOCK_SIZE) });
  await sink.ship();
  return a;
}

function hooks(a: ArchiveClient, fetchTimeoutMs = 5000): OnDemandRestore {
  return new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, fetchTimeoutMs, log });
}

test.serial('recover with depth 1 materialises the root, leaves /d pending; the core fetches /d once, then only the blocks it needs', async (t) => {
  const a = await archive();
  const prep = await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  t.true(prep.fenced);
  t.is(prep.state.epoch, 2, 'the volume was fenced');
  t.is((await a.volumeState(VOLUME))!.epoch, 2);
  t.true(await isPending(entered.store.privateDir, 'd', entered.store.dir.fd));
  t.false(existsSync('d/big'));

  const h = hooks(a);
  const fs = new Filesystem(entered.store, null, h);
  // A lookup in a pending directory: answered from its image, only that entry materialised.
  let before = a.dirImages;
  t.is(Number((await fs.lookup('/d2/x')).uid), 12);
  t.true(existsSync('d2/x'));
  t.false(existsSync('d2/y'), 'the other entries stay in the archive');
  t.true(await isPending(entered.store.privateDir, 'd2', entered.store.dir.fd));
  t.is(((await t.throwsAsync(fs.lookup('/d2/nope'))) as { code?: string } | undefined)?.code, 'ENOENT');
  t.is((await fs.getattr('/d2')).mtimeNs, 2000_000_000_002n, "materialising an entry keeps the directory's times");
  t.is(a.dirImages - before, 1, 'one image fetch for both lookups');
  t.deepEqual((await fs.readdir('/d2')).map((e) => e.name).sort(), ['.', '..', 'x', 'y']);
  t.is(a.dirImages - before, 1, 'readdir materialised the rest from the same image');
  t.false(await isPending(entered.store.privateDir, 'd2', entered.store.dir.fd));
  before = a.dirImages;
  const [l1, l2] = await Promise.all([fs.readdir('/d'), fs.readdir('/d')]);
  t.is(a.dirImages - before, 1, 'two concurrent readdirs share one fetch');
  t.deepEqual(l1.map((e) => e.name).sort(), ['.', '..', 'big', 'small', 'sparse', 'sub']);
  t.deepEqual(l2.map((e) => e.name).sort(), ['.', '..', 'big', 'small', 'sparse', 'sub']);
  t.false(await isPending(entered.store.privateDir, 'd', entered.store.dir.fd));
  t.true(await isPending(entered.store.privateDir, 'd/sub', entered.store.dir.fd), 'the next tier is pending');
  const st = await fs.getattr('/d/big');
  t.is(Number(st.size), bigData.length, 'a stub has its size');
  t.is(Number(st.uid), 12);
  t.is(st.mtimeNs, 3000_000_000_006n);
  t.is((await fs.getattr('/d')).mtimeNs, 2000_000_000_002n, "the directory keeps the archive's mtime after its entries arrive");

  // The last 100 bytes: the last block only.
  const o = await fs.open('/d/big', 0);
  t.false(o.local);
  a.ranges = [];
  const buf = Buffer.alloc(100);
  const n = await fs.read(o.handle, buf, 100, bigData.length - 100);
  t.is(n, 100);
  t.deepEqual(buf, bigData.subarray(bigData.length - 100));
  t.deepEqual(a.ranges, [{ offset: 10 * BLOCK_SIZE, length: 123 }]);
  t.is(Number((await fs.fgetattr(o.handle)).mtimeNs), 3000_000_000_006, 'fetching is not a change: mtime stays');
  await fs.release(o.handle);

  // A write covering block 2 whole and blocks 1 and 3 in part: blocks 1 and 3 are fetched.
  const w = await fs.open('/d/big', 2 /* O_RDWR */);
  a.ranges = [];
  const data = Buffer.alloc(2 * BLOCK_SIZE, 0x5a);
  await fs.write(w.handle, data, data.length, BLOCK_SIZE + 10);
  t.deepEqual(a.ranges.map((r) => r.offset / BLOCK_SIZE).sort(), [1, 3]);
  // Reading everything fetches the rest, never blocks 1-3 again.
  a.ranges = [];
  const all = Buffer.alloc(bigData.length);
  t.is(await fs.read(w.handle, all, all.length, 0), bigData.length);
  const want = Buffer.from(bigData);
  data.copy(want, BLOCK_SIZE + 10);
  t.deepEqual(all, want);
  t.false(a.ranges.some((r) => r.offset <= 3 * BLOCK_SIZE && r.offset + r.length > BLOCK_SIZE), JSON.stringify(a.ranges));
  t.false(await h.isRemote(ids.big), 'the file is local: its map is gone');
  await fs.release(w.handle);

  // O_TRUNC: nothing fetched.
  a.ranges = [];
  const tr = await fs.open('/d/small', 2 | 0o1000 /* O_RDWR | O_TRUNC */);
  t.true(tr.local);
  await fs.release(tr.handle);
  t.is(a.ranges.length, 0);
  t.is(readFileSync('d/small', 'utf8'), '');
});

test.serial('an archive that does not answer: EIO after the bound; the background restore finishes once it answers, fetching no holes', async (t) => {
  const a = await archive();
  const h = hooks(a, 100);
  const fs = new Filesystem(entered.store, null, h);
  // The store of the previous test: d/sub is still pending.
  t.true(await isPending(entered.store.privateDir, 'd/sub', entered.store.dir.fd));
  a.hang = true;
  const err = await t.throwsAsync(fs.readdir('/d/sub'));
  t.is((err as { code?: string }).code, 'EIO');
  t.is(h.stats.failures, 1);
  a.hang = false;
  t.deepEqual((await fs.readdir('/d/sub')).map((e) => e.name), ['.', '..']);

  const state = JSON.parse(readFileSync(join(entered.store.privateDir, 'restore.json'), 'utf8'));
  let completed = false;
  const bg = new BackgroundRestore(h, entered.store.privateDir, state, log, { onComplete: () => { completed = true; } });
  bg.start();
  await bg.whenDone();
  t.true(completed);
  // The sparse file: its one data block fetched, its 19 holes not.
  t.is(h.stats.holesSkipped, 19);
  const sparse = readFileSync('d/sparse');
  t.is(sparse.length, 20 * BLOCK_SIZE);
  t.is(sparse.subarray(5 * BLOCK_SIZE + 7, 5 * BLOCK_SIZE + 11).toString(), 'data');
  t.is(sparse.subarray(0, 5 * BLOCK_SIZE).some((b) => b !== 0), false);
  t.is(bg.progress().phase, 'complete');
  t.false(existsSync(join(entered.store.privateDir, 'restore', 'maps')));
});
