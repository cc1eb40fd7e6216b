// Journalled direct writes (docs/mirroring.md, issue 16): on a mirrored mount
// in async mode the FUSE thread applies writes (and setattrs of mode, owner
// and times) itself and hands the core only their records. Seeded random
// writes, overwrites, truncates, chmods, chowns, utimes (by name and through
// the handle), fsyncs and reopens through several handles of several files,
// the same ops on a native copy; then `strata sync`, and the mount, the store (`strata verify`) and
// the archive's copy of every file must equal the native copy. The counters
// in `strata status` must show the direct path was taken — and that it was
// not with --no-direct-journal, with STRATA_DIRECT_JOURNAL=0, or in sync mode.
// A small credit window (STRATA_DIRECT_JOURNAL_CREDIT) makes writes switch
// between the FUSE thread and the core within one run (the journal order must
// hold across both).
//
//   STRATA_DIRECT_JOURNAL_SEED=<seed> npx ava dist/test/integration/mirror-direct-journal.test.js   # replay one seed
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, open, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { withMirroredMount, syncMount, assertConverged, readFromArchive, type MirroredMount } from '../helpers/mirror.js';
import { strata } from '../helpers/mount.js';
import { Rng } from '../helpers/model-tree.js';

const FILES = 3;
const HANDLES = 2;
const NOPS = 300;
const MAX_OFF = 3 * 1024 * 1024;
const MAX_LEN = 300 * 1024;

interface DirectJournal {
  enabled: boolean;
  active: boolean;
  directWrites: number;
  directBytes: number;
  directSetattrs: number;
  setattrsJournaled: number;
  sentToCore: number;
  journaled: number;
}

