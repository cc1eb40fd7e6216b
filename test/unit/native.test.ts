import test, { type ExecutionContext } from 'ava';
import { execFile as execFileCb } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { differingBlocks, localBlocksWhole } from '../../src/mirror/tree-blocks.js';
import * as native from '../../src/native/index.js';
import { StoreDir } from '../../src/store/store-dir.js';
import {
  cloneFile,
  copyRange,
  DirentType,
  fallocate,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  futimens,
  getxattr,
  isNativeError,
  listExtents,
  listxattr,
  makedev,
  mknod,
  type NativeError,
  prepareObject,
  cloneTo,
  readXattrs,
  sha256Blocks,
  finishFile,
  readFileQuiet,
  readdirIno,
  scanDir,
  removexattr,
  setxattr,
  utimens,
  XATTR_CREATE,
  XATTR_REPLACE,
} from '../../src/native/index.js';

const execFile = promisify(execFileCb);
const KiB = 1024;
const MiB = 1024 * KiB;
const EXT4_SUPER_MAGIC = 0xef53;
const TMPFS_MAGIC = 0x01021994;

// --- registration-time facts (decide what to skip, and say why) -------------

const isRoot = process.getuid?.() === 0;
const tmpIsExt4 = (await fs.statfs(os.tmpdir())).type === EXT4_SUPER_MAGIC;
const shmIsTmpfs = await fs
  .statfs('/dev/shm')
  .then((s) => s.type === TMPFS_MAGIC)
  .catch(() => false);
const mkfsXfs = ['/usr/sbin/mkfs.xfs', '/sbin/mkfs.xfs', ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'mkfs.xfs'))].find((p) =>
  existsSync(p),
);
const canLoopMount = isRoot && existsSync('/dev/loop-control');

const ext4Test = tmpIsExt4 ? test : test.skip;
const rootTest = isRoot ? test : test.skip;
const shmTest = shmIsTmpfs ? test : test.skip;
const xfsTest = mkfsXfs !== undefined && canLoopMount ? test : test.skip;
const ext4Why = tmpIsExt4 ? '' : ` (skipped: ${os.tmpdir()} is not ext4)`;
const shmWhy = shmIsTmpfs ? '' : ' (skipped: /dev/shm is not a tmpfs)';
const xfsWhy =
  mkfsXfs === undefined
    ? ' (skipped: mkfs.xfs not installed; apt-get install xfsprogs)'
    : !canLoopMount
      ? ' (skipped: needs root and /dev/loop-control to loop-mount)'
      : '';

// --- helpers ------------------------------------------------------------------

async function tmpDir(t: ExecutionContext, base: string = os.tmpdir()): Promise<string> {
  const dir = await fs.mkdtemp(path.join(base, 'strata-native-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function openFile(t: ExecutionContext, p: string, flags: string): Promise<fs.FileHandle> {
  const fh = await fs.open(p, flags);
  t.teardown(() => fh.close().catch(() => undefined));
  return fh;
}

/** Assert `p` rejects with a system error of one of `codes`; returns it. */
async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, codes: string[], syscall?: string): Promise<NativeError> {
  const err = await t.throwsAsync(p);
  if (!isNativeError(err)) {
    t.fail(`not a system error: ${String(err)}`);
    throw err;
  }
  t.true(codes.includes(err.code), `code ${err.code} not in ${codes.join('|')}`);
  const expectedErrno = os.constants.errno[err.code as keyof typeof os.constants.errno];
  t.is(err.errno, -expectedErrno, 'errno is the negative errno of code');
  t.true(err.message.startsWith(`${err.code}: `), err.message);
  if (syscall !== undefined) {
    t.is(err.syscall, syscall);
    t.true(err.message.includes(`, ${syscall}`), err.message);
  }
  return err;
}

/** Compare a file's bytes with Buffer.equals (ava's deepEqual is very slow on MiB-sized buffers). */
async function sameBytes(t: ExecutionContext, file: string, expected: Buffer): Promise<void> {
  const actual = await fs.readFile(file);
  t.is(actual.length, expected.length, `${file}: length`);
  t.true(actual.equals(expected), `${file}: contents differ`);
}

/** A sparse file: `size` bytes with random data at the given offsets. */
async function sparseFile(p: string, size: number, chunks: Array<{ at: number; len: number }>): Promise<Buffer> {
  const content = Buffer.alloc(size);
  const fh = await fs.open(p, 'w');
  try {
    for (const { at, len } of chunks) {
      const data = randomBytes(len);
      data.copy(content, at);
      await fh.write(data, 0, len, at);
    }
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return content;
}

// --- copyRange ------------------------------------------------------------------

for (const method of ['auto', 'copy_file_range', 'readwrite'] as const) {
  test(`copyRange ${method}: whole file, partial ranges with offsets, short copy at EOF`, async (t) => {
    const dir = await tmpDir(t);
    const src = path.join(dir, 'src');
    const data = randomBytes(3 * MiB + 12345); // spans several read/write buffers
    await fs.writeFile(src, data);
    const fin = await openFile(t, src, 'r');

    // whole file
    const whole = await openFile(t, path.join(dir, 'whole'), 'w+');
    t.is(await copyRange(fin.fd, 0, whole.fd, 0, data.length, { method }), data.length);
    await sameBytes(t, path.join(dir, 'whole'), data);

    // a middle range, to a different offset
    const part = await openFile(t, path.join(dir, 'part'), 'w+');
    t.is(await copyRange(fin.fd, 100_000, part.fd, 777, 1_000_000, { method }), 1_000_000);
    const got = await fs.readFile(path.join(dir, 'part'));
    t.is(got.length, 777 + 1_000_000);
    t.true(got.subarray(0, 777).equals(Buffer.alloc(777)));
    t.true(got.subarray(777).equals(data.subarray(100_000, 1_100_000)));

    // past EOF: short count, then 0 at/after EOF
    const tail = await openFile(t, path.join(dir, 'tail'), 'w+');
    t.is(await copyRange(fin.fd, data.length - 10, tail.fd, 0, 1 * MiB, { method }), 10);
    await sameBytes(t, path.join(dir, 'tail'), data.subarray(data.length - 10));
    t.is(await copyRange(fin.fd, data.length, tail.fd, 0, 100, { method }), 0);
    t.is(await copyRange(fin.fd, data.length + 5000, tail.fd, 0, 100, { method }), 0);
    t.is(await copyRange(fin.fd, 0, tail.fd, 0, 0, { method }), 0);

    // the fds' own positions are not used or moved
    const pos = await fin.read(Buffer.alloc(4), 0, 4, null);
    t.is(pos.bytesRead, 4);
    t.true(pos.buffer.equals(data.subarray(0, 4)));
  });
}

test('copyRange defaults to auto', async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'a'), 'hello world');
  const a = await openFile(t, path.join(dir, 'a'), 'r');
  const b = await openFile(t, path.join(dir, 'b'), 'w+');
  t.is(await copyRange(a.fd, 6, b.fd, 0, 100), 5);
  t.is(await fs.readFile(path.join(dir, 'b'), 'utf8'), 'world');
});

shmTest(`copyRange tmpfs -> ext4: copy_file_range rejects EXDEV, auto falls back to read/write${shmWhy}`, async (t) => {
  const shm = await tmpDir(t, '/dev/shm');
  const dir = await tmpDir(t);
  const data = randomBytes(2 * MiB + 3);
  await fs.writeFile(path.join(shm, 'src'), data);
  const fin = await openFile(t, path.join(shm, 'src'), 'r');
  const fout = await openFile(t, path.join(dir, 'dst'), 'w+');

  await rejectsWith(t, copyRange(fin.fd, 0, fout.fd, 0, data.length, { method: 'copy_file_range' }), ['EXDEV'], 'copy_file_range');
  t.is(await copyRange(fin.fd, 0, fout.fd, 0, data.length, { method: 'auto' }), data.length);
  await sameBytes(t, path.join(dir, 'dst'), data);
});

