// One check per claim of docs/SEMANTICS.md that the program tests
// (programs.test.ts) do not already make, each against a live mount and,
// where the claim is "as on ext4", against a native directory too.
import test, { type ExecutionContext } from 'ava';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { withMount, sh } from '../helpers/mount.js';
import { assertConverged, syncMount, withMirroredMount, type MirroredMount } from '../helpers/mirror.js';
import { renameRace } from '../helpers/rename-race.js';

/** A plain mount with `args`, or a mirrored one (MOUNTS tables: label, args, mirrored). */
function mountOf(t: ExecutionContext, args: readonly string[], mirrored: boolean): { mnt: string; base: string } & Partial<MirroredMount> {
  return mirrored ? withMirroredMount(t, { extraArgs: [...args] }) : withMount(t, [...args]);
}

/** A mirrored mount's archive equals its store (after strata sync); nothing for a plain one. */
function convergedIfMirrored(t: ExecutionContext, m: { mnt: string } & Partial<MirroredMount>): void {
  if ('archiveUrl' in m) {
    syncMount(m as MirroredMount);
    assertConverged(t, m as MirroredMount);
  }
}

/**
 * Runs the Python `script` in a new native directory `m.base/<dir>` and on
 * the mount: the native run succeeds and prints `nativeShows` (so the test
 * checks what it means to), the mount's prints the same; then convergedIfMirrored.
 */
function sameAsNative(t: ExecutionContext, m: { mnt: string; base: string } & Partial<MirroredMount>, dir: string, script: string, nativeShows: RegExp, why: string): void {
  const native = join(m.base, dir);
  mkdirSync(native, { recursive: true });
  const want = sh(`python3 -c '${script}'`, native);
  t.is(want.status, 0, want.stderr);
  t.regex(want.stdout, nativeShows, why);
  const got = sh(`python3 -c '${script}'`, m.mnt);
  t.is(got.status, 0, got.stderr);
  t.is(got.stdout, want.stdout);
  convergedIfMirrored(t, m);
}

function both(m: { mnt: string; native: string }, script: string): { mnt: string; native: string } {
  const a = sh(script, m.mnt);
  const b = sh(script, m.native);
  return { mnt: a.stdout + a.stderr, native: b.stdout + b.stderr };
}

test('fallocate (allocate, punch hole) behaves as on ext4', (t) => {
  const m = withMount(t);
  const r = both(m, 'fallocate -l 1M f && stat -c %s f && fallocate -p -o 0 -l 65536 f && stat -c %s f && fallocate -n -l 4M f && stat -c %s f');
  t.is(r.mnt, r.native);
  t.is(r.mnt, '1048576\n1048576\n1048576\n');
});

test('fallocate collapse and insert range: EOPNOTSUPP and the file unchanged (the kernel\'s FUSE refuses them); zero range and keep size as on ext4', (t) => {
  const m = withMount(t);
  const mk = 'head -c 1048576 /dev/zero | tr "\\0" "a" > f && ';
  for (const flag of ['-c', '-i']) {
    const r = sh(`${mk}fallocate ${flag} -o 65536 -l 65536 f; echo rc=$?; stat -c %s f; tr -d a < f | wc -c`, m.mnt);
    t.regex(r.stderr, /Operation not supported/, `fallocate ${flag}`);
    t.is(r.stdout, 'rc=1\n1048576\n0\n', `fallocate ${flag}: the file is unchanged`);
  }
  const ok = both(m, `${mk}fallocate -z -o 4096 -l 8192 f && fallocate -n -o 2097152 -l 65536 f && stat -c %s f && tr -d a < f | wc -c`);
  t.is(ok.mnt, ok.native);
  t.is(ok.mnt, '1048576\n8192\n');
});

test('flock and fcntl locks work (kept in the kernel)', (t) => {
  const m = withMount(t);
  const r = sh('touch f && flock f -c "echo locked" && python3 -c "import fcntl,os; fd=os.open(\'f\',os.O_RDWR); fcntl.lockf(fd, fcntl.LOCK_EX|fcntl.LOCK_NB); print(\'lockf\')"', m.mnt);
  t.is(r.stdout, 'locked\nlockf\n', r.stderr);
});

test('readdir inode numbers equal stat inode numbers; hard links share them', (t) => {
  const m = withMount(t);
  const r = sh('echo x > a && ln a b && mkdir d && for n in a b d; do [ "$(ls -di $n | cut -d" " -f1)" = "$(stat -c %i $n)" ] || echo mismatch $n; done; [ "$(stat -c %i a)" = "$(stat -c %i b)" ] && echo shared', m.mnt);
  t.is(r.stdout, 'shared\n', r.stderr);
});

