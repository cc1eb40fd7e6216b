// Real programs on a real mount, each compared with the same steps on a native
// directory of the same disk: the resulting trees (names, types, modes, owners,
// sizes, contents, symlink targets, xattrs, hard links, and mtimes where the
// program sets them) and the programs' outputs must be the same.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { withMount, sh, type TestMount } from '../helpers/mount.js';
import { pictureOf, type PictureOptions } from '../helpers/tree.js';

function has(program: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${program}`]).status === 0;
}

/** Runs `script` in the native dir and on the mount; compares outputs and trees. */
async function sameAsNative(t: ExecutionContext, m: TestMount, script: string, opts: PictureOptions & { uid?: number } = {}): Promise<void> {
  const shOpts = opts.uid !== undefined ? { uid: opts.uid } : {};
  const native = sh(script, m.native, shOpts);
  const mounted = sh(script, m.mnt, shOpts);
  const norm = (s: string, dir: string): string => s.split(dir).join('<DIR>');
  t.is(native.status, 0, `native run failed: ${native.stderr}`);
  t.is(mounted.status, native.status, `mount run: ${mounted.stderr}`);
  t.is(norm(mounted.stdout, m.mnt), norm(native.stdout, m.native));
  t.is(norm(mounted.stderr, m.mnt), norm(native.stderr, m.native));
  t.deepEqual(await pictureOf(m.mnt, opts), await pictureOf(m.native, opts));
}

const GIT_ENV = 'export GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" GIT_COMMITTER_DATE="2020-01-01T00:00:00Z" GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t;';

test('cp -a of a source tree', async (t) => {
  const m = withMount(t);
  const src = new URL('../../../node_modules/commander', import.meta.url).pathname;
  await sameAsNative(t, m, `cp -a ${src} commander && find commander -type f | wc -l`, { mtimes: true });
});

test('tar create and extract keep modes, links, fifos and mtimes', async (t) => {
  const m = withMount(t);
  const script = [
    'mkdir -p t/a/b t/c && printf "hello\\n" > t/a/b/f && seq 1 60000 | head -c 300000 > t/c/big',
    'chmod 0640 t/a/b/f && chmod 0755 t/c/big && chmod 1777 t/c && ln t/a/b/f t/hard && ln -s a/b/f t/sym && mkfifo t/fifo',
    'find t -exec touch -h -d "2001-02-03 04:05:06.123456789" {} +',
    'tar --xattrs -cf t.tar t && mkdir x && tar --xattrs -xpf t.tar -C x && tar -tvf t.tar --full-time | sort | sed "s/ \\+/ /g"',
    'rm t.tar',
  ].join(' && ');
  await sameAsNative(t, m, script, { mtimes: true });
});

test('git init, add, commit, log, fsck', async (t) => {
  const m = withMount(t);
  const script = `${GIT_ENV} git init -q r && cd r && for i in 1 2 3 4 5; do seq $i 1000 > f$i; mkdir -p d$i; echo $i > d$i/x; git add -A; git commit -qm "c$i"; done && ` +
    'git mv f1 d1/f1 && git commit -qm mv && git log --oneline && git fsck --strict --no-progress && git gc -q && git count-objects -v | grep -v size';
  // .git/index records st_dev and st_ino, which legitimately differ.
  await sameAsNative(t, m, script, { mtimes: false, ignoreContent: /(^|\/)\.git\/index$/ });
});

test('sqlite3 transactions and integrity_check', async (t) => {
  if (!has('sqlite3')) { t.log('sqlite3 not installed'); t.fail('sqlite3 missing: .ci/run installs it'); return; }
  const m = withMount(t);
  const sql = "create table t(k integer primary key, v text); begin; insert into t(v) select hex(zeroblob(100)) from (with recursive c(x) as (select 1 union all select x+1 from c where x<20000) select x from c); commit; " +
    "begin; update t set v = 'x' where k % 3 = 0; rollback; begin; delete from t where k % 2 = 0; commit; vacuum; pragma journal_mode=wal; insert into t(v) values('after wal'); select count(*), sum(length(v)) from t; pragma integrity_check;";
  await sameAsNative(t, m, `sqlite3 db.sqlite "${sql}" && sqlite3 db.sqlite "pragma wal_checkpoint(truncate);" >/dev/null`, { mtimes: false });
});

test('rsync -a with hard links and xattrs', async (t) => {
  if (!has('rsync')) { t.fail('rsync missing: .ci/run installs it'); return; }
  const m = withMount(t);
  const script = 'mkdir -p s/d && seq 1 5000 > s/d/a && ln s/d/a s/b && ln -s d/a s/c && setfattr -n user.k -v v1 s/d/a && ' +
    'touch -h -d "2010-10-10 10:10:10.5" s/d/a s/c s/d && rsync -aHX s/ r/ && rsync -aHX --delete s/ r/ && ls -l --time-style=+%s r r/d | sed "s/ \\+/ /g"';
  await sameAsNative(t, m, script, { mtimes: true });
});

test('mv across directories, rename over files and empty directories', async (t) => {
  const m = withMount(t);
  const script = 'mkdir -p a/x b/y e1 e2 && echo 1 > a/x/f && echo 2 > b/g && mv a/x/f b/y/f && mv b/g b/y/f; ' +
    'mv e1 e2 && mv b/y a/x/ && ls -R; echo data > keep; mkdir full && touch full/z && mv keep full 2>&1; mv e2 full 2>&1 | sed "s/.*: //"; ls -R';
  await sameAsNative(t, m, script);
});

test('hard links share an inode and nlink; symlinks and fifos', async (t) => {
  const m = withMount(t);
  const script = 'echo x > a && ln a b && ln b c && stat -c "%h" a b c && [ "$(stat -c %i a)" = "$(stat -c %i c)" ] && echo same-ino && ' +
    'rm b && stat -c "%h" a c && ln -s a s && readlink s && cat s && ln -s /nonexistent dangling && readlink dangling && ' +
    'mkfifo p && (echo through-fifo > p &) && cat p && stat -c "%F" p s a';
  await sameAsNative(t, m, script);
});

test('touch -m, -a, -d with nanoseconds and UTIME_NOW/UTIME_OMIT', async (t) => {
  const m = withMount(t);
  const script = 'touch f && touch -m -d "2003-03-03 03:03:03.333333333" f && touch -a -d "2004-04-04 04:04:04.444444444" f && stat -c "%x|%y" f && ' +
    'touch -m -d "1999-09-09 09:09:09.999999999" f && stat -c "%x|%y" f && touch -d "1960-01-01 00:00:00.5" old && stat -c "%y" old && ' +
    'ln -s f l && touch -h -d "2005-05-05 05:05:05.5" l && stat -c "%y" l && stat -c "%y" f && ' +
    'python3 -c "import os; os.utime(\'f\', ns=(1, 2)); s=os.stat(\'f\'); print(s.st_atime_ns, s.st_mtime_ns)"';
  await sameAsNative(t, m, script, { mtimes: true });
});

test('chmod, chown, setuid/setgid and sticky bits', async (t) => {
  const m = withMount(t);
  const script = 'touch f && mkdir d && chmod 4755 f && stat -c "%a" f && chmod 2711 d && chmod +t d && stat -c "%a" d && ' +
    'chown 1234:5678 f && stat -c "%u:%g %a" f && chown -h 42:43 f && ln -s f l && chown -h 7:8 l && stat -c "%u:%g" l f && ' +
    'mkdir sg && chgrp 777 sg && chmod 2775 sg && touch sg/inherits && mkdir sg/sub && stat -c "%n %g %a" sg/inherits sg/sub';
  await sameAsNative(t, m, script);
});

test('files created by a non-root user belong to that user (allow_other)', async (t) => {
  const m = withMount(t, ['--allow-other']);
  for (const dir of [m.mnt, m.native]) sh('chmod 0777 .', dir);
  const script = 'umask 022; echo hi > mine && mkdir mydir && ln -s mine mylink && mkfifo myfifo && ' +
    'python3 -c "import os; fd=os.open(\'x\', os.O_CREAT|os.O_WRONLY, 0o666); os.close(fd)" && stat -c "%n %u:%g %a" mine mydir myfifo x && stat -c "%n %u:%g" mylink && ' +
    'touch /dev/null; (echo no > /root-owned-test 2>/dev/null || echo denied)';
  await sameAsNative(t, m, script, { uid: 4321 });
  // The user cannot write into a directory it does not own and that is not writable to it.
  for (const dir of [m.mnt, m.native]) sh('mkdir -p locked && chmod 0755 locked', dir);
  const denied = sh('touch locked/x 2>&1; echo rc=$?', m.mnt, { uid: 4321 });
  t.regex(denied.stdout, /Permission denied[\s\S]*rc=1/);
});

test('open flags: O_EXCL, O_TRUNC, O_APPEND and umask', async (t) => {
  const m = withMount(t);
  const py = [
    'import os, errno',
    'fd = os.open("f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666); os.write(fd, b"0123456789"); os.close(fd)',
    'try:\n  os.open("f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)\nexcept OSError as e:\n  print("excl", errno.errorcode[e.errno])',
    'fd = os.open("f", os.O_WRONLY | os.O_APPEND); os.lseek(fd, 0, 0); os.write(fd, b"END"); os.close(fd)',
    'print(open("f","rb").read())',
    'fd = os.open("f", os.O_WRONLY | os.O_TRUNC); os.close(fd); print("after trunc", os.stat("f").st_size)',
    'fd = os.open("g", os.O_CREAT | os.O_RDWR, 0o777); os.write(fd, b"abc"); os.lseek(fd, 0, 0); print(os.read(fd, 10)); os.close(fd)',
    'print(oct(os.stat("f").st_mode & 0o777), oct(os.stat("g").st_mode & 0o777))',
    'fd = os.open("h", os.O_CREAT | os.O_WRONLY, 0o600); os.ftruncate(fd, 1 << 20); os.pwrite(fd, b"z", (1 << 20) - 1); os.fsync(os.open(".", os.O_RDONLY)); os.fdatasync(fd); os.close(fd)',
    'print(os.stat("h").st_size)',
    'fd = os.open("u", os.O_CREAT | os.O_RDWR, 0o644); os.unlink("u"); os.write(fd, b"still here"); os.lseek(fd, 0, 0); print(os.read(fd, 100), os.fstat(fd).st_nlink); os.fchmod(fd, 0o600) if False else None; os.close(fd)',
  ].join('\n');
  await sameAsNative(t, m, `umask 027; python3 - <<'EOF'\n${py}\nEOF`);
});

test('xattrs: set, get, list, remove, create/replace flags', async (t) => {
  const m = withMount(t);
  const script = 'touch f && setfattr -n user.a -v 1 f && setfattr -n user.b -v "$(head -c 3000 /dev/zero | tr "\\0" x)" f && getfattr -d f | sort | cut -c1-40 && ' +
    'setfattr -x user.a f && getfattr -n user.a f 2>&1 | sed "s/.*: //"; getfattr -d -m - f | grep -c user && ' +
    'python3 -c "import os\ntry:\n os.setxattr(\'f\', \'user.b\', b\'v\', os.XATTR_CREATE)\nexcept OSError as e: print(e.strerror)\ntry:\n os.setxattr(\'f\', \'user.zz\', b\'v\', os.XATTR_REPLACE)\nexcept OSError as e: print(e.strerror)"';
  await sameAsNative(t, m, script);
});

test('statfs and large sequential files', async (t) => {
  const m = withMount(t);
  const r = sh('df -P . | tail -1 | awk "{print (\\$2 > 0)}" && dd if=/dev/urandom of=big bs=1M count=64 status=none && sha256sum big | cut -c1-64 && cp big big2 && cmp big big2 && echo same', m.mnt);
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines[0], '1');
  t.is(lines[2], 'same');
  const inStore = sh('sha256sum big | cut -c1-64', m.store);
  t.is(inStore.stdout.trim(), lines[1]);
});

test('the reserved .strata entry is invisible and cannot be created', async (t) => {
  const m = withMount(t);
  const r = sh('ls -a; stat .strata 2>&1 | sed "s/.*: //"; mkdir .strata 2>&1 | sed "s/.*: //"; touch .strata 2>&1 | sed "s/.*: //"; mkdir d && mv d .strata 2>&1 | sed "s/.*: //"', m.mnt);
  t.is(r.stdout, '.\n..\nNo such file or directory\nOperation not permitted\nOperation not permitted\nOperation not permitted\n');
});
