// A sparse file past 4 TiB through the mount, recovered (the drill of
// 2026-12-03 that found wrong bytes: a block map larger than the whole map
// cache, over 2 TiB with the default 32 MiB, was never cached, and every read
// of such a file returned the stub's zeros; with the background restore on,
// the daemon then died building an array of every block). Data at 2^31-1,
// 2^41+7 and 2^42+12345, written through a mirrored mount; recovered with
// --depth 0 and no background restore (reads on demand), and recovered again
// with the background restore (holes skipped, the store's file stays sparse).
// Every chunk and a hole between them are compared with what was written.
import test from 'ava';
import { closeSync, mkdirSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { strata } from '../helpers/mount.js';
import { forceUnmount, syncMount, withMirroredMount } from '../helpers/mirror.js';
import { waitRestored } from '../helpers/recover.js';

const CHUNKS: [number, Buffer][] = [
  [2 ** 31 - 1, Buffer.alloc(1000, 0x31)],
  [2 ** 41 + 7, Buffer.from('in the middle of 2 TiB and more '.repeat(40))],
  [2 ** 42 + 12345, Buffer.alloc(70_000, 0x42)],
];
const SIZE = 2 ** 42 + 12345 + 70_000;
const HOLE_AT = 2 ** 40;

function check(t: import('ava').ExecutionContext, path: string, label: string): void {
  t.is(statSync(path).size, SIZE, `${label}: size`);
  const fd = openSync(path, 'r');
  try {
    for (const [at, want] of CHUNKS) {
      const got = Buffer.alloc(want.length);
      const n = readSync(fd, got, 0, got.length, at);
      t.is(n, want.length, `${label}: bytes read at ${at}`);
      t.true(got.equals(want), `${label}: the bytes at ${at}`);
    }
    const hole = Buffer.alloc(65536, 1);
    readSync(fd, hole, 0, hole.length, HOLE_AT);
    t.true(hole.every((b) => b === 0), `${label}: a hole reads as zeros`);
  } finally {
    closeSync(fd);
  }
}

test.serial('a sparse file past 4 TiB: written, recovered on demand and by the background restore, every chunk right', async (t) => {
  t.timeout(300_000);
  const m = withMirroredMount(t);
  mkdirSync(join(m.mnt, 'd'));
  const fd = openSync(join(m.mnt, 'd', 'huge'), 'w');
  for (const [at, data] of CHUNKS) writeSync(fd, data, 0, data.length, at);
  closeSync(fd);
  syncMount(m);
  t.is(strata(['unmount', m.mnt]).status, 0);

  for (const background of [false, true]) {
    const label = background ? 'background restore' : 'on demand';
    const store = join(m.base, `recovered-${label.replace(' ', '-')}`);
    const mnt = join(m.base, `mnt-${label.replace(' ', '-')}`);
    mkdirSync(mnt);
    t.teardown(() => forceUnmount(mnt));
    const r = strata(['recover', '--archive', m.archiveUrl, '--volume', m.volume, '--store', store, '--depth', '0',
      ...(background ? [] : ['--no-background-restore']), mnt]);
    t.is(r.status, 0, `${r.stdout}${r.stderr}`);
    if (background) {
      const s = await waitRestored(mnt, 240_000);
      t.log(`background restore complete: ${JSON.stringify(s.fetch)}`);
    }
    check(t, join(mnt, 'd', 'huge'), label);
    t.is(strata(['unmount', mnt]).status, 0);
    if (background) {
      // Holes stayed holes: the store's file holds the chunks, not 4 TiB.
      const allocated = statSync(join(store, 'd', 'huge')).blocks * 512;
      t.true(allocated < 16 * 1024 * 1024, `the store's file allocates ${allocated} bytes`);
      check(t, join(store, 'd', 'huge'), 'the store after the background restore');
    }
  }
});
