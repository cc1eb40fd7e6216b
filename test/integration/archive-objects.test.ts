// The archive on object storage against a real S3 engine (Ceph radosgw,
// scripts/s3-engine.sh): the store's behavioural suite
// (test/helpers/archive-store-suite.ts) with every sealed pack in the bucket
// and read back with ranged GETs; then the faults: the store unreachable (its
// own gateway stopped and started again), a missing pack object, the archive
// node's disk wiped (rebuild from the bucket). The fault tests are serial (ava
// runs them before the suite) and use the engine's second gateway, so stopping
// it disturbs no other test.
import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { SnapshotEngine } from '../../src/archive/snapshots.js';
import { prepareObjects } from '../../src/archive/object-sync-client.js';
import { createLogger } from '../../src/log/logger.js';
import { rebuildFromObjects, syncPoint } from '../../src/archive/object-sync.js';
import { S3PackStore, writeObjectsConfig, type ObjectsConfig } from '../../src/archive/s3-packs.js';
import { isArchiveError } from '../../src/protocol/archive-api.js';
import { BLOCK_SIZE, ROOT_ID, encodeRecord, type NewRecord, type Record, type Time } from '../../src/protocol/records.js';
import { archiveStoreSuite } from '../helpers/archive-store-suite.js';
import { gateway, objectsConfigFor, s3Backend, s3Engine } from '../helpers/s3-engine.js';
import { strata } from '../helpers/mount.js';
import { writeFileSync } from 'node:fs';

const engine = s3Engine();
const T: Time = [1_700_000_000, 0];
let nextId = 0x5000;
const newId = (): string => (nextId++).toString(16).padStart(32, '0');
const mkfile = (name: string, id: string): NewRecord => ({ op: 'create', parent: ROOT_ID, name, id, attrs: { mode: 0o100644, uid: 0, gid: 0, size: 0, atime: T, mtime: T, rdev: 0 }, parentMtime: T });
const write = (id: string, offset: number, data: Buffer): NewRecord => ({ op: 'write', id, offset, data });

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = (x & 0xff) || 1;
  }
  return b;
}

