// A local checkpoint as the source of a swap (issue 13 with issue 12,
// docs/swap.md "Sources", docs/checkpoints.md "Checkpoints and swaps"):
// `strata swap prepare --from checkpoint:NAME` after real programs changed
// part of the tree, a commit while a reader and a writer run, the tree equal
// to the manifest taken at checkpoint time, `swap back` giving the pre-swap
// tree with its checkpoints live again (and right, also for a file written
// through a handle opened before the swap), on an unmirrored and a mirrored
// mount.
import test from 'ava';
import { mkdirSync, readFileSync, readdirSync, openSync, writeSync, closeSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { sh, strata, withMount } from '../helpers/mount.js';
import { assertConverged, syncMount } from '../helpers/mirror.js';
import { manifest } from '../helpers/recover.js';
import { commit, hammer, assertHammerClean, prepare, swapStatus, withSwapMount, without } from '../helpers/swap.js';
import { createCheckpoint, rollbackTo, strataJson } from '../helpers/checkpoint.js';
import type { CheckpointListing } from '../../src/checkpoint-service/manager.js';

const TREE = [
  'mkdir -p d1/d2 d3 empty db',
  'for i in $(seq 0 19); do head -c $((1000 + i * 37000)) /dev/urandom > f$i; done',
  'head -c 4000000 /dev/urandom > d1/d2/big',
  'ln f1 d1/f1-link', 'ln -s f2 sym', 'setfattr -n user.k -v value f3', 'chown 1234:5678 f4', 'chmod 640 f5',
  'mkfifo d1/fifo', 'chmod 750 d3', 'touch -d @1700000000.123456789 f6', 'truncate -s 8M sparse && printf tail >> sparse',
  'sqlite3 db/app.sqlite "create table t(a integer primary key, b text); begin; insert into t(b) select hex(randomblob(200)) from (with recursive c(x) as (select 1 union all select x+1 from c where x < 2000) select x from c); commit;"',
].join(' && ');

// What a program does to part of the tree after the checkpoint: appends, overwrites, renames, removes, a database update.
const CHANGES = [
  'for i in 0 1 2; do echo appended >> f$i; done',
  'dd if=/dev/urandom of=d1/d2/big bs=4096 count=5 seek=100 conv=notrunc status=none',
  'head -c 3000 /dev/urandom > f7', 'rm f10 f11 d1/f1-link', 'mv d1 d1-moved', 'mv f12 d3/f12-renamed', 'rm -r empty',
  'echo junk > new-file', 'mkdir new-dir && echo x > new-dir/y', 'chmod 600 f5', 'setfattr -x user.k f3', 'truncate -s 100 f13',
  'sqlite3 db/app.sqlite "update t set b = \'changed\' where a % 10 = 0; delete from t where a > 1900;"',
].join(' && ');

function run(t: { fail(m: string): void }, script: string, cwd: string): void {
  const r = sh(script, cwd);
  if (r.status !== 0) t.fail(`${script}: ${r.stderr}`);
}

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

const checkpoints = (mnt: string): CheckpointListing[] => strataJson<{ checkpoints: CheckpointListing[] }>(['checkpoint', 'list', mnt]).checkpoints;

test('unmirrored: prepare from a checkpoint after a program changed the tree, commit under a reader and a writer, swap back; the checkpoints stay with their store', async (t) => {
  const m = withMount(t);
  run(t, TREE, m.mnt);
  createCheckpoint(m.mnt, 'good');
  const good = manifest(m.mnt);
  const goodDigests = Object.fromEntries(['f0', 'f1', 'f7', 'f8'].map((f) => [f, digest(join(m.mnt, f))]));
  run(t, CHANGES, m.mnt);
  const damaged = manifest(m.mnt);
  t.not(damaged, good);

  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, 'checkpoint:good');
  t.is(p.status, 0, p.out);
  const st = swapStatus(m.mnt).prepare!;
  t.is(st.state, 'ready');
  t.is(st.point, null, 'a checkpoint is not a point of an archive');
  t.true(st.progress.copiedBytes > 0, 'unchanged files come from the live store');
  t.true(st.progress.logBytes > 0, 'changed blocks come from the checkpoint');
  t.true(st.progress.logBytes < st.totals.bytes / 2, `the log gives only what changed (${st.progress.logBytes} of ${st.totals.bytes})`);
  t.is(st.progress.fetchedBytes, 0);

  // A handle opened before the swap: its writes go to the old store, and the old store's checkpoint saves what they overwrite.
  const held = openSync(join(m.mnt, 'f8'), 'r+');
  const allowed = Object.fromEntries(Object.entries(goodDigests).filter(([f]) => f !== 'f8').map(([f, d]) => [f, { old: digest(join(m.mnt, f)), now: d }]));
  const h = hammer(m.base, m.mnt, allowed, join(m.mnt, 'log'));
  spawnSync('sleep', ['1']);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.true(c.result?.committed);
  spawnSync('sleep', ['1']);
  await assertHammerClean(t, h);
  t.is(without(manifest(m.mnt), ['log']), without(good, ['log']), 'the tree is the checkpoint\'s, exactly');

  // The checkpoint stays with the store it was taken of: inactive while that store is the spare.
  t.deepEqual(checkpoints(m.mnt), [], 'the new live store has no checkpoints');
  writeSync(held, Buffer.alloc(5000, 0x41), 0, 5000, 0);
  closeSync(held);
  t.is(digest(join(m.mnt, 'f8')), goodDigests['f8'], 'the write through the old handle did not reach the new tree');

  const back = commit(m.mnt, [], 'back');
  t.is(back.status, 0, back.out);
  const afterBack = manifest(m.mnt);
  t.is(without(afterBack, ['log', 'f8']), without(damaged, ['log', 'f8']), 'swap back: the pre-swap tree exactly (f8: written through the old handle)');
  const list = checkpoints(m.mnt);
  t.deepEqual(list.map((c) => [c.name, c.status]), [['good', 'valid']], 'swap back: the checkpoint is live again');
  // And still right: the write through the old handle was saved by it.
  rollbackTo(m.mnt, 'good', [join(m.mnt, 'f8')]);
  t.is(digest(join(m.mnt, 'f8')), goodDigests['f8'], 'rollback of f8 to the checkpoint after the swap back');
  // A second prepare from the same checkpoint, now with everything else reverted by a rollback: the same tree.
  rollbackTo(m.mnt, 'good');
  t.is(without(manifest(m.mnt), ['log']), without(good, ['log']), 'a whole-tree rollback to the checkpoint gives the same tree');
});