test('copyRange on a bad fd rejects with EBADF from the syscall of each method', async (t) => {
  const dir = await tmpDir(t);
  const out = await openFile(t, path.join(dir, 'out'), 'w+');
  const bad = 2_000_000_000; // valid number, never an open fd
  const err = await rejectsWith(t, copyRange(bad, 0, out.fd, 0, 10), ['EBADF'], 'copy_file_range');
  t.is(err.errno, -9);
  t.is(err.message, 'EBADF: bad file descriptor, copy_file_range');
  await rejectsWith(t, copyRange(bad, 0, out.fd, 0, 10, { method: 'copy_file_range' }), ['EBADF'], 'copy_file_range');
  await rejectsWith(t, copyRange(bad, 0, out.fd, 0, 10, { method: 'readwrite' }), ['EBADF'], 'pread');

  // read-only destination: the write side fails
  await fs.writeFile(path.join(dir, 'src'), 'abc');
  const src = await openFile(t, path.join(dir, 'src'), 'r');
  const ro = await openFile(t, path.join(dir, 'out'), 'r');
  await rejectsWith(t, copyRange(src.fd, 0, ro.fd, 0, 3, { method: 'readwrite' }), ['EBADF'], 'pwrite');
});

test('argument validation: TypeError / RangeError rejections, no crash', async (t) => {
  // Bad fds everywhere, so a check that slipped would fail with EBADF, not touch a real file.
  const bad = 2_000_000_000;
  const bogus = copyRange as unknown as (...args: unknown[]) => Promise<number>;
  await t.throwsAsync(bogus(String(bad), 0, bad, 0, 1), { instanceOf: TypeError });
  await t.throwsAsync(bogus(bad, 0, bad, 0), { instanceOf: TypeError });
  await t.throwsAsync(copyRange(-1, 0, bad, 0, 1), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(bad, -5, bad, 0, 1), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(bad, 0, bad, 0, 1.5), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(bad, 0, bad, 0, 2 ** 53), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(bad, 0, bad, 0, Number.NaN), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(2 ** 31, 0, bad, 0, 1), { instanceOf: RangeError });
  await t.throwsAsync(copyRange(bad, 0, bad, 0, 1, { method: 'sendfile' as 'auto' }), { instanceOf: TypeError });
  await t.throwsAsync(cloneFile(bad, bad, { method: 'bogus' as 'auto' }), { instanceOf: TypeError });
  await t.throwsAsync(listExtents(null as unknown as number), { instanceOf: TypeError });
  await t.throwsAsync(utimens('/nonexistent', { sec: 0, nsec: 1e9 }, 'now'), { instanceOf: RangeError });
  await t.throwsAsync(utimens('/nonexistent', { sec: 0.5, nsec: 0 }, 'now'), { instanceOf: RangeError });
  await t.throwsAsync(utimens('/nonexistent', 'later' as 'now', 'now'), { instanceOf: TypeError });
  await t.throwsAsync(utimens('/nonexistent', 1 as unknown as 'now', 'now'), { instanceOf: TypeError });
  await t.throwsAsync(utimens('/nonexistent\0y', 'now', 'now'), { instanceOf: TypeError });
  await t.throwsAsync(futimens(bad, { sec: 0, nsec: -1 }, 'now'), { instanceOf: RangeError });
  await t.throwsAsync(getxattr(42 as unknown as string, 'user.a'), { instanceOf: TypeError });
  await t.throwsAsync(setxattr('/nonexistent', 'user.a', 'str' as unknown as Buffer, 0), { instanceOf: TypeError });
  await t.throwsAsync(setxattr('/nonexistent', 'user.a', Buffer.from('v'), -1), { instanceOf: RangeError });
  await t.throwsAsync(fallocate(bad, -1, 0, 1), { instanceOf: RangeError });
  await t.throwsAsync(fallocate(bad, 0, 0, -1), { instanceOf: RangeError });
  await t.throwsAsync(mknod('/nonexistent/x', 0o10644, -1), { instanceOf: RangeError });
  await t.throwsAsync(readdirIno(undefined as unknown as string), { instanceOf: TypeError });
  const err = await t.throwsAsync(copyRange(bad, -5, bad, 0, 1));
  t.is((err as NodeJS.ErrnoException | undefined)?.code, 'ERR_OUT_OF_RANGE');
});

test('work runs off the main thread: the event loop turns while a copy is in flight', async (t) => {
  const dir = await tmpDir(t);
  const size = 32 * MiB;
  await fs.writeFile(path.join(dir, 'src'), Buffer.alloc(size, 0x5a));
  const fin = await openFile(t, path.join(dir, 'src'), 'r');
  const fout = await openFile(t, path.join(dir, 'dst'), 'w+');

  let turns = 0;
  let running = true;
  const spin = (): void => {
    turns++;
    if (running) setImmediate(spin);
  };
  const p = copyRange(fin.fd, 0, fout.fd, 0, size, { method: 'readwrite' });
  setImmediate(spin);
  t.is(await p, size);
  running = false;
  t.true(turns > 0, `event loop turned ${turns} times during the copy`);

  // many concurrent calls all settle
  const all = await Promise.all(Array.from({ length: 32 }, () => listExtents(fin.fd)));
  for (const ext of all) t.deepEqual(ext, [{ offset: 0, length: size }]);
});

// --- cloneFile -------------------------------------------------------------------

ext4Test(`cloneFile auto on ext4 falls back to a copy that keeps content and holes${ext4Why}`, async (t) => {
  const dir = await tmpDir(t);
  const src = path.join(dir, 'sparse');
  const size = 8 * MiB + 64 * KiB + 100;
  const content = await sparseFile(src, size, [
    { at: 0, len: 64 * KiB },
    { at: 8 * MiB, len: 64 * KiB },
  ]);
  // The destination starts with stale data everywhere: it must not survive in the holes.
  const dst = path.join(dir, 'dst');
  await fs.writeFile(dst, Buffer.alloc(9 * MiB, 0xff));

  const fin = await openFile(t, src, 'r');
  const fout = await openFile(t, dst, 'r+');
  t.is(await cloneFile(fin.fd, fout.fd), 'copy');
  await fout.sync();

  await sameBytes(t, dst, content);
  t.deepEqual(await listExtents(fout.fd), [
    { offset: 0, length: 64 * KiB },
    { offset: 8 * MiB, length: 64 * KiB }, // the 100-byte tail lies in a hole block
  ]);
  t.deepEqual(await listExtents(fout.fd), await listExtents(fin.fd));
  const st = await fs.stat(dst);
  t.is(st.size, size);
  // 128 KiB of data = 256 sectors (+ metadata); a dense copy would be ~16,600.
  t.true(st.blocks < 1024, `st_blocks ${st.blocks}`);
});

test("cloneFile 'copy' never tries FICLONE and handles an empty source", async (t) => {
  const dir = await tmpDir(t);
  const data = randomBytes(300 * KiB);
  await fs.writeFile(path.join(dir, 'a'), data);
  await fs.writeFile(path.join(dir, 'empty'), '');
  await fs.writeFile(path.join(dir, 'b'), 'old contents that must go away');
  const a = await openFile(t, path.join(dir, 'a'), 'r');
  const empty = await openFile(t, path.join(dir, 'empty'), 'r');
  const b = await openFile(t, path.join(dir, 'b'), 'r+');
  t.is(await cloneFile(a.fd, b.fd, { method: 'copy' }), 'copy');
  await sameBytes(t, path.join(dir, 'b'), data);
  t.is(await cloneFile(empty.fd, b.fd, { method: 'copy' }), 'copy');
  t.is((await fs.stat(path.join(dir, 'b'))).size, 0);

  // the same file as source and destination is refused, not truncated
  await rejectsWith(t, cloneFile(a.fd, a.fd, { method: 'copy' }), ['EINVAL', 'EBADF']);
  await sameBytes(t, path.join(dir, 'a'), data);
});