test('names up to 255 bytes, ENAMETOOLONG beyond, paths near PATH_MAX', (t) => {
  const m = withMount(t);
  const script = 'n=$(printf "x%.0s" $(seq 1 255)); touch $n && echo ok255; touch ${n}y 2>&1 | sed "s/.*: //"; ' +
    'p=.; for i in $(seq 1 19); do p=$p/$(printf "d%.0s" $(seq 1 200)); done; mkdir -p $p && echo deep > $p/f && cat $p/f && (cd $p && pwd | wc -c)';
  const r = both(m, script);
  t.is(r.mnt.replace(/\d+\n$/, ''), r.native.replace(/\d+\n$/, ''));
  t.true(r.mnt.startsWith('ok255\nFile name too long\ndeep\n'));
});

test('mmap writes, O_DIRECT I/O, unix sockets and device nodes', (t) => {
  const m = withMount(t);
  const script = 'python3 -c "import mmap,os; fd=os.open(\'mm\',os.O_CREAT|os.O_RDWR,0o644); os.ftruncate(fd,8192); mm=mmap.mmap(fd,8192); mm[4096:4101]=b\'hello\'; mm.flush(); mm.close(); os.close(fd)" && ' +
    'tail -c +4097 mm | head -c 5; echo; ' +
    'dd if=/dev/zero of=od bs=4096 count=4 oflag=direct status=none && dd if=od of=/dev/null bs=4096 iflag=direct status=none && stat -c %s od && ' +
    'python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind(\'sock\'); print(\'bound\')" && stat -c %F sock && ' +
    'mknod c c 1 3 && mknod b b 7 0 && stat -c "%F %t:%T" c b';
  const r = both(m, script);
  t.is(r.mnt, r.native);
  t.is(r.mnt, 'hello\n16384\nbound\nsocket\ncharacter special file 1:3\nblock special file 7:0\n');
});

test('a file unlinked while open stays usable and reports nlink 0', (t) => {
  const m = withMount(t);
  const py = 'import os; fd=os.open("u",os.O_CREAT|os.O_RDWR,0o644); os.unlink("u"); os.write(fd,b"still"); os.lseek(fd,0,0); ' +
    'print(os.read(fd,9), os.fstat(fd).st_nlink); os.fchmod(fd,0o600); os.ftruncate(fd,2); print(oct(os.fstat(fd).st_mode & 0o777), os.fstat(fd).st_size); os.close(fd); print(os.path.exists("u"))';
  const r = both(m, `python3 -c '${py}'`);
  t.is(r.mnt, r.native);
  t.is(r.mnt, "b'still' 0\n0o600 2\nFalse\n");
});

test("strata's own xattrs (trusted.strata.*) are neither shown nor settable through a mirrored mount", (t) => {
  const archive = mkdtempSync(join(tmpdir(), 'strata-sem-archive-'));
  t.teardown(() => rmSync(archive, { recursive: true, force: true }));
  const m = withMount(t, ['--archive', `file://${archive}`, '--volume', 'v']);
  const r = sh('touch f && setfattr -n user.k -v 1 f && getfattr -d -m - f; getfattr -n trusted.strata.id f; ' +
    'setfattr -n trusted.strata.id -v 0x00 f; setfattr -x trusted.strata.id f; mkdir d; setfattr -n trusted.strata.x -v 1 d; echo end', m.mnt);
  t.notRegex(r.stdout, /trusted\.strata/, 'never listed');
  t.regex(r.stdout, /user\.k="1"/);
  t.regex(r.stderr, /trusted\.strata\.id: No such attribute/);
  t.is((r.stderr.match(/Operation not permitted/g) ?? []).length, 3, r.stderr);
  const inStore = sh(`getfattr --only-values -n trusted.strata.id ${join(m.store, 'f')}`, m.base);
  t.regex(inStore.stdout, /^[0-9a-f]{32}$/, 'the id is still on the backing file');
});

test('mv -n never replaces an existing name', (t) => {
  const m = withMount(t);
  const r = both(m, 'echo a > a && echo b > b && mv -n a b; cat a b');
  t.is(r.mnt, r.native);
  t.is(r.mnt, 'a\nb\n');
});

test('long symlink targets and dangling symlinks', (t) => {
  const m = withMount(t);
  const r = both(m, 'ln -s $(printf "y%.0s" $(seq 1 4000)) long && readlink long | wc -c && ln -s /nowhere/at/all d && readlink d && cat d 2>&1 | sed "s/.*: //"');
  t.is(r.mnt, r.native);
});

