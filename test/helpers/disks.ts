// Small disks for tests that need a file system with other limits than the
// machine's: loop-mounted, made fresh per test, gone in its teardown.
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A 64 MiB ext4 with 1 KiB blocks at BASE/ext4-1k (loop-mounted): all of an
 * inode's xattrs share one 1 KiB block there, so a volume written on 4 KiB
 * blocks (or on XFS) has objects whose xattrs do not fit. `first` runs in the
 * teardown before the disk is unmounted (a strata mount whose store is on
 * it). Null, and a failed test, when it cannot be made.
 */
export function smallXattrDisk(t: ExecutionContext, base: string, first: () => void): string | null {
  const img = join(base, 'ext4-1k.img');
  const disk = join(base, 'ext4-1k');
  mkdirSync(disk);
  const made = spawnSync('truncate', ['-s', '64M', img], { encoding: 'utf8' });
  const mkfs = made.status === 0 ? spawnSync('mkfs.ext4', ['-q', '-F', '-b', '1024', img], { encoding: 'utf8' }) : made;
  const lo = mkfs.status === 0 ? spawnSync('mount', ['-o', 'loop', img, disk], { encoding: 'utf8' }) : mkfs;
  if (lo.status !== 0) {
    t.fail(`cannot make a 1 KiB-block ext4 on a loop device: ${lo.stderr}`);
    return null;
  }
  t.teardown(() => { first(); spawnSync('umount', ['-l', disk]); });
  return disk;
}
