// A read of a file still (partly) in the archive when the store has no room for
// its blocks (the fetch fails with ENOSPC, injected here as a failing fetch):
// answered from the archive and the store together, nothing written, with
// the bytes a program wrote through the mount kept over the archive's.
import test from 'ava';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;

test.before(async () => {
  entered = await enterTempStore('strata-read-through-');
});
test.after.always(() => entered.leave());

/** The store's room runs out: every fetch for a read fails as a write into a full store does. */
class FullStore extends OnDemandRestore {
  full = false;
  override fetchRange(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean> {
    if (!this.full) return super.fetchRange(id, fd, offset, length);
    return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
  }
}

const ids = { d: 'd'.repeat(32), big: 'b'.repeat(32) };
const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
const fileAttrs = (size: number): Attrs => ({ mode: 0o100644, uid: 12, gid: 34, size, atime: [1000, 5], mtime: [3000, 6], rdev: 0 });
/** 10 blocks and a bit, no two blocks alike. */
const bigData = Buffer.alloc(10 * BLOCK_SIZE + 123);
for (let i = 0; i < bigData.length; i++) bigData[i] = (i * 7 + (i >> 16)) & 0xff;

test.serial('a read the store has no room for is answered from the archive and the store together, nothing written', async (t) => {
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const sink = new ShippingSink(a, VOLUME);
  await sink.append({ op: 'create', parent: ROOT_ID, name: 'd', id: ids.d, attrs: dirAttrs, parentMtime: [5, 0] });
  await sink.append({ op: 'create', parent: ids.d, name: 'big', id: ids.big, attrs: fileAttrs(0), parentMtime: [2000, 2] });
  await sink.append({ op: 'write', id: ids.big, offset: 0, data: bigData });
  await sink.append({ op: 'setattr', id: ids.big, attrs: fileAttrs(bigData.length) });
  await sink.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new FullStore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, fetchTimeoutMs: 5000, log });
  const fs = new Filesystem(entered.store, null, h);
  const f = await fs.open('/d/big', 2 /* O_RDWR */);
  t.false(f.local);
  // The model: the archive's bytes, then what the program writes. Block 2 written whole (nothing fetched).
  let want = Buffer.from(bigData);
  const whole = Buffer.alloc(BLOCK_SIZE, 0x5a);
  await fs.write(f.handle, whole, whole.length, 2 * BLOCK_SIZE);
  whole.copy(want, 2 * BLOCK_SIZE);
  // Past the archive's end of file: the file grows (blocks 11 and 12 are the store's; block 10, the archive's last, stays missing).
  const tail = Buffer.from('tail bytes');
  await fs.write(f.handle, tail, tail.length, 12 * BLOCK_SIZE + 7);
  const grown = Buffer.alloc(12 * BLOCK_SIZE + 7 + tail.length);
  want.copy(grown);
  tail.copy(grown, 12 * BLOCK_SIZE + 7);
  // Block 0 made local by a write covering it in part (a read would fetch ahead too).
  const part = Buffer.from('abc');
  await fs.write(f.handle, part, part.length, 5);
  want = grown;
  part.copy(want, 5);

  h.full = true;
  // Reads across local blocks (0, 2) and missing ones (1, 3, ...), at odd edges, and the short last block.
  const reads: [number, number][] = [
    [0, want.length + 999], [BLOCK_SIZE - 3, 2 * BLOCK_SIZE + 9], [2 * BLOCK_SIZE + 100, 50], [bigData.length - 200, 4096], [3 * BLOCK_SIZE, 1],
    [10 * BLOCK_SIZE + 100, 3 * BLOCK_SIZE],
  ];
  for (const [off, len] of reads) {
    const buf = Buffer.alloc(len);
    const n = await fs.read(f.handle, buf, len, off);
    const expected = want.subarray(off, Math.min(off + len, want.length));
    t.is(n, expected.length, `${off}+${len}: length`);
    t.true(buf.subarray(0, n).equals(expected), `${off}+${len}: bytes`);
  }
  t.is(h.stats.readsThrough, reads.length);
  t.true(await h.isRemote(ids.big), 'nothing was made local: the missing blocks are still missing');

  // Cut to a smaller size through the handle (the restore makes the file local first: room again), then read.
  h.full = false;
  await fs.ftruncate(f.handle, 3 * BLOCK_SIZE + 5);
  const cut = Buffer.alloc(4 * BLOCK_SIZE);
  t.is(await fs.read(f.handle, cut, cut.length, 0), 3 * BLOCK_SIZE + 5);
  t.true(cut.subarray(0, 3 * BLOCK_SIZE + 5).equals(want.subarray(0, 3 * BLOCK_SIZE + 5)));
  await fs.release(f.handle);
});