/** Exchanges the names of random pairs of x/s0..3 (symbolic links) and of x/f0..3 (files) until killed: renameat2(RENAME_EXCHANGE), so every name always holds some object, each a different one every few hundred microseconds. */
const EXCHANGER = `
import ctypes, os, random, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_EXCHANGE = -100, 2
os.chdir(sys.argv[1])
rng = random.Random(int(sys.argv[2]))
n = 0
while True:
    kind = rng.choice("sf")
    a, b = rng.sample(range(4), 2)
    if libc.renameat2(AT_FDCWD, f"x/{kind}{a}".encode(), AT_FDCWD, f"x/{kind}{b}".encode(), RENAME_EXCHANGE) != 0:
        sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))
    n += 1
    if n == 200:
        open("started", "w").close()
`;

test('prepare from a checkpoint while a program keeps exchanging the names of symbolic links and of files: each comes with its own target and extended attributes', async (t) => {
  // Until 2026-12-05 the prepare read a live object's extended attributes and link target by name after
  // looking at the name: a rename in between gave it another object's (or ENOENT: concurrent-namespace, seed 1925438298).
  const m = withMount(t);
  run(t, 'mkdir x && for i in $(seq 0 3); do ln -s target-$i x/s$i; echo "file $i" > x/f$i; setfattr -n user.n -v v$i x/f$i; done', m.mnt);
  createCheckpoint(m.mnt, 'ck');
  const good = manifest(m.mnt);
  const exchanger = spawn('python3', ['-c', EXCHANGER, m.mnt, '7'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  exchanger.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  t.teardown(() => { exchanger.kill('SIGKILL'); });
  for (let i = 0; i < 100 && !existsSync(join(m.mnt, 'started')) && exchanger.exitCode === null; i++) spawnSync('sleep', ['0.05']);
  t.true(existsSync(join(m.mnt, 'started')), `the exchanger runs: ${stderr}`);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, 'checkpoint:ck');
  const running = exchanger.exitCode === null;
  exchanger.kill('SIGKILL');
  await new Promise((resolve) => (exchanger.exitCode !== null ? resolve(null) : exchanger.once('exit', resolve)));
  t.true(running, `the exchanger ran through the prepare: ${stderr}`);
  t.is(p.status, 0, p.out);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(without(manifest(m.mnt), ['started']), without(good, ['started']), 'the tree is the checkpoint\'s, exactly');
});

test('mirrored: prepare from a checkpoint, commit; the archive converges to the swapped-in tree, and again after swap back', (t) => {
  const m = withSwapMount(t);
  run(t, TREE, m.mnt);
  syncMount(m);
  createCheckpoint(m.mnt, 'good');
  const good = manifest(m.mnt);
  run(t, CHANGES, m.mnt);
  syncMount(m);
  const damaged = manifest(m.mnt);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, 'checkpoint:good');
  t.is(p.status, 0, p.out);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.truthy(c.result?.preSwapSnapshot, 'the pre-swap head is kept as a snapshot');
  t.is(c.result?.handover?.kind, 'reconcile', 'a checkpoint is not a point of the archive: the archive is brought to it by comparison');
  t.is(manifest(m.mnt), good);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after commit');
  run(t, 'echo after > after-commit', m.mnt);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after a change');
  const b = commit(m.mnt, [], 'back');
  t.is(b.status, 0, b.out);
  t.is(manifest(m.mnt), damaged);
  syncMount(m);
  assertConverged(t, m, 'after swap back');
  t.deepEqual(checkpoints(m.mnt).map((x) => x.name), ['good']);
});