function directJournal(m: MirroredMount): DirectJournal {
  const r = strata(['status', '--json', m.mnt]);
  if (r.status !== 0) throw new Error(`strata status failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { directJournal: DirectJournal }).directJournal;
}

function seedOf(): number {
  const fixed = process.env['STRATA_DIRECT_JOURNAL_SEED'];
  if (fixed !== undefined && fixed !== '') return Number(fixed) >>> 0;
  return (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
}

/** The seeded ops, on the mount and on a native copy alike; returns how many writes were made. */
async function workload(t: ExecutionContext, seed: number, mnt: string, native: string): Promise<number> {
  const rng = new Rng(seed);
  const sides = [mnt, native];
  const handles: FileHandle[][][] = sides.map(() => []);
  for (let s = 0; s < sides.length; s++) {
    for (let f = 0; f < FILES; f++) {
      handles[s]![f] = [];
      for (let h = 0; h < HANDLES; h++) handles[s]![f]![h] = await open(join(sides[s]!, `f${f}`), h === 0 ? 'w+' : 'r+', 0o644);
    }
  }
  let writes = 0;
  try {
    for (let i = 0; i < NOPS; i++) {
      const f = rng.int(0, FILES - 1);
      const h = rng.int(0, HANDLES - 1);
      const dice = rng.int(0, 99);
      if (dice < 60) {
        const off = rng.int(0, MAX_OFF);
        const len = rng.int(1, MAX_LEN);
        const data = Buffer.allocUnsafe(len);
        let x = rng.int(1, 0x7fffffff);
        for (let k = 0; k < len; k++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          data[k] = x >>> 24;
        }
        for (let s = 0; s < sides.length; s++) {
          const { bytesWritten } = await handles[s]![f]![h]!.write(data, 0, len, off);
          if (bytesWritten !== len) throw new Error(`short write at op ${i}`);
        }
        writes++;
      } else if (dice < 70) {
        const size = rng.int(0, MAX_OFF);
        for (let s = 0; s < sides.length; s++) await handles[s]![f]![h]!.truncate(size);
      } else if (dice < 76) {
        // Attributes (journalled direct setattrs), by name or through the handle.
        const kind = rng.int(0, 2);
        const byName = rng.int(0, 1) === 0;
        const mode = 0o600 | rng.int(0, 0o77);
        const uid = rng.int(0, 3);
        const gid = rng.int(0, 3);
        const when = new Date(Date.UTC(2001, 0, 1) + rng.int(0, 1e9) * 1000);
        for (let s = 0; s < sides.length; s++) {
          const path = join(sides[s]!, `f${f}`);
          const fh = handles[s]![f]![h]!;
          if (kind === 0) await (byName ? chmod(path, mode) : fh.chmod(mode));
          else if (kind === 1) await (byName ? chown(path, uid, gid) : fh.chown(uid, gid));
          else await (byName ? utimes(path, when, when) : fh.utimes(when, when));
        }
      } else if (dice < 86) {
        for (let s = 0; s < sides.length; s++) await (rng.int(0, 1) === 0 ? handles[s]![f]![h]!.sync() : handles[s]![f]![h]!.datasync());
      } else {
        // Close and open again (flush and release; a new handle).
        for (let s = 0; s < sides.length; s++) {
          await handles[s]![f]![h]!.close();
          handles[s]![f]![h] = await open(join(sides[s]!, `f${f}`), 'r+');
        }
      }
    }
  } finally {
    for (const side of handles) for (const file of side) for (const fh of file) await fh.close().catch(() => {});
  }
  t.log(`seed ${seed}: ${NOPS} ops, ${writes} writes`);
  return writes;
}

async function compare(t: ExecutionContext, m: MirroredMount, native: string, label: string): Promise<void> {
  for (let f = 0; f < FILES; f++) {
    const want = readFileSync(join(native, `f${f}`));
    const got = readFileSync(join(m.mnt, `f${f}`));
    t.true(got.equals(want), `${label}: f${f} on the mount (${got.length} bytes) differs from the native copy (${want.length})`);
    const [a, b] = [statSync(join(m.mnt, `f${f}`)), statSync(join(native, `f${f}`))];
    // (mtimes differ from the native copy's: each side's writes set their own; the archive's are `strata verify`'s.)
    t.deepEqual([a.mode, a.uid, a.gid, a.size], [b.mode, b.uid, b.gid, b.size], `${label}: f${f} mode, owner, size`);
    const archived = await readFromArchive(m.archiveUrl, m.volume, `f${f}`, m.tokenFile);
    t.true(archived !== null && archived.equals(want), `${label}: f${f} on the archive (${archived?.length ?? 'none'} bytes) differs from the native copy (${want.length})`);
  }
  assertConverged(t, m, label);
}

async function run(t: ExecutionContext, opts: { extraArgs?: string[]; env?: NodeJS.ProcessEnv }): Promise<{ dj: DirectJournal; writes: number }> {
  const seed = seedOf();
  const m = withMirroredMount(t, opts);
  const native = join(m.base, 'native');
  mkdirSync(native);
  const writes = await workload(t, seed, m.mnt, native);
  syncMount(m);
  await compare(t, m, native, `seed ${seed}`);
  const dj = directJournal(m);
  t.log(`seed ${seed}: ${JSON.stringify(dj)}`);
  return { dj, writes };
}

test('async mirror: writes are applied on the FUSE thread and journalled from its notices; archive and mount equal a native copy', async (t) => {
  // 200 KiB of credit: larger writes find too little and go through the core, between smaller ones applied on the FUSE thread.
  const { dj, writes } = await run(t, { env: { STRATA_DIRECT_JOURNAL_CREDIT: String(200 * 1024) } });
  t.true(dj.enabled && dj.active);
  t.true(dj.directWrites > 0, 'no write was applied on the FUSE thread');
  t.true(dj.sentToCore > 0, 'no write lacked credit');
  t.is(dj.journaled, dj.directWrites, 'every write applied on the FUSE thread was journalled');
  t.true(dj.directSetattrs > 0, 'no setattr was applied on the FUSE thread');
  t.is(dj.setattrsJournaled, dj.directSetattrs, 'every setattr applied on the FUSE thread was journalled');
  // Every write of the workload went one way or the other (a write(2) is one FUSE request here: at most 300 KiB).
  t.true(dj.directWrites + dj.sentToCore >= writes, `${dj.directWrites} direct + ${dj.sentToCore} through the core < ${writes} writes`);
});

test('--no-direct-journal: every write goes through the core', async (t) => {
  const { dj } = await run(t, { extraArgs: ['--no-direct-journal'] });
  t.false(dj.enabled);
  t.is(dj.directWrites, 0);
  t.is(dj.directSetattrs, 0);
});

test('STRATA_DIRECT_JOURNAL=0: every write goes through the core', async (t) => {
  const { dj } = await run(t, { env: { STRATA_DIRECT_JOURNAL: '0' } });
  t.false(dj.enabled);
  t.is(dj.directWrites, 0);
});

test('sync mode: every write goes through the core', async (t) => {
  const { dj } = await run(t, { extraArgs: ['--mirror', 'sync'] });
  t.false(dj.active);
  t.is(dj.directWrites, 0);
  t.is(dj.directSetattrs, 0);
});
