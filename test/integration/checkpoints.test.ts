// Checkpoints on real mounts, with real programs: sqlite3 and git, every write
// path (including the FUSE thread's own answers for handles opened before the
// checkpoint, mmap and fallocate; the FUSE thread's own writes of blocks
// already saved, through handles from before and after the checkpoint),
// byte-range and subtree rollbacks across
// hard links and renames, a whole-tree rollback against a manifest, and a
// rollback on a mirrored mount that `strata verify` finds shipped.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, holdDirtyMapping, withMount, sh, strata } from '../helpers/mount.js';
import { withMirroredMount, syncMount, assertConverged } from '../helpers/mirror.js';
import { livePicture, Rng } from '../helpers/model-tree.js';
import { randomStep } from '../helpers/checkpoint-ops.js';
import { blockRanges, createCheckpoint, diffOf, mountActions, rollbackTo, strataJson } from '../helpers/checkpoint.js';

const BS = 64 * 1024;

/**
 * A python3 helper program that prints words as it goes (killed at teardown);
 * `waitFor(word)` resolves once it printed the word and throws once its output
 * is all read ('close': its exit may be seen before its last line) without it.
 */
function pythonHelper(t: ExecutionContext, script: string, args: string[]): { child: ChildProcessWithoutNullStreams; waitFor: (word: string) => Promise<void> } {
  const child = spawn('python3', ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let closed = false;
  child.once('close', () => { closed = true; });
  const waitFor = async (word: string): Promise<void> => {
    while (!out.includes(word)) {
      if (closed) throw new Error(`helper exited (${child.exitCode}): ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, waitFor };
}

/** Every non-directory under `root` with its inode number, as [relative path, ino]. */
async function filesWithInodes(root: string, rel = ''): Promise<[string, bigint][]> {
  const out: [string, bigint][] = [];
  for (const e of await fsp.readdir(join(root, rel), { withFileTypes: true })) {
    const p = rel === '' ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory()) out.push(...(await filesWithInodes(root, p)));
    else out.push([p, (await fsp.lstat(join(root, p), { bigint: true })).ino]);
  }
  return out;
}

async function filesUnder(root: string, rel = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await fsp.readdir(join(root, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) for (const [k, v] of await filesUnder(root, p)) out.set(k, v);
    else if (e.isFile()) out.set(p, await fsp.readFile(join(root, p)));
  }
  return out;
}

test('sqlite3 and git: diff lists exactly the changed files and block ranges; rolling back only the database restores it, git keeps its changes', async (t) => {
  const m = withMount(t);
  const app = join(m.mnt, 'app');
  await fsp.mkdir(app);
  const setup = sh(`
    sqlite3 db.sqlite "pragma journal_mode=delete; create table t(id integer primary key, v text);
      with recursive c(x) as (select 1 union all select x+1 from c where x < 20000) insert into t(v) select hex(randomblob(40)) from c;"
    mkdir repo && cd repo && git init -q && git config user.email t@t && git config user.name t
    for i in $(seq 1 30); do seq $i 5000 > f$i.txt; done
    git add . && git commit -qm one && git gc -q`, app);
  t.is(setup.status, 0, setup.stderr);
  const before = await filesUnder(app);
  createCheckpoint(m.mnt, 'job');
  const job = sh(`
    sqlite3 db.sqlite "insert into t(v) select hex(randomblob(40)) from t where id % 50 = 0; delete from t where id % 97 = 0; update t set v = 'x' where id between 5000 and 5100;"
    cd repo && for i in $(seq 1 10); do echo change >> f$i.txt; done && rm f30.txt && git add -A && git commit -qm two && git gc -q --prune=now`, app);
  t.is(job.status, 0, job.stderr);
  const after = await filesUnder(app);
  const d = diffOf(m.mnt, 'job', [app]);
  const rel = (p: string): string => p.slice('/app/'.length);
  const created = new Set(d.created.map(rel));
  const removed = new Set(d.removed.map(rel));
  // Names: created and removed files are exactly the ones that appeared and went (a file replaced by rename is both).
  for (const p of after.keys()) if (!before.has(p)) t.true(created.has(p), `created ${p}`);
  for (const p of before.keys()) if (!after.has(p)) t.true(removed.has(p), `removed ${p}`);
  for (const p of created) if (!after.has(p)) t.fail(`diff says ${p} was created, but it is not a file there now`), void 0;
  // Data: every reported range is exactly what a block-by-block comparison finds, and every changed file is reported.
  const reported = new Map(d.data.map((x) => [rel(x.path), x.ranges]));
  for (const [p, now] of after) {
    const was = before.get(p);
    if (!was) continue;
    const expected = blockRanges(was, now, BS);
    if (reported.has(p)) t.deepEqual(reported.get(p), expected, p);
    else if (expected.length > 0) t.true(created.has(p) && removed.has(p), `${p} changed but is not in the diff`);
  }
  t.true(reported.has('db.sqlite'), 'the database is in the diff');
  // Roll back only the database.
  const dry = rollbackTo(m.mnt, 'job', [join(app, 'db.sqlite')], true);
  const r = rollbackTo(m.mnt, 'job', [join(app, 'db.sqlite')]);
  t.is(r.bytesCopied, dry.bytesCopied);
  const changedBytes = reported.get('db.sqlite')!.reduce((n, [o, l]) => n + (o < before.get('db.sqlite')!.length ? Math.min(l, before.get('db.sqlite')!.length - o) : 0), 0);
  t.true(r.bytesCopied <= changedBytes && r.bytesCopied > 0, `${r.bytesCopied} bytes copied, ${changedBytes} changed`);
  t.deepEqual(await fsp.readFile(join(app, 'db.sqlite')), before.get('db.sqlite'));
  t.is(sh('sqlite3 db.sqlite "pragma integrity_check"', app).stdout.trim(), 'ok');
  const log = sh('git log --oneline | wc -l && git fsck --no-progress 2>&1 | grep -c error; git status --porcelain | wc -l', join(app, 'repo'));
  t.deepEqual(log.stdout.trim().split('\n'), ['2', '0', '0']);
  t.false(await fsp.access(join(app, 'repo', 'f30.txt')).then(() => true, () => false));
});

test('every write path is tracked: handles opened before the checkpoint (FUSE-thread handles), mmap, fallocate, ftruncate, O_TRUNC, renames over files; no first write of a block goes by the FUSE thread', async (t) => {
  const m = withMount(t);
  const files = ['a', 'b', 'c', 'd', 'e', 'f'];
  for (const [i, f] of files.entries()) await fsp.writeFile(join(m.mnt, f), Buffer.alloc(4 * BS, i + 1));
  await fsp.writeFile(join(m.mnt, 'victim'), 'old');
  const manifest = await livePicture(m.mnt, { nlink: true });
  // A program that opens its files before the checkpoint and changes them after it.
  const script = `
import os, sys, mmap, ctypes
libc = ctypes.CDLL(None, use_errno=True)
fds = {n: os.open(os.path.join(sys.argv[1], n), os.O_RDWR) for n in ${JSON.stringify(files)}}
print('open', flush=True)
sys.stdin.readline()
os.pwrite(fds['a'], b'A' * 100, 70000)
os.ftruncate(fds['b'], 1000)
mm = mmap.mmap(fds['c'], 4 * 65536)
mm[5:10] = b'MMMMM'
mm.flush(); mm.close()
assert libc.fallocate(fds['d'], 3, ctypes.c_long(65536), ctypes.c_long(65536)) == 0  # punch a hole
os.fchmod(fds['e'], 0o600)
os.pwrite(fds['f'], b'F' * 200000, 100)
os.fsync(fds['f'])
print('done', flush=True)
`;
  const { child, waitFor } = pythonHelper(t, script, [m.mnt]);
  await waitFor('open');
  // (`strata status` answers within 5 s or fails; on a loaded machine it is asked again.)
  const fast = (): number => {
    for (let i = 0; ; i++) {
      try {
        return strataJson<{ requestsOnFuseThread: Record<string, number> }>(['status', m.mnt]).requestsOnFuseThread['write'] ?? 0;
      } catch (err) {
        if (i >= 3) throw err;
      }
    }
  };
  createCheckpoint(m.mnt, 'paths');
  const fastWritesAtCheckpoint = fast();
  child.stdin.write('go\n');
  await waitFor('done');
  child.stdin.end();
  // Changes through new opens too: O_TRUNC, a rename over a file, shell redirection, cp.
  t.is(sh('echo new > victim2 && mv victim2 victim && : > a2 && cp b b.copy && truncate -s 0 e && fallocate -l 1M f', m.mnt).status, 0);
  // Every write here is the first of its blocks: each had to reach the core, which saved the block first.
  t.is(fast(), fastWritesAtCheckpoint, 'the FUSE thread answered no first write of a block after the checkpoint');
  const r = rollbackTo(m.mnt, 'paths');
  t.true(r.bytesCopied > 0);
  t.deepEqual(await livePicture(m.mnt, { nlink: true }), manifest);
  // Deleting the last checkpoint gives the FUSE thread its writes back.
  t.is(strata(['checkpoint', 'delete', m.mnt, 'paths']).status, 0);
  await fsp.writeFile(join(m.mnt, 'after'), Buffer.alloc(BS));
  t.true(fast() > fastWritesAtCheckpoint);
});

test('the FUSE thread writes saved blocks itself and only those: handles opened before and after the checkpoint, seeded overwrites of saved and unsaved blocks; diff and a byte-range rollback are exact against a native copy', async (t) => {
  const m = withMount(t);
  const rng = new Rng(4242);
  const T0_BLOCKS = 48;
  const t0 = Buffer.alloc(T0_BLOCKS * BS);
  for (let i = 0; i < t0.length; i += 4) t0.writeUInt32LE(rng.next(), i);
  await fsp.writeFile(join(m.mnt, 'g'), t0);
  // Writes: [handle (0: opened before the checkpoint, 1: after), offset, length, fill byte];
  // many land in blocks written before (the FUSE thread's path), some past the T0 end.
  const plan: [number, number, number, number][] = [];
  const hot = Array.from({ length: 6 }, () => rng.int(0, T0_BLOCKS - 1));
  for (let i = 0; i < 300; i++) {
    const block = rng.int(0, 3) === 0 ? rng.int(0, T0_BLOCKS + 8) : rng.pick(hot);
    const off = block * BS + rng.int(0, BS - 1);
    plan.push([rng.int(0, 1), off, rng.int(1, rng.int(0, 4) === 0 ? 3 * BS : 9000), rng.int(1, 255)]);
  }
  const script = `
import os, sys, json
path, plan = sys.argv[1], json.loads(sys.argv[2])
fds = [os.open(path, os.O_RDWR)]
print('open', flush=True)
sys.stdin.readline()
fds.append(os.open(path, os.O_RDWR))
for h, off, n, fill in plan:
    assert os.pwrite(fds[h], bytes([fill]) * n, off) == n
print('done', flush=True)
`;
  const { child, waitFor } = pythonHelper(t, script, [join(m.mnt, 'g'), JSON.stringify(plan)]);
  await waitFor('open');
  createCheckpoint(m.mnt, 'direct');
  // The native copy taken at checkpoint time, and the model of what the writes make of it.
  t.is(spawnSync('cp', ['-a', join(m.mnt, 'g'), join(m.native, 'g.t0')]).status, 0);
  t.deepEqual(await fsp.readFile(join(m.native, 'g.t0')), t0);
  let model = Buffer.from(t0);
  for (const [, off, n, fill] of plan) {
    if (off + n > model.length) model = Buffer.concat([model, Buffer.alloc(off + n - model.length)]);
    model.fill(fill, off, off + n);
  }
  const counts = (): { direct: number; sentToCore: number } => strataJson<{ checkpointWrites: { direct: number; sentToCore: number } }>(['status', m.mnt]).checkpointWrites;
  const before = counts();
  child.stdin.write('go\n');
  await waitFor('done');
  child.stdin.end();
  const after = counts();
  t.deepEqual(await fsp.readFile(join(m.mnt, 'g')), model);
  // The diff is exactly the block-by-block comparison with the native copy.
  const d = diffOf(m.mnt, 'direct');
  t.deepEqual(d.data.find((x) => x.path === '/g')?.ranges, blockRanges(t0, model, BS));
  // A byte range straddling blocks written on both paths: exactly its bytes come back.
  const lo = Math.min(...hot) * BS + 1000;
  const hi = Math.min((Math.max(...hot) + 1) * BS - 1000, T0_BLOCKS * BS);
  rollbackTo(m.mnt, 'direct', [`${join(m.mnt, 'g')}:${lo}+${hi - lo}`]);
  const expected = Buffer.from(model);
  t0.copy(expected, lo, lo, hi);
  const rolled = await fsp.readFile(join(m.mnt, 'g'));
  const wrong = blockRanges(expected, rolled, BS);
  t.deepEqual(wrong, [], `range ${lo}+${hi - lo}: blocks that differ from the expected ${JSON.stringify(wrong)}`);
  // Writes after a rollback are tracked again; the whole file then rolls back to the native copy.
  const fh = await fsp.open(join(m.mnt, 'g'), 'r+');
  for (let i = 0; i < 20; i++) await fh.write(Buffer.alloc(5000, 0xab), 0, 5000, rng.pick(hot) * BS + rng.int(0, BS - 5000));
  await fh.close();
  rollbackTo(m.mnt, 'direct', [join(m.mnt, 'g')]);
  t.deepEqual(await fsp.readFile(join(m.mnt, 'g')), await fsp.readFile(join(m.native, 'g.t0')));
  // Both paths were taken: first writes of blocks through the core, the rest on the FUSE thread.
  t.true(after.direct - before.direct > 50, `FUSE-thread writes under the checkpoint: ${after.direct - before.direct}`);
  t.true(after.sentToCore - before.sentToCore > 0, `writes sent to the core: ${after.sentToCore - before.sentToCore}`);
});

test('byte-range, subtree and whole-tree rollbacks: creates, removes, renames and hard links inside and across the boundary', async (t) => {
  const m = withMount(t);
  const act = mountActions(m.mnt);
  // Another seed: STRATA_CK_MOUNT_SEED=N.
  const rng = new Rng(Number(process.env['STRATA_CK_MOUNT_SEED'] ?? 7));
  await fsp.mkdir(join(m.mnt, 'in'));
  await fsp.mkdir(join(m.mnt, 'out'));
  for (let i = 0; i < 60; i++) await randomStep(rng, m.mnt, ['/in', '/out'], act);
  // Hard links and a directory across the boundary.
  await fsp.writeFile(join(m.mnt, 'in', 'shared'), Buffer.alloc(3 * BS, 5));
  await fsp.link(join(m.mnt, 'in', 'shared'), join(m.mnt, 'out', 'shared-link'));
  await fsp.mkdir(join(m.mnt, 'in', 'sub'));
  await fsp.writeFile(join(m.mnt, 'in', 'sub', 'x'), 'x');
  await fsp.writeFile(join(m.mnt, 'big'), Buffer.alloc(8 * BS, 9));
  const whole = await livePicture(m.mnt, { nlink: true });
  // Objects with a name inside /in at the checkpoint (by inode number: it stays with the object across renames).
  const sharedWithIn = new Set((await filesWithInodes(m.mnt)).filter(([p]) => p.startsWith('in/')).map(([, ino]) => ino));
  const inside = await livePicture(join(m.mnt, 'in'));
  const big0 = await fsp.readFile(join(m.mnt, 'big'));
  createCheckpoint(m.mnt, 'ck');
  for (let i = 0; i < 80; i++) await randomStep(rng, m.mnt, ['/in', '/out'], act);
  await fsp.rename(join(m.mnt, 'in', 'sub'), join(m.mnt, 'out', 'moved-out')).catch(() => {});
  await fsp.unlink(join(m.mnt, 'in', 'shared')).catch(() => {});
  await fsp.writeFile(join(m.mnt, 'out', 'moved-in'), 'from outside');
  await fsp.rename(join(m.mnt, 'out', 'moved-in'), join(m.mnt, 'in', 'moved-in'));
  const fh = await fsp.open(join(m.mnt, 'big'), 'r+');
  await fh.write(Buffer.alloc(3 * BS, 1), 0, 3 * BS, 2 * BS + 7);
  await fh.close();
  const outNow = await livePicture(join(m.mnt, 'out'), { nlink: true });
  const outInodes = new Map(await filesWithInodes(join(m.mnt, 'out')));
  // Byte range: only [2 BS, 3 BS) of big goes back.
  const rr = rollbackTo(m.mnt, 'ck', [`${join(m.mnt, 'big')}:${2 * BS}+${BS}`]);
  t.is(rr.bytesCopied, BS); // the block differs: all of its part in the range is copied
  const big1 = await fsp.readFile(join(m.mnt, 'big'));
  t.deepEqual(big1.subarray(0, 3 * BS), big0.subarray(0, 3 * BS));
  t.is(big1[3 * BS], 1);
  // Subtree: /in as it was; /out untouched (except what shares objects with /in).
  rollbackTo(m.mnt, 'ck', [join(m.mnt, 'in')]);
  t.deepEqual(await livePicture(join(m.mnt, 'in')), inside);
  const outAfter = await livePicture(join(m.mnt, 'out'), { nlink: true });
  // Files with names only outside are untouched. An object that had a name in /in at the checkpoint is one
  // object: rolling back that name puts back its contents and attributes for its names outside too (docs/checkpoints.md).
  for (const [k, v] of Object.entries(outNow)) {
    if (v.type !== 'dir' && v.nlink === 1 && !sharedWithIn.has(outInodes.get(k)!)) t.deepEqual(outAfter[k], v, `out/${k} untouched`);
  }
  // Whole tree: equal to the manifest taken at checkpoint time.
  const all = rollbackTo(m.mnt, 'ck');
  t.true(all.changed.length > 0);
  t.deepEqual(await livePicture(m.mnt, { nlink: true }), whole);
  t.deepEqual(rollbackTo(m.mnt, 'ck', [], true).changed, []);
  // Bad input: outside the mount, unknown checkpoint, range past the end at T0.
  t.regex(strata(['rollback', m.mnt, '--to', 'ck', '/etc']).stderr, /outside the mount/);
  t.regex(strata(['rollback', m.mnt, '--to', 'nope']).stderr, /no checkpoint named nope/);
  t.regex(strata(['rollback', m.mnt, '--to', 'ck', `${join(m.mnt, 'big')}:${8 * BS - 1}+2`]).stderr, /past the file's end at the checkpoint/);
});

test('right after a rollback the kernel shows what it made, not what it had cached: a file whose other name was replaced, a directory put back under its old name', async (t) => {
  // The rollback changes the store behind the kernel; it names what it changed
  // by store inode number, so the kernel's caches of an object are dropped even
  // when the kernel knows it by another name than the rollback used.
  const m = withMount(t);
  const at = (...p: string[]): string => join(m.mnt, ...p);
  const a0 = Buffer.alloc(200000);
  for (let i = 0; i < a0.length; i++) a0[i] = (i * 31 + (i >> 11)) & 0xff;
  const f0 = Buffer.alloc(3 * BS, 4);
  await fsp.mkdir(at('out'));
  await fsp.writeFile(at('out', 'a0'), a0);
  await fsp.link(at('out', 'a0'), at('out', 'dir2'));
  await fsp.mkdir(at('d'));
  await fsp.writeFile(at('d', 'f'), f0);
  createCheckpoint(m.mnt, 'ck');
  // dir2 now names another file; a0, cut, keeps one name. d is e now, and its f changed.
  await fsp.writeFile(at('out', 'c1'), 'x');
  await fsp.rename(at('out', 'c1'), at('out', 'dir2'));
  await fsp.truncate(at('out', 'a0'), 65536);
  await fsp.rename(at('d'), at('e'));
  await fsp.writeFile(at('e', 'f'), 'changed');
  // The kernel caches what it saw.
  t.like(await fsp.stat(at('out', 'a0')), { size: 65536, nlink: 1 });
  t.is((await fsp.readFile(at('e', 'f'))).toString(), 'changed');
  rollbackTo(m.mnt, 'ck');
  t.like(await fsp.stat(at('out', 'a0')), { size: a0.length, nlink: 2 }, 'a0: the rollback linked dir2 to it and put its bytes back');
  t.true((await fsp.readFile(at('out', 'a0'))).equals(a0));
  t.true((await fsp.readFile(at('out', 'dir2'))).equals(a0));
  t.like(await fsp.stat(at('d', 'f')), { size: f0.length });
  t.true((await fsp.readFile(at('d', 'f'))).equals(f0), 'f through the directory moved back');
  await t.throwsAsync(fsp.stat(at('e')), { code: 'ENOENT' });
});

test('a file deeper than PATH_MAX changed through a descriptor after the checkpoint: the rollback puts back its bytes, mode and extended attributes', (t) => {
  // The kernel gives no path through /proc for an object this deep: its T0
  // attributes are read through the descriptor (until 2026-12-06 they were
  // saved without its extended attributes, and the rollback removed them).
  const m = withMount(t);
  const script = `
import os, sys, subprocess
mnt, node, cli = sys.argv[1:4]
os.chdir(mnt)
for i in range(25):
    n = 'd%02d' % i + 'x' * 200
    os.mkdir(n); os.chdir(n)
with open('f', 'wb') as f: f.write(b'a' * 100000)
os.setxattr('f', 'user.k', b'value')
os.chmod('f', 0o640)
fd = os.open('f', os.O_RDWR)
subprocess.run([node, cli, 'checkpoint', 'create', '--name', 'deep', mnt], check=True, stdout=subprocess.DEVNULL)
os.pwrite(fd, b'B' * 10, 5000)
os.fchmod(fd, 0o600)
os.setxattr(fd, 'user.k', b'changed')
os.close(fd)
subprocess.run([node, cli, 'rollback', '--to', 'deep', mnt], check=True, stdout=subprocess.DEVNULL)
data = open('f', 'rb').read()
print(len(os.getcwd()) > 4096, os.getxattr('f', 'user.k').decode(), oct(os.stat('f').st_mode & 0o777), data == b'a' * 100000)
`;
  const r = spawnSync('python3', ['-c', script, m.mnt, process.execPath, CLI], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim(), 'True value 0o640 True');
});

test('checkpoint diff and rollback take a name that is not UTF-8 on the command line, byte for byte, and print it so', (t) => {
  // Node decodes argv as UTF-8 (0xe9 alone becomes U+FFFD); strata takes such an argument from /proc/self/cmdline.
  const m = withMount(t);
  const cli = `"${process.execPath}" "${CLI}"`;
  const setup = sh("mkdir d && printf original > \"$(printf 'd/caf\\xe9')\" && printf other > d/cafe", m.mnt);
  t.is(setup.status, 0, setup.stderr);
  createCheckpoint(m.mnt, 'c1');
  t.is(sh("printf changed > \"$(printf 'd/caf\\xe9')\" && printf changed > d/cafe", m.mnt).status, 0);
  const diff = sh(`${cli} checkpoint diff ${m.mnt} c1 "$(printf '${m.mnt}/d/caf\\xe9')" | od -An -c`, m.mnt);
  t.is(diff.status, 0, diff.stderr);
  const shown = diff.stdout.replace(/\s+/g, ' ');
  t.regex(shown, /D \/ d \/ c a f 351 0 \+ 8/, 'the Latin-1 name, printed with its own byte (octal 351)');
  t.notRegex(shown, /c a f e/, 'and only it (the path given was its own)');
  const rb = sh(`${cli} rollback --to c1 ${m.mnt} "$(printf '${m.mnt}/d/caf\\xe9')"`, m.mnt);
  t.is(rb.status, 0, rb.stderr);
  t.is(sh("cat \"$(printf 'd/caf\\xe9')\"; echo; cat d/cafe", m.mnt).stdout, 'original\nchanged', 'that file rolled back, the UTF-8 one next to it not');
});

test('on a mirrored mount the rollback reaches the archive like any other change', async (t) => {
  const m = withMirroredMount(t);
  await fsp.mkdir(join(m.mnt, 'd'));
  await fsp.writeFile(join(m.mnt, 'd', 'f'), Buffer.alloc(3 * BS, 2));
  await fsp.writeFile(join(m.mnt, 'g'), 'g');
  const before = await livePicture(m.mnt);
  createCheckpoint(m.mnt, 'm');
  const fh = await fsp.open(join(m.mnt, 'd', 'f'), 'r+');
  await fh.write(Buffer.alloc(100, 7), 0, 100, BS + 3);
  await fh.close();
  await fsp.rename(join(m.mnt, 'g'), join(m.mnt, 'd', 'g2'));
  await fsp.writeFile(join(m.mnt, 'new'), 'new');
  rollbackTo(m.mnt, 'm');
  t.deepEqual(await livePicture(m.mnt), before);
  syncMount(m);
  assertConverged(t, m, 'after rollback');
  t.is(spawnSync('true').status, 0);
});

// Alone (serial tests run first): it fills the disk's queue for a while.
test.serial('a 2 GiB file with 1% of its blocks changed: the rollback copies exactly those blocks and the file is as it was (checksum)', async (t) => {
  const m = withMount(t);
  const mib = Number(process.env['STRATA_CK_BIG_MIB'] ?? 2048);
  const f = join(m.mnt, 'big.bin');
  const chunk = Buffer.alloc(8 * 1048576);
  const h0 = createHash('sha256');
  const fh = await fsp.open(f, 'w');
  for (let i = 0; i < mib / 8; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE(((i * chunk.length + j) * 2654435761) >>> 0, j);
    h0.update(chunk);
    await fh.write(chunk, 0, chunk.length, i * chunk.length);
  }
  await fh.close();
  const sum0 = h0.digest('hex');
  createCheckpoint(m.mnt, 'big');
  const blocks = (mib * 1048576) / BS;
  const picked = new Set<number>();
  const rng = new Rng(2048);
  while (picked.size < Math.round(blocks / 100)) picked.add(rng.int(0, blocks - 1));
  const w = await fsp.open(f, 'r+');
  for (const b of picked) await w.write(Buffer.alloc(BS, 0xee), 0, BS, b * BS);
  await w.close();
  const d = diffOf(m.mnt, 'big', [f]);
  t.is(d.data[0]?.ranges.reduce((n, [, l]) => n + l, 0), picked.size * BS);
  const r = rollbackTo(m.mnt, 'big', [f]);
  t.is(r.bytesCopied, picked.size * BS);
  const h1 = createHash('sha256');
  for await (const c of (await fsp.open(f)).createReadStream()) h1.update(c as Buffer);
  t.is(h1.digest('hex'), sum0);
});

// A program's stores into a shared writable mapping reach strata when the
// kernel writes the dirty pages back (msync, close, or its periodic write-back
// up to half a minute later). `strata checkpoint create` has the kernel write
// them back first (syncfs of the mount, from the CLI: src/cli/flush-mount.ts),
// so the checkpoint holds what the program had written when it was taken.
// Until 2026-12-05 it held the file as of the last write-back.
for (const mirrored of [false, true]) {
  test.serial(`a checkpoint holds what a program stored through a shared mapping it has not synced yet (${mirrored ? 'mirrored' : 'unmirrored'})`, async (t) => {
    const m = mirrored ? withMirroredMount(t) : withMount(t);
    const file = join(m.mnt, 'mapped');
    await fsp.writeFile(file, Buffer.alloc(8192, 'o'));
    const holder = await holdDirtyMapping(t, file);
    createCheckpoint(m.mnt, 'ck');
    await holder.kill();
    await fsp.writeFile(file, Buffer.alloc(8192, 'L'));
    rollbackTo(m.mnt, 'ck');
    const want = Buffer.alloc(8192, 'o');
    want.write('NEW', 4096);
    t.true((await fsp.readFile(file)).equals(want), 'the file as the program had left it when the checkpoint was taken');
    if (mirrored) {
      syncMount(m as Parameters<typeof syncMount>[0]);
      assertConverged(t, m as Parameters<typeof assertConverged>[1]);
    }
  });
}