ext4Test(`cloneFile 'reflink' on ext4 rejects with the ioctl's error${ext4Why}`, async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'a'), 'data');
  const a = await openFile(t, path.join(dir, 'a'), 'r');
  const b = await openFile(t, path.join(dir, 'b'), 'w');
  // errno 95: libuv (and so Node) names it ENOTSUP; glibc also calls it EOPNOTSUPP.
  const err = await rejectsWith(t, cloneFile(a.fd, b.fd, { method: 'reflink' }), ['ENOTSUP', 'EOPNOTSUPP', 'EXDEV'], 'ioctl');
  t.true([-os.constants.errno.EOPNOTSUPP, -os.constants.errno.EXDEV].includes(err.errno));
  t.is((await fs.stat(path.join(dir, 'b'))).size, 0);
});

test('cloneFile on a bad fd rejects with EBADF (no fallback)', async (t) => {
  const dir = await tmpDir(t);
  const b = await openFile(t, path.join(dir, 'b'), 'w');
  await rejectsWith(t, cloneFile(2_000_000_000, b.fd), ['EBADF'], 'ioctl');
});

xfsTest(`cloneFile reflink succeeds on a loop-mounted XFS with reflink=1${xfsWhy}`, async (t) => {
  t.timeout(120_000);
  const dir = await tmpDir(t);
  const img = path.join(dir, 'xfs.img');
  const mnt = path.join(dir, 'mnt');
  await fs.mkdir(mnt);
  // mkfs.xfs (xfsprogs >= 5.19) refuses file systems under 300 MB; the
  // image is sparse, so this costs ~65 MB of real disk.
  await fs.writeFile(img, '');
  await fs.truncate(img, 512 * MiB);
  await execFile(mkfsXfs as string, ['-q', '-m', 'reflink=1', img]);
  await execFile('mount', ['-o', 'loop', img, mnt]);
  // Teardowns run last-in first-out: this runs before the rm of `dir`, and
  // the file handles opened below are closed before this.
  t.teardown(async () => {
    try {
      await execFile('umount', [mnt]);
    } catch {
      await execFile('umount', ['-l', mnt]).catch(() => undefined);
    }
  });

  const data = randomBytes(4 * MiB);
  const src = path.join(mnt, 'src');
  await fs.writeFile(src, data);
  const fin = await openFile(t, src, 'r');
  const f1 = await openFile(t, path.join(mnt, 'r1'), 'w+');
  const f2 = await openFile(t, path.join(mnt, 'r2'), 'w+');
  t.is(await cloneFile(fin.fd, f1.fd, { method: 'reflink' }), 'reflink');
  t.is(await cloneFile(fin.fd, f2.fd), 'reflink');
  await sameBytes(t, path.join(mnt, 'r1'), data);
  await sameBytes(t, path.join(mnt, 'r2'), data);

  // XFS -> ext4 is cross-device: FICLONE fails with EXDEV and auto copies.
  const outside = await openFile(t, path.join(dir, 'outside'), 'w+');
  await rejectsWith(t, cloneFile(fin.fd, outside.fd, { method: 'reflink' }), ['EXDEV'], 'ioctl');
  t.is(await cloneFile(fin.fd, outside.fd), 'copy');
  await sameBytes(t, path.join(dir, 'outside'), data);

  // copy_file_range within XFS works too.
  const f3 = await openFile(t, path.join(mnt, 'r3'), 'w+');
  t.is(await copyRange(fin.fd, 0, f3.fd, 0, data.length, { method: 'copy_file_range' }), data.length);
  await sameBytes(t, path.join(mnt, 'r3'), data);
});

// --- listExtents --------------------------------------------------------------------

test('listExtents: empty, dense, sparse, trailing hole; fd position is kept', async (t) => {
  const dir = await tmpDir(t);

  await fs.writeFile(path.join(dir, 'empty'), '');
  const empty = await openFile(t, path.join(dir, 'empty'), 'r');
  t.deepEqual(await listExtents(empty.fd), []);

  const dense = randomBytes(100 * KiB + 1);
  await fs.writeFile(path.join(dir, 'dense'), dense);
  const d = await openFile(t, path.join(dir, 'dense'), 'r');
  t.deepEqual(await listExtents(d.fd), [{ offset: 0, length: dense.length }]);

  const size = 16 * MiB;
  await sparseFile(path.join(dir, 'sparse'), size, [
    { at: 4 * MiB, len: 4 * KiB },
    { at: size - 4 * KiB, len: 4 * KiB },
  ]);
  const s = await openFile(t, path.join(dir, 'sparse'), 'r');
  t.deepEqual(await listExtents(s.fd), [
    { offset: 4 * MiB, length: 4 * KiB },
    { offset: size - 4 * KiB, length: 4 * KiB },
  ]);

  await sparseFile(path.join(dir, 'tailhole'), 1 * MiB, [{ at: 0, len: 4 * KiB }]);
  const th = await openFile(t, path.join(dir, 'tailhole'), 'r');
  t.deepEqual(await listExtents(th.fd), [{ offset: 0, length: 4 * KiB }]);

  // SEEK_DATA/SEEK_HOLE move the shared file position; it must be restored.
  const first = await d.read(Buffer.alloc(10), 0, 10, null);
  t.true(first.buffer.equals(dense.subarray(0, 10)));
  await listExtents(d.fd);
  const next = await d.read(Buffer.alloc(10), 0, 10, null);
  t.true(next.buffer.equals(dense.subarray(10, 20)));

  await rejectsWith(t, listExtents(2_000_000_000), ['EBADF'], 'fstat');
});

test('readFileQuiet: extents and bytes of a file in one call, atime untouched; errors with their syscall; bad sizes refused', async (t) => {
  const dir = await tmpDir(t);
  const dense = randomBytes(100 * KiB + 1);
  await fs.writeFile(path.join(dir, 'dense'), dense);
  const q = await readFileQuiet(path.join(dir, 'dense'), dense.length);
  t.deepEqual(q.extents, [{ offset: 0, length: dense.length }]);
  t.true(q.data.equals(dense));
  // Fewer bytes than asked at EOF; none asked, none read.
  t.is((await readFileQuiet(path.join(dir, 'dense'), dense.length + 5)).data.length, dense.length);
  t.is((await readFileQuiet(path.join(dir, 'dense'), 0)).data.length, 0);
  const content = await sparseFile(path.join(dir, 'sparse'), 1 * MiB, [{ at: 256 * KiB, len: 4 * KiB }]);
  const s = await readFileQuiet(path.join(dir, 'sparse'), 1 * MiB);
  t.deepEqual(s.extents, [{ offset: 256 * KiB, length: 4 * KiB }]);
  t.true(s.data.equals(content));
  const old = new Date('2001-02-03T04:05:06Z');
  await fs.utimes(path.join(dir, 'dense'), old, old);
  await readFileQuiet(path.join(dir, 'dense'), dense.length);
  t.is((await fs.stat(path.join(dir, 'dense'))).atime.getTime(), old.getTime(), 'O_NOATIME (root may use it)');
  await fs.symlink('dense', path.join(dir, 'link'));
  await rejectsWith(t, readFileQuiet(path.join(dir, 'link'), 10), ['ELOOP'], 'open');
  await rejectsWith(t, readFileQuiet(path.join(dir, 'nosuch'), 10), ['ENOENT'], 'open');
  await rejectsWith(t, readFileQuiet(dir, 10), ['EISDIR'], 'pread');
  await t.throwsAsync(async () => readFileQuiet(path.join(dir, 'dense'), 65 * MiB), { instanceOf: RangeError });
  await t.throwsAsync(async () => readFileQuiet(path.join(dir, 'dense'), -1), { instanceOf: RangeError });
});

