// Unit tests of the filesystem core (src/core/filesystem.ts) without FUSE, of
// the errno mapping (src/errors/errno.ts) and of the kernel-view bookkeeping
// (src/core/node-table.ts).
//
// The tests' own checks use store-relative paths through the working
// directory and the process's umask (test/helpers/core-store.ts), so this
// file uses ONE store for all its tests and runs them serially. Every test works under its own top-level name, so their order does
// not matter.
import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import * as fsp from 'node:fs/promises';
import { Filesystem, type Caller } from '../../src/core/filesystem.js';
import { enterTempStore } from '../helpers/core-store.js';
import { RESERVED_NAME } from '../../src/store/local-store.js';
import { FsError, errnoOf, errnoForCode, isExpectedError, EIO } from '../../src/errors/errno.js';
import { InodeTable, ROOT_NODEID } from '../../src/core/node-table.js';
import { XATTR_CREATE, XATTR_REPLACE } from '../../src/native/index.js';

// ---- one store for the whole file ---------------------------------------------

const { base, store, leave } = await enterTempStore('strata-core-');
const core = new Filesystem(store);

test.after.always(leave);

const ROOT: Caller = { uid: 0, gid: 0, pid: process.pid };
// pid 0: no process to read supplementary groups from (a caller outside every group but its own).
const USER: Caller = { uid: 1234, gid: 5678, pid: 0 };
const S_IFMT = 0o170000;

// ---- helpers --------------------------------------------------------------------

/**
 * The error code `f` fails with, or undefined when it succeeds. A synchronous
 * throw counts like a rejection (some core methods validate before their
 * promise exists).
 */
async function codeOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f();
    return undefined;
  } catch (err) {
    if (err !== null && typeof err === 'object' && 'code' in err) return String((err as { code: unknown }).code);
    return `not a coded error: ${String(err)}`;
  }
}

function modeOf(st: { mode: bigint }): number {
  return Number(st.mode) & 0o7777;
}

function typeOf(st: { mode: bigint }): number {
  return Number(st.mode) & S_IFMT;
}

/** Creates `path` with `content` through the core and releases the handle. */
async function makeFile(path: string, content = '', mode = 0o644, caller: Caller = ROOT): Promise<void> {
  const { handle } = await core.create(path, mode, C.O_WRONLY, caller);
  if (content.length > 0) {
    const buf = Buffer.from(content);
    await core.write(handle, buf, buf.length, 0);
  }
  await core.release(handle);
}

/** The whole content of `path`, read through the core. */
async function readAll(path: string): Promise<string> {
  const { handle } = await core.open(path, C.O_RDONLY);
  try {
    const st = await core.fgetattr(handle);
    const buf = Buffer.alloc(Number(st.size) + 16);
    const n = await core.read(handle, buf, buf.length, 0);
    return buf.subarray(0, n).toString();
  } finally {
    await core.release(handle);
  }
}

async function names(path: string): Promise<string[]> {
  return (await core.readdir(path)).map((e) => e.name);
}

/** Asserts that no handle is left open in the core (each test releases its own). */
function noHandlesLeft(t: ExecutionContext): void {
  t.deepEqual([...core.handles.values()], [], 'no handle left open');
}

// ---- files: create, open, read, write, release ----------------------------------

test.serial('create, write, read, fgetattr and release', async (t) => {
  const res = await core.create('/f1', 0o640, C.O_RDWR, ROOT);
  t.true(res.handle > 0);
  t.true(res.fd >= 0);
  t.true(res.keepCache, 'a single-link file may keep its page cache');
  t.is(typeOf(res.stat), C.S_IFREG, 'create returns the attributes');
  t.is(res.stat.size, 0n);
  const data = Buffer.from('hello, strata');
  t.is(await core.write(res.handle, data, data.length, 0), data.length);
  const buf = Buffer.alloc(64);
  t.is(await core.read(res.handle, buf, 5, 7), 5);
  t.is(buf.subarray(0, 5).toString(), 'strat');
  t.is(await core.read(res.handle, buf, 64, 100), 0, 'read past the end');
  const st = await core.fgetattr(res.handle);
  t.is(typeOf(st), C.S_IFREG);
  t.is(modeOf(st), 0o640, 'mode is not masked again (umask 0, as in the daemon)');
  t.is(st.size, BigInt(data.length));
  t.is(st.uid, 0n);
  await core.flush(res.handle);
  await core.fsync(res.handle, false);
  await core.fsync(res.handle, true);
  await core.release(res.handle);
  t.is(core.handles.get(res.handle), undefined, 'the handle is gone');
  t.is(await codeOf(() => core.release(res.handle)), 'EBADF');
  t.is(await codeOf(() => core.read(res.handle, buf, 1, 0)), 'EBADF');
  t.is(await codeOf(() => core.write(res.handle, buf, 1, 0)), 'EBADF');
  t.is(await codeOf(() => core.fgetattr(res.handle)), 'EBADF');
  t.is(await codeOf(() => core.flush(res.handle)), 'EBADF');
  t.is(await readAll('/f1'), 'hello, strata');
  const byPath = await core.getattr('/f1');
  t.is(byPath.ino, st.ino);
  t.is(byPath.size, BigInt(data.length));
  noHandlesLeft(t);
});

test.serial('handle numbers are small and reused after release', async (t) => {
  await makeFile('/hn');
  const a = await core.open('/hn', C.O_RDONLY);
  const b = await core.open('/hn', C.O_RDONLY);
  t.not(a.handle, b.handle);
  await core.release(a.handle);
  const c = await core.open('/hn', C.O_RDONLY);
  t.is(c.handle, a.handle, 'the freed number comes back');
  await core.release(b.handle);
  await core.release(c.handle);
});

test.serial('create with O_EXCL on an existing name fails with EEXIST; without it, opens the file', async (t) => {
  await makeFile('/excl', 'keep');
  t.is(await codeOf(() => core.create('/excl', 0o644, C.O_WRONLY | C.O_EXCL, ROOT)), 'EEXIST');
  noHandlesLeft(t);
  const res = await core.create('/excl', 0o600, C.O_RDONLY, ROOT);
  await core.release(res.handle);
  t.is(await readAll('/excl'), 'keep', 'the existing file is untouched');
  t.is(modeOf(await core.getattr('/excl')), 0o644, 'an existing file keeps its mode');
  const fresh = await core.create('/excl2', 0o644, C.O_WRONLY | C.O_EXCL, ROOT);
  await core.release(fresh.handle);
  t.is(typeOf(await core.getattr('/excl2')), C.S_IFREG);
});

test.serial('open strips O_CREAT and O_EXCL: it never creates, and opens an existing file', async (t) => {
  t.is(await codeOf(() => core.open('/nocreate', C.O_WRONLY | C.O_CREAT)), 'ENOENT');
  await makeFile('/stripped', 'x');
  const res = await core.open('/stripped', C.O_RDONLY | C.O_CREAT | C.O_EXCL);
  await core.release(res.handle);
  t.pass();
});

test.serial('open and create with O_TRUNC empty the file', async (t) => {
  await makeFile('/trunc', '0123456789');
  const a = await core.open('/trunc', C.O_WRONLY | C.O_TRUNC);
  t.is((await core.fgetattr(a.handle)).size, 0n);
  await core.release(a.handle);
  await makeFile('/trunc', 'abc');
  const b = await core.create('/trunc', 0o644, C.O_WRONLY | C.O_TRUNC, ROOT);
  await core.release(b.handle);
  t.is((await core.getattr('/trunc')).size, 0n);
});

