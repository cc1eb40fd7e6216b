// KNOWN DEFECT (found 2026-12-06, not fixed yet; see the stop note): an object
// whose extended attributes fill ext4's xattr space on the primary cannot be
// restored, because the restore's own marks are xattrs on the same inode (a
// pending directory's trusted.strata.pending). Materialising its parent then
// fails with ENOSPC, so the parent cannot be listed and the background
// restore waits forever. `test.failing`: ava reports it as a known failure
// while it fails, and as an error once a fix makes it pass (then make it a
// plain test).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as native from '../../src/native/index.js';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { ID_XATTR } from '../../src/store/object-ids.js';
import { ROOT_ID, type Attrs } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
const fsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const onExt4 = fsType === 'ext2/ext3';
const title = 'a directory whose xattrs fill ext4\'s xattr space (with strata\'s id, as on the primary) is restored with them, and its parent can be listed';

/** The user xattrs that, with strata's id, fill a new ext4 directory's xattr space (as a program on the primary could). */
function fillingXattrs(): [string, Buffer][] {
  const d = mkdtempSync(join(tmpdir(), 'strata-xattr-space-'));
  try {
    const p = join(d, 'dir');
    spawnSync('mkdir', [p]);
    writeFileSync(join(d, 'x'), '');
    const out: [string, Buffer][] = [];
    const set = (name: string, value: Buffer): boolean => spawnSync('setfattr', ['-n', name, '-v', `0x${value.toString('hex')}`, p]).status === 0;
    if (!set(ID_XATTR, Buffer.from('f'.repeat(32)))) throw new Error('cannot set trusted xattrs here');
    for (const size of [200, 50, 10, 1]) {
      for (let i = 0; i < 100; i++) {
        const name = `user.s${size}_${i}`;
        const value = Buffer.alloc(size, 0x61 + (i % 26));
        if (!set(name, value)) break;
        out.push([name, value]);
      }
    }
    return out;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

(onExt4 ? test.failing : test.skip)(onExt4 ? title : `${title} (skipped: ${tmpdir()} is ${fsType}, not ext4)`, async (t) => {
  const entered = await enterTempStore('strata-restore-xattr-space-');
  t.teardown(() => entered.leave());
  const xattrs = fillingXattrs();
  t.true(xattrs.length > 5);
  const dir: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 0, atime: [1000, 1], mtime: [2000, 2], rdev: 0 };
  const a = new MemoryArchive();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const top = '1'.repeat(32);
  const full = '2'.repeat(32);
  await s.append({ op: 'create', parent: ROOT_ID, name: 'top', id: top, attrs: dir, parentMtime: [5, 0] });
  await s.append({ op: 'create', parent: top, name: 'full', id: full, attrs: dir, parentMtime: [5, 0] });
  for (const [name, value] of xattrs) await s.append({ op: 'setxattr', id: full, name, value });
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const fs = new Filesystem(entered.store, null, new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log }));
  t.deepEqual((await fs.readdir('/top')).map((e) => e.name).filter((n) => n === 'full'), ['full']);
  t.is((await native.listxattr('top/full')).filter((n) => n.startsWith('user.')).length, xattrs.length);
});
