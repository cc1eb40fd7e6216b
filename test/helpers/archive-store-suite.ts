// The archive store's behavioural suite, run against every pack backend (the
// ZenFS model: one suite, every backend): test/unit/archive-store.test.ts runs
// it on a plain directory, test/integration/archive-objects.test.ts on a real
// S3 engine (radosgw). The store on its own (no worker, no server): record application and
// the images it yields, file data in blocks (RMW, holes, truncation, dedup,
// verification on read), the sequence/epoch rules of a batch, refusal of bad
// input with nothing applied, subtree totals against a brute-force count
// (random op sequences, fast-check with a fixed seed, and the in-memory
// reference archive), versioned rows under a snapshot floor, reopening.
import avaTest, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { ArchiveStore, ArchiveStoreOptions } from '../../src/archive/archive-store.js';
import { LIVE } from '../../src/archive/schema.js';
import { isArchiveError, type ArchiveErrorCode } from '../../src/protocol/archive-api.js';
import { BlockDigestError, DEEP_MAX_ENTRIES, DEEP_MAX_IMAGES, verifiedRange, type DirImage } from '../../src/protocol/images.js';
import { BLOCK_SIZE, ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../../src/protocol/records.js';
import { MemoryArchive } from './memory-archive.js';
import { pattern } from './snapshots.js';

/** Where a store under test keeps its packs. */
export interface StoreBackend {
  /** Prefixes every test title. */
  name: string;
  /** Opens (creating) the store in `dir`, set up for this backend. */
  open(dir: string, options?: ArchiveStoreOptions): ArchiveStore;
  /** Every pack and its size, wherever it is. */
  packSizes(dir: string): Map<number, number>;
  /** Flips the bits of one byte of a pack (the store is closed). */
  corrupt(dir: string, pack: number, offset: number): void;
}

let B: StoreBackend;
const test = (title: string, fn: (t: ExecutionContext) => unknown): void => {
  avaTest(`${B.name}: ${title}`, fn as (t: ExecutionContext) => void);
};

const VOL = 'vol1';
const T: Time = [1_700_000_000, 123];
const T2: Time = [1_700_000_100, 456];
const S_IFDIR = 0o040000;

const dirAttrs = (mode = 0o755): Attrs => ({ mode: S_IFDIR | mode, uid: 1000, gid: 100, size: 4096, atime: T, mtime: T, rdev: 0 });
const fileAttrs = (size = 0, mode = 0o644): Attrs => ({ mode: 0o100000 | mode, uid: 1000, gid: 100, size, atime: T, mtime: T, rdev: 0 });
const linkAttrs = (target: string): Attrs => ({ mode: 0o120777, uid: 0, gid: 0, size: Buffer.byteLength(target), atime: T, mtime: T, rdev: 0 });

let nextId = 0x100;
const newId = (): string => (nextId++).toString(16).padStart(32, '0');

const mkdir = (parent: string, name: string, id: string): NewRecord => ({ op: 'create', parent, name, id, attrs: dirAttrs(), parentMtime: T2 });
const mkfile = (parent: string, name: string, id: string, size = 0): NewRecord => ({ op: 'create', parent, name, id, attrs: fileAttrs(size), parentMtime: T2 });
const write = (id: string, offset: number, data: Buffer): NewRecord => ({ op: 'write', id, offset, data });
const truncate = (id: string, size: number): NewRecord => ({ op: 'setattr', id, attrs: fileAttrs(size) });
const unlink = (parent: string, name: string): NewRecord => ({ op: 'unlink', parent, name, parentMtime: T2 });
const rmdir = (parent: string, name: string): NewRecord => ({ op: 'rmdir', parent, name, parentMtime: T2 });
const link = (parent: string, name: string, id: string): NewRecord => ({ op: 'link', parent, name, id, parentMtime: T2 });
const rename = (parent: string, name: string, newParent: string, newName: string): NewRecord =>
  ({ op: 'rename', parent, name, newParent, newName, parentMtime: T2, newParentMtime: T2 });
const exchange = (parent: string, name: string, newParent: string, newName: string): NewRecord =>
  ({ op: 'exchange', parent, name, newParent, newName, parentMtime: T2, newParentMtime: T2 });

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-archive-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh store with volume VOL, closed at the end of the test. */
function fresh(t: ExecutionContext, packLimitBytes?: number): { store: ArchiveStore; ship: Shipper; dir: string } {
  const dir = tempDir(t);
  const store = B.open(dir, packLimitBytes === undefined ? {} : { packLimitBytes });
  t.teardown(() => store.close());
  store.createVolume(VOL);
  return { store, ship: new Shipper(store, VOL), dir };
}

/** Numbers records after the volume's applied sequence and ships them as one batch. */
class Shipper {
  seq = 0;
  constructor(private readonly store: ArchiveStore, private readonly volume: string, public epoch = 1) {}
  frames(...recs: NewRecord[]): Buffer {
    return Buffer.concat(recs.map((r, i) => encodeRecord({ ...r, seq: this.seq + 1 + i } as Record)));
  }
  send(...recs: NewRecord[]): number {
    const { appliedSeq } = this.store.applyBatch(this.volume, this.epoch, this.frames(...recs));
    this.seq = appliedSeq;
    return appliedSeq;
  }
}

function throwsCode(t: ExecutionContext, fn: () => unknown, code: ArchiveErrorCode, re?: RegExp): void {
  const err = t.throws(fn);
  t.true(isArchiveError(err, code), `expected ${code}, got ${String(err)}`);
  if (re && err) t.regex(err.message, re);
}

const entry = (img: DirImage, name: string) => img.entries.find((e) => e.name === name);
const names = (img: DirImage): string[] => img.entries.map((e) => e.name);

function packBytes(dir: string): number {
  return [...B.packSizes(dir).values()].reduce((n, s) => n + s, 0);
}


/** Registers the suite's tests for `backend` (call once per test file). */
export function archiveStoreSuite(backend: StoreBackend): void {
B = backend;


// ---- opening, volumes, argument checks ----------------------------------------------

test('open creates the layout; a new volume has an empty root; createVolume is idempotent', (t) => {
  const dir = join(tempDir(t), 'nested', 'archive');
  const store = B.open(dir);
  t.teardown(() => store.close());
  t.is(store.dir, dir);
  t.true(statSync(join(dir, 'archive.db')).isFile());
  t.true(statSync(join(dir, 'packs')).isDirectory());
  t.is(store.volumeState(VOL), null);
  const s = store.createVolume(VOL);
  t.deepEqual(s, { name: VOL, epoch: 1, appliedSeq: 0, totals: { entries: 0, bytes: 0 } });
  t.deepEqual(store.createVolume(VOL), s);
  const root = store.dirImage(VOL, ROOT_ID);
  t.is(root.attrs.mode, 0o040755);
  t.is(root.attrs.uid, 0);
  t.is(root.nlink, 2);
  t.deepEqual(root.entries, []);
  t.true(Math.abs(root.attrs.mtime[0] - Date.now() / 1000) < 60, 'root times are now');
});

test('an archive of another format version is refused', (t) => {
  const dir = tempDir(t);
  B.open(dir).close();
  const db = new Database(join(dir, 'archive.db'));
  db.prepare(`UPDATE meta SET value = '99' WHERE key = 'format_version'`).run();
  db.close();
  throwsCode(t, () => B.open(dir), 'EARCHIVE', /format 99/);
});

test('bad arguments are EBADREQ; an unknown volume is ENOVOLUME', (t) => {
  const { store, ship } = fresh(t);
  const id = newId();
  throwsCode(t, () => store.createVolume('../etc'), 'EBADREQ', /volume name/);
  throwsCode(t, () => store.volumeState('.hidden'), 'EBADREQ');
  throwsCode(t, () => store.dirImage(VOL, 'ROOT'), 'EBADREQ', /object id/);
  throwsCode(t, () => store.readRange(VOL, id, -1, 10), 'EBADREQ', /offset/);
  throwsCode(t, () => store.readRange(VOL, id, 0, 1.5), 'EBADREQ', /length/);
  throwsCode(t, () => store.readRange(VOL, id, 0, 16 * 1024 * 1024 + 1), 'EBADREQ', /length/);
  throwsCode(t, () => store.tierImages(VOL, -1), 'EBADREQ', /depth/);
  throwsCode(t, () => store.applyBatch(VOL, 0.5, ship.frames(mkdir(ROOT_ID, 'a', id))), 'EBADREQ', /epoch/);
  throwsCode(t, () => store.dirImage('nope', ROOT_ID), 'ENOVOLUME');
  throwsCode(t, () => store.readRange('nope', id, 0, 1), 'ENOVOLUME');
  throwsCode(t, () => store.fence('nope'), 'ENOVOLUME');
  throwsCode(t, () => store.tierImages('nope', 1), 'ENOVOLUME');
  throwsCode(t, () => store.applyBatch('nope', 1, ship.frames(mkdir(ROOT_ID, 'a', id))), 'ENOVOLUME');
  throwsCode(t, () => store.dirImage(VOL, id), 'ENOOBJECT');
  throwsCode(t, () => store.fileBlocks(VOL, ROOT_ID), 'ENOOBJECT', /regular file/);
});

// ---- namespace ------------------------------------------------------------------------

test('create, link, unlink: hard links share an id, nlink is derived, parent mtime is set', (t) => {
  const { store, ship } = fresh(t);
  const a = newId();
  const f = newId();
  ship.send(mkdir(ROOT_ID, 'a', a), mkfile(a, 'f', f), link(ROOT_ID, 'g', f));
  let root = store.dirImage(VOL, ROOT_ID);
  t.deepEqual(names(root), ['a', 'g']);
  t.is(root.nlink, 3, 'root: 2 + one subdirectory');
  t.deepEqual(root.attrs.mtime, T2);
  t.is(entry(root, 'g')!.id, f);
  t.is(entry(root, 'g')!.nlink, 2);
  t.is(store.dirImage(VOL, a).entries[0]!.nlink, 2);
  t.deepEqual(entry(root, 'a')!.totals, { entries: 1, bytes: 0 });
  t.deepEqual(root.totals, { entries: 3, bytes: 0 }, 'a, a/f and g: hard links count per name');
  t.is(entry(root, 'a')!.attrs.mode, dirAttrs().mode);

  ship.send(unlink(a, 'f'));
  root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'g')!.nlink, 1);
  t.deepEqual(store.dirImage(VOL, a).entries, []);
  ship.send(unlink(ROOT_ID, 'g'));
  throwsCode(t, () => store.fileBlocks(VOL, f), 'ENOOBJECT', /no regular file/);
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 1, bytes: 0 });
  // Absent names and unknown ids are no-ops.
  ship.send(unlink(ROOT_ID, 'nothing'), link(ROOT_ID, 'x', newId()), truncate(newId(), 5), write(newId(), 0, Buffer.from('x')));
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['a']);
});