test('localBlocksWhole gives exactly what differingBlocks gives for a file the archive does not have (seeded random sparse files)', async (t) => {
  const dir = await tmpDir(t);
  let seed = 12345;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (let f = 0; f < 40; f++) {
    const size = rnd(4) === 0 ? rnd(300) : rnd(1 * MiB) + 1;
    const p = path.join(dir, `f${f}`);
    const fh = await fs.open(p, 'w');
    await fh.truncate(size);
    for (let k = rnd(6); k > 0; k--) {
      const at = rnd(size);
      const len = Math.min(size - at, rnd(200 * KiB) + 1);
      // Some chunks are written zeros: allocated, yet not shipped.
      await fh.write(rnd(3) === 0 ? Buffer.alloc(len) : randomBytes(len), 0, len, at);
    }
    await fh.close();
    const want: { offset: number; data: string }[] = [];
    for await (const b of differingBlocks(StoreDir.ABSOLUTE, p, size, null)) want.push({ offset: b.offset, data: b.data.toString('hex') });
    const got = (await localBlocksWhole(StoreDir.ABSOLUTE, p, size)).map((b) => ({ offset: b.offset, data: b.data.toString('hex') }));
    t.deepEqual(got, want, `file ${f} of ${size} bytes`);
  }
  // A file shorter than the size its stat gave: the rest reads as zeros, on both.
  const p = path.join(dir, 'short');
  await fs.writeFile(p, randomBytes(70 * KiB));
  const want: number[] = [];
  for await (const b of differingBlocks(StoreDir.ABSOLUTE, p, 200 * KiB, null)) want.push(b.offset);
  t.deepEqual((await localBlocksWhole(StoreDir.ABSOLUTE, p, 200 * KiB)).map((b) => b.offset), want);
});

// --- utimens / futimens ------------------------------------------------------------------

test('utimens: exact nanoseconds round trip, omit, now, ENOENT', async (t) => {
  const dir = await tmpDir(t);
  const p = path.join(dir, 'f');
  await fs.writeFile(p, 'x');

  await utimens(p, { sec: 1_600_000_000, nsec: 123_456_789 }, { sec: 1_500_000_000, nsec: 987_654_321 });
  let st = await fs.stat(p, { bigint: true });
  t.is(st.atimeNs, 1_600_000_000_123_456_789n);
  t.is(st.mtimeNs, 1_500_000_000_987_654_321n);

  // omit leaves a field alone
  await utimens(p, 'omit', { sec: 1_400_000_000, nsec: 1 });
  st = await fs.stat(p, { bigint: true });
  t.is(st.atimeNs, 1_600_000_000_123_456_789n);
  t.is(st.mtimeNs, 1_400_000_000_000_000_001n);
  await utimens(p, { sec: 1_300_000_000, nsec: 999_999_999 }, 'omit');
  st = await fs.stat(p, { bigint: true });
  t.is(st.atimeNs, 1_300_000_000_999_999_999n);
  t.is(st.mtimeNs, 1_400_000_000_000_000_001n);

  // now: near the current time (the kernel's clock is coarse; allow slack)
  const before = BigInt(Date.now() - 2000) * 1_000_000n;
  await utimens(p, 'now', 'now');
  const after = BigInt(Date.now() + 2000) * 1_000_000n;
  st = await fs.stat(p, { bigint: true });
  for (const ns of [st.atimeNs, st.mtimeNs]) t.true(ns >= before && ns <= after, `${ns} not in [${before}, ${after}]`);

  // pre-epoch seconds are allowed
  await utimens(p, 'omit', { sec: -1, nsec: 500_000_000 });
  st = await fs.stat(p, { bigint: true });
  t.is(st.mtimeNs, -500_000_000n);

  const err = await rejectsWith(t, utimens(path.join(dir, 'missing'), 'now', 'now'), ['ENOENT'], 'utimensat');
  t.is(err.path, path.join(dir, 'missing'));
  t.is(err.message, `ENOENT: no such file or directory, utimensat '${path.join(dir, 'missing')}'`);
});

test('utimens noFollow changes the symlink, not its target', async (t) => {
  const dir = await tmpDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  await fs.writeFile(target, 'x');
  await fs.symlink('target', link);
  await utimens(target, { sec: 1_000_000_000, nsec: 0 }, { sec: 1_000_000_000, nsec: 0 });

  await utimens(link, { sec: 1_200_000_000, nsec: 42 }, { sec: 1_200_000_000, nsec: 43 }, { noFollow: true });
  const ls = await fs.lstat(link, { bigint: true });
  t.is(ls.atimeNs, 1_200_000_000_000_000_042n);
  t.is(ls.mtimeNs, 1_200_000_000_000_000_043n);
  let ts = await fs.stat(target, { bigint: true });
  t.is(ts.mtimeNs, 1_000_000_000_000_000_000n);

  // without noFollow the target changes
  await utimens(link, 'omit', { sec: 1_100_000_000, nsec: 7 });
  ts = await fs.stat(target, { bigint: true });
  t.is(ts.mtimeNs, 1_100_000_000_000_000_007n);
  t.is((await fs.lstat(link, { bigint: true })).mtimeNs, 1_200_000_000_000_000_043n);
});

test('futimens sets exact nanoseconds on an fd; EBADF', async (t) => {
  const dir = await tmpDir(t);
  const p = path.join(dir, 'f');
  const fh = await openFile(t, p, 'w');
  await futimens(fh.fd, { sec: 1_234_567_890, nsec: 111_222_333 }, 'omit');
  await futimens(fh.fd, 'omit', { sec: 1_234_567_891, nsec: 444_555_666 });
  const st = await fs.stat(p, { bigint: true });
  t.is(st.atimeNs, 1_234_567_890_111_222_333n);
  t.is(st.mtimeNs, 1_234_567_891_444_555_666n);
  await rejectsWith(t, futimens(2_000_000_000, 'now', 'now'), ['EBADF'], 'futimens');
});

// --- mknod ----------------------------------------------------------------------------------

test('mknod makes a fifo and a socket; EEXIST on an existing path', async (t) => {
  const dir = await tmpDir(t);
  const umask = process.umask();
  const fifo = path.join(dir, 'fifo');
  await mknod(fifo, fsc.S_IFIFO | 0o644, 0);
  const st = await fs.lstat(fifo);
  t.true(st.isFIFO());
  t.is(st.mode & 0o777, 0o644 & ~umask);

  const sock = path.join(dir, 'sock');
  await mknod(sock, fsc.S_IFSOCK | 0o600, 0);
  t.true((await fs.lstat(sock)).isSocket());

  await rejectsWith(t, mknod(fifo, fsc.S_IFIFO | 0o644, 0), ['EEXIST'], 'mknod');
});

rootTest(`mknod makes a character device (makedev(1, 3))${isRoot ? '' : ' (skipped: needs root)'}`, async (t) => {
  const dir = await tmpDir(t);
  const p = path.join(dir, 'null');
  t.is(makedev(1, 3), 259);
  await mknod(p, fsc.S_IFCHR | 0o600, makedev(1, 3));
  const st = await fs.lstat(p);
  t.true(st.isCharacterDevice());
  t.is(st.rdev, makedev(1, 3));
  t.is(st.mode & 0o777, 0o600 & ~process.umask());
});

// --- fallocate ------------------------------------------------------------------------------

test('fallocate: plain, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE', async (t) => {
  const dir = await tmpDir(t);
  const p = path.join(dir, 'f');
  const fh = await openFile(t, p, 'w+');

  await fallocate(fh.fd, FALLOC_FL_KEEP_SIZE, 0, 1 * MiB);
  let st = await fh.stat();
  t.is(st.size, 0);
  t.true(st.blocks >= 2048, `blocks ${st.blocks}`);

  await fallocate(fh.fd, 0, 0, 256 * KiB);
  t.is((await fh.stat()).size, 256 * KiB);

  // 1 MiB of data, then punch a hole in its middle
  const data = Buffer.alloc(1 * MiB, 0xab);
  await fh.write(data, 0, data.length, 0);
  await fh.sync();
  const blocksBefore = (await fh.stat()).blocks;
  await fallocate(fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * KiB, 256 * KiB);
  st = await fh.stat();
  t.is(st.size, 1 * MiB);
  t.true(st.blocks <= blocksBefore - 512, `blocks ${blocksBefore} -> ${st.blocks}`);
  const got = await fs.readFile(p);
  t.true(got.subarray(0, 256 * KiB).equals(data.subarray(0, 256 * KiB)));
  t.true(got.subarray(256 * KiB, 512 * KiB).equals(Buffer.alloc(256 * KiB)));
  t.true(got.subarray(512 * KiB).equals(data.subarray(512 * KiB)));
  if (tmpIsExt4) {
    t.deepEqual(await listExtents(fh.fd), [
      { offset: 0, length: 256 * KiB },
      { offset: 512 * KiB, length: 512 * KiB },
    ]);
  }

  await fallocate(fh.fd, FALLOC_FL_ZERO_RANGE, 900 * KiB, 4 * KiB);
  const z = await fs.readFile(p);
  t.true(z.subarray(900 * KiB, 904 * KiB).equals(Buffer.alloc(4 * KiB)));
  t.is(z[904 * KiB], 0xab);

  await rejectsWith(t, fallocate(2_000_000_000, 0, 0, 1), ['EBADF'], 'fallocate');
});