test.serial('a write that appends (the request says the file is O_APPEND) goes to the end whatever the position asked for; the store descriptor itself is not O_APPEND', async (t) => {
  await makeFile('/append', '0123456789');
  const res = await core.open('/append', C.O_WRONLY | C.O_APPEND);
  const end = Buffer.from('END');
  t.is(await core.write(res.handle, end, end.length, 0, undefined, undefined, true), 3);
  t.is(await core.write(res.handle, end, 1, 2, undefined, undefined, true), 1);
  t.is(await readAll('/append'), '0123456789ENDE');
  // The program cleared O_APPEND (fcntl F_SETFL): its next write goes where it says.
  t.is(await core.write(res.handle, Buffer.from('x'), 1, 0), 1);
  await core.release(res.handle);
  t.is(await readAll('/append'), 'x123456789ENDE');
  const c = await core.create('/append', 0o644, C.O_WRONLY | C.O_APPEND, ROOT);
  await core.write(c.handle, Buffer.from('!'), 1, 0, undefined, undefined, true);
  await core.write(c.handle, Buffer.from('y'), 1, 1);
  await core.release(c.handle);
  t.is(await readAll('/append'), 'xy23456789ENDE!');
});

test.serial('open never follows a symlink (O_NOFOLLOW): ELOOP', async (t) => {
  await makeFile('/nofollow-target', 'x');
  await core.symlink('nofollow-target', '/nofollow', ROOT);
  t.is(await codeOf(() => core.open('/nofollow', C.O_RDONLY)), 'ELOOP');
});

test.serial('open of a missing file: ENOENT; of a directory for writing: EISDIR', async (t) => {
  t.is(await codeOf(() => core.open('/missing', C.O_RDONLY)), 'ENOENT');
  await core.mkdir('/opendir-w', 0o755, ROOT);
  t.is(await codeOf(() => core.open('/opendir-w', C.O_WRONLY)), 'EISDIR');
  noHandlesLeft(t);
});

test.serial('fallocate through a handle extends the file', async (t) => {
  const res = await core.create('/falloc', 0o644, C.O_RDWR, ROOT);
  await core.fallocate(res.handle, 0, 0, 8192);
  t.is((await core.fgetattr(res.handle)).size, 8192n);
  await core.release(res.handle);
});

// ---- directories ------------------------------------------------------------------

test.serial('mkdir and rmdir; EEXIST, ENOTEMPTY, ENOTDIR, ENOENT', async (t) => {
  await core.mkdir('/dir', 0o750, ROOT);
  const st = await core.getattr('/dir');
  t.is(typeOf(st), C.S_IFDIR);
  t.is(modeOf(st), 0o750);
  t.is(await codeOf(() => core.mkdir('/dir', 0o755, ROOT)), 'EEXIST');
  await core.mkdir('/dir/sub', 0o755, ROOT);
  t.is(await codeOf(() => core.rmdir('/dir')), 'ENOTEMPTY');
  await core.rmdir('/dir/sub');
  await core.rmdir('/dir');
  t.is(await codeOf(() => core.getattr('/dir')), 'ENOENT');
  t.is(await codeOf(() => core.rmdir('/dir')), 'ENOENT');
  await makeFile('/notadir');
  t.is(await codeOf(() => core.rmdir('/notadir')), 'ENOTDIR');
  t.is(await codeOf(() => core.mkdir('/notadir/x', 0o755, ROOT)), 'ENOTDIR');
  t.is(await codeOf(() => core.mkdir('/nodir/x', 0o755, ROOT)), 'ENOENT');
});

test.serial('mkdir handles set-user-ID, set-group-ID and sticky bits as mkdir(2) does', async (t) => {
  // mkdir(2) keeps the sticky bit, and takes set-group-ID only from the parent.
  await core.mkdir('/bits', 0o7775, ROOT);
  const native = join(base, 'native-bits');
  const old = process.umask(0);
  await fsp.mkdir(native, 0o7775);
  process.umask(old);
  t.is(modeOf(await core.getattr('/bits')), (await fsp.stat(native)).mode & 0o7777);
  t.is(modeOf(await core.getattr('/bits')), 0o1775);
});

test.serial('readdir: "." and ".." first with their inode numbers, then every entry with its type', async (t) => {
  await core.mkdir('/rd', 0o755, ROOT);
  await makeFile('/rd/file');
  await core.mkdir('/rd/sub', 0o755, ROOT);
  await core.symlink('file', '/rd/link', ROOT);
  await core.mknod('/rd/fifo', C.S_IFIFO | 0o644, 0, ROOT);
  const entries = await core.readdir('/rd');
  t.deepEqual(entries.slice(0, 2).map((e) => e.name), ['.', '..']);
  t.is(entries[0]!.ino, (await core.getattr('/rd')).ino);
  t.is(entries[1]!.ino, (await core.getattr('/')).ino);
  t.is(entries[0]!.mode & S_IFMT, C.S_IFDIR);
  t.is(entries[1]!.mode & S_IFMT, C.S_IFDIR);
  const rest = entries.slice(2).sort((a, b) => a.name.localeCompare(b.name));
  t.deepEqual(rest.map((e) => [e.name, e.mode]), [
    ['fifo', C.S_IFIFO], ['file', C.S_IFREG], ['link', C.S_IFLNK], ['sub', C.S_IFDIR],
  ]);
  for (const e of rest) t.is(e.ino, (await core.getattr(`/rd/${e.name}`)).ino, e.name);
  // '..' of a nested directory is its parent.
  const nested = await core.readdir('/rd/sub');
  t.deepEqual(nested.map((e) => e.name), ['.', '..']);
  t.is(nested[1]!.ino, entries[0]!.ino);
  t.is(await codeOf(() => core.readdir('/rd/file')), 'ENOTDIR');
  t.is(await codeOf(() => core.readdir('/nope')), 'ENOENT');
});

test.serial('readdir of the root hides the reserved entry, and only at the root', async (t) => {
  const root = await core.readdir('/');
  t.deepEqual(root.slice(0, 2).map((e) => e.name), ['.', '..']);
  t.is(root[0]!.ino, root[1]!.ino, "the root's '..' is itself");
  t.false(root.some((e) => e.name === RESERVED_NAME));
  const backing = await fsp.readdir(store.root);
  t.true(backing.includes(RESERVED_NAME), 'the private directory exists in the store');
  await core.mkdir('/deep', 0o755, ROOT);
  await core.mkdir(`/deep/${RESERVED_NAME}`, 0o755, ROOT);
  t.true((await names('/deep')).includes(RESERVED_NAME), 'a nested .strata is an ordinary name');
  await makeFile(`/${RESERVED_NAME}x`);
  t.true((await names('/')).includes(`${RESERVED_NAME}x`), 'names that merely start with .strata are ordinary');
});