test('symlinks keep their target; xattrs are set, replaced and removed', (t) => {
  const { store, ship } = fresh(t);
  const s = newId();
  ship.send(
    { op: 'create', parent: ROOT_ID, name: 's', id: s, attrs: linkAttrs('../x/y'), target: '../x/y', parentMtime: T2 },
    { op: 'setxattr', id: s, name: 'user.a', value: Buffer.from([0, 1, 2]) },
    { op: 'setxattr', id: ROOT_ID, name: 'user.r', value: Buffer.from('one') },
    { op: 'setxattr', id: ROOT_ID, name: 'user.r', value: Buffer.from('two') },
    { op: 'setxattr', id: ROOT_ID, name: 'user.gone', value: Buffer.from('x') },
    { op: 'removexattr', id: ROOT_ID, name: 'user.gone' },
    { op: 'removexattr', id: ROOT_ID, name: 'user.never' },
  );
  const root = store.dirImage(VOL, ROOT_ID);
  const e = entry(root, 's')!;
  t.is(e.target, '../x/y');
  t.is(e.attrs.mode, 0o120777);
  t.is(e.nlink, 1);
  t.deepEqual(e.xattrs, { 'user.a': Buffer.from([0, 1, 2]).toString('base64') });
  t.deepEqual(root.xattrs, { 'user.r': Buffer.from('two').toString('base64') });
  t.is(e.totals, undefined);
});

test('rename keeps the id; a directory moves with its subtree and totals', (t) => {
  const { store, ship } = fresh(t);
  const [a, b, c, f] = [newId(), newId(), newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'a', a), mkdir(ROOT_ID, 'b', b), mkdir(a, 'c', c), mkfile(c, 'f', f), write(f, 0, Buffer.alloc(1000, 7)));
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 4, bytes: 1000 });
  ship.send(rename(a, 'c', b, 'c2'));
  t.deepEqual(names(store.dirImage(VOL, a)), []);
  const bImg = store.dirImage(VOL, b);
  t.is(entry(bImg, 'c2')!.id, c);
  t.deepEqual(bImg.totals, { entries: 2, bytes: 1000 });
  t.deepEqual(store.dirImage(VOL, a).totals, { entries: 0, bytes: 0 });
  t.is(store.dirImage(VOL, a).nlink, 2);
  t.is(bImg.nlink, 3);
  t.is(store.dirImage(VOL, c).entries[0]!.id, f);
  t.deepEqual(store.readRange(VOL, f, 0, 2000), Buffer.alloc(1000, 7));
  // A create naming an existing directory's id moves it (the crash-reconciler's form).
  ship.send({ op: 'create', parent: ROOT_ID, name: 'moved', id: c, attrs: { ...dirAttrs(0o700) }, parentMtime: T2 });
  t.deepEqual(names(store.dirImage(VOL, b)), []);
  const root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'moved')!.id, c);
  t.is(entry(root, 'moved')!.attrs.mode, S_IFDIR | 0o700);
  t.deepEqual(root.totals, { entries: 4, bytes: 1000 });
  t.is(root.nlink, 5);
});

