// A program cuts a file to size 0 while the background restore's fetch of its
// bytes is on its way (seen by the recovery model test in CI: after a
// truncate to 0 the file showed the archive's mtime). The fetch used to write
// its old bytes, and put the archive's times back, over what the program did
// after the cut; now the cut runs under the file's lock and a fetch whose map
// was discarded writes nothing (RestoreHooks.cut). Each case holds the fetch
// at the archive, cuts, writes new bytes through the core, then lets the
// fetch arrive: the file must hold exactly the program's bytes, with the
// program's mtime, and be local.
import test from 'ava';
import { open, readFile, stat } from 'node:fs/promises';
import { constants as C } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { enterTempStore, type EnteredStore } from '../helpers/core-store.js';
import { Filesystem } from '../../src/core/filesystem.js';
import { OnDemandRestore } from '../../src/restore/on-demand.js';
import { prepareRecovery } from '../../src/restore/recover.js';
import { BLOCK_SIZE, ROOT_ID, type Attrs, type ObjectId } from '../../src/protocol/records.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });
const HOWS = ['truncate by name', 'ftruncate through a handle', 'an O_TRUNC open'] as const;
const nameOf = (how: string): string => `f-${how.replace(/\W+/g, '-')}`;
let entered: EnteredStore;
let r: Awaited<ReturnType<typeof recovered>>;
test.before(async () => {
  entered = await enterTempStore('strata-restore-cut-');
  // One recovered volume, a file for each case.
  r = await recovered(HOWS.map(nameOf));
});
test.after.always(() => entered.leave());

/** Holds every range read until released; counts the reads begun. */
class Held extends MemoryArchive {
  begun = 0;
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  hold(): void {
    this.gate = new Promise((resolve) => { this.open = resolve; });
  }
  release(): void {
    this.open?.();
    this.gate = null;
  }
  override async readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer> {
    this.begun++;
    if (this.gate !== null) await this.gate;
    return super.readRange(volume, id, offset, length);
  }
}

const ARCHIVE_MTIME_NS = 3_000_000_006n;
const file = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: [1, 0], mtime: [3, 6], rdev: 0 });

async function recovered(names: string[]): Promise<{ a: Held; h: OnDemandRestore; core: Filesystem; ids: Map<string, ObjectId> }> {
  const a = new Held();
  await a.createVolume(VOLUME);
  const s = new ShippingSink(a, VOLUME);
  const ids = new Map<string, ObjectId>();
  for (const [k, name] of names.entries()) {
    const id = (k + 1).toString(16).padStart(32, 'c');
    ids.set(name, id);
    await s.append({ op: 'create', parent: ROOT_ID, name, id, attrs: file(0), parentMtime: [2, 0] });
    await s.append({ op: 'write', id, offset: 0, data: Buffer.alloc(8 * BLOCK_SIZE, 7) });
    await s.append({ op: 'setattr', id, attrs: file(8 * BLOCK_SIZE) });
  }
  await s.ship();
  await prepareRecovery({ client: a, volume: VOLUME, depth: 1, dir: entered.store.dir, privateDir: entered.store.privateDir, log });
  const h = new OnDemandRestore({ client: a, volume: VOLUME, store: entered.store, privateDir: entered.store.privateDir, log });
  return { a, h, core: new Filesystem(entered.store, null, h), ids };
}

const NEW = Buffer.from('the program\'s bytes after the cut\n');

for (const how of HOWS) {
  test.serial(`a cut to size 0 (${how}) while the background fetch of the file is on its way: the fetch writes nothing over the program's bytes or times`, async (t) => {
    const name = nameOf(how);
    const { a, h, core, ids } = r;
    const id = ids.get(name)!;
    t.true(await h.isRemote(id), 'a stub before the test');
    // The background restore starts on the file's bytes; the archive holds them.
    a.hold();
    const bg = await open(name, 'r');
    const background = h.restoreFileData(id, bg.fd);
    while (a.begun === 0) await sleep(5);
    // The program cuts the file and writes new bytes.
    const before = BigInt(Date.now() - 1000) * 1_000_000n;
    let handle: number;
    if (how === 'an O_TRUNC open') {
      handle = (await core.open(`/${name}`, C.O_WRONLY | C.O_TRUNC)).handle;
    } else if (how === 'ftruncate through a handle') {
      handle = (await core.open(`/${name}`, C.O_WRONLY)).handle;
      await core.setattr({ handle }, { size: 0 });
    } else {
      await core.setattr({ path: `/${name}` }, { size: 0 });
      handle = (await core.open(`/${name}`, C.O_WRONLY)).handle;
    }
    t.is(await core.write(handle, NEW, NEW.length, 0), NEW.length);
    await core.release(handle);
    // Now the archive's bytes arrive.
    a.release();
    await background;
    await bg.close();
    t.deepEqual(await readFile(name), NEW, 'exactly the program\'s bytes: none of the archive\'s written over or after them');
    const st = await stat(name, { bigint: true });
    t.true(st.mtimeNs > before, `the program's mtime, not the archive's (${st.mtimeNs} vs ${ARCHIVE_MTIME_NS})`);
    t.false(await h.isRemote(id), 'local: no map is left or recreated');
    t.is((await core.getattr(`/${name}`)).size, BigInt(NEW.length));
  });
}
