// The snapshot engine on its own (no worker, no server): a snapshot is the
// exact tree at its record while mirroring goes on, on a target other than
// the previous snapshot's; verification catches a corrupt block; rollback
// makes the head the snapshot's tree and keeps the old head; a target that
// disappears or fills up mid-copy hands the copy to the next one; an
// interrupted copy starts again on reopen; alerts go through the rules.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ArchiveStore } from '../../src/archive/archive-store.js';
import { SnapshotEngine } from '../../src/archive/snapshots.js';
import { parseRules } from '../../src/alerts/rules.js';
import { isArchiveError } from '../../src/protocol/archive-api.js';
import { ROOT_ID } from '../../src/protocol/records.js';
import { dumpTree, Feeder, mkdir, mkfile, newId, pattern, setxattr, unlink, write, link } from '../helpers/snapshots.js';

const VOL = 'v1';

interface World {
  base: string;
  data: string;
  store: ArchiveStore;
  feed: Feeder;
  targets: { A: string; B: string };
  engine: SnapshotEngine;
}

function world(t: ExecutionContext, opts: { rules?: string; targets?: string[] } = {}): World {
  const base = mkdtempSync(join(tmpdir(), 'strata-snap-'));
  const data = join(base, 'data');
  const store = ArchiveStore.open(data);
  store.createVolume(VOL);
  const names = opts.targets ?? ['A', 'B'];
  const targets = { A: join(base, 'tA'), B: join(base, 'tB') };
  const engine = SnapshotEngine.open(data, {
    targets: names.map((n) => ({ name: n, path: join(base, `t${n}`) })),
    ...(opts.rules ? { rules: parseRules(opts.rules) } : {}),
    pageRows: 7, // many pages even for small trees
    packGraceMs: 0,
  });
  const w: World = { base, data, store, feed: new Feeder(store, VOL), targets, engine };
  t.teardown(() => {
    w.engine.close();
    w.store.close();
    rmSync(base, { recursive: true, force: true });
  });
  return w;
}

/** A small tree: directories, files with data (some shared blocks), a hard link, xattrs. */
function build(w: World, seed: number): void {
  const d = newId();
  const e = newId();
  const f = newId();
  const g = newId();
  w.feed.send(
    mkdir(ROOT_ID, `dir${seed}`, d), mkdir(d, 'inner', e), mkfile(d, 'f', f), write(f, 0, pattern(200_000, seed)),
    mkfile(e, 'g', g), write(g, 0, pattern(70_000, 1)), link(ROOT_ID, `g-link${seed}`, g), setxattr(g, 'user.k', `v${seed}`),
  );
  for (let i = 0; i < 20; i++) w.feed.send(mkfile(e, `small${i}`, newId()));
}

