// The swap's parts without FUSE (issue 13, docs/swap.md): the swap record and
// its crash points, the spare's checks, SOURCE parsing, and the tree writer
// (exact, resumable, reusing the live store's unchanged files).
import test from 'ava';
import * as fsp from 'node:fs/promises';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as native from '../../src/native/index.js';
import { BLOCK_SIZE } from '../../src/protocol/records.js';
import { reconcile } from '../../src/mirror/reconcile.js';
import { diffTree } from '../../src/mirror/tree-diff.js';
import { readSwapRecord, resolveLiveStore, swapRecordPath, writeSwapRecord, removeSwapRecordTemp, type SwapRecord } from '../../src/swap/record.js';
import { checkSpare, writeSpareState, emptySpare } from '../../src/swap/spare.js';
import { parseSource, formatSource } from '../../src/swap/source.js';
import { writeTree, type WriteProgress } from '../../src/swap/tree-writer.js';
import { MemoryArchive, ShippingSink, VOLUME } from '../helpers/memory-archive.js';
import { fillingXattrs } from '../helpers/model-tree.js';
import { ACL_DEFAULT, aclXattr } from '../helpers/acl.js';
import { newObjectId, writeObjectId } from '../../src/store/object-ids.js';
import { createLogger } from '../../src/log/logger.js';

const log = createLogger({ level: 'silent' });

const base = mkdtempSync(join(tmpdir(), 'strata-swap-unit-'));
test.after.always(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const dir = async (name: string): Promise<string> => {
  const d = join(base, `${name}-${n++}`);
  await fsp.mkdir(d, { recursive: true });
  return d;
};

test('SOURCE: the four kinds, and clear errors for anything else', (t) => {
  t.deepEqual(parseSource('snapshot:s-20260101-000000-abcdef'), { kind: 'snapshot', id: 's-20260101-000000-abcdef' });
  t.deepEqual(parseSource('archive:42'), { kind: 'archive-record', record: 42 });
  t.deepEqual(parseSource('archive:2026-01-02T03:04:05Z'), { kind: 'archive-time', time: '2026-01-02T03:04:05.000Z' });
  t.deepEqual(parseSource('checkpoint:nightly'), { kind: 'checkpoint', name: 'nightly' });
  t.is(formatSource(parseSource('archive:7')), 'archive:7');
  for (const bad of ['', 'snapshot', 'snapshot:', 'archive:yesterday-ish', 'tape:1']) t.throws(() => parseSource(bad), { message: /bad source/ });
});

function record(store: string, live: string, generation: number): SwapRecord {
  return { format: 1, store, live, spare: store, generation, at: new Date().toISOString(), source: 'test' };
}

const RECORD_JS = fileURLToPath(new URL('../../src/swap/record.js', import.meta.url));

test('the swap record: without one the store is live; a crash before the rename keeps the old record, after it the new one', async (t) => {
  const d = await dir('record');
  const store = join(d, 'store');
  t.is(await resolveLiveStore(store), store);
  t.is(swapRecordPath(store), join(d, '.store.strata-swap.json'));
  await writeSwapRecord(record(store, join(d, 'spare1'), 1));
  await t.throwsAsync(resolveLiveStore(store), { message: /does not exist/ }, 'a live store that is gone is never replaced by an empty one');
  await fsp.mkdir(join(d, 'spare1'));
  t.is(await resolveLiveStore(store), join(d, 'spare1'));
  // A process that dies between the durable temporary record and its rename.
  const script = `import(${JSON.stringify(RECORD_JS)}).then((m) => m.writeSwapRecord(${JSON.stringify(record(store, join(d, 'spare2'), 2))}))`;
  const crashed = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, STRATA_CRASH_AT: 'swap-record-temp' } });
  t.is(crashed.signal, 'SIGKILL');
  t.true(existsSync(`${swapRecordPath(store)}.tmp`));
  t.is((await readSwapRecord(store))?.generation, 1, 'the old record decides');
  t.is(await resolveLiveStore(store), join(d, 'spare1'));
  await fsp.mkdir(join(d, 'spare2'));
  await removeSwapRecordTemp(store);
  t.false(existsSync(`${swapRecordPath(store)}.tmp`));
  const done = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, STRATA_CRASH_AT: '' } });
  t.is(done.status, 0, done.stderr.toString());
  t.is(await resolveLiveStore(store), join(d, 'spare2'));
  await fsp.writeFile(swapRecordPath(store), '{"format":9}');
  await t.throwsAsync(readSwapRecord(store), { message: /unreadable swap record/ });
});

