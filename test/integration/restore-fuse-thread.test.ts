// During a restore the FUSE thread answers for the nodes the daemon has
// vouched for as settled (native/fuse-native/src/settled.c): getattr of a
// restored file or directory, and "no such name" in a restored directory, are
// answered while the daemon's main thread is blocked (a test-only control
// request, STRATA_TEST_HOOKS=1, makes it busy-wait). Whatever is not settled
// (a pending directory, a stub, a hard-linked file with names still in the
// archive) still goes to the daemon and shows the archive's link count, size
// and content.
// Serial: the helpers block the test process (spawnSync).
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { sh, strata } from '../helpers/mount.js';
import { buildVolume, newRecoveryTarget, runRecover } from '../helpers/recover.js';
import { callControl } from '../../src/daemon/control.js';

/** statx(AT_STATX_FORCE_SYNC) of each path in turn, every ~10 ms for `seconds`: one JSON line per probe (CLOCK_MONOTONIC times). */
const PROBER = String.raw`
import ctypes, json, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, FORCE_SYNC, NOFOLLOW, BASIC = -100, 0x2000, 0x100, 0x7ff
buf = ctypes.create_string_buffer(512)
seconds = float(sys.argv[1])
kinds = sys.argv[2:]
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    i += 1
    for k in kinds:
        name, path = k.split('=', 1)
        if path.endswith('/?'):
            path = path[:-1] + '.no-such-name-%d' % i
        s = time.monotonic()
        r = libc.statx(AT_FDCWD, path.encode(), FORCE_SYNC | NOFOLLOW, BASIC, buf)
        e = time.monotonic()
        err = ctypes.get_errno() if r != 0 else 0
        nlink = struct.unpack_from('I', buf, 16)[0]
        size = struct.unpack_from('Q', buf, 40)[0]
        mtime = '%d.%09d' % (struct.unpack_from('q', buf, 112)[0], struct.unpack_from('I', buf, 120)[0])
        print(json.dumps({'k': name, 's': s, 'e': e, 'err': err, 'nlink': nlink if r == 0 else None, 'size': size if r == 0 else None, 'mtime': mtime if r == 0 else None}), flush=True)
    time.sleep(0.01)
`;

interface Probe { k: string; s: number; e: number; err: number; nlink: number | null; size: number | null; mtime: string | null }

function runProber(seconds: number, kinds: Record<string, string>): Promise<Probe[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', PROBER, String(seconds), ...Object.entries(kinds).map(([k, p]) => `${k}=${p}`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
    child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`prober exited ${code}: ${err}`));
      else resolve(out.trim().split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Probe));
    });
  });
}