function onTarget<T>(dir: string, fn: (s: ArchiveStore) => T): T {
  const s = ArchiveStore.open(dir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

test('a snapshot is the tree at its record, copied while batches keep coming; catalog row; the next goes to the other target', (t) => {
  const w = world(t);
  build(w, 1);
  const before = dumpTree(w.store, VOL);
  const s1 = w.engine.createSnapshot(VOL, { reason: 'first' });
  t.is(s1.state, 'copying');
  t.is(s1.trigger, 'manual');
  t.is(s1.record, w.store.volumeState(VOL)!.appliedSeq);
  // Mirroring goes on between copy steps: new files, overwrites, unlinks.
  let steps = 0;
  while (w.engine.step()) {
    if (steps++ % 3 === 0) build(w, 100 + steps);
    if (steps === 4) {
      const img = w.store.dirImage(VOL, ROOT_ID);
      const dir = img.entries.find((e) => e.name === 'dir1')!;
      const f = w.store.dirImage(VOL, dir.id).entries.find((e) => e.name === 'f')!;
      w.feed.send(write(f.id, 1000, Buffer.from('overwritten')), unlink(dir.id, 'f'));
    }
  }
  t.true(steps > 5, 'the copy took several steps');
  const done = w.engine.getSnapshot(s1.id);
  t.is(done.state, 'complete');
  t.is(done.reason, 'first');
  t.true(done.blockCount > 0);
  t.true(done.sizeBytes >= 270_000);
  t.not(dumpTree(w.store, VOL), before, 'the head moved on');
  const onA = done.target === 'A' ? w.targets.A : w.targets.B;
  t.is(onTarget(onA, (s) => dumpTree(s, s1.id)), before, 'the snapshot is the tree at its record');
  // No pin left: the floor is back and closed rows are pruned.
  const side = w.store;
  t.is(side.volumeState(VOL)!.name, VOL);
  const s2 = w.engine.createSnapshot(VOL);
  w.engine.drain();
  t.not(w.engine.getSnapshot(s2.id).target, done.target, 'the next snapshot goes to the other target');
  t.is(onTarget(w.engine.getSnapshot(s2.id).target === 'A' ? w.targets.A : w.targets.B, (s) => dumpTree(s, s2.id)), dumpTree(w.store, VOL));
  t.deepEqual(w.engine.listSnapshots({ volume: VOL }).map((s) => s.id), [s1.id, s2.id]);
});

test('placement: alert snapshots need two targets; manual ones fall back to the only one', (t) => {
  const w = world(t, { targets: ['A'], rules: 'conditions:\n  - name: disk-errors\n    match: { alertname: DiskErrors }\n' });
  build(w, 2);
  const d = w.engine.receiveAlert({ status: 'firing', labels: { alertname: 'DiskErrors', volume: VOL }, annotations: {} }, 'alertmanager');
  t.is(d.decision, 'refused');
  t.regex(d.detail, /only one target/);
  const m1 = w.engine.createSnapshot(VOL);
  const m2 = w.engine.createSnapshot(VOL);
  w.engine.drain();
  t.is(w.engine.getSnapshot(m1.id).target, 'A');
  t.is(w.engine.getSnapshot(m2.id).target, 'A');
  t.is(w.engine.getSnapshot(m2.id).state, 'complete');
});

test('verify re-hashes every block on the target and catches a corrupt one', (t) => {
  const w = world(t);
  build(w, 3);
  const s = w.engine.createSnapshot(VOL);
  w.engine.drain();
  const ok = w.engine.verifySnapshot(s.id);
  t.true(ok.lastVerification!.ok);
  t.true(ok.lastVerification!.blocks > 3);
  const dir = ok.target === 'A' ? w.targets.A : w.targets.B;
  const pack = join(dir, 'packs', readdirSync(join(dir, 'packs'))[0]!);
  const fd = openSync(pack, 'r+');
  writeSync(fd, Buffer.from('XXXX'), 0, 4, 200); // inside the first block's data
  closeSync(fd);
  const bad = w.engine.verifySnapshot(s.id);
  t.false(bad.lastVerification!.ok);
  t.is(bad.lastVerification!.bad, 1);
  t.regex(bad.lastVerification!.errors[0]!, /sha256 mismatch/);
  t.is(w.engine.getSnapshot(s.id).lastVerification!.ok, false, 'kept in the catalog');
});

test('rollback: the head becomes the snapshot tree at a new epoch; the old head is kept as a snapshot; the old epoch is fenced', (t) => {
  const w = world(t);
  build(w, 4);
  const at = dumpTree(w.store, VOL);
  const snap = w.engine.createSnapshot(VOL);
  w.engine.drain();
  build(w, 5);
  w.feed.send(setxattr(ROOT_ID, 'user.later', 'yes'));
  const head = dumpTree(w.store, VOL);
  const before = w.store.volumeState(VOL)!;
  const r = w.engine.rollback(VOL, snap.id);
  t.is(r.state.epoch, before.epoch + 1);
  t.is(r.state.appliedSeq, before.appliedSeq + 1);
  t.is(dumpTree(w.store, VOL), at, 'the head is the snapshot tree');
  t.deepEqual(w.store.volumeState(VOL), r.state);
  t.truthy(r.kept);
  t.is(r.kept!.trigger, 'rollback');
  t.is(r.kept!.record, before.appliedSeq);
  w.engine.drain();
  const kept = w.engine.getSnapshot(r.kept!.id);
  t.is(kept.state, 'complete');
  t.is(onTarget(kept.target === 'A' ? w.targets.A : w.targets.B, (s) => dumpTree(s, kept.id)), head, 'the rolled-back head is kept whole');
  const err = t.throws(() => w.feed.send(mkfile(ROOT_ID, 'late', newId())));
  t.true(isArchiveError(err, 'EFENCED'));
  w.feed.epoch = r.state.epoch;
  w.feed.send(mkfile(ROOT_ID, 'after', newId()));
  t.true(w.store.dirImage(VOL, ROOT_ID).entries.some((e) => e.name === 'after'), 'the head continues from the snapshot');
});

test('rollback by the holder (a swap): the epoch stays, the snapshot that already keeps the head is used, a wrong epoch is refused', (t) => {
  const w = world(t);
  build(w, 4);
  const at = dumpTree(w.store, VOL);
  const snap = w.engine.createSnapshot(VOL);
  w.engine.drain();
  build(w, 5);
  const head = dumpTree(w.store, VOL);
  const before = w.store.volumeState(VOL)!;
  const preSwap = w.engine.createSnapshot(VOL, { reason: 'the head before swap 1' });
  const holder = { epoch: before.epoch, storeId: 'ab12' };
  const wrong = t.throws(() => w.engine.rollback(VOL, snap.id, { holder: { ...holder, epoch: before.epoch + 1 } }));
  t.true(isArchiveError(wrong, 'EFENCED'));
  t.is(dumpTree(w.store, VOL), head, 'refused: nothing changed');
  const r = w.engine.rollback(VOL, snap.id, { holder, keptBy: preSwap.id });
  t.is(r.state.epoch, before.epoch, 'the epoch is kept');
  t.is(r.state.appliedSeq, before.appliedSeq + 1);
  t.is(r.kept?.id, preSwap.id, 'the given snapshot keeps the head');
  t.is(dumpTree(w.store, VOL), at, 'the head is the snapshot tree (ids included)');
  w.engine.drain();
  t.deepEqual(w.engine.listSnapshots({ volume: VOL }).map((s) => s.id), [snap.id, preSwap.id], 'no second snapshot of the same head');
  const kept = w.engine.getSnapshot(preSwap.id);
  t.is(kept.state, 'complete');
  t.is(onTarget(kept.target === 'A' ? w.targets.A : w.targets.B, (s) => dumpTree(s, kept.id)), head, 'the old head is kept whole');
  w.feed.send(mkfile(ROOT_ID, 'after', newId()));
  t.true(w.store.dirImage(VOL, ROOT_ID).entries.some((e) => e.name === 'after'), 'the holder ships on at the same epoch');
  // keptBy naming a snapshot of another record: a rollback snapshot is taken as usual.
  const r2 = w.engine.rollback(VOL, snap.id, { holder, keptBy: preSwap.id });
  t.not(r2.kept?.id, preSwap.id);
  t.is(r2.kept?.trigger, 'rollback');
});

test('the data directory is lost: a new one given the same targets adopts them, lists their snapshots and rolls back from them', (t) => {
  const w = world(t);
  build(w, 6);
  const at = dumpTree(w.store, VOL);
  const snap = w.engine.createSnapshot(VOL, { reason: 'before the loss' });
  w.engine.drain();
  w.engine.close();
  w.store.close();
  rmSync(w.data, { recursive: true, force: true });
  w.engine = SnapshotEngine.open(w.data, { targets: [{ name: 'A', path: w.targets.A }, { name: 'B', path: w.targets.B }], packGraceMs: 0 });
  w.store = ArchiveStore.open(w.data);
  const listed = w.engine.listSnapshots();
  t.deepEqual(listed.map((s) => [s.id, s.state, s.reason]), [[snap.id, 'complete', 'before the loss']]);
  const r = w.engine.rollback(VOL, snap.id);
  t.is(r.kept, null, 'no head to keep');
  t.is(dumpTree(w.store, VOL), at, 'the volume is back, blocks copied from the target');
  t.true(w.engine.verifySnapshot(snap.id).lastVerification!.ok);
});

test('a target that disappears mid-copy: the copy moves to the next target; the catalog says so', (t) => {
  const w = world(t);
  build(w, 7);
  const s = w.engine.createSnapshot(VOL);
  const first = s.target!;
  const firstDir = first === 'A' ? w.targets.A : w.targets.B;
  w.engine.step();
  w.engine.step();
  renameSync(firstDir, `${firstDir}.gone`);
  w.engine.drain();
  const done = w.engine.getSnapshot(s.id);
  t.is(done.state, 'complete');
  t.not(done.target, first);
  t.is(done.attempts.length, 1);
  t.is(done.attempts[0]!.target, first);
  t.is(onTarget(done.target === 'A' ? w.targets.A : w.targets.B, (st) => dumpTree(st, s.id)), dumpTree(w.store, VOL));
  const info = w.engine.targets().find((x) => x.name === first)!;
  t.false(info.healthy);
  t.regex(info.problem!, /ENOENT/);
});

test('a copy interrupted by a crash starts again when the engine reopens; nothing half-written is complete', (t) => {
  const w = world(t);
  build(w, 8);
  const at = dumpTree(w.store, VOL);
  const s = w.engine.createSnapshot(VOL);
  for (let i = 0; i < 5; i++) w.engine.step();
  t.is(w.engine.getSnapshot(s.id).state, 'copying');
  w.engine.close();
  build(w, 9); // mirroring went on while the engine was down; the pin held
  w.engine = SnapshotEngine.open(w.data, { packGraceMs: 0 });
  t.is(w.engine.getSnapshot(s.id).state, 'copying');
  w.engine.drain();
  const done = w.engine.getSnapshot(s.id);
  t.is(done.state, 'complete');
  t.is(onTarget(done.target === 'A' ? w.targets.A : w.targets.B, (st) => dumpTree(st, s.id)), at);
});

test('alerts: a matching alert takes one snapshot per min-interval; others are logged with the reason', (t) => {
  const w = world(t, { rules: 'conditions:\n  - name: disk-errors\n    match: { alertname: DiskErrors }\n    volume-label: volume\n    min-interval: 10m\n    keep: 10\n' });
  build(w, 10);
  const fire = (labels: { [k: string]: string }, status: 'firing' | 'resolved' = 'firing') => w.engine.receiveAlert({ status, labels, annotations: { summary: 's' } }, 'alertmanager');
  const d1 = fire({ alertname: 'DiskErrors', volume: VOL, severity: 'critical' });
  t.is(d1.decision, 'snapshot');
  t.is(d1.condition, 'disk-errors');
  const snap = w.engine.getSnapshot(d1.snapshot!);
  t.is(snap.trigger, 'alert');
  t.is(snap.condition, 'disk-errors');
  t.deepEqual(snap.labels, { alertname: 'DiskErrors', volume: VOL, severity: 'critical' });
  t.deepEqual(snap.annotations, { summary: 's' });
  t.is(fire({ alertname: 'DiskErrors', volume: VOL }).decision, 'suppressed');
  t.is(fire({ alertname: 'Other', volume: VOL }).decision, 'no-match');
  t.is(fire({ alertname: 'DiskErrors' }).decision, 'no-volume');
  t.is(fire({ alertname: 'DiskErrors', volume: 'nope' }).decision, 'unknown-volume');
  t.is(fire({ alertname: 'DiskErrors', volume: VOL }, 'resolved').decision, 'resolved');
  t.is(w.engine.listSnapshots().length, 1);
  t.deepEqual(w.engine.alerts().map((a) => a.decision), ['resolved', 'unknown-volume', 'no-volume', 'no-match', 'suppressed', 'snapshot']);
});

test('chooseSnapshot: newest complete for the condition on a readable target; a lost target is skipped and said', (t) => {
  const w = world(t, { rules: 'conditions:\n  - name: disk-errors\n    match: { alertname: DiskErrors }\n    min-interval: 1m\n' });
  let clock = Date.now();
  (w.engine as unknown as { now: () => number }).now = () => clock;
  build(w, 11);
  const a = w.engine.receiveAlert({ status: 'firing', labels: { alertname: 'DiskErrors', volume: VOL }, annotations: {} }, 'alertmanager');
  w.engine.drain();
  clock += 120_000;
  build(w, 12);
  const b = w.engine.receiveAlert({ status: 'firing', labels: { alertname: 'DiskErrors', volume: VOL }, annotations: {} }, 'alertmanager');
  w.engine.drain();
  const sa = w.engine.getSnapshot(a.snapshot!);
  const sb = w.engine.getSnapshot(b.snapshot!);
  t.not(sa.target, sb.target);
  t.is(w.engine.chooseSnapshot(VOL, { condition: 'disk-errors' }).snapshot.id, sb.id);
  t.is(w.engine.chooseSnapshot(VOL, { condition: 'disk-errors', before: new Date(clock - 1000).toISOString() }).snapshot.id, sa.id);
  rmSync(sb.target === 'A' ? w.targets.A : w.targets.B, { recursive: true, force: true });
  const c = w.engine.chooseSnapshot(VOL, { condition: 'disk-errors' });
  t.is(c.snapshot.id, sa.id);
  t.is(c.skipped[0]!.id, sb.id);
  t.regex(c.why, /skipped/);
  t.is(w.engine.getSnapshot(sb.id).state, 'lost');
  const e = t.throws(() => w.engine.chooseSnapshot(VOL, { condition: 'nothing' }));
  t.true(isArchiveError(e, 'ENOSNAPSHOT'));
});

test('a target on a small tmpfs that fills up mid-copy: the copy goes to the other target', (t) => {
  const w = world(t);
  const small = join(w.base, 'small');
  mkdirSync(small);
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small]).status !== 0) {
    t.log('cannot mount tmpfs here');
    t.pass();
    return;
  }
  t.teardown(() => { spawnSync('umount', ['-l', small]); });
  w.engine.close();
  w.engine = SnapshotEngine.open(w.data, { targets: [{ name: 'small', path: join(small, 't') }, { name: 'B', path: w.targets.B }], packGraceMs: 0 });
  // 4 MiB of distinct data: more than the tmpfs holds.
  const f = newId();
  w.feed.send(mkfile(ROOT_ID, 'big', f));
  for (let i = 0; i < 8; i++) w.feed.send(write(f, i * 512 * 1024, pattern(512 * 1024, 1000 + i)));
  // The first goes to B (ties broken by free space), the next to the other target: the small one.
  const pre = w.engine.createSnapshot(VOL);
  w.engine.drain();
  t.is(w.engine.getSnapshot(pre.id).target, 'B');
  const s = w.engine.createSnapshot(VOL);
  t.is(s.target, 'small');
  w.engine.drain();
  const done = w.engine.getSnapshot(s.id);
  t.is(done.state, 'complete');
  t.is(done.target, 'B', 'no other target: a manual snapshot falls back to the previous one');
  t.is(done.attempts.length, 1);
  t.is(done.attempts[0]!.target, 'small');
  t.regex(done.attempts[0]!.error, /ENOSPC|SQLITE_FULL|full/i);
  t.is(onTarget(w.targets.B, (st) => dumpTree(st, s.id)), dumpTree(w.store, VOL));
  t.false(existsSync(join(small, 't', 'nothing')));
  t.true(statSync(join(small, 't')).isDirectory());
});

