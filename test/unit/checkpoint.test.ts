// Checkpoints without FUSE: the tracking (src/checkpoint/tracker.ts, the
// core's ChangeGuard), the pre-image log, diff and rollback, driven through
// the filesystem core as the adapter drives it. One store for the file (the
// core works relative to the working directory); tests run serially.
import test from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { Filesystem, type Caller } from '../../src/core/filesystem.js';
import { Checkpoints } from '../../src/checkpoint-service/manager.js';
import { CheckpointLog } from '../../src/checkpoint/log.js';
import { BLOCK_SIZE } from '../../src/checkpoint/state.js';
import { createLogger } from '../../src/log/logger.js';
import { enterTempStore } from '../helpers/core-store.js';
import { livePicture, Rng } from '../helpers/model-tree.js';
import { randomStep, type Actions } from '../helpers/checkpoint-ops.js';
import { checkpointTotals, writeCheckpointTree } from '../../src/swap/checkpoint-writer.js';
import type { WriteProgress } from '../../src/swap/tree-writer.js';

const { base, store, leave } = await enterTempStore('strata-ckpt-');
const core = new Filesystem(store);
const cps = await Checkpoints.load(store, core, createLogger({ level: 'silent' }));
test.after.always(async () => {
  await cps.close();
  leave();
});

const ROOT: Caller = { uid: 0, gid: 0, pid: process.pid };

const act: Actions = {
  async write(path, offset, data) {
    const h = (await core.open(path, C.O_WRONLY)).handle;
    try { await core.write(h, data, data.length, offset); } finally { await core.release(h); }
  },
  truncate: (path, size) => core.truncate(path, size),
  async create(path, data) {
    // As the kernel does: create only for a name that does not exist, else open with O_TRUNC.
    const exists = await core.getattr(path).then(() => true, () => false);
    const h = exists ? (await core.open(path, C.O_WRONLY | C.O_TRUNC)).handle : (await core.create(path, 0o644, C.O_WRONLY, ROOT)).handle;
    try { if (data.length > 0) await core.write(h, data, data.length, 0); } finally { await core.release(h); }
  },
  mkdir: async (path) => { await core.mkdir(path, 0o755, ROOT); },
  unlink: (path) => core.unlink(path),
  rmdir: (path) => core.rmdir(path),
  rename: (from, to) => core.rename(from, to),
  link: async (from, to) => { await core.link(from, to); },
  symlink: async (target, path) => { await core.symlink(target, path, ROOT); },
  chmod: (path, mode) => core.chmod(path, mode),
  chown: (path, uid, gid) => core.chown(path, uid, gid),
  utimes: (path, sec, nsec) => core.utimens(path, { sec, nsec }, { sec, nsec }),
  setxattr: (path, name, value) => core.setxattr(path, name, value, 0),
  removexattr: (path, name) => core.removexattr(path, name),
};

/** The differences between two pictures, one line each (readable in a failure). */
function brief(a: Record<string, object>, b: Record<string, object>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k] as Record<string, unknown> | undefined;
    const y = b[k] as Record<string, unknown> | undefined;
    if (!x || !y) { out.push(`${k}: ${x ? 'extra' : 'missing'}`); continue; }
    for (const f of new Set([...Object.keys(x), ...Object.keys(y)])) {
      if (JSON.stringify(x[f]) !== JSON.stringify(y[f])) out.push(`${k}.${f}: ${JSON.stringify(x[f])} != ${JSON.stringify(y[f])}`);
    }
  }
  return out;
}

const picture = (rel: string, nlink = false): ReturnType<typeof livePicture> => livePicture(join(store.root, rel), { nlink });

