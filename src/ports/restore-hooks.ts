// What the filesystem core asks of an unfinished restore (src/restore
// implements it): before an op needs a pending directory's entries, or bytes
// of a file whose data is still only in the archive. The core depends on this
// interface only; a store that is fully local has none (no cost per op).
import type { BigIntStats } from 'node:fs';
import type { ObjectId } from '../protocol/records.js';

/**
 * An object as the core reaches it: `path` relative to the descriptor `at`
 * (a node's directory descriptor and a name in it, or the directory itself
 * as '.'), and its store-relative path `rel`, which only says which object
 * it is (the root is '.') and names it in logs: nothing is reached through
 * `rel`. The descriptor is the caller's and stays open until the call's
 * promise settles.
 */
export interface ObjectAt {
  at: number;
  path: string;
  rel: string;
}

export interface RestoreHooks {
  /**
   * Resolves once the directory `dir` has its entries in the store (at once
   * for a restored directory or a non-directory). Fails with EIO when the
   * archive does not answer in time.
   */
  entries(dir: ObjectAt): Promise<void>;
  /**
   * Before a lookup of `name` in the directory `dir`: resolves once that
   * entry is in the store, if the directory has it (a pending directory's
   * other entries may stay in the archive).
   */
  child(dir: ObjectAt, name: string): Promise<void>;
  /** True while some of the file's data is still only in the archive. */
  isRemote(id: ObjectId): Promise<boolean>;
  /**
   * Makes bytes [offset, offset + length) of the file open on `fd` local.
   * Resolves with whether any of the file is still remote afterwards.
   */
  fetchRange(id: ObjectId, fd: number, offset: number, length: number): Promise<boolean>;
  /**
   * For a read whose fetch failed with ENOSPC (no room in the store): bytes
   * [offset, offset + length) of the file into `buf`, local blocks from `fd`
   * and the missing ones straight from the archive, nothing written. Returns
   * the bytes read.
   */
  readThrough(id: ObjectId, fd: number, buf: Buffer, length: number, offset: number): Promise<number>;
  /** Makes the whole file local (before a size change other than to 0, a fallocate). */
  fetchAll(id: ObjectId, fd: number): Promise<void>;
  /**
   * Runs `write` (a write of [offset, offset + length) through `fd`) with the
   * blocks it covers only in part fetched first, and marks the covered blocks
   * local after it; no fetch of the same file writes in between.
   */
  write<T>(id: ObjectId, fd: number, offset: number, length: number, write: () => Promise<T>): Promise<T>;
  /**
   * Runs `cut` (a program's truncation of the file to size 0: ftruncate, or an
   * O_TRUNC open) with no fetch of the same file writing in between, then
   * discards the archive's data: none of it is needed any more, and a fetch
   * still on its way writes nothing (it would put old bytes, or the archive's
   * times, over the program's change).
   */
  cut<T>(id: ObjectId, cut: () => Promise<T>): Promise<T>;
  /**
   * Before a program changes the attributes of the file (a store path, an
   * open descriptor, or a name relative to one): whatever the restore itself left unfinished on them
   * (times moved by a crash during a fetch) is put right first.
   */
  changing(id: ObjectId, file: string | number | ObjectAt): Promise<void>;
  /**
   * The object (a store path, a descriptor, or a name relative to one) has no room for a program's
   * extended attribute: the restore's own marks on it, which take room the
   * object did not need on the primary, move aside (store/restore-marks.ts).
   * True when some did (the program's setxattr is tried again).
   */
  makeXattrRoom(file: string | number | ObjectAt): Promise<boolean>;
  /**
   * Runs `f` (a program's change of the file's times) while no fetch writes
   * into the file: a fetch puts the file's times back after its bytes, and
   * would put them over the program's.
   */
  exclusive<T>(id: ObjectId, f: () => Promise<T>): Promise<T>;
  /**
   * The attributes a program sees of the object `obj` (null: known only by
   * its id and the descriptor `fd` of an open handle):
   * times as they are once the restore's own writes into it are done, and
   * link counts that count the names still only in the archive. Changes `st`
   * in place.
   */
  shownStat(st: BigIntStats, obj: ObjectAt | null, id: ObjectId | null, fd?: number): Promise<BigIntStats>;
  /**
   * True when the object `obj` (`st`: its lstat) is
   * settled: what a program sees of it is the store's own attributes
   * (shownStat changes nothing), and nothing but a program's request changes
   * them until the restore says otherwise (`settleWatch`). A restored
   * directory, a local file or symlink with one name, neither with a times
   * record nor being written into by the restore; never the root. When in
   * doubt, false.
   */
  settled(obj: ObjectAt, st: BigIntStats): Promise<boolean>;
  // (It reads the type, link count and inode number of `st` before its first
  // wait: the core runs shownStat on the same object meanwhile.)
}

/**
 * Told by the restore before and after it changes an object behind the
 * kernel (times moved while fetched bytes are written, a block map made
 * again): whoever vouched for the object as settled takes that back at
 * `begin`, and vouches made from checks that overlapped the change are not
 * kept (src/fuse/adapter.ts).
 */
export interface SettleWatch {
  begin(ino: bigint): void;
  end(ino: bigint): void;
}
