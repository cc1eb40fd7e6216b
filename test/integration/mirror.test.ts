// Convergence (I2) on a mirrored mount: real programs and a seeded random
// workload run on the mount, then `strata verify` must find the store and the
// archive equal — names, types, modes, owners, sizes, contents, symlink
// targets, xattrs, hard links, mtimes.
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { holdDirtyMapping, sh, strata, withMount } from '../helpers/mount.js';
import { startArchiveServer } from '../helpers/archive.js';
import { withMirroredMount, withSnapshotMount, syncMount, assertConverged, verify, mirrorStatus, forceUnmount, mount } from '../helpers/mirror.js';
import { loseDiskAndRecover } from '../helpers/concurrent.js';

test('real programs on a mirrored mount converge: tar, git, sqlite3, rsync, links, xattrs, truncates, sparse files', (t) => {
  const m = withMirroredMount(t);
  const steps = [
    'mkdir -p src && tar -C /usr/include -cf - linux/netfilter asm-generic | tar -C src -xf -',
    'git init -q repo && cd repo && git config user.email t@example.com && git config user.name t && ' +
      'for i in 1 2 3; do echo "line $i" >> file.txt; git add file.txt; git commit -qm "commit $i"; done && git gc -q && git fsck --strict',
    'sqlite3 db.sqlite "create table t(a integer primary key, b text); begin; ' +
      'insert into t(b) select hex(randomblob(100)) from (with recursive c(x) as (select 1 union all select x+1 from c where x < 2000) select x from c); commit; ' +
      'update t set b = \'x\' where a % 7 = 0; delete from t where a % 11 = 0;" && sqlite3 db.sqlite "pragma integrity_check" | grep -qx ok',
    'rsync -aHX src/ copy/',
    'mv copy/asm-generic moved-asm && mv src/linux src/linux-renamed',
    'echo hello > a && ln a b && ln a c && rm c && ln -s a sym && mkfifo fifo',
    'setfattr -n user.color -v blue a && setfattr -n user.gone -v x b && setfattr -x user.gone b',
    'head -c 1000000 /dev/urandom > big && truncate -s 300000 big && truncate -s 5000000 big',
    'truncate -s 100M sparse && printf tail | dd of=sparse bs=1 seek=50000000 conv=notrunc status=none',
    'chmod 600 a && chown 1234:5678 b && touch -m -d "2001-02-03 04:05:06.789" sym.txt 2>/dev/null; touch -h -d "1999-01-01" sym',
    'mkdir -p d1/d2/d3 && echo deep > d1/d2/d3/f && mv d1 d1-moved && rm -rf src/linux-renamed/netfilter/ipset',
    'dd if=/dev/urandom of=overwrite bs=64k count=4 status=none && dd if=/dev/zero of=overwrite bs=1k count=3 seek=70 conv=notrunc status=none',
  ];
  for (const s of steps) {
    const r = sh(s, m.mnt);
    t.is(r.status, 0, `${s}: ${r.stderr}`);
  }
  syncMount(m);
  assertConverged(t, m, 'while mounted');
  const st = mirrorStatus(m);
  t.is(st.mirror.connection, 'connected');
  t.is(st.mirror.lag.records, 0);
  t.is(st.mirror.ackedSeq, st.mirror.lastSeq);
  // A change after the sync is a difference until it is shipped.
  forceUnmount(m.mnt);
  assertConverged(t, m, 'after unmount');
  writeFileSync(join(m.store, 'changed-behind-strata'), 'x');
  t.is(verify(m).status, 1, 'verify reports a difference it should see');
});