test('the spare: missing, not empty, overlapping, another source, too small are refused; the same source resumes', async (t) => {
  const d = await dir('spare');
  const live = join(d, 'store');
  await fsp.mkdir(live);
  const o = { store: live, live, source: 'archive:5', treeBytes: 1000 };
  await t.throwsAsync(checkSpare(join(d, 'nope'), o), { message: /does not exist/ });
  await t.throwsAsync(checkSpare(join(live, 'inner'), { ...o }), { message: /does not exist|overlaps/ });
  await fsp.mkdir(join(live, 'inner'));
  await t.throwsAsync(checkSpare(join(live, 'inner'), o), { message: /overlaps the live store/ });
  const spare = join(d, 'spare');
  await fsp.mkdir(spare);
  t.deepEqual(await checkSpare(spare, o), { spare, resume: false });
  await t.throwsAsync(checkSpare(spare, { ...o, treeBytes: 2 ** 60 }), { message: /bytes free, the tree needs/ });
  // A new disk mounted as the spare: its empty lost+found goes, one with something in it is a tree.
  await fsp.mkdir(join(spare, 'lost+found'), { mode: 0o700 });
  t.deepEqual(await checkSpare(spare, o), { spare, resume: false });
  t.deepEqual(await fsp.readdir(spare), []);
  await fsp.mkdir(join(spare, 'lost+found'), { mode: 0o700 });
  await fsp.writeFile(join(spare, 'lost+found', '#12'), 'x');
  await t.throwsAsync(checkSpare(spare, o), { message: /is not empty \(lost\+found\)/ });
  await fsp.rm(join(spare, 'lost+found'), { recursive: true });
  await fsp.writeFile(join(spare, 'x'), 'x');
  await t.throwsAsync(checkSpare(spare, o), { message: /is not empty \(x\)/ });
  await writeSpareState(spare, { format: 1, store: live, mountpoint: '/mnt', source: 'archive:5', state: 'writing', totals: { entries: 1, bytes: 1 }, updatedAt: '' });
  t.deepEqual(await checkSpare(spare, o), { spare, resume: true });
  await t.throwsAsync(checkSpare(spare, { ...o, source: 'archive:6' }), { message: /unfinished tree of archive:5, not archive:6/ });
  await t.throwsAsync(checkSpare(spare, { ...o, store: join(d, 'other') }), { message: /belongs to the store/ });
  await writeSpareState(spare, { format: 1, store: live, mountpoint: '/mnt', source: 'pre', state: 'previous', totals: { entries: 0, bytes: 0 }, updatedAt: '' });
  await t.throwsAsync(checkSpare(spare, o), { message: /tree from before the last swap/ });
  await emptySpare(spare);
  t.deepEqual(await fsp.readdir(join(spare, '.strata')), []);
  t.deepEqual(await checkSpare(spare, o), { spare, resume: false });
});

const T = { sec: 1_700_000_000, nsec: 123_456_789 };

async function buildTree(root: string): Promise<void> {
  await fsp.mkdir(join(root, 'a/sub/deeper'), { recursive: true });
  await fsp.mkdir(join(root, 'b'));
  await fsp.writeFile(join(root, 'a/f1'), 'hello\n');
  const big = Buffer.alloc(20 * BLOCK_SIZE + 1234);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i + 1, i);
  await fsp.writeFile(join(root, 'big'), big);
  const sparse = await fsp.open(join(root, 'sparse'), 'w');
  await sparse.write(Buffer.alloc(1000, 1), 0, 1000, 0);
  await sparse.write(Buffer.alloc(1000, 2), 0, 1000, 60 * BLOCK_SIZE);
  await sparse.close();
  for (let i = 0; i < 12; i++) await fsp.writeFile(join(root, `a/sub/f${i}`), `file ${i}\n`.repeat(i * 50));
  await fsp.writeFile(join(root, 'a/sub/deeper/f2'), Buffer.alloc(3 * BLOCK_SIZE + 100, 7));
  await fsp.symlink('a/f1', join(root, 'link'));
  await native.mknod(join(root, 'b/fifo'), 0o010644, 0);
  await fsp.link(join(root, 'a/f1'), join(root, 'b/f1-hard'));
  await fsp.link(join(root, 'a/f1'), join(root, 'a/sub/deeper/f1-hard2'));
  await native.setxattr(join(root, 'a/f1'), 'user.color', Buffer.from('blue'), 0);
  await native.setxattr(join(root, 'a'), 'user.dir', Buffer.from([0, 1, 2, 255]), 0);
  await fsp.chown(join(root, 'a/sub/f3'), 1234, 5678);
  await fsp.chmod(join(root, 'a/sub/f3'), 0o640);
  await fsp.chmod(join(root, 'b'), 0o2750);
  let k = 0;
  for (const p of ['a/sub/deeper/f2', 'a/sub/deeper', 'a/sub/f3', 'a/sub', 'a/f1', 'big', 'sparse', 'link', 'b/fifo', 'a', 'b', '.']) {
    await native.utimens(join(root, p), { sec: T.sec + k, nsec: T.nsec + k }, { sec: T.sec + k, nsec: T.nsec + k }, { noFollow: true });
    k++;
  }
}

/** A live store mirrored into an in-memory archive (ids on every object), as a mirrored mount's is. */
async function mirrored(): Promise<{ live: string; client: MemoryArchive }> {
  const live = await dir('live');
  await buildTree(live);
  const client = new MemoryArchive();
  await client.createVolume(VOLUME);
  const sink = new ShippingSink(client, VOLUME);
  await reconcile({ store: live, archive: client, volume: VOLUME, sink });
  await sink.ship();
  return { live, client };
}