test('names that are not valid UTF-8 keep their bytes (listing, open, rename, xattr names, symlink targets)', (t) => {
  const m = withMount(t);
  // A Latin-1 name, lone 0xff/0xfe (which Node's own decoding would both turn into U+FFFD: one name), and the UTF-8 of U+F780 (strata's escape range, src/protocol/names.ts).
  const r = both(m, "touch $'bad\\xffname' $'\\xfe' $'\\xff' && mkdir $'caf\\xe9' && echo x > $'caf\\xe9/\\xef\\x9e\\x80' && mv $'\\xfe' $'caf\\xe9/moved\\xc3' && ln -s $'t\\xff' $'l\\xe9' && setfattr -n $'user.\\xff' -v 1 $'\\xff' && " +
    "find . -mindepth 1 -printf '%p %y %l\\n' | LC_ALL=C sort | od -An -tx1 && cat $'caf\\xe9/\\xef\\x9e\\x80' && getfattr -d $'\\xff' | od -An -tx1");
  t.is(r.mnt, r.native);
  t.true(r.native.includes(' ff'), 'the listing holds the raw byte');
});

test('O_TMPFILE is refused with EOPNOTSUPP (the kernel\'s FUSE has no tmpfile operation), where a native directory makes one', (t) => {
  const m = withMount(t);
  const O_TMPFILE = 0o20200000; // __O_TMPFILE | O_DIRECTORY (x86_64, arm64)
  const tryTmpfile = (dir: string): string => {
    try {
      closeSync(openSync(dir, O_TMPFILE | constants.O_WRONLY, 0o600));
      return 'ok';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  };
  t.is(tryTmpfile(m.native), 'ok');
  t.is(tryTmpfile(m.mnt), 'ENOTSUP', 'errno 95 (EOPNOTSUPP, libuv names it ENOTSUP); if this fails, the kernel gained FUSE tmpfile support: update docs/SEMANTICS.md');
});

// renameat2 through python3's ctypes (Node has no renameat2): RENAME_NOREPLACE
// and RENAME_EXCHANGE (files, a directory with a file, a directory into its
// own subtree: EINVAL, a missing name: ENOENT, both flags at once: EINVAL)
// as on ext4; RENAME_WHITEOUT stays EINVAL, and refusing it must not make the
// kernel refuse the other flags afterwards (ENOSYS would).
const RENAMEAT2 = [
  'import ctypes, os, sys',
  'libc = ctypes.CDLL(None, use_errno=True)',
  'def r2(a, b, flags):',
  '    rc = libc.renameat2(-100, a.encode(), -100, b.encode(), flags)',
  '    return "ok" if rc == 0 else os.strerror(ctypes.get_errno())',
  'open("a", "w").write("a"); open("b", "w").write("b"); os.mkdir("d")',
  'print("noreplace onto a file:", r2("a", "b", 1))',
  'print("noreplace onto a directory:", r2("a", "d", 1))',
  'print("exchange:", r2("a", "b", 2))',
  'print("noreplace to a new name:", r2("a", "c", 1))',
  'print("noreplace of a directory:", r2("d", "e", 1))',
  'print(sorted(os.listdir(".")), open("b").read(), open("c").read())',
  'os.mkdir("e/in"); open("e/in/f", "w").write("f")',
  'print("exchange a directory and a file:", r2("e", "c", 2), sorted(os.listdir(".")), sorted(os.listdir("c")), open("e").read())',
  'print("exchange into its own subtree:", r2("c", "c/in/f", 2))',
  'print("exchange with a missing name:", r2("b", "nope", 2))',
  'print("exchange and noreplace:", r2("b", "e", 3))',
  'print("exchange within a directory and across:", r2("c/in/f", "b", 2), open("b").read(), open("c/in/f").read())',
].join('\n');

for (const mirrored of [false, true]) {
  test(`renameat2: RENAME_NOREPLACE and RENAME_EXCHANGE as on a native directory (EEXIST, nothing changed; a new name works; names swap objects, errors as ext4's)${mirrored ? ' (mirrored: the archive converges)' : ''}`, (t) => {
    sameAsNative(t, mountOf(t, [], mirrored), 'native-r2', RENAMEAT2, /exchange: ok[^]*exchange a directory and a file: ok/, 'ext4 exchanges');
  });
}

// A program working inside a directory (relative to it) while another renames
// it: before the namespace lock (src/fuse/namespace-lock.ts), a request that
// resolved the directory's old path reached the store after the rename and
// got ENOENT, which a native directory (working by inode) never gives.
for (const mirrored of [false, true]) {
  test(`a program working in a directory another one renames back and forth sees no error, as on a native directory${mirrored ? ' (mirrored)' : ''}`, async (t) => {
    const m = mirrored ? withMirroredMount(t) : withMount(t);
    for (const root of [join(m.base, 'native-race'), m.mnt]) {
      mkdirSync(join(root, 'p', 'd'), { recursive: true });
      const res = await renameRace(root, 3000);
      t.true(res.iterations > 50, `${root}: ${res.iterations} iterations`);
      t.deepEqual(res.errors, [], `${root}: ${res.iterations} iterations`);
    }
  });
}

test('the root\'s link count is as on ext4: strata\'s private directory is not counted (FUSE thread and core alike)', (t) => {
  for (const args of [[], ['--no-direct-io']]) {
    const m = withMount(t, args);
    const r = both(m, 'mkdir a b && stat -c %h . && touch . && stat -c %h .');
    t.is(r.mnt, r.native, `with ${args.join(' ') || 'defaults'}`);
  }
});

// O_APPEND belongs to the program's open file, not to strata's descriptor of
// the store file: a program may clear or set it with fcntl(F_SETFL) after
// its open, and another handle may truncate the file under an appender. Until
// 2026-12-05 the store's descriptor was opened O_APPEND when the program's
// was: after F_SETFL cleared it, a pwrite at offset 0 still went to the end
// of the store's file; and a journalled append was recorded at the offset the
// kernel sent, not where the store put it (the archive's copy then differed
// after another handle's truncation).
const APPENDS = [
  'import os, fcntl',
  'def show(label): print(label, open("f", "rb").read())',
  'open("f", "wb").write(b"0123456789")',
  'fd = os.open("f", os.O_WRONLY | os.O_APPEND)',
  'fcntl.fcntl(fd, fcntl.F_SETFL, 0)',
  'os.pwrite(fd, b"AB", 0); os.write(fd, b"CD"); os.close(fd)',
  'show("O_APPEND cleared by F_SETFL, then pwrite at 0 and write at the position:")',
  'fd = os.open("f", os.O_WRONLY)',
  'fcntl.fcntl(fd, fcntl.F_SETFL, os.O_APPEND)',
  'os.write(fd, b"EF"); os.pwrite(fd, b"GH", 0); os.close(fd)',
  'show("O_APPEND set by F_SETFL, then write and pwrite at 0 (both append on Linux):")',
  'a = os.open("f", os.O_WRONLY | os.O_APPEND)',
  'os.write(a, b"IJ")',
  'b = os.open("f", os.O_WRONLY | os.O_TRUNC); os.write(b, b"xyz"); os.close(b)',
  'os.write(a, b"KL")',
  'show("an appender after another handle\\x27s O_TRUNC open and write:")',
  'c = os.open("f", os.O_RDWR); os.ftruncate(c, 1); os.close(c)',
  'os.write(a, b"MN"); os.close(a)',
  'show("an appender after another handle\\x27s ftruncate:")',
].join('\n');

const APPEND_MOUNTS: readonly (readonly [string, readonly string[], boolean])[] = [
  ['the FUSE thread\'s answers', [], false],
  ['every request in JavaScript (--no-direct-io)', ['--no-direct-io'], false],
  ['the writeback cache', ['--writeback-cache'], false],
  ['passthrough writes (an O_APPEND open does not pass through)', ['--passthrough-writes'], false],
  ['mirrored, async: appends journalled on the FUSE thread', [], true],
  ['mirrored, async: appends through the core (--no-direct-journal)', ['--no-direct-journal'], true],
  ['mirrored, sync', ['--mirror', 'sync'], true],
];

for (const [label, args, mirrored] of APPEND_MOUNTS) {
  test(`O_APPEND follows the program's file flags as they are at each write (set or cleared with fcntl) and appends at the end another handle left: as on a native directory (${label})`, (t) => {
    sameAsNative(t, mountOf(t, args, mirrored), 'native-append', APPENDS, /cleared by F_SETFL.*b'CD23456789'/, 'ext4 writes where the program says once O_APPEND is off');
  });
}

// A file whose last name is gone while a program holds it open can be opened
// again through /proc/PID/fd/N (the kernel asks for the node; there is no path
// left), written through the new descriptor, truncated by that path with only
// a read-only descriptor left (ftruncate needs a writable one), and opened
// O_TRUNC. Until 2026-12-05 a mount whose opens go through the core (mirrored,
// --no-direct-io, checkpoints, a restore) gave ENOENT: the core opened by
// store-relative path only (filesystem.ts reopen, store-dir.ts reopen).
const NAMELESS = [
  'import os',
  'fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b"0123456789"); os.unlink("f")',
  'p = "/proc/self/fd/%d" % fd',
  'g = os.open(p, os.O_RDWR); os.pwrite(g, b"AB", 2); print("reopened read-write, written:", os.pread(fd, 20, 0))',
  'r = os.open(p, os.O_RDONLY); print("reopened read-only:", os.pread(r, 20, 0))',
  'os.close(fd); os.close(g)',
  'os.truncate("/proc/self/fd/%d" % r, 4); print("truncated by path, only a read-only handle left:", os.pread(r, 20, 0), os.fstat(r).st_size)',
  'w = os.open("/proc/self/fd/%d" % r, os.O_WRONLY | os.O_TRUNC); os.write(w, b"xy"); print("an O_TRUNC open of it, written:", os.pread(r, 20, 0))',
  'os.fchmod(w, 0o600); print("mode:", oct(os.fstat(r).st_mode & 0o777), "links:", os.fstat(r).st_nlink)',
  'os.close(w); os.close(r); print("names:", sorted(os.listdir(".")))',
].join('\n');

const NAMELESS_MOUNTS: readonly (readonly [string, readonly string[], boolean])[] = [
  ['the FUSE thread\'s answers', [], false],
  ['every request in JavaScript (--no-direct-io)', ['--no-direct-io'], false],
  ['mirrored, async', [], true],
  ['mirrored, async, writes through the core (--no-direct-journal)', ['--no-direct-journal'], true],
  ['mirrored, async, writeback cache', ['--writeback-cache'], true],
  ['mirrored, sync', ['--mirror', 'sync'], true],
];

for (const [label, args, mirrored] of NAMELESS_MOUNTS) {
  test(`a file with no name left is opened again through /proc/PID/fd/N, truncated by that path and O_TRUNC-opened: as on a native directory (${label})`, (t) => {
    sameAsNative(t, mountOf(t, args, mirrored), 'native-nameless', NAMELESS, /O_TRUNC open of it, written: b'xy'/, 'ext4 opens it again');
  });
}

/** Python lines that define t(label, f): f's value, "ok", or its error's strerror, appended to res (printed at the end). */
const PY_OUTCOMES = [
  'res = []',
  'def t(label, f):',
  '    try:',
  '        v = f(); res.append((label, "ok" if v is None else v))',
  '    except OSError as e:',
  '        res.append((label, e.strerror))',
];

// A program whose working directory is removed (rmdir from elsewhere, or a rename of an empty directory
// over it) goes on using it: natively stat, listing (empty), chmod work, a create gets ENOENT. Strata
// reaches such a node through a descriptor: the mount's node table keeps one per node, but only up to
// half the descriptor limit (a tiny one here, STRATA_NODE_TABLE_MAX=4, pushes it out). Until 2026-12-06
// a directory pushed out of the table answered ENOENT to everything (ls: "cannot open directory '.'");
// now the core keeps a descriptor of a directory that loses its last name while the kernel holds it
// (src/core/nodes.ts, keptDirs).
const REMOVED_CWD = [
  'import os',
  'base = os.getcwd()',
  'os.mkdir("d"); os.mkdir("e")',
  'for i in range(12):',
  '    os.makedirs("x%d/y" % i); open("x%d/y/f" % i, "w").close()',
  ...PY_OUTCOMES,
  'for which in ("d", "e"):',
  '    os.chdir(base + "/" + which)',
  '    if which == "d": os.rmdir(base + "/d")',
  '    else: os.mkdir(base + "/g"); os.rename(base + "/g", base + "/e")',
  '    for i in range(12): os.stat(base + "/x%d/y/f" % i)',
  '    t(which + " list", lambda: os.listdir("."))',
  '    t(which + " chmod", lambda: os.chmod(".", 0o711))',
  '    t(which + " stat", lambda: "%o %d" % (os.stat(".").st_mode & 0o7777, os.stat(".").st_nlink))',
  '    t(which + " create", lambda: open("f", "w").close())',
  'os.chdir(base)',
  'print(res)',
].join('\n');

for (const [label, args] of [['the FUSE thread\'s answers', []], ['every request in JavaScript (--no-direct-io)', ['--no-direct-io']]] as const) {
  test(`a working directory removed or renamed over, pushed out of a tiny node table: stat, listing and chmod work, a create gets ENOENT, as natively (${label})`, (t) => {
    const m = withMount(t, [...args], { STRATA_NODE_TABLE_MAX: '4' });
    sameAsNative(t, m, 'native-removed-cwd', REMOVED_CWD, /\('d list', \[\]\), \('d chmod', 'ok'\), \('d stat', '711 0'\), \('d create', 'No such file or directory'\)/, 'ext4 keeps a removed directory usable through a reference');
  });
}

// A file and a symbolic link replaced over and over by a rename over their
// names (test/helpers/replace-race.py: as editors, rsync and deploy scripts
// replace them) while another program opens and reads the file, reads its
// xattrs, stats it and reads the link: natively none of these ever fails.
// Until 2026-12-05 the kernel's request for the node it had just looked up
// reached strata after the rename took the node's last name, and strata,
// which addressed it by path, answered ENOENT: getxattr, listxattr and
// readlink on every mount, open on mirrored ones (about one read in three
// there). Now such a node is reached through the node table's descriptor
// (the O_PATH one passthrough_hp keeps per inode: nodeDescriptor).
const REPLACER = fileURLToPath(new URL('../../../test/helpers/replace-race.py', import.meta.url));
for (const [label, args, mirrored] of NAMELESS_MOUNTS) {
  test(`a file and a symlink replaced by rename over their names while another program opens, reads xattrs, stats and reads the link: nothing fails, as natively (${label})`, (t) => {
    const m = mountOf(t, args, mirrored);
    const r = spawnSync('python3', [REPLACER, m.mnt, '300'], { encoding: 'utf8', timeout: 120_000 });
    t.is(r.status, 0, r.stderr);
    t.log(r.stderr.trim());
    t.deepEqual(JSON.parse(r.stdout) as Record<string, number>, {}, 'failures by operation and errno');
    convergedIfMirrored(t, m);
  });
}

// The same with nothing open at all: a program holds the file by an O_PATH
// descriptor (no FUSE open), removes its name and works through
// /proc/self/fd/N, so every request names a node with no name and no handle.
// Before 2026-12-05 the chmod answered ENOENT on mirrored mounts and on
// --no-direct-io (the FUSE thread's own setattr works by node descriptor),
// and setxattr and removexattr on every mount.
const OPATH = [
  'import os',
  'open("f", "w").write("hello world")',
  'os.setxattr("f", "user.k", b"v")',
  'fd = os.open("f", os.O_PATH); p = "/proc/self/fd/%d" % fd',
  'os.unlink("f")',
  'os.chmod(p, 0o600); print("mode:", oct(os.stat(p).st_mode & 0o777), "links:", os.stat(p).st_nlink)',
  'os.utime(p, (1000000000, 1000000000)); print("mtime:", os.stat(p).st_mtime)',
  'os.setxattr(p, "user.n", b"new"); os.removexattr(p, "user.k")',
  'print("xattr:", os.getxattr(p, "user.n"), sorted(x for x in os.listxattr(p) if x.startswith("user.")))',
  'os.truncate(p, 5); print("size:", os.stat(p).st_size)',
  'r = os.open(p, os.O_RDONLY); print("read:", os.read(r, 20)); os.close(r)',
  'os.close(fd)',
  // Objects of the other kinds with no name left: until 2026-12-05 their setattr answered ENOENT
  // (only a regular file was reached, through a handle opened for it).
  'os.mkfifo("q"); qfd = os.open("q", os.O_PATH); q = "/proc/self/fd/%d" % qfd; os.unlink("q")',
  'os.chmod(q, 0o640); os.utime(q, (2000000000, 2000000000)); s = os.stat(q); print("fifo:", oct(s.st_mode & 0o7777), s.st_mtime, s.st_nlink)',
  'os.symlink("target", "l"); lfd = os.open("l", os.O_PATH | os.O_NOFOLLOW); l = "/proc/self/fd/%d" % lfd; os.unlink("l")',
  'os.chown(l, 1234, 4321); os.utime(l, (1500000000, 1500000000)); s = os.stat(l); print("symlink:", oct(s.st_mode), s.st_uid, s.st_gid, s.st_mtime)',
  'os.mkdir("dd"); ddfd = os.open("dd", os.O_PATH); dd = "/proc/self/fd/%d" % ddfd; os.rmdir("dd")',
  'os.chmod(dd, 0o705); os.chown(dd, 77, 88); os.utime(dd, (1600000000, 1600000000)); s = os.stat(dd); print("removed dir:", oct(s.st_mode & 0o7777), s.st_uid, s.st_gid, s.st_mtime)',
  'os.close(qfd); os.close(lfd); os.close(ddfd)',
  // A directory renamed over (it was empty) after the lookup: open succeeds natively; listing it is the kernel's ENOENT.
  'os.mkdir("d"); os.mkdir("e"); dfd = os.open("d", os.O_PATH); os.rename("e", "d")',
  'o = os.open("/proc/self/fd/%d" % dfd, os.O_RDONLY | os.O_DIRECTORY); os.fchmod(o, 0o711)',
  'print("dir:", oct(os.fstat(o).st_mode & 0o777))',
  'try:',
  '    os.listdir(o)',
  'except OSError as e:',
  '    print("listing:", e.errno)',
  'os.close(o); os.close(dfd); print("names:", sorted(os.listdir(".")))',
].join('\n');

for (const [label, args, mirrored] of NAMELESS_MOUNTS) {
  test(`a file with no name left and no open handle (an O_PATH descriptor, /proc/self/fd/N): chmod, utime, xattrs (get, list, set, remove), truncate and open; chmod, chown and utime of a FIFO, a symlink and a directory with no name left; and opendir of a directory renamed over, as on a native directory (${label})`, (t) => {
    sameAsNative(t, mountOf(t, args, mirrored), 'native-opath', OPATH, /read: b'hello'/, 'ext4 works through the O_PATH descriptor');
  });
}

// Offsets past what the store and the archive keep: as natively (ext4 says
// EFBIG past 16 TiB; the bridge past 1 PiB, MAX_FILE_BYTES, where a double
// stops carrying offsets exactly). Until 2026-12-05 a pwrite at 2^53 + 1
// answered in JavaScript landed at offset 0 (Node took the inexact position
// for "the current one") and its record stopped the shipper for good (the
// archive refused the offset): nothing more was mirrored.
const HUGE_OFFSETS = [
  'import os',
  'f = os.open("f", os.O_CREAT | os.O_RDWR, 0o644); os.write(f, b"start")',
  'def t(label, call):',
  '    try:',
  '        print(label, call())',
  '    except OSError as e:',
  '        print(label, e.strerror)',
  'for off in (2**44 - 10, 2**50 + 1, 2**53 + 1, 2**62):',
  '    t("pwrite %d" % off, lambda: os.pwrite(f, b"abc", off))',
  '    t("ftruncate %d" % off, lambda: os.ftruncate(f, off))',
  '    t("fallocate %d" % off, lambda: os.posix_fallocate(f, off, 10))',
  '    t("pread %d" % off, lambda: os.pread(f, 10, off))',
  't("content", lambda: (os.fstat(f).st_size, os.pread(f, 100, 0)))',
  'os.close(f)',
].join('\n');

for (const [label, args, mirrored] of NAMELESS_MOUNTS.filter(([, a]) => !a.includes('--writeback-cache'))) {
  test(`writes, sizes and reads at offsets past the largest file are refused or empty as natively, and mirroring goes on (${label})`, (t) => {
    sameAsNative(t, mountOf(t, args, mirrored), 'native-huge-offsets', HUGE_OFFSETS, /pwrite 9007199254740993 File too large/, 'ext4 refuses it');
  });
}

// With the writeback cache the kernel takes such a write into its page cache
// (its limit for a FUSE file is 2^63 - 1) and the refusal comes at write-back:
// fsync says EFBIG, the store's file is unchanged, mirroring goes on
// (docs/SEMANTICS.md).
test('with the writeback cache, a write past the largest file fails at write-back (fsync: EFBIG); the store keeps its bytes and mirroring goes on', (t) => {
  const m = mountOf(t, ['--writeback-cache'], true);
  const r = sh(`python3 -c 'import os
f = os.open("f", os.O_CREAT | os.O_RDWR, 0o644); os.write(f, b"start"); os.fsync(f)
os.pwrite(f, b"abc", 2**53 + 1)
try:
    os.fsync(f); print("fsync ok")
except OSError as e:
    print("fsync", e.strerror)
os.close(f)'`, m.mnt);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'fsync File too large\n');
  t.is(readFileSync(join(m.store!, 'f'), 'utf8'), 'start');
  convergedIfMirrored(t, m);
});

