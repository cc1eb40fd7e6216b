// The spare store and swap (issue 13, docs/swap.md), as a user runs it:
// `strata swap prepare | commit | back | discard` on real mounts, with real
// programs reading and writing across the exchange.
import test from 'ava';
import { mkdirSync, readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { holdDirtyMapping, sh, strata, withMount } from '../helpers/mount.js';
import { assertConverged, syncMount, withMirroredMount } from '../helpers/mirror.js';
import { startArchiveServer } from '../helpers/archive.js';
import { openSnapshotClient } from '../../src/archive-client/open-snapshots.js';
import { isArchiveError } from '../../src/protocol/archive-api.js';
import { manifest } from '../helpers/recover.js';
import { background, commit, hammer, assertHammerClean, prepare, snapshotNow, swapStatus, withSwapMount, without } from '../helpers/swap.js';
import { swapRecordPath } from '../../src/swap/record.js';
import { smallXattrDisk } from '../helpers/disks.js';

const GOOD_TREE = [
  'mkdir -p d1/d2 d3 empty',
  'for i in $(seq 0 19); do head -c $((1000 + i * 37000)) /dev/urandom > f$i; done',
  'head -c 3000000 /dev/urandom > d1/d2/big',
  'ln f1 d1/f1-link', 'ln -s f2 sym', 'setfattr -n user.k -v value f3', 'chown 1234:5678 f4', 'chmod 640 f5',
  'mkfifo d1/fifo', 'chmod 750 d3', 'touch -d @1700000000.123456789 f6',
].join(' && ');

// What a bad processing run does to the volume.
const DAMAGE = [
  'for i in $(seq 0 9); do head -c $((500 + i * 1000)) /dev/urandom > f$i; done',
  'rm f10 f11 d1/f1-link', 'mv d1 d1-moved', 'echo junk > new-file', 'chmod 600 f5', 'setfattr -x user.k f3',
  'dd if=/dev/zero of=d1-moved/d2/big bs=4096 count=3 seek=10 conv=notrunc status=none',
].join(' && ');

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function run(t: { fail(m: string): void }, script: string, cwd: string): void {
  const r = sh(script, cwd);
  if (r.status !== 0) t.fail(`${script}: ${r.stderr}`);
}

test('a reader and a writer across swap commit and swap back; the tree is the snapshot\'s exactly, then the pre-swap one; the archive converges', async (t) => {
  const m = withSwapMount(t);
  run(t, GOOD_TREE, m.mnt);
  syncMount(m);
  const snap = snapshotNow(m);
  const good = manifest(m.mnt);
  const goodDigests = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f${i}`, digest(join(m.mnt, `f${i}`))]));
  run(t, DAMAGE, m.mnt);
  const damaged = manifest(m.mnt);
  t.not(damaged, good);

  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, `snapshot:${snap.id}`);
  t.is(p.status, 0, p.out);
  const st = swapStatus(m.mnt);
  t.is(st.prepare?.state, 'ready');
  t.true((st.prepare?.progress.copiedBytes ?? 0) > 0, 'unchanged files come from the live store');
  t.true((st.prepare?.progress.fetchedBytes ?? 0) < (st.prepare?.totals.bytes ?? 0), 'not everything is fetched');

  const allowed = Object.fromEntries(Object.entries(goodDigests).map(([f, d]) => [f, { old: digest(join(m.mnt, f)), now: d }]));
  const h = hammer(m.base, m.mnt, allowed, join(m.mnt, 'log'));
  spawnSync('sleep', ['1']);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.true(c.result?.committed);
  t.truthy(c.result?.preSwapSnapshot, 'the pre-swap head is kept as a snapshot');
  t.is(c.result?.handover?.kind, 'rollback', `the archive rolled its head back to the snapshot, no comparison walk (${c.result?.handover?.detail ?? ''})`);
  t.is(c.result?.handover?.records, 0);
  t.is(swapStatus(m.mnt).lastCommit?.handover?.kind, 'rollback', 'strata status says which handover ran');
  spawnSync('sleep', ['1']);
  await assertHammerClean(t, h);

  t.is(without(manifest(m.mnt), ['log']), without(good, ['log']), 'the tree is the snapshot\'s');
  syncMount(m);
  // The live store is now the spare directory: verify that one.
  assertConverged(t, { ...m, store: spare }, 'after commit');
  t.is(JSON.parse(readFileSync(swapRecordPath(m.store), 'utf8')).live, spare);

  const back = commit(m.mnt, [], 'back');
  t.is(back.status, 0, back.out);
  t.is(back.result?.handover?.kind, 'reconcile', 'swap back compares (the pre-swap tree may differ from its snapshot)');
  t.is(without(manifest(m.mnt), ['log']), without(damaged, ['log']), 'swap back: the pre-swap tree exactly');
  syncMount(m);
  assertConverged(t, m, 'after swap back');

  // A restart serves what the record names.
  t.is(strata(['unmount', m.mnt]).status, 0);
  t.is(strata(['mount', ...m.args, m.mnt]).status, 0);
  t.is(without(manifest(m.mnt), ['log']), without(damaged, ['log']));
  const snaps = JSON.parse(strata(['snapshot', 'list', '--archive', m.archiveUrl, '--volume', m.volume, '--json']).stdout) as { id: string }[];
  t.true(snaps.some((s) => s.id === c.result?.preSwapSnapshot), 'the pre-swap snapshot is in the catalog');
});

test('mirrored, archive:RECORD of the head: the commit needs nothing from the archive while the head is still there; once it moved on, the whole tree is compared', (t) => {
  const m = withSwapMount(t);
  run(t, 'mkdir -p a/b && echo one > a/f && echo two > a/b/g && ln a/f h', m.mnt);
  syncMount(m);
  const rec = (JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const atRec = manifest(m.mnt);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  let p = prepare(m.mnt, spare, `archive:${rec}`);
  t.is(p.status, 0, p.out);
  let c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(c.result?.handover?.kind, 'head', c.result?.handover?.detail);
  t.is(manifest(m.mnt), atRec);
  assertConverged(t, { ...m, store: spare }, 'right after the commit (head)');
  run(t, 'echo three > a/new', m.mnt);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after a change');

  // The head moves on between the prepare and the commit: the fallback.
  t.is(commit(m.mnt, [], 'back').status, 0);
  t.is(strata(['swap', 'discard', m.mnt]).status, 0);
  syncMount(m);
  const rec2 = (JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const atRec2 = manifest(m.mnt);
  p = prepare(m.mnt, spare, `archive:${rec2}`);
  t.is(p.status, 0, p.out);
  run(t, 'echo later > later', m.mnt);
  c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(c.result?.handover?.kind, 'reconcile');
  t.regex(c.result?.handover?.detail ?? '', /head moved/);
  t.is(manifest(m.mnt), atRec2);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after the fallback');
});

test('a served archive (strata://): the commit rolls the head back as the lease holder; a rollback that claims another holder is refused', async (t) => {
  const tdir = mkdtempSync(join(tmpdir(), 'strata-swap-served-'));
  const server = await startArchiveServer({ extraArgs: ['--target', `A=${join(tdir, 'A')}`] });
  t.teardown(async () => { await server.stop(); rmSync(tdir, { recursive: true, force: true }); });
  const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
  run(t, GOOD_TREE, m.mnt);
  syncMount(m);
  const s = strata(['snapshot', 'create', m.mnt, '--token-file', server.tokenFile, '--wait', '--json']);
  t.is(s.status, 0, s.stderr);
  const snap = JSON.parse(s.stdout) as { id: string };
  const good = manifest(m.mnt);
  run(t, DAMAGE, m.mnt);
  syncMount(m);
  const c0 = await openSnapshotClient(server.url, { tokenFile: server.tokenFile });
  try {
    const err = await t.throwsAsync(c0.rollback(m.volume, snap.id, { holder: { epoch: 1, storeId: 'not-the-holder' } }));
    t.true(isArchiveError(err, 'EHELD'), String(err));
  } finally {
    await c0.close();
  }
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, `snapshot:${snap.id}`, ['--token-file', server.tokenFile]);
  t.is(p.status, 0, p.out);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(c.result?.handover?.kind, 'rollback', c.result?.handover?.detail);
  t.is(manifest(m.mnt), good);
  assertConverged(t, { ...m, store: spare }, 'right after the commit');
  run(t, 'echo after > after', m.mnt);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after a write (same epoch, not fenced)');
});

test('archive:RECORD and archive:TIME sources on a mount without an archive of its own', (t) => {
  const a = withSwapMount(t);
  run(t, GOOD_TREE, a.mnt);
  syncMount(a);
  const snap = snapshotNow(a);
  const atSnap = manifest(a.mnt);
  run(t, 'echo more > more && rm f12', a.mnt);
  syncMount(a);
  const head = JSON.parse(strata(['status', '--json', a.mnt]).stdout) as { mirror: { ackedSeq: number } };
  const atHead = manifest(a.mnt);

  const b = withMount(t);
  run(t, 'echo other > other', b.mnt);
  const archiveArgs = ['--archive', a.archiveUrl, '--volume', a.volume];
  const spare = join(b.base, 'spare');
  mkdirSync(spare);
  const p = prepare(b.mnt, spare, `archive:${head.mirror.ackedSeq}`, archiveArgs);
  t.is(p.status, 0, p.out);
  t.is(commit(b.mnt).status, 0);
  t.is(manifest(b.mnt), atHead, 'archive:RECORD at the head');

  // The previous tree is the spare now; discard it and prepare the snapshot's record by time.
  t.is(strata(['swap', 'discard', b.mnt]).status, 0);
  const p2 = prepare(b.mnt, b.store, `archive:${new Date(Date.parse(snap.createdAt) + 1).toISOString()}`, archiveArgs);
  t.is(p2.status, 0, p2.out);
  t.is(commit(b.mnt).status, 0);
  t.is(manifest(b.mnt), atSnap, 'archive:TIME: the newest snapshot at or before it');
  const p3 = prepare(b.mnt, spare, `archive:${snap.record}`, archiveArgs);
  t.not(p3.status, 0, 'the spare holds the pre-swap tree: refused');
  t.regex(p3.out, /swap discard/);
});

test('--busy ebusy: programs get EBUSY during the hold; --busy wait: they wait and succeed', async (t) => {
  const m = withMount(t, [], { STRATA_SWAP_STALL_MS: '1500' });
  run(t, 'echo old > a', m.mnt);
  const src = withSwapMount(t);
  run(t, 'echo new > a && mkdir d', src.mnt);
  syncMount(src);
  const rec = (JSON.parse(strata(['status', '--json', src.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const archiveArgs = ['--archive', src.archiveUrl, '--volume', src.volume];
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  t.is(prepare(m.mnt, spare, `archive:${rec}`, archiveArgs).status, 0);
  // Lookups of names never seen (no kernel cache) for 3 s.
  const probe = `
    const fs = require('fs'); const dir = process.argv[1]; const end = Date.now() + 3000; const codes = {}; let i = 0;
    while (Date.now() < end) { try { fs.statSync(dir + '/probe-' + (i++)); codes.ok = (codes.ok || 0) + 1; } catch (e) { codes[e.code] = (codes[e.code] || 0) + 1; } }
    process.stdout.write(JSON.stringify(codes));`;
  const busy = background(probe, [m.mnt]);
  spawnSync('sleep', ['0.3']);
  const c = commit(m.mnt, ['--busy', 'ebusy']);
  t.is(c.status, 0, c.out);
  const codes = JSON.parse(await busy.done) as Record<string, number>;
  t.true((codes['EBUSY'] ?? 0) > 0, `EBUSY during the hold: ${JSON.stringify(codes)}`);
  t.true((c.result?.ebusy ?? 0) > 0);
  t.is(readFileSync(join(m.mnt, 'a'), 'utf8'), 'new\n');

  const waiting = background(probe, [m.mnt]);
  spawnSync('sleep', ['0.3']);
  const b = commit(m.mnt, ['--busy', 'wait'], 'back');
  t.is(b.status, 0, b.out);
  const codes2 = JSON.parse(await waiting.done) as Record<string, number>;
  t.deepEqual(Object.keys(codes2).sort(), ['ENOENT'], `only "no such name" (the probe names do not exist): ${JSON.stringify(codes2)}`);
  t.true((b.result?.held ?? 0) > 0, 'requests were held');
  t.is(readFileSync(join(m.mnt, 'a'), 'utf8'), 'old\n');
});

test('an exchange not decided within --hold-timeout is rolled back; held requests are answered from the old store', async (t) => {
  const m = withMount(t, [], { STRATA_SWAP_STALL_MS: '1500' });
  run(t, 'echo old > a', m.mnt);
  const src = withSwapMount(t);
  run(t, 'echo new > a', src.mnt);
  syncMount(src);
  const rec = (JSON.parse(strata(['status', '--json', src.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  t.is(prepare(m.mnt, spare, `archive:${rec}`, ['--archive', src.archiveUrl, '--volume', src.volume]).status, 0);
  const before = manifest(m.mnt);
  const reader = background(`
    const fs = require('fs'); const end = Date.now() + 2500; const seen = {};
    while (Date.now() < end) { const s = fs.readFileSync(process.argv[1] + '/a', 'utf8') + '|' + fs.existsSync(process.argv[1] + '/x' + Date.now()); seen[s] = 1; }
    process.stdout.write(JSON.stringify(Object.keys(seen)));`, [m.mnt]);
  spawnSync('sleep', ['0.3']);
  const c = commit(m.mnt, ['--hold-timeout', '0.5']);
  t.is(c.status, 3, c.out);
  t.false(c.result?.committed);
  t.regex(c.result?.rolledBack ?? '', /hold timeout/);
  t.deepEqual(JSON.parse(await reader.done), ['old\n|false'], 'every answer came from the old store');
  t.is(manifest(m.mnt), before);
  t.false(existsSync(swapRecordPath(m.store)), 'no swap record');
  t.false(existsSync(`${swapRecordPath(m.store)}.tmp`));
  t.is(swapStatus(m.mnt).prepare?.state, 'ready', 'the spare stays prepared');
});

test('bad input: clear errors before anything starts', (t) => {
  const src = withSwapMount(t);
  run(t, 'head -c 4000000 /dev/urandom > big', src.mnt);
  syncMount(src);
  const rec = (JSON.parse(strata(['status', '--json', src.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const m = withMount(t);
  const a = ['--archive', src.archiveUrl, '--volume', src.volume];
  const err = (r: { status: number | null; out: string }, re: RegExp): void => { t.not(r.status, 0); t.regex(r.out, re); };
  err(prepare(m.mnt, join(m.base, 'missing'), `archive:${rec}`, a), /does not exist/);
  const full = join(m.base, 'full');
  mkdirSync(full);
  run(t, 'echo x > something', full);
  err(prepare(m.mnt, full, `archive:${rec}`, a), /not empty/);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  err(prepare(m.mnt, spare, 'snapshot:s-20200101-000000-abcdef', a), /no snapshot/);
  err(prepare(m.mnt, spare, `archive:${rec + 1000}`, a), /keeps no tree/);
  err(prepare(m.mnt, spare, 'archive:1999-01-01T00:00:00Z', a), /no complete snapshot/);
  err(prepare(m.mnt, spare, 'tape:1', a), /bad source/);
  err(prepare(m.mnt, spare, 'checkpoint:nightly', a), /no checkpoint named nightly/);
  err(prepare(m.mnt, spare, `archive:${rec}`), /needs an archive/);
  err(prepare(m.mnt, m.store, `archive:${rec}`, a), /overlaps the live store/);
  err(prepare(m.mnt, src.store, `archive:${rec}`, a), /used by the strata mount|is a strata store/);
  // A spare on a file system too small for the tree.
  const small = mkdtempSync(join(tmpdir(), 'strata-swap-small-'));
  t.teardown(() => { spawnSync('umount', ['-l', small]); rmSync(small, { recursive: true, force: true }); });
  t.is(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]).status, 0);
  err(prepare(m.mnt, small, `archive:${rec}`, a), /bytes free, the tree needs/);
  t.deepEqual(spawnSync('ls', ['-A', small], { encoding: 'utf8' }).stdout, '', 'nothing written');
  err(commit(m.mnt), /no spare is prepared/);
  err(commit(m.mnt, [], 'back'), /no pre-swap tree/);
  err(commit(m.mnt, ['--busy', 'maybe']), /--busy takes wait or ebusy/);
  t.is(swapStatus(m.mnt).prepare, null, 'nothing started');
});

// A program's stores into a shared mapping it has not synced belong to the
// tree it made them in: after `swap commit` the mount shows the spare's file,
// and `swap back` brings the stores back (they went to the store swapped
// out). Checked 2026-12-05 with a syncfs before the commit and without: the
// same (the commit's exchange has the kernel let go of the pages first).
test('stores through a shared mapping made before swap commit stay with the store swapped out, and come back with swap back', async (t) => {
  const m = withMount(t);
  const file = join(m.mnt, 'mapped');
  sh('head -c 8192 /dev/zero | tr "\\\\0" o > mapped', m.mnt);
  t.is(strata(['checkpoint', 'create', m.mnt, '--name', 'ck']).status, 0);
  const holder = await holdDirtyMapping(t, file);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, 'checkpoint:ck');
  t.is(p.status, 0, p.out);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  await holder.kill();
  const plain = Buffer.alloc(8192, 'o');
  const stored = Buffer.from(plain);
  stored.write('NEW', 4096);
  spawnSync('sync', ['-f', m.mnt]);
  t.true(readFileSync(file).equals(plain), 'after the commit: the checkpoint\'s file');
  const b = commit(m.mnt, [], 'back');
  t.is(b.status, 0, b.out);
  t.true(readFileSync(file).equals(stored), 'after swap back: the program\'s stores');
});

// A spare on a file system that cannot hold some objects' xattrs (ext4 with 1 KiB blocks; the volume
// comes from 4 KiB blocks, as a volume from XFS would onto ext4): the prepare gives each object what
// fits and records the rest as held by the archive (store/held-xattrs.ts), in the spare's private
// directory, so that after the commit the mirror does not remove them from the archive.
test('a spare whose file system cannot hold some objects\' xattrs: prepared with what fits, the archive keeps the rest after the commit', (t) => {
  const m = withSwapMount(t);
  const b64 = (n: number): string => `0s$(head -c ${n} /dev/urandom | base64 -w0)`;
  run(t, `mkdir d && echo big > d/bigx && echo plain > d/plain && setfattr -n user.small -v tiny d/bigx && setfattr -n user.big -v ${b64(3000)} d/bigx && setfattr -n user.dirbig -v ${b64(2000)} d`, m.mnt);
  syncMount(m);
  const rec = (JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  const names = sh('find . -path ./.strata -prune -o -print | sort; cat d/plain', m.mnt).stdout;
  // Registered after the mount's (ava runs teardowns in reverse order): the strata mount goes before the disk.
  const disk = smallXattrDisk(t, m.base, () => { strata(['unmount', '--lazy', m.mnt]); });
  if (disk === null) return;
  const spare = join(disk, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, `archive:${rec}`);
  t.is(p.status, 0, p.out);
  const c = commit(m.mnt);
  t.is(c.status, 0, c.out);
  t.is(sh('find . -path ./.strata -prune -o -print | sort; cat d/plain', m.mnt).stdout, names);
  const xattrs = sh("getfattr -d -m '^user\\.' d/bigx d", m.mnt).stdout;
  t.regex(xattrs, /user\.small="tiny"/);
  t.notRegex(xattrs, /user\.big=/);
  run(t, 'echo later > d/later', m.mnt);
  syncMount(m);
  const v = strata(['verify', '--json', m.mnt]);
  t.is(v.status, 0, v.stdout + v.stderr);
  const summary = JSON.parse(v.stdout.trim().split('\n').pop() ?? '{}') as { differences: number; heldXattrs: number };
  t.is(summary.differences, 0);
  t.is(summary.heldXattrs, 2, 'user.big and user.dirbig stay on the archive');
});
