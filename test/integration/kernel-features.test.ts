// The kernel features the bridge negotiates itself because libfuse 3.14 does
// not know them (docs/fuse-bridge.md): FUSE passthrough and
// handle_killpriv_v2. For each: `strata status` says what was negotiated, the
// feature does what it is for (reads of a passthrough file never reach
// strata; with handle_killpriv_v2 the kernel stops asking for
// security.capability before writes), programs see what they see natively,
// and the fallback (the feature off, or not negotiated where strata must not
// use it) is correct too.
import test from 'ava';
import { release } from 'node:os';
import { sh, strata, withMount, type TestMount } from '../helpers/mount.js';
import { withMirroredMount } from '../helpers/mirror.js';
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
    if (v2) {
      t.is(mounted.stdout, native.stdout);
    } else {
      // Without handle_killpriv_v2 the kernel's FUSE rule decides writes, truncations and fallocates:
      // set-group-ID goes only with group-execute (docs/SEMANTICS.md). The truncating open is strata's: as natively.
      t.is(mounted.stdout, native.stdout.replace(/^(g[watf]) 767 /gm, '$1 2767 '));
    }
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