test.serial('opendir, releasedir, fsyncdir; opendir of a file: ENOTDIR', async (t) => {
  await core.mkdir('/od', 0o755, ROOT);
  const h = await core.opendir('/od');
  const entry = core.handles.get(h);
  t.is(entry?.kind, 'dir');
  await core.fsyncdir(h);
  await core.releasedir(h);
  t.is(await codeOf(() => core.releasedir(h)), 'EBADF');
  t.is(await codeOf(() => core.fsyncdir(h)), 'EBADF');
  await makeFile('/od/f');
  t.is(await codeOf(() => core.opendir('/od/f')), 'ENOTDIR');
  t.is(await codeOf(() => core.opendir('/od/none')), 'ENOENT');
  const fileHandle = (await core.open('/od/f', C.O_RDONLY)).handle;
  t.is(await codeOf(() => core.releasedir(fileHandle)), 'EBADF', 'a file handle is not a directory handle');
  t.is(core.handles.get(fileHandle)?.kind, 'file', 'a wrong releasedir leaves the file handle open');
  await core.release(fileHandle);
  const dirHandle = await core.opendir('/od');
  t.is(await codeOf(() => core.release(dirHandle)), 'EBADF', 'a directory handle is not a file handle');
  t.is(core.handles.get(dirHandle)?.kind, 'dir', 'a wrong release leaves the directory handle open');
  await core.releasedir(dirHandle);
  noHandlesLeft(t);
});

// ---- namespace ----------------------------------------------------------------------

test.serial('unlink: removes a file; ENOENT when missing; EISDIR for a directory', async (t) => {
  await makeFile('/ul', 'x');
  await core.unlink('/ul');
  t.is(await codeOf(() => core.getattr('/ul')), 'ENOENT');
  t.is(await codeOf(() => core.unlink('/ul')), 'ENOENT');
  await core.mkdir('/uld', 0o755, ROOT);
  t.is(await codeOf(() => core.unlink('/uld')), 'EISDIR');
  await core.symlink('nowhere', '/ulsym', ROOT);
  await core.unlink('/ulsym');
  t.is(await codeOf(() => core.getattr('/ulsym')), 'ENOENT');
});

test.serial('rename over a file, over an empty directory; a non-empty target: ENOTEMPTY', async (t) => {
  await core.mkdir('/rn', 0o755, ROOT);
  await makeFile('/rn/a', 'A');
  await makeFile('/rn/b', 'B');
  const inoA = (await core.getattr('/rn/a')).ino;
  await core.rename('/rn/a', '/rn/b');
  t.is(await codeOf(() => core.getattr('/rn/a')), 'ENOENT');
  t.is(await readAll('/rn/b'), 'A');
  t.is((await core.getattr('/rn/b')).ino, inoA, 'the object moved, its inode number with it');

  await core.mkdir('/rn/d1', 0o755, ROOT);
  await makeFile('/rn/d1/inside', 'i');
  await core.mkdir('/rn/empty', 0o755, ROOT);
  await core.rename('/rn/d1', '/rn/empty');
  t.is(await readAll('/rn/empty/inside'), 'i');
  t.is(await codeOf(() => core.getattr('/rn/d1')), 'ENOENT');

  await core.mkdir('/rn/d2', 0o755, ROOT);
  const code = await codeOf(() => core.rename('/rn/d2', '/rn/empty'));
  t.true(code === 'ENOTEMPTY' || code === 'EEXIST', `code ${code}`);
  t.is(code, 'ENOTEMPTY', 'ext4 and tmpfs say ENOTEMPTY, as Node reports');
  t.is(await codeOf(() => core.rename('/rn/b', '/rn/d2')), 'EISDIR', 'file over directory');
  t.is(await codeOf(() => core.rename('/rn/d2', '/rn/b')), 'ENOTDIR', 'directory over file');
  t.is(await codeOf(() => core.rename('/rn/d2', '/rn/d2/in')), 'EINVAL', 'into itself');
  t.is(await codeOf(() => core.rename('/rn/none', '/rn/x')), 'ENOENT');
  await core.rename('/rn/b', '/rn/d2/moved');
  t.is(await readAll('/rn/d2/moved'), 'A', 'across directories');
});

test.serial('link: the new name is the same object (same ino, nlink 2); EEXIST over a name', async (t) => {
  await makeFile('/ln1', 'shared');
  await core.link('/ln1', '/ln2');
  const a = await core.getattr('/ln1');
  const b = await core.getattr('/ln2');
  t.is(a.ino, b.ino);
  t.is(a.nlink, 2n);
  t.is(await readAll('/ln2'), 'shared');
  const res = await core.open('/ln1', C.O_RDONLY);
  t.false(res.keepCache, 'a hard-linked file does not keep its page cache');
  await core.release(res.handle);
  t.is(await codeOf(() => core.link('/ln1', '/ln2')), 'EEXIST');
  t.is(await codeOf(() => core.link('/lnmissing', '/ln3')), 'ENOENT');
  await core.unlink('/ln1');
  t.is((await core.getattr('/ln2')).nlink, 1n);
});

test.serial('symlink and readlink; readlink of a file: EINVAL', async (t) => {
  await core.symlink('some/where/../else', '/sl', ROOT);
  const st = await core.getattr('/sl');
  t.is(typeOf(st), C.S_IFLNK, 'getattr does not follow');
  t.is(st.size, BigInt('some/where/../else'.length));
  t.is(await core.readlink('/sl'), 'some/where/../else');
  t.is(await codeOf(() => core.symlink('x', '/sl', ROOT)), 'EEXIST');
  await makeFile('/slf');
  t.is(await codeOf(() => core.readlink('/slf')), 'EINVAL');
  t.is(await codeOf(() => core.readlink('/slmissing')), 'ENOENT');
});

test.serial('mknod makes a fifo with the mode asked for', async (t) => {
  await core.mknod('/fifo', C.S_IFIFO | 0o640, 0, ROOT);
  const st = await core.getattr('/fifo');
  t.is(typeOf(st), C.S_IFIFO);
  t.is(modeOf(st), 0o640);
  t.is(await codeOf(() => core.mknod('/fifo', C.S_IFIFO | 0o640, 0, ROOT)), 'EEXIST');
});

// ---- attributes ----------------------------------------------------------------------

test.serial('chmod keeps only the permission bits; chown changes owner and group, -1 leaves one alone', async (t) => {
  await makeFile('/attr');
  await core.chmod('/attr', C.S_IFREG | 0o4751);
  const st = await core.getattr('/attr');
  t.is(typeOf(st), C.S_IFREG);
  t.is(modeOf(st), 0o4751);
  await core.chown('/attr', 1000, 2000);
  let o = await core.getattr('/attr');
  t.deepEqual([o.uid, o.gid], [1000n, 2000n]);
  await core.chown('/attr', 0xffffffff, 3000);
  o = await core.getattr('/attr');
  t.deepEqual([o.uid, o.gid], [1000n, 3000n]);
  await core.chown('/attr', 4000, 0xffffffff);
  o = await core.getattr('/attr');
  t.deepEqual([o.uid, o.gid], [4000n, 3000n]);
  // chown of a symlink changes the link, not its target.
  await core.symlink('attr', '/attrlink', ROOT);
  await core.chown('/attrlink', 7, 8);
  const l = await core.getattr('/attrlink');
  t.deepEqual([l.uid, l.gid], [7n, 8n]);
  o = await core.getattr('/attr');
  t.deepEqual([o.uid, o.gid], [4000n, 3000n]);
  t.is(await codeOf(() => core.chmod('/attrmissing', 0o644)), 'ENOENT');
  t.is(await codeOf(() => core.chown('/attrmissing', 1, 1)), 'ENOENT');
});

