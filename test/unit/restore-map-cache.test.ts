// Block maps under a tiny cache (issue 11 drill, 2026-12-03): the cache of
// block maps is bounded by bytes, and a map it let go while a fetch or a
// program's write still held it used to count as "no longer the file's"
// (a cut). The fetch then wrote nothing and the read returned the stub's
// zeros; a write through the mount was not recorded in the map, so a later
// fetch could write the archive's bytes over it. A map larger than the whole
// cache (a file over 2 TiB with the default 32 MiB) was never cached at all:
// every read of such a file returned zeros. Seeded: programs read and write
// several files at random places while the background restore runs, with a
// cache that holds about two maps, and with one smaller than any map; every
// byte read and the files at the end equal a model. And directory images
// larger than their whole cache: fetched once for many lookups, not once each.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { constants as C } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Rng } from '../helpers/model-tree.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BackgroundRestore } from '../../src/restore/background.js';
import { readRestoreState } from '../../src/restore/state.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });

/** An archive that answers after a little while, so that fetches overlap and maps are let go meanwhile. */
class Slow extends MemoryArchive {
  constructor(private readonly rng: Rng) { super(); }
  override async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    await sleep(this.rng.int(0, 4));
    return super.readRange(volume, id, offset, length);
  }
}

const FILES = 6;
const BLOCKS = 24;
const SIZE = BLOCKS * BLOCK_SIZE - 1000;
const idOf = (f: number): ObjectId => f.toString(16).repeat(32).slice(0, 32);

for (const [label, cacheBytes] of [['a cache of about two maps', 2 * (BLOCKS + 64) + 10], ['a cache smaller than any map', 16]] as const) {
  for (const seed of [1, 2, 3]) {
    test.serial(`${label}, seed ${seed}: reads and writes during the restore equal the model`, async (t) => {
      const entered: EnteredStore = await enterTempStore(`strata-restore-maps-${seed}-`);
      try {
        const rng = new Rng(seed * 104729 + cacheBytes);
        const a = new Slow(rng);
        await a.createVolume(VOLUME);
        const s = new ShippingSink(a, VOLUME);
        const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
        await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dir, parentMtime: [2, 0] });
        const model: Buffer[] = [];
        for (let f = 0; f < FILES; f++) {
          const data = Buffer.alloc(SIZE);
          for (let i = 0; i < SIZE; i++) data[i] = (i * (f + 3) + (i >> 11) + f) & 0xff;
          // A hole: blocks the archive does not hold (skipped by the background restore).
          data.fill(0, 5 * BLOCK_SIZE, 8 * BLOCK_SIZE);
          model.push(data);
          const attrs: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: SIZE, atime: [1, 0], mtime: [3, 0], rdev: 0 };
          await s.append({ op: 'create', parent: 'd'.repeat(32), name: `f${f}`, id: idOf(f), attrs: { ...attrs, size: 0 }, parentMtime: [2, 0] });
          for (let off = 0; off < SIZE; off += 4 * BLOCK_SIZE) {
            const chunk = data.subarray(off, Math.min(SIZE, off + 4 * BLOCK_SIZE));
            if (chunk.some((b) => b !== 0)) await s.append({ op: 'write', id: idOf(f), offset: off, data: chunk });
          }
          await s.append({ op: 'setattr', id: idOf(f), attrs });
        }
        await s.ship();
        await prepareRecovery({ client: a, volume: VOLUME, depth: 2, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
        const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log, mapCacheBytes: cacheBytes });
        const fs = new Filesystem(entered.store, null, h);
        const bg = new BackgroundRestore(h, entered.store.privateDir, (await readRestoreState(entered.store.privateDir))!, log);
        const wrong: string[] = [];
        // Per file, a program's write never overlaps another program's read or write in time (either result would
        // be right then); fetches and the background restore overlap them freely.
        const busy: { readers: number; writer: Promise<void> | null }[] = Array.from({ length: FILES }, () => ({ readers: 0, writer: null }));
        const exclusive = async <T>(f: number, op: () => Promise<T>): Promise<T> => {
          while (busy[f]!.writer !== null || busy[f]!.readers > 0) await (busy[f]!.writer ?? sleep(1));
          let done!: () => void;
          busy[f]!.writer = new Promise<void>((r) => { done = r; });
          try { return await op(); } finally { busy[f]!.writer = null; done(); }
        };
        const shared = async <T>(f: number, op: () => Promise<T>): Promise<T> => {
          while (busy[f]!.writer !== null) await busy[f]!.writer;
          busy[f]!.readers++;
          try { return await op(); } finally { busy[f]!.readers--; }
        };
        // Programs: each works on files at random, reads (checked against the model) and writes (applied to the model).
        const program = async (p: number): Promise<void> => {
          for (let k = 0; k < 30; k++) {
            const f = rng.int(0, FILES - 1);
            const o = await fs.open(`/d/f${f}`, C.O_RDWR);
            try {
              const off = rng.int(0, SIZE - 1);
              const len = rng.int(1, Math.min(SIZE - off, 3 * BLOCK_SIZE));
              if (rng.chance(0.35)) {
                const data = Buffer.alloc(len, 0x40 + p * 8 + (k & 7));
                await exclusive(f, async () => {
                  await fs.write(o.handle, data, len, off);
                  data.copy(model[f]!, off);
                });
              } else {
                const buf = Buffer.alloc(len);
                const [n, want] = await shared(f, async () => [await fs.read(o.handle, buf, len, off), Buffer.from(model[f]!.subarray(off, off + len))] as const);
                if (n !== len || !buf.equals(want)) {
                  const at = buf.findIndex((b, i) => b !== want[i]);
                  wrong.push(`program ${p}: f${f} read ${off}+${len}: ${n} bytes, first wrong at ${off + at} (got ${buf[at]}, model ${want[at]})`);
                }
              }
            } finally {
              await fs.release(o.handle);
            }
          }
        };
        bg.start();
        await Promise.all([0, 1, 2, 3].map(program));
        await bg.whenDone();
        t.deepEqual(wrong.slice(0, 5), [], `${wrong.length} wrong reads`);
        for (let f = 0; f < FILES; f++) {
          const got = readFileSync(`d/f${f}`);
          t.true(got.equals(model[f]!), `f${f} after the restore: first differing byte ${got.findIndex((b, i) => b !== model[f]![i])}`);
        }
      } finally {
        entered.leave();
      }
    });
  }
}

