// Whether a store being restored has room for what is not local yet
// (src/restore/room.ts): said when the bytes or the inodes fall short, with
// what a program will see; nothing when there is room or the file system
// does not count inodes.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeRoomAt, roomShortfall } from '../../src/restore/room.js';
import { cacheReserveBytes } from '../../src/restore/cache-room.js';

const MiB = 1048576;

test('room: none said when the store has room; bytes short, inodes short, both', (t) => {
  t.is(roomShortfall({ bytes: 100 * MiB, inodes: 1000 }, { bytes: 100 * MiB, entries: 1000 }), null);
  t.is(roomShortfall({ bytes: 100 * MiB, inodes: null }, { bytes: 10 * MiB, entries: 1e9 }), null, 'inodes not counted (btrfs)');
  const bytes = roomShortfall({ bytes: 20 * MiB, inodes: 5000 }, { bytes: 28.6 * MiB, entries: 607 })!;
  t.regex(bytes, /^the store has 20\.0 MiB and 5000 inodes free; what is not local yet needs up to 28\.6 MiB .* and 607 inodes: the background restore cannot finish; file data not local yet is read from the archive\. Give the store more room/);
  t.notRegex(bytes, /ENOSPC/);
  const inodes = roomShortfall({ bytes: 100 * MiB, inodes: 16 }, { bytes: MiB, entries: 607 })!;
  t.regex(inodes, /and 16 inodes free.*a directory not restored yet fails with ENOSPC once no inode is left/);
  // What the restore leaves free (cache-room.ts) is not room for it.
  t.is(roomShortfall({ bytes: 30 * MiB, reserve: MiB, inodes: 1000 }, { bytes: 29 * MiB, entries: 10 }), null);
  t.regex(roomShortfall({ bytes: 30 * MiB, reserve: 2 * MiB, inodes: 1000 }, { bytes: 29 * MiB, entries: 10 })!,
    /^the store has 30\.0 MiB and 1000 inodes \(the restore leaves 2\.0 MiB of it free\) free; /);
});

test('room: the restore\'s copies leave 2% of the disk free, 1 MiB to 256 MiB', (t) => {
  t.is(cacheReserveBytes(12 * MiB), MiB);
  t.is(cacheReserveBytes(1024 * MiB), Math.floor(1024 * MiB / 50));
  t.is(cacheReserveBytes(1024 * 1024 * MiB), 256 * MiB);
});

test('room: the free room of a real file system', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'strata-room-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  const free = await freeRoomAt(d);
  t.true(free.bytes > 0);
  t.true(free.inodes === null || free.inodes > 0);
});