test.serial('a seeded model: random changes, a checkpoint, more changes, subtree rollbacks equal the checkpoint (twice), cross-boundary links and renames included', async (t) => {
  const only = Number(process.env['STRATA_CK_SEED'] ?? 0);
  for (let seed = only || 1; seed <= (only || 12); seed++) {
    const rng = new Rng(seed);
    const r = `/r${seed}`;
    const s = `/s${seed}`;
    await core.mkdir(r, 0o755, ROOT);
    await core.mkdir(s, 0o755, ROOT);
    for (let i = 0; i < 40; i++) await randomStep(rng, store.root, [r, s], act);
    const p0 = await picture(r.slice(1));
    const q0 = await picture(s.slice(1));
    const n0 = { ...(await picture(r.slice(1), true)) };
    await cps.create({ name: `m${seed}` });
    const steps: string[] = [];
    for (let i = 0; i < 60; i++) { const d = await randomStep(rng, store.root, [r, s], act); if (d) steps.push(d); }
    const rep = await cps.rollback(`m${seed}`, [{ path: r }], false, null);
    t.deepEqual(brief(await picture(r.slice(1)), p0), [], `seed ${seed}: ${steps.join('; ')}`);
    // Again after more changes: tracking goes on from the rolled-back state.
    for (let i = 0; i < 30; i++) await randomStep(rng, store.root, [r, s], act);
    await cps.rollback(`m${seed}`, [{ path: r }], false, null);
    t.deepEqual(brief(await picture(r.slice(1)), p0), [], `seed ${seed} (second rollback)`);
    // A dry run after a full rollback plans nothing.
    const dry = await cps.rollback(`m${seed}`, [{ path: r }], true, null);
    t.deepEqual(dry.changed, [], `seed ${seed}: dry run after rollback`);
    await cps.rollback(`m${seed}`, [{ path: s }], false, null);
    t.deepEqual(brief(await picture(s.slice(1)), q0), [], `seed ${seed} (other root)`);
    // Hard links across the two roots may have become copies (outside an area nothing changes);
    // a whole-tree rollback makes them one object again: link counts are exact.
    await cps.rollback(`m${seed}`, [], false, null);
    t.deepEqual(brief(await picture(r.slice(1), true), n0), [], `seed ${seed} (link counts)`);
    t.true(rep.bytesCopied >= 0);
    await cps.delete(`m${seed}`);
  }
});

test.serial('whole-tree rollback equals a manifest taken at checkpoint time, including writes through a handle opened before the checkpoint', async (t) => {
  const rng = new Rng(99);
  await core.mkdir('/w', 0o755, ROOT);
  for (let i = 0; i < 50; i++) await randomStep(rng, store.root, ['/w'], act);
  await act.create('/w/held', Buffer.alloc(3 * BLOCK_SIZE, 7));
  const held = (await core.open('/w/held', C.O_RDWR)).handle;
  const before = await livePicture(store.root, { nlink: true, ignoreTop: ['.strata'] });
  await cps.create({ name: 'whole' });
  await core.write(held, Buffer.alloc(100, 1), 100, BLOCK_SIZE + 5);
  for (let i = 0; i < 60; i++) await randomStep(rng, store.root, ['/w'], act);
  await core.mkdir('/new-top', 0o700, ROOT);
  const rep = await cps.rollback('whole', [], false, null);
  t.deepEqual(await livePicture(store.root, { nlink: true, ignoreTop: ['.strata'] }), before);
  t.true(rep.changed.some((c) => c.path === '/new-top' && c.action === 'remove'));
  // The handle still works and reads the rolled-back contents.
  const buf = Buffer.alloc(100);
  await core.read(held, buf, 100, BLOCK_SIZE + 5);
  t.deepEqual(buf, Buffer.alloc(100, 7));
  await core.release(held);
  await cps.delete('whole');
});

test.serial('byte-range rollback copies back only the changed bytes in the range; diff lists exactly the changed blocks', async (t) => {
  const size = 16 * BLOCK_SIZE;
  const orig = Buffer.alloc(size);
  for (let i = 0; i < size; i++) orig[i] = (i * 31) & 0xff;
  await act.create('/range.bin', orig);
  await act.create('/untouched.bin', Buffer.alloc(1000, 3));
  await cps.create({ name: 'range' });
  await act.write('/range.bin', 2 * BLOCK_SIZE + 10, Buffer.alloc(20, 0xaa));
  await act.write('/range.bin', 9 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE + 1, 0xbb));
  // Same bytes again: marked, but not reported as changed.
  await act.write('/range.bin', 14 * BLOCK_SIZE, orig.subarray(14 * BLOCK_SIZE, 14 * BLOCK_SIZE + 50));
  const diff = await cps.diff('range', ['/range.bin', '/untouched.bin']);
  t.deepEqual(diff.data.map((d) => [d.path, d.ranges]), [['/range.bin', [[2 * BLOCK_SIZE, BLOCK_SIZE], [9 * BLOCK_SIZE, 2 * BLOCK_SIZE]]]]);
  // Roll back the second write's first block only, by range.
  const rep = await cps.rollback('range', [{ path: '/range.bin', range: { offset: 9 * BLOCK_SIZE, length: BLOCK_SIZE } }], false, null);
  t.is(rep.bytesCopied, BLOCK_SIZE);
  const now = await fsp.readFile(join(store.root, 'range.bin'));
  t.deepEqual(now.subarray(9 * BLOCK_SIZE, 10 * BLOCK_SIZE), orig.subarray(9 * BLOCK_SIZE, 10 * BLOCK_SIZE));
  t.is(now[10 * BLOCK_SIZE], 0xbb);
  t.is(now[2 * BLOCK_SIZE + 10], 0xaa);
  await cps.delete('range');
});