// Times before 1970 and past 2262 (int64 nanoseconds end on 2262-04-11; ext4
// keeps times up to 2446 and clamps later ones there): as native, and on a
// mirrored mount the archive's equal them (until 2026-12-05 the store walk of
// `strata verify` and the re-convergence read such an mtime as a time in 1861:
// its seconds times 1e9 overflowed in the native scanDir).
const FAR_TIMES = [
  'import os',
  'for name, ns in (("old", -315619199876543211), ("neg", -1500000001), ("late", 2**62 + 7), ("ext4-end", 15032385535 * 10**9)):',
  '    open(name, "w").close(); os.utime(name, ns=(ns, ns))',
  'os.mkdir("d"); os.utime("d", ns=(15032385535 * 10**9, -1))',
  'for name in ("old", "neg", "late", "ext4-end", "d"):',
  '    st = os.stat(name); print(name, st.st_atime_ns, st.st_mtime_ns)',
].join('\n');

for (const [label, args, mirrored] of NAMELESS_MOUNTS) {
  test(`times before 1970 and past 2262 are kept as natively, and mirrored exactly (${label})`, (t) => {
    sameAsNative(t, mountOf(t, args, mirrored), 'native-far-times', FAR_TIMES, /ext4-end 15032385535000000000 15032385535000000000/, 'ext4 keeps times to 2446');
  });
}

