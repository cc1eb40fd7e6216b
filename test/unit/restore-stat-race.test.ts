// A stat while the restore writes into an object (issue 10; seen by the
// snapshots disaster test: a directory the background restore was
// materialising showed the time of the recovery as its mtime). Creating a
// pending directory's entries, or writing fetched bytes into a file, moves
// its times until the restore puts them back; a stat in between used to see
// (and the kernel to cache for the attribute timeout) the moved times. Now it
// waits and answers what the object looks like afterwards.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
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
  entered = await enterTempStore('strata-restore-stat-');
});
test.after.always(() => entered.leave());

class Slow extends MemoryArchive {
  delayMs = 0;
  override async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    await sleep(this.delayMs);
    return super.readRange(volume, id, offset, length);
  }
}

const DIR_MTIME_NS = 2_000_000_002n;
const FILE_MTIME_NS = 3_000_000_006n;

test.serial('a stat while the restore creates a directory\'s entries, or writes a file\'s fetched bytes, sees the archive\'s times', async (t) => {
  const a = new Slow();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 2], rdev: 0 };
  const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 0], mtime: [3, 6], rdev: 0 });
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dir, parentMtime: [2, 0] });
  for (let i = 0; i < 64; i++) {
    const id = i.toString(16).padStart(32, 'a');
    await s.append({ op: 'create', parent: 'd'.repeat(32), name: `f${i}`, id, attrs: file(0), parentMtime: [2, 2] });
    await s.append({ op: 'write', id, offset: 0, data: Buffer.alloc(100, (i % 250) + 1) });
    await s.append({ op: 'setattr', id, attrs: file(100) });
  }
  await s.append({ op: 'create', parent: ROOT_ID, name: 'big', id: 'b'.repeat(32), attrs: file(0), parentMtime: [2, 0] });
  await s.append({ op: 'write', id: 'b'.repeat(32), offset: 0, data: Buffer.alloc(8 * BLOCK_SIZE, 7) });
  await s.append({ op: 'setattr', id: 'b'.repeat(32), attrs: file(8 * BLOCK_SIZE) });
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, h);

  // The background materialises /d with its small files whole (each fetch slow); stats of /d meanwhile.
  a.delayMs = 40;
  const restoring = h.restoreDir('d');
  const seen: bigint[] = [];
  for (let i = 0; i < 6; i++) {
    await sleep(30);
    seen.push((await fs.getattr('/d')).mtimeNs);
  }
  await restoring;
  t.deepEqual(seen, seen.map(() => DIR_MTIME_NS));

  // A fetch of the big stub's blocks while a program stats it through its handle and by name.
  const o = await fs.open('/big', 0);
  const reading = fs.read(o.handle, Buffer.alloc(8 * BLOCK_SIZE), 8 * BLOCK_SIZE, 0);
  const stats: bigint[] = [];
  for (let i = 0; i < 4; i++) {
    await sleep(15);
    stats.push((await fs.getattr('/big')).mtimeNs, (await fs.fgetattr(o.handle)).mtimeNs);
  }
  await reading;
  await fs.release(o.handle);
  t.deepEqual(stats, stats.map(() => FILE_MTIME_NS));
});
