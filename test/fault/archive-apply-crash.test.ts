// Model-based crash test of archive apply (issue 16: a batch's rows are kept
// in memory and written at its end). A child process applies seeded batches
// of many records each (test/helpers/apply-model.ts: the same objects changed
// again and again within a batch, hard links, replaced names, subtrees
// removed and moved, xattrs; some batches under a snapshot floor) and is
// killed -9 at a seeded random moment. Then, against the in-memory reference
// archive fed the same records:
//   1. the reopened archive holds exactly the batches up to its applied
//      record (at least every acked one): each directory image (names, ids,
//      attributes, nlink, subtree totals, xattrs) and every file's bytes;
//   2. the rest of the batches applied to it give the model's final state.
import test from 'ava';
import { runKilledAfterApplied, seededKillPoint } from '../helpers/applied-child.js';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { applyBatches, APPLY_BATCHES } from '../helpers/apply-model.js';
import { MemoryArchive } from '../helpers/memory-archive.js';
import { assertSameAsModel } from '../helpers/objects-model.js';

const CHILD = fileURLToPath(new URL('../helpers/apply-crash-child.js', import.meta.url));
const SEEDS = [5, 17, 29, 43, 61, 77];

async function modelAt(seed: number, upTo: number): Promise<MemoryArchive> {
  const mem = new MemoryArchive();
  await mem.createVolume('v');
  for (const b of applyBatches(seed)) if (b.last <= upTo) await mem.ship('v', 1, b.frames);
  return mem;
}

for (const seed of SEEDS) {
  test.serial(`seed ${seed}: kill -9 of the archive while it applies batches of many records; reopened and continued, it equals the model`, async (t) => {
    const dir = mkdtempSync('/var/tmp/strata-apply-crash-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // Seeded kill time: after 1-30 "applied" lines, plus 0-30 ms (mid-batch, mid-fsync, or between batches).
    const { killAfterLines, extraMs } = seededKillPoint(seed, 30, 31);
    const { err, lines, acked } = await runKilledAfterApplied(CHILD, [dir, String(seed)], killAfterLines, extraMs, (kill) => t.teardown(kill));
    t.is(err, '', 'the child wrote nothing to stderr');
    t.log(`killed after ${lines} of ${APPLY_BATCHES} batches (+${extraMs} ms): last acked record ${acked}`);

    // 1. reopened where it was killed
    const store = ArchiveStore.open(dir, { packLimitBytes: 256 * 1024 });
    t.teardown(() => store.close());
    const applied = store.volumeState('v')?.appliedSeq ?? 0;
    t.true(applied >= acked, `applied ${applied} >= acked ${acked}`);
    const batches = applyBatches(seed);
    t.true(applied === 0 || batches.some((b) => b.last === applied), `applied ${applied} is a batch boundary`);
    await assertSameAsModel(t, store, await modelAt(seed, applied), 'reopened');

    // 2. the rest, with the same snapshot floors
    const side = new Database(join(dir, 'archive.db'));
    t.teardown(() => side.close());
    const setFloor = side.prepare('UPDATE volumes SET snapshot_floor = ? WHERE name = ?');
    let at = applied;
    for (const b of batches) {
      if (b.last <= at) continue;
      setFloor.run(b.pinned ? at : -1, 'v');
      at = store.applyBatch('v', 1, b.frames).appliedSeq;
    }
    const last = batches.at(-1)!.last;
    t.is(at, last);
    await assertSameAsModel(t, store, await modelAt(seed, last), 'continued');
  });
}
