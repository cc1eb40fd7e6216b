// Model-based crash test of the archive on object storage (a real radosgw):
// a child process applies seeded batches (small packs that roll over, a
// metadata point after some batches) and is killed -9 at a seeded random
// moment — during a batch, a seal, an upload or the deletion of uploaded packs.
// Then, against the in-memory reference archive fed the same records:
//   1. the directory reopened shows exactly the batches it acked, every byte
//      readable (local or from the bucket);
//   2. a rebuild from the bucket into an empty directory shows exactly the
//      state of its metadata point, never a later or a torn one;
//   3. the rest of the batches applied to the reopened directory (and another
//      point) give the model's final state: nothing in the bucket was clobbered.
import test from 'ava';
import { runKilledAfterApplied, seededKillPoint } from '../helpers/applied-child.js';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { rebuildFromObjects, syncPoint } from '../../src/archive/object-sync.js';
import { S3PackStore, writeObjectsConfig } from '../../src/archive/s3-packs.js';
import { assertSameAsModel, modelAt, objectsBatches, OBJECTS_PACK_LIMIT } from '../helpers/objects-model.js';
import { objectsConfigFor, s3Engine } from '../helpers/s3-engine.js';

const CHILD = fileURLToPath(new URL('../helpers/objects-crash-child.js', import.meta.url));
const engine = s3Engine();
const SEEDS = [11, 23, 37, 41];

if (typeof engine === 'string') {
  console.error(`archive-objects-crash: skipped: ${engine}`);
  test.skip(`object-storage crash test skipped: ${engine}`, () => {});
} else {
  for (const seed of SEEDS) {
    test.serial(`seed ${seed}: kill -9 of a writer on object storage at a random moment; reopened, rebuilt from the bucket and continued, the archive equals the model`, async (t) => {
      const config = objectsConfigFor(engine);
      const dir = mkdtempSync('/var/tmp/strata-objects-crash-');
      const fresh = mkdtempSync('/var/tmp/strata-objects-rebuilt-');
      t.teardown(() => {
        rmSync(dir, { recursive: true, force: true });
        rmSync(fresh, { recursive: true, force: true });
      });
      writeObjectsConfig(dir, config);
      // Seeded kill time: after 1-40 "applied" lines, plus 0-150 ms.
      const { killAfterLines, extraMs } = seededKillPoint(seed, 40, 150);
      const { out, err, lines, acked } = await runKilledAfterApplied(CHILD, [dir, String(seed)], killAfterLines, extraMs);
      const pointed = Math.max(-1, ...out.split('\n').filter((l) => l.startsWith('point')).map((l) => Number(l.split(' ')[1])));
      t.log(`killed after ${lines} batches (+${extraMs} ms): last acked record ${acked}, last completed metadata point ${pointed}${err ? `; stderr: ${err.slice(0, 300)}` : ''}`);

      // 1. reopened where it crashed
      const store = ArchiveStore.open(dir, { packLimitBytes: OBJECTS_PACK_LIMIT });
      t.teardown(() => store.close());
      const applied = store.volumeState('v')?.appliedSeq ?? 0;
      t.true(applied >= acked, `applied ${applied} >= acked ${acked}`);
      await assertSameAsModel(t, store, await modelAt(seed, applied), 'reopened');

      // 2. rebuilt from the bucket: exactly a metadata point's state, at least the last completed one
      const packs = S3PackStore.open(config);
      t.teardown(() => packs.close());
      writeObjectsConfig(fresh, config);
      mkdirSync(join(fresh, 'packs'));
      const r = rebuildFromObjects(fresh, packs);
      if (pointed < 0 && r === null) {
        t.log('no metadata point reached the bucket before the kill');
      } else {
        t.truthy(r, 'a metadata copy is in the bucket');
        const rebuilt = ArchiveStore.open(fresh);
        const at = rebuilt.volumeState('v')!.appliedSeq;
        t.true(at >= pointed && at <= applied, `rebuilt at ${at}, last point ${pointed}, applied ${applied}`);
        await assertSameAsModel(t, rebuilt, await modelAt(seed, at), 'rebuilt');
        rebuilt.close();
      }

      // 3. the rest, on the reopened directory, and a point
      const all = objectsBatches(seed);
      for (const b of all) if (b.last > applied) store.applyBatch('v', 1, b.frames);
      syncPoint(dir, packs);
      const last = all.at(-1)!.last;
      t.is(store.volumeState('v')!.appliedSeq, last);
      await assertSameAsModel(t, store, await modelAt(seed, last), 'continued');
    });
  }
}