test('rename over a file and over a directory deletes what it replaces', (t) => {
  const { store, ship } = fresh(t);
  const [f1, f2, d1, d2, inner, keep] = [newId(), newId(), newId(), newId(), newId(), newId()];
  ship.send(
    mkfile(ROOT_ID, 'f1', f1), write(f1, 0, Buffer.from('one')),
    mkfile(ROOT_ID, 'f2', f2), write(f2, 0, Buffer.from('two!')),
    mkdir(ROOT_ID, 'd1', d1), mkdir(ROOT_ID, 'd2', d2), mkfile(d2, 'inner', inner), write(inner, 0, Buffer.from('xyz')),
    mkfile(ROOT_ID, 'keep', keep), link(d2, 'keep-link', keep),
  );
  ship.send(rename(ROOT_ID, 'f1', ROOT_ID, 'f2'));
  let root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'f2')!.id, f1);
  t.is(entry(root, 'f1'), undefined);
  throwsCode(t, () => store.readRange(VOL, f2, 0, 10), 'ENOOBJECT');
  t.deepEqual(store.readRange(VOL, f1, 0, 10), Buffer.from('one'));
  // Over a non-empty directory (only the crash-reconciler sends this): its subtree goes,
  // a file hard-linked from outside it survives with one name less.
  ship.send(rename(ROOT_ID, 'd1', ROOT_ID, 'd2'));
  root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'd2')!.id, d1);
  throwsCode(t, () => store.readRange(VOL, inner, 0, 10), 'ENOOBJECT');
  t.is(entry(root, 'keep')!.nlink, 1);
  t.deepEqual(root.totals, { entries: 3, bytes: 3 });
  t.is(root.nlink, 3);
  // Two names of one file: POSIX rename does nothing.
  ship.send(link(ROOT_ID, 'k2', keep), rename(ROOT_ID, 'keep', ROOT_ID, 'k2'));
  root = store.dirImage(VOL, ROOT_ID);
  t.deepEqual(names(root), ['d2', 'f2', 'k2', 'keep']);
  t.is(entry(root, 'keep')!.nlink, 2);
  // An absent source is a no-op.
  ship.send(rename(ROOT_ID, 'absent', ROOT_ID, 'x'));
  t.is(store.dirImage(VOL, ROOT_ID).entries.length, 4);
});

test('exchange swaps the objects of two names: ids, subtrees, totals and link counts follow, nothing is deleted', (t) => {
  const { store, ship } = fresh(t);
  const [a, b, c, f, g, h] = [newId(), newId(), newId(), newId(), newId(), newId()];
  ship.send(
    mkdir(ROOT_ID, 'a', a), mkdir(ROOT_ID, 'b', b), mkdir(a, 'c', c), mkfile(c, 'f', f), write(f, 0, Buffer.alloc(1000, 7)),
    mkfile(b, 'g', g), write(g, 0, Buffer.from('gg')), mkfile(ROOT_ID, 'h', h), link(b, 'h2', h),
  );
  const before = store.volumeState(VOL)!.totals;
  t.deepEqual(before, { entries: 7, bytes: 1002 });
  // A directory and a file in two directories swap.
  ship.send(exchange(a, 'c', b, 'g'));
  t.is(entry(store.dirImage(VOL, a), 'c')!.id, g);
  t.is(entry(store.dirImage(VOL, b), 'g')!.id, c);
  t.deepEqual(store.dirImage(VOL, a).totals, { entries: 1, bytes: 2 });
  t.deepEqual(store.dirImage(VOL, b).totals, { entries: 3, bytes: 1000 });
  t.is(store.dirImage(VOL, a).nlink, 2, 'a lost its subdirectory');
  t.is(store.dirImage(VOL, b).nlink, 3, 'b gained one');
  t.is(store.dirImage(VOL, c).entries[0]!.id, f);
  t.deepEqual(store.readRange(VOL, g, 0, 10), Buffer.from('gg'));
  t.deepEqual(store.volumeState(VOL)!.totals, before, 'nothing deleted');
  // Two directories swap; a hard-linked file keeps both names and its count.
  ship.send(exchange(ROOT_ID, 'a', ROOT_ID, 'b'), exchange(ROOT_ID, 'h', b, 'h2'));
  const root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'a')!.id, b);
  t.is(entry(root, 'b')!.id, a);
  t.is(entry(root, 'h')!.id, h);
  t.is(entry(root, 'h')!.nlink, 2);
  // An absent name: nothing changes.
  ship.send(exchange(ROOT_ID, 'absent', ROOT_ID, 'h'));
  t.is(entry(store.dirImage(VOL, ROOT_ID), 'h')!.id, h);
  t.deepEqual(store.volumeState(VOL)!.totals, before);
  // A directory into its own subtree is a bad record (the primary's kernel refuses it: EINVAL).
  throwsCode(t, () => ship.send(exchange(ROOT_ID, 'a', c, 'f')), 'EBADREQ', /into its own subtree/);
  t.is(entry(store.dirImage(VOL, ROOT_ID), 'a')!.id, b, 'the refused batch changed nothing');
});

test('rmdir takes a whole subtree; create over an existing name replaces the entry', (t) => {
  const { store, ship } = fresh(t);
  const [a, b, f, g, h] = [newId(), newId(), newId(), newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'a', a), mkdir(a, 'b', b), mkfile(b, 'f', f), write(f, 0, pattern(BLOCK_SIZE + 5, 1)), mkfile(ROOT_ID, 'g', g));
  ship.send(rmdir(ROOT_ID, 'a'));
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['g']);
  throwsCode(t, () => store.dirImage(VOL, b), 'ENOOBJECT');
  throwsCode(t, () => store.fileBlocks(VOL, f), 'ENOOBJECT');
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 1, bytes: 0 });
  ship.send(mkfile(ROOT_ID, 'g', h, 0));
  const root = store.dirImage(VOL, ROOT_ID);
  t.is(entry(root, 'g')!.id, h);
  throwsCode(t, () => store.fileBlocks(VOL, g), 'ENOOBJECT');
  // A create resent for an existing file adds a name (a hard link) and sets its attributes.
  ship.send({ op: 'create', parent: ROOT_ID, name: 'g2', id: h, attrs: fileAttrs(10, 0o600), parentMtime: T2 });
  const e = entry(store.dirImage(VOL, ROOT_ID), 'g2')!;
  t.is(e.id, h);
  t.is(e.nlink, 2);
  t.is(e.attrs.mode, 0o100600);
  t.is(e.attrs.size, 10);
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 2, bytes: 20 });
});