test.serial('utimens sets exact nanoseconds; omit keeps a time; now takes the clock', async (t) => {
  await makeFile('/times');
  await core.utimens('/times', { sec: 1_000_000_000, nsec: 123_456_789 }, { sec: 1_234_567_890, nsec: 987_654_321 });
  let st = await core.getattr('/times');
  t.is(st.atimeNs, 1_000_000_000_123_456_789n);
  t.is(st.mtimeNs, 1_234_567_890_987_654_321n);
  await core.utimens('/times', 'omit', { sec: 5, nsec: 1 });
  st = await core.getattr('/times');
  t.is(st.atimeNs, 1_000_000_000_123_456_789n, 'atime omitted');
  t.is(st.mtimeNs, 5_000_000_001n);
  await core.utimens('/times', { sec: -315_619_200, nsec: 500_000_000 }, 'omit');
  st = await core.getattr('/times');
  t.is(st.atimeNs, -315_619_199_500_000_000n, 'before 1970');
  t.is(st.mtimeNs, 5_000_000_001n, 'mtime omitted');
  const before = BigInt(Date.now() - 2000) * 1_000_000n;
  await core.utimens('/times', 'now', 'omit');
  st = await core.getattr('/times');
  t.true(st.atimeNs >= before, 'atime now');
  t.is(st.mtimeNs, 5_000_000_001n);
  await core.utimens('/times', 'omit', 'now');
  st = await core.getattr('/times');
  t.true(st.mtimeNs >= before, 'mtime now');
  // A symlink's own times, never its target's.
  await core.symlink('times', '/timeslink', ROOT);
  const targetBefore = (await core.getattr('/times')).mtimeNs;
  await core.utimens('/timeslink', { sec: 42, nsec: 42 }, { sec: 43, nsec: 43 });
  const l = await core.getattr('/timeslink');
  t.is(l.atimeNs, 42_000_000_042n);
  t.is(l.mtimeNs, 43_000_000_043n);
  t.is((await core.getattr('/times')).mtimeNs, targetBefore);
  t.is(await codeOf(() => core.utimens('/timesmissing', 'now', 'now')), 'ENOENT');
});

test.serial('truncate grows and shrinks; a directory: EISDIR', async (t) => {
  await makeFile('/tr', '0123456789');
  await core.truncate('/tr', 4);
  t.is(await readAll('/tr'), '0123');
  await core.truncate('/tr', 6);
  t.is(await readAll('/tr'), '0123\0\0');
  await core.mkdir('/trd', 0o755, ROOT);
  t.is(await codeOf(() => core.truncate('/trd', 0)), 'EISDIR');
  t.is(await codeOf(() => core.truncate('/trmissing', 0)), 'ENOENT');
});

test.serial('fchmod, fchown, futimens and ftruncate act through a handle, even with no name left', async (t) => {
  const res = await core.create('/fh', 0o644, C.O_RDWR, ROOT);
  await core.write(res.handle, Buffer.from('abcdefgh'), 8, 0);
  await core.unlink('/fh');
  await core.fchmod(res.handle, 0o2600 | C.S_IFREG);
  await core.fchown(res.handle, 11, 22);
  await core.fchown(res.handle, 0xffffffff, 33);
  await core.ftruncate(res.handle, 3);
  await core.futimens(res.handle, { sec: 100, nsec: 200 }, { sec: 300, nsec: 400 });
  let st = await core.fgetattr(res.handle);
  t.is(modeOf(st), 0o2600);
  t.deepEqual([st.uid, st.gid], [11n, 33n]);
  t.is(st.atimeNs, 100_000_000_200n);
  t.is(st.mtimeNs, 300_000_000_400n);
  t.is(st.size, 3n);
  t.is(st.nlink, 0n);
  await core.fchown(res.handle, 44, 0xffffffff);
  await core.futimens(res.handle, 'omit', { sec: 7, nsec: 8 });
  st = await core.fgetattr(res.handle);
  t.deepEqual([st.uid, st.gid], [44n, 33n]);
  t.is(st.atimeNs, 100_000_000_200n);
  t.is(st.mtimeNs, 7_000_000_008n);
  // The path-based ops are told "" for an unlinked object.
  for (const [what, op] of [
    ['chmod', () => core.chmod('', 0o644)],
    ['chown', () => core.chown('', 1, 1)],
    ['utimens', () => core.utimens('', 'now', 'now')],
    ['truncate', () => core.truncate('', 0)],
    ['setxattr', () => core.setxattr('', 'user.x', Buffer.from('v'), 0)],
    ['getxattr', () => core.getxattr('', 'user.x')],
    ['listxattr', () => core.listxattr('')],
    ['removexattr', () => core.removexattr('', 'user.x')],
    ['readdir', () => core.readdir('')],
    ['getattr', () => core.getattr('')],
    ['open', () => core.open('', C.O_RDONLY)],
  ] as const) {
    t.is(await codeOf(op), 'ENOENT', what);
  }
  await core.release(res.handle);
  t.is(await codeOf(() => core.fchmod(res.handle, 0o644)), 'EBADF');
  t.is(await codeOf(() => core.fchown(res.handle, 1, 1)), 'EBADF');
  t.is(await codeOf(() => core.futimens(res.handle, 'now', 'now')), 'EBADF');
  t.is(await codeOf(() => core.ftruncate(res.handle, 0)), 'EBADF');
  t.is(await codeOf(() => core.fsync(res.handle, false)), 'EBADF');
  t.is(await codeOf(() => core.fallocate(res.handle, 0, 0, 1)), 'EBADF');
});

test.serial('access checks existence and permissions as the daemon', async (t) => {
  await makeFile('/acc');
  await core.access('/acc', C.F_OK);
  await core.access('/acc', C.R_OK | C.W_OK);
  t.is(await codeOf(() => core.access('/accmissing', C.F_OK)), 'ENOENT');
});

test.serial('statfs reports the store disk', async (t) => {
  const s = await core.statfs();
  const backing = await fsp.statfs(store.root);
  t.is(s.bsize, backing.bsize);
  t.is(s.frsize, s.bsize);
  t.is(s.blocks, backing.blocks);
  t.true(s.bfree > 0 && s.bavail > 0 && s.bavail <= s.bfree && s.bfree <= s.blocks);
  t.true(s.files > 0 && s.ffree > 0);
  t.is(s.favail, s.ffree);
  t.is(s.namemax, 255);
});

// ---- extended attributes ---------------------------------------------------------------

test.serial('xattrs: set, get, list, remove; missing: ENODATA; create and replace flags', async (t) => {
  await makeFile('/xa');
  await core.setxattr('/xa', 'user.one', Buffer.from('1'), 0);
  const big = Buffer.alloc(3000, 0x78);
  await core.setxattr('/xa', 'user.two', big, 0);
  t.deepEqual(await core.getxattr('/xa', 'user.one'), Buffer.from('1'));
  t.true((await core.getxattr('/xa', 'user.two')).equals(big));
  t.deepEqual((await core.listxattr('/xa')).filter((n) => n.startsWith('user.')).sort(), ['user.one', 'user.two']);
  await core.setxattr('/xa', 'user.one', Buffer.alloc(0), 0);
  t.is((await core.getxattr('/xa', 'user.one')).length, 0, 'an empty value is a value');
  await core.removexattr('/xa', 'user.one');
  t.is(await codeOf(() => core.getxattr('/xa', 'user.one')), 'ENODATA');
  t.is(await codeOf(() => core.removexattr('/xa', 'user.one')), 'ENODATA');
  t.deepEqual((await core.listxattr('/xa')).filter((n) => n.startsWith('user.')), ['user.two']);
  t.is(await codeOf(() => core.setxattr('/xa', 'user.two', Buffer.from('v'), XATTR_CREATE)), 'EEXIST');
  t.is(await codeOf(() => core.setxattr('/xa', 'user.new', Buffer.from('v'), XATTR_REPLACE)), 'ENODATA');
  await core.setxattr('/xa', 'user.two', Buffer.from('v'), XATTR_REPLACE);
  t.deepEqual(await core.getxattr('/xa', 'user.two'), Buffer.from('v'));
  t.is(await codeOf(() => core.getxattr('/xamissing', 'user.one')), 'ENOENT');
  // ENODATA maps to its errno on the way to the kernel.
  const err = await t.throwsAsync(() => core.getxattr('/xa', 'user.none'));
  t.is(errnoOf(err), -61);
});