// --- xattrs -----------------------------------------------------------------------------------

test('xattr set/get/list/remove with user. names and their errors', async (t) => {
  const dir = await tmpDir(t);
  const p = path.join(dir, 'f');
  await fs.writeFile(p, 'x');

  const value = Buffer.from([0, 1, 2, 255, 0]);
  await setxattr(p, 'user.strata.a', value, 0);
  t.deepEqual(await getxattr(p, 'user.strata.a'), value);
  await setxattr(p, 'user.strata.empty', Buffer.alloc(0), XATTR_CREATE);
  t.deepEqual(await getxattr(p, 'user.strata.empty'), Buffer.alloc(0));
  const big = randomBytes(3000);
  await setxattr(p, 'user.strata.big', big, 0);
  t.deepEqual(await getxattr(p, 'user.strata.big'), big);

  const names = await listxattr(p);
  for (const n of ['user.strata.a', 'user.strata.empty', 'user.strata.big']) t.true(names.includes(n), names.join(','));

  await rejectsWith(t, setxattr(p, 'user.strata.a', Buffer.from('x'), XATTR_CREATE), ['EEXIST'], 'lsetxattr');
  await rejectsWith(t, setxattr(p, 'user.strata.nope', Buffer.from('x'), XATTR_REPLACE), ['ENODATA'], 'lsetxattr');
  await setxattr(p, 'user.strata.a', Buffer.from('replaced'), XATTR_REPLACE);
  t.is((await getxattr(p, 'user.strata.a')).toString(), 'replaced');

  const missing = await rejectsWith(t, getxattr(p, 'user.strata.nope'), ['ENODATA'], 'lgetxattr');
  t.is(missing.errno, -os.constants.errno.ENODATA);
  t.is(missing.path, p);

  await removexattr(p, 'user.strata.a');
  t.false((await listxattr(p)).includes('user.strata.a'));
  await rejectsWith(t, removexattr(p, 'user.strata.a'), ['ENODATA'], 'lremovexattr');

  await rejectsWith(t, listxattr(path.join(dir, 'missing')), ['ENOENT'], 'llistxattr');
});

test('xattr calls do not follow symlinks', async (t) => {
  const dir = await tmpDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  await fs.writeFile(target, 'x');
  await fs.symlink('target', link);
  await setxattr(target, 'user.strata.t', Buffer.from('on target'), 0);
  await rejectsWith(t, getxattr(link, 'user.strata.t'), ['ENODATA'], 'lgetxattr');
  t.false((await listxattr(link)).includes('user.strata.t'));
  // A dangling link is fine too: nothing is followed.
  await fs.symlink('nowhere', path.join(dir, 'dangling'));
  t.true(Array.isArray(await listxattr(path.join(dir, 'dangling'))));
});

test('prepareObject: a directory or file created with xattrs, owner and mode in one call; stops at the first failure', async (t) => {
  const dir = await tmpDir(t);
  const d = path.join(dir, 'd');
  await prepareObject(d, {
    create: { kind: 'dir', mode: 0o750 },
    xattrs: [['user.strata.a', Buffer.from('one')], ['trusted.strata.t', Buffer.from([0, 255])]],
    owner: { uid: 1234, gid: 5678 },
    mode: 0o3750,
  });
  const ds = await fs.lstat(d);
  t.true(ds.isDirectory());
  t.is(ds.mode & 0o7777, 0o3750);
  t.is(ds.uid, 1234);
  t.is(ds.gid, 5678);
  t.is((await getxattr(d, 'user.strata.a')).toString(), 'one');
  t.deepEqual(await getxattr(d, 'trusted.strata.t'), Buffer.from([0, 255]));

  const f = path.join(dir, 'f');
  await prepareObject(f, { create: { kind: 'file', mode: 0o640, size: 3 * MiB + 5 } });
  const fst = await fs.lstat(f);
  t.true(fst.isFile());
  t.is(fst.size, 3 * MiB + 5);
  t.is(fst.blocks, 0, 'the size is a hole');
  t.is(fst.mode & 0o7777, 0o640);
  // An existing object: only the attributes (a symlink's own, never its target's).
  await fs.symlink('f', path.join(dir, 'l'));
  await prepareObject(path.join(dir, 'l'), { xattrs: [['trusted.strata.id', Buffer.from('x')]], owner: { uid: 7, gid: 8 } });
  t.is((await fs.lstat(path.join(dir, 'l'))).uid, 7);
  t.is((await fs.lstat(f)).uid, 0);
  t.is((await getxattr(path.join(dir, 'l'), 'trusted.strata.id')).toString(), 'x');
  await rejectsWith(t, getxattr(f, 'trusted.strata.id'), ['ENODATA'], 'lgetxattr');

  // O_EXCL: a taken name fails, and nothing after the failing step is done.
  const taken = await rejectsWith(t, prepareObject(f, { create: { kind: 'file', mode: 0o600 }, xattrs: [['user.strata.no', Buffer.from('x')]] }), ['EEXIST'], 'open');
  t.is(taken.path, f);
  await rejectsWith(t, prepareObject(d, { create: { kind: 'dir', mode: 0o700 } }), ['EEXIST'], 'mkdir');
  await rejectsWith(t, getxattr(f, 'user.strata.no'), ['ENODATA'], 'lgetxattr');
  const g = path.join(dir, 'g');
  await rejectsWith(t, prepareObject(g, { create: { kind: 'file', mode: 0o600 }, xattrs: [['bogus.ns', Buffer.from('x')]], mode: 0o4755 }), ['EOPNOTSUPP', 'ENOTSUP'], 'lsetxattr');
  t.is((await fs.lstat(g)).mode & 0o7777, 0o600, 'no chmod after the failed setxattr');
  await rejectsWith(t, prepareObject(path.join(dir, 'missing', 'x'), { create: { kind: 'dir', mode: 0o700 } }), ['ENOENT'], 'mkdir');

  // Bad arguments: a TypeError rejection, nothing done.
  await t.throwsAsync(prepareObject(path.join(dir, 'h'), { create: { kind: 'dir', mode: 0o700 }, xattrs: [['user.x', 'not a buffer' as unknown as Buffer]] }), { instanceOf: TypeError });
  t.false(existsSync(path.join(dir, 'h')));
});

// --- cloneTo / finishFile (a swap prepare's file in two calls) -------------------------------------