/** An archive directory on a fresh prefix, its store, and a shipper for volume v. */
function archive(t: import('ava').ExecutionContext, config: ObjectsConfig): { dir: string; store: ArchiveStore; packs: S3PackStore; ship: (...r: NewRecord[]) => number } {
  const dir = mkdtempSync('/var/tmp/strata-objects-test-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeObjectsConfig(dir, config);
  const store = ArchiveStore.open(dir);
  const packs = S3PackStore.open(config);
  t.teardown(() => {
    store.close();
    packs.close();
  });
  store.createVolume('v');
  let seq = 0;
  const ship = (...recs: NewRecord[]): number => {
    const frames = Buffer.concat(recs.map((r, i) => encodeRecord({ ...r, seq: seq + 1 + i } as Record)));
    seq = store.applyBatch('v', 1, frames).appliedSeq;
    return seq;
  };
  return { dir, store, packs, ship };
}

test('bad object-storage options stop the server at start with a clear message, before anything is written', (t) => {
  const base = mkdtempSync('/var/tmp/strata-objects-opts-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  writeFileSync(join(base, 'token'), 'tok\n', { mode: 0o600 });
  const serve = (...extra: string[]) => strata(['archive', 'serve', '--data', join(base, 'data'), '--listen', '127.0.0.1:0', '--token-file', join(base, 'token'), ...extra]);
  const cases: [string[], RegExp][] = [
    [['--objects', 'http://bucket'], /--objects "http:\/\/bucket": expected s3:\/\/BUCKET or s3:\/\/BUCKET\/PREFIX/],
    [['--objects', 's3://Bad_Bucket'], /expected s3:\/\/BUCKET/],
    [['--objects', 's3://bucket/a/../b'], /must not contain \. or \.\. parts/],
    [['--s3-endpoint', 'http://127.0.0.1:1'], /need --objects/],
    [['--objects', 's3://bucket', '--s3-endpoint', 'rgw:7480'], /--s3-endpoint "rgw:7480": expected http\(s\):\/\/HOST\[:PORT\]/],
    [['--objects', 's3://bucket', '--metadata-upload-interval', '0'], /--metadata-upload-interval must be 1 to 86400 seconds/],
  ];
  for (const [extra, re] of cases) {
    const r = serve(...extra);
    t.is(r.status, 1, extra.join(' '));
    t.regex(r.stderr, re, extra.join(' '));
  }
  t.deepEqual(readdirSync(join(base, 'data')), [], 'nothing written in --data');
});

if (typeof engine === 'string') {
  console.error(`archive-objects: skipped: ${engine}`);
  test.skip(`object-storage tests skipped: ${engine}`, () => {});
} else {
  test.serial('the object store unreachable: reads of sealed packs fail with EUNAVAILABLE, writes go on, metadata points fail; all recover when it returns', (t) => {
    gateway('start-rgw', 'b');
    t.teardown(() => gateway('start-rgw', 'b'));
    const { dir, store, packs, ship } = archive(t, objectsConfigFor(engine, { endpoint: engine.faultEndpoint, fetchTimeoutMs: 1500 }));
    const a = newId();
    const aData = bytes(3 * BLOCK_SIZE + 5, 1);
    ship(mkfile('a', a), write(a, 0, aData));
    syncPoint(dir, packs);
    t.deepEqual(readdirSync(join(dir, 'packs')), [], 'the sealed pack left the disk');
    gateway('stop-rgw', 'b');
    const started = Date.now();
    const err = t.throws(() => store.readRange('v', a, 0, 100));
    t.log(`a read with the gateway down failed after ${Date.now() - started} ms (fetch timeout 1500 ms): ${err?.message}`);
    t.true(isArchiveError(err, 'EUNAVAILABLE'), String(err));
    t.regex(err!.message, new RegExp(`volume v object ${a} block 0`));
    // Writes land in the local pack and are acked: the primary's journal does not wait for object storage.
    const b = newId();
    const bData = bytes(2 * BLOCK_SIZE, 2);
    ship(mkfile('b', b), write(b, 0, bData));
    t.deepEqual(store.readRange('v', b, 0, bData.length), bData, 'a write during the outage reads back (local pack)');
    const failed = t.throws(() => syncPoint(dir, packs));
    t.true(isArchiveError(failed, 'EUNAVAILABLE'), String(failed));
    gateway('start-rgw', 'b');
    t.deepEqual(store.readRange('v', a, 0, aData.length), aData, 'reads recover');
    // A gateway that takes connections and never answers: the read gives up at the fetch timeout.
    const point = syncPoint(dir, packs);
    t.is(point.packsUploaded, 1, 'the outage\'s pack goes up at the next metadata point');
    t.deepEqual(readdirSync(join(dir, 'packs')), []);
    t.deepEqual(store.readRange('v', b, 0, bData.length), bData, 'read back from the bucket');
    const c = newId();
    ship(mkfile('c', c), write(c, 0, bytes(BLOCK_SIZE, 5)));
    syncPoint(dir, packs);
    gateway('freeze-rgw', 'b');
    t.teardown(() => gateway('thaw-rgw', 'b'));
    const hung = Date.now();
    const stalled = t.throws(() => store.readRange('v', c, 0, 5)); // a pack not read yet: not in the cache
    t.log(`a read from a frozen gateway failed after ${Date.now() - hung} ms (fetch timeout 1500 ms): ${stalled?.message}`);
    t.true(isArchiveError(stalled, 'EUNAVAILABLE'), String(stalled));
    gateway('thaw-rgw', 'b');
    t.deepEqual(store.readRange('v', c, 0, BLOCK_SIZE), bytes(BLOCK_SIZE, 5), 'reads recover');
  });

  test.serial('a missing pack object fails the read with ECORRUPT naming the pack and its key; other packs still read', (t) => {
    const config = objectsConfigFor(engine);
    const { dir, store, packs, ship } = archive(t, config);
    const [a, b] = [newId(), newId()];
    ship(mkfile('a', a), write(a, 0, bytes(BLOCK_SIZE, 3)));
    syncPoint(dir, packs); // pack 1
    ship(mkfile('b', b), write(b, 0, bytes(BLOCK_SIZE, 4)));
    syncPoint(dir, packs); // pack 2
    packs.objects.delete(packs.key(1));
    const err = t.throws(() => store.readRange('v', a, 0, 10));
    t.true(isArchiveError(err, 'ECORRUPT'), String(err));
    t.regex(err!.message, new RegExp(`volume v object ${a} block 0: pack 000001\\.pack is missing from s3://${engine.bucket}/.*/packs/000001\\.pack`));
    t.deepEqual(store.readRange('v', b, 0, BLOCK_SIZE), bytes(BLOCK_SIZE, 4));
  });

  test.serial('the archive disk wiped: an empty directory rebuilds from the bucket and serves up to the last metadata point, then goes on', (t) => {
    const config = objectsConfigFor(engine);
    const { dir, store, packs, ship } = archive(t, config);
    const files: { id: string; data: Buffer }[] = [];
    for (let i = 0; i < 5; i++) {
      const f = { id: newId(), data: bytes(BLOCK_SIZE * (i + 1) + i, 10 + i) };
      files.push(f);
      ship(mkfile(`f${i}`, f.id), write(f.id, 0, f.data));
    }
    const point = syncPoint(dir, packs);
    const late = newId();
    const upTo = ship(mkfile('late', late), write(late, 0, bytes(BLOCK_SIZE, 99))); // after the metadata point: lost with the disk
    t.is(point.volumes[0]!.appliedSeq, 10);
    t.is(upTo, 12);
    const images = [...store.tierImages('v', 1)];
    store.close();
    rmSync(dir, { recursive: true, force: true }); // the disk is gone

    const fresh = mkdtempSync('/var/tmp/strata-objects-test-');
    t.teardown(() => rmSync(fresh, { recursive: true, force: true }));
    writeObjectsConfig(fresh, config);
    mkdirSync(join(fresh, 'packs'));
    const r = rebuildFromObjects(fresh, packs);
    t.truthy(r);
    t.is(r!.key, point.key);
    t.deepEqual(r!.volumes, [{ name: 'v', appliedSeq: 10 }]);
    const again = ArchiveStore.open(fresh);
    t.teardown(() => again.close());
    t.is(again.volumeState('v')!.appliedSeq, 10, 'served up to the metadata point');
    const img = [...again.tierImages('v', 1)];
    t.deepEqual(img[0]!.entries.map((e) => e.name), images[0]!.entries.map((e) => e.name).filter((n) => n !== 'late'));
    for (const f of files) t.deepEqual(again.readRange('v', f.id, 0, f.data.length), f.data);
    // The records after the point come again (a primary re-ships them); new packs never clobber the bucket's.
    let seq = 10;
    const more = newId();
    const frames = Buffer.concat([mkfile('more', more), write(more, 0, bytes(BLOCK_SIZE, 7))].map((rec, i) => encodeRecord({ ...rec, seq: seq + 1 + i } as Record)));
    seq = again.applyBatch('v', 1, frames).appliedSeq;
    t.is(seq, 12);
    const next = syncPoint(fresh, packs);
    t.true(next.packsUploaded === 1);
    for (const f of files) t.deepEqual(again.readRange('v', f.id, 0, f.data.length), f.data, 'old packs intact');
    t.deepEqual(again.readRange('v', more, 0, BLOCK_SIZE), bytes(BLOCK_SIZE, 7));
    t.is(rebuildFromObjects(fresh, packs), null, 'a directory with a database is left alone');
  });

  test.serial('garbage collection rewrites and deletes packs in the bucket, only once a newer metadata copy is up', async (t) => {
    const { dir, store, packs, ship } = archive(t, objectsConfigFor(engine));
    const f = newId();
    ship(mkfile('f', f), write(f, 0, bytes(4 * BLOCK_SIZE, 20)));
    syncPoint(dir, packs); // pack 1
    ship(write(f, 0, bytes(4 * BLOCK_SIZE, 21))); // every block of pack 1 is garbage now
    syncPoint(dir, packs); // pack 2
    t.deepEqual([...packs.list().keys()], [1, 2]);
    const gc = SnapshotEngine.open(dir, { packGraceMs: 0 });
    t.teardown(() => gc.close());
    const first = gc.gc().stores.find((x) => x.store === 'data')!;
    t.is(first.packsRewritten, 1);
    t.deepEqual([...packs.list().keys()], [1, 2], 'the uploaded metadata copy still points into pack 1: it stays');
    await new Promise((r) => setTimeout(r, 5));
    syncPoint(dir, packs);
    gc.gc();
    t.deepEqual([...packs.list().keys()], [2], 'gone once a newer copy is up');
    t.deepEqual(store.readRange('v', f, 0, 4 * BLOCK_SIZE), bytes(4 * BLOCK_SIZE, 21));
  });

  test.serial('a prefix with packs but no metadata copy: a new archive continues after them; a database that does not know them is refused', (t) => {
    const config = objectsConfigFor(engine);
    const { dir, store, packs, ship } = archive(t, config);
    const f = newId();
    ship(mkfile('f', f), write(f, 0, bytes(BLOCK_SIZE, 30)));
    syncPoint(dir, packs); // pack 1 and a metadata copy
    for (const o of packs.objects.list(`${packs.objects.prefix}metadata/`)) packs.objects.delete(o.key); // lost before any copy
    const log = createLogger({ level: 'silent' });
    const fresh = mkdtempSync('/var/tmp/strata-objects-test-');
    t.teardown(() => rmSync(fresh, { recursive: true, force: true }));
    prepareObjects(fresh, { objects: config.url, s3Endpoint: config.endpoint! }, log);
    const other = ArchiveStore.open(fresh);
    t.teardown(() => other.close());
    other.createVolume('w');
    const g = newId();
    other.applyBatch('w', 1, Buffer.concat([mkfile('g', g), write(g, 0, bytes(BLOCK_SIZE, 31))].map((r, i) => encodeRecord({ ...r, seq: i + 1 } as Record))));
    syncPoint(fresh, packs);
    t.deepEqual([...packs.list().keys()], [1, 2], 'pack 1 is left alone; the new archive wrote pack 2');
    t.deepEqual(store.readRange('v', f, 0, BLOCK_SIZE), bytes(BLOCK_SIZE, 30), 'the first archive\'s pack is intact');
    // The first archive's directory now lags behind the bucket: starting it on this prefix is refused.
    t.throws(() => prepareObjects(dir, { objects: config.url, s3Endpoint: config.endpoint! }, log), { message: /another archive using this bucket prefix/ });
  });

  archiveStoreSuite(s3Backend(engine));
}