test('moving a directory into its own subtree, a type change, or a write to a directory are refused with nothing applied', (t) => {
  const { store, ship } = fresh(t);
  const [a, b] = [newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'a', a), mkdir(a, 'b', b));
  const before = store.dirImage(VOL, ROOT_ID);
  const applied = store.volumeState(VOL)!.appliedSeq;
  const x = newId();
  throwsCode(t, () => ship.send(mkfile(ROOT_ID, 'x', x), rename(ROOT_ID, 'a', b, 'loop')), 'EBADREQ', /own subtree/);
  throwsCode(t, () => ship.send(mkfile(ROOT_ID, 'x', x), rename(ROOT_ID, 'a', a, 'self')), 'EBADREQ', /own subtree/);
  throwsCode(t, () => ship.send({ op: 'create', parent: b, name: 'a', id: a, attrs: dirAttrs(), parentMtime: T2 }), 'EBADREQ', /own subtree/);
  throwsCode(t, () => ship.send({ op: 'setattr', id: a, attrs: fileAttrs() }), 'EBADREQ', /type/);
  throwsCode(t, () => ship.send(write(a, 0, Buffer.from('x'))), 'EBADREQ', /not a regular file/);
  t.deepEqual(store.dirImage(VOL, ROOT_ID), before);
  t.is(store.volumeState(VOL)!.appliedSeq, applied);
});

// ---- file data ---------------------------------------------------------------------

test('writes are read-modify-write across block boundaries; sparse writes leave holes; truncation zero-fills', (t) => {
  const { store, ship } = fresh(t);
  const f = newId();
  let model = Buffer.alloc(0);
  const apply = (offset: number, data: Buffer): NewRecord => {
    const end = offset + data.length;
    if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)]);
    data.copy(model, offset);
    return write(f, offset, data);
  };
  const cut = (size: number): NewRecord => {
    model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
    return truncate(f, size);
  };
  const check = (what: string): void => {
    t.deepEqual(store.readRange(VOL, f, 0, model.length + 100), model, what);
    const fb = store.fileBlocks(VOL, f);
    t.is(fb.size, model.length, what);
    t.is(fb.blockSize, BLOCK_SIZE);
    for (const b of fb.blocks) {
      const bytes = model.subarray(b.index * BLOCK_SIZE, b.index * BLOCK_SIZE + BLOCK_SIZE);
      t.is(b.length, bytes.length, `${what}: block ${b.index} length is its length within the file`);
      t.is(b.digest, createHash('sha256').update(bytes).digest('hex'), `${what}: block ${b.index} digest`);
    }
  };
  ship.send(mkfile(ROOT_ID, 'f', f), apply(0, pattern(3 * BLOCK_SIZE, 1)));
  check('three blocks');
  ship.send(apply(BLOCK_SIZE - 10, Buffer.alloc(20, 0xee)));
  check('across a boundary');
  // Many small writes in one batch, some overlapping.
  const small: NewRecord[] = [];
  for (let i = 0; i < 40; i++) small.push(apply(5000 + i * 3000, pattern(4096, i + 2)));
  ship.send(...small);
  check('small writes');
  ship.send(apply(10 * BLOCK_SIZE + 7, Buffer.from('tail')));
  check('sparse write');
  t.deepEqual(store.fileBlocks(VOL, f).blocks.map((b) => b.index), [0, 1, 2, 10], 'the gap is holes');
  t.deepEqual(store.readRange(VOL, f, 5 * BLOCK_SIZE, 100), Buffer.alloc(100), 'a hole reads as zeros');
  ship.send(cut(BLOCK_SIZE + 100));
  check('truncate down mid-block');
  ship.send(cut(2 * BLOCK_SIZE + 50));
  check('truncate up');
  t.deepEqual(store.readRange(VOL, f, BLOCK_SIZE + 100, 200), Buffer.alloc(200), 'no old data comes back');
  ship.send(apply(BLOCK_SIZE + 50, Buffer.from('mid')), cut(BLOCK_SIZE + 52), apply(3 * BLOCK_SIZE, Buffer.from('z')));
  check('write, cut and extend in one batch');
  ship.send(cut(0));
  check('truncate to zero');
  t.deepEqual(store.fileBlocks(VOL, f).blocks, []);
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 1, bytes: 0 });
});

test('readRange is short at end of file and empty past it; zeros are stored as holes', (t) => {
  const { store, ship } = fresh(t);
  const f = newId();
  ship.send(mkfile(ROOT_ID, 'f', f), write(f, 0, Buffer.from('hello world')), write(f, 100, Buffer.alloc(2 * BLOCK_SIZE)));
  t.is(store.readRange(VOL, f, 6, 1000).toString('latin1').slice(0, 5), 'world');
  t.is(store.readRange(VOL, f, 6, 1000).length, 1000);
  t.is(store.readRange(VOL, f, 2 * BLOCK_SIZE + 90, 1000).length, 10);
  t.is(store.readRange(VOL, f, 2 * BLOCK_SIZE + 100, 10).length, 0);
  t.is(store.readRange(VOL, f, 1e12, 10).length, 0);
  t.is(store.readRange(VOL, f, 0, 0).length, 0);
  t.deepEqual(store.fileBlocks(VOL, f).blocks.map((b) => b.index), [0], 'blocks of written zeros are holes');
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 1, bytes: 2 * BLOCK_SIZE + 100 });
});

test('identical blocks are stored once, across files and volumes', (t) => {
  const { store, ship, dir } = fresh(t);
  const data = pattern(2 * BLOCK_SIZE, 9);
  const [f, g] = [newId(), newId()];
  ship.send(mkfile(ROOT_ID, 'f', f), write(f, 0, data));
  const once = packBytes(dir);
  t.true(once >= data.length && once < data.length + 200);
  ship.send(mkfile(ROOT_ID, 'g', g), write(g, 0, data));
  store.createVolume('vol2');
  new Shipper(store, 'vol2').send(mkfile(ROOT_ID, 'f', f), write(f, 0, data));
  t.is(packBytes(dir), once, 'no new pack bytes');
  t.deepEqual(store.fileBlocks(VOL, g).blocks, store.fileBlocks(VOL, f).blocks);
  t.deepEqual(store.readRange(VOL, g, 0, data.length), data);
  store.close();
  const db = new Database(join(dir, 'archive.db'), { readonly: true });
  t.is((db.prepare('SELECT count(*) AS n FROM blocks').get() as { n: number }).n, 2);
  db.close();
});

