// The child of test/fault/archive-objects-crash.test.ts: applies the seeded
// batches of objectsBatches() to the archive in DIR (on object storage, small
// packs so they roll over) from where it stands, taking a metadata point after
// some of them, until killed (-9) or done. Prints "applied SEQ" / "point SEQ".
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { syncPoint } from '../../src/archive/object-sync.js';
import { readObjectsConfig, S3PackStore } from '../../src/archive/s3-packs.js';
import { objectsBatches, OBJECTS_PACK_LIMIT } from './objects-model.js';

const [dir, seedText] = process.argv.slice(2);
const seed = Number(seedText);
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const store = ArchiveStore.open(dir!, { packLimitBytes: OBJECTS_PACK_LIMIT });
const packs = S3PackStore.open(readObjectsConfig(dir!)!);
store.createVolume('v');
let applied = store.volumeState('v')!.appliedSeq;
for (const b of objectsBatches(seed)) {
  if (b.last <= applied) continue;
  applied = store.applyBatch('v', 1, b.frames).appliedSeq;
  process.stdout.write(`applied ${applied}\n`);
  if (b.point) {
    syncPoint(dir!, packs);
    process.stdout.write(`point ${applied}\n`);
  }
}
store.close();
packs.close();
