// The local-object layer's POSIX ACL calls, without FUSE: what an object
// created in a directory with a default ACL inherits, dropped by
// prepareObject/finishFile (dropAcls) before the object's own xattrs are
// set; the store's ACLs read by path and by open descriptor; the creation
// mode rule shared with the FUSE bridge.
import test from 'ava';
import { mkdtempSync, openSync, closeSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as native from '../../src/native/index.js';
import { StoreDir } from '../../src/store/store-dir.js';
import { ACL_ACCESS, ACL_DEFAULT, aclAt, aclOfFd, inheritedAcls } from '../../src/store/posix-acl.js';
import { aclXattr } from '../helpers/acl.js';

const INHERITED = aclXattr({ user: 7, group: 7, other: 5, users: [[1000, 7]], mask: 7 });
// Its mode is 0660 (the mask is the group class): a chmod to anything else would rewrite the mask.
const OWN = aclXattr({ user: 6, group: 4, other: 0, users: [[4242, 6]], mask: 6 });

async function withDir(t: import('ava').ExecutionContext): Promise<StoreDir> {
  const base = mkdtempSync(join(tmpdir(), 'strata-acl-'));
  const dir = await StoreDir.openRoot(base);
  t.teardown(() => { dir.close(); rmSync(base, { recursive: true, force: true }); });
  await dir.mkdir('d', 0o755);
  try {
    await dir.setxattr('d', ACL_DEFAULT, INHERITED, 0);
  } catch (err) {
    if ((err as { code?: string }).code === 'EOPNOTSUPP') t.log('the temporary directory\'s file system has no ACLs');
    throw err;
  }
  return dir;
}

test('an object created under a default ACL inherits it; dropAcls takes it away before the object\'s own xattrs', async (t) => {
  const dir = await withDir(t);
  await native.prepareObject('d/kept', { create: { kind: 'file', mode: 0o640 } }, dir.fd);
  t.not(await aclAt(dir, 'd/kept', ACL_ACCESS), null, 'without dropAcls the inherited ACL stays');
  t.deepEqual((await inheritedAcls(dir, 'd/kept', false)).map(([n]) => n), [ACL_ACCESS]);
  await native.prepareObject('d/plain', { create: { kind: 'file', mode: 0o640 }, dropAcls: true, mode: 0o640 }, dir.fd);
  t.is(await aclAt(dir, 'd/plain', ACL_ACCESS), null, 'dropped, and none given');
  t.is(statSync(join(dirPath(dir), 'd/plain')).mode & 0o7777, 0o640);
  await native.prepareObject('d/own', { create: { kind: 'file', mode: 0o600 }, dropAcls: true, xattrs: [[ACL_ACCESS, OWN]], mode: 0o660 }, dir.fd);
  t.deepEqual(await aclAt(dir, 'd/own', ACL_ACCESS), OWN, 'exactly its own ACL');
  await native.prepareObject('d/sub', { create: { kind: 'dir', mode: 0o755 }, dropAcls: true, mode: 0o755 }, dir.fd);
  t.deepEqual(await inheritedAcls(dir, 'd/sub', true), [], 'a directory loses both the access and the default ACL');
  // An existing object, no ACL to drop: no failure.
  await native.prepareObject('d/plain', { dropAcls: true }, dir.fd);
  t.pass();
});

test('finishFile with dropAcls: a file built under a temporary name in a directory with a default ACL gets exactly its own', async (t) => {
  const dir = await withDir(t);
  const times = { atime: { sec: 1, nsec: 0 }, mtime: { sec: 2, nsec: 0 } };
  await native.finishFile('d/.tmp1', { create: true, data: Buffer.from('x'), dropAcls: true, mode: 0o644, times, rename: 'd/f1' }, dir.fd);
  t.is(await aclAt(dir, 'd/f1', ACL_ACCESS), null);
  await native.finishFile('d/.tmp2', { create: true, data: Buffer.from('y'), dropAcls: true, xattrs: [[ACL_ACCESS, OWN]], mode: 0o660, times, rename: 'd/f2' }, dir.fd);
  t.deepEqual(await aclAt(dir, 'd/f2', ACL_ACCESS), OWN);
  await native.finishFile('d/.tmp3', { create: true, data: Buffer.from('z'), mode: 0o644, times, rename: 'd/f3' }, dir.fd);
  t.not(await aclAt(dir, 'd/f3', ACL_ACCESS), null, 'without dropAcls it inherits');
});

test('an ACL read through an open descriptor (an empty path) is the file\'s own', async (t) => {
  const dir = await withDir(t);
  await native.prepareObject('d/own', { create: { kind: 'file', mode: 0o600 }, dropAcls: true, xattrs: [[ACL_ACCESS, OWN]] }, dir.fd);
  const fd = openSync(join(dirPath(dir), 'd/own'), 'r');
  t.teardown(() => closeSync(fd));
  t.deepEqual(await aclOfFd(fd, ACL_ACCESS), OWN);
  t.is(await aclOfFd(fd, ACL_DEFAULT), null);
});

test('creationMode: the umask applies unless the parent has a default ACL; file type bits stay', (t) => {
  t.is(native.creationMode(0o100666, 0o022, false), 0o100644);
  t.is(native.creationMode(0o100666, 0o022, true), 0o100666);
  t.is(native.creationMode(0o40777, 0o077, false), 0o40700);
  t.is(native.creationMode(0o10644, 0, false), 0o10644);
});

/** The absolute path of the directory a StoreDir was opened on. */
function dirPath(dir: StoreDir): string {
  return `/proc/self/fd/${dir.fd}`;
}