test('bad input: checkpoint:nosuch, an empty name, a spare prepared from an earlier checkpoint of the same name', (t) => {
  const m = withMount(t);
  run(t, 'echo a > a', m.mnt);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const r = prepare(m.mnt, spare, 'checkpoint:nosuch');
  t.not(r.status, 0);
  t.regex(r.out, /checkpoint:nosuch: .*no checkpoint named nosuch/);
  t.deepEqual(readdirSync(spare), [], 'nothing written into the spare');
  t.is(swapStatus(m.mnt).prepare, null, 'nothing started');
  const r2 = prepare(m.mnt, spare, 'checkpoint:');
  t.not(r2.status, 0);
  t.regex(r2.out, /bad source/);
  // A checkpoint can be deleted once the spare is ready (the spare is a copy).
  createCheckpoint(m.mnt, 'ck');
  t.is(prepare(m.mnt, spare, 'checkpoint:ck').status, 0);
  t.is(strata(['checkpoint', 'delete', m.mnt, 'ck']).status, 0);
  // Another checkpoint of the same name is another tree: the spare is not taken for it.
  run(t, 'echo b > b', m.mnt);
  createCheckpoint(m.mnt, 'ck');
  const r3 = prepare(m.mnt, spare, 'checkpoint:ck');
  t.not(r3.status, 0);
  t.regex(r3.out, /an earlier checkpoint:ck .*swap discard/);
  t.is(commit(m.mnt).status, 0);
  t.deepEqual(readdirSync(m.mnt), ['a'], 'the first checkpoint\'s tree');
  t.is(readFileSync(join(m.mnt, 'a'), 'utf8'), 'a\n');
});

test('mirrored: a file rewritten after the checkpoint with its size and mtime put back reaches the archive as the checkpoint had it', (t) => {
  const m = withSwapMount(t);
  run(t, 'head -c 300000 /dev/urandom > same && touch -d @1700000000 same && echo other > other', m.mnt);
  syncMount(m);
  createCheckpoint(m.mnt, 'good');
  const good = manifest(m.mnt);
  // What rsync -t or a restore tool does: new bytes, the same size, the old mtime.
  run(t, 'dd if=/dev/urandom of=same bs=1000 count=3 seek=5 conv=notrunc status=none && touch -d @1700000000 same', m.mnt);
  syncMount(m);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  t.is(prepare(m.mnt, spare, 'checkpoint:good').status, 0);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(manifest(m.mnt), good);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after commit');
});