test('a seeded random workload converges; the same store keeps mirroring after a remount', (t) => {
  const m = withMirroredMount(t);
  const seed = Number(process.env.STRATA_MIRROR_SEED ?? Date.now() % 100000);
  t.log(`seed ${seed} (replay: STRATA_MIRROR_SEED=${seed})`);
  // A small deterministic generator driving shell ops on the mount.
  let x = seed || 1;
  const rnd = (n: number): number => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
  const names = ['a', 'b', 'c', 'd', 'e'];
  const dirs = ['.', 'd1', 'd2', 'd1/d3'];
  for (const d of dirs) if (d !== '.') mkdirSync(join(m.mnt, d), { recursive: true });
  const ops: string[] = [];
  for (let i = 0; i < 300; i++) {
    const p = `${dirs[rnd(dirs.length)]}/${names[rnd(names.length)]}`;
    const q = `${dirs[rnd(dirs.length)]}/${names[rnd(names.length)]}`;
    switch (rnd(10)) {
      case 0: ops.push(`head -c ${rnd(200000)} /dev/urandom > ${p}`); break;
      case 1: ops.push(`printf '%s' ${i} | dd of=${p} bs=1 seek=${rnd(100000)} conv=notrunc status=none`); break;
      case 2: ops.push(`truncate -s ${rnd(300000)} ${p}`); break;
      case 3: ops.push(`mv -f ${p} ${q}`); break;
      case 4: ops.push(`ln ${p} ${q}`); break;
      case 5: ops.push(`rm -f ${p}`); break;
      case 6: ops.push(`setfattr -n user.k${rnd(3)} -v v${i} ${p}`); break;
      case 7: ops.push(`chmod ${['600', '644', '755', '400'][rnd(4)]} ${p}`); break;
      case 8: ops.push(`touch -d @${1000000000 + rnd(100000)}.${rnd(999999999)} ${p}`); break;
      default: ops.push(`ln -sf target${i} ${p}`); break;
    }
  }
  sh(ops.map((o) => `${o} 2>/dev/null`).join('\n'), m.mnt);
  syncMount(m);
  assertConverged(t, m, 'after the random workload');
  forceUnmount(m.mnt);
  mount(m);
  sh('echo more > d2/after-remount && rm -rf d1', m.mnt);
  syncMount(m);
  assertConverged(t, m, 'after a remount');
});

test('status reports the mirror; sync on an unmirrored mount says so; bad mirror options are refused', (t) => {
  const m = withMirroredMount(t, { extraArgs: ['--mirror', 'sync'] });
  sh('echo x > f', m.mnt);
  const st = mirrorStatus(m);
  t.is(st.state, 'serving');
  t.like(st.mirror, { connection: 'connected' });
  t.is(st.mirror.lag.records, 0, 'sync mode: the op returned only after its ack');
  const human = strata(['status', m.mnt]);
  t.regex(human.stdout, /vol1/);
  const bad = strata(['mount', '--store', join(m.base, 's2'), '--volume', 'v', join(m.base, 'mnt')]);
  t.not(bad.status, 0);
  t.regex(bad.stderr, /--archive/);
  const badMode = strata(['mount', '--store', join(m.base, 's2'), '--archive', m.archiveUrl, '--volume', 'v', '--mirror', 'fast', join(m.base, 'mnt')]);
  t.regex(badMode.stderr, /async or sync/);
  t.false(existsSync(join(m.base, 's2', '.strata', 'mirror.json')));
});

test('a store that already holds data ships everything at its first mirrored mount (initial sync)', async (t) => {
  const m = withMirroredMount(t);
  forceUnmount(m.mnt);
  // Fill a second store without strata, then attach it to a new volume.
  const store2 = join(m.base, 'store2');
  mkdirSync(store2);
  const r = sh('mkdir -p a/b && head -c 300000 /dev/urandom > a/b/f && ln a/b/f a/hard && ln -s b a/sym && setfattr -n user.x -v 1 a/b/f && truncate -s 10M sparse', store2);
  t.is(r.status, 0, r.stderr);
  const m2 = { ...m, store: store2, volume: 'vol2', args: ['--store', store2, '--archive', m.archiveUrl, '--volume', 'vol2'] };
  mount(m2);
  syncMount(m2);
  assertConverged(t, m2, 'after the initial sync');
  // The other volume of the same archive is untouched by it.
  assertConverged(t, m, 'volume 1 unchanged');
  // An existing volume with data is not attached to a store that never mirrored to it.
  forceUnmount(m.mnt);
  const store3 = join(m.base, 'store3');
  mkdirSync(store3);
  const refused = strata(['mount', '--store', store3, '--archive', m.archiveUrl, '--volume', 'vol2', m.mnt]);
  t.not(refused.status, 0);
  t.regex(refused.stderr, /already holds data/);
  // The refused daemon does not linger.
  let lingering = true;
  for (let i = 0; i < 50 && lingering; i++) {
    lingering = spawnSync('pgrep', ['-f', `--store ${store3} `]).status === 0;
    if (lingering) await sleep(100);
  }
  t.false(lingering, 'the daemon of the refused mount exited');
});

