// The kernel features the bridge negotiates itself because libfuse 3.14 does
// not know them (docs/fuse-bridge.md): FUSE passthrough and
// handle_killpriv_v2. For each: `strata status` says what was negotiated, the
// feature does what it is for (reads of a passthrough file never reach
// strata; with handle_killpriv_v2 the kernel stops asking for
// security.capability before writes), programs see what they see natively,
// and the fallback (the feature off, or not negotiated where strata must not
// use it) is correct too.
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { sh, strata, strataAsync, withMount, type TestMount } from '../helpers/mount.js';
import { withMirroredMount, syncMount, assertConverged } from '../helpers/mirror.js';
import { waitFor } from '../helpers/takeover.js';
import { buildVolume, newRecoveryTarget, runRecover } from '../helpers/recover.js';
import type { FuseFeatures } from '../../src/daemon/mount-daemon.js';

interface Status { fuseFeatures: FuseFeatures | null; requests: Record<string, number> }
const status = (mnt: string): Status => JSON.parse(strata(['status', '--json', mnt]).stdout) as Status;
const features = (mnt: string): FuseFeatures => {
  const f = status(mnt).fuseFeatures;
  if (f === null) throw new Error('status has no fuseFeatures');
  return f;
};
const requests = (mnt: string, op: string): number => status(mnt).requests[op] ?? 0;

const [major = 0, minor = 0] = release().split('.').map((x) => Number.parseInt(x, 10));
const atLeast = (a: number, b: number): boolean => major > a || (major === a && minor >= b);
// Passthrough came with Linux 6.9, handle_killpriv_v2 with 5.11.
const passthroughTest = atLeast(6, 9) ? test.serial : test.serial.skip;
const killprivTest = atLeast(5, 11) ? test.serial : test.serial.skip;
if (!atLeast(6, 9)) console.error(`kernel-features: passthrough tests skipped: kernel ${release()} is older than 6.9`);
if (!atLeast(5, 11)) console.error(`kernel-features: handle_killpriv_v2 tests skipped: kernel ${release()} is older than 5.11`);

const py = (code: string, cwd: string, uid?: number): string => {
  const r = sh(`python3 -c '${code.replace(/'/g, "'\\''")}'`, cwd, uid === undefined ? {} : { uid });
  if (r.status !== 0) throw new Error(`python failed (${String(r.status)}): ${r.stderr}`);
  return r.stdout;
};

