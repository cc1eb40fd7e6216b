// On-demand restore: the core's RestoreHooks for a store whose restore is not
// finished. A pending directory's image is fetched and materialised before an
// op needs its entries (concurrent requests for one directory share one
// fetch); a file's missing blocks are fetched before a read needs them, by
// range; a write first makes the blocks it covers only in part local.
//
// Every fetch is bounded in time (fetchTimeoutMs): when the archive does not
// answer, the op fails with EIO and the next op tries again. Programs'
// fetches go first; the background restore's go through the background lane
// of the fetch scheduler (fetch-scheduler.ts).
//
// Ordering of a block fetch (I4): the bytes are written to the file and made
// durable (fdatasync) before the block map says so; a crash in between only
// costs a refetch. Fetched blocks of zeros are not written (holes stay holes).
//
// Lock order: a file's write lock (FileLock) is taken after its bytes have
// been fetched from the archive, never across a network round trip by a
// fetch; a write holds it across the fetch of its partial blocks.
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import { LRUCache } from 'lru-cache';
import * as native from '../native/index.js';
import { FsError } from '../core/errno.js';
import type { RestoreHooks } from '../core/restore-hooks.js';
import { isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import { BLOCK_SIZE, ROOT_ID, type ObjectId } from '../protocol/records.js';
import { readObjectId } from '../store/object-ids.js';
import {
  clearPending, isPending, markBlocksPresent, readBlockMap, removeBlockMap, type BlockMap,
} from '../store/restore-marks.js';
import { isZero } from '../mirror/tree-blocks.js';
import { materialiseEntries, materialiseOne } from './materialise.js';
import type { DirImage, EntryImage } from '../protocol/images.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';
import { FetchScheduler, type FetchGroup } from './fetch-scheduler.js';

export interface OnDemandOptions {
  client: ArchiveClient;
  volume: string;
  /** The store's private directory (absolute). */
  privateDir: string;
  /** An op waiting for the archive fails with EIO after this many ms (default 5000). */
  fetchTimeoutMs?: number;
  /** Bytes of block maps kept in memory (default 32 MiB). */
  mapCacheBytes?: number;
  /** Bytes of directory images kept for lookups (default 16 MiB). */
  imageCacheBytes?: number;
  /** The background restore's fetches in flight at most: requests (default 8) and bytes (default 4 MiB). */
  backgroundRequests?: number;
  backgroundBytes?: number;
  log: Logger;
}

/** Counters for `strata status` and the tests. */
export interface FetchStats {
  /** Directory images fetched. */
  dirFetches: number;
  /** readRange requests made. */
  rangeFetches: number;
  /** Blocks made local by fetching. */
  blocksFetched: number;
  /** Bytes received from the archive for file data. */
  bytesFetched: number;
  /** Blocks that are holes on the archive, made local without fetching. */
  holesSkipped: number;
  /** Objects created by materialisation. */
  entriesMaterialised: number;
  /** Fetches that failed (timeouts, archive errors). */
  failures: number;
  lastError: string | null;
}

interface CachedImage {
  image: DirImage;
  byName: Map<string, EntryImage>;
}

/** Counters before any fetch. */
export function noFetches(): FetchStats {
  return { dirFetches: 0, rangeFetches: 0, blocksFetched: 0, bytesFetched: 0, holesSkipped: 0, entriesMaterialised: 0, failures: 0, lastError: null };
}

/** At most this many blocks in one readRange (4 MiB). */
const MAX_RUN_BLOCKS = 64;
/** Blocks fetched from where a read starts (1 MiB), and when reads are sequential (4 MiB). */
const READAHEAD_BLOCKS = 16;
const READAHEAD_SEQUENTIAL_BLOCKS = 64;
/** The background restore fetches a file 1 MiB at a time (a program's fetch never waits behind much). */
const BACKGROUND_RUN_BLOCKS = 16;
/** What a directory image request counts for against the background's byte budget. */
const IMAGE_FETCH_BYTES = 64 * 1024;

export class OnDemandRestore implements RestoreHooks {
  readonly stats: FetchStats = noFetches();
  private readonly client: ArchiveClient;
  private readonly volume: string;
  private readonly privateDir: string;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  /** Directory hydrations in flight, by directory id. */
  private readonly dirsInFlight = new Map<ObjectId, Promise<Set<string>>>();
  /** Block fetches in flight, by `${id}:${index}`. */
  private readonly blocksInFlight = new Map<string, Promise<void>>();
  private readonly maps: LRUCache<ObjectId, BlockMap>;
  /** Images of pending directories, for lookups (bounded by bytes; dropped once a directory is materialised). */
  private readonly images: LRUCache<ObjectId, CachedImage>;
  private readonly imagesInFlight = new Map<ObjectId, Promise<CachedImage>>();
  private readonly locks = new Map<ObjectId, Promise<unknown>>();
  /** Where the last read of a file ended (sequential reads get a larger window). */
  private readonly readEnds = new LRUCache<ObjectId, number>({ max: 4096 });
  /** Programs' fetches go first; the background restore's wait (fetch-scheduler.ts). */
  private readonly scheduler: FetchScheduler;
  /** Directories the background restore is materialising: a program that waits for one promotes its fetches. */
  private readonly backgroundDirs = new Map<ObjectId, FetchGroup>();

  constructor(opts: OnDemandOptions) {
    this.client = opts.client;
    this.volume = opts.volume;
    this.privateDir = opts.privateDir;
    this.timeoutMs = opts.fetchTimeoutMs ?? 5000;
    this.log = opts.log;
    this.scheduler = new FetchScheduler({
      ...(opts.backgroundRequests !== undefined ? { requests: opts.backgroundRequests } : {}),
      ...(opts.backgroundBytes !== undefined ? { bytes: opts.backgroundBytes } : {}),
    });
    this.images = new LRUCache<ObjectId, CachedImage>({
      maxSize: opts.imageCacheBytes ?? 16 * 1024 * 1024,
      // An estimate: the entry objects, their names and attributes.
      sizeCalculation: (c) => 512 + c.image.entries.length * 400,
    });
    this.maps = new LRUCache<ObjectId, BlockMap>({
      maxSize: opts.mapCacheBytes ?? 32 * 1024 * 1024,
      sizeCalculation: (m) => m.present.length + 64,
    });
  }

  // ---- RestoreHooks ------------------------------------------------------------

  async entries(rel: string): Promise<void> {
    if (!(await isPending(rel))) return;
    await this.foregroundWork(() => this.hydrateDir(rel));
  }

  async child(parentRel: string, name: string): Promise<void> {
    if (!(await isPending(parentRel))) return;
    await this.foregroundWork(() => this.materialiseChild(parentRel, name));
  }

  async isRemote(id: ObjectId): Promise<boolean> {
    return (await this.mapOf(id)) !== null;
  }

  /**
   * For a read: the blocks it covers, and a window of what is missing ahead
   * (1 MiB, 4 MiB when the reads are sequential), so a program reading a
   * large file does not wait one round trip per read.
   */
  fetchRange(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean> {
    // The kernel's readahead sends several reads at once, not always in order: near the last one counts as sequential.
    const lastEnd = this.readEnds.get(id);
    const sequential = lastEnd !== undefined && Math.abs(offset - lastEnd) <= READAHEAD_BLOCKS * BLOCK_SIZE;
    this.readEnds.set(id, offset + length);
    return this.foregroundWork(async () => {
      const map = await this.mapOf(id);
      if (map === null) return false;
      // The window starts at the first block neither local nor on its way, so concurrent reads make long requests.
      let from = Math.floor(offset / BLOCK_SIZE);
      while (from < map.present.length && (map.present[from] === 1 || this.blocksInFlight.has(`${id}:${from}`))) from++;
      const window = sequential ? READAHEAD_SEQUENTIAL_BLOCKS : READAHEAD_BLOCKS;
      const end = Math.max(offset + length, (from + window) * BLOCK_SIZE);
      return this.fetchRangeNow(id, fd, offset, end - offset);
    });
  }

  async fetchAll(id: ObjectId, fd: number): Promise<void> {
    const map = await this.mapOf(id);
    if (map === null) return;
    await this.foregroundWork(() => this.fetchRangeNow(id, fd, 0, map.remoteSize));
  }

  async write<T>(id: ObjectId, fd: number, offset: number, length: number, write: () => Promise<T>): Promise<T> {
    const map = await this.mapOf(id);
    if (map === null || length === 0) return write();
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((offset + length - 1) / BLOCK_SIZE);
    const nblocks = map.present.length;
    // Blocks the write covers only in part keep bytes of the archive's.
    const partial = [first, last].filter((i, k, all) => all.indexOf(i) === k && i < nblocks && map.present[i] !== 1 &&
      !(offset <= i * BLOCK_SIZE && offset + length >= Math.min((i + 1) * BLOCK_SIZE, map.remoteSize)));
    for (const i of partial) await this.foregroundWork(() => this.fetchRangeNow(id, fd, i * BLOCK_SIZE, 1));
    return this.withLock(id, async () => {
      const result = await write();
      const covered: number[] = [];
      for (let i = first; i <= Math.min(last, nblocks - 1); i++) if (map.present[i] !== 1) covered.push(i);
      if (covered.length > 0) await this.markPresent(id, map, covered);
      return result;
    });
  }

  async discard(id: ObjectId): Promise<void> {
    await this.withLock(id, async () => {
      this.maps.delete(id);
      await removeBlockMap(this.privateDir, id);
    });
  }

  // ---- for the background restorer --------------------------------------------

  /** Resolves when no program waits for the archive (the background restore's next step waits for that). */
  whenIdle(): Promise<void> {
    return this.scheduler.whenIdle();
  }

  /** The background restore stops: its fetches not sent yet fail. */
  cancelBackground(): void {
    this.scheduler.cancelQueued(new FsError('EIO', 'the background restore stopped'));
  }

  /** Materialises a pending directory, small files whole (without foreground priority); the names of those files, or null when it was not pending. */
  async restoreDir(rel: string): Promise<Set<string> | null> {
    if (!(await isPending(rel))) return null;
    return this.hydrateDir(rel, true);
  }


  /**
   * Marks the blocks that are holes on the archive local without fetching
   * them: a stub's unfetched blocks are holes locally too, so they read as
   * zeros already. Sparse files then cost what their data costs. (Without an
   * answer from the archive nothing is skipped: the blocks are fetched.)
   */
  private async skipHoles(id: ObjectId): Promise<void> {
    const map = await this.mapOf(id);
    if (map === null || map.missing < 2) return;
    let data: Set<number>;
    try {
      const blocks = await this.scheduler.background(IMAGE_FETCH_BYTES, () => this.bounded(this.client.fileBlocks(this.volume, id), `blocks of file ${id}`));
      data = new Set(blocks.blocks.map((b) => b.index));
    } catch {
      return;
    }
    await this.withLock(id, async () => {
      const holes: number[] = [];
      for (let i = 0; i < map.present.length; i++) if (map.present[i] !== 1 && !data.has(i)) holes.push(i);
      if (holes.length === 0) return;
      this.stats.holesSkipped += holes.length;
      await this.markPresent(id, map, holes);
    });
  }

  /** The block map of a file (null: local). */
  async mapOf(id: ObjectId): Promise<BlockMap | null> {
    const cached = this.maps.get(id);
    if (cached !== undefined) return cached.missing === 0 ? null : cached;
    const map = await readBlockMap(this.privateDir, id);
    if (map === null) return null;
    if (map.missing === 0) {
      await removeBlockMap(this.privateDir, id);
      return null;
    }
    this.maps.set(id, map);
    return map;
  }

  // ---- internals -----------------------------------------------------------------

  private foregroundWork<T>(f: () => Promise<T>): Promise<T> {
    return this.scheduler.foregroundWork(f);
  }

  /** A program waits for the directory `id`: what the background restore fetches for it goes first. */
  private promote(id: ObjectId): void {
    const group = this.backgroundDirs.get(id);
    if (group !== undefined) this.scheduler.promote(group);
  }

  /**
   * Materialises all of a pending directory's entries (`withData`: small
   * files whole, for the background restore). Resolves with the names of the
   * files created whole.
   */
  private async hydrateDir(rel: string, withData = false): Promise<Set<string>> {
    const id = await this.dirIdOf(rel);
    let p = this.dirsInFlight.get(id);
    if (p === undefined) {
      let whole = new Set<string>();
      // The background's fetches for this directory wait their turn, unless a program comes to wait for it.
      const group = withData ? this.scheduler.group() : null;
      if (group !== null) this.backgroundDirs.set(id, group);
      p = this.withDir(rel, id, async (dir) => { whole = await this.hydrateDirOnce(dir, id, group); })
        .then(() => whole)
        .finally(() => {
          this.dirsInFlight.delete(id);
          if (group !== null && this.backgroundDirs.get(id) === group) this.backgroundDirs.delete(id);
        });
      this.dirsInFlight.set(id, p);
    } else if (!withData) {
      this.promote(id);
    }
    return p;
  }

  /**
   * Puts a pending directory's times back after entries were created in it.
   * While it is pending nothing but materialisation changes it (every op on
   * it or in it materialises it first), so its times are its image's — also
   * after a crash left some of its entries created (and its mtime moved).
   */
  private async keepArchiveTimes(self: string, image: DirImage): Promise<void> {
    const a = image.attrs;
    await native.utimens(self, { sec: a.atime[0], nsec: a.atime[1] }, { sec: a.mtime[0], nsec: a.mtime[1] }, { noFollow: true });
  }

  /**
   * A small file's whole content (counted as fetched), for the background
   * restore; null (a stub, fetched later) once a program waits for the directory.
   */
  private async wholeFile(entry: EntryImage, group: FetchGroup): Promise<Buffer | null> {
    const data = await this.scheduler.optional(entry.attrs.size, () => {
      this.stats.rangeFetches++;
      return this.bounded(this.client.readRange(this.volume, entry.id, 0, entry.attrs.size), `file ${entry.id}`);
    }, group);
    if (data === null) return null;
    this.stats.bytesFetched += data.length;
    this.stats.blocksFetched += Math.ceil(data.length / BLOCK_SIZE);
    return data;
  }

  private async dirIdOf(rel: string): Promise<ObjectId> {
    const id = rel === '.' ? ROOT_ID : await readObjectId(rel);
    if (id === null) throw new FsError('EIO', `pending directory ${rel} has no object id`);
    return id;
  }

  /**
   * Runs `f` on the directory at `rel` through a descriptor (a rename of the
   * directory or an ancestor meanwhile changes nothing), holding the
   * directory's lock (one materialisation in it at a time), when it is still
   * pending. `f` gets paths for the directory itself and for its entries.
   */
  private async withDir(rel: string, id: ObjectId, f: (dir: { self: string; base: string }) => Promise<void>): Promise<void> {
    await this.withLock(`dir:${id}`, async () => {
      const fd = await new Promise<number>((resolve, reject) =>
        fs.open(rel, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW, (err, n) => (err ? reject(err) : resolve(n))));
      const dir = { self: `/proc/self/fd/${fd}/.`, base: `/proc/self/fd/${fd}` };
      try {
        if (await isPending(dir.self)) await f(dir);
      } finally {
        fs.close(fd, () => {});
      }
    });
  }

  /**
   * A directory's image (fetched once for concurrent callers, kept while its
   * directory is pending); `group`: for the background restore.
   */
  private async imageOf(id: ObjectId, group: FetchGroup | null = null): Promise<CachedImage> {
    const cached = this.images.get(id);
    if (cached !== undefined) return cached;
    let p = this.imagesInFlight.get(id);
    if (p === undefined) {
      const fetch = (): Promise<DirImage> => this.bounded(this.client.dirImage(this.volume, id), `directory ${id}`);
      p = (group === null ? fetch() : this.scheduler.background(IMAGE_FETCH_BYTES, fetch, group)).then((image) => {
        this.stats.dirFetches++;
        const c: CachedImage = { image, byName: new Map(image.entries.map((e) => [e.name, e])) };
        this.images.set(id, c);
        return c;
      }).finally(() => this.imagesInFlight.delete(id));
      this.imagesInFlight.set(id, p);
    }
    return p;
  }

  private async hydrateDirOnce(dir: { self: string; base: string }, id: ObjectId, group: FetchGroup | null): Promise<Set<string>> {
    const { image } = await this.imageOf(id, group);
    const res = await materialiseEntries(dir.base, image, {
      privateDir: this.privateDir, childDirsPending: true, log: this.log,
      ...(group !== null ? { fileData: (e: EntryImage) => this.wholeFile(e, group) } : {}),
    });
    await this.keepArchiveTimes(dir.self, image);
    crashPoint('materialise-dir');
    await clearPending(dir.self);
    this.images.delete(id);
    this.stats.entriesMaterialised += res.created;
    this.log.debug({ dir: id, entries: image.entries.length, created: res.created, whole: res.whole.size }, 'restore: directory materialised');
    return res.whole;
  }

  /**
   * A lookup of `name` in the pending directory `parentRel`: answered from the
   * directory's image, materialising that one entry (the directory stays
   * pending; its other entries come when an op needs them all). A name the
   * image lacks is left absent (the lookup answers ENOENT).
   */
  private async materialiseChild(parentRel: string, name: string): Promise<void> {
    const id = await this.dirIdOf(parentRel);
    this.promote(id);
    await this.withDir(parentRel, id, async (dir) => {
      const { image, byName } = await this.imageOf(id);
      const entry = byName.get(name);
      if (entry === undefined) return;
      if (await materialiseOne(dir.base, entry, {
        privateDir: this.privateDir, childDirsPending: true, log: this.log, parentSetGid: (image.attrs.mode & 0o2000) !== 0,
      })) {
        this.stats.entriesMaterialised++;
        await this.keepArchiveTimes(dir.self, image);
      }
      // A program walking down a path looks up in this directory next: its image is on its way meanwhile.
      if ((entry.attrs.mode & 0o170000) === 0o040000) void this.imageOf(entry.id).catch(() => {});
    });
  }

  private async fetchRangeNow(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean> {
    const map = await this.mapOf(id);
    if (map === null) return false;
    const nblocks = map.present.length;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.min(nblocks - 1, Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE));
    const waits: Promise<void>[] = [];
    let runStart = -1;
    const startRun = (a: number, b: number): void => {
      const p = this.fetchBlocks(id, map, fd, a, b).then(() => {});
      for (let i = a; i <= b; i++) this.blocksInFlight.set(`${id}:${i}`, p);
      void p.finally(() => { for (let i = a; i <= b; i++) if (this.blocksInFlight.get(`${id}:${i}`) === p) this.blocksInFlight.delete(`${id}:${i}`); }).catch(() => {});
      waits.push(p);
    };
    for (let i = first; i <= last + 1; i++) {
      const need = i <= last && map.present[i] !== 1;
      const inFlight = need ? this.blocksInFlight.get(`${id}:${i}`) : undefined;
      if (need && inFlight === undefined) {
        if (runStart < 0) runStart = i;
        if (i - runStart + 1 === MAX_RUN_BLOCKS) { startRun(runStart, i); runStart = -1; }
        continue;
      }
      if (runStart >= 0) { startRun(runStart, i - 1); runStart = -1; }
      if (inFlight !== undefined) waits.push(inFlight);
    }
    await Promise.all(waits);
    return map.missing > 0;
  }

  /**
   * Fetches blocks [a, b] of the file and writes the ones still missing.
   * `durable`: they are fdatasync'ed and the block map says so before this
   * returns. Otherwise only the in-memory map says so (readers see them), and
   * the caller makes them durable and persists the map later (persistPresent).
   * Returns the blocks written.
   */
  private async fetchBlocks(id: ObjectId, map: BlockMap, fd: number, a: number, b: number, durable = true): Promise<number[]> {
    const offset = a * BLOCK_SIZE;
    const length = Math.min((b + 1) * BLOCK_SIZE, map.remoteSize) - offset;
    const fetch = (): Promise<Buffer> => {
      this.stats.rangeFetches++;
      return this.bounded(this.client.readRange(this.volume, id, offset, length), `file ${id} bytes ${offset}+${length}`);
    };
    // Not durable at once: the background restore's (restoreFileData), in its lane.
    const data = await (durable ? fetch() : this.scheduler.background(length, fetch));
    this.stats.bytesFetched += data.length;
    return this.withLock(id, async () => {
      // Reopen for writing through the handle's descriptor (it may be read-only).
      const wfd = await openForWriting(fd);
      const done: number[] = [];
      try {
        // Restoring bytes is not a change: the file's times stay as they are.
        const before = await new Promise<fs.BigIntStats>((resolve, reject) =>
          fs.fstat(wfd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
        for (let i = a; i <= b; i++) {
          if (map.present[i] === 1) continue; // written through the mount meanwhile
          const start = (i - a) * BLOCK_SIZE;
          const chunk = data.subarray(start, Math.min(start + BLOCK_SIZE, data.length));
          if (chunk.length > 0 && !isZero(chunk)) await writeAll(wfd, chunk, i * BLOCK_SIZE);
          done.push(i);
        }
        if (done.length > 0) {
          await native.futimens(wfd, timeSpecOf(before.atimeNs), timeSpecOf(before.mtimeNs));
          if (durable) await fdatasync(wfd);
        }
      } finally {
        fs.close(wfd, () => {});
      }
      this.stats.blocksFetched += done.length;
      if (done.length > 0) crashPoint('fetch-written');
      if (done.length === 0) return done;
      if (durable) await this.markPresent(id, map, done);
      else setPresent(map, done);
      return done;
    });
  }

  /**
   * The background restore of a whole file: holes skipped, the missing blocks
   * fetched in 1 MiB requests, two in flight (in the background lane), one
   * fdatasync at the end, then the map.
   * Returns the bytes fetched.
   */
  async restoreFileData(id: ObjectId, fd: number): Promise<number> {
    await this.skipHoles(id);
    const map = await this.mapOf(id);
    if (map === null) return 0;
    const runs: [number, number][] = [];
    for (let i = 0; i < map.present.length; i++) {
      if (map.present[i] === 1) continue;
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] === i - 1 && i - last[0] < BACKGROUND_RUN_BLOCKS) last[1] = i;
      else runs.push([i, i]);
    }
    const before = this.stats.bytesFetched;
    const written: number[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < runs.length) {
        const [a, b] = runs[next++]!;
        written.push(...(await this.fetchBlocks(id, map, fd, a, b, false)));
      }
    };
    try {
      await Promise.all([worker(), worker()]);
    } finally {
      // What was written is made durable and recorded, even when a fetch failed.
      if (written.length > 0) {
        await this.withLock(id, async () => {
          const wfd = await openForWriting(fd);
          try {
            await fdatasync(wfd);
          } finally {
            fs.close(wfd, () => {});
          }
          await this.persistPresent(id, map, written);
        });
      }
    }
    return this.stats.bytesFetched - before;
  }

  /** Marks blocks local in the map (memory and file); the map goes when none is missing. */
  private async markPresent(id: ObjectId, map: BlockMap, blocks: number[]): Promise<void> {
    setPresent(map, blocks);
    await this.persistPresent(id, map, blocks);
  }

  /**
   * Records blocks already marked in memory in the map file (their bytes are
   * durable: an fdatasync of the file came after their writes). The map goes
   * when none is missing.
   */
  private async persistPresent(id: ObjectId, map: BlockMap, blocks: number[]): Promise<void> {
    if (map.missing === 0) {
      await removeBlockMap(this.privateDir, id);
      this.maps.delete(id);
      return;
    }
    // Contiguous runs, one write each.
    let s = 0;
    const sorted = [...blocks].sort((x, y) => x - y);
    for (let k = 1; k <= sorted.length; k++) {
      if (k === sorted.length || sorted[k] !== sorted[k - 1]! + 1) {
        await markBlocksPresent(this.privateDir, id, sorted[s]!, sorted[k - 1]!);
        s = k;
      }
    }
  }

  private withLock<T>(id: ObjectId, f: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(f);
    const tail = next.catch(() => {});
    this.locks.set(id, tail);
    void tail.then(() => { if (this.locks.get(id) === tail) this.locks.delete(id); });
    return next;
  }

  /** The archive's answer within the time bound; EIO (and a warning) otherwise. */
  private async bounded<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FsError('EIO', `the archive did not answer for ${what} within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    p.catch(() => {});
    try {
      return await Promise.race([p, timeout]);
    } catch (err) {
      this.stats.failures++;
      this.stats.lastError = (err as Error).message;
      this.log.warn({ err: (err as Error).message, what }, 'restore: fetch failed');
      if (err instanceof FsError) throw err;
      if (isArchiveError(err)) throw new FsError('EIO', (err as Error).message);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Marks blocks local in the in-memory map. */
function setPresent(map: BlockMap, blocks: number[]): void {
  for (const i of blocks) {
    if (map.present[i] !== 1) {
      map.present[i] = 1;
      map.missing--;
    }
  }
}

/** A writable descriptor of the file open on `fd` (which may be read-only). */
function openForWriting(fd: number): Promise<number> {
  return new Promise<number>((resolve, reject) =>
    fs.open(`/proc/self/fd/${fd}`, C.O_WRONLY, (err, n) => (err ? reject(err) : resolve(n))));
}

function fdatasync(fd: number): Promise<void> {
  return new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

async function writeAll(fd: number, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await new Promise<number>((resolve, reject) =>
      fs.write(fd, buf, off, buf.length - off, position + off, (err, w) => (err ? reject(err) : resolve(w))));
    off += n;
  }
}

function timeSpecOf(ns: bigint): { sec: number; nsec: number } {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
