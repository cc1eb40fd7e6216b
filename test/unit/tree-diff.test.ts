// diffTree (src/mirror/tree-diff.ts) on its own: it is read-only, compares
// holes with zeros, honours its content option, and reports archive-side
// changes. The change-by-change behaviour together with reconcile is in
// reconcile.test.ts. Runs against every archive client that exists.
import { AT_FDCWD } from '../../src/native/index.js';
import test from 'ava';
import * as fsp from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reconcile } from '../../src/mirror/reconcile.js';
import { diffTree, type Difference } from '../../src/mirror/tree-diff.js';
import { ID_XATTR, readObjectId } from '../../src/store/object-ids.js';
import { isArchiveError, type ArchiveClient } from '../../src/protocol/archive-api.js';
import { BLOCK_SIZE } from '../../src/protocol/records.js';
import * as native from '../../src/native/index.js';
import { ShippingSink, VOLUME, archiveFixtures, removeArchiveFixtures } from '../helpers/memory-archive.js';

const base = mkdtempSync(join(tmpdir(), 'strata-tree-diff-'));
test.after.always(() => rmSync(base, { recursive: true, force: true }));
test.after.always(removeArchiveFixtures);
let counter = 0;

async function makeStore(): Promise<string> {
  const store = join(base, `store-${counter++}`);
  await fsp.mkdir(join(store, 'd'), { recursive: true });
  await fsp.writeFile(join(store, 'd/file'), Buffer.alloc(3 * BLOCK_SIZE, 9));
  const fh = await fsp.open(join(store, 'holes'), 'w');
  await fh.write(Buffer.from('start'), 0, 5, 0);
  await fh.write(Buffer.from('end'), 0, 3, 9 * BLOCK_SIZE);
  await fh.close();
  await native.mknod(join(store, 'dev'), 0o020600, native.makedev(1, 3));
  await native.mknod(join(store, 'fifo'), 0o010600, 0);
  return store;
}

async function synced(client: ArchiveClient): Promise<string> {
  const store = await makeStore();
  await client.createVolume(VOLUME);
  const sink = new ShippingSink(client, VOLUME);
  await reconcile({ store, archive: client, volume: VOLUME, sink });
  await sink.ship();
  return store;
}

async function diff(store: string, client: ArchiveClient, content?: 'all' | 'none'): Promise<string[]> {
  const r = await diffTree({ store, archive: client, volume: VOLUME, ...(content ? { content } : {}) });
  return r.differences.map((d) => `${d.path}:${d.kind}`).sort();
}

/** Applies records to the archive directly, as if another primary had written them. */
async function onArchive(client: ArchiveClient, ...recs: Parameters<ShippingSink['append']>[0][]): Promise<void> {
  const sink = new ShippingSink(client, VOLUME);
  for (const r of recs) await sink.append(r);
  await sink.ship();
}