test('cloneTo: a sparse copy checked against cp, the source inode, non-files and gone sources; errors with their syscall; bad arguments refused', async (t) => {
  const dir = await tmpDir(t);
  const src = path.join(dir, 'src');
  const content = await sparseFile(src, 5 * MiB + 100, [{ at: 0, len: 64 * KiB }, { at: 2 * MiB, len: 300 * KiB }, { at: 5 * MiB, len: 100 }]);
  const r = await cloneTo(src, path.join(dir, 'copy'), 0o640);
  t.not(r, null);
  t.is(r!.ino, (await fs.stat(src, { bigint: true })).ino);
  t.true(r!.isFile);
  t.is(r!.size, content.length);
  t.true(r!.how === 'reflink' || r!.how === 'copy');
  await sameBytes(t, path.join(dir, 'copy'), content);
  t.is((await fs.stat(path.join(dir, 'copy'))).mode & 0o777, 0o640);
  // Against the native tool: the same bytes and the same data extents (holes stay holes).
  await execFile('cp', ['--sparse=always', src, path.join(dir, 'cp')]);
  await sameBytes(t, path.join(dir, 'copy'), await fs.readFile(path.join(dir, 'cp')));
  const fc = await openFile(t, path.join(dir, 'copy'), 'r');
  const fs0 = await openFile(t, src, 'r');
  t.deepEqual(await listExtents(fc.fd), await listExtents(fs0.fd));

  // A source that is gone: null, nothing created. A directory or symlink: its inode, no copy made.
  t.is(await cloneTo(path.join(dir, 'gone'), path.join(dir, 'x1'), 0o600), null);
  t.false(existsSync(path.join(dir, 'x1')));
  await fs.mkdir(path.join(dir, 'd'));
  const d = await cloneTo(path.join(dir, 'd'), path.join(dir, 'x2'), 0o600);
  t.deepEqual(d, { ino: (await fs.stat(path.join(dir, 'd'), { bigint: true })).ino, isFile: false });
  t.false(existsSync(path.join(dir, 'x2')));
  await fs.symlink('src', path.join(dir, 'l'));
  t.is(await cloneTo(path.join(dir, 'l'), path.join(dir, 'x3'), 0o600), null, 'a symlink is never followed');
  t.false(existsSync(path.join(dir, 'x3')));

  // O_EXCL on the target: EEXIST naming it; a missing target directory: ENOENT.
  const taken = await rejectsWith(t, cloneTo(src, path.join(dir, 'cp'), 0o600), ['EEXIST'], 'open');
  t.is(taken.path, path.join(dir, 'cp'));
  await rejectsWith(t, cloneTo(src, path.join(dir, 'no', 'x'), 0o600), ['ENOENT'], 'open');

  // src relative to one directory's descriptor, dst to another's (a swap's spare): the copy lands there, not under the source's.
  const other = path.join(dir, 'other');
  await fs.mkdir(other);
  const srcDir = await StoreDir.openRoot(dir);
  const dstDir = await StoreDir.openRoot(other);
  try {
    const r2 = await srcDir.cloneTo('src', 'copy2', 0o600, dstDir);
    t.is(r2?.size, content.length);
    await sameBytes(t, path.join(other, 'copy2'), content);
    t.false(existsSync(path.join(dir, 'copy2')));
    t.is((await srcDir.cloneTo('src', 'copy3', 0o600))?.size, content.length, 'without `into`: next to the source');
    t.true(existsSync(path.join(dir, 'copy3')));
  } finally {
    srcDir.close();
    dstDir.close();
  }
  await t.throwsAsync(cloneTo(src, 'x', 0o600, undefined, -5), { instanceOf: RangeError });

  await t.throwsAsync(cloneTo(1 as unknown as string, path.join(dir, 'y'), 0o600), { instanceOf: TypeError, message: /"src" argument must be of type string/ });
  await t.throwsAsync(cloneTo(src, 'a\0b', 0o600), { instanceOf: TypeError, message: /without null bytes/ });
  await t.throwsAsync(cloneTo(src, path.join(dir, 'y'), 0o10000), { instanceOf: RangeError, message: /"mode" is out of range/ });
  await t.throwsAsync(cloneTo(src, path.join(dir, 'y'), -1), { instanceOf: RangeError });
  t.false(existsSync(path.join(dir, 'y')));
});

test('readXattrs: every name with its value in one call, as listxattr + getxattr give them; a symlink\'s own; errors with their syscall', async (t) => {
  const dir = await tmpDir(t);
  const f = path.join(dir, 'f');
  await fs.writeFile(f, 'x');
  t.deepEqual(await readXattrs(f), []);
  await setxattr(f, 'user.a', Buffer.from('one'), 0);
  await setxattr(f, 'user.empty', Buffer.alloc(0), 0);
  await setxattr(f, 'trusted.strata.id', Buffer.from([0, 255, 7]), 0);
  const big = randomBytes(3000);
  await setxattr(f, 'user.big', big, 0);
  const got = await readXattrs(f);
  const expected: [string, Buffer][] = [];
  for (const name of await listxattr(f)) expected.push([name, await getxattr(f, name)]);
  t.deepEqual(got, expected);
  t.deepEqual(new Map(got).get('user.big'), big);
  await fs.symlink('f', path.join(dir, 'l'));
  t.deepEqual(await readXattrs(path.join(dir, 'l')), [], 'the link\'s own, not its target\'s');
  const e = await rejectsWith(t, readXattrs(path.join(dir, 'missing')), ['ENOENT'], 'llistxattr');
  t.is(e.path, path.join(dir, 'missing'));
  await t.throwsAsync(readXattrs(5 as unknown as string), { instanceOf: TypeError, message: /"path" argument must be of type string/ });
  await t.throwsAsync(readXattrs('a\0b'), { instanceOf: TypeError, message: /without null bytes/ });
});

test('scanDir: every entry with the lstat and xattrs Node gives one at a time, in one call; without xattrs none are read; the directory\'s atime untouched; errors with their syscall', async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'f'), randomBytes(5000));
  await fs.mkdir(path.join(dir, 'sub'));
  await fs.symlink('f', path.join(dir, 'link'));
  await fs.link(path.join(dir, 'f'), path.join(dir, 'hard'));
  await execFile('mkfifo', [path.join(dir, 'fifo')]);
  await fs.writeFile(path.join(dir, 'n\u00e9'), '');
  await setxattr(path.join(dir, 'f'), 'user.a', Buffer.from('one'), 0);
  await setxattr(path.join(dir, 'sub'), 'trusted.strata.id', Buffer.from('0123456789abcdef0123456789abcdef'), 0);
  await setxattr(path.join(dir, 'n\u00e9'), 'user.empty', Buffer.alloc(0), 0);
  await fs.utimes(path.join(dir, 'sub'), new Date(1_000_000_123), new Date(2_000_000_456));
  const got = await scanDir(dir, true);
  t.deepEqual(got.map((e) => e.name).sort(), ['f', 'fifo', 'hard', 'link', 'n\u00e9', 'sub']);
  for (const e of got) {
    const p = path.join(dir, e.name);
    const st = await fs.lstat(p, { bigint: true });
    const fields = ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'rdev', 'size', 'blocks', 'atimeNs', 'mtimeNs', 'ctimeNs'] as const;
    for (const k of fields) t.is(e.st[k], st[k], `${e.name}: ${k}`);
    t.deepEqual(e.xattrs, await readXattrs(p), `${e.name}: xattrs`);
  }
  t.is(got.find((e) => e.name === 'f')!.st.nlink, 2n);
  t.deepEqual((await scanDir(dir, false)).map((e) => e.xattrs), got.map(() => []));
  t.deepEqual(await scanDir(path.join(dir, 'sub'), true), []);
  // O_NOATIME: an atime from 2001 is older than relatime's day, so a plain readdir would move it.
  t.is((await fs.stat(path.join(dir, 'sub'), { bigint: true })).atimeNs, 1_000_000_123_000_000n, 'the directory\'s atime is untouched');
  await rejectsWith(t, scanDir(path.join(dir, 'missing'), true), ['ENOENT'], 'opendir');
  await rejectsWith(t, scanDir(path.join(dir, 'f'), true), ['ENOTDIR'], 'opendir');
  await t.throwsAsync(scanDir('a\0b', true), { instanceOf: TypeError, message: /without null bytes/ });
});

