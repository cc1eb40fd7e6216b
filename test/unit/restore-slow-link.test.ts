// On-demand reads over a slow link (the archive's answers take long, but
// come). Before: every fetch, readahead included, had to arrive within
// --fetch-timeout, and a fetch that did not was thrown away: over a link of
// 0.5 MB/s a 1 MiB window never arrived in 5 s, so md5sum of a restored 20 MB
// file failed with EIO every time, however often it was retried.
//  - Reads wait for their own blocks; the readahead window is sized to what
//    the link delivers within a share of the time bound.
//  - A read that gives up keeps the fetch: the next read joins it, and the
//    blocks cross the wire once.
//  - Every byte read is the archive's (compared with the data written).
import test from 'ava';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
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
let entered: EnteredStore | null = null;
/** A fresh store for each test (they run one at a time: the store is the process's working directory). */
test.beforeEach(async () => {
  entered = await enterTempStore('strata-restore-slow-');
});
test.afterEach.always(() => {
  entered?.leave();
  entered = null;
});

/**
 * An archive behind a link that carries `msPerBlock` per 64 KiB, one answer
 * after the other (a FIFO: concurrent answers share it), plus `stallMs` on
 * the next answer when set.
 */
class SlowLink extends MemoryArchive {
  /** [offset, length] of each request. */
  asked: [number, number][] = [];
  served = 0;
  stallMs = 0;
  private busyUntil = 0;
  constructor(private readonly msPerBlock: number) {
    super();
  }

  override async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    this.asked.push([offset, length]);
    const b = await super.readRange(volume, id, offset, length);
    const stall = this.stallMs;
    this.stallMs = 0;
    const start = Math.max(Date.now(), this.busyUntil);
    this.busyUntil = start + stall + (b.length / BLOCK_SIZE) * this.msPerBlock;
    await sleep(this.busyUntil - Date.now());
    this.served += b.length;
    return b;
  }
}

const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };

async function volumeWithFile(a: SlowLink, name: string, data: Buffer): Promise<void> {
  const s = new ShippingSink(a, VOLUME);
  const id = Buffer.from(name.padEnd(16, '-')).toString('hex').slice(0, 32);
  const file: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: data.length, atime: [1, 0], mtime: [3, 0], rdev: 0 };
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dirAttrs, parentMtime: [2, 0] });
  await s.append({ op: 'create', parent: 'd'.repeat(32), name, id, attrs: { ...file, size: 0 }, parentMtime: [2, 0] });
  for (let off = 0; off < data.length; off += 16 * BLOCK_SIZE) await s.append({ op: 'write', id, offset: off, data: data.subarray(off, off + 16 * BLOCK_SIZE) });
  await s.append({ op: 'setattr', id, attrs: file });
  await s.ship();
}

