// Whether a store being restored has room for the part of the volume that is
// not local yet. A store too small still serves: file data it has no room for
// is read from the archive (on-demand.ts readThrough), but the background
// restore cannot finish, and once no inode is left a directory not restored
// yet cannot be made local, so it cannot be listed (ENOSPC). The recovery says
// so when the mount starts serving, `strata status` shows it, and the daemon
// logs it; it does not refuse: a volume's byte count includes the holes of
// its sparse files, so it is an upper bound.
import { statfs } from 'node:fs/promises';
import type { SubtreeTotals } from '../protocol/images.js';
import { cacheReserveBytes } from './cache-room.js';
import { mib } from '../util/units.js';

export interface FreeRoom {
  /** Free bytes as an ordinary user sees them. */
  bytes: number;
  /** Of those, what the restore's copies leave free (cache-room.ts); 0 when not given. */
  reserve?: number;
  /** Free inodes; null when the file system does not count them (btrfs says 0 of 0). */
  inodes: number | null;
}

/** What the store lacks for `need` (what is not local yet), said for an operator; null when it has room. */
export function roomShortfall(free: FreeRoom, need: SubtreeTotals): string | null {
  const reserve = free.reserve ?? 0;
  const noBytes = free.bytes - reserve < need.bytes;
  const noInodes = free.inodes !== null && free.inodes < need.entries;
  if (!noBytes && !noInodes) return null;
  const has = `${mib(free.bytes)}${free.inodes !== null ? ` and ${free.inodes} inodes` : ''}${reserve > 0 ? ` (the restore leaves ${mib(reserve)} of it free)` : ''}`;
  const consequences = ['the background restore cannot finish', 'file data not local yet is read from the archive'];
  if (noInodes) consequences.push('a directory not restored yet fails with ENOSPC once no inode is left');
  return `the store has ${has} free; what is not local yet needs up to ${mib(need.bytes)} (holes of sparse files included) ` +
    `and ${need.entries} inodes: ${consequences.join('; ')}. Give the store more room: the restore then goes on by itself`;
}

/** The free room of the file system holding `path`. */
export async function freeRoomAt(path: string): Promise<FreeRoom> {
  const st = await statfs(path);
  return { bytes: st.bavail * st.bsize, reserve: cacheReserveBytes(st.blocks * st.bsize), inodes: st.files > 0 ? st.ffree : null };
}