const progress = (): WriteProgress => ({ entries: 0, bytes: 0, kept: 0, copiedBytes: 0, fetchedBytes: 0, logBytes: 0 });

test('the tree writer builds the archive\'s tree exactly (fetching everything when nothing is local)', async (t) => {
  const { client } = await mirrored();
  const spare = await dir('spare');
  const p = progress();
  await writeTree({ client, volume: VOLUME, spare, live: null, progress: p, log });
  t.deepEqual((await diffTree({ store: spare, archive: client, volume: VOLUME })).differences, []);
  t.is(p.copiedBytes, 0);
  t.true(p.fetchedBytes > 20 * BLOCK_SIZE);
  const st = await fsp.stat(join(spare, 'sparse'));
  t.true(st.blocks * 512 < 60 * BLOCK_SIZE, 'holes stay holes');
});

test('the tree writer copies unchanged files from the live store and fetches only the blocks that differ', async (t) => {
  const { live, client } = await mirrored();
  // The live file changed after the point (same object id): two blocks differ.
  const fh = await fsp.open(join(live, 'big'), 'r+');
  await fh.write(Buffer.alloc(10, 0xee), 0, 10, 3 * BLOCK_SIZE + 5);
  await fh.write(Buffer.alloc(10, 0xee), 0, 10, 9 * BLOCK_SIZE);
  await fh.close();
  const spare = await dir('spare');
  const p = progress();
  await writeTree({ client, volume: VOLUME, spare, live, progress: p, log });
  t.deepEqual((await diffTree({ store: spare, archive: client, volume: VOLUME })).differences, []);
  t.true(p.copiedBytes > 20 * BLOCK_SIZE);
  t.is(p.fetchedBytes, 2 * BLOCK_SIZE, 'only the two changed blocks are fetched');
});

test('an interrupted write resumes: what is in place stays, leftovers go, the result is exact', async (t) => {
  const { live, client } = await mirrored();
  const spare = await dir('spare');
  const first = progress();
  let calls = 0;
  await t.throwsAsync(writeTree({ client, volume: VOLUME, spare, live, progress: first, log, parallel: 1, cancelled: () => ++calls > 8 }), { message: /cancelled/ });
  // A leftover temporary object, as a kill -9 leaves it.
  await fsp.writeFile(join(spare, '.strata-swap.0123456789abcdef0123456789abcdef'), 'half');
  const again = progress();
  await writeTree({ client, volume: VOLUME, spare, live, progress: again, log });
  t.true(again.kept > 0, `kept ${again.kept}`);
  t.deepEqual((await diffTree({ store: spare, archive: client, volume: VOLUME })).differences, []);
  t.deepEqual((await fsp.readdir(spare)).filter((x) => x.startsWith('.strata-swap.')), []);
  // A spare changed outside strata is refused, not overwritten.
  await fsp.rm(join(spare, 'a/f1'));
  await fsp.writeFile(join(spare, 'a/f1'), 'intruder');
  await t.throwsAsync(writeTree({ client, volume: VOLUME, spare, live, progress: progress(), log }), { message: /changed outside strata/ });
});

// The spare's objects get their id first, after the ACLs they inherited are dropped: where ext4
// puts an attribute (the inode, or its block) depends on the order. Until 2026-12-06 a directory
// made in a directory with a default ACL took the inherited ACL in its inode, its id went to the
// block, and a directory whose xattrs had filled its space on the live store did not fit: ENOSPC
// (swap-model, seed 1004). Runs on ext4, whose xattr space is bounded (else skipped, saying why).
const swapFsType = spawnSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).stdout.trim();
const fillTitle = 'the tree writer builds a directory whose xattrs filled its space, inside a directory with a default ACL';
(swapFsType === 'ext2/ext3' ? test : test.skip)(swapFsType === 'ext2/ext3' ? fillTitle : `${fillTitle} (skipped: ${tmpdir()} is ${swapFsType}, not ext4)`, async (t) => {
  const live = await dir('live');
  await fsp.mkdir(join(live, 'p/full'), { recursive: true });
  // As on a primary's store: the id first, then what a program set.
  await writeObjectId(join(live, 'p/full'), newObjectId(), native.AT_FDCWD);
  const xattrs = fillingXattrs('dir');
  for (const [name, value] of xattrs) await native.setxattr(join(live, 'p/full'), name, value, 0);
  await native.setxattr(join(live, 'p'), ACL_DEFAULT, aclXattr({ user: 7, group: 5, other: 0 }), 0);
  const client = new MemoryArchive();
  await client.createVolume(VOLUME);
  const sink = new ShippingSink(client, VOLUME);
  await reconcile({ store: live, archive: client, volume: VOLUME, sink });
  await sink.ship();
  const spare = await dir('spare');
  await writeTree({ client, volume: VOLUME, spare, live: null, progress: progress(), log });
  t.deepEqual((await diffTree({ store: spare, archive: client, volume: VOLUME })).differences, []);
  t.is((await native.listxattr(join(spare, 'p/full'))).filter((x) => x.startsWith('user.')).length, xattrs.length);
});