/** A model of one file's bytes: a write (zeros, or a repeating pattern), a truncate, or a punched hole, applied to the core and the model alike. */
async function rangeModelStep(rng: Rng, path: string, model: Buffer): Promise<Buffer> {
  const maxSize = 14 * BLOCK_SIZE;
  const k = rng.int(0, 9);
  if (k < 5) {
    const off = rng.int(0, maxSize - 1);
    const len = rng.int(1, Math.min(rng.pick([100, BLOCK_SIZE, 3 * BLOCK_SIZE]), maxSize - off));
    const data = Buffer.alloc(len, rng.chance(0.3) ? 0 : rng.int(1, 255));
    await act.write(path, off, data);
    const next = Buffer.alloc(Math.max(model.length, off + len));
    model.copy(next);
    data.copy(next, off);
    return next;
  }
  if (k < 8) {
    const size = rng.pick([0, rng.int(0, maxSize), rng.int(0, 13) * BLOCK_SIZE]);
    await act.truncate(path, size);
    const next = Buffer.alloc(size);
    model.copy(next, 0, 0, Math.min(size, model.length));
    return next;
  }
  if (model.length === 0) return model;
  const off = rng.int(0, model.length - 1);
  const len = rng.int(1, model.length - off);
  const h = (await core.open(path, C.O_WRONLY)).handle;
  try { await core.fallocate(h, 0x03 /* PUNCH_HOLE | KEEP_SIZE */, off, len); } finally { await core.release(h); }
  const next = Buffer.from(model);
  next.fill(0, off, off + len);
  return next;
}

test.serial('a seeded model of byte-range rollbacks: writes, zeros, holes, truncates below and past the range, then random ranges put back exactly (a file cut shorter than the range grows to its end)', async (t) => {
  const only = Number(process.env['STRATA_CK_SEED'] ?? 0);
  for (let seed = only || 1; seed <= (only || 16); seed++) {
    const rng = new Rng(seed * 7919);
    const path = `/range-model-${seed}.bin`;
    await act.create(path, Buffer.alloc(0));
    let live: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 12; i++) live = await rangeModelStep(rng, path, live);
    if (live.length === 0) { live = Buffer.alloc(BLOCK_SIZE, 7); await act.write(path, 0, live); }
    const t0 = Buffer.from(live);
    const name = `rm${seed}`;
    await cps.create({ name });
    for (let i = 0; i < 12; i++) live = await rangeModelStep(rng, path, live);
    for (let r = 0; r < 4; r++) {
      const lo = rng.int(0, t0.length - 1);
      const hi = rng.int(lo + 1, t0.length);
      await cps.rollback(name, [{ path, range: { offset: lo, length: hi - lo } }], false, null);
      const next = Buffer.alloc(Math.max(live.length, hi));
      live.copy(next);
      t0.copy(next, lo, lo, hi);
      live = next;
      const got = await fsp.readFile(join(store.root, path.slice(1)));
      const first = got.findIndex((b, i) => b !== live[i]);
      t.true(got.equals(live), `seed ${seed}, rollback ${r} of ${lo}+${hi - lo} (T0 size ${t0.length}): size ${got.length}, expected ${live.length}; first differing byte ${first}`);
      if (!got.equals(live)) break;
      // And again: nothing left to do.
      const dry = await cps.rollback(name, [{ path, range: { offset: lo, length: hi - lo } }], true, null);
      t.deepEqual(dry.changed, [], `seed ${seed}: a dry run after the range rollback plans nothing`);
      if (rng.chance(0.5)) live = await rangeModelStep(rng, path, live);
    }
    await cps.delete(name);
    await core.unlink(path);
  }
});