test('checkpoints stay with their store through commit, back and back again; a handle held open across all of them is tracked by its store\'s checkpoint', (t) => {
  const m = withMount(t);
  run(t, 'head -c 300000 /dev/urandom > a && echo b > b && mkdir d && echo c > d/c', m.mnt);
  // Copy stores outside the stores: discarding a store's tree later discards its checkpoints' too.
  const copies = join(m.base, 'copies');
  mkdirSync(copies);
  createCheckpoint(m.mnt, 'ck', ['--copy-store', copies]);
  const aAtT0 = digest(join(m.mnt, 'a'));
  run(t, 'echo changed > b && rm d/c', m.mnt);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  t.is(prepare(m.mnt, spare, 'checkpoint:ck').status, 0);
  const fd = openSync(join(m.mnt, 'a'), 'r+');
  let newDir = '';
  try {
    t.is(commit(m.mnt).status, 0);
    // The file opened before the swap is the old store's: this write lands there, and its checkpoint saves what it overwrites.
    writeSync(fd, Buffer.alloc(1000, 0x42), 0, 1000, 0);
    t.is(digest(join(m.mnt, 'a')), aAtT0, 'the new tree does not see it');
    // The new live store can have checkpoints of its own.
    createCheckpoint(m.mnt, 'on-the-new-store', ['--copy-store', copies]);
    newDir = checkpoints(m.mnt)[0]!.dir;
    run(t, 'echo x > new-after-ck', m.mnt);
    t.deepEqual(checkpoints(m.mnt).map((c) => c.name), ['on-the-new-store']);
    t.is(commit(m.mnt, [], 'back').status, 0);
    t.deepEqual(checkpoints(m.mnt).map((c) => [c.name, c.status]), [['ck', 'valid']], 'the old store\'s checkpoint is live again');
    // The same handle, its store live again.
    writeSync(fd, Buffer.alloc(1000, 0x43), 0, 1000, 200000);
    t.is(commit(m.mnt, [], 'back').status, 0);
    t.deepEqual(checkpoints(m.mnt).map((c) => [c.name, c.status]), [['on-the-new-store', 'valid']], 'the other store\'s checkpoint is back with it');
    // And once more away from its store: still saved by that store's checkpoint.
    writeSync(fd, Buffer.alloc(1000, 0x44), 0, 1000, 100000);
    rollbackTo(m.mnt, 'on-the-new-store');
    t.deepEqual(readdirSync(m.mnt).sort(), ['a', 'b', 'd']);
  } finally {
    closeSync(fd);
  }
  t.is(commit(m.mnt, [], 'back').status, 0);
  rollbackTo(m.mnt, 'ck', [join(m.mnt, 'a')]);
  t.is(digest(join(m.mnt, 'a')), aAtT0, 'all three writes through the held handle were saved by the checkpoint of its store');
  // Discarding the spare discards its checkpoints with it.
  t.true(existsSync(newDir));
  t.is(strata(['swap', 'discard', m.mnt]).status, 0);
  t.false(existsSync(newDir), 'the discarded tree\'s checkpoint copy store is gone');
  t.deepEqual(checkpoints(m.mnt).map((c) => c.name), ['ck']);
});

// A swap prepare writes the spare relative to its root's descriptor (and reads
// the live store relative to its own): when it joined the spare's path to each
// object's, a tree as deep as the mount allows outgrew PATH_MAX under a longer
// spare path and the prepare failed with ENAMETOOLONG.
test('a tree as deep as the mount allows, into a spare path longer than the mount\'s: prepare from a checkpoint and from the archive, commit, back', (t) => {
  const m = withSwapMount(t);
  const long = 'S'.repeat(250);
  const name = 'n'.repeat(240);
  const down = `for i in $(seq 1 16); do mkdir -p ${name} && cd ${name} || exit 9; done`;
  run(t, `${down} && head -c 200000 /dev/urandom > f && setfattr -n user.deep -v yes f && ln f hard && ln -s f sym && mkfifo p && chmod 640 f && mkdir d && echo x > d/g`, m.mnt);
  syncMount(m);
  createCheckpoint(m.mnt, 'deep');
  const good = manifest(m.mnt);
  run(t, `${down} && dd if=/dev/urandom of=f bs=4096 count=3 seek=7 conv=notrunc status=none && setfattr -n user.deep -v changed f && rm sym && echo later > later`, m.mnt);
  syncMount(m);
  const damaged = manifest(m.mnt);
  const spare = join(m.base, long, long, 'spare');
  mkdirSync(spare, { recursive: true });
  t.true(spare.length + 1 + 16 * 241 > 4096, 'the spare paths of the deep objects are longer than PATH_MAX');
  let p = prepare(m.mnt, spare, 'checkpoint:deep');
  t.is(p.status, 0, p.out.slice(0, 2000));
  let c = commit(m.mnt);
  t.is(c.status, 0, c.out.slice(0, 2000));
  t.is(manifest(m.mnt), good, 'the checkpoint\'s tree');
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after the commit');
  t.is(commit(m.mnt, [], 'back').status, 0);
  t.is(manifest(m.mnt), damaged, 'swapped back');
  t.is(strata(['swap', 'discard', m.mnt]).status, 0);

  // From the archive: the head as it is now, built from the archive with the live files reused.
  syncMount(m);
  const rec = (JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  p = prepare(m.mnt, spare, `archive:${rec}`);
  t.is(p.status, 0, p.out.slice(0, 2000));
  c = commit(m.mnt);
  t.is(c.status, 0, c.out.slice(0, 2000));
  t.is(manifest(m.mnt), damaged, 'the archive\'s tree at the head');
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after the commit from the archive');
});