test('finishFile: size, log ranges, xattrs, owner, mode, times and rename in one call, checked against a native build; stops at the first failure', async (t) => {
  const dir = await tmpDir(t);
  const log = path.join(dir, 'log');
  const logData = randomBytes(256 * KiB);
  await fs.writeFile(log, logData);
  const lfh = await openFile(t, log, 'r');
  const base = randomBytes(1 * MiB);
  const tmp = path.join(dir, '.tmp');
  const final = path.join(dir, 'final');
  await fs.writeFile(tmp, base);
  const size = 900 * KiB + 7;
  const ranges: [number, number, number][] = [[0, 64 * KiB, 64 * KiB], [128 * KiB, 896 * KiB, size - 896 * KiB]];
  const atime = { sec: 1_600_000_000, nsec: 123_456_789 };
  const mtime = { sec: 1_500_000_000, nsec: 987_654_321 };
  const got = await finishFile(tmp, {
    size, log: { fd: lfh.fd, ranges }, xattrs: [['trusted.strata.id', Buffer.from('abc')], ['user.k', Buffer.from([0, 1, 2])]],
    owner: { uid: 4321, gid: 8765 }, mode: 0o2751, times: { atime, mtime }, rename: final,
  });
  t.is(got, 64 * KiB + (size - 896 * KiB), 'the bytes copied from the log');
  t.false(existsSync(tmp));

  // The same made natively: truncate, dd the ranges, setfattr, chown, chmod, touch.
  const ref = path.join(dir, 'ref');
  await fs.writeFile(ref, base);
  await fs.truncate(ref, size);
  const rfh = await fs.open(ref, 'r+');
  for (const [lo, fo, len] of ranges) await rfh.write(logData, lo, len, fo);
  await rfh.close();
  // Stat before reading: the read moves atime (relatime).
  const st = await fs.lstat(final, { bigint: true });
  t.is(st.mode & 0o7777n, 0o2751n, 'chmod after chown keeps set-ID');
  t.is(st.uid, 4321n);
  t.is(st.gid, 8765n);
  t.is(st.atimeNs, 1_600_000_000_123_456_789n);
  t.is(st.mtimeNs, 1_500_000_000_987_654_321n);
  await sameBytes(t, final, await fs.readFile(ref));
  t.is((await getxattr(final, 'trusted.strata.id')).toString(), 'abc');
  t.deepEqual(await getxattr(final, 'user.k'), Buffer.from([0, 1, 2]));

  // create: a file made of log ranges only (a hole before them), no rename.
  const made = path.join(dir, 'made');
  t.is(await finishFile(made, { create: true, size: 200 * KiB, log: { fd: lfh.fd, ranges: [[0, 128 * KiB, 72 * KiB]] }, times: { atime, mtime } }), 72 * KiB);
  const m = await fs.readFile(made);
  t.true(m.subarray(0, 128 * KiB).equals(Buffer.alloc(128 * KiB)));
  t.true(m.subarray(128 * KiB).equals(logData.subarray(0, 72 * KiB)));
  t.is((await fs.stat(made)).mode & 0o777, 0o600);
  // create on a taken name: EEXIST, the file untouched.
  await rejectsWith(t, finishFile(made, { create: true, size: 0, times: { atime, mtime } }), ['EEXIST'], 'open');
  t.is((await fs.stat(made)).size, 200 * KiB);

  // A log range past the log's end: ENODATA from copy_file_range, and no rename.
  const short = path.join(dir, 'short');
  await fs.writeFile(short, 'x');
  await rejectsWith(t, finishFile(short, { log: { fd: lfh.fd, ranges: [[logData.length - 10, 0, 100]] }, times: { atime, mtime }, rename: path.join(dir, 'never') }), ['ENODATA'], 'copy_file_range');
  t.false(existsSync(path.join(dir, 'never')));
  t.not((await fs.stat(short, { bigint: true })).mtimeNs, 1_500_000_000_987_654_321n, 'no times after the failed copy');
  // A bad xattr namespace: the syscall that failed, nothing after it (no chmod, no rename).
  await rejectsWith(t, finishFile(short, { xattrs: [['bogus.ns', Buffer.from('x')]], mode: 0o4755, times: { atime, mtime }, rename: path.join(dir, 'never') }), ['EOPNOTSUPP', 'ENOTSUP'], 'fsetxattr');
  t.is((await fs.stat(short)).mode & 0o7777, 0o644);
  t.false(existsSync(path.join(dir, 'never')));
  await rejectsWith(t, finishFile(path.join(dir, 'missing'), { times: { atime, mtime } }), ['ENOENT'], 'open');
  await rejectsWith(t, finishFile(short, { times: { atime, mtime }, rename: path.join(dir, 'no', 'x') }), ['ENOENT'], 'rename');
  await rejectsWith(t, finishFile(short, { log: { fd: 987654, ranges: [[0, 0, 1]] }, times: { atime, mtime } }), ['EBADF'], 'copy_file_range');

  // Bad arguments: TypeError / RangeError naming the argument, nothing done.
  const now = { atime: 'now' as const, mtime: 'now' as const };
  await t.throwsAsync(finishFile(short, { size: -2, times: now }), { instanceOf: RangeError, message: /"size" is out of range/ });
  await t.throwsAsync(finishFile(short, { log: { fd: lfh.fd, ranges: [[0, -1, 5]] }, times: now }), { instanceOf: RangeError, message: /"ranges\[i\]" is out of range/ });
  await t.throwsAsync(finishFile(short, { xattrs: [['user.x', 'no' as unknown as Buffer]], times: now }), { instanceOf: TypeError, message: /values Buffers/ });
  await t.throwsAsync(finishFile(short, { times: { atime: { sec: 1, nsec: 1e9 }, mtime: 'now' } }), { instanceOf: RangeError, message: /"atime.nsec" is out of range/ });
  await t.throwsAsync(finishFile(short, { times: now, rename: 'a\0b' }), { instanceOf: TypeError, message: /without null bytes/ });
  t.is((await fs.stat(short)).mode & 0o7777, 0o644, 'no chmod from a refused call');
});

// --- readdirIno ---------------------------------------------------------------------------------

test('readdirIno: inode numbers match lstat, d_type correct, no . or ..', async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'file'), 'x');
  await fs.mkdir(path.join(dir, 'sub'));
  await fs.symlink('file', path.join(dir, 'link'));
  await mknod(path.join(dir, 'fifo'), fsc.S_IFIFO | 0o644, 0);
  await fs.writeFile(path.join(dir, 'héllo-✓'), 'utf8 name');

  const entries = await readdirIno(dir);
  const byName = new Map(entries.map((e) => [e.name, e]));
  t.deepEqual([...byName.keys()].sort(), ['fifo', 'file', 'héllo-✓', 'link', 'sub']);
  t.deepEqual([...byName.keys()].sort(), (await fs.readdir(dir)).sort());

  const expected: Record<string, number> = {
    file: DirentType.REG,
    sub: DirentType.DIR,
    link: DirentType.LNK,
    fifo: DirentType.FIFO,
    'héllo-✓': DirentType.REG,
  };
  t.is(DirentType.REG, 8);
  t.is(DirentType.DIR, 4);
  t.is(DirentType.LNK, 10);
  for (const [name, type] of Object.entries(expected)) {
    const e = byName.get(name);
    if (e === undefined) {
      t.fail(`missing ${name}`);
      continue;
    }
    t.is(typeof e.ino, 'bigint');
    t.is(e.ino, (await fs.lstat(path.join(dir, name), { bigint: true })).ino, name);
    t.is(e.type, type, name);
  }

  t.deepEqual(await readdirIno(path.join(dir, 'sub')), []);
  await rejectsWith(t, readdirIno(path.join(dir, 'missing')), ['ENOENT'], 'opendir');
  await rejectsWith(t, readdirIno(path.join(dir, 'file')), ['ENOTDIR'], 'opendir');
});

test('sha256Blocks: the digest of each consecutive block, as node:crypto computes it; bad lengths are refused', async (t) => {
  const data = randomBytes(3 * 65536 + 1234);
  const lengths = [65536, 0, 65536, 1, 65536 + 1233];
  const got = await sha256Blocks(data, lengths);
  t.is(got.length, 32 * lengths.length);
  let at = 0;
  lengths.forEach((n, i) => {
    t.is(got.toString('hex', 32 * i, 32 * (i + 1)), createHash('sha256').update(data.subarray(at, at + n)).digest('hex'), `block ${i}`);
    at += n;
  });
  t.is((await sha256Blocks(Buffer.alloc(0), [])).length, 0);
  await t.throwsAsync(async () => sha256Blocks(data, [data.length + 1]), { instanceOf: RangeError });
  await t.throwsAsync(async () => sha256Blocks(data, [65536, data.length]), { instanceOf: RangeError });
  await t.throwsAsync(async () => sha256Blocks(data, [1.5]), { instanceOf: RangeError });
  await t.throwsAsync(async () => sha256Blocks('x' as unknown as Buffer, [1]), { instanceOf: TypeError });
});

