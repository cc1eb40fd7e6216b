// The archive store's behavioural suite (test/helpers/archive-store-suite.ts)
// on the embedded default: packs in the archive directory.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { archiveStoreSuite } from '../helpers/archive-store-suite.js';

archiveStoreSuite({
  name: 'local',
  open: (dir, options) => ArchiveStore.open(dir, options),
  packSizes: (dir) => new Map(readdirSync(join(dir, 'packs')).map((f) => [Number(f.slice(0, -5)), statSync(join(dir, 'packs', f)).size])),
  corrupt: (dir, pack, offset) => {
    const file = join(dir, 'packs', `${String(pack).padStart(6, '0')}.pack`);
    const bytes = readFileSync(file);
    bytes[offset]! ^= 0x01;
    writeFileSync(file, bytes);
  },
});