test('readBlocks: runs of blocks across packs, shared blocks and holes come as stored; a bad header inside a run is ECORRUPT', async (t) => {
  // Small packs: a file's blocks are spread over several, each run read with one call.
  const { store, ship, dir } = fresh(t, 3 * BLOCK_SIZE);
  const [f, g, h] = [newId(), newId(), newId()];
  const fData = pattern(7 * BLOCK_SIZE + 321, 11);
  // g shares f's blocks 2..3 (stored once), then one of its own; h has holes (blocks 1, 2).
  const gData = Buffer.concat([fData.subarray(2 * BLOCK_SIZE, 4 * BLOCK_SIZE), pattern(BLOCK_SIZE, 12)]);
  ship.send(mkfile(ROOT_ID, 'f', f), write(f, 0, fData), mkfile(ROOT_ID, 'g', g), write(g, 0, gData), mkfile(ROOT_ID, 'h', h),
    write(h, 0, pattern(BLOCK_SIZE, 13)), write(h, 3 * BLOCK_SIZE, pattern(100, 14)));
  t.true(B.packSizes(dir).size >= 3, 'the blocks are in several packs');
  for (const [id, data] of [[f, fData], [g, gData], [h, store.readRange(VOL, h, 0, 3 * BLOCK_SIZE + 100)]] as const) {
    const n = Math.ceil(data.length / BLOCK_SIZE);
    for (const [first, count] of [[0, n], [1, n - 1], [n - 1, 1], [0, n + 2]]) {
      const raw = store.readBlocks(VOL, id, first, count);
      t.deepEqual(await verifiedRange(raw, first * BLOCK_SIZE, count * BLOCK_SIZE), data.subarray(first * BLOCK_SIZE, (first + count) * BLOCK_SIZE), `${id} ${first}+${count}`);
    }
  }
  t.deepEqual(store.readBlocks(VOL, h, 0, 4).blocks.map((b) => b.index), [0, 3], 'holes are left out');
  store.close();
  // f's second block's header (in the first pack, right after the first block): its magic number.
  B.corrupt(dir, Math.min(...B.packSizes(dir).keys()), 40 + BLOCK_SIZE + 1);
  const again = B.open(dir);
  t.teardown(() => again.close());
  throwsCode(t, () => again.readBlocks(VOL, f, 0, 4), 'ECORRUPT', new RegExp(`volume ${VOL} object ${f} block 1: block header does not match`));
  t.deepEqual(await verifiedRange(again.readBlocks(VOL, f, 2, 5), 2 * BLOCK_SIZE, 5 * BLOCK_SIZE), fData.subarray(2 * BLOCK_SIZE, 7 * BLOCK_SIZE), 'the blocks after it');
});

test('a corrupted byte in a pack fails the read with ECORRUPT (readRange) or the receiver\'s digest check (readBlocks); other files still read', async (t) => {
  const { store, ship, dir } = fresh(t);
  const [f, g] = [newId(), newId()];
  const fData = pattern(BLOCK_SIZE + 1000, 3);
  const gData = pattern(5000, 4);
  ship.send(mkfile(ROOT_ID, 'f', f), write(f, 0, fData), mkfile(ROOT_ID, 'g', g), write(g, 0, gData));
  store.close();
  // Blocks go to the pack in order: f's block 0 first (a 40-byte header, then data).
  B.corrupt(dir, Math.min(...B.packSizes(dir).keys()), 40 + 12345);
  const again = B.open(dir);
  t.teardown(() => again.close());
  throwsCode(t, () => again.readRange(VOL, f, 0, 10), 'ECORRUPT', new RegExp(`volume ${VOL} object ${f} block 0`));
  // readBlocks sends pack bytes without re-hashing them: the corrupt byte goes out, with the
  // digest it must match, and the receiver's check (verifiedRange) refuses the block.
  const raw = again.readBlocks(VOL, f, 0, 2);
  t.deepEqual(raw.blocks.map((b) => [b.index, b.length]), [[0, BLOCK_SIZE], [1, 1000]]);
  t.not(raw.data[12345], fData[12345], 'the corrupt byte is sent as it is stored');
  const refused = await t.throwsAsync(verifiedRange(raw, 0, 10));
  t.true(refused instanceof BlockDigestError && refused.index === 0, String(refused));
  t.deepEqual(await verifiedRange(again.readBlocks(VOL, f, 1, 1), BLOCK_SIZE, 1000), fData.subarray(BLOCK_SIZE), 'the intact block passes');
  t.deepEqual(await verifiedRange(again.readBlocks(VOL, g, 0, 1), 0, 5000), gData);
  t.deepEqual(again.readRange(VOL, f, BLOCK_SIZE, 1000), fData.subarray(BLOCK_SIZE), 'the intact block of the same file');
  t.deepEqual(again.readRange(VOL, g, 0, 5000), gData);
  // A partial write onto the corrupt block would mix corrupt bytes in: refused.
  const s = new Shipper(again, VOL);
  s.seq = again.volumeState(VOL)!.appliedSeq;
  throwsCode(t, () => s.send(write(f, 5, Buffer.from('x'))), 'ECORRUPT');
  // A write covering the whole block replaces it.
  s.send(write(f, 0, Buffer.alloc(BLOCK_SIZE, 1)));
  t.deepEqual(again.readRange(VOL, f, 0, 10), Buffer.alloc(10, 1));
});

// ---- batches -------------------------------------------------------------------------

test('a resent batch is skipped; an overlapping one applies only its new records', (t) => {
  const { store, ship, dir } = fresh(t);
  const [f, d] = [newId(), newId()];
  const recs = [mkfile(ROOT_ID, 'f', f), write(f, 0, pattern(70000, 5)), mkdir(ROOT_ID, 'd', d)];
  const frames = ship.frames(...recs);
  t.deepEqual(store.applyBatch(VOL, 1, frames), { appliedSeq: 3 });
  const image = store.dirImage(VOL, ROOT_ID);
  const packs = packBytes(dir);
  t.deepEqual(store.applyBatch(VOL, 1, frames), { appliedSeq: 3 });
  t.deepEqual(store.dirImage(VOL, ROOT_ID), image);
  t.is(packBytes(dir), packs);
  // Records 2..4: 2 and 3 are skipped (write 2 is not applied twice), 4 is new.
  ship.seq = 1;
  t.is(ship.send(recs[1]!, recs[2]!, unlink(ROOT_ID, 'f')), 4);
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['d']);
  t.deepEqual(store.applyBatch(VOL, 1, Buffer.alloc(0)), { appliedSeq: 4 }, 'an empty batch changes nothing');
});

test('a batch that does not continue the sequence is EGAP; non-consecutive records are EBADREQ', (t) => {
  const { store, ship } = fresh(t);
  ship.send(mkdir(ROOT_ID, 'a', newId()));
  ship.seq = 2; // skips seq 2
  throwsCode(t, () => ship.send(mkdir(ROOT_ID, 'b', newId())), 'EGAP', /applied up to 1/);
  const gap = Buffer.concat([encodeRecord({ ...mkdir(ROOT_ID, 'c', newId()), seq: 2 } as Record), encodeRecord({ ...mkdir(ROOT_ID, 'e', newId()), seq: 4 } as Record)]);
  throwsCode(t, () => store.applyBatch(VOL, 1, gap), 'EBADREQ', /consecutive/);
  t.is(store.volumeState(VOL)!.appliedSeq, 1);
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['a']);
});

