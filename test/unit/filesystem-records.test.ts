// The filesystem core with a recording ChangeSink (no FUSE, no archive): every
// mutating op is recorded after it is applied, with stable object ids; ids
// survive renames and are shared by hard links; strata's private xattrs are
// hidden and refused; the journal bound's ENOSPC fails an op before it
// touches the store; sync mode waits for the ack before answering.
//
// The tests' own checks use store-relative paths through the working
// directory (test/helpers/core-store.ts), so this file uses one store and
// runs its tests serially.
import test from 'ava';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Filesystem, type Caller } from '../../src/core/filesystem.js';
import { enterTempStore } from '../helpers/core-store.js';
import { FsError } from '../../src/errors/errno.js';
import type { ChangeSink } from '../../src/ports/change-sink.js';
import { MAX_WRITE_BYTES, ROOT_ID, isObjectId, type NewRecord } from '../../src/protocol/records.js';
import { ID_XATTR, readObjectId, writeObjectId } from '../../src/store/object-ids.js';

class RecordingSink implements ChangeSink {
  records: NewRecord[] = [];
  full = false;
  /** When set, committed() waits for release(). */
  hold: { resolve: () => void; promise: Promise<void> } | null = null;
  barriers = 0;
  async admit(): Promise<void> {
    if (this.full) throw new FsError('ENOSPC', 'journal full');
  }
  append(rec: NewRecord): number {
    this.records.push(rec);
    return this.records.length;
  }
  committed(): Promise<void> {
    return this.hold?.promise ?? Promise.resolve();
  }
  async barrier(): Promise<void> {
    this.barriers++;
  }
  take(): NewRecord[] {
    const r = this.records;
    this.records = [];
    return r;
  }
}

const { store, leave } = await enterTempStore('strata-records-');
await writeObjectId('.', ROOT_ID, store.dir.fd);
const sink = new RecordingSink();
const core = new Filesystem(store, sink);
const ROOT: Caller = { uid: 0, gid: 0, pid: process.pid };

test.after.always(leave);

test.serial('create, write, release: a create with a fresh id, the write with its bytes, then the final attributes', async (t) => {
  sink.take();
  const res = await core.create('/f', 0o644, 0o1 /* O_WRONLY */, ROOT);
  const id = await readObjectId('f', store.dir.fd);
  t.true(isObjectId(id));
  await core.write(res.handle, Buffer.from('hello world'), 11, 0);
  await core.release(res.handle);
  const recs = sink.take();
  t.deepEqual(recs.map((r) => r.op), ['create', 'write', 'setattr']);
  t.like(recs[0], { op: 'create', parent: ROOT_ID, name: 'f', id });
  t.like(recs[1], { op: 'write', id, offset: 0 });
  t.is((recs[1] as { data: Buffer }).data.toString(), 'hello world');
  t.like(recs[2], { op: 'setattr', id });
  t.is((recs[2] as { attrs: { size: number } }).attrs.size, 11);
});

test.serial('an O_APPEND open leaves the store descriptor without O_APPEND; an appending write lands at the end another handle left and is recorded there, a plain one where it says', async (t) => {
  const made = await core.create('/appended', 0o644, 0o2 | 0o2000 /* O_RDWR | O_APPEND */, ROOT);
  const id = await readObjectId('appended', store.dir.fd);
  await core.write(made.handle, Buffer.from('0123456789'), 10, 0, undefined, undefined, true);
  const other = await core.open('/appended', 0o2 /* O_RDWR */, ROOT);
  await core.setattr({ handle: other.handle }, { size: 4 });
  sink.take();
  // The kernel's idea of the size (10) is stale: the bytes go to 4, and the record says 4.
  t.is(await core.write(made.handle, Buffer.from('ab'), 2, 10, undefined, undefined, true), 2);
  // Without `append` (the program cleared O_APPEND with fcntl) a write goes where it says.
  t.is(await core.write(made.handle, Buffer.from('Z'), 1, 0), 1);
  t.is(await fsp.readFile('appended', 'latin1'), 'Z123ab');
  const recs = sink.take();
  t.like(recs[0], { op: 'write', id, offset: 4 });
  t.like(recs[1], { op: 'write', id, offset: 0 });
  await core.release(other.handle);
  await core.release(made.handle);
});