/** A 3 MiB file `name` in the mount (written through it) and its md5. */
function bigFile(m: TestMount, name: string): string {
  const r = sh(`head -c 3145728 /dev/urandom > ${name} && md5sum < ${name}`, m.mnt);
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

passthroughTest('a read-only open passes through: status says so, and its reads never reach strata', (t) => {
  const m = withMount(t);
  const f = features(m.mnt);
  t.true(f.offered.passthrough, 'the kernel offers FUSE_PASSTHROUGH');
  t.true(f.passthrough, 'and strata asked for it');
  const sum = bigFile(m, 'f');
  const reads = requests(m.mnt, 'read');
  const opens = f.passthroughOpens;
  // Read twice (the second time from the store's page cache), and through mmap.
  t.is(sh('md5sum < f; cat f | md5sum', m.mnt).stdout, sum + sum);
  t.is(py('import mmap,hashlib\nf=open("f","rb")\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nprint(hashlib.md5(m[:]).hexdigest()+"  -")', m.mnt), sum);
  t.is(requests(m.mnt, 'read'), reads, 'no read request reached strata');
  const after = features(m.mnt);
  t.true(after.passthroughOpens >= opens + 3, `passthrough opens: ${opens} -> ${after.passthroughOpens}`);
  t.is(after.passthroughRefused, 0);
  t.is(after.backingFiles, 0, 'every backing file closed with its last handle');
  // The store has what the mount showed.
  t.is(sh('md5sum < f', m.store).stdout, sum);
});

passthroughTest('opens of one file in both modes: a writer joining passthrough readers reaches strata, a reader after a writer does not pass through, no open fails', (t) => {
  const m = withMount(t);
  bigFile(m, 'f');
  const shared = features(m.mnt).passthroughShared;
  const writes = requests(m.mnt, 'write');
  // Reader first (passthrough), then a writer: the writer's writes are requests, the reader sees them at once.
  const out = py([
    'import os',
    'r=os.open("f",os.O_RDONLY)',
    'w=os.open("f",os.O_RDWR)',
    'os.pwrite(w,b"HELLO",100)',
    'print(os.pread(r,5,100))',
    'os.ftruncate(w,50)',
    'print(len(os.pread(r,100,0)), os.fstat(r).st_size)',
    'os.close(w); os.close(r)',
  ].join('\n'), m.mnt);
  t.is(out, "b'HELLO'\n50 50\n");
  t.true(requests(m.mnt, 'write') > writes, 'the joined writer writes through strata');
  t.true(features(m.mnt).passthroughShared > shared, 'the writer joined the passthrough inode');
  // Writer first (page cache), then a reader: a normal open (it may not pass through), and it works.
  const opens = features(m.mnt).passthroughOpens;
  const reads = requests(m.mnt, 'read');
  const out2 = py([
    'import os',
    'w=os.open("f",os.O_WRONLY|os.O_APPEND)',
    'r=os.open("f",os.O_RDONLY)',
    'os.write(w,b"tail")',
    'print(os.pread(r,54,0)[-4:])',
    'os.close(r); os.close(w)',
  ].join('\n'), m.mnt);
  t.is(out2, "b'tail'\n");
  t.is(features(m.mnt).passthroughOpens, opens, 'no passthrough while a page-cache open is there');
  t.true(requests(m.mnt, 'read') > reads);
  // Both closed: the next read-only open passes through again.
  t.is(sh('wc -c < f', m.mnt).stdout, '54\n');
  t.true(features(m.mnt).passthroughOpens > opens);
  t.is(features(m.mnt).backingFiles, 0);
});

passthroughTest('fallback --no-passthrough: status says off, reads are requests, the data is the same', (t) => {
  const m = withMount(t, ['--no-passthrough']);
  const f = features(m.mnt);
  t.false(f.passthrough);
  t.true(f.offered.passthrough);
  const sum = bigFile(m, 'f');
  const reads = requests(m.mnt, 'read');
  sh('sync; echo 1 > /proc/sys/vm/drop_caches', m.mnt);
  t.is(sh('md5sum < f', m.mnt).stdout, sum);
  t.true(requests(m.mnt, 'read') > reads, 'reads reach strata (the FUSE thread answers them)');
  t.is(features(m.mnt).passthroughOpens, 0);
});

passthroughTest('fallback STRATA_PASSTHROUGH=0 and --writeback-cache (the kernel refuses both together): no passthrough, same data', (t) => {
  for (const [args, env] of [[[], { STRATA_PASSTHROUGH: '0' }], [['--writeback-cache'], {}]] as const) {
    const m = withMount(t, [...args], env);
    const f = features(m.mnt);
    t.false(f.passthrough, args.join(' ') || 'STRATA_PASSTHROUGH=0');
    const sum = bigFile(m, 'f');
    t.is(sh('md5sum < f', m.mnt).stdout, sum);
    t.is(features(m.mnt).passthroughOpens, 0);
  }
});

passthroughTest('no passthrough where strata must see the I/O: a mirrored mount, and a mount with a checkpoint', (t) => {
  const mm = withMirroredMount(t);
  const f = features(mm.mnt);
  t.true(f.passthrough, 'negotiated');
  t.false(f.handleKillprivV2, 'handle_killpriv_v2 is not asked for on a mirrored mount');
  t.true(f.offered.handleKillprivV2);
  const sum = sh('head -c 1048576 /dev/urandom > f && md5sum < f', mm.mnt).stdout;
  t.is(sh('md5sum < f', mm.mnt).stdout, sum);
  t.is(features(mm.mnt).passthroughOpens, 0, 'a journalled store passes nothing through');

  const m = withMount(t);
  const sum2 = bigFile(m, 'g');
  const c = strata(['checkpoint', 'create', m.mnt, '--name', 'c1']);
  t.is(c.status, 0, c.stderr);
  const opens = features(m.mnt).passthroughOpens;
  t.is(sh('md5sum < g', m.mnt).stdout, sum2);
  t.is(features(m.mnt).passthroughOpens, opens, 'no passthrough while changes are tracked');
  t.is(strata(['checkpoint', 'delete', m.mnt, 'c1']).status, 0);
  t.is(sh('md5sum < g', m.mnt).stdout, sum2);
  t.true(features(m.mnt).passthroughOpens > opens, 'passthrough again once no checkpoint exists');
});

// ---- passthrough writes (--passthrough-writes) ----------------------------------------

const writeRequests = (mnt: string): number => requests(mnt, 'write');

passthroughTest('--passthrough-writes: writable opens pass through, their writes never reach strata (but an O_APPEND open\'s: it does not pass through), and the file, its size and times are the store\'s', (t) => {
  const m = withMount(t, ['--passthrough-writes']);
  const f = features(m.mnt);
  t.true(f.passthroughWrites, 'status says passthrough writes');
  t.false(f.handleKillprivV2, 'handle_killpriv_v2 is left off: the kernel must drop set-ID bits itself');
  const writes = writeRequests(m.mnt);
  // The same program in the mount and in a native directory: create, writes, an append, pwrites past the end, a truncate.
  const prog = [
    'import os, hashlib',
    'fd=os.open("f",os.O_CREAT|os.O_WRONLY|os.O_TRUNC,0o644)',
    'for i in range(64): os.write(fd,bytes([i])*65536)',
    'os.pwrite(fd,b"hole",9000000)',
    'os.fsync(fd); os.close(fd)',
    'fd=os.open("f",os.O_WRONLY|os.O_APPEND)',
    'os.write(fd,b"appended")',
    'os.ftruncate(fd,5000000)',
    'os.close(fd)',
    'fd=os.open("f",os.O_RDWR)',
    'os.pwrite(fd,b"X"*10,4999995)',
    'os.close(fd)',
    'st=os.stat("f")',
    'print(st.st_size, hashlib.md5(open("f","rb").read()).hexdigest())',
  ].join('\n');
  const out = py(prog, m.mnt);
  t.is(out, py(prog, m.native), 'the mount ends as the native directory does');
  // The O_APPEND open stays with strata (the kernel's backing file would keep its O_APPEND after an fcntl cleared it).
  t.is(writeRequests(m.mnt), writes + 1, 'no write request reached strata but the O_APPEND open\'s one');
  const after = features(m.mnt);
  t.true(after.passthroughWriteOpens >= 2, `writable opens passed through: ${after.passthroughWriteOpens}`);
  t.is(after.passthroughWriters, 0, 'none open any more');
  t.is(after.backingFiles, 0, 'every backing file closed with its last handle');
  // What stat shows is the store's file: size and mtime.
  t.is(sh('stat -c "%s %Y" f', m.mnt).stdout, sh('stat -c "%s %Y" f', m.store).stdout);
  t.is(sh('md5sum < f', m.mnt).stdout, sh('md5sum < f', m.store).stdout);
});

for (const args of [['--passthrough-writes'], ['--no-killpriv-v2']]) {
passthroughTest(`${args[0]!}: another user's writes drop set-ID bits as on ext4 (set-group-ID without group execute too), also of a file made set-ID while it is open for writing`, (t) => {
  const m = withMount(t, [...args, '--allow-other']);
  // Coordination files outside the mount, writable by the other user.
  const sync = join(m.base, 'sync');
  mkdirSync(sync);
  chmodSync(sync, 0o777);
  chmodSync(m.base, 0o755);
  const setup = 'chmod 777 . && for f in u g k; do rm -f $f; : > $f; done && chmod 4777 u && chmod 2777 g && chmod 2767 k && : > late && chmod 666 late';
  // The other user opens `late` for writing, root makes it set-user-ID, then the other user writes through the open handle.
  const writer = [
    'import os, sys, time',
    'd=sys.argv[1]; tag=sys.argv[2]',
    'for n in ("u","g","k"):',
    '  fd=os.open(n,os.O_WRONLY); os.write(fd,b"w"); os.close(fd)',
    'fd=os.open("late",os.O_WRONLY)',
    'os.write(fd,b"a")',
    'open(os.path.join(d,"ready-"+tag),"w").close()',
    'while not os.path.exists(os.path.join(d,"go-"+tag)): time.sleep(0.01)',
    'os.write(fd,b"b"); os.close(fd)',
  ].join('\n');
  const script = join(m.base, 'writer.py');
  writeFileSync(script, writer);
  chmodSync(script, 0o644);
  const modes: Record<string, string> = {};
  for (const [tag, dir] of [['mount', m.mnt], ['native', m.native]] as const) {
    t.is(sh(setup, dir).status, 0);
    const r = sh([
      `setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 ${script} ${sync} ${tag} &`,
      `for i in $(seq 200); do [ -e ${sync}/ready-${tag} ] && break; sleep 0.05; done`,
      `chmod 4777 late && touch ${sync}/go-${tag} && wait $!`,
      'stat -c "%n %a %s" u g k late',
    ].join('\n'), dir);
    t.is(r.status, 0, r.stderr);
    modes[tag] = r.stdout;
  }
  t.is(modes['mount'], modes['native']);
  t.is(modes['native'], 'u 777 1\ng 777 1\nk 767 1\nlate 777 2\n', 'what ext4 does');
  if (args[0] === '--passthrough-writes') t.true(features(m.mnt).passthroughWriteOpens >= 2, 'the writes of u and late passed through (a set-group-ID file does not)');
});
}

passthroughTest('--passthrough-writes and checkpoints: create waits for files open for writing in passthrough (EBUSY after --wait-writers), then tracks every write, which a rollback undoes', async (t) => {
  const m = withMount(t, ['--passthrough-writes']);
  // A writer holding a file open for writing (in passthrough) for about 1.5 s.
  const holder = spawn('bash', ['-c', 'exec 3>held; echo one >&3; sleep 1.5; echo two >&3; exec 3>&-'], { cwd: m.mnt, stdio: 'ignore' });
  const closed = new Promise<void>((resolve) => holder.once('exit', () => resolve()));
  t.teardown(() => { holder.kill('SIGKILL'); });
  await waitFor('the writer to open its file', () => features(m.mnt).passthroughWriters === 1, 10_000, 20);
  const refused = await strataAsync(['checkpoint', 'create', m.mnt, '--name', 'c0', '--wait-writers', '0.2']);
  t.not(refused.status, 0);
  t.regex(refused.stderr, /EBUSY: 1 file is open for writing in FUSE passthrough/);
  t.true(features(m.mnt).passthroughWrites);
  // Waiting long enough: taken once the writer has closed it; it has the writer's whole content.
  const taken = await strataAsync(['checkpoint', 'create', m.mnt, '--name', 'c1', '--wait-writers', '30']);
  await closed;
  t.is(taken.status, 0, taken.stderr);
  t.is(readFileSync(join(m.mnt, 'held'), 'utf8'), 'one\ntwo\n');
  t.is(features(m.mnt).passthroughWriters, 0);
  // While the checkpoint exists no writable open passes through: the change is tracked, and rolled back.
  const opens = features(m.mnt).passthroughWriteOpens;
  t.is(sh('echo three >> held && echo new > other', m.mnt).status, 0);
  t.is(features(m.mnt).passthroughWriteOpens, opens, 'no writable open passed through while tracked');
  const rb = strata(['rollback', m.mnt, '--to', 'c1', join(m.mnt, 'held')]);
  t.is(rb.status, 0, rb.stderr);
  t.is(readFileSync(join(m.mnt, 'held'), 'utf8'), 'one\ntwo\n', 'the rollback put back what the checkpoint saw');
  t.is(strata(['checkpoint', 'delete', m.mnt, 'c1']).status, 0);
  // (Not `>>`: an O_APPEND open never passes through.)
  t.is(sh('echo four > held', m.mnt).status, 0);
  t.true(features(m.mnt).passthroughWriteOpens > opens, 'writable opens pass through again once no checkpoint exists');
});

passthroughTest('fallbacks of --passthrough-writes: off by default (handle_killpriv_v2 on, writes are requests); STRATA_PASSTHROUGH_WRITES=1 turns it on; not without passthrough, nor on a mirrored mount', (t) => {
  const plain = withMount(t);
  const f = features(plain.mnt);
  t.false(f.passthroughWrites);
  t.true(f.handleKillprivV2);
  const w = writeRequests(plain.mnt);
  t.is(sh('head -c 200000 /dev/urandom > f', plain.mnt).status, 0);
  t.true(writeRequests(plain.mnt) > w, 'writes reach strata');
  t.is(features(plain.mnt).passthroughWriteOpens, 0);

  const env = withMount(t, [], { STRATA_PASSTHROUGH_WRITES: '1' });
  t.true(features(env.mnt).passthroughWrites, 'STRATA_PASSTHROUGH_WRITES=1');
  t.is(sh('echo x > f', env.mnt).status, 0);
  t.true(features(env.mnt).passthroughWriteOpens > 0);

  const off = withMount(t, ['--passthrough-writes', '--no-passthrough']);
  t.false(features(off.mnt).passthroughWrites, 'not without passthrough');
  t.is(sh('echo x > f && cat f', off.mnt).stdout, 'x\n');

  const mm = withMirroredMount(t, { extraArgs: ['--passthrough-writes'] });
  const w2 = writeRequests(mm.mnt);
  t.is(sh('head -c 200000 /dev/urandom > f && md5sum < f', mm.mnt).status, 0);
  t.true(writeRequests(mm.mnt) > w2, 'a journalled store sees every write');
  t.is(features(mm.mnt).passthroughWriteOpens, 0);
  syncMount(mm);
  assertConverged(t, mm);
});

// Eight programs at once, each looking up every name of one directory (in its
// own order, with misses among them) and listing it: one JSON line per program
// with what it saw, sorted, so the lines compare with a native directory's.
const DIR_PROBER = `
import json, os, random, sys
from concurrent.futures import ProcessPoolExecutor
d, names = sys.argv[1], sys.argv[2:]
def probe(seed):
    order = names + ['missing%d' % i for i in range(40)]
    random.Random(seed).shuffle(order)
    seen = {}
    for n in order:
        try:
            st = os.lstat(os.path.join(d, n))
            seen[n] = [st.st_mode, st.st_size, st.st_nlink]
        except FileNotFoundError:
            seen[n] = None
    return json.dumps({'stat': sorted(seen.items()), 'list': sorted(os.listdir(d))})
with ProcessPoolExecutor(8) as ex:
    for line in ex.map(probe, range(8)):
        print(line)
`;

/** What eight concurrent programs saw of `dir` (relative to `cwd`), with the dentry cache dropped first. */
function probeDirectory(cwd: string, dir: string, names: string[]): string[] {
  const r = sh(`sync; echo 2 > /proc/sys/vm/drop_caches; python3 -c '${DIR_PROBER.replace(/'/g, "'\\''")}' ${dir} ${names.join(' ')}`, cwd);
  if (r.status !== 0) throw new Error(`prober failed (${String(r.status)}): ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

const DIR_TREE = 'mkdir -p d/sub1 d/sub2 && for i in $(seq 1 300); do head -c $((i * 7)) /dev/zero > d/f$i; done && ln d/f1 d/hard1 && ln -s f2 d/link2 && chmod 640 d/f3';
const DIR_NAMES = ['sub1', 'sub2', 'hard1', 'link2', ...Array.from({ length: 300 }, (_, i) => `f${i + 1}`)];

test.serial('parallel directory operations: negotiated, and eight programs looking up and listing one directory at once see what a native directory shows', (t) => {
  const m = withMount(t);
  const f = features(m.mnt);
  t.true(f.offered.parallelDirops, 'the kernel offers FUSE_PARALLEL_DIROPS');
  t.true(f.parallelDirops, 'and strata asked for it');
  t.false(f.readdirplus, 'no readdirplus (docs/fuse-bridge.md)');
  for (const dir of [m.mnt, m.native]) t.is(sh(DIR_TREE, dir).status, 0);
  const native = probeDirectory(m.native, 'd', DIR_NAMES);
  t.is(native.length, 8);
  t.deepEqual(probeDirectory(m.mnt, 'd', DIR_NAMES), native);
  t.true(strata(['status', m.mnt]).stdout.includes('parallel dirops'), 'strata status names it');
});

test.serial('fallback --no-parallel-dirops and STRATA_PARALLEL_DIROPS=0: status says off, the same directory shows the same', (t) => {
  for (const [args, env] of [[['--no-parallel-dirops'], {}], [[], { STRATA_PARALLEL_DIROPS: '0' }]] as const) {
    const m = withMount(t, [...args], env);
    const f = features(m.mnt);
    t.false(f.parallelDirops, args.join(' ') || 'STRATA_PARALLEL_DIROPS=0');
    t.true(f.offered.parallelDirops);
    t.true(strata(['status', m.mnt]).stdout.includes('parallel dirops (not asked for)'));
    for (const dir of [m.mnt, m.native]) t.is(sh(DIR_TREE, dir).status, 0);
    t.deepEqual(probeDirectory(m.mnt, 'd', DIR_NAMES), probeDirectory(m.native, 'd', DIR_NAMES));
  }
});

test.serial('parallel lookups in a directory still pending after a recovery: every program sees the archive\'s entries, the directory is whole afterwards', async (t) => {
  const deep = 'a/b/c/d';
  const v = await buildVolume(t, [`mkdir -p ${deep} && cd ${deep} && (${DIR_TREE})`]);
  // A native directory built by the same commands (the volume's base is removed in teardown).
  t.is(sh(`mkdir -p native/${deep} && cd native/${deep} && (${DIR_TREE})`, v.base).status, 0);
  const native = probeDirectory(`${v.base}/native/${deep}`, 'd', DIR_NAMES);
  const r = newRecoveryTarget(t, v);
  runRecover(r, ['--no-background-restore']);
  t.true(features(r.mnt).parallelDirops);
  t.deepEqual(probeDirectory(`${r.mnt}/${deep}`, 'd', DIR_NAMES), native);
  t.is(sh(`ls ${deep}/d | wc -l`, r.mnt).stdout.trim(), String(DIR_NAMES.length));
});

// Set-ID bits by another user, through write, append, truncate, fallocate and
// a truncating open; the files w..k belong to root:1000 and the user is
// 1000:1000, so set-group-ID without group-execute stays natively (k); the
// files g* belong to root:0, whose group the user is not in, so natively
// (Linux 6.2 on) it goes there even without group-execute.
const SETID_SCRIPT = [
  'for n in w a t f o k gw ga gt gf go; do rm -f $n; touch $n; chown 0:1000 $n; done',
  'chmod 6777 w a t f o; chmod 2767 k; chown 0:0 gw ga gt gf go; chmod 2767 gw ga gt gf go',
  "setpriv --reuid=1000 --regid=1000 --clear-groups bash -c 'printf x | dd of=w conv=notrunc status=none; echo y >> a; truncate -s 0 t; fallocate -l 8192 f; : > o; echo z >> k; " +
    "printf x | dd of=gw conv=notrunc status=none; echo y >> ga; truncate -s 0 gt; fallocate -l 8192 gf; : > go'",
  'stat -c "%n %a %s" w a t f o k gw ga gt gf go',
].join('; ');

// --no-direct-io: every write, truncate and fallocate through the JavaScript core.
for (const args of [[], ['--no-direct-io'], ['--no-killpriv-v2']] as readonly (readonly string[])[]) {
  const v2 = !args.includes('--no-killpriv-v2');
  const name = v2 ? `handle_killpriv_v2${args.length > 0 ? ` (${args.join(' ')})` : ''}` : 'fallback --no-killpriv-v2';
  killprivTest(`${name}: writes, truncates, fallocates and truncating opens by another user drop set-ID bits as natively`, (t) => {
    const m = withMount(t, [...args, '--allow-other']);
    sh(`chmod 0711 ${m.base}; chmod 1777 ${m.mnt} ${m.native}`, m.base);
    const f = features(m.mnt);
    t.true(f.offered.handleKillprivV2);
    t.is(f.handleKillprivV2, v2);
    const mounted = sh(SETID_SCRIPT, m.mnt);
    const native = sh(SETID_SCRIPT, m.native);
    t.is(mounted.stderr, '');
    t.is(native.stdout, 'w 777 1\na 777 2\nt 777 0\nf 777 8192\no 777 0\nk 2767 2\ngw 767 1\nga 767 2\ngt 767 0\ngf 767 8192\ngo 767 0\n');
    // Without handle_killpriv_v2 the kernel's FUSE rule drops set-group-ID only with group execute; strata drops
    // what it leaves after writes, truncations and fallocates by a caller but root (the bridge's write_kills).
    t.is(mounted.stdout, native.stdout);
    // The store has the bits the mount shows (nothing only in the kernel's cache).
    t.is(sh('stat -c "%n %a" w a t f o k gw ga gt gf go', m.store).stdout, sh('stat -c "%n %a" w a t f o k gw ga gt gf go', m.mnt).stdout);
  });
}

killprivTest('with handle_killpriv_v2 the kernel stops asking for security.capability before every write; without it, it asks each time', (t) => {
  const script = 'import os\nfd=os.open("f",os.O_CREAT|os.O_WRONLY,0o644)\nfor i in range(300): os.write(fd,b"x"*100)\nos.close(fd)';
  const v2 = withMount(t);
  const before = requests(v2.mnt, 'getxattr');
  py(script, v2.mnt);
  const withV2 = requests(v2.mnt, 'getxattr') - before;
  const v1 = withMount(t, ['--no-killpriv-v2']);
  const before1 = requests(v1.mnt, 'getxattr');
  py(script, v1.mnt);
  const without = requests(v1.mnt, 'getxattr') - before1;
  t.log(`getxattr requests for 300 writes: ${withV2} with handle_killpriv_v2, ${without} without`);
  t.true(withV2 < 10, `with: ${withV2}`);
  t.true(without >= 300, `without: ${without}`);
});