test.serial('xattrs on a directory and (not following) on a symlink', async (t) => {
  await core.mkdir('/xad', 0o755, ROOT);
  await core.setxattr('/xad', 'user.d', Buffer.from('dir'), 0);
  t.deepEqual(await core.getxattr('/xad', 'user.d'), Buffer.from('dir'));
  await makeFile('/xatarget');
  await core.setxattr('/xatarget', 'user.t', Buffer.from('t'), 0);
  await core.symlink('xatarget', '/xalink', ROOT);
  t.is(await codeOf(() => core.getxattr('/xalink', 'user.t')), 'ENODATA', "the link's own attributes, not its target's");
  t.is(await codeOf(() => core.setxattr('/xalink', 'user.t', Buffer.from('t'), 0)), 'EPERM', 'user.* is not allowed on a symlink');
});

// ---- the reserved name ----------------------------------------------------------------------

test.serial('the reserved entry does not exist and cannot be created', async (t) => {
  const R = `/${RESERVED_NAME}`;
  t.is(await codeOf(() => core.getattr(R)), 'ENOENT');
  t.is(await codeOf(() => core.getattr(`${R}/daemon.log`)), 'ENOENT');
  t.is(await codeOf(() => core.readdir(R)), 'ENOENT');
  t.is(await codeOf(() => core.opendir(R)), 'ENOENT');
  t.is(await codeOf(() => core.open(R, C.O_RDONLY)), 'ENOENT');
  t.is(await codeOf(() => core.unlink(R)), 'ENOENT');
  t.is(await codeOf(() => core.rmdir(R)), 'ENOENT');
  t.is(await codeOf(() => core.chmod(R, 0o777)), 'ENOENT');
  t.is(await codeOf(() => core.getxattr(R, 'user.x')), 'ENOENT');
  t.is(await codeOf(() => core.rename(R, '/stolen')), 'ENOENT');
  t.is(await codeOf(() => core.link(R, '/stolen')), 'ENOENT');

  t.is(await codeOf(() => core.create(R, 0o644, C.O_WRONLY, ROOT)), 'EPERM');
  t.is(await codeOf(() => core.create(`${R}/x`, 0o644, C.O_WRONLY, ROOT)), 'EPERM');
  t.is(await codeOf(() => core.mkdir(R, 0o755, ROOT)), 'EPERM');
  t.is(await codeOf(() => core.mkdir(`${R}/x`, 0o755, ROOT)), 'EPERM');
  t.is(await codeOf(() => core.mknod(R, C.S_IFIFO | 0o644, 0, ROOT)), 'EPERM');
  t.is(await codeOf(() => core.symlink('x', R, ROOT)), 'EPERM');
  await makeFile('/resv');
  t.is(await codeOf(() => core.link('/resv', R)), 'EPERM');
  t.is(await codeOf(() => core.rename('/resv', R)), 'EPERM');
  t.is(await codeOf(() => core.rename('/resv', `${R}/x`)), 'EPERM');
  noHandlesLeft(t);
  // The private directory is untouched.
  t.true((await fsp.lstat(store.privateDir)).isDirectory());
  t.is(await codeOf(() => fsp.lstat(join(store.privateDir, 'x'))), 'ENOENT');
});

test.serial('paths that are not absolute namespace paths: ENOENT', async (t) => {
  t.is(await codeOf(() => core.getattr('relative')), 'ENOENT');
  t.is(await codeOf(() => core.mkdir('relative', 0o755, ROOT)), 'ENOENT');
});

// ---- ownership -------------------------------------------------------------------------------

test.serial('objects created for a caller belong to its uid and gid', async (t) => {
  await core.mkdir('/own', 0o777, ROOT);
  const res = await core.create('/own/file', 0o640, C.O_WRONLY, USER);
  await core.release(res.handle);
  await core.mkdir('/own/dir', 0o750, USER);
  await core.symlink('file', '/own/link', USER);
  await core.mknod('/own/fifo', C.S_IFIFO | 0o600, 0, USER);
  for (const name of ['file', 'dir', 'link', 'fifo']) {
    const st = await core.getattr(`/own/${name}`);
    t.deepEqual([st.uid, st.gid], [1234n, 5678n], name);
  }
  t.is(modeOf(await core.getattr('/own/file')), 0o640);
  t.is(modeOf(await core.getattr('/own/dir')), 0o750);
  // A hard link is the same object: no new owner.
  await core.link('/own/file', '/own/hard');
  t.is((await core.getattr('/own/hard')).uid, 1234n);
  // Root's own objects stay root's.
  await makeFile('/own/rootfile');
  const r = await core.getattr('/own/rootfile');
  t.deepEqual([r.uid, r.gid], [0n, 0n]);
  // A caller with the daemon's uid but another gid gets that gid.
  const g = await core.create('/own/rootgid', 0o644, C.O_WRONLY, { uid: 0, gid: 99, pid: 1 });
  await core.release(g.handle);
  const rg = await core.getattr('/own/rootgid');
  t.deepEqual([rg.uid, rg.gid], [0n, 99n]);
});

test.serial('in a set-group-ID directory new objects take its group; subdirectories keep the bit', async (t) => {
  await core.mkdir('/sg', 0o777, ROOT);
  await core.chown('/sg', 0, 777);
  await core.chmod('/sg', 0o2777);
  const res = await core.create('/sg/file', 0o644, C.O_WRONLY, USER);
  await core.release(res.handle);
  await core.mkdir('/sg/sub', 0o755, USER);
  await core.symlink('file', '/sg/link', USER);
  const f = await core.getattr('/sg/file');
  t.deepEqual([f.uid, f.gid], [1234n, 777n], 'file: caller uid, directory gid');
  const d = await core.getattr('/sg/sub');
  t.deepEqual([d.uid, d.gid], [1234n, 777n], 'subdirectory: caller uid, directory gid');
  t.is(modeOf(d) & 0o2000, 0o2000, 'the subdirectory keeps the set-group-ID bit');
  t.is(modeOf(d), 0o2755);
  const l = await core.getattr('/sg/link');
  t.deepEqual([l.uid, l.gid], [1234n, 777n], 'symlink');
  // And deeper: the subdirectory passes it on.
  await core.mkdir('/sg/sub/deeper', 0o700, { uid: 1, gid: 2, pid: 1 });
  const dd = await core.getattr('/sg/sub/deeper');
  t.deepEqual([dd.uid, dd.gid], [1n, 777n]);
  t.is(modeOf(dd), 0o2700);
  // Root creating inside keeps the directory's group too.
  await makeFile('/sg/byroot');
  t.is((await core.getattr('/sg/byroot')).gid, 777n);
  noHandlesLeft(t);
});