test.serial('a write the FUSE thread applied (journalled direct write) is recorded at once as a write would be, split at 1 MiB; flush then records the attributes', async (t) => {
  const res = await core.create('/direct', 0o644, 0o2 /* O_RDWR */, ROOT);
  const id = await readObjectId('direct', store.dir.fd);
  sink.take();
  // The bytes are in the store already (as the FUSE thread's pwrite leaves them).
  const data = Buffer.alloc(MAX_WRITE_BYTES + 10, 7);
  await fsp.writeFile('direct', data);
  t.true(core.recordDirectWrite(res.handle, 0, data));
  // Synchronous: the records are there before anything else can run.
  const recs = sink.take();
  t.deepEqual(recs.map((r) => r.op), ['write', 'write']);
  t.like(recs[0], { op: 'write', id, offset: 0 });
  t.like(recs[1], { op: 'write', id, offset: MAX_WRITE_BYTES });
  t.is((recs[1] as { data: Buffer }).data.length, 10);
  await core.flush(res.handle);
  const after = sink.take();
  t.deepEqual(after.map((r) => r.op), ['setattr'], 'the handle was marked dirty');
  t.is((after[0] as { attrs: { size: number } }).attrs.size, MAX_WRITE_BYTES + 10);
  await core.release(res.handle);
  t.false(core.recordDirectWrite(res.handle, 0, data), 'a released handle records nothing');
  t.is(sink.take().length, 0);
  await fsp.unlink('direct');
});

test.serial('rename keeps the id; a hard link names the same id; unlink and rmdir name the parent', async (t) => {
  await core.mkdir('/d', 0o755, ROOT);
  const dirId = await readObjectId('d', store.dir.fd);
  const fileId = await readObjectId('f', store.dir.fd);
  sink.take();
  await core.rename('/f', '/d/g');
  t.is(await readObjectId('d/g', store.dir.fd), fileId, 'the id travels with the object');
  await core.link('/d/g', '/h');
  await core.unlink('/h');
  await core.mkdir('/d/e', 0o700, ROOT);
  await core.rmdir('/d/e');
  const recs = sink.take();
  t.deepEqual(recs.map((r) => r.op), ['rename', 'link', 'unlink', 'create', 'rmdir']);
  t.like(recs[0], { parent: ROOT_ID, name: 'f', newParent: dirId, newName: 'g' });
  t.like(recs[1], { parent: ROOT_ID, name: 'h', id: fileId });
  t.like(recs[2], { parent: ROOT_ID, name: 'h' });
  t.like(recs[4], { parent: dirId, name: 'e' });
  // Namespace records carry the parent's new mtime (exact ns).
  const st = await fsp.lstat('d', { bigint: true });
  const m = (recs[4] as unknown as { parentMtime: [number, number] }).parentMtime;
  t.is(BigInt(m[0]) * 1_000_000_000n + BigInt(m[1]), st.mtimeNs);
});

test.serial('symlinks and fifos are created with their target and type; setattr records all attributes once', async (t) => {
  sink.take();
  await core.symlink('d/g', '/s', ROOT);
  await core.mknod('/p', 0o10644, 0, ROOT);
  await core.setattr({ path: '/p' }, { mode: 0o600, uid: 12, gid: 34, mtime: { sec: 1000, nsec: 5 } });
  const recs = sink.take();
  t.deepEqual(recs.map((r) => r.op), ['create', 'create', 'setattr']);
  t.like(recs[0], { name: 's', target: 'd/g' });
  t.like(recs[2], { op: 'setattr', attrs: { mode: 0o10600, uid: 12, gid: 34, mtime: [1000, 5] } });
});

test.serial("strata's own xattrs are hidden and cannot be set or removed through the core", async (t) => {
  await core.setxattr('/s', 'user.k', Buffer.from('v'), 0).catch(() => {}); // symlinks refuse user.*: fine either way
  await core.setxattr('/d', 'user.k', Buffer.from('v'), 0);
  t.deepEqual(await core.listxattr('/d'), ['user.k']);
  t.is(((await core.getxattr("/d", ID_XATTR).catch((e: FsError) => e)) as FsError).code, "ENODATA");
  t.is((await core.setxattr('/d', ID_XATTR, Buffer.from('0'.repeat(32)), 0).catch((e: FsError) => e) as FsError).code, 'EPERM');
  t.is((await core.removexattr('/d', ID_XATTR).catch((e: FsError) => e) as FsError).code, 'EPERM');
  t.true(isObjectId(await readObjectId('d', store.dir.fd)), 'the id is still there');
  const recs = sink.take().filter((r) => r.op === 'setxattr');
  t.true(recs.some((r) => r.op === 'setxattr' && r.name === 'user.k'));
});