/** Deterministic PRNG (mulberry32): the seed is in the test name, a failure replays exactly. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function packBytes(dir: string): number {
  const p = join(dir, 'packs');
  return existsSync(p) ? readdirSync(p).reduce((n, f) => n + statSync(join(p, f)).size, 0) : 0;
}

for (const seed of [1, 2, 3]) {
  test(`GC against a model (seed ${seed}): random writes, deletes, snapshots, snapshot deletes and collections never lose a referenced block and reclaim the rest`, (t) => {
    const base = mkdtempSync(join(tmpdir(), 'strata-snapgc-'));
    const data = join(base, 'data');
    let store = ArchiveStore.open(data, { packLimitBytes: 256 * 1024 });
    let engine = SnapshotEngine.open(data, { targets: [{ name: 'A', path: join(base, 'tA') }, { name: 'B', path: join(base, 'tB') }], pageRows: 5, packGraceMs: 0 });
    t.teardown(() => {
      engine.close();
      store.close();
      rmSync(base, { recursive: true, force: true });
    });
    const rand = rng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const vols = ['v1', 'v2'];
    // Model: per volume, file name -> (id, content seeds, one per 64 KiB block); per snapshot, its volume's files then.
    const heads = new Map<string, Map<string, { id: string; blocks: number[] }>>();
    const snaps = new Map<string, { volume: string; files: Map<string, number[]>; target: string }>();
    const feeds = new Map<string, Feeder>();
    for (const v of vols) {
      store.createVolume(v);
      heads.set(v, new Map());
      feeds.set(v, new Feeder(store, v));
    }
    const content = (blocks: number[]): Buffer => Buffer.concat(blocks.map((b) => pattern(65536, b)));
    const check = (label: string): void => {
      for (const v of vols) {
        const root = store.dirImage(v, ROOT_ID);
        const files = heads.get(v)!;
        t.deepEqual(root.entries.map((e) => e.name).sort(), [...files.keys()].sort(), `${label}: ${v} names`);
        for (const [name, f] of files) t.true(store.readRange(v, f.id, 0, f.blocks.length * 65536).equals(content(f.blocks)), `${label}: ${v}/${name}`);
      }
      for (const [id, s] of snaps) {
        const dir = join(base, `t${s.target}`);
        onTarget(dir, (ts) => {
          const root = ts.dirImage(id, ROOT_ID);
          t.deepEqual(root.entries.map((e) => e.name).sort(), [...s.files.keys()].sort(), `${label}: snapshot ${id} names`);
          for (const e of root.entries) t.true(ts.readRange(id, e.id, 0, 16 * 65536).equals(content(s.files.get(e.name)!)), `${label}: snapshot ${id} ${e.name}`);
        });
      }
    };
    const leaks = (dir: string): number => onTarget(dir, () => 0) + (() => {
      // Block rows no file_blocks row references: what GC must have dropped.
      const db = new Database(join(dir, 'archive.db'), { readonly: true });
      try {
        return db.prepare('SELECT COUNT(*) FROM blocks WHERE digest NOT IN (SELECT digest FROM file_blocks)').pluck().get() as number;
      } finally {
        db.close();
      }
    })();
    let n = 0;
    for (let step = 0; step < 60; step++) {
      const v = pick(vols);
      const files = heads.get(v)!;
      const r = rand();
      if (r < 0.35 || files.size === 0) {
        const name = `f${n++}`;
        const id = newId();
        const blocks = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Math.floor(rand() * 12)); // a small pool: blocks shared across files and volumes
        feeds.get(v)!.send(mkfile(ROOT_ID, name, id), write(id, 0, content(blocks)));
        files.set(name, { id, blocks });
      } else if (r < 0.5) {
        const name = pick([...files.keys()]);
        const f = files.get(name)!;
        const i = Math.floor(rand() * f.blocks.length);
        f.blocks[i] = 100 + Math.floor(rand() * 12);
        feeds.get(v)!.send(write(f.id, i * 65536, pattern(65536, f.blocks[i]!)));
      } else if (r < 0.65) {
        const name = pick([...files.keys()]);
        feeds.get(v)!.send(unlink(ROOT_ID, name));
        files.delete(name);
      } else if (r < 0.78) {
        const s = engine.createSnapshot(v);
        // Mirroring goes on during the copy.
        let k = 0;
        const copyFiles = new Map([...files].map(([name, f]) => [name, [...f.blocks]]));
        while (engine.step()) {
          if (k++ % 4 === 0 && files.size > 0) {
            const name = pick([...files.keys()]);
            feeds.get(v)!.send(unlink(ROOT_ID, name));
            files.delete(name);
          }
          if (k === 3) engine.gc(); // a collection during the copy must leave the pinned rows' blocks alone
        }
        const done = engine.getSnapshot(s.id);
        t.is(done.state, 'complete');
        snaps.set(s.id, { volume: v, files: copyFiles, target: done.target! });
      } else if (r < 0.9 && snaps.size > 0) {
        const id = pick([...snaps.keys()]);
        engine.deleteSnapshot(id);
        snaps.delete(id);
      } else {
        engine.gc();
        check(`step ${step} after gc`);
        t.is(leaks(data), 0, 'no unreferenced block left on the data directory');
        for (const x of ['A', 'B']) if (existsSync(join(base, `t${x}`, 'archive.db'))) t.is(leaks(join(base, `t${x}`)), 0, `no unreferenced block left on ${x}`);
      }
      if (step === 30) {
        // Reopen everything: nothing depends on memory.
        engine.close();
        store.close();
        store = ArchiveStore.open(data, { packLimitBytes: 256 * 1024 });
        engine = SnapshotEngine.open(data, { pageRows: 5, packGraceMs: 0 });
        for (const v of vols) feeds.set(v, new Feeder(store, v));
      }
    }
    engine.gc();
    check('end');
    // Delete everything: the space comes back.
    const beforeData = packBytes(data);
    for (const id of [...snaps.keys()]) engine.deleteSnapshot(id);
    for (const v of vols) for (const name of [...heads.get(v)!.keys()]) feeds.get(v)!.send(unlink(ROOT_ID, name));
    const r = engine.gc();
    t.true(r.stores.find((s) => s.store === 'data')!.blocksDropped >= 0);
    t.true(packBytes(data) < Math.max(beforeData / 4, 300 * 1024), `data packs ${beforeData} -> ${packBytes(data)} bytes`);
    for (const x of ['A', 'B']) t.true(packBytes(join(base, `t${x}`)) < 200 * 1024, `target ${x} packs: ${packBytes(join(base, `t${x}`))} bytes left`);
  });
}

test('rollback is decided at once and the head rebuilt in steps: reads come from the snapshot meanwhile, records and snapshots are refused as retryable, the source cannot be deleted; then the head takes records and the old head\'s rows go', (t) => {
  const w = world(t);
  build(w, 7);
  const at = dumpTree(w.store, VOL);
  const snap = w.engine.createSnapshot(VOL);
  w.engine.drain();
  build(w, 8);
  w.feed.send(unlink(ROOT_ID, 'dir7')); // the snapshot's blocks of dir7/f: only on its target after a collection
  w.engine.gc();
  const head = dumpTree(w.store, VOL);
  const r = w.engine.rollback(VOL, snap.id);
  t.is(dumpTree(w.store, VOL), at, 'at once: the volume reads as the snapshot (from its target)');
  t.deepEqual(w.store.volumeState(VOL), r.state);
  t.deepEqual(w.store.listVolumes().map((v) => v.name), [VOL], 'the hidden volumes are not listed');
  w.feed.epoch = r.state.epoch;
  const refused = t.throws(() => w.feed.send(mkfile(ROOT_ID, 'early', newId())));
  t.true(isArchiveError(refused, 'EUNAVAILABLE'), 'a record is refused as retryable while the head is rebuilt');
  t.regex(refused!.message, /being rebuilt from snapshot/);
  t.true(isArchiveError(t.throws(() => w.engine.createSnapshot(VOL)), 'EUNAVAILABLE'));
  t.true(isArchiveError(t.throws(() => w.engine.deleteSnapshot(snap.id)), 'EUNAVAILABLE'));
  t.is(w.engine.rebuildOf(VOL)?.snapshot, snap.id);
  // A few steps: still the snapshot, however far the rebuild got.
  for (let i = 0; i < 5; i++) w.engine.step();
  t.is(dumpTree(w.store, VOL), at);
  w.engine.drain();
  t.is(w.engine.rebuildOf(VOL), null);
  t.is(dumpTree(w.store, VOL), at, 'rebuilt: the head is the snapshot tree, with the blocks copied back');
  w.feed.send(mkfile(ROOT_ID, 'after', newId()));
  t.true(w.store.dirImage(VOL, ROOT_ID).entries.some((e) => e.name === 'after'), 'the head takes records again');
  const kept = w.engine.getSnapshot(r.kept!.id);
  t.is(kept.state, 'complete');
  t.is(onTarget(kept.target === 'A' ? w.targets.A : w.targets.B, (s) => dumpTree(s, kept.id)), head);
  const db = new Database(join(w.data, 'archive.db'), { readonly: true });
  try {
    t.deepEqual(db.prepare('SELECT name FROM volumes').pluck().all(), [VOL], 'the old head\'s volume is gone');
    const vid = db.prepare('SELECT vid FROM volumes WHERE name = ?').pluck().get(VOL) as number;
    for (const tb of ['objects', 'entries', 'xattrs', 'file_blocks', 'counts']) {
      t.is(db.prepare(`SELECT COUNT(*) FROM ${tb} WHERE vid != ?`).pluck().get(vid), 0, `no rows of the old head left in ${tb}`);
    }
  } finally {
    db.close();
  }
});

for (const seed of [11, 12, 13]) {
  test(`rebuild against a model (seed ${seed}): random trees, a rollback, crashes (engine and store reopened) at random steps of the rebuild; the head is the snapshot, then the snapshot plus later records`, (t) => {
    const w = world(t);
    const refDir = join(w.base, 'ref');
    const ref = ArchiveStore.open(refDir);
    ref.createVolume(VOL);
    t.teardown(() => ref.close());
    const refFeed = new Feeder(ref, VOL);
    const rand = rng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const dirs = [ROOT_ID];
    const files: { parent: string; name: string; id: string }[] = [];
    let n = 0;
    const op = (): Parameters<Feeder['send']> => {
      const r = rand();
      if (r < 0.2) {
        const id = newId();
        const rec = mkdir(pick(dirs), `d${n++}`, id);
        dirs.push(id);
        return [rec];
      }
      if (r < 0.55 || files.length === 0) {
        const f = { parent: pick(dirs), name: `f${n++}`, id: newId() };
        files.push(f);
        const blocks = Array.from({ length: Math.floor(rand() * 3) }, () => Math.floor(rand() * 8));
        return [mkfile(f.parent, f.name, f.id), ...(blocks.length > 0 ? [write(f.id, 0, Buffer.concat(blocks.map((b) => pattern(65536, b))))] : [])];
      }
      const f = pick(files);
      if (r < 0.7) return [write(f.id, Math.floor(rand() * 200_000), pattern(1 + Math.floor(rand() * 5000), n++))];
      if (r < 0.8) return [setxattr(f.id, `user.x${Math.floor(rand() * 3)}`, `v${n++}`)];
      if (r < 0.9) {
        const l = { parent: pick(dirs), name: `l${n++}`, id: f.id };
        files.push(l);
        return [link(l.parent, l.name, l.id)];
      }
      files.splice(files.indexOf(f), 1);
      return [unlink(f.parent, f.name)];
    };
    for (let i = 0; i < 40; i++) {
      const recs = op();
      w.feed.send(...recs);
      refFeed.send(...recs);
    }
    const snap = w.engine.createSnapshot(VOL);
    w.engine.drain();
    const at = dumpTree(w.store, VOL);
    t.is(dumpTree(ref, VOL), at, 'the model equals the head at the snapshot');
    // Later records of the old head, which the rollback discards (the model never sees them); some collected away.
    const saved = { dirs: [...dirs], files: files.map((f) => ({ ...f })) };
    for (let i = 0; i < 30; i++) w.feed.send(...op());
    if (rand() < 0.5) w.engine.gc();
    dirs.splice(0, dirs.length, ...saved.dirs);
    files.splice(0, files.length, ...saved.files);
    const r = w.engine.rollback(VOL, snap.id);
    w.feed.epoch = r.state.epoch;
    const crashes = 1 + Math.floor(rand() * 3);
    for (let c = 0; c < crashes; c++) {
      const steps = Math.floor(rand() * 40);
      for (let i = 0; i < steps; i++) w.engine.step();
      // A crash: every step is one transaction, so a process killed anywhere leaves the database of some step boundary.
      w.engine.close();
      w.store.close();
      w.store = ArchiveStore.open(w.data);
      w.feed = new Feeder(w.store, VOL, r.state.epoch);
      w.engine = SnapshotEngine.open(w.data, { targets: [{ name: 'A', path: w.targets.A }, { name: 'B', path: w.targets.B }], pageRows: 7, packGraceMs: 0 });
      t.is(dumpTree(w.store, VOL), at, `seed ${seed}, crash ${c} after ${steps} steps: the volume reads as the snapshot`);
      if (w.engine.rebuildOf(VOL) !== null) t.true(isArchiveError(t.throws(() => w.feed.send(mkfile(ROOT_ID, 'refused', newId()))), 'EUNAVAILABLE'));
    }
    w.engine.drain();
    t.is(w.engine.rebuildOf(VOL), null);
    t.is(dumpTree(w.store, VOL), at, `seed ${seed}: rebuilt`);
    // The head continues from the snapshot: later records on both.
    for (let i = 0; i < 30; i++) {
      const recs = op();
      w.feed.send(...recs);
      refFeed.send(...recs);
    }
    t.is(dumpTree(w.store, VOL), dumpTree(ref, VOL), `seed ${seed}: the head is the snapshot plus the later records`);
    const kept = w.engine.getSnapshot(r.kept!.id);
    t.is(kept.state, 'complete');
  });
}