// ---- errno mapping ----------------------------------------------------------------------------

test.serial('errnoOf: known codes become their negative errno, without reporting', (t) => {
  const seen: unknown[] = [];
  const sink = (e: unknown): void => { seen.push(e); };
  t.is(errnoOf(new FsError('ENOENT'), sink), -2);
  t.is(errnoOf(new FsError('EPERM', 'why'), sink), -1);
  t.is(errnoOf(Object.assign(new Error('x'), { code: 'ENODATA' }), sink), -61);
  t.is(errnoOf({ code: 'ENOTEMPTY' }, sink), -39);
  t.is(errnoOf({ code: 'EXDEV' }, sink), -18);
  t.is(errnoOf({ code: 'ENOTSUP' }, sink), -95, "libuv's name for errno 95");
  t.is(errnoOf({ code: 'EOPNOTSUPP' }, sink), -95);
  t.is(errnoOf({ code: 'ESTALE' }, sink), -116);
  t.deepEqual(seen, []);
});

test.serial('errnoOf: a real Node system error keeps its code', async (t) => {
  const err = await t.throwsAsync(() => fsp.lstat(join(base, 'does-not-exist')));
  let reported = false;
  t.is(errnoOf(err, () => { reported = true; }), -2);
  t.false(reported);
});

test.serial('errnoOf: anything else is EIO (-5) and goes to the sink', (t) => {
  const odd: unknown[] = [
    new Error('plain'),
    Object.assign(new Error('unknown code'), { code: 'ERR_INVALID_ARG_TYPE' }),
    { code: 'EWHATEVER' },
    { code: 2 },
    'a string',
    42,
    null,
    undefined,
    new TypeError('bad argument'),
  ];
  for (const e of odd) {
    const seen: unknown[] = [];
    t.is(errnoOf(e, (x) => seen.push(x)), -5, String(e));
    t.is(seen.length, 1, `reported once: ${String(e)}`);
    t.is(seen[0], e);
  }
  t.is(errnoOf(new Error('no sink')), EIO, 'works without a sink');
  t.is(EIO, -5);
});

test.serial('FsError, errnoForCode and isExpectedError', (t) => {
  const e = new FsError('EEXIST', 'it is there');
  t.true(e instanceof Error);
  t.is(e.name, 'FsError');
  t.is(e.code, 'EEXIST');
  t.is(e.errno, -17);
  t.is(e.message, 'EEXIST: it is there');
  t.is(new FsError('EIO').message, 'EIO');
  t.is(errnoForCode('EACCES'), -13);
  t.is(errnoForCode('NOPE'), undefined);
  for (const n of [-2, -61, -17, -39, -13, -1, -20, -21, -34, -36, -22, -18, -40, -95]) t.true(isExpectedError(n), String(n));
  for (const n of [-5, -9, -116, -28, 0]) t.false(isExpectedError(n), String(n));
});

// ---- the inode table ------------------------------------------------------------------------------

test.serial('InodeTable: the root is node 1 at "/"', (t) => {
  const tab = new InodeTable(10n);
  t.is(tab.root.nodeid, ROOT_NODEID);
  t.is(ROOT_NODEID, 1);
  t.is(tab.get(1), tab.root);
  t.is(tab.pathOf(tab.root), '/');
  t.is(tab.size, 1);
  t.false(tab.root.isNameless);
  t.is(tab.childPath(tab.root, 'x'), '/x');
  tab.forget(ROOT_NODEID, 100);
  t.is(tab.get(1), tab.root, 'the root is never forgotten');
  tab.forget(999, 1); // unknown: ignored
  const err = t.throws(() => tab.get(999));
  t.is((err as FsError).code, 'ESTALE');
});

test.serial('InodeTable: remember counts lookups; forget and collect drop the node at zero', (t) => {
  const tab = new InodeTable(10n);
  const a = tab.remember(tab.root, 'a', 20n);
  t.is(a.nodeid, 2);
  t.is(a.ino, 20n);
  t.is(a.nlookup, 1);
  t.is(tab.remember(tab.root, 'a', 20n), a, 'the same object again');
  t.is(a.nlookup, 2);
  t.is(a.links.length, 1, 'no duplicate link');
  t.is(tab.pathOf(a), '/a');
  t.is(tab.size, 2);
  tab.forget(a.nodeid, 1);
  t.is(tab.get(a.nodeid), a, 'one lookup left');
  tab.forget(a.nodeid, 1);
  t.throws(() => tab.get(a.nodeid));
  t.false(tab.root.children.has('a'));
  t.is(tab.size, 1);
  // An open handle keeps it alive past its last lookup; collect drops it once closed.
  const b = tab.remember(tab.root, 'b', 30n);
  b.handles.add(7);
  tab.forget(b.nodeid, 1);
  t.is(tab.get(b.nodeid), b);
  b.handles.delete(7);
  tab.collect(b);
  t.throws(() => tab.get(b.nodeid));
  // Node ids are never reused, even for the same backing inode.
  const a2 = tab.remember(tab.root, 'a', 20n);
  t.not(a2.nodeid, a.nodeid);
  t.not(a2.nodeid, b.nodeid);
  t.is(a2.nodeid, 4);
  // collect of a node still looked up does nothing.
  tab.collect(a2);
  t.is(tab.get(a2.nodeid), a2);
});

test.serial('InodeTable: hard links share one node id', (t) => {
  const tab = new InodeTable(10n);
  const d = tab.remember(tab.root, 'd', 11n);
  const x = tab.remember(tab.root, 'x', 50n);
  const y = tab.remember(d, 'y', 50n);
  t.is(y, x);
  t.is(x.nlookup, 2);
  t.deepEqual(x.links.map((l) => [l.parent.nodeid, l.name]), [[1, 'x'], [d.nodeid, 'y']]);
  t.is(tab.pathOf(x), '/x', 'the first name');
  t.is(tab.root.children.get('x'), x);
  t.is(d.children.get('y'), x);
  tab.forgetName(tab.root, 'x');
  t.is(tab.pathOf(x), '/d/y', 'the other name remains');
  t.false(x.isNameless);
  t.is(tab.remember(tab.root, 'z', 50n), x, 'still found by its backing inode');
  t.is(tab.size, 3);
});

test.serial('InodeTable: pathOf of nested objects, and childPath', (t) => {
  const tab = new InodeTable(10n);
  const a = tab.remember(tab.root, 'a', 11n);
  const b = tab.remember(a, 'b', 12n);
  const c = tab.remember(b, 'c', 13n);
  t.is(tab.pathOf(c), '/a/b/c');
  t.is(tab.requirePath(b), '/a/b');
  t.is(tab.childPath(c, 'd'), '/a/b/c/d');
  // An object under a nameless directory has no path either.
  tab.forgetName(tab.root, 'a');
  t.true(a.isNameless);
  t.is(tab.pathOf(a), null);
  t.is(tab.pathOf(c), null);
  const err = t.throws(() => tab.requirePath(c));
  t.is((err as FsError).code, 'ENOENT');
  t.throws(() => tab.childPath(b, 'x'));
});