// A tree deeper than PATH_MAX: natively a program reaches it through
// relative paths (a chdir at a time, or *at calls), and the kernel's FUSE
// hands strata one name at a time; strata addresses its store by
// store-relative paths, which then exceed what one system call takes. Until
// 2026-12-05 every operation answered in JavaScript failed there with
// ENAMETOOLONG (rename, link, symlink, mknod, xattrs, readdir, unlink, rmdir;
// those the FUSE thread answers by node descriptor worked): now the
// local-object layer opens the directory part in pieces (native/src/atpath.h).
const DEEP = [
  'import os, shutil',
  'name = "e" * 200',
  'for i in range(24):',
  '    os.mkdir(name); os.chdir(name)',
  ...PY_OUTCOMES,
  't("create", lambda: open("f", "w").write("deep") and None)',
  't("chmod", lambda: os.chmod("f", 0o640))',
  't("utime", lambda: os.utime("f", (1000000000, 1000000000)))',
  't("setxattr", lambda: os.setxattr("f", "user.a", b"1"))',
  't("getxattr", lambda: os.getxattr("f", "user.a").decode())',
  't("link", lambda: os.link("f", "h"))',
  't("symlink", lambda: os.symlink("f", "s"))',
  't("readlink", lambda: os.readlink("s"))',
  't("mkfifo", lambda: os.mkfifo("p"))',
  't("mkdir", lambda: os.mkdir("sub"))',
  't("rename", lambda: os.rename("h", "sub/h2"))',
  't("exchange-like rename over", lambda: os.rename("sub/h2", "f"))',
  't("listdir", lambda: " ".join(sorted(os.listdir("."))))',
  't("stat", lambda: "%o %d %d" % (os.stat("f").st_mode, os.stat("f").st_nlink, os.stat("f").st_mtime))',
  't("read", lambda: open("f").read())',
  't("unlink", lambda: os.unlink("p"))',
  't("rmdir", lambda: os.rmdir("sub"))',
  'print(res)',
].join('\n');

