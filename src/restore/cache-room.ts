// The restore's copies of the archive's data (blocks a read made local, the
// background restore's fetches, small files made whole) never take the
// store's last room: they stop while less than a reserve is free (2% of the
// disk, 1 MiB to 256 MiB, counted as an ordinary user sees it, so ext4's
// blocks reserved for root stay free too). That room is for what a full disk
// would stop: the journal's records (a restart after a crash re-converges
// through them), directories the restore has not made local yet (their
// entries, stubs and block maps), the daemon's state files, and programs.
// Until 2026-12-06 the restore filled a store smaller than the volume to the
// last block: after a kill -9, `strata mount` and `strata recover` failed
// with ENOSPC (the re-convergence's records had no room), and a directory not
// made local yet could not be listed (fault lifecycle *random ops on a store
// being recovered whose disk fills…*, with a volume larger than the store).
// What the reserve keeps out of the store is read through from the archive
// (on-demand.ts readThrough); a program's own writes are not held back.
import { statfs } from 'node:fs/promises';
import { FsError } from '../errors/errno.js';

const MiB = 1024 * 1024;

/** What the restore's copies leave free on a disk of `diskBytes`. */
export function cacheReserveBytes(diskBytes: number): number {
  return Math.min(256 * MiB, Math.max(MiB, Math.floor(diskBytes / 50)));
}

export class CacheRoom {
  /** The last look at the disk (free: bytes an ordinary user could use), and when. */
  private seen = { at: -Infinity, free: Infinity, reserve: 0 };
  /** Bytes taken and not written yet (given back by the release take() returned). */
  private inFlight = 0;
  private looking: Promise<void> | null = null;

  /** `path`: on the store's disk. The first look starts at once. */
  constructor(private readonly path: string, private readonly refreshMs = 250) {
    this.look();
  }

  /**
   * When `bytes` more of the archive's data may be written into the store: a
   * release to call once they are written (or not: the fetch failed), until
   * which they count as taken; null when they may not. Answers at once from
   * the last look at the disk (a program's read must not wait for statfs),
   * and starts a new look when that one is older than `refreshMs` or a
   * release came since.
   */
  take(bytes: number): (() => void) | null {
    if (performance.now() - this.seen.at >= this.refreshMs) this.look();
    if (this.seen.free - this.inFlight - bytes < this.seen.reserve) return null;
    this.inFlight += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= bytes;
      // Taken as written until the next look says what was (a failed fetch gives it back then).
      this.seen.free -= bytes;
      this.seen.at = -Infinity;
    };
  }

  private look(): void {
    // A disk that cannot be asked is no reason to hold a fetch back: the fetch's own write says whether there is room.
    this.looking ??= statfs(this.path).then(
      (s) => { this.seen = { at: performance.now(), free: s.bavail * s.bsize, reserve: cacheReserveBytes(s.blocks * s.bsize) }; },
      () => { this.seen = { at: performance.now(), free: Infinity, reserve: 0 }; },
    ).finally(() => { this.looking = null; });
  }

  /** What a fetch fails with when take() said no: a read is then answered from the archive, the background waits. */
  refusal(): FsError {
    return new FsError('ENOSPC', `the restore leaves the store's last ${(this.seen.reserve / MiB).toFixed(1)} MiB free (for the journal, directories not restored yet and programs)`);
  }
}