test.serial('InodeTable: moveName renames, carries the subtree, and replaces the target', (t) => {
  const tab = new InodeTable(10n);
  const d = tab.remember(tab.root, 'd', 11n);
  const f = tab.remember(d, 'f', 12n);
  const e = tab.remember(tab.root, 'e', 13n);
  tab.moveName(tab.root, 'd', e, 'moved');
  t.is(tab.pathOf(d), '/e/moved');
  t.is(tab.pathOf(f), '/e/moved/f');
  t.false(tab.root.children.has('d'));
  t.is(e.children.get('moved'), d);
  t.is(d.links.length, 1);
  // Rename over an existing name: the old object loses that name.
  const g = tab.remember(tab.root, 'g', 14n);
  tab.moveName(e, 'moved', tab.root, 'g');
  t.is(tab.pathOf(d), '/g');
  t.true(g.isNameless);
  t.is(tab.pathOf(g), null);
  t.is(tab.get(g.nodeid), g, 'still known to the kernel');
  // A name the kernel never looked up: only the target is forgotten.
  const h = tab.remember(tab.root, 'h', 15n);
  tab.moveName(tab.root, 'unknown', tab.root, 'h');
  t.true(h.isNameless);
  // One of two hard links moves; the other stays.
  const x = tab.remember(tab.root, 'x', 16n);
  tab.remember(tab.root, 'x2', 16n);
  tab.moveName(tab.root, 'x', d, 'xm');
  t.deepEqual(x.links.map((l) => l.name).sort(), ['x2', 'xm']);
  t.is(d.children.get('xm'), x);
  t.is(tab.root.children.get('x2'), x);
});

test.serial('InodeTable: exchangeNames swaps two names\' objects with their subtrees; an unknown side leaves its name unknown', (t) => {
  const tab = new InodeTable(10n);
  const d = tab.remember(tab.root, 'd', 11n);
  const f = tab.remember(d, 'f', 12n);
  const e = tab.remember(tab.root, 'e', 13n);
  const g = tab.remember(e, 'g', 14n);
  tab.exchangeNames(tab.root, 'd', e, 'g');
  t.is(tab.pathOf(d), '/e/g');
  t.is(tab.pathOf(f), '/e/g/f');
  t.is(tab.pathOf(g), '/d');
  t.is(tab.root.children.get('d'), g);
  t.is(e.children.get('g'), d);
  t.deepEqual([d.links.length, g.links.length], [1, 1]);
  // One side never looked up: the known one moves, the other name is left for a lookup.
  tab.exchangeNames(tab.root, 'd', tab.root, 'unknown');
  t.is(tab.pathOf(g), '/unknown');
  t.false(tab.root.children.has('d'));
  // One of two hard links swaps with another file: the other link stays.
  const x = tab.remember(tab.root, 'x', 16n);
  tab.remember(tab.root, 'x2', 16n);
  tab.exchangeNames(tab.root, 'x', tab.root, 'unknown');
  t.deepEqual(x.links.map((l) => l.name).sort(), ['unknown', 'x2']);
  t.is(tab.root.children.get('x'), g);
  t.is(tab.pathOf(g), '/x');
  // Two names of one object: nothing changes.
  tab.exchangeNames(tab.root, 'unknown', tab.root, 'x2');
  t.deepEqual(x.links.map((l) => l.name).sort(), ['unknown', 'x2']);
});

test.serial('InodeTable: moveName to the same name keeps the object named', (t) => {
  // The kernel answers rename(a, a) itself, but the table must stay sound anyway.
  const tab = new InodeTable(10n);
  const a = tab.remember(tab.root, 'a', 11n);
  tab.moveName(tab.root, 'a', tab.root, 'a');
  t.is(tab.pathOf(a), '/a');
  t.is(tab.root.children.get('a'), a);
});

test.serial('InodeTable: forgetName leaves a nameless node whose backing inode a new object may reuse', (t) => {
  const tab = new InodeTable(10n);
  const old = tab.remember(tab.root, 'f', 40n);
  old.handles.add(3); // unlinked while open
  tab.forgetName(tab.root, 'f');
  t.true(old.isNameless);
  t.is(tab.pathOf(old), null);
  t.false(tab.root.children.has('f'));
  t.is(tab.get(old.nodeid), old, 'still known while the kernel holds it');
  // The store reuses inode 40 for a new file: it must be a new node.
  const fresh = tab.remember(tab.root, 'g', 40n);
  t.not(fresh, old);
  t.not(fresh.nodeid, old.nodeid);
  t.is(tab.pathOf(fresh), '/g');
  t.is(tab.pathOf(old), null, 'the old node does not pick up the new name');
  // The old node goes away without disturbing the new one.
  old.handles.delete(3);
  tab.forget(old.nodeid, 1);
  t.throws(() => tab.get(old.nodeid));
  t.is(tab.remember(tab.root, 'g', 40n), fresh, 'the backing inode still resolves to the new node');
  t.is(fresh.nlookup, 2);
  t.is(tab.root.children.get('g'), fresh);
  // forgetName of a name nobody looked up does nothing.
  tab.forgetName(tab.root, 'nothing');
  t.is(tab.size, 2);
});

test.serial('InodeTable: remember over a stale name replaces the old object', (t) => {
  // The store changed behind the kernel's back: 'a' is another object now.
  const tab = new InodeTable(10n);
  const first = tab.remember(tab.root, 'a', 60n);
  const second = tab.remember(tab.root, 'a', 61n);
  t.not(first, second);
  t.is(tab.root.children.get('a'), second);
  t.true(first.isNameless);
  t.is(tab.pathOf(second), '/a');
  const again = tab.remember(tab.root, 'b', 60n);
  t.not(again, first, 'the nameless node is not found by its old backing inode');
});

test.serial('InodeTable: a forgotten directory no longer leads to a child that lives on through another name', (t) => {
  // The kernel forgot directory d (no dentry under it left) while file x stayed
  // known through /a; x's name d/e must not go through the dropped node.
  const tab = new InodeTable(10n);
  const d = tab.remember(tab.root, 'd', 11n);
  const x = tab.remember(d, 'e', 20n);
  tab.remember(tab.root, 'a', 20n);
  tab.forget(x.nodeid, 1); // the dentry d/e went first
  tab.forget(d.nodeid, 1);
  t.throws(() => tab.get(d.nodeid));
  t.deepEqual(x.links.map((l) => [l.parent.nodeid, l.name]), [[1, 'a']]);
  t.is(d.children.size, 0);
  // d is looked up again (a new node), then d/e: the same node as x.
  const d2 = tab.remember(tab.root, 'd', 11n);
  t.not(d2, d);
  t.is(tab.remember(d2, 'e', 20n), x, 'x is still found by its backing inode');
  tab.forgetName(tab.root, 'a', true);
  t.is(tab.pathOf(x), '/d/e');
});

test.serial('InodeTable: a removed name of an object with other names keeps its backing inode mapped', (t) => {
  const tab = new InodeTable(10n);
  const x = tab.remember(tab.root, 'a', 30n); // its other name 'b' was never looked up
  x.handles.add(1);
  tab.forgetName(tab.root, 'a', true);
  t.true(x.isNameless);
  t.is(tab.remember(tab.root, 'b', 30n), x, "'b' is the same object: the same node");
  t.is(tab.pathOf(x), '/b');
  // Its last name goes: now the inode number may be reused by a new object.
  tab.forgetName(tab.root, 'b', false);
  const y = tab.remember(tab.root, 'c', 30n);
  t.not(y, x);
  // A rename over an object with other names: the same.
  const z = tab.remember(tab.root, 'z', 40n);
  tab.remember(tab.root, 'w', 41n);
  tab.moveName(tab.root, 'w', tab.root, 'z', true);
  t.true(z.isNameless);
  t.is(tab.remember(tab.root, 'z2', 40n), z);
  tab.moveName(tab.root, 'c', tab.root, 'z2', false);
  t.not(tab.remember(tab.root, 'z3', 40n), z, 'after its last name went, 40 is a new object');
});

