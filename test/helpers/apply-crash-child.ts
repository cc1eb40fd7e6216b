// The child of test/fault/archive-apply-crash.test.ts: applies the seeded
// batches of applyBatches() to the archive in DIR from where it stands (a
// `pinned` batch under a snapshot floor at the volume's applied record, the
// others with none), until killed (-9) or done. Prints "applied SEQ" after
// each batch's applyBatch returned.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { applyBatches } from './apply-model.js';

const [dir, seedText] = process.argv.slice(2);
const store = ArchiveStore.open(dir!, { packLimitBytes: 256 * 1024 });
store.createVolume('v');
const side = new Database(join(dir!, 'archive.db'));
side.pragma('busy_timeout = 10000');
const setFloor = side.prepare('UPDATE volumes SET snapshot_floor = ? WHERE name = ?');
let applied = store.volumeState('v')!.appliedSeq;
for (const b of applyBatches(Number(seedText))) {
  if (b.last <= applied) continue;
  setFloor.run(b.pinned ? applied : -1, 'v');
  applied = store.applyBatch('v', 1, b.frames).appliedSeq;
  process.stdout.write(`applied ${applied}\n`);
}
side.close();
store.close();