test('finishFile with data: a new file gets the bytes at offset 0 within its size (the rest zeros), then attributes, times and its name', async (t) => {
  const dir = await tmpDir(t);
  const tmp = path.join(dir, '.tmp');
  const final = path.join(dir, 'final');
  const data = randomBytes(5000);
  const atime = { sec: 1_600_000_000, nsec: 1 };
  const mtime = { sec: 1_500_000_000, nsec: 2 };
  t.is(await finishFile(tmp, { create: true, size: 8192, data, xattrs: [['user.k', Buffer.from('v')]], owner: { uid: 12, gid: 34 }, mode: 0o640, times: { atime, mtime }, rename: final }), 0);
  t.false(existsSync(tmp));
  t.deepEqual(await fs.readFile(final), Buffer.concat([data, Buffer.alloc(8192 - 5000)]));
  const st = await fs.stat(final, { bigint: true });
  t.is(Number(st.mode & 0o7777n), 0o640);
  t.is(Number(st.uid), 12);
  t.is(st.mtimeNs, 1_500_000_000_000_000_002n);
  t.deepEqual(await getxattr(final, 'user.k'), Buffer.from('v'));
  // create is O_EXCL: a name already there is EEXIST, and nothing is written.
  await fs.writeFile(tmp, 'old');
  const err = await t.throwsAsync(finishFile(tmp, { create: true, data, times: { atime, mtime }, rename: final }));
  t.is((err as NativeError).code, 'EEXIST');
  t.is(await fs.readFile(tmp, 'utf8'), 'old');
  await t.throwsAsync(async () => finishFile(tmp, { data: 'x' as unknown as Buffer, times: { atime, mtime } }), { instanceOf: TypeError });
});

// ---------------------------------------------------------------------------
// POSIX rules (native/fuse-native/src/posix_rules.h): checked against the
// kernel itself on a native directory, not against a second copy of the rule.

const rootOnly = process.getuid?.() === 0 ? test : test.skip;
if (process.getuid?.() !== 0) console.error('native: the POSIX rule tests are skipped: they need root (to write as another user)');

rootOnly('setIdDrop drops exactly the bits the kernel drops when another user writes to a file natively', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-setid-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.chmod(dir, 0o777);
  // Every combination of set-user-ID, set-group-ID and group-execute, writable by others.
  const modes = [0o4757, 0o2757, 0o2747, 0o6757, 0o6747, 0o4746, 0o0757, 0o6777, 0o2777, 0o6706];
  let compared = 0;
  for (const mode of modes) {
    const f = path.join(dir, `f${mode.toString(8)}`);
    await fs.writeFile(f, 'x');
    await fs.chown(f, 65534, 65534);
    await fs.chmod(f, mode);
    // Written by uid/gid 1000, which is neither the owner nor in the group: no CAP_FSETID.
    await execFile('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'sh', '-c', `printf y >> '${f}'`]);
    const after = (await fs.stat(f)).mode & 0o7777;
    t.is((await fs.readFile(f, 'utf8')), 'xy', `mode ${mode.toString(8)}: the other user's write went through`);
    // The writer is neither the owner nor in the file's group.
    t.is(after, mode & ~native.setIdDrop(0o100000 | mode, false), `mode ${mode.toString(8)}: the kernel left ${after.toString(8)}`);
    compared++;
  }
  t.is(compared, modes.length);
  t.is(native.setIdDrop(0o040000 | 0o6755, false), 0, 'never of a directory');
});

rootOnly('setIdDrop keeps set-group-ID without group-execute for a writer in the file\'s group, as the kernel does natively', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-setid-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.chmod(dir, 0o777);
  for (const [mode, how] of [[0o2767, ['--regid=65534']], [0o2767, ['--regid=1000', '--groups=65534']], [0o2777, ['--regid=65534']], [0o6767, ['--regid=65534']]] as const) {
    const f = path.join(dir, `g${mode.toString(8)}-${how.length}`);
    await fs.writeFile(f, 'x');
    await fs.chown(f, 65534, 65534);
    await fs.chmod(f, mode);
    const groupArgs = how.length === 1 ? [...how, '--clear-groups'] : how;
    await execFile('setpriv', ['--reuid=1000', ...groupArgs, 'sh', '-c', `printf y >> '${f}'`]);
    const after = (await fs.stat(f)).mode & 0o7777;
    t.is(native.setIdNeedsGroups(0o100000 | mode), (mode & 0o010) === 0);
    t.is(after, mode & ~native.setIdDrop(0o100000 | mode, true), `mode ${mode.toString(8)} (${how.join(' ')}): the kernel left ${after.toString(8)}`);
  }
});

rootOnly('newOwner gives a new object the owner and group the kernel gives a file another user creates natively', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'strata-owner-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.chmod(dir, 0o755);
  const daemon = { uid: 0, gid: 0 };
  for (const [parentMode, parentGid] of [[0o777, 0], [0o2777, 4321], [0o777, 4321], [0o2777, 0]] as const) {
    const p = path.join(dir, `p${parentMode.toString(8)}-${parentGid}`);
    await fs.mkdir(p);
    await fs.chown(p, 0, parentGid);
    await fs.chmod(p, parentMode);
    for (const caller of [{ uid: 1000, gid: 1000 }, { uid: 0, gid: 1000 }, { uid: 0, gid: 0 }, { uid: 1000, gid: 0 }]) {
      const f = path.join(p, `f${caller.uid}-${caller.gid}`);
      // What the kernel gives a file the caller creates itself ...
      await execFile('setpriv', [`--reuid=${caller.uid}`, `--regid=${caller.gid}`, '--clear-groups', 'sh', '-c', `: > '${f}'`]);
      const natively = await fs.stat(f);
      // ... and what strata gives one the daemon (root) creates for it: created by root, then newOwner.
      const g = `${f}.strata`;
      await fs.writeFile(g, '');
      const st = await fs.stat(g);
      const o = native.ownerNeedsParent(caller, daemon) ? native.newOwner(caller, (await fs.stat(p)).mode, daemon) : null;
      if (o !== null) await fs.chown(g, o.uid, o.gid === -1 ? st.gid : o.gid);
      const made = await fs.stat(g);
      t.deepEqual([made.uid, made.gid], [natively.uid, natively.gid], `parent ${parentMode.toString(8)} group ${parentGid}, caller ${caller.uid}:${caller.gid}`);
    }
  }
});

test('appendWrite: atomically at the end of a file whose descriptor is not O_APPEND, wherever another descriptor left it; resolves with where the bytes landed; errors with their syscall', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'log');
  await fs.writeFile(file, '0123456789');
  const fh = await fs.open(file, fsc.O_RDWR);
  const other = await fs.open(file, fsc.O_RDWR);
  try {
    t.deepEqual(await native.appendWrite(fh.fd, Buffer.from('ab'), 2), { written: 2, offset: 10 });
    await other.truncate(3);
    t.deepEqual(await native.appendWrite(fh.fd, Buffer.from('cdXX'), 2), { written: 2, offset: 3 }, 'only `length` bytes, at the end the truncation left');
    await other.write(Buffer.from('zz'), 0, 2, 8);
    t.deepEqual(await native.appendWrite(fh.fd, Buffer.from('ef'), 2), { written: 2, offset: 10 });
    t.is(await fs.readFile(file, 'latin1'), '012cd\0\0\0zzef');
    // A plain pwrite through the same descriptor still goes where it says: the descriptor is not O_APPEND.
    await fh.write(Buffer.from('Q'), 0, 1, 0);
    t.is((await fs.readFile(file, 'latin1'))[0], 'Q');
  } finally {
    await fh.close();
    await other.close();
  }
  const bad = await t.throwsAsync(native.appendWrite(99999, Buffer.from('x'), 1));
  t.is((bad as NodeJS.ErrnoException).code, 'EBADF');
  t.is((bad as NodeJS.ErrnoException).syscall, 'pwritev2');
  await t.throwsAsync(native.appendWrite(1, Buffer.from('x'), 5), { instanceOf: RangeError });
});