test.serial('InodeTable: pathOf uses the first name that still leads to the root', (t) => {
  const tab = new InodeTable(10n);
  const d = tab.remember(tab.root, 'd', 11n);
  const x = tab.remember(d, 'e', 20n);
  tab.remember(tab.root, 'a', 20n);
  tab.forgetName(tab.root, 'd'); // d loses its name (the table alone allows it)
  t.is(tab.pathOf(d), null);
  t.is(tab.pathOf(x), '/a', 'the name through the nameless directory is skipped');
  tab.forgetName(tab.root, 'a');
  t.is(tab.pathOf(x), null);
});

test.serial('handle_killpriv_v2: write, fallocate and truncation with dropSetId drop set-user-ID, set-group-ID with group-execute, and without it for a writer outside the group; without it nothing goes', async (t) => {
  // The kernel leaves the drop to strata and flags the request (the adapter passes the caller).
  // Two real processes as callers: their supplementary groups are read from /proc (the file's group is 0, root's).
  const outside = spawn('setpriv', ['--reuid=1234', '--regid=5678', '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  const inside = spawn('setpriv', ['--reuid=1234', '--regid=5678', '--groups=0', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => { outside.kill(); inside.kill(); });
  await new Promise((r) => setTimeout(r, 200)); // setpriv has become sleep with its groups
  const callers = { outside: { ...USER, pid: outside.pid! }, inside: { ...USER, pid: inside.pid! } };
  // [mode, after a drop by a writer outside the file's group, after one by a writer in it]
  const modes: ReadonlyArray<[number, number, number]> = [
    [0o4755, 0o755, 0o755], [0o6775, 0o775, 0o775], [0o2775, 0o775, 0o775], [0o2745, 0o745, 0o2745], [0o644, 0o644, 0o644],
  ];
  let n = 0;
  for (const [before, afterOutside, afterInside] of modes) {
    for (const how of ['write', 'fallocate', 'truncate', 'ftruncate'] as const) {
      for (const who of ['outside', 'inside', null] as const) {
        const drop = who === null ? undefined : callers[who];
        const path = `/kill${n++}`;
        await makeFile(path, 'content');
        await core.chmod(path, before);
        if (how === 'truncate') {
          await core.setattr({ path }, { size: 3, ...(drop ? { dropSetId: drop } : {}) });
        } else {
          const res = await core.open(path, C.O_RDWR, USER);
          if (how === 'write') t.is(await core.write(res.handle, Buffer.from('x'), 1, 7, drop), 1);
          else if (how === 'fallocate') await core.fallocate(res.handle, 0, 0, 8192, drop);
          else await core.setattr({ handle: res.handle }, { size: 3, ...(drop ? { dropSetId: drop } : {}) });
          await core.release(res.handle);
        }
        const want = who === null ? before : who === 'outside' ? afterOutside : afterInside;
        t.is(modeOf(await core.getattr(path)), want, `${before.toString(8)} ${how} by ${who ?? 'a writer with CAP_FSETID'}`);
      }
    }
  }
  noHandlesLeft(t);
});

test.serial('a truncating open by an unprivileged caller drops set-user-ID, set-group-ID with group-execute, and without it when the caller is outside the group', async (t) => {
  // atomic_o_trunc leaves the truncation to strata, which truncates as root.
  const cases: ReadonlyArray<[number, Caller | undefined, number, number, string]> = [
    [0o4755, USER, C.O_WRONLY | C.O_TRUNC, 0o755, 'set-user-ID goes'],
    [0o6775, USER, C.O_WRONLY | C.O_TRUNC, 0o775, 'both go when group-execute is set'],
    [0o2775, USER, C.O_RDWR | C.O_TRUNC, 0o775, 'set-group-ID with group-execute goes'],
    [0o2745, USER, C.O_WRONLY | C.O_TRUNC, 0o745, 'set-group-ID without group-execute goes for a caller outside the file\'s group (as natively, Linux 6.2 on)'],
    [0o2745, { ...USER, gid: 0 }, C.O_WRONLY | C.O_TRUNC, 0o2745, 'set-group-ID without group-execute stays for a caller in the file\'s group'],
    [0o4755, ROOT, C.O_WRONLY | C.O_TRUNC, 0o4755, 'root (CAP_FSETID) keeps them'],
    [0o4755, USER, C.O_WRONLY, 0o4755, 'no O_TRUNC, nothing dropped'],
    [0o4755, undefined, C.O_WRONLY | C.O_TRUNC, 0o4755, 'no caller, nothing dropped'],
  ];
  for (const [i, [before, caller, flags, after, why]] of cases.entries()) {
    const path = `/setid${i}`;
    await makeFile(path, 'content');
    await core.chmod(path, before);
    const res = await core.open(path, flags, caller);
    t.is(modeOf(res.stat), after, `${why}: the returned attributes`);
    t.is(res.stat.size, (flags & C.O_TRUNC) !== 0 ? 0n : 7n);
    await core.release(res.handle);
    t.is(modeOf(await core.getattr(path)), after, why);
  }
  // A directory opened with O_TRUNC cannot happen (EISDIR); a fifo keeps its bits.
  await core.mknod('/setidfifo', C.S_IFIFO | 0o644, 0, ROOT);
  await core.chmod('/setidfifo', 0o4644);
  const fifo = await core.open('/setidfifo', C.O_RDWR | C.O_TRUNC | C.O_NONBLOCK, USER);
  await core.release(fifo.handle);
  t.is(modeOf(await core.getattr('/setidfifo')), 0o4644, 'only regular files lose them');
  noHandlesLeft(t);
});

test.serial('an open directory keeps its own descriptor: fsyncdir after a rename, getattr and setattr after its removal; releasedir closes it', async (t) => {
  const fdsBefore = (await fsp.readdir('/proc/self/fd')).length;
  await core.mkdir('/dh', 0o755, ROOT);
  const h = await core.opendir('/dh');
  t.is((await fsp.readdir('/proc/self/fd')).length, fdsBefore + 1, 'opendir holds one descriptor');
  await core.rename('/dh', '/dh-moved');
  await core.fsyncdir(h); // the directory wherever it is now, not its old path
  await core.rmdir('/dh-moved');
  t.is((await core.fgetattrDir(h)).nlink, 0n, 'removed: no links, still reachable through the handle');
  const st = await core.setattrDir(h, { mode: 0o700, atime: { sec: 11, nsec: 1 }, mtime: { sec: 22, nsec: 2 } });
  t.is(modeOf(st), 0o700);
  t.is(st.mtimeNs, 22_000_000_002n);
  t.is(await codeOf(() => core.setattrDir(h, { size: 0 })), 'EISDIR');
  t.is(await codeOf(() => core.opendir('/no-such-dir')), 'ENOENT');
  await core.symlink('x', '/dh-link', ROOT);
  t.is(await codeOf(() => core.opendir('/dh-link')), 'ENOTDIR', 'a symlink is never followed');
  await core.releasedir(h);
  t.is((await fsp.readdir('/proc/self/fd')).length, fdsBefore, 'releasedir closed it');
  t.is(await codeOf(() => core.fgetattrDir(h)), 'EBADF');
  noHandlesLeft(t);
});