test.serial('a pending directory whose image is larger than the whole image cache: its lookups fetch it once, not once each', async (t) => {
  const entered: EnteredStore = await enterTempStore('strata-restore-images-');
  try {
    const a = new MemoryArchive();
    await a.createVolume(VOLUME);
    const s = new ShippingSink(a, VOLUME);
    const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
    await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dir, parentMtime: [2, 0] });
    const file: Attrs = { mode: 0o100644, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [3, 0], rdev: 0 };
    for (let i = 0; i < 200; i++) {
      await s.append({ op: 'create', parent: 'd'.repeat(32), name: `f${i}`, id: (0x1000 + i).toString(16).repeat(8), attrs: file, parentMtime: [2, 0] });
    }
    await s.ship();
    await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
    // 200 entries are about 80 KB by the cache's estimate: more than the whole cache.
    const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log, imageCacheBytes: 16 * 1024 });
    const fs = new Filesystem(entered.store, null, h);
    for (let i = 0; i < 200; i += 7) t.is(Number((await fs.lookup(`/d/f${i}`)).size), 0);
    await t.throwsAsync(fs.lookup('/d/none'), { code: 'ENOENT' });
    t.is(h.stats.dirFetches, 1, 'one fetch of the directory for 30 lookups');
  } finally {
    entered.leave();
  }
});

test.serial('a directory image that takes longer than the fetch timeout: the lookup fails with EIO, the fetch goes on, and the next lookup finds it', async (t) => {
  const entered: EnteredStore = await enterTempStore('strata-restore-slow-image-');
  try {
    let calls = 0;
    class SlowImages extends MemoryArchive {
      override async deepImages(volume: string, dirId: ObjectId, name?: string): ReturnType<MemoryArchive['deepImages']> {
        calls++;
        await sleep(400);
        return super.deepImages(volume, dirId, name);
      }
    }
    const a = new SlowImages();
    await a.createVolume(VOLUME);
    const s = new ShippingSink(a, VOLUME);
    const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1, 0], mtime: [2, 0], rdev: 0 };
    await s.append({ op: 'create', parent: ROOT_ID, name: 'd', id: 'd'.repeat(32), attrs: dir, parentMtime: [2, 0] });
    await s.append({ op: 'create', parent: 'd'.repeat(32), name: 'f', id: 'f'.repeat(32), attrs: { ...dir, mode: 0o100644 }, parentMtime: [2, 0] });
    await s.ship();
    await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
    const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log, fetchTimeoutMs: 150 });
    const fs = new Filesystem(entered.store, null, h);
    await t.throwsAsync(fs.lookup('/d/f'), { code: 'EIO' });
    await t.throwsAsync(fs.lookup('/d/f'), { code: 'EIO' }, 'a second lookup while the fetch is on its way waits for it too');
    await sleep(700);
    const asked = calls;
    t.is(Number((await fs.lookup('/d/f')).mode) & 0o170000, 0o100000, 'the image that came late is used');
    t.is(calls, asked, 'no new request: the image that came after its lookup gave up was kept');
    t.true(calls <= 2, `${calls} requests for two lookups that gave up`);
  } finally {
    entered.leave();
  }
});