/** The volume on `a` recovered into the test's store (top tiers to `depth`), its restore hooks with bound `fetchTimeoutMs`, and a core over them. */
async function recovered(a: SlowLink, depth: number, fetchTimeoutMs: number): Promise<{ h: OnDemandRestore; fs: Filesystem }> {
  await prepareRecovery({ client: a, volume: VOLUME, depth, dir: entered!.store.dir, privateDir: entered!.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered!.store, privateDir: entered!.store.privateDir, log, fetchTimeoutMs });
  return { h, fs: new Filesystem(entered!.store, null, h) };
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

test.serial('a file read through, 128 KiB at a time, over a link slower than a 1 MiB window per time bound: no read fails, every byte is right', async (t) => {
  // 100 ms per block: 1 MiB (the first window before) takes 1.6 s, twice the 800 ms bound. (Long enough that a
  // loaded machine's timer delays, tens of ms, stay small against the bound.)
  const a = new SlowLink(100);
  await a.createVolume(VOLUME);
  const data = pattern(40 * BLOCK_SIZE + 1234, 11);
  await volumeWithFile(a, 'f', data);
  const { fs } = await recovered(a, 2, 800);
  a.served = 0;
  const o = await fs.open('/d/f', 0);
  const buf = Buffer.alloc(2 * BLOCK_SIZE);
  const failures: string[] = [];
  for (let off = 0; off < data.length; off += buf.length) {
    try {
      const n = await fs.read(o.handle, buf, buf.length, off);
      t.true(buf.subarray(0, n).equals(data.subarray(off, off + n)), `bytes at ${off}`);
    } catch (err) {
      failures.push(`${off}: ${(err as Error).message}`);
    }
  }
  await fs.release(o.handle);
  t.deepEqual(failures, [], 'no read failed');
  t.true(readFileSync('d/f').equals(data));
  t.true(a.served <= data.length + BLOCK_SIZE, `bytes served ${a.served} for a file of ${data.length}`);
});

test.serial('a read that gives up on a stalled answer keeps it: the next read joins it, and the blocks cross the wire once', async (t) => {
  const a = new SlowLink(1);
  await a.createVolume(VOLUME);
  const data = pattern(8 * BLOCK_SIZE, 5);
  await volumeWithFile(a, 'g', data);
  const { fs } = await recovered(a, 2, 300);
  const o = await fs.open('/d/g', 0);
  const buf = Buffer.alloc(BLOCK_SIZE);
  a.asked = [];
  a.served = 0;
  // The answer takes 500 ms: the first read gives up at 300 ms with EIO.
  a.stallMs = 500;
  const err = await t.throwsAsync(fs.read(o.handle, buf, buf.length, 0));
  t.is((err as { code?: string }).code, 'EIO', String(err));
  // The second read, at 300 ms, joins the same fetch (its answer lands at 500 ms).
  const n = await fs.read(o.handle, buf, buf.length, 0);
  t.is(n, BLOCK_SIZE);
  t.true(buf.equals(data.subarray(0, BLOCK_SIZE)));
  t.is(a.asked.filter(([off]) => off === 0).length, 1, `block 0 asked for once: ${JSON.stringify(a.asked)}`);
  // Everything else, then: each block once.
  const all = Buffer.alloc(data.length);
  for (let off = 0; off < data.length; off += BLOCK_SIZE) await fs.read(o.handle, all.subarray(off), BLOCK_SIZE, off);
  await fs.release(o.handle);
  t.true(all.equals(data));
  t.true(a.served <= data.length, `bytes served ${a.served} for a file of ${data.length}`);
});

test.serial('a fetch that outlives its read writes only into its own file, never into one that now has the read\'s descriptor number', async (t) => {
  const a = new SlowLink(1);
  await a.createVolume(VOLUME);
  const data = pattern(4 * BLOCK_SIZE, 9);
  await volumeWithFile(a, 'h', data);
  const { fs } = await recovered(a, 2, 200);
  const o = await fs.open('/d/h', 0);
  const fdOfRead = fs.handles.get(o.handle)!.fd;
  const buf = Buffer.alloc(BLOCK_SIZE);
  a.stallMs = 600;
  const err = await t.throwsAsync(fs.read(o.handle, buf, buf.length, 0));
  t.is((err as { code?: string }).code, 'EIO');
  // The program gives up and closes the file; another file opened now gets the lowest free number: the read's.
  await fs.release(o.handle);
  const other = Buffer.alloc(4 * BLOCK_SIZE, 0x5a);
  writeFileSync('other', other);
  const otherFd = openSync('other', 'r+');
  try {
    t.log(`read's descriptor ${fdOfRead}, the other file's ${otherFd}`);
    // The stalled answer arrives at 600 ms.
    await sleep(800);
    t.true(readFileSync('other').equals(other), 'the other file is untouched');
  } finally {
    closeSync(otherFd);
  }
  const o2 = await fs.open('/d/h', 0);
  const all = Buffer.alloc(data.length);
  for (let off = 0; off < data.length; off += BLOCK_SIZE) await fs.read(o2.handle, all.subarray(off), BLOCK_SIZE, off);
  await fs.release(o2.handle);
  t.true(all.equals(data), 'the restored file is the archive\'s');
});

test.serial('the background restore over a link slower than a small file per time bound: it completes, every file the archive\'s', async (t) => {
  // 100 ms per block, a 300 ms bound: a small file of 8 blocks (fetched whole with its directory) takes 800 ms.
  const a = new SlowLink(100);
  await a.createVolume(VOLUME);
  const files = [pattern(8 * BLOCK_SIZE, 21), pattern(5 * BLOCK_SIZE + 17, 22), pattern(100, 23)];
  const s = new ShippingSink(a, VOLUME);
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dirAttrs, parentMtime: [2, 0] });
  await s.append({ op: 'create', parent: 'd'.repeat(32), name: 'e', id: 'e'.repeat(32), attrs: dirAttrs, parentMtime: [2, 0] });
  for (const [k, data] of files.entries()) {
    const id = String(k + 1).repeat(32);
    const file: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: data.length, atime: [1, 0], mtime: [3, 0], rdev: 0 };
    await s.append({ op: 'create', parent: 'e'.repeat(32), name: `f${k}`, id, attrs: { ...file, size: 0 }, parentMtime: [2, 0] });
    await s.append({ op: 'write', id, offset: 0, data });
    await s.append({ op: 'setattr', id, attrs: file });
  }
  await s.ship();
  // Depth 1: d/e is pending, its files come with it (whole) in the background.
  const { h } = await recovered(a, 1, 300);
  const bg = new BackgroundRestore(h, entered!.store.privateDir, (await readRestoreState(entered!.store.privateDir))!, log);
  bg.start();
  const done = await Promise.race([bg.whenDone().then(() => true), sleep(30_000).then(() => false)]);
  await bg.stop();
  t.true(done, 'the background restore completed within 30 s');
  for (const [k, data] of files.entries()) t.true(readFileSync(`d/e/f${k}`).equals(data), `f${k}`);
});