test('fence raises the epoch: the old epoch is EFENCED, an unknown newer one EBADREQ', (t) => {
  const { store, ship } = fresh(t);
  ship.send(mkdir(ROOT_ID, 'a', newId()));
  t.is(store.fence(VOL).epoch, 2);
  throwsCode(t, () => ship.send(mkdir(ROOT_ID, 'b', newId())), 'EFENCED');
  ship.epoch = 3;
  throwsCode(t, () => ship.send(mkdir(ROOT_ID, 'b', newId())), 'EBADREQ', /unknown epoch/);
  ship.epoch = 2;
  t.is(ship.send(mkdir(ROOT_ID, 'b', newId())), 2);
  t.deepEqual(store.volumeState(VOL), { name: VOL, epoch: 2, appliedSeq: 2, totals: { entries: 2, bytes: 0 } });
});

test('malformed frames are EBADREQ and nothing of the batch is applied', (t) => {
  const { store, ship } = fresh(t);
  const good = ship.frames(mkdir(ROOT_ID, 'a', newId()), mkdir(ROOT_ID, 'b', newId()));
  const flipped = Buffer.from(good);
  flipped[flipped.length - 3] ^= 0x40;
  throwsCode(t, () => store.applyBatch(VOL, 1, flipped), 'EBADREQ', /checksum/);
  throwsCode(t, () => store.applyBatch(VOL, 1, good.subarray(0, good.length - 1)), 'EBADREQ', /truncated/);
  throwsCode(t, () => store.applyBatch(VOL, 1, Buffer.concat([good, Buffer.from([1, 2, 3])])), 'EBADREQ');
  t.is(store.volumeState(VOL)!.appliedSeq, 0);
  t.deepEqual(store.dirImage(VOL, ROOT_ID).entries, []);
});

/** A frame with the given meta JSON, checksummed properly (so only the content is wrong). */
function craftFrame(seq: number, op: number, meta: object): Buffer {
  const metaBuf = Buffer.from(JSON.stringify(meta));
  const body = Buffer.alloc(13 + metaBuf.length);
  body.writeBigUInt64LE(BigInt(seq), 0);
  body.writeUInt8(op, 8);
  body.writeUInt32LE(metaBuf.length, 9);
  metaBuf.copy(body, 13);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(body.length, 0);
  head.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([head, body]);
}

test('names with "/" or ".." inside valid frames are refused with nothing applied', (t) => {
  const { store, ship } = fresh(t);
  const ok = ship.frames(mkdir(ROOT_ID, 'ok', newId()));
  for (const name of ['a/b', '..', '.', '']) {
    const bad = craftFrame(2, 1, { parent: ROOT_ID, name, id: newId(), attrs: fileAttrs(), parentMtime: T2 });
    throwsCode(t, () => store.applyBatch(VOL, 1, Buffer.concat([ok, bad])), 'EBADREQ', /name/);
  }
  const badRename = craftFrame(2, 5, { parent: ROOT_ID, name: 'ok', newParent: ROOT_ID, newName: '../../etc', parentMtime: T2, newParentMtime: T2 });
  throwsCode(t, () => store.applyBatch(VOL, 1, Buffer.concat([ok, badRename])), 'EBADREQ', /newName/);
  t.is(store.volumeState(VOL)!.appliedSeq, 0);
  t.deepEqual(store.dirImage(VOL, ROOT_ID).entries, []);
});

test('two volumes with the same ids stay independent', (t) => {
  const { store, ship } = fresh(t);
  store.createVolume('vol2');
  const other = new Shipper(store, 'vol2');
  const [d, f] = [newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'd', d), mkfile(d, 'f', f), write(f, 0, Buffer.from('first')));
  other.send(mkdir(ROOT_ID, 'd', d), mkfile(d, 'f', f), write(f, 0, Buffer.from('second volume')));
  other.send(unlink(d, 'f'), { op: 'setxattr', id: d, name: 'user.x', value: Buffer.from('v') });
  store.fence('vol2');
  t.deepEqual(store.readRange(VOL, f, 0, 100), Buffer.from('first'));
  t.deepEqual(names(store.dirImage(VOL, d)), ['f']);
  t.deepEqual(store.dirImage(VOL, d).xattrs, {});
  t.deepEqual(store.volumeState(VOL), { name: VOL, epoch: 1, appliedSeq: 3, totals: { entries: 2, bytes: 5 } });
  t.deepEqual(store.volumeState('vol2'), { name: 'vol2', epoch: 2, appliedSeq: 5, totals: { entries: 1, bytes: 0 } });
  throwsCode(t, () => store.readRange('vol2', f, 0, 1), 'ENOOBJECT');
});

// ---- images ----------------------------------------------------------------------------

test('tierImages yields tiers 0..depth breadth first, parents before children', (t) => {
  const { store, ship } = fresh(t);
  const [a, b, a1, a2, a1x] = [newId(), newId(), newId(), newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'a', a), mkdir(ROOT_ID, 'b', b), mkfile(ROOT_ID, 'f', newId()), mkdir(a, 'a1', a1), mkdir(a, 'a2', a2), mkdir(a1, 'x', a1x));
  const ids = (depth: number): [string, number | undefined][] => [...store.tierImages(VOL, depth)].map((img) => [img.id, img.tier]);
  t.deepEqual(ids(0), [[ROOT_ID, 0]]);
  t.deepEqual(ids(1), [[ROOT_ID, 0], [a, 1], [b, 1]]);
  t.deepEqual(ids(5), [[ROOT_ID, 0], [a, 1], [b, 1], [a1, 2], [a2, 2], [a1x, 3]]);
  const first = [...store.tierImages(VOL, 1)][1]!;
  const { tier: _tier, ...rest } = first;
  t.deepEqual(rest, store.dirImage(VOL, a), 'a tier image is the directory image');
});

test('deepImages: the directory, then below the named subdirectory breadth first, within the entry and image bounds', (t) => {
  const { store, ship } = fresh(t);
  const [a, b, c, d, side, f] = [newId(), newId(), newId(), newId(), newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'a', a), mkdir(a, 'b', b), mkdir(b, 'c', c), mkdir(c, 'd', d), mkdir(ROOT_ID, 'side', side), mkfile(b, 'f', f));
  const ids = (imgs: DirImage[]): string[] => imgs.map((i) => i.id);
  t.deepEqual(ids(store.deepImages(VOL, ROOT_ID, 'a')), [ROOT_ID, a, b, c, d], 'below a only: side is left out');
  t.deepEqual(store.deepImages(VOL, a, 'b')[0], store.dirImage(VOL, a), 'the first is the directory asked for');
  t.deepEqual(ids(store.deepImages(VOL, ROOT_ID)), [ROOT_ID, a, side, b, c, d], 'without a name: everything below, breadth first');
  t.deepEqual(ids(store.deepImages(VOL, ROOT_ID, 'missing')), [ROOT_ID], 'a name it lacks: only the directory');
  t.deepEqual(ids(store.deepImages(VOL, b, 'f')), [b], 'a file: only the directory');
  throwsCode(t, () => store.deepImages(VOL, f), 'ENOOBJECT');
  throwsCode(t, () => store.deepImages(VOL, ROOT_ID, '../x'), 'EBADREQ');
  throwsCode(t, () => store.deepImages('nope', ROOT_ID, 'a'), 'ENOVOLUME');
  // Bounds: a wide directory of DEEP_MAX_ENTRIES files stops the walk after it; 100 small directories stop at DEEP_MAX_IMAGES.
  const wide = newId();
  const many = newId();
  const recs: NewRecord[] = [mkdir(ROOT_ID, 'wide', wide), mkdir(wide, 'next', newId()), mkdir(ROOT_ID, 'many', many)];
  for (let i = 0; i < DEEP_MAX_ENTRIES; i++) recs.push(mkfile(wide, `f${i}`, newId()));
  for (let i = 0; i < 100; i++) recs.push(mkdir(many, `d${i}`, newId()));
  for (let i = 0; i < recs.length; i += 1000) ship.send(...recs.slice(i, i + 1000));
  t.deepEqual(ids(store.deepImages(VOL, ROOT_ID, 'wide')), [ROOT_ID, wide], 'the named directory always goes; nothing past the entry bound');
  t.is(store.deepImages(VOL, ROOT_ID, 'many').length, DEEP_MAX_IMAGES);
});

