// --writeback-cache: the kernel caches writes and sends them later, in pages.
// What must hold: the kernel really does it (many small writes reach strata
// as few requests); what programs see is what they see natively (appends by
// two writers, partial-page writes through write-only handles, set-ID bits
// dropped by a write of another user, mmap); on a mirrored mount an fsync
// that returned is on the archive even when the daemon dies right after (I1);
// and a sync-mode mirror refuses the option. The random sequences of
// random-ops.test.ts run with it too.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sh, strata, withMount } from '../helpers/mount.js';
import { killPrimary, readFromArchive, withMirroredMount } from '../helpers/mirror.js';

interface Status { writebackCache: boolean; requests: Record<string, number> }
const status = (mnt: string): Status => JSON.parse(strata(['status', '--json', mnt]).stdout) as Status;

/** Runs `script` in the mount and in the native directory; both outputs. */
function both(m: { mnt: string; native: string }, script: string, uid?: number): { mnt: string; native: string } {
  const opts = uid === undefined ? {} : { uid };
  const a = sh(script, m.mnt, opts);
  const b = sh(script, m.native, opts);
  return { mnt: a.stdout + a.stderr, native: b.stdout + b.stderr };
}

test('the kernel caches writes: 2,000 small writes reach strata as a few requests', (t) => {
  const m = withMount(t, ['--writeback-cache']);
  t.true(status(m.mnt).writebackCache, 'status says the kernel granted the writeback cache');
  const before = status(m.mnt).requests['write'] ?? 0;
  const r = sh('python3 -c "import os\nfd=os.open(\'f\',os.O_CREAT|os.O_WRONLY,0o644)\nfor i in range(2000): os.write(fd,b\'x\'*100)\nos.fsync(fd)\nos.close(fd)"', m.mnt);
  t.is(r.status, 0, r.stderr);
  const writes = (status(m.mnt).requests['write'] ?? 0) - before;
  t.true(writes > 0 && writes < 100, `write requests: ${writes}`);
  t.is(sh('stat -c %s f && md5sum < f', m.mnt).stdout, sh('head -c 200000 /dev/zero | tr "\\0" x | md5sum', m.mnt).stdout.replace(/^/, '200000\n'));
});

test('without the option every write is a request (the test above would see it)', (t) => {
  const m = withMount(t);
  t.false(status(m.mnt).writebackCache);
  const before = status(m.mnt).requests['write'] ?? 0;
  sh('python3 -c "import os\nfd=os.open(\'f\',os.O_CREAT|os.O_WRONLY,0o644)\nfor i in range(500): os.write(fd,b\'x\'*100)\nos.close(fd)"', m.mnt);
  t.true((status(m.mnt).requests['write'] ?? 0) - before >= 500);
});

test('appends, partial pages through write-only handles, truncates and mmap behave as natively', (t) => {
  const m = withMount(t, ['--writeback-cache']);
  const script = [
    // Two appenders on one file, interleaved, then a third through another handle.
    'exec 3>>log; exec 4>>log; for i in 1 2 3; do echo a$i >&3; echo b$i >&4; done; exec 3>&- 4>&-; echo c >> log; cat log',
    // Write-only handles writing parts of pages of an existing file (the kernel reads the rest of the page).
    'yes abcdefg | head -c 20000 > base; cp base p; dd if=/dev/zero of=p bs=100 seek=7 count=3 conv=notrunc status=none; dd if=/dev/zero of=p bs=1 seek=19990 count=30 conv=notrunc status=none; cmp -l base p | wc -l; stat -c %s p',
    // Truncate down and up under cached pages.
    'python3 -c "import os\nfd=os.open(\'t\',os.O_CREAT|os.O_RDWR,0o644)\nos.write(fd,b\'y\'*10000)\nos.ftruncate(fd,5000)\nos.write(fd,b\'z\')\nos.ftruncate(fd,12000)\nos.close(fd)"; stat -c %s t; od -An -c t | sort | uniq -c | sort -rn | head -3',
    // mmap write, then read through read().
    'python3 -c "import mmap,os\nfd=os.open(\'mm\',os.O_CREAT|os.O_RDWR,0o644)\nos.ftruncate(fd,8192)\nmm=mmap.mmap(fd,8192)\nmm[4000:4005]=b\'hello\'\nmm.close()\nos.close(fd)"; tail -c +4001 mm | head -c 5; echo',
  ].join('; ');
  const r = both(m, script);
  t.is(r.mnt, r.native);
  t.regex(r.mnt, /^a1\nb1\na2\nb2\na3\nb3\nc\n/);
  // And the store itself has the bytes once the mount is gone (nothing left only in the page cache).
  const sums = sh('md5sum log p t mm', m.mnt).stdout;
  t.is(strata(['unmount', m.mnt]).status, 0);
  t.is(sh('md5sum log p t mm', m.store).stdout, sums);
});

test('a write by another user drops set-user-ID as natively', (t) => {
  const m = withMount(t, ['--writeback-cache', '--allow-other']);
  spawnSync('chmod', ['0711', m.base]);
  const setup = 'touch s && chmod 6777 s && stat -c %a s';
  t.is(both(m, setup).mnt, '6777\n');
  const r = both(m, 'echo data >> s; stat -c %a s', 1000);
  t.is(r.mnt, r.native);
});

test('mirrored: an fsync that returned is on the archive when the daemon dies right after', async (t) => {
  const m = withMirroredMount(t, { extraArgs: ['--writeback-cache'] });
  t.true(status(m.mnt).writebackCache);
  const py = 'import os\nfor i in range(3):\n  fd=os.open(f"f{i}",os.O_CREAT|os.O_WRONLY|os.O_TRUNC,0o644)\n  for j in range(1000): os.write(fd,f"committed {i}\\n".encode())\n  os.fsync(fd)\n  os.close(fd)\nprint("done",flush=True)\n';
  writeFileSync(join(m.base, 'w.py'), py);
  const r = spawnSync('python3', [join(m.base, 'w.py')], { cwd: m.mnt, encoding: 'utf8' });
  t.is(r.stdout.trim(), 'done', r.stderr);
  await killPrimary(m);
  for (let i = 0; i < 3; i++) {
    t.is((await readFromArchive(m.archiveUrl, m.volume, `f${i}`))?.toString(), `committed ${i}\n`.repeat(1000), `f${i} on the archive`);
  }
});

test('a sync-mode mirror refuses the writeback cache', (t) => {
  const r = strata(['mount', '--store', '/nonexistent-store', '--archive', 'file:///nonexistent-archive', '--volume', 'v', '--mirror', 'sync', '--writeback-cache', '/nonexistent-mnt']);
  t.is(r.status, 2);
  t.regex(r.stderr, /--writeback-cache cannot be used with --mirror sync/);
});

test('checkpoints are refused on a writeback-cache mount (the kernel keeps its own sizes across a rollback)', (t) => {
  const m = withMount(t, ['--writeback-cache']);
  const ck = strata(['checkpoint', 'create', m.mnt, '--name', 'c1']);
  t.not(ck.status, 0);
  t.regex(ck.stderr, /--writeback-cache/);
  t.is(strata(['checkpoint', 'list', m.mnt, '--json']).stdout.includes('c1'), false);
});