for (const fx of archiveFixtures()) {
  test(`[${fx.name}] verify is read-only: no ids assigned, no atime touched`, async (t) => {
    const client = await fx.open();
    await client.createVolume(VOLUME);
    const store = await makeStore();
    const r = await diffTree({ store, archive: client, volume: VOLUME });
    t.deepEqual(r.differences.map((d) => `${d.path}:${d.kind}`).sort(), ['/:id', '/:mtime', '/d:missing-on-archive', '/dev:missing-on-archive', '/fifo:missing-on-archive', '/holes:missing-on-archive']);
    t.is(r.count, 6);
    t.is(r.objects, 5);
    t.is(await readObjectId(store, AT_FDCWD), null);
    t.is(await readObjectId(join(store, 'd/file'), AT_FDCWD), null);

    // After a sync: an atime older than the mtime (relatime would move it on a read) stays.
    const synced2 = await synced(client);
    const p = join(synced2, 'd/file');
    await native.utimens(p, { sec: 1000, nsec: 5 }, 'omit');
    t.deepEqual(await diff(synced2, client, 'all'), []);
    t.is((await fsp.stat(p, { bigint: true })).atimeNs, 1000n * 1_000_000_000n + 5n);
    await client.close();
  });

  test(`[${fx.name}] an object that lost its id, and a device with another rdev, are reported`, async (t) => {
    const client = await fx.open();
    const store = await synced(client);
    await native.removexattr(join(store, 'd/file'), ID_XATTR);
    const st = await fsp.lstat(join(store, 'dev'), { bigint: true });
    const id = await readObjectId(join(store, 'dev'), AT_FDCWD);
    await fsp.unlink(join(store, 'dev'));
    await native.mknod(join(store, 'dev'), 0o020600, native.makedev(1, 5));
    await native.setxattr(join(store, 'dev'), ID_XATTR, Buffer.from(id!, 'latin1'), 0);
    const mt = { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) };
    await native.utimens(join(store, 'dev'), mt, mt);
    const found = await diffTree({ store, archive: client, volume: VOLUME });
    const byKind = new Map(found.differences.map((d): [string, Difference] => [`${d.path}:${d.kind}`, d]));
    t.deepEqual(byKind.get('/d/file:id')?.local, null);
    t.deepEqual(byKind.get('/dev:rdev'), { path: '/dev', kind: 'rdev', local: native.makedev(1, 5), archive: native.makedev(1, 3) });
    await client.close();
  });

  test(`[${fx.name}] holes equal zeros on either side; the content option chooses the files`, async (t) => {
    const client = await fx.open();
    const store = await synced(client);
    const id = (await readObjectId(join(store, 'holes'), AT_FDCWD))!;
    const st = await fsp.stat(join(store, 'holes'), { bigint: true });
    const attrs = {
      mode: Number(st.mode), uid: 0, gid: 0, size: Number(st.size), rdev: 0,
      atime: [Number(st.atimeNs / 1_000_000_000n), Number(st.atimeNs % 1_000_000_000n)] as const,
      mtime: [Number(st.mtimeNs / 1_000_000_000n), Number(st.mtimeNs % 1_000_000_000n)] as const,
    };
    // Zeros written into a local hole: the archive now stores a block of zeros there.
    await onArchive(client, { op: 'write', id, offset: 3 * BLOCK_SIZE, data: Buffer.alloc(BLOCK_SIZE) }, { op: 'setattr', id, attrs });
    t.deepEqual(await diff(store, client), []);
    // Data where the local file has a hole.
    await onArchive(client, { op: 'write', id, offset: 5 * BLOCK_SIZE + 7, data: Buffer.from('x') }, { op: 'setattr', id, attrs });
    const r = await diffTree({ store, archive: client, volume: VOLUME });
    t.deepEqual(r.differences, [{ path: '/holes', kind: 'content', local: 'block 5 differ', archive: null }]);
    t.deepEqual(await diff(store, client, 'none'), []);
    const seen: string[] = [];
    const r2 = await diffTree({ store, archive: client, volume: VOLUME, content: (s) => { seen.push(String(s.size)); return s.size < 100n; } });
    t.is(r2.count, 0);
    t.true(seen.length === 2);
    // Streamed to a callback, not collected.
    const streamed: Difference[] = [];
    const r3 = await diffTree({ store, archive: client, volume: VOLUME, onDifference: (d) => streamed.push(d) });
    t.is(r3.count, 1);
    t.deepEqual(r3.differences, []);
    t.is(streamed.length, 1);
    await client.close();
  });

  test(`[${fx.name}] changes made on the archive side are reported`, async (t) => {
    const client = await fx.open();
    const store = await synced(client);
    const fileId = (await readObjectId(join(store, 'd/file'), AT_FDCWD))!;
    const dirId = (await readObjectId(join(store, 'd'), AT_FDCWD))!;
    await onArchive(client,
      { op: 'setxattr', id: fileId, name: 'user.extra', value: Buffer.from('v') },
      { op: 'setxattr', id: fileId, name: 'trusted.strata.state', value: Buffer.from('ignored') },
      { op: 'create', parent: dirId, name: 'only-there', id: 'ab'.repeat(16), attrs: { mode: 0o100644, uid: 0, gid: 0, size: 0, rdev: 0, atime: [0, 0], mtime: [0, 0] }, parentMtime: [1, 0] },
    );
    const r = await diffTree({ store, archive: client, volume: VOLUME });
    t.deepEqual(r.differences.map((d) => `${d.path}:${d.kind}`).sort(), ['/d/file:xattrs', '/d/only-there:missing-locally', '/d:mtime']);
    t.deepEqual(r.differences.find((d) => d.kind === 'xattrs'), { path: '/d/file', kind: 'xattrs', local: { 'user.extra': null }, archive: { 'user.extra': Buffer.from('v').toString('base64') } });
    await client.close();
  });

  test(`[${fx.name}] a volume that does not exist is an ENOVOLUME error`, async (t) => {
    const client = await fx.open();
    const store = await makeStore();
    const err = await t.throwsAsync(diffTree({ store, archive: client, volume: 'nope' }));
    t.true(isArchiveError(err, 'ENOVOLUME'));
    await client.close();
  });
}