test('a directory removed while a program has it open: fstat and futimens through its descriptor as on ext4 (the directory handle keeps one), and the archive converges', (t) => {
  const m = withMirroredMount(t);
  const native = join(m.base, 'native-removed-dir');
  mkdirSync(native);
  // python3: os.open of a directory, then rmdir, then futimes/fstat through the descriptor.
  const script = 'import os,sys\nos.mkdir("d")\nfd=os.open("d", os.O_RDONLY)\nos.rmdir("d")\nos.utime(fd, ns=(1000000001, 2000000002))\nst=os.fstat(fd)\nprint(st.st_nlink, st.st_mtime_ns, oct(st.st_mode & 0o7777))\nos.close(fd)\n';
  const run = (dir: string): string => {
    const r = spawnSync('python3', ['-c', script], { cwd: dir, encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    return r.stdout;
  };
  const want = run(native);
  t.regex(want, /^0 2000000002 /);
  t.is(run(m.mnt), want);
  syncMount(m);
  assertConverged(t, m, 'after the removed directory');
});

// Names are bytes (src/protocol/names.ts): before, every byte that was not
// UTF-8 became U+FFFD on its way to JavaScript, so a listing showed "\xff" and
// "\xfe" as one unreachable name, and the archive kept one file for the two.
test('names that are not UTF-8: listings, reads, symlinks and xattrs as on a native directory, on the archive, and after a recovery', (t) => {
  const m = withMirroredMount(t);
  const native = join(m.base, 'native');
  mkdirSync(native);
  const make = [
    `echo one > $'\\xff'`, `echo two > $'\\xfe'`, `mkdir $'caf\\xe9' && echo three > $'caf\\xe9/f\\xef\\x9e\\x80'`,
    `ln -s $'t\\xff\\xc3' $'l\\xfe'`, `setfattr -n $'user.x\\xff' -v 1 $'\\xff'`, `ln $'\\xfe' $'hard\\xed\\xa0\\x80'`,
    `mv $'\\xff' $'moved\\xc0\\xaf'`, `head -c $((255)) /dev/zero | tr '\\0' '\\377' | xargs -0 -I{} touch {}`,
  ].join(' && ');
  const look = `find . -mindepth 1 -printf '%p|%y|%n|%s|%l\\n' | LC_ALL=C sort | od -An -tx1; cat ./* 2>/dev/null; cat ./*/*; getfattr -d -m 'user\\.' $'moved\\xc0\\xaf' | od -An -tx1`;
  for (const dir of [native, m.mnt]) {
    const r = sh(make, dir);
    t.is(r.status, 0, `${dir}: ${r.stderr}`);
  }
  const want = sh(look, native);
  t.is(want.status, 0, want.stderr);
  t.is(sh(look, m.mnt).stdout, want.stdout, 'the mount lists and reads what the native directory does');
  syncMount(m);
  assertConverged(t, m);
  t.is(strata(['unmount', m.mnt]).status, 0);
  const store2 = join(m.base, 'store2');
  const mnt2 = join(m.base, 'mnt2');
  mkdirSync(mnt2);
  t.teardown(() => forceUnmount(mnt2));
  const rec = strata(['recover', '--store', store2, '--archive', m.archiveUrl, '--volume', m.volume, mnt2]);
  t.is(rec.status, 0, `${rec.stdout}${rec.stderr}`);
  t.is(sh(look, mnt2).stdout, want.stdout, 'a recovery from the archive gives every name back byte for byte');
});

// `strata sync` stands for "the archive holds what programs have written so
// far": that includes stores into a shared mapping the program has not synced,
// and on a --writeback-cache mount writes the kernel still caches. The CLI has
// the kernel write them back first (syncfs of the mount: src/cli/flush-mount.ts).
// Until 2026-12-05 it did not: after `strata sync` and a disk loss (the kernel's
// dirty pages die with the daemon's connection) the recovered file lacked them.
for (const [label, args] of [['mapping', []], ['mapping, writeback cache', ['--writeback-cache']]] as const) {
  test.serial(`strata sync gets the archive what a program stored through a shared mapping it has not synced (${label})`, async (t) => {
    const m = withMirroredMount(t, { extraArgs: [...args] });
    const file = join(m.mnt, 'mapped');
    writeFileSync(file, Buffer.alloc(8192, 'o'));
    syncMount(m);
    const holder = await holdDirtyMapping(t, file);
    syncMount(m);
    await loseDiskAndRecover(t, m, label);
    await holder.kill();
    const want = Buffer.alloc(8192, 'o');
    want.write('NEW', 4096);
    t.true(readFileSync(file).equals(want), 'the recovered file holds what the program stored before strata sync');
  });
}

// `strata snapshot create MOUNTPOINT` stands for the same point in time, and
// has the kernel write back first too (src/cli/flush-mount.ts): a snapshot
// taken while a program holds unsynced stores in a shared mapping, the store
// lost, `recover --snapshot` gives them back. Without the flush the snapshot
// froze the archive before the kernel wrote the page back (the stores came
// later, after the snapshot's point).
test.serial('strata snapshot create MOUNTPOINT holds what a program stored through a shared mapping it has not synced', async (t) => {
  const { m, snapshot } = await withSnapshotMount(t);
  const file = join(m.mnt, 'mapped');
  writeFileSync(file, Buffer.alloc(8192, 'o'));
  syncMount(m);
  const holder = await holdDirtyMapping(t, file);
  const id = snapshot();
  await holder.kill();
  // After the snapshot: not in it.
  writeFileSync(file, Buffer.alloc(8192, 'l'));
  syncMount(m);
  await loseDiskAndRecover(t, m, 'snapshot', { extra: ['--force', '--snapshot', id] });
  const want = Buffer.alloc(8192, 'o');
  want.write('NEW', 4096);
  t.true(readFileSync(file).equals(want), 'the file recovered from the snapshot holds the program\'s stores, and not the later write');
});

// `strata verify MOUNTPOINT`: the store, archive, volume and token file come
// from the mount's daemon (a real `strata archive serve` with a token here),
// after `strata sync` of it; its report goes to stderr, the comparison to
// stdout. A change made in the store behind the daemon's back is a
// difference (exit 1); an unmirrored mount has nothing to compare (exit 2).
test.serial('strata verify MOUNTPOINT compares the mount\'s store with its archive volume after a sync', async (t) => {
  const server = await startArchiveServer();
  t.teardown(() => server.stop());
  const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
  t.is(sh('mkdir d && echo one > d/f && echo two > g', m.mnt).status, 0);
  const ok = strata(['verify', m.mnt]);
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /^\d+ objects compared, 0 differences\n$/);
  t.regex(ok.stderr, /the archive holds every change/);
  const json = strata(['verify', '--json', m.mnt]);
  t.is(json.status, 0, json.stderr);
  t.like(JSON.parse(json.stdout) as object, { differences: 0 });
  writeFileSync(join(m.store, 'g'), 'changed behind strata\n');
  const diff = strata(['verify', m.mnt]);
  t.is(diff.status, 1, diff.stderr);
  t.regex(diff.stdout, /\/g: size \(local 22, archive 4\)/);
  const both = strata(['verify', '--store', m.store, m.mnt]);
  t.is(both.status, 2);
  t.regex(both.stderr, /give no --store/);
  const plain = withMount(t);
  const none = strata(['verify', plain.mnt]);
  t.is(none.status, 2);
  t.regex(none.stderr, /is not mirrored/);
});