for (const [label, args, mirrored] of NAMELESS_MOUNTS) {
  test(`a tree deeper than PATH_MAX, reached through relative paths: every operation as on a native directory, and removed whole (${label})`, (t) => {
    const m = mountOf(t, args, mirrored);
    const native = join(m.base, 'native-deep');
    mkdirSync(native, { recursive: true });
    const want = sh(`python3 -c '${DEEP}'`, native);
    t.is(want.status, 0, want.stderr);
    t.notRegex(want.stdout, /too long|No such/, 'ext4 does all of it');
    const got = sh(`python3 -c '${DEEP}'`, m.mnt);
    t.is(got.status, 0, got.stderr);
    t.is(got.stdout, want.stdout);
    convergedIfMirrored(t, m);
    // rm -rf walks it relative to each directory (fts), as shutil.rmtree does: both empty again.
    for (const dir of [native, m.mnt]) t.is(sh('rm -rf ' + 'e'.repeat(200) + ' && ls -A | wc -l', dir).stdout.trim(), '0');
    convergedIfMirrored(t, m);
  });
}

// A stat while another program's write that grows a file is under way is
// answered once the write is (the kernel learns the new size from the
// write's reply, the store has it before): until 2026-12-05 a getattr told
// the new size early, and a program that mapped the file to that size got
// SIGBUS past the kernel's end of file, and its stores in the last page past
// that end were cropped from the write-back (found by the concurrent-writers
// test's mappers). STRATA_WRITE_STALL_MS holds each write through the core
// between the store and its reply (600 ms: without the hold the stat comes
// within it, and the mapping 0.1 s later still faults). What is left is the
// kernel's: it takes a write's size into the inode in the writer's context
// after the reply woke it, so on a loaded machine a stat answered right after
// the reply may still be ahead of it for as long as the writer waits for a CPU.
const DURING_GROWTH = [
  'set -e',
  'python3 -c "open(\'f\', \'wb\').write(b\'a\' * 4096)"',
  'python3 -c "import os; fd = os.open(\'f\', os.O_WRONLY); os.pwrite(fd, b\'x\' * 10000, 4096); os.close(fd)" &',
  'sleep 0.2',
  'python3 -c "',
  'import os, mmap',
  'size = os.stat(\'f\').st_size',
  'print(\'during the write:\', size)',
  // The kernel's own size follows in the writer's context once it runs after the reply: under load, later.
  'import time; time.sleep(0.1)',
  'fd = os.open(\'f\', os.O_RDWR); m = mmap.mmap(fd, size); m[size - 1:size] = b\'y\'; m.close(); os.close(fd)"',
  'wait',
  'python3 -c "import os; d = open(\'f\', \'rb\').read(); print(\'after:\', len(d), d[-2:])"',
].join('\n');

for (const [label, args] of [['every request in JavaScript', ['--no-direct-io']], ['mirrored, writes through the core', ['--no-direct-journal']]] as const) {
  test(`a stat during another program's write that grows a file is answered after the write; a mapping of the size it gives works (${label})`, (t) => {
    const env = { STRATA_WRITE_STALL_MS: '600' };
    const m = label.startsWith('mirrored') ? withMirroredMount(t, { extraArgs: [...args, '--attr-timeout', '0'], env }) : withMount(t, [...args, '--attr-timeout', '0'], env);
    const r = sh(DURING_GROWTH, m.mnt);
    t.is(r.status, 0, `${r.stdout}${r.stderr}`);
    t.is(r.stdout, "during the write: 14096\nafter: 14096 b'xy'\n");
  });
}
