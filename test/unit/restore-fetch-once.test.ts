// Each block is fetched once, whoever asks for it (issue 10: eight parallel
// readers next to the background restore fetched 660.8 MiB for 352.8 MiB of
// blocks). A program's read and the background restore of the same file join
// each other's requests instead of repeating them.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { readRestoreState } from '../../src/restore/state.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
let entered: EnteredStore;
test.before(async () => {
  entered = await enterTempStore('strata-restore-once-');
});
test.after.always(() => entered.leave());

/** A slow archive that counts the bytes it serves. */
class Slow extends MemoryArchive {
  served = 0;
  override async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    await sleep(10);
    const b = await super.readRange(volume, id, offset, length);
    this.served += b.length;
    return b;
  }
}

const SIZE = 48 * BLOCK_SIZE;
const data = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i++) data[i] = (i * 31 + (i >> 12)) & 0xff;

test.serial('programs reading a file while the background restore fetches it: every block crosses the wire once', async (t) => {
  const a = new Slow();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
  const file: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: SIZE, atime: [1, 0], mtime: [3, 0], rdev: 0 };
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dir, parentMtime: [2, 0] });
  await s.append({ op: 'create', parent: 'd'.repeat(32), name: 'f', id: 'f'.repeat(32), attrs: { ...file, size: 0 }, parentMtime: [2, 0] });
  for (let off = 0; off < SIZE; off += 16 * BLOCK_SIZE) await s.append({ op: 'write', id: 'f'.repeat(32), offset: off, data: data.subarray(off, off + 16 * BLOCK_SIZE) });
  await s.append({ op: 'setattr', id: 'f'.repeat(32), attrs: file });
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);
  const bg = new BackgroundRestore(h, entered.store.privateDir, (await readRestoreState(entered.store.privateDir))!, log);
  a.served = 0;
  bg.start();
  // Four readers, each reading the file from a different place in 128 KiB requests, while the background restore runs.
  await Promise.all([0, 12, 24, 36].map(async (startBlock) => {
    const o = await fs.open('/d/f', 0);
    const buf = Buffer.alloc(2 * BLOCK_SIZE);
    for (let b = startBlock; b < 48; b += 2) {
      const n = await fs.read(o.handle, buf, buf.length, b * BLOCK_SIZE);
      t.deepEqual(buf.subarray(0, n), data.subarray(b * BLOCK_SIZE, b * BLOCK_SIZE + n));
    }
    await fs.release(o.handle);
  }));
  await bg.whenDone();
  t.deepEqual(readFileSync('d/f'), data);
  t.is(a.served, SIZE, `bytes served ${a.served} for a file of ${SIZE}`);
});