test('reopening sees the same state; packs roll over at the limit', (t) => {
  const { store, ship, dir } = fresh(t, 3 * BLOCK_SIZE);
  const f = newId();
  const data = pattern(10 * BLOCK_SIZE + 17, 11);
  ship.send(mkdir(ROOT_ID, 'd', newId()), mkfile(ROOT_ID, 'f', f), write(f, 0, data));
  const images = [...store.tierImages(VOL, 3)];
  const state = store.volumeState(VOL);
  store.close();
  t.true(B.packSizes(dir).size >= 4, 'several packs');
  const again = B.open(dir, { packLimitBytes: 3 * BLOCK_SIZE });
  t.teardown(() => again.close());
  t.deepEqual(again.volumeState(VOL), state);
  t.deepEqual([...again.tierImages(VOL, 3)], images);
  t.deepEqual(again.readRange(VOL, f, 0, data.length), data);
  const s = new Shipper(again, VOL);
  s.seq = state!.appliedSeq;
  s.send(write(f, data.length, pattern(BLOCK_SIZE, 12)));
  t.deepEqual(again.readRange(VOL, f, data.length, BLOCK_SIZE), pattern(BLOCK_SIZE, 12));
  throwsCode(t, () => store.volumeState(VOL), 'EARCHIVE', /closed/);
});

test('two openers of one directory take turns: each appends after the other\'s blocks', (t) => {
  const { store, ship, dir } = fresh(t);
  const other = B.open(dir);
  t.teardown(() => other.close());
  const theirs = new Shipper(other, VOL);
  const files: { id: string; data: Buffer }[] = [];
  for (let i = 0; i < 6; i++) {
    const f = { id: newId(), data: pattern(BLOCK_SIZE + 100 * i, 40 + i) };
    files.push(f);
    const [me, peer] = i % 2 === 0 ? [ship, theirs] : [theirs, ship];
    me.send(mkfile(ROOT_ID, `f${i}`, f.id), write(f.id, 0, f.data));
    peer.seq = me.seq;
  }
  for (const s of [store, other]) {
    t.is(s.volumeState(VOL)!.appliedSeq, 12);
    for (const f of files) t.deepEqual(s.readRange(VOL, f.id, 0, f.data.length), f.data);
  }
});

test('under a snapshot floor changed rows are kept closed and the live state is unchanged', (t) => {
  const { store, ship, dir } = fresh(t);
  const [d, f] = [newId(), newId()];
  ship.send(mkdir(ROOT_ID, 'd', d), mkfile(d, 'f', f), write(f, 0, pattern(2 * BLOCK_SIZE, 1)));
  const side = new Database(join(dir, 'archive.db'));
  t.teardown(() => side.close());
  const closedRows = (table: string): number => (side.prepare(`SELECT count(*) AS n FROM ${table} WHERE seq_to != ${LIVE}`).get() as { n: number }).n;
  t.is(closedRows('objects') + closedRows('entries') + closedRows('file_blocks'), 0, 'no snapshot: everything in place');
  side.prepare('UPDATE volumes SET snapshot_floor = applied_seq WHERE name = ?').run(VOL);
  const T3: Time = [1_800_000_000, 0];
  ship.send(
    write(f, 10, Buffer.from('new')),
    { op: 'rename', parent: d, name: 'f', newParent: ROOT_ID, newName: 'g', parentMtime: T3, newParentMtime: T3 },
    write(f, 20, Buffer.from('newer')),
  );
  t.is(closedRows('file_blocks'), 1, 'the old block 0 is kept');
  t.is(closedRows('entries'), 1, 'the old name is kept');
  t.true(closedRows('objects') >= 2, 'the old file and directory rows are kept');
  const changed = side.prepare(`SELECT idx FROM file_blocks WHERE seq_from > 3 AND seq_to = ${LIVE}`).pluck().all();
  t.deepEqual(changed, [0], 'changed blocks since the snapshot: a seq_from range');
  const expect = pattern(2 * BLOCK_SIZE, 1);
  Buffer.from('new').copy(expect, 10);
  Buffer.from('newer').copy(expect, 20);
  t.deepEqual(store.readRange(VOL, f, 0, expect.length), expect);
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['d', 'g']);
  ship.send(unlink(ROOT_ID, 'g'));
  t.deepEqual(names(store.dirImage(VOL, ROOT_ID)), ['d']);
  throwsCode(t, () => store.readRange(VOL, f, 0, 1), 'ENOOBJECT');
  // Block 1 (written before the snapshot) is kept; block 0's post-snapshot version is not
  // pinned by anything and goes; its pre-snapshot version was already kept.
  t.is(closedRows('file_blocks'), 2, 'the snapshot\'s blocks of the deleted file are kept');
});

// ---- totals against brute force ---------------------------------------------------

interface Walked { dirs: string[]; files: { parent: string; name: string; id: string }[]; names: { parent: string; name: string; id: string; dir: boolean }[] }