test.serial('journal full (ENOSPC policy): the op fails before it touches the store', async (t) => {
  sink.take();
  sink.full = true;
  try {
    t.is((await core.mkdir('/nospace', 0o755, ROOT).catch((e: FsError) => e) as FsError).code, 'ENOSPC');
    t.false(existsSync('nospace'));
    const res = await core.open('/d/g', 0o2 /* O_RDWR */);
    t.is((await core.write(res.handle, Buffer.from('zz'), 2, 0).catch((e: FsError) => e) as FsError).code, 'ENOSPC');
    sink.full = false;
    await core.release(res.handle);
    t.is(await fsp.readFile('d/g', 'utf8'), 'hello world', 'the failed write changed nothing');
  } finally {
    sink.full = false;
  }
  t.deepEqual(sink.take(), []);
});

test.serial('sync mode: an op answers only once its record is committed; fsync waits for the barrier', async (t) => {
  let release!: () => void;
  sink.hold = { resolve: () => release(), promise: new Promise<void>((r) => { release = r; }) };
  let done = false;
  const p = core.mkdir('/held', 0o755, ROOT).then(() => { done = true; });
  await new Promise((r) => setTimeout(r, 50));
  t.false(done, 'not answered before the ack');
  t.true(existsSync('held'), 'but applied locally');
  sink.hold.resolve();
  await p;
  t.true(done);
  sink.hold = null;
  const res = await core.open('/d/g', 0o2);
  await core.write(res.handle, Buffer.from('HE'), 2, 0);
  const before = sink.barriers;
  await core.fsync(res.handle, false);
  t.is(sink.barriers, before + 1);
  const recs = sink.take();
  t.deepEqual(recs.slice(-2).map((r) => r.op), ['write', 'setattr'], 'fsync records the written file\'s attributes first');
  await core.release(res.handle);
});

test.serial('fsync of a directory waits for the barrier too (a rename made durable by it, I1)', async (t) => {
  await core.mkdir('/fsd', 0o755, ROOT);
  const dir = await core.opendir('/fsd');
  const before = sink.barriers;
  await core.fsyncdir(dir);
  t.is(sink.barriers, before + 1);
  await core.releasedir(dir);
});

test.serial('O_TRUNC on open is recorded as the new attributes', async (t) => {
  sink.take();
  const res = await core.open('/d/g', 0o1001 /* O_WRONLY|O_TRUNC */);
  await core.release(res.handle);
  const recs = sink.take();
  t.like(recs[0], { op: 'setattr', attrs: { size: 0 } });
});

test.serial('a write: in the store first, answered once its record is committed; one the store refuses (EFBIG) records nothing', async (t) => {
  const res = await core.create('/store-first', 0o644, 0o2 /* O_RDWR */, ROOT);
  await core.write(res.handle, Buffer.from('0123'), 4, 0);
  sink.take();
  let release!: () => void;
  const promise = new Promise<void>((resolve) => { release = resolve; });
  sink.hold = { resolve: release, promise };
  let answered = false;
  const writing = core.write(res.handle, Buffer.from('abcdefgh'), 8, 2).then((n) => { answered = true; return n; });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(await fsp.readFile('store-first', 'utf8'), '01abcdefgh', 'applied locally');
  t.false(answered, 'not answered before the ack');
  t.deepEqual(sink.records.map((r) => r.op), ['write']);
  sink.hold = null;
  release();
  t.is(await writing, 8);
  sink.take();
  // Past the largest file ext4 keeps.
  const err = await t.throwsAsync(core.write(res.handle, Buffer.from('zz'), 2, 2 ** 50));
  t.is((err as NodeJS.ErrnoException).code, 'EFBIG');
  t.deepEqual(sink.take(), [], 'nothing recorded');
  await core.release(res.handle);
});