test.serial('a program reading while the background restore runs over a slow link: the background keeps little enough in flight that no read fails', async (t) => {
  // 200 ms per block, a 1.6 s bound: a read may wait about 400 ms behind the background (2 blocks), not 1 MiB (3.2 s)
  // or more. (Long enough that a loaded machine's timer delays, tens of ms, stay small against the bound.)
  const a = new SlowLink(200);
  await a.createVolume(VOLUME);
  const big = pattern(48 * BLOCK_SIZE, 31);
  const other = pattern(16 * BLOCK_SIZE + 99, 32);
  const s = new ShippingSink(a, VOLUME);
  await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dirAttrs, parentMtime: [2, 0] });
  for (const [name, id, data] of [['big', 'b'.repeat(32), big], ['other', 'c'.repeat(32), other]] as const) {
    const file: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: data.length, atime: [1, 0], mtime: [3, 0], rdev: 0 };
    await s.append({ op: 'create', parent: 'd'.repeat(32), name, id, attrs: { ...file, size: 0 }, parentMtime: [2, 0] });
    for (let off = 0; off < data.length; off += 16 * BLOCK_SIZE) await s.append({ op: 'write', id, offset: off, data: data.subarray(off, off + 16 * BLOCK_SIZE) });
    await s.append({ op: 'setattr', id, attrs: file });
  }
  await s.ship();
  const { h, fs } = await recovered(a, 2, 1600);
  const bg = new BackgroundRestore(h, entered!.store.privateDir, (await readRestoreState(entered!.store.privateDir))!, log);
  bg.start();
  await sleep(600); // the background is well under way
  const o = await fs.open('/d/other', 0);
  const buf = Buffer.alloc(2 * BLOCK_SIZE);
  const failures: string[] = [];
  let slowest = 0;
  for (let off = 0; off < other.length; off += buf.length) {
    const started = Date.now();
    try {
      const n = await fs.read(o.handle, buf, buf.length, off);
      t.true(buf.subarray(0, n).equals(other.subarray(off, off + n)), `bytes at ${off}`);
    } catch (err) {
      failures.push(`${off}: ${(err as Error).message}`);
    }
    slowest = Math.max(slowest, Date.now() - started);
  }
  await fs.release(o.handle);
  t.log(`slowest read ${slowest} ms; bytes served ${a.served}; asked ${JSON.stringify(a.asked.slice(0, 12))}`);
  t.deepEqual(failures, [], 'no read failed');
  const done = await Promise.race([bg.whenDone().then(() => true), sleep(60_000).then(() => false)]);
  await bg.stop();
  t.true(done, 'the background restore completed');
  t.true(readFileSync('d/big').equals(big));
  t.true(readFileSync('d/other').equals(other));
});
