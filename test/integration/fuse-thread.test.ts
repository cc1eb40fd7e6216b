// The FUSE thread answers most requests itself (native/fuse-native/src/fastpath.c):
// getattr and lookup from O_PATH descriptors of the store, and on a store
// nobody journals also setattr, create, mkdir, open and the handles it made. These
// tests check that it does (strata status counts what it answered), that what
// it does is what the JavaScript core would do (owners, set-group-ID
// inheritance, times, unlinked-but-open files, compared with a native
// directory), and that a mirrored store never lets a change bypass the journal.
import test from 'ava';
import { withMount, sh, strata } from '../helpers/mount.js';
import { withMirroredMount, syncMount, verify } from '../helpers/mirror.js';

interface Counts {
  requests: Record<string, number>;
  requestsOnFuseThread: Record<string, number>;
  directJournal: { directWrites: number; journaled: number; directSetattrs: number; setattrsJournaled: number } | null;
}

function counts(mnt: string): Counts {
  const r = strata(['status', '--json', mnt]);
  if (r.status !== 0) throw new Error(`strata status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Counts;
}

function both(m: { mnt: string; native: string }, script: string, opts: { uid?: number; gid?: number } = {}): { mnt: string; native: string } {
  const a = sh(script, m.mnt, opts);
  const b = sh(script, m.native, opts);
  return { mnt: a.stdout + a.stderr, native: b.stdout + b.stderr };
}

const WORKLOAD = [
  'mkdir -p a/b/c',
  'for i in $(seq 1 40); do echo "line $i" > a/b/c/f$i; done',
  'chmod 640 a/b/c/f1 && chown 12:34 a/b/c/f2 && touch -m -d "2001-02-03 04:05:06.123456789" a/b/c/f3 && touch -a -d "1999-01-01 00:00:00.5" a/b/c/f3',
  'truncate -s 3 a/b/c/f4 && truncate -s 100000 a/b/c/f5',
  'cat a/b/c/f6 > /dev/null && ls -l a/b/c > /dev/null',
  // Times the kernel sets ("now") differ between the two sides: only f3's are compared.
  'stat -c "%n %s %a %u:%g %h" a/b/c/f1 a/b/c/f2 a/b/c/f3 a/b/c/f4 a/b/c/f5 a a/b a/b/c && stat -c "%n %y %x" a/b/c/f3',
].join(' && ');

test('an unjournalled mount: the FUSE thread answers lookup, getattr, setattr, create, mkdir, open, release; FLUSH stops after the first', (t) => {
  const m = withMount(t);
  const r = both(m, WORKLOAD);
  t.is(r.mnt, r.native);
  const c = counts(m.mnt);
  const fast = c.requestsOnFuseThread;
  for (const op of ['lookup', 'getattr', 'setattr', 'create', 'mkdir', 'open', 'release']) {
    t.true((fast[op] ?? 0) > 0, `${op} not answered on the FUSE thread: ${JSON.stringify(c)}`);
  }
  t.true((fast['create'] ?? 0) >= 40, JSON.stringify(fast));
  // Every op the FUSE thread answered is counted among all requests too.
  for (const [op, n] of Object.entries(fast)) t.true((c.requests[op] ?? 0) >= n, `${op}: ${JSON.stringify(c)}`);
  // ENOSYS to the first FLUSH: the kernel sends no more (40 files were closed).
  t.true((c.requests['flush'] ?? 0) <= 2, JSON.stringify(c.requests));
});

test('files and directories made on the FUSE thread belong to the caller, inherit a set-group-ID group, and a renamed or unlinked-but-open one keeps working', (t) => {
  const m = withMount(t, ['--allow-other']);
  const setup = 'mkdir shared && chown 1000:1000 shared && chmod 2775 shared && chgrp 4321 shared && mkdir mine && chown 1000:1000 mine';
  t.is(sh(setup, m.mnt).status, 0);
  t.is(sh(setup, m.native).status, 0);
  sh('chmod 755 .', m.mnt);
  sh('chmod 755 .', m.native);
  const asUser = [
    'umask 022',
    'echo x > mine/f && mkdir mine/d && echo y > shared/g && mkdir shared/e && echo z > shared/e/h',
    'stat -c "%n %u:%g %A" mine/f mine/d shared/g shared/e shared/e/h',
    // rename, then use the old descriptor-backed node under its new name
    'mv mine/f mine/f2 && chmod 600 mine/f2 && touch -m -d "2002-02-02 02:02:02.2" mine/f2 && stat -c "%n %a %y" mine/f2',
    // a truncating open by the owner (not root) drops set-user-ID (open answered on the FUSE thread)
    'chmod 4755 mine/f2 && : > mine/f2 && stat -c "%n %a %s" mine/f2',
    // an unlinked-but-open file: fstat says nlink 0, fchmod and ftruncate still work
    `python3 -c 'import os; fd=os.open("mine/u",os.O_CREAT|os.O_RDWR,0o644); os.write(fd,b"abcdef"); os.unlink("mine/u"); os.fchmod(fd,0o600); os.ftruncate(fd,2); st=os.fstat(fd); print(st.st_nlink, oct(st.st_mode & 0o777), st.st_size, st.st_uid); os.close(fd)'`,
  ].join(' && ');
  const r = both(m, asUser, { uid: 1000, gid: 1000 });
  t.is(r.mnt, r.native);
  t.regex(r.mnt, /^mine\/f 1000:1000 -rw-r--r--\nmine\/d 1000:1000 drwxr-xr-x\nshared\/g 1000:4321 -rw-r--r--\nshared\/e 1000:4321 drwxr-sr-x\nshared\/e\/h 1000:4321 /);
  t.regex(r.mnt, /\n0 0o600 2 1000\n$/);
  t.true((counts(m.mnt).requestsOnFuseThread['create'] ?? 0) >= 3);
});

test('a mirrored mount: every create, mkdir and setattr goes through the journal (writes and setattrs the FUSE thread answered only as journalled direct changes); the archive converges', (t) => {
  const m = withMirroredMount(t);
  t.is(sh(WORKLOAD, m.mnt).status, 0);
  const c = counts(m.mnt);
  for (const op of ['create', 'mkdir', 'open', 'release', 'flush']) {
    t.is(c.requestsOnFuseThread[op] ?? 0, 0, `${op} answered without the journal: ${JSON.stringify(c.requestsOnFuseThread)}`);
  }
  // Answered on the FUSE thread only with a notice the core journalled (docs/mirroring.md, "Journalled direct writes").
  const dj = c.directJournal!;
  t.is(c.requestsOnFuseThread['setattr'] ?? 0, dj.setattrsJournaled, `setattr answered without the journal: ${JSON.stringify(c.requestsOnFuseThread)} ${JSON.stringify(dj)}`);
  t.is(c.requestsOnFuseThread['write'] ?? 0, dj.journaled, `write answered without the journal: ${JSON.stringify(c.requestsOnFuseThread)} ${JSON.stringify(dj)}`);
  t.true((c.requests['create'] ?? 0) >= 40);
  // Reading needs no journal: getattr and lookup may be answered there.
  t.true((c.requestsOnFuseThread['getattr'] ?? 0) + (c.requestsOnFuseThread['lookup'] ?? 0) > 0, JSON.stringify(c.requestsOnFuseThread));
  syncMount(m);
  const v = verify(m);
  t.is(v.status, 0, v.stdout + v.stderr);
});

/** Requests that reached JavaScript, per op: all requests less those the FUSE thread answered. */
function jsCounts(c: Counts): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [op, n] of Object.entries(c.requests)) out[op] = n - (c.requestsOnFuseThread[op] ?? 0);
  return out;
}

function delta(after: Record<string, number>, before: Record<string, number>, op: string): number {
  return (after[op] ?? 0) - (before[op] ?? 0);
}

test('a mirrored mount: nodes the core created (create, mkdir, mknod, symlink, link) get descriptors, so their getattr and "no such name" in them are answered on the FUSE thread, and stay right after chmod, write, unlink and rename over', (t) => {
  // No kernel caching: every stat is a lookup of each name and a getattr.
  const m = withMirroredMount(t, { extraArgs: ['--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0'] });
  const native = `${m.base}/native`;
  t.is(sh(`mkdir ${native}`, m.base).status, 0);
  const make = 'mkdir d && mkdir d/e && echo hello > d/f && ln -s f d/l && mkfifo d/p && ln d/f d/h && echo x > d/e/g && echo old > d/r';
  t.is(sh(make, m.mnt).status, 0);
  t.is(sh(make, native).status, 0);
  const c0 = counts(m.mnt);
  for (const op of ['create', 'mkdir', 'mknod', 'symlink', 'link']) t.is(c0.requestsOnFuseThread[op] ?? 0, 0, `${op} bypassed the journal`);
  const statAll = 'stat -c "%n %F %s %a %h %u:%g" d d/e d/f d/l d/p d/h d/e/g d/r';
  const missing = 'for n in no1 no2 no3; do stat d/$n d/e/$n 2>/dev/null; done; true';
  const before = jsCounts(c0);
  const fastBefore = c0.requestsOnFuseThread;
  const r = both({ mnt: m.mnt, native }, `${statAll} && ${missing}`);
  t.is(r.mnt, r.native);
  const c1 = counts(m.mnt);
  const after = jsCounts(c1);
  // Nothing of that stat (or of the misses in the new directories) was a getattr for JavaScript...
  t.is(delta(after, before, 'getattr'), 0, `getattr reached JavaScript: ${JSON.stringify({ before, after })}`);
  t.true(delta(c1.requestsOnFuseThread, fastBefore, 'getattr') >= 8, JSON.stringify(c1.requestsOnFuseThread));
  // ... and the six misses in them were answered on the FUSE thread (a found
  // name still goes to JavaScript, resolved, for its node id).
  t.true(delta(c1.requestsOnFuseThread, fastBefore, 'lookup') >= 6, JSON.stringify(c1.requestsOnFuseThread));

  // Changes through the mount show in what the FUSE thread answers next.
  const change = [
    'chmod 604 d/f && chmod 711 d/e && echo more >> d/h && truncate -s 3 d/e/g',
    'rm d/f',
    'echo replaced-by-rename > d/new && mv d/new d/r',
    `python3 -c 'import os; fd=os.open("d/e/g",os.O_RDWR); os.unlink("d/e/g"); os.write(fd,b"abcdef"); st=os.fstat(fd); print("open", st.st_nlink, st.st_size); os.close(fd)'`,
    'stat -c "%n %F %s %a %h" d d/e d/l d/p d/h d/r; stat d/f d/e/g 2>&1 | sed "s/.*: //"',
    'cat d/h d/r',
  ].join(' && ');
  const c2 = counts(m.mnt);
  const r2 = both({ mnt: m.mnt, native }, change);
  t.is(r2.mnt, r2.native);
  t.regex(r2.mnt, /^open 0 6\n/m);
  const c3 = counts(m.mnt);
  t.true(delta(c3.requestsOnFuseThread, c2.requestsOnFuseThread, 'getattr') > 0, JSON.stringify(c3.requestsOnFuseThread));
  t.is(delta(jsCounts(c3), jsCounts(c2), 'getattr'), 0, JSON.stringify({ before: jsCounts(c2), after: jsCounts(c3) }));
  // Every change went through the journal: the archive has them all.
  syncMount(m);
  const v = verify(m);
  t.is(v.status, 0, v.stdout + v.stderr);
});