/** Walks the whole tree through images and checks every directory's totals and every nlink against a count. */
function checkTree(t: ExecutionContext, store: ArchiveStore, volume: string): Walked {
  const w: Walked = { dirs: [], files: [], names: [] };
  const nameCount = new Map<string, number>();
  const reported = new Map<string, number>();
  const sizes = new Map<string, number>();
  const visit = (id: string): { entries: number; bytes: number } => {
    const img = store.dirImage(volume, id);
    w.dirs.push(id);
    let subdirs = 0;
    const sum = { entries: 0, bytes: 0 };
    for (const e of img.entries) {
      const isDir = (e.attrs.mode & 0o170000) === S_IFDIR;
      w.names.push({ parent: id, name: e.name, id: e.id, dir: isDir });
      sum.entries++;
      if (isDir) {
        subdirs++;
        const s = visit(e.id);
        t.deepEqual(e.totals, s, `totals of ${e.id} in its entry`);
        sum.entries += s.entries;
        sum.bytes += s.bytes;
      } else {
        nameCount.set(e.id, (nameCount.get(e.id) ?? 0) + 1);
        reported.set(e.id, e.nlink);
        if ((e.attrs.mode & 0o170000) === 0o100000) {
          sum.bytes += e.attrs.size;
          sizes.set(e.id, e.attrs.size);
          w.files.push({ parent: id, name: e.name, id: e.id });
        }
      }
    }
    t.is(img.nlink, 2 + subdirs, `nlink of directory ${id}`);
    t.deepEqual(img.totals, sum, `totals of ${id}`);
    return sum;
  };
  const total = visit(ROOT_ID);
  t.deepEqual(store.volumeState(volume)!.totals, total, 'volume totals');
  for (const [id, n] of nameCount) t.is(reported.get(id), n, `nlink of ${id}`);
  for (const [id, size] of sizes) t.is(store.readRange(volume, id, 0, size + 10).length, size);
  return w;
}

test('subtree totals and nlink match a brute-force count after random op sequences', (t) => {
  const dir = tempDir(t);
  const store = B.open(dir);
  t.teardown(() => store.close());
  let run = 0;
  const op = fc.tuple(fc.nat(9), fc.nat(1000), fc.nat(1000), fc.nat(3 * BLOCK_SIZE));
  fc.assert(
    fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }), (batches) => {
      const volume = `r${run++}`;
      store.createVolume(volume);
      const ship = new Shipper(store, volume);
      let w = checkTree(t, store, volume);
      for (const batch of batches) {
        const recs: NewRecord[] = [];
        for (const [kind, p, q, n] of batch) {
          const dirOf = w.dirs[p % w.dirs.length]!;
          const name = `n${q % 5}`;
          const file = w.files.length ? w.files[q % w.files.length]! : undefined;
          const nm = w.names.length ? w.names[p % w.names.length]! : undefined;
          switch (kind) {
            case 0: recs.push(mkdir(dirOf, name, newId())); break;
            case 1: recs.push(mkfile(dirOf, name, newId(), n % 3 === 0 ? n : 0)); break;
            case 2: if (file) recs.push(write(file.id, n, pattern(1 + (q * 97) % 70000, q))); break;
            case 3: if (file) recs.push(truncate(file.id, n)); break;
            case 4: if (file) recs.push(link(dirOf, name, file.id)); break;
            case 5: if (nm) recs.push(nm.dir ? rmdir(nm.parent, nm.name) : unlink(nm.parent, nm.name)); break;
            case 6: case 7: if (nm) recs.push(rename(nm.parent, nm.name, dirOf, name)); break;
            case 8: if (nm?.dir) recs.push({ op: 'create', parent: dirOf, name, id: nm.id, attrs: dirAttrs(), parentMtime: T2 }); break;
            default: if (nm && !nm.dir) recs.push({ op: 'create', parent: dirOf, name, id: nm.id, attrs: fileAttrs(n % 1000), parentMtime: T2 });
          }
        }
        if (recs.length === 0) continue;
        try {
          ship.send(...recs);
        } catch (err) {
          // A directory moved into its own subtree is refused; nothing else may fail.
          if (!isArchiveError(err, 'EBADREQ') || !/own subtree/.test((err as Error).message)) throw err;
        }
        w = checkTree(t, store, volume);
      }
    }),
    { seed: 20240611, numRuns: 40 },
  );
});

test('the same records give the same tree as the in-memory reference archive', async (t) => {
  const { store } = fresh(t);
  const mem = new MemoryArchive();
  await mem.createVolume(VOL);
  const [a, b, f, g, s] = [newId(), newId(), newId(), newId(), newId()];
  const recs: NewRecord[] = [
    mkdir(ROOT_ID, 'a', a), mkdir(a, 'b', b), mkfile(b, 'f', f), write(f, 100, pattern(BLOCK_SIZE * 2, 1)), link(ROOT_ID, 'f2', f),
    mkfile(ROOT_ID, 'g', g), write(g, 0, Buffer.from('gg')), truncate(g, BLOCK_SIZE + 3), write(g, BLOCK_SIZE, Buffer.from('x')),
    { op: 'create', parent: a, name: 's', id: s, attrs: linkAttrs('b/f'), target: 'b/f', parentMtime: T2 },
    { op: 'setxattr', id: f, name: 'user.k', value: Buffer.from('v') },
    rename(a, 'b', ROOT_ID, 'b'), rename(ROOT_ID, 'g', b, 'f'), truncate(g, 10), rmdir(ROOT_ID, 'a'),
  ];
  let seq = 0;
  const frames = Buffer.concat(recs.map((r) => encodeRecord({ ...r, seq: ++seq } as Record)));
  store.applyBatch(VOL, 1, frames);
  await mem.ship(VOL, 1, frames);
  // The reference keeps entries in insertion order and gives the root zero times.
  const strip = (img: DirImage): DirImage => ({
    ...img,
    entries: [...img.entries].sort((x, y) => (x.name < y.name ? -1 : 1)),
    attrs: img.id === ROOT_ID ? { ...img.attrs, atime: [0, 0], mtime: [0, 0] } : img.attrs,
  });
  const mine = [...store.tierImages(VOL, 10)].map(strip);
  const theirs: DirImage[] = [];
  for await (const img of mem.tierImages(VOL, 10)) theirs.push(strip(img));
  t.deepEqual(mine, theirs);
  for (const id of [f, g]) {
    t.deepEqual(store.fileBlocks(VOL, id), await mem.fileBlocks(VOL, id));
    t.deepEqual(store.readRange(VOL, id, 0, 4 * BLOCK_SIZE), await mem.readRange(VOL, id, 0, 4 * BLOCK_SIZE));
  }
});

test('tier images of a volume with 20,000 entries stream quickly', (t) => {
  const { store, ship } = fresh(t);
  const recs: NewRecord[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < 100; i++) {
    const d = newId();
    dirs.push(d);
    recs.push(mkdir(ROOT_ID, `d${i}`, d));
  }
  for (let i = 0; i < 19_900; i++) recs.push(mkfile(dirs[i % 100]!, `f${i}`, newId(), 10));
  for (let i = 0; i < recs.length; i += 5000) ship.send(...recs.slice(i, i + 5000));
  const start = performance.now();
  let entries = 0;
  for (const img of store.tierImages(VOL, 2)) entries += img.entries.length;
  const ms = performance.now() - start;
  t.is(entries, 20_000);
  t.deepEqual(store.volumeState(VOL)!.totals, { entries: 20_000, bytes: 199_000 });
  // Not a benchmark: a loose bound that only a per-entry query (or worse) misses; a loaded CI machine stays far inside it.
  t.true(ms < 10_000, `took ${ms.toFixed(0)} ms`);
  t.log(`tier images of 20,000 entries in ${ms.toFixed(0)} ms`);
});
}