/** Seconds on CLOCK_MONOTONIC (Python's time.monotonic()). */
function monotonic(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

const TREE = [
  'mkdir -p top/sub/a top/sub/b top/sub/c top/sub2 && echo readme > top/README && head -c 100000 /dev/urandom > top/stub.bin',
  'echo linked > top/h1 && ln top/h1 top/sub/h3 && ln top/h1 top/sub2/h4',
  'for i in 1 2 3; do echo $i > top/sub/f$i; done && touch -d "2001-02-03 04:05:06.123456789" top/README',
];

/** `stat -c` of paths under `dir`: one line each. */
function stats(dir: string, fmt: string, paths: string[]): string {
  const r = sh(`stat -c '${fmt}' ${paths.join(' ')}`, dir);
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

test.serial('during a restore the FUSE thread answers settled nodes while the daemon is blocked; pending directories, stubs and hard links with archived names still get the daemon\'s answers', async (t) => {
  const v = await buildVolume(t, TREE);
  // What the primary showed: the archive's truth for the unsettled objects.
  const truthPaths = ['top/README', 'top/sub', 'top/stub.bin', 'top/h1', 'top'];
  const primaryStore = v.primary.store;
  const truth = stats(primaryStore, '%n %h %s %Y', truthPaths);
  const stubSum = sh('sha256sum top/stub.bin', primaryStore).stdout;

  const r = newRecoveryTarget(t, v);
  runRecover(r, ['--depth', '2', '--no-background-restore'], { STRATA_TEST_HOOKS: '1' });
  // top/README becomes local (its only block fetched), then one getattr and one lookup in top reach the daemon, which vouches for both.
  t.is(sh('cat top/README', r.mnt).stdout, 'readme\n');
  const BLOCK_MS = 2500;
  // The file is settled once its fetch is durable and its times record gone, which may come after the
  // read was answered (under a loaded disk, an fdatasync of seconds): a getattr answered before that
  // vouches for nothing, and the window below then holds no file probe. So: up to three tries.
  let inside: Probe[] = [];
  let probes: Probe[] = [];
  for (let attempt = 1; ; attempt++) {
    const warm = await runProber(0.2, { file: join(r.mnt, 'top/README'), dir: join(r.mnt, 'top'), missing: join(r.mnt, 'top/?') });
    t.true(warm.every((p) => p.err === (p.k === 'missing' ? 2 : 0)), JSON.stringify(warm.slice(0, 6)));
    const probing = runProber(4, {
      file: join(r.mnt, 'top/README'), dir: join(r.mnt, 'top'), missing: join(r.mnt, 'top/?'),
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const sent = monotonic();
    const reply = await callControl(r.mnt, { cmd: 'test-block', ms: BLOCK_MS }) as { blockedMs: number };
    const replied = monotonic();
    t.is(reply.blockedMs, BLOCK_MS);
    probes = await probing;
    // The main thread was blocked from some time after `sent` for BLOCK_MS, and
    // answered before `replied`: it was certainly blocked in [replied - BLOCK_MS, sent + BLOCK_MS].
    const from = replied - BLOCK_MS / 1000;
    const to = sent + BLOCK_MS / 1000;
    t.true(to - from > 0.5, `the control request took ${((replied - sent) * 1000).toFixed(0)} ms: no window left to judge`);
    inside = probes.filter((p) => p.s >= from && p.e <= to);
    const unanswered = ['file', 'dir', 'missing'].filter((k) => !inside.some((p) => p.k === k));
    if (unanswered.length === 0 || attempt === 3) break;
    t.log(`try ${attempt}: no ${unanswered.join(', ')} probe answered while the daemon was blocked; again`);
  }
  for (const k of ['file', 'dir', 'missing']) {
    const n = inside.filter((p) => p.k === k).length;
    t.true(n > 0, `no ${k} probe was answered while the daemon was blocked (${probes.filter((p) => p.k === k).length} probes)`);
  }
  // ... and what the FUSE thread answered is right.
  const readme = truth.split('\n').find((l) => l.startsWith('top/README '))!.split(' ');
  for (const p of inside.filter((q) => q.k === 'file')) {
    t.is(p.err, 0);
    t.is(p.nlink, 1);
    t.is(p.size, 7);
    t.is(p.mtime?.split('.')[0], readme[3]);
  }
  t.true(inside.filter((p) => p.k === 'missing').every((p) => p.err === 2), 'ENOENT');
  t.true(inside.filter((p) => p.k === 'dir').every((p) => p.err === 0 && p.nlink === 4), JSON.stringify(inside.filter((p) => p.k === 'dir').slice(0, 2)));

  // Not settled: a pending directory (the archive's link count, its subdirectories are not here yet),
  // a stub, a file with names in pending directories (the archive's count). Asked with FORCE_SYNC,
  // each also after a getattr the daemon answered, and again while the daemon is blocked: the answers
  // that come back are the daemon's.
  const unsettled = { sub: join(r.mnt, 'top/sub'), stub: join(r.mnt, 'top/stub.bin'), h1: join(r.mnt, 'top/h1') };
  const twice = [...await runProber(0.1, unsettled)];
  const during = runProber(1.5, unsettled);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const sent2 = monotonic();
  await callControl(r.mnt, { cmd: 'test-block', ms: 1000 });
  const replied2 = monotonic();
  t.true(sent2 + 1.0 - (replied2 - 1.0) > 0.3, `the control request took ${((replied2 - sent2) * 1000).toFixed(0)} ms: no window left to judge`);
  const blocked2 = (await during).filter((p) => p.s >= replied2 - 1.0 && p.e <= sent2 + 1.0);
  const expectLine = (path: string): string[] => truth.split('\n').find((l) => l.startsWith(`${path} `))!.split(' ');
  for (const p of [...twice, ...blocked2]) {
    const want = expectLine(p.k === 'sub' ? 'top/sub' : p.k === 'stub' ? 'top/stub.bin' : 'top/h1');
    t.is(p.err, 0, JSON.stringify(p));
    t.is(String(p.nlink), want[1], `${p.k}: link count ${JSON.stringify(p)}`);
    if (p.k !== 'sub') t.is(String(p.size), want[2], `${p.k}: size`);
  }
  t.is(blocked2.length, 0, `answered while the daemon was blocked, so not by the daemon: ${JSON.stringify(blocked2.slice(0, 3))}`);
  t.is(sh('sha256sum top/stub.bin', r.mnt).stdout, stubSum);
  t.is(stats(r.mnt, '%n %h %s %Y', truthPaths), truth);

  // The FUSE thread's answers are counted.
  const st = JSON.parse(strata(['status', '--json', r.mnt]).stdout) as { requestsOnFuseThread: Record<string, number> };
  t.true((st.requestsOnFuseThread['getattr'] ?? 0) > 0 && (st.requestsOnFuseThread['lookup'] ?? 0) > 0, JSON.stringify(st.requestsOnFuseThread));
});
