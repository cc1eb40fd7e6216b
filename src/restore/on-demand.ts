// On-demand restore: the core's RestoreHooks for a store whose restore is not
// finished. A pending directory's image is fetched and materialised before an
// op needs its entries (concurrent requests for one directory share one
// fetch); a file's missing blocks are fetched before a read needs them, by
// range; a write first makes the blocks it covers only in part local.
//
// Every wait for the archive is bounded in time (fetchTimeoutMs): when what
// an op waits for does not come, the op fails with EIO and the next op tries
// again. The bound is on the op, not on the fetch: a block fetch goes on
// after its waiter gave up (the archive client ends it when its answer makes
// no progress), its blocks are kept, and the next read joins it instead of
// asking again; such a fetch owns a copy of the file's descriptor (OwnedFd).
// A read waits for its own blocks; its read-ahead goes in a request of its
// own, sized (like TCP's slow start) to arrive well within the bound, so a
// read over a slow link waits for about its own bytes. Programs'
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
import { ArchiveDataError, FsError } from '../errors/errno.js';
import type { ObjectAt, RestoreHooks, SettleWatch } from '../ports/restore-hooks.js';
import { ArchiveError, isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import { BLOCK_SIZE, ROOT_ID, isZero, timeSpecFromNs, type ObjectId } from '../protocol/records.js';
import { readObjectId } from '../store/object-ids.js';
import { readInto } from '../store/fd-io.js';
import type { LocalStore } from '../store/local-store.js';
import type { StoreDir } from '../store/store-dir.js';
import {
  clearPending, isPending, linkPath, moveMarksAside, listTimesRecords, settleLinking, readPendingMark, unrestoredNames, markBlocksPresent, readBlockMap, readTimesRecord, removeBlockMap,
  removeTimesRecord, settleTimesRecord, timesDir, writeTimesRecord, type BlockMap, type FileTimes,
} from '../store/restore-marks.js';
import { materialiseEntries, materialiseOne } from './materialise.js';
import { BlockDigestError, verifiedRange, type DirImage, type EntryImage } from '../protocol/images.js';
import type { Logger } from '../log/logger.js';
import { crashPoint } from './crash-points.js';
import { CacheRoom } from './cache-room.js';
import { forEachLimited, settleAll } from '../util/each-limited.js';
import { FetchScheduler, type FetchGroup } from './fetch-scheduler.js';

export interface OnDemandOptions {
  client: ArchiveClient;
  volume: string;
  /** The store (its objects: store.dir, which follows a swap). */
  store: LocalStore;
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
  /** Blocks the archive could not deliver (corrupt or missing there). */
  unreadableBlocks: number;
  /** Reads answered straight from the archive, the store having no room for their blocks (readThrough). */
  readsThrough: number;
  lastError: string | null;
}

/** A file with blocks the archive cannot deliver. */
export interface UnreadableObject {
  id: ObjectId;
  /** Where the background restore met it (store-relative), if it did. */
  path: string | null;
  /** Indices of the blocks (of BLOCK_SIZE bytes). */
  blocks: number[];
  /** The archive's answer. */
  error: string;
}

/** The archive cannot deliver the data (corrupt or missing there): trying again does not help, other blocks may still come. */
export class UnreadableError extends ArchiveDataError {}

/** What an op waited for did not come within the time bound (it may still come: the next op tries again). */
class WaitTimeout extends ArchiveDataError {}

interface CachedImage {
  image: DirImage;
  byName: Map<string, EntryImage>;
}

/** Counters before any fetch. */
export function noFetches(): FetchStats {
  return { dirFetches: 0, rangeFetches: 0, blocksFetched: 0, bytesFetched: 0, holesSkipped: 0, entriesMaterialised: 0, failures: 0, unreadableBlocks: 0, readsThrough: 0, lastError: null };
}

/** At most this many blocks in one readRange (4 MiB). */
const MAX_RUN_BLOCKS = 64;
/** Blocks fetched from where a read starts (1 MiB), and when reads are sequential (4 MiB). */
const READAHEAD_BLOCKS = 16;
const READAHEAD_SEQUENTIAL_BLOCKS = 64;
/**
 * A block fetch in flight is joined by later reads while it is younger than
 * this; an older one (an archive that stopped answering without the client
 * noticing) is left to end by itself, and the blocks are asked for again.
 */
const FLIGHT_JOIN_MS = 60_000;
/** A readahead fetch should arrive within this share of the time bound (a read that joins it waits that long at most). */
const FETCH_SHARE_OF_BOUND = 0.25;
/** The background restore fetches a file 1 MiB at a time (a program's fetch never waits behind much). */
const BACKGROUND_RUN_BLOCKS = 16;
/**
 * Per-file work of the background restore is bounded, not proportional to the
 * file: holes are recorded, and fetched blocks made durable and recorded, this
 * many blocks (4 GiB) at a time (a sparse 8 TiB file has 134 million blocks).
 */
const BACKGROUND_RECORD_BLOCKS = 65536;
/** What a directory image request counts for against the background's byte budget. */
const IMAGE_FETCH_BYTES = 64 * 1024;
/** Fetched blocks of at least this many bytes are checked against their digests on libuv's pool (native.sha256Blocks). */
const POOL_HASH_MIN_BYTES = 128 * 1024;

export class OnDemandRestore implements RestoreHooks {
  readonly stats: FetchStats = noFetches();
  private readonly client: ArchiveClient;
  private readonly volume: string;
  private readonly privateDir: string;
  private readonly store: LocalStore;
  private readonly timeoutMs: number;
  /** Room the restore's copies of archive data may take (cache-room.ts: they leave the store's last room free). */
  private readonly cacheRoom: CacheRoom;
  private readonly log: Logger;
  /** Directory hydrations in flight, by directory id. */
  private readonly dirsInFlight = new Map<ObjectId, Promise<Set<string>>>();
  /** Block fetches in flight, by `${id}:${index}`, with the number of blocks their request covers. */
  private readonly blocksInFlight = new Map<string, { p: Promise<void>; blocks: number; group: FetchGroup | null; started: number }>();
  /** Objects with blocks the archive cannot deliver (corrupt or missing there), by id. */
  private readonly unreadable = new Map<ObjectId, UnreadableObject>();
  /**
   * Set once the background restore is complete but some files keep blocks
   * the archive could not deliver: no pending directory is left, and only
   * these files are still remote.
   */
  private residual: Set<ObjectId> | null = null;
  /**
   * Block maps in memory: exactly one copy per file at any time, because a
   * fetch, a write or the background restore holds its map across waits and
   * decides from it what to write. The cache is bounded by bytes; a map it
   * lets go while something still holds it stays the file's (a weak
   * reference finds it again, so no second copy is read from disk beside
   * it), and a map larger than the whole cache is kept aside until the file
   * is local or cut (a file over 2 TiB with the default 32 MiB: one byte per
   * 64 KiB block).
   */
  private readonly maps: LRUCache<ObjectId, BlockMap>;
  private readonly mapsLetGo = new Map<ObjectId, WeakRef<BlockMap>>();
  private readonly mapsLetGoGone = new FinalizationRegistry<{ id: ObjectId; ref: WeakRef<BlockMap> }>(({ id, ref }) => {
    if (this.mapsLetGo.get(id) === ref) this.mapsLetGo.delete(id);
  });
  private readonly mapsOversize = new Map<ObjectId, BlockMap>();
  private readonly mapsLoading = new Map<ObjectId, Promise<BlockMap | null>>();
  /** Images of pending directories, for lookups (bounded by bytes; dropped once a directory is materialised). */
  private readonly images: LRUCache<ObjectId, CachedImage>;
  /**
   * Images too large for `images` (a pending directory of more than about
   * 40,000 entries with the default 16 MiB): the two used last. Without them
   * every lookup in such a directory fetched its whole image again (1.3 s
   * each for 60,000 entries from a file:// archive).
   */
  private readonly imagesLarge = new LRUCache<ObjectId, CachedImage>({ max: 2 });
  /** The latest fetch of each directory's image, and when it started (imageOf). */
  private readonly imagesInFlight = new Map<ObjectId, { p: Promise<CachedImage>; started: number }>();
  private readonly locks = new Map<ObjectId, Promise<unknown>>();
  /** Where the last read of a file ended (sequential reads get a larger window). */
  private readonly readEnds = new LRUCache<ObjectId, number>({ max: 4096 });
  /**
   * Ids with a times record left by a crash (loaded once): their times are
   * put back from it before anything else touches them.
   */
  private timesRecords: Promise<Set<ObjectId>> | null = null;
  /** Told of every request to the archive: seconds until its answer, and whether it succeeded (metrics). */
  onFetch: ((seconds: number, ok: boolean) => void) | null = null;
  /** Programs' fetches go first; the background restore's wait (fetch-scheduler.ts). */
  private readonly scheduler: FetchScheduler;
  /** Directories the background restore is materialising: a program that waits for one promotes its fetches. */
  private readonly backgroundDirs = new Map<ObjectId, FetchGroup>();

  constructor(opts: OnDemandOptions) {
    this.client = opts.client;
    this.volume = opts.volume;
    this.privateDir = opts.privateDir;
    this.store = opts.store;
    this.timeoutMs = opts.fetchTimeoutMs ?? 5000;
    this.log = opts.log;
    this.cacheRoom = new CacheRoom(opts.privateDir);
    this.scheduler = new FetchScheduler({
      // What the background has in flight is what a program's fetch waits behind: steered to arrive within a share of the bound.
      targetMs: this.timeoutMs * FETCH_SHARE_OF_BOUND,
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
      // Let go for room, not discarded: whoever still holds it keeps using the file's one copy.
      dispose: (map, id, reason) => {
        if (reason !== 'evict') return;
        const ref = new WeakRef(map);
        this.mapsLetGo.set(id, ref);
        this.mapsLetGoGone.register(map, { id, ref });
      },
    });
  }

  /** The store's objects (the background restore's too). */
  get dir(): StoreDir {
    return this.store.dir;
  }

  /** The descriptor store-relative paths are relative to (for the marks' helpers). */
  private get at(): number {
    return this.store.dir.fd;
  }

  // ---- RestoreHooks ------------------------------------------------------------

  async entries(dir: ObjectAt): Promise<void> {
    if (this.residual !== null || !(await isPending(this.privateDir, dir.path, dir.at))) return;
    await this.foregroundWork(() => this.hydrateDir(dir));
  }

  async child(dir: ObjectAt, name: string): Promise<void> {
    if (this.residual !== null || !(await isPending(this.privateDir, dir.path, dir.at))) return;
    await this.foregroundWork(() => this.materialiseChild(dir, name));
  }

  async isRemote(id: ObjectId): Promise<boolean> {
    if (this.residual !== null && !this.residual.has(id)) return false;
    return (await this.mapOf(id)) !== null;
  }

  // ---- blocks the archive cannot deliver -------------------------------------------

  /**
   * The restore is complete but for `objects`, whose unreadable blocks stay
   * remote: reads that need them keep failing with EIO (and try again), the
   * rest of the volume costs nothing per op.
   */
  finishWithUnreadable(objects: readonly UnreadableObject[]): void {
    this.residual = new Set(objects.map((o) => o.id));
    for (const o of objects) if (!this.unreadable.has(o.id)) this.unreadable.set(o.id, { ...o, blocks: [...o.blocks] });
  }

  /** Objects with blocks the archive could not deliver so far (this daemon's run). */
  unreadableObjects(): UnreadableObject[] {
    return [...this.unreadable.values()].map((o) => ({ ...o, blocks: [...o.blocks] }));
  }

  /** True when every block the file still lacks is one the archive could not deliver. */
  onlyUnreadableLeft(id: ObjectId, map: BlockMap): boolean {
    const bad = this.unreadable.get(id);
    if (bad === undefined) return false;
    const known = new Set(bad.blocks);
    for (let i = 0; i < map.present.length; i++) if (map.present[i] !== 1 && !known.has(i)) return false;
    return true;
  }

  /** Where the background restore met the file (for the list of unreadable objects). */
  notePath(id: ObjectId, path: string): void {
    const o = this.unreadable.get(id);
    if (o !== undefined) o.path = path;
  }

  private noteUnreadable(id: ObjectId, block: number, err: Error): void {
    let o = this.unreadable.get(id);
    if (o === undefined) {
      o = { id, path: null, blocks: [], error: err.message };
      this.unreadable.set(id, o);
    }
    if (!o.blocks.includes(block)) {
      o.blocks.push(block);
      o.blocks.sort((x, y) => x - y);
      this.stats.unreadableBlocks++;
      this.log.error({ id, block, offset: block * BLOCK_SIZE, err: err.message }, 'restore: the archive cannot deliver a block of this file; reads that need it fail with EIO');
    }
  }

  /**
   * For a read: the blocks it covers (what the read waits for), and a window
   * of what is missing ahead (1 MiB, 4 MiB when the reads are sequential),
   * fetched without the read waiting for it, so that a program reading a
   * large file does not wait one round trip per read. Ahead is fetched again
   * when the reader comes within a window of where the blocks local or on
   * their way end (Linux's asynchronous readahead does the same), so the
   * requests stay long and about two are in flight; the windows shrink to
   * what the link delivers well within the time bound (sized()).
   */
  fetchRange(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean> {
    // The kernel's readahead sends several reads at once, not always in order: near the last one counts as sequential.
    const lastEnd = this.readEnds.get(id);
    const sequential = lastEnd !== undefined && Math.abs(offset - lastEnd) <= READAHEAD_BLOCKS * BLOCK_SIZE;
    this.readEnds.set(id, offset + length);
    return this.foregroundWork(async () => {
      const map = await this.mapOf(id);
      if (map === null) return false;
      const nblocks = map.present.length;
      const first = Math.floor(offset / BLOCK_SIZE);
      const after = Math.min(nblocks, Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE) + 1);
      let ownMissing = false;
      for (let i = first; i < after && !ownMissing; i++) ownMissing = map.present[i] !== 1;
      let frontier = after;
      while (frontier < nblocks && (map.present[frontier] === 1 || this.joinable(id, frontier) !== undefined)) frontier++;
      const window = this.sized(sequential ? READAHEAD_SEQUENTIAL_BLOCKS : READAHEAD_BLOCKS);
      const ahead = frontier < nblocks && frontier - after < window;
      // Most reads of a file being restored find their blocks local and the read-ahead on its way: nothing to do.
      if (!ownMissing && !ahead) return map.missing > 0;
      // The store's last room is not for copies (cache-room.ts): this read goes through the archive (the core's readThrough).
      const room = ownMissing ? this.cacheRoom.take(Math.max(length, BLOCK_SIZE)) : null;
      if (ownMissing && room === null) throw this.cacheRoom.refusal();
      // From here the work may outlive this read (its wait is bounded; the program may then close the file): it owns
      // a descriptor, taken before the wait starts, while the read's is surely open.
      let mine: OwnedFd;
      try {
        mine = new OwnedFd(fd);
      } catch (err) {
        room?.();
        throw err;
      }
      // Its failure fails no read: a read that needs those blocks joins or asks again.
      const aheadRoom = ahead ? this.cacheRoom.take(window * BLOCK_SIZE) : null;
      if (aheadRoom !== null) {
        mine.hold(this.fetchRangeNow(id, mine.fd, frontier * BLOCK_SIZE, window * BLOCK_SIZE, this.sized(MAX_RUN_BLOCKS)).finally(aheadRoom));
      }
      const work = (async (): Promise<boolean> => {
        try {
          return await this.fetchRangeNow(id, mine.fd, offset, length);
        } catch (err) {
          if (!(err instanceof UnreadableError)) throw err;
          // A bad block fails only the reads that need it: the blocks of this read, one by one.
          return this.fetchEachBlock(id, mine.fd, offset, length);
        }
      })().finally(() => room?.());
      mine.hold(work);
      return this.waited(work, `file ${id} bytes ${offset}+${length}`);
    });
  }

  /**
   * A read the store has no room to make local (its fetch failed with ENOSPC):
   * bytes [offset, offset + length) of the file as a program sees them, into
   * `buf`, the local blocks from `fd` and the missing ones straight from the
   * archive, nothing written. Returns the bytes read (short at the file's
   * end: the store file's size is the file's).
   */
  async readThrough(id: ObjectId, fd: number, buf: Buffer, length: number, offset: number): Promise<number> {
    const map = await this.mapOf(id);
    if (map === null || length <= 0) return readInto(fd, buf, length, offset);
    let a = Math.floor(offset / BLOCK_SIZE);
    let b = Math.min(map.present.length - 1, Math.floor((offset + length - 1) / BLOCK_SIZE));
    while (a <= b && map.present[a] === 1) a++;
    while (b >= a && map.present[b] === 1) b--;
    // The archive's bytes of the missing blocks, fetched before the file's lock (no write waits for the link).
    const what = `file ${id} bytes ${a * BLOCK_SIZE}+${(b - a + 1) * BLOCK_SIZE} (read through: no room in the store)`;
    const start = a * BLOCK_SIZE;
    const remote = a <= b
      ? await this.bounded(this.readVerified(id, start, Math.min((b + 1) * BLOCK_SIZE, map.remoteSize) - start), what)
      : Buffer.alloc(0);
    return this.withLock(id, async () => {
      const n = await readInto(fd, buf, length, offset);
      // Cut meanwhile, or every block local and recorded: the store's bytes are the file's.
      if (this.dropped(map)) return n;
      for (let i = a; i <= b; i++) {
        if (map.present[i] === 1) continue; // written or fetched meanwhile
        const s = Math.max(i * BLOCK_SIZE, offset);
        const e = Math.min((i + 1) * BLOCK_SIZE, offset + n);
        if (s >= e) continue;
        // Past the archive's end of file (a missing block the file grew over): zeros, as the store's hole reads.
        buf.fill(0, s - offset, e - offset);
        if (s - start < remote.length) remote.copy(buf, s - offset, s - start, Math.min(remote.length, e - start));
      }
      this.stats.readsThrough++;
      return n;
    });
  }

  /** At most `max` blocks, and no more than the link delivers within a share of the bound (the scheduler's budget), at least 1. */
  private sized(max: number): number {
    return Math.max(1, Math.min(max, Math.floor(this.scheduler.budgetBytes / BLOCK_SIZE)));
  }

  /** The fetch in flight for block `index` of `id` that a waiter may join (not one that has been going for too long). */
  private joinable(id: ObjectId, index: number): { p: Promise<void>; blocks: number; group: FetchGroup | null; started: number } | undefined {
    const flight = this.blocksInFlight.get(`${id}:${index}`);
    return flight !== undefined && performance.now() - flight.started < FLIGHT_JOIN_MS ? flight : undefined;
  }

  /**
   * Fetches the blocks of [offset, offset + length) one request each, so that
   * a block the archive cannot deliver fails alone; it is noted as
   * unreadable, and the call fails with EIO when it is one of these.
   */
  private async fetchEachBlock(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean> {
    const map = await this.mapOf(id);
    if (map === null) return false;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.min(map.present.length - 1, Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE));
    let failure: UnreadableError | null = null;
    for (let i = first; i <= last; i++) {
      try {
        await this.fetchRangeNow(id, fd, i * BLOCK_SIZE, 1, 1);
      } catch (err) {
        if (!(err instanceof UnreadableError)) throw err;
        this.noteUnreadable(id, i, err);
        failure ??= err;
      }
    }
    if (failure !== null) throw failure;
    return map.missing > 0;
  }

  /**
   * The whole file, in order, two requests at a time, each sized to arrive
   * within the time bound: the op fails with EIO only when one of them does
   * not (a large file over a slow link takes long, but never waits without
   * progress); what came stays local for the next try.
   */
  async fetchAll(id: ObjectId, fd: number): Promise<void> {
    const map = await this.mapOf(id);
    if (map === null) return;
    // A fetch this op stops waiting for goes on: it owns a descriptor (the program may close the file).
    const mine = new OwnedFd(fd);
    const work = this.foregroundWork(async () => {
      let previous: Promise<boolean> | null = null;
      for (let i = 0; i < map.present.length;) {
        while (i < map.present.length && map.present[i] === 1) i++;
        if (i >= map.present.length) break;
        const run = this.sized(MAX_RUN_BLOCKS);
        const fetching = mine.hold(this.fetchRangeNow(id, mine.fd, i * BLOCK_SIZE, run * BLOCK_SIZE, run));
        const current = this.waited(fetching, `file ${id} bytes ${i * BLOCK_SIZE}+${run * BLOCK_SIZE}`);
        current.catch(() => {});
        if (previous !== null) await previous;
        previous = current;
        i += run;
      }
      if (previous !== null) await previous;
    });
    mine.hold(work);
    await work;
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
    if (partial.length > 0) {
      // A fetch this write stops waiting for goes on: it owns a descriptor (the program may close the file).
      const mine = new OwnedFd(fd);
      const fetching = this.foregroundWork(async () => {
        for (const i of partial) await this.fetchRangeNow(id, mine.fd, i * BLOCK_SIZE, 1);
      });
      mine.hold(fetching);
      await this.waited(fetching, `file ${id} blocks ${partial.join(', ')}`);
    }
    return this.withLock(id, async () => {
      if (this.dropped(map)) return write();
      await this.settleTimes(id, fd);
      // Blocks the background restore made local but has not recorded yet:
      // durable and recorded first, so that this write's block can never be
      // taken for missing (and fetched over) after a crash.
      const unrecorded: number[] = [];
      for (let i = first; i <= Math.min(last, nblocks - 1); i++) if (map.unrecorded?.has(i)) unrecorded.push(i);
      if (unrecorded.length > 0) {
        await fdatasyncThrough(fd);
        await this.persistPresent(id, map, unrecorded);
      }
      const result = await write();
      crashPoint('write-before-map');
      const covered: number[] = [];
      for (let i = first; i <= Math.min(last, nblocks - 1); i++) if (map.present[i] !== 1) covered.push(i);
      if (covered.length > 0) await this.markPresent(id, map, covered);
      return result;
    });
  }

  /**
   * True when `map`, read before waiting for the file's lock, is no longer
   * the file's: a program cut the file to size 0 meanwhile (cut) and nothing
   * of the archive's is left to write, keep or record (or every block became
   * local and recorded, which leaves nothing to do either). Under the lock.
   */
  private dropped(map: BlockMap): boolean {
    return map.discarded === true;
  }

  /** The file's map if one is in memory (cached, let go but still held, or oversize); kept in the cache again. */
  private mapInMemory(id: ObjectId): BlockMap | undefined {
    const cached = this.maps.get(id) ?? this.mapsOversize.get(id);
    if (cached !== undefined) return cached;
    const held = this.mapsLetGo.get(id)?.deref();
    if (held === undefined) return undefined;
    this.mapsLetGo.delete(id);
    this.keepMap(id, held);
    return held;
  }

  private keepMap(id: ObjectId, map: BlockMap): void {
    this.maps.set(id, map);
    if (!this.maps.has(id)) this.mapsOversize.set(id, map);
  }

  /** The file's map is no longer the file's (cut, or every block local and recorded): no holder writes or records with it. */
  private discardMap(id: ObjectId, map?: BlockMap): void {
    // Not mapInMemory: putting a let-go map back in the cache could push others out.
    const current = this.maps.peek(id) ?? this.mapsOversize.get(id) ?? this.mapsLetGo.get(id)?.deref();
    if (current !== undefined) current.discarded = true;
    if (map !== undefined) map.discarded = true;
    this.maps.delete(id);
    this.mapsOversize.delete(id);
    this.mapsLetGo.delete(id);
  }

  async cut<T>(id: ObjectId, cut: () => Promise<T>): Promise<T> {
    return this.withLock(id, async () => {
      // The map goes only after the cut: a crash before it must not leave a stub that reads as zeros.
      const result = await cut();
      this.discardMap(id);
      await removeBlockMap(this.privateDir, id);
      crashPoint('discard-map');
      await removeTimesRecord(this.privateDir, id);
      (await this.loadTimesRecords()).delete(id);
      return result;
    });
  }

  async shownStat(st: fs.BigIntStats, obj: ObjectAt | null, id: ObjectId | null, fd?: number): Promise<fs.BigIntStats> {
    const moving = this.moving.get(st.ino);
    if (moving !== undefined) {
      // The restore is writing into it (its times are moved until it is done): what it looks like afterwards.
      await moving.catch(() => {});
      const again = obj !== null
        ? await native.statAt(obj.at, obj.path).catch(() => null)
        : fd !== undefined ? await new Promise<fs.BigIntStats | null>((resolve) => fs.fstat(fd, { bigint: true }, (err, s) => resolve(err ? null : s))) : null;
      if (again !== null) {
        st.atimeNs = again.atimeNs;
        st.mtimeNs = again.mtimeNs;
        st.ctimeNs = again.ctimeNs;
        if (!again.isDirectory()) st.nlink = again.nlink; // a directory's count is settled below (pending or not, the root's without .strata)
        st.size = again.size;
        st.blocks = again.blocks;
      }
    }
    if (obj !== null && (await this.loadTimesRecords()).size > 0) {
      // Times a crash left moved (a fetch into a file, entries created in a directory): put back before anyone sees them.
      const fid = id ?? (await readObjectId(obj.path, obj.at));
      if (fid !== null && (await this.loadTimesRecords()).has(fid)) {
        await this.changing(fid, obj);
        const again = await native.statAt(obj.at, obj.path);
        st.atimeNs = again.atimeNs;
        st.mtimeNs = again.mtimeNs;
        st.ctimeNs = again.ctimeNs;
      }
    }
    if (st.isDirectory()) {
      // A pending directory: the archive's count (its subdirectories are not
      // all here), and the archive's times when its mark has them (a crash
      // may have left them moved by entries created in it; a times record
      // left by a crash was settled above).
      const mark = obj === null ? null : await readPendingMark(this.privateDir, obj.path, obj.at);
      if (mark?.nlink != null) st.nlink = BigInt(mark.nlink);
      if (mark?.times != null) {
        st.atimeNs = nsOf(mark.times.atime);
        st.mtimeNs = nsOf(mark.times.mtime);
      }
      return st;
    }
    if (st.nlink > 1n) {
      // A hard-linked file with names still in the archive: the registry name is not one of its names, those are.
      const oid = id ?? (obj === null ? null : await readObjectId(obj.path, obj.at));
      if (oid === null) return st;
      const registry = linkPath(this.privateDir, oid);
      const statObject = (): Promise<fs.BigIntStats | null> => obj !== null
        ? native.statAt(obj.at, obj.path).catch(() => null)
        : fd !== undefined ? new Promise((resolve) => fs.fstat(fd, { bigint: true }, (err, s) => resolve(err ? null : s)))
          : this.dir.lstat(registry).catch(() => null);
      // The count and the link count are read together, not between a name's
      // materialisation and its count (the lock), nor between the end of the
      // restore's removal of the count and of the registry name, which takes
      // no lock: read until the inode did not change (ctime) around the reads.
      await this.namesLock(oid, async () => {
        await settleLinking(this.privateDir, registry, this.at); // a link a crash interrupted: its count is lowered first
        for (let attempt = 0; attempt < 8; attempt++) {
          const before = await statObject();
          if (before === null) return;
          const reg = await this.dir.lstat(registry).catch(() => null);
          const registered = reg !== null && reg.ino === before.ino;
          const n = registered ? (await unrestoredNames(this.privateDir, registry, this.at).catch(() => null)) ?? 0 : 0;
          const after = await statObject();
          if (after === null) return;
          if (after.ctimeNs === before.ctimeNs && after.nlink === before.nlink) {
            st.nlink = after.nlink - (registered ? 1n : 0n) + BigInt(n);
            return;
          }
        }
      });
    }
    return st;
  }

  async settled(obj: ObjectAt, st: fs.BigIntStats): Promise<boolean> {
    // What is needed of `st` is read before the first wait (the core's shownStat may change it meanwhile).
    const ino = st.ino;
    const isFile = st.isFile();
    if (obj.rel === '.' || this.moving.has(ino)) return false;
    if (st.isDirectory()) {
      // Pending: its count and times come from its mark, and materialisation changes it.
      if (this.residual === null && (await isPending(this.privateDir, obj.path, obj.at))) return false;
    } else if (st.nlink !== 1n) {
      // Hard-linked: its count may add names still in the archive (the registry name is one of its links).
      return false;
    }
    const id = await readObjectId(obj.path, obj.at);
    if (id !== null) {
      if ((await this.loadTimesRecords()).has(id)) return false;
      // Fetched bytes are still to be written into it (moving its times meanwhile).
      if (isFile && (await this.isRemote(id))) return false;
    }
    return !this.moving.has(ino);
  }

  /** Told before and after the restore changes an object behind the kernel (the FUSE adapter's vouches for settled objects). */
  settleWatch: SettleWatch | null = null;

  /** Runs `f`, a change of the object `ino` behind the kernel, between settleWatch's begin and end. */
  private async unsettling<T>(ino: bigint, f: () => Promise<T>): Promise<T> {
    const w = this.settleWatch;
    w?.begin(ino);
    try {
      return await f();
    } finally {
      w?.end(ino);
    }
  }

  async makeXattrRoom(file: string | number | ObjectAt): Promise<boolean> {
    const [path, at] = typeof file === 'number' ? ['', file] : typeof file === 'object' ? [file.path, file.at] : [file, this.at];
    const id = await readObjectId(path, at);
    if (id === null) return false;
    // Under the locks of the directory's materialisation and of the file's names (whose marks these are).
    return this.withLock(`dir:${id}`, () => this.namesLock(id, () => moveMarksAside(this.privateDir, path, at)));
  }

  exclusive<T>(id: ObjectId, f: () => Promise<T>): Promise<T> {
    return this.withLock(id, f);
  }

  async changing(id: ObjectId, file: string | number | ObjectAt): Promise<void> {
    if (!(await this.loadTimesRecords()).has(id)) return;
    await this.withLock(id, () => this.settleTimes(id, file));
  }

  // ---- times records (see store/restore-marks.ts) ---------------------------------

  private loadTimesRecords(): Promise<Set<ObjectId>> {
    this.timesRecords ??= (async () => {
      await fs.promises.mkdir(timesDir(this.privateDir), { recursive: true, mode: 0o700 });
      return listTimesRecords(this.privateDir);
    })();
    return this.timesRecords;
  }

  /** Puts back the times a crash left moved (from the file's times record), before a program changes the file. Under the file's lock. */
  private async settleTimes(id: ObjectId, file: string | number | ObjectAt): Promise<void> {
    const records = await this.loadTimesRecords();
    if (!records.has(id)) return;
    if (typeof file === 'object') await settleTimesRecord(this.privateDir, id, file.path, file.at);
    else await settleTimesRecord(this.privateDir, id, file, this.at);
    records.delete(id);
  }

  /**
   * The times to put back after fetched bytes are written into the file
   * (`st`: its attributes now): those of a record a crash left, else the
   * file's own, recorded now. Under the file's lock.
   */
  private async timesBeforeWrite(id: ObjectId, st: fs.BigIntStats): Promise<FileTimes> {
    const records = await this.loadTimesRecords();
    if (records.has(id)) {
      const t = await readTimesRecord(this.privateDir, id);
      if (t !== null) return t;
    }
    const t = { atime: timeSpecFromNs(st.atimeNs), mtime: timeSpecFromNs(st.mtimeNs) };
    await writeTimesRecord(this.privateDir, id, t);
    records.add(id);
    return t;
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

  /**
   * Materialises a pending directory for the background restore (without
   * foreground priority), small files whole unless `withData` is false (all
   * its files stubs: the background restore's names-first pass on a store
   * short of room); the names of the files created whole, or null when it was
   * not pending.
   */
  async restoreDir(rel: string, withData = true): Promise<Set<string> | null> {
    if (!(await isPending(this.privateDir, rel, this.at))) return null;
    return this.hydrateDir({ at: this.at, path: rel, rel }, true, withData);
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
    for (let from = 0; from < map.present.length; from += BACKGROUND_RECORD_BLOCKS) {
      const stop = await this.withLock(id, async () => {
        if (this.dropped(map)) return true;
        const holes: number[] = [];
        for (let i = from; i < Math.min(from + BACKGROUND_RECORD_BLOCKS, map.present.length); i++) if (map.present[i] !== 1 && !data.has(i)) holes.push(i);
        if (holes.length === 0) return false;
        this.stats.holesSkipped += holes.length;
        crashPoint('holes-before-map');
        await this.markPresent(id, map, holes);
        return false;
      });
      if (stop) return;
    }
  }

  /** The block map of a file (null: local). */
  async mapOf(id: ObjectId): Promise<BlockMap | null> {
    const cached = this.mapInMemory(id);
    // A file is local once no block is missing and every block is recorded.
    if (cached !== undefined) return cached.missing === 0 && !(cached.unrecorded?.size) ? null : cached;
    // One load for concurrent callers: two copies of a map would each miss what the other's fetches made local.
    let loading = this.mapsLoading.get(id);
    if (loading === undefined) {
      loading = (async () => {
        const map = await readBlockMap(this.privateDir, id);
        if (map === null) return null;
        if (map.missing === 0) {
          await removeBlockMap(this.privateDir, id);
          return null;
        }
        this.keepMap(id, map);
        return map;
      })().finally(() => this.mapsLoading.delete(id));
      this.mapsLoading.set(id, loading);
    }
    return loading;
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
   * Materialises all of a pending directory's entries (`background`: for
   * the background restore, small files whole when `withData`). Resolves
   * with the names of the files created whole.
   */
  private async hydrateDir(obj: ObjectAt, background = false, withData = background): Promise<Set<string>> {
    const id = await this.dirIdOf(obj);
    let p = this.dirsInFlight.get(id);
    if (p === undefined) {
      let whole = new Set<string>();
      // The background's fetches for this directory wait their turn, unless a program comes to wait for it.
      const group = background ? this.scheduler.group() : null;
      if (group !== null) this.backgroundDirs.set(id, group);
      p = this.withDir(obj, id, async (dir) => { whole = await this.hydrateDirOnce(dir, id, group, withData); })
        .then(() => whole)
        .finally(() => {
          this.dirsInFlight.delete(id);
          if (group !== null && this.backgroundDirs.get(id) === group) this.backgroundDirs.delete(id);
        });
      this.dirsInFlight.set(id, p);
    } else if (!background) {
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
    crashPoint('dir-before-times');
    await native.utimens(self, { sec: a.atime[0], nsec: a.atime[1] }, { sec: a.mtime[0], nsec: a.mtime[1] }, { noFollow: true });
  }

  /**
   * A small file's whole content (counted as fetched), for the background
   * restore; null (a stub, fetched later) once a program waits for the
   * directory, when it is larger than the background may have in flight
   * (FetchScheduler's budget: a slow link), or when it does not arrive within
   * the time bound (failing the directory instead made the background
   * restore retry it forever).
   */
  private async wholeFile(entry: EntryImage, group: FetchGroup, taken: (() => void)[]): Promise<Buffer | null> {
    // Larger than the background may have in flight (a slow link): a stub, its data by range later.
    if (entry.attrs.size > this.scheduler.budgetBytes) return null;
    // The store's last room is not for copies (cache-room.ts): a stub. Taken until the directory is materialised.
    const room = this.cacheRoom.take(entry.attrs.size);
    if (room === null) return null;
    taken.push(room);
    const data = await this.scheduler.optional(entry.attrs.size, async () => {
      this.stats.rangeFetches++;
      try {
        return await this.bounded(this.readVerified(entry.id, 0, entry.attrs.size), `file ${entry.id}`);
      } catch (err) {
        if (err instanceof WaitTimeout) return null;
        throw err;
      }
    }, group);
    if (data === null) return null;
    this.stats.bytesFetched += data.length;
    this.stats.blocksFetched += Math.ceil(data.length / BLOCK_SIZE);
    return data;
  }

  private async dirIdOf(obj: ObjectAt): Promise<ObjectId> {
    const id = obj.rel === '.' ? ROOT_ID : await readObjectId(obj.path, obj.at);
    if (id === null) throw new FsError('EIO', `pending directory ${obj.rel} has no object id`);
    return id;
  }

  /**
   * Runs `f` on the directory `obj` through a descriptor of its own, opened
   * at once (a rename of the directory or an ancestor meanwhile changes
   * nothing, and the caller's descriptor `obj.at` is not used after this
   * returns), holding the directory's lock (one materialisation in it at a
   * time), when it is still pending. `f` gets paths for the directory itself
   * and for its entries.
   */
  private async withDir(obj: ObjectAt, id: ObjectId, f: (dir: { self: string; base: string }) => Promise<void>): Promise<void> {
    const fd = await native.openAt(obj.at, obj.path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
    await this.withLock(`dir:${id}`, async () => {
      const dir = { self: `/proc/self/fd/${fd}/.`, base: `/proc/self/fd/${fd}` };
      try {
        // Both at once (one thread-pool hop of latency, not two): most calls find the directory pending.
        const [mark, st] = await Promise.all([
          readPendingMark(this.privateDir, dir.self, native.AT_FDCWD),
          new Promise<fs.BigIntStats>((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, s) => (err ? reject(err) : resolve(s)))),
        ]);
        if (mark === null) return;
        // Creating entries moves the directory's times until they are put
        // back: a stat of it waits meanwhile. Should a crash come first, its
        // mark says what they are (shownStat answers them, and the next
        // materialisation puts them back); a mark without times (an older
        // strata's) gets a times record, as a file's fetched bytes do.
        if (mark.times !== null && !(await this.loadTimesRecords()).has(id)) {
          await this.timesInMotion(st.ino, () => f(dir));
          return;
        }
        const times = await this.timesBeforeWrite(id, st);
        await this.timesInMotion(st.ino, async () => {
          await native.utimens(dir.self, times.atime, times.mtime, { noFollow: true });
          await f(dir);
        });
        await removeTimesRecord(this.privateDir, id);
        (await this.loadTimesRecords()).delete(id);
      } finally {
        fs.close(fd, () => {});
      }
    });
  }

  /**
   * A directory's image (fetched once for concurrent callers, kept while its
   * directory is pending); `group`: for the background restore.
   *
   * A program's fetch is one deep request (`deepImages`): with the image it
   * brings those of the directories below (below `name`, the entry being
   * looked up, when given), so a program walking down a path of pending
   * directories waits for one round trip, not one per tier. They are only
   * cached: each directory is still materialised one looked-up entry at a
   * time, as it is met, exactly as with an image fetched alone.
   */
  private async imageOf(id: ObjectId, group: FetchGroup | null = null, name?: string): Promise<CachedImage> {
    const cached = this.images.get(id) ?? this.imagesLarge.get(id);
    if (cached !== undefined) return cached;
    // A fetch younger than the time bound is joined. An older one is kept (it
    // may be a large directory on its way, and is cached when it comes) but
    // another is started beside it (it may hang on a connection that is gone):
    // the waiter takes whichever answers first.
    const earlier = this.imagesInFlight.get(id);
    let p: Promise<CachedImage> | undefined = earlier !== undefined && Date.now() - earlier.started < this.timeoutMs ? earlier.p : undefined;
    if (p === undefined) {
      const keep = (image: DirImage): CachedImage => {
        const c: CachedImage = { image, byName: new Map(image.entries.map((e) => [e.name, e])) };
        this.images.set(image.id, c);
        if (!this.images.has(image.id)) this.imagesLarge.set(image.id, c);
        return c;
      };
      // The time bound applies to each waiter (below), not to the fetch: an
      // image that takes longer than --fetch-timeout to arrive (a directory of
      // a few hundred thousand entries) is still kept when it comes.
      if (group === null) {
        p = this.observed(this.client.deepImages(this.volume, id, name)).then((images) => {
          this.stats.dirFetches++;
          const first = images[0];
          if (first === undefined || first.id !== id) throw new ArchiveDataError(`deep images of directory ${id}: the archive answered with another directory`);
          // Those below are kept unless cached or on their way already (the same archive state: only this primary changes it, and never a pending directory's entries).
          for (const image of images.slice(1)) if (!this.images.has(image.id) && !this.imagesLarge.has(image.id) && !this.imagesInFlight.has(image.id)) keep(image);
          return keep(first);
        });
      } else {
        p = this.scheduler.background(IMAGE_FETCH_BYTES, () => this.observed(this.client.dirImage(this.volume, id)), group).then((image) => {
          this.stats.dirFetches++;
          return keep(image);
        });
      }
      const entry = { p, started: Date.now() };
      entry.p = p.finally(() => { if (this.imagesInFlight.get(id) === entry) this.imagesInFlight.delete(id); });
      entry.p.catch(() => {});
      this.imagesInFlight.set(id, entry);
      p = earlier === undefined ? entry.p : Promise.any([earlier.p, entry.p]).catch(() => entry.p);
    }
    // Observed above, once per request; waiters joining it are not requests.
    return this.bounded(p, `directory ${id}`, false);
  }

  private async hydrateDirOnce(dir: { self: string; base: string }, id: ObjectId, group: FetchGroup | null, withData: boolean): Promise<Set<string>> {
    const { image } = await this.imageOf(id, group);
    /** Room taken for the small files made whole (cache-room.ts), given back once they are written. */
    const taken: (() => void)[] = [];
    const res = await materialiseEntries(dir.base, image, {
      dir: this.dir, privateDir: this.privateDir, childDirsPending: true, log: this.log, namesLock: this.namesLock, unsettling: this.unsettlingHook,
      ...(group !== null && withData ? { fileData: (e: EntryImage) => this.wholeFile(e, group, taken) } : {}),
    }).finally(() => { for (const release of taken) release(); });
    await this.keepArchiveTimes(dir.self, image);
    crashPoint('materialise-dir');
    await clearPending(this.privateDir, dir.self, native.AT_FDCWD);
    this.images.delete(id);
    this.imagesLarge.delete(id);
    this.stats.entriesMaterialised += res.created;
    this.log.debug({ dir: id, entries: image.entries.length, created: res.created, whole: res.whole.size }, 'restore: directory materialised');
    return res.whole;
  }

  /**
   * A lookup of `name` in the pending directory `parent`: answered from the
   * directory's image, materialising that one entry (the directory stays
   * pending; its other entries come when an op needs them all). A name the
   * image lacks is left absent (the lookup answers ENOENT).
   */
  private async materialiseChild(parent: ObjectAt, name: string): Promise<void> {
    const id = await this.dirIdOf(parent);
    this.promote(id);
    await this.withDir(parent, id, async (dir) => {
      const { image, byName } = await this.imageOf(id, null, name);
      const entry = byName.get(name);
      if (entry === undefined) return;
      if (await materialiseOne(dir.base, entry, {
        dir: this.dir, privateDir: this.privateDir, childDirsPending: true, log: this.log, namesLock: this.namesLock, unsettling: this.unsettlingHook,
      })) {
        this.stats.entriesMaterialised++;
        await this.keepArchiveTimes(dir.self, image);
      }
      // A program walking down a path looks up in this directory next: its image is on its way meanwhile.
      if ((entry.attrs.mode & 0o170000) === 0o040000) void this.imageOf(entry.id).catch(() => {});
    });
  }

  /**
   * Makes blocks of [offset, offset + length) local: in requests of up to
   * `maxRun` blocks, joining fetches already in flight (with maxRun 1 only
   * single-block ones, so that a bad block elsewhere in a long request does
   * not fail this one).
   */
  private async fetchRangeNow(id: ObjectId, fd: number, offset: number, length: number, maxRun = MAX_RUN_BLOCKS): Promise<boolean> {
    const map = await this.mapOf(id);
    if (map === null) return false;
    const nblocks = map.present.length;
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.min(nblocks - 1, Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE));
    const waits: Promise<void>[] = [];
    let runStart = -1;
    const startRun = (a: number, b: number): void => {
      waits.push(this.startFetch(id, map, fd, a, b, true).then(() => {}));
    };
    for (let i = first; i <= last + 1; i++) {
      const need = i <= last && map.present[i] !== 1;
      const flight = need ? this.joinable(id, i) : undefined;
      const inFlight = flight !== undefined && flight.blocks <= maxRun ? flight.p : undefined;
      // A program now waits for it: a background fetch still in its lane is sent at once.
      if (inFlight !== undefined && flight!.group !== null) this.scheduler.promote(flight!.group);
      if (need && inFlight === undefined) {
        if (runStart < 0) runStart = i;
        if (i - runStart + 1 === maxRun) { startRun(runStart, i); runStart = -1; }
        continue;
      }
      if (runStart >= 0) { startRun(runStart, i - 1); runStart = -1; }
      if (inFlight !== undefined) waits.push(inFlight);
    }
    // Every fetch started here writes through `fd`: all settle before a failure goes up (the owner of `fd`
    // closes it once this settles; a fetch still writing would write into whatever gets the number next).
    await settleAll(waits);
    return map.missing > 0;
  }

  /**
   * fetchBlocks(a, b), known as in flight for each block until it settles.
   * `fd` stays open until then: it is an OwnedFd's (an op's fetches) or the
   * background restore's own descriptor, and both wait for what they start.
   */
  private startFetch(id: ObjectId, map: BlockMap, fd: number, a: number, b: number, durable: boolean): Promise<number[]> {
    // A background fetch (not durable at once) waits in its lane; a program that joins it promotes it.
    const group = durable ? null : this.scheduler.group();
    const fetched = this.fetchBlocks(id, map, fd, a, b, durable, group);
    const p = fetched.then(() => {});
    const flight = { p, blocks: b - a + 1, group, started: performance.now() };
    for (let i = a; i <= b; i++) this.blocksInFlight.set(`${id}:${i}`, flight);
    void p.finally(() => { for (let i = a; i <= b; i++) if (this.blocksInFlight.get(`${id}:${i}`) === flight) this.blocksInFlight.delete(`${id}:${i}`); }).catch(() => {});
    return fetched;
  }

  /**
   * Fetches blocks [a, b] of the file and writes the ones still missing.
   * `durable`: they are fdatasync'ed and the block map says so before this
   * returns. Otherwise only the in-memory map says so (readers see them), and
   * the caller makes them durable and persists the map later (persistPresent).
   * Returns the blocks written.
   */
  private async fetchBlocks(id: ObjectId, map: BlockMap, fd: number, a: number, b: number, durable = true, group: FetchGroup | null = null): Promise<number[]> {
    const offset = a * BLOCK_SIZE;
    const length = Math.min((b + 1) * BLOCK_SIZE, map.remoteSize) - offset;
    // Not bounded by the time bound (its waiters are): it ends when the archive client ends it.
    const fetch = async (): Promise<Buffer> => {
      this.stats.rangeFetches++;
      const started = performance.now();
      const data = await this.translated(this.observed(this.readVerified(id, offset, length)), `file ${id} bytes ${offset}+${length}`);
      // The background's are measured by the scheduler (its job); a program's here. One pace for both: one link.
      if (durable) this.scheduler.noteDelivery(data.length, performance.now() - started);
      return data;
    };
    // Not durable at once: the background restore's (restoreFileData), in its lane.
    const data = await (durable ? fetch() : this.scheduler.background(length, fetch, group));
    this.stats.bytesFetched += data.length;
    return this.withLock(id, async () => {
      if (this.dropped(map)) return [];
      // Reopen for writing through the handle's descriptor (it may be read-only).
      const wfd = await openForWriting(fd);
      const done: number[] = [];
      try {
        // Restoring bytes is not a change: the file's times stay as they are.
        // They are recorded first (a crash before they are put back must not
        // leave the time of the crash as the file's mtime), or come from the
        // record a crash left.
        const blocks: number[] = [];
        for (let i = a; i <= b; i++) if (map.present[i] !== 1) blocks.push(i); // else written through the mount meanwhile
        const st = await new Promise<fs.BigIntStats>((resolve, reject) =>
          fs.fstat(wfd, { bigint: true }, (err, s) => (err ? reject(err) : resolve(s))));
        // Never past the file's end: a file cut while its map was still there
        // (a crash between a truncation to 0 and its discard) stays cut.
        const size = Number(st.size);
        const chunkOf = (i: number): Buffer => {
          const start = (i - a) * BLOCK_SIZE;
          return data.subarray(Math.min(start, data.length), Math.max(Math.min(start, data.length), Math.min(start + BLOCK_SIZE, data.length, size - a * BLOCK_SIZE)));
        };
        const writes = blocks.filter((i) => {
          const chunk = chunkOf(i);
          return chunk.length > 0 && !isZero(chunk);
        });
        if (writes.length > 0) {
          const times = await this.timesBeforeWrite(id, st);
          // Until the times are back, a stat of the file waits (it would see, and the kernel cache, the moved mtime).
          await this.timesInMotion(st.ino, async () => {
            crashPoint('fetch-times-recorded');
            // Blocks next to each other go in one write (their bytes are next to each other in `data`).
            for (let k = 0; k < writes.length;) {
              let j = k + 1;
              while (j < writes.length && writes[j] === writes[j - 1]! + 1 && chunkOf(writes[j - 1]!).length === BLOCK_SIZE) j++;
              const from = chunkOf(writes[k]!);
              const to = chunkOf(writes[j - 1]!);
              await writeAll(wfd, data.subarray(from.byteOffset - data.byteOffset, to.byteOffset - data.byteOffset + to.length), writes[k]! * BLOCK_SIZE);
              k = j;
            }
            crashPoint('fetch-before-times');
            await native.futimens(wfd, times.atime, times.mtime);
          });
          crashPoint('fetch-times-restored');
          await removeTimesRecord(this.privateDir, id);
          (await this.loadTimesRecords()).delete(id);
        }
        done.push(...blocks);
        if (done.length > 0 && durable) await fdatasync(wfd);
      } finally {
        fs.close(wfd, () => {});
      }
      this.stats.blocksFetched += done.length;
      if (done.length > 0) crashPoint('fetch-written');
      if (done.length === 0) return done;
      if (durable) await this.markPresent(id, map, done);
      else {
        setPresent(map, done);
        map.unrecorded ??= new Set();
        for (const i of done) map.unrecorded.add(i);
      }
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
    const bad = new Set(this.unreadable.get(id)?.blocks ?? []);
    // No longer than the background's budget allows (a slow link: see FetchScheduler).
    const runBlocks = (): number => Math.max(1, Math.min(BACKGROUND_RUN_BLOCKS, Math.floor(this.scheduler.budgetBytes / BLOCK_SIZE)));
    // Runs of missing blocks, found as the workers go (not listed up front: memory stays bounded).
    const runs = (function* missingRuns(): Generator<[number, number]> {
      let a = -1;
      let b = -1;
      for (let i = 0; i < map.present.length; i++) {
        if (map.present[i] === 1 || bad.has(i)) continue;
        if (a >= 0 && b === i - 1 && i - a < runBlocks()) { b = i; continue; }
        if (a >= 0) yield [a, b];
        a = b = i;
      }
      if (a >= 0) yield [a, b];
    })();
    const before = this.stats.bytesFetched;
    let written: number[] = [];
    /** What was written is made durable and recorded. */
    const record = async (): Promise<void> => {
      if (written.length === 0) return;
      const blocks = written;
      written = [];
      await this.withLock(id, async () => {
        if (this.dropped(map)) return;
        await fdatasyncThrough(fd);
        crashPoint('background-before-map');
        await this.persistPresent(id, map, blocks);
      });
    };
    /** Fetches [a, b] (blocks a program is fetching meanwhile are waited for, not fetched twice). */
    const fetchRun = async (a: number, b: number): Promise<void> => {
      // The store's last room is not for copies (cache-room.ts): the pass fails with ENOSPC and waits.
      const room = this.cacheRoom.take((b - a + 1) * BLOCK_SIZE);
      if (room === null) throw this.cacheRoom.refusal();
      try {
        await fetchRunWithin(a, b);
      } finally {
        room();
      }
    };
    const fetchRunWithin = async (a: number, b: number): Promise<void> => {
      const waits: Promise<void>[] = [];
      let start = -1;
      for (let i = a; i <= b + 1; i++) {
        const flight = i <= b && map.present[i] !== 1 ? this.blocksInFlight.get(`${id}:${i}`) : undefined;
        const need = i <= b && map.present[i] !== 1 && flight === undefined;
        if (need) { if (start < 0) start = i; continue; }
        if (start >= 0) {
          const [s0, s1] = [start, i - 1];
          waits.push(this.startFetch(id, map, fd, s0, s1, false).then((w) => { written.push(...w); }));
          start = -1;
        }
        if (flight !== undefined) waits.push(flight.p.catch(() => {}));
      }
      // Every fetch writing through `fd` settles before a failure goes up (the caller closes it then).
      await settleAll(waits);
    };
    // Two runs at a time; both settle before this returns, even when one fails: the caller closes `fd`
    // then, and a fetch still writing through it would write into whatever the descriptor number was
    // given to next. (Until 2026-12-06 Promise.all returned at the first failure, an ENOSPC or an archive
    // that timed out: the other run's blocks went into another file, and were marked local in this one,
    // which then read zeros: fault lifecycle *random ops on a store being recovered…*, seed 2003436728.)
    try {
      await forEachLimited(runs, 2, async ([a, b]) => {
        if (written.length >= BACKGROUND_RECORD_BLOCKS) await record();
        try {
          await fetchRun(a, b);
        } catch (err) {
          if (!(err instanceof UnreadableError)) throw err;
          // One bad block must not keep the rest of the run (or the file) from being restored.
          for (let i = a; i <= b; i++) {
            if (map.present[i] === 1) continue;
            try {
              await fetchRun(i, i);
            } catch (e) {
              if (!(e instanceof UnreadableError)) throw e;
              this.noteUnreadable(id, i, e);
            }
          }
        }
      });
    } finally {
      // Even when a fetch failed.
      await record();
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
    for (const i of blocks) map.unrecorded?.delete(i);
    if (map.missing === 0) {
      // Every caller made the whole file durable first (fdatasync): nothing is left unrecorded.
      map.unrecorded?.clear();
      await removeBlockMap(this.privateDir, id);
      this.discardMap(id, map);
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

  /** Inodes whose times the restore has moved and not put back yet, until it has. */
  private readonly moving = new Map<bigint, Promise<void>>();

  /** Runs `f`, which moves the times of inode `ino` and puts them back; a stat of it waits for `f` (shownStat). */
  private async timesInMotion(ino: bigint, f: () => Promise<void>): Promise<void> {
    // Whoever vouched for the object as settled takes it back first (it may have gained a map since).
    const p = this.unsettling(ino, f);
    this.moving.set(ino, p);
    try {
      await p;
    } finally {
      if (this.moving.get(ino) === p) this.moving.delete(ino);
    }
  }

  /** unsettling(), for materialisation. */
  private readonly unsettlingHook = <T>(ino: bigint, f: () => Promise<T>): Promise<T> => this.unsettling(ino, f);

  /** Held while a hard-linked object gains a name by materialisation, and while its link count is read. */
  private readonly namesLock = <T>(id: ObjectId, f: () => Promise<T>): Promise<T> => this.withLock(`names:${id}`, f);

  private withLock<T>(id: ObjectId, f: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(f);
    const tail = next.catch(() => {});
    this.locks.set(id, tail);
    void tail.then(() => { if (this.locks.get(id) === tail) this.locks.delete(id); });
    return next;
  }

  /**
   * Bytes [offset, offset + length) of a file (short at the archive's end of
   * file, holes as zeros), every block checked here against its sha256
   * digest: the archive sends pack bytes without re-hashing them. A block
   * that does not match is ECORRUPT (the read that needs it fails with EIO,
   * logged; its bytes are never written or returned).
   */
  private async readVerified(id: ObjectId, offset: number, length: number): Promise<Buffer> {
    if (length <= 0) return Buffer.alloc(0);
    const first = Math.floor(offset / BLOCK_SIZE);
    const count = Math.floor((offset + length - 1) / BLOCK_SIZE) - first + 1;
    const raw = await this.client.readBlocks(this.volume, id, first, count);
    try {
      // Large answers are hashed on the thread pool in one call; a small file's few KiB cost less here than a hop there.
      return await verifiedRange(raw, offset, length, raw.data.length >= POOL_HASH_MIN_BYTES ? native.sha256Blocks : undefined);
    } catch (err) {
      if (err instanceof BlockDigestError) {
        this.log.error({ id, block: err.index, err: err.message }, 'restore: a block from the archive failed its digest check; not used');
        throw new ArchiveError('ECORRUPT', err.message);
      }
      throw err;
    }
  }

  /** The archive's answer within the time bound; EIO (and a warning) otherwise. */
  /** Tells onFetch (metrics) when the request `p` answers: once per request to the archive. */
  private observed<T>(p: Promise<T>): Promise<T> {
    const observe = this.onFetch;
    if (observe !== null) {
      const t0 = process.hrtime.bigint();
      const secs = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
      p.then(() => observe(secs(), true), () => observe(secs(), false));
    }
    return p;
  }

  /** The archive's answer within the time bound; EIO otherwise. */
  private bounded<T>(p: Promise<T>, what: string, observe = true): Promise<T> {
    if (observe) this.observed(p);
    return this.waited(this.translated(p, what), what);
  }

  /**
   * The archive's answer, its failure as the core's: data the archive cannot
   * deliver (ECORRUPT, ENOOBJECT) as UnreadableError, any other archive error
   * as EIO; each failure counted and logged.
   */
  private async translated<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.failed(err, what);
      if (err instanceof FsError) throw err;
      if (isArchiveError(err, 'ECORRUPT') || isArchiveError(err, 'ENOOBJECT')) throw new UnreadableError((err as Error).message);
      if (isArchiveError(err)) throw new ArchiveDataError((err as Error).message);
      throw err;
    }
  }

  /**
   * An op's wait for `p`, bounded by the time bound: EIO when it does not
   * settle in time. `p` goes on (a fetch keeps what it brings for the next op).
   */
  private async waited<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new WaitTimeout(`the archive did not answer for ${what} within ${this.timeoutMs} ms`);
        this.failed(err, what);
        reject(err);
      }, this.timeoutMs);
    });
    p.catch(() => {});
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private failed(err: unknown, what: string): void {
    this.stats.failures++;
    this.stats.lastError = (err as Error).message;
    this.log.warn({ err: (err as Error).message, what }, 'restore: fetch failed');
  }
}

/**
 * A descriptor owned by fetches that may outlive the op that started them
 * (an op's wait is bounded; the program may then close its file, and the
 * number may come to name another file): a copy of the op's, taken at once
 * while that is surely open, closed when the last fetch holding it settles.
 */
class OwnedFd {
  readonly fd: number;
  private holders = 0;

  constructor(fd: number) {
    this.fd = native.dupFd(fd);
  }

  /** `p` uses the descriptor until it settles (the op's own work holds it first, and what it starts holds it before the work settles). Returns `p`. */
  hold<T>(p: Promise<T>): Promise<T> {
    this.holders++;
    void p.catch(() => {}).finally(() => {
      if (--this.holders === 0) fs.close(this.fd, () => {});
    });
    return p;
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

/** fdatasync of the file open on `fd`, through a descriptor opened for writing (`fd` may be read-only). */
async function fdatasyncThrough(fd: number): Promise<void> {
  const wfd = await openForWriting(fd);
  try {
    await fdatasync(wfd);
  } finally {
    fs.close(wfd, () => {});
  }
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

function nsOf(t: { sec: number; nsec: number }): bigint {
  return BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
}