test.serial('bad input: unknown checkpoint, range past the end at T0, missing area, bad names; nothing changes', async (t) => {
  await act.create('/bad.bin', Buffer.alloc(1000, 1));
  await cps.create({ name: 'bad' });
  await act.write('/bad.bin', 0, Buffer.alloc(10, 2));
  const err = async (f: () => Promise<unknown>): Promise<string> => {
    try { await f(); return 'no error'; } catch (e) { return (e as Error).message; }
  };
  t.regex(await err(() => cps.rollback('nope', [], false, null)), /no checkpoint named nope/);
  t.regex(await err(() => cps.rollback('bad', [{ path: '/bad.bin', range: { offset: 900, length: 200 } }], false, null)), /past the file's end at the checkpoint \(1000 bytes\)/);
  t.regex(await err(() => cps.rollback('bad', [{ path: '/nowhere' }], false, null)), /neither in checkpoint/);
  t.regex(await err(() => cps.rollback('bad', [{ path: '/a/../b' }], false, null)), /not a normalised path/);
  await core.symlink('/etc', '/bad-link', ROOT);
  t.regex(await err(() => cps.rollback('bad', [{ path: '/bad-link/passwd' }], false, null)), /is a symbolic link/);
  t.regex(await err(() => cps.create({ name: 'bad' })), /exists/);
  t.regex(await err(() => cps.create({ name: '../x' })), /checkpoint name/);
  t.regex(await err(() => cps.create({ name: 'x', copyStore: join(base, 'missing') })), /not a directory/);
  // A bad area among good ones: nothing was rolled back.
  t.regex(await err(() => cps.rollback('bad', [{ path: '/bad.bin' }, { path: '/nowhere' }], false, null)), /neither/);
  t.is((await fsp.readFile(join(store.root, 'bad.bin')))[0], 2);
  await cps.delete('bad');
});

test.serial('several checkpoints each keep their own tracking; a rollback to one is tracked by the other', async (t) => {
  await act.create('/multi.txt', Buffer.from('zero'));
  await cps.create({ name: 'one' });
  await act.write('/multi.txt', 0, Buffer.from('ONE!'));
  await cps.create({ name: 'two' });
  await act.write('/multi.txt', 0, Buffer.from('TWO!'));
  await cps.rollback('one', [{ path: '/multi.txt' }], false, null);
  t.is(await fsp.readFile(join(store.root, 'multi.txt'), 'utf8'), 'zero');
  await cps.rollback('two', [{ path: '/multi.txt' }], false, null);
  t.is(await fsp.readFile(join(store.root, 'multi.txt'), 'utf8'), 'ONE!');
  t.deepEqual(cps.list().map((c) => c.name).sort(), ['one', 'two']);
  await cps.delete('one');
  await cps.delete('two');
  t.false(core.guard?.active ?? false);
});

for (const seed of [7, 8, 9]) {
  test.serial(`a swap prepare from a checkpoint writes its T0 tree (seed ${seed}): the spare equals the picture taken at checkpoint time; the checkpoint cannot be deleted while it is read`, async (t) => {
    const rng = new Rng(seed);
    const top = `/sw${seed}`;
    await core.mkdir(top, 0o755, ROOT);
    for (let i = 0; i < 60; i++) await randomStep(rng, store.root, [top], act);
    const before = await livePicture(store.root, { nlink: true, ignoreTop: ['.strata'] });
    const name = `spare-src-${seed}`;
    await cps.create({ name });
    for (let i = 0; i < 80; i++) await randomStep(rng, store.root, [top], act);
    const pin = cps.pin(name);
    const err = await t.throwsAsync(cps.delete(name));
    t.regex(err?.message ?? '', /being read by `strata swap prepare`/);
    const spare = join(base, `spare-${seed}`);
    await fsp.mkdir(spare);
    const rootIno = await pin.rootIno();
    const totals = await checkpointTotals(pin.state, rootIno, store.dir);
    const progress: WriteProgress = { entries: 0, bytes: 0, kept: 0, copiedBytes: 0, fetchedBytes: 0, logBytes: 0 };
    const changed = await writeCheckpointTree({ state: pin.state, rootIno, live: store.root, liveDir: store.dir, spare, progress }, totals.multi);
    pin.unpin();
    t.deepEqual(await livePicture(spare, { nlink: true, ignoreTop: ['.strata'] }), before);
    t.is(progress.entries, totals.entries);
    t.true(progress.logBytes <= pin.state.log.bytes, 'only saved blocks come from the log');
    t.true(changed.length <= totals.entries);
    await cps.delete(name);
    await fsp.rm(spare, { recursive: true, force: true });
  });
}

test('the pre-image log: a torn or corrupt tail is cut off at open, whole frames are kept', async (t) => {
  const path = join(base, 'torn.log');
  const log = await CheckpointLog.open(path, () => {});
  const a = log.append(3, { key: '1', block: 0 }, Buffer.alloc(1000, 9));
  await a.durable;
  await log.append(1, { key: '2' }).durable;
  const good = log.bytes;
  await log.append(3, { key: '1', block: 1 }, Buffer.alloc(5000, 8)).durable;
  await log.close();
  // Damage the last frame's data (as a crash before its fdatasync may leave it).
  const fh = await fsp.open(path, 'r+');
  await fh.write(Buffer.from([0]), 0, 1, good + 100);
  await fh.close();
  const seen: unknown[] = [];
  const again = await CheckpointLog.open(path, (f) => seen.push(f.json));
  t.deepEqual(seen, [{ key: '1', block: 0 }, { key: '2' }]);
  t.is(again.bytes, good);
  t.is((await fsp.stat(path)).size, good);
  t.deepEqual(await again.read(a.dataOffset, 1000), Buffer.alloc(1000, 9));
  await again.close();
});
