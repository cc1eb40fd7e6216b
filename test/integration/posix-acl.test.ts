// POSIX ACLs (docs/SEMANTICS.md): enforced by the kernel as on ext4
// (FUSE_CAP_POSIX_ACL), the umask left to strata and ignored under a default
// ACL (FUSE_CAP_DONT_MASK), the mode and the ACL's mask kept in step by the
// store's file system; on a mirrored mount everything that file system
// changes unasked reaches the archive, and a recovery brings back exactly the
// ACLs the primary had (none inherited from a default ACL set later).
// Real programs: setfacl, getfacl, setpriv (as nobody).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { sh, strata, withMount } from '../helpers/mount.js';
import { livePicture } from '../helpers/model-tree.js';
import { buildVolume, newRecoveryTarget, runRecover, verifySummary, waitRestored } from '../helpers/recover.js';

const hasAclTools = spawnSync('setfacl', ['--version']).status === 0 && spawnSync('getfacl', ['--version']).status === 0;
const aclTest = hasAclTools && process.getuid?.() === 0 ? test.serial : test.serial.skip;
if (!hasAclTools) console.error('posix-acl: skipped: setfacl/getfacl missing (Debian package acl; scripts/setup.sh installs it)');

/**
 * Steps run in a directory (as root, umask 022), some as nobody (`A`: its
 * output and exit status). Relative names only, so that both sides print the same.
 */
const SCRIPT = String.raw`
umask 022
A() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@" 2>&1 | sed 's/^/  nobody: /'; echo "  rc=\${PIPESTATUS[0]}"; }
echo secret > f && chmod 600 f
A cat f
setfacl -m u:nobody:r f && A cat f && stat -c '%n %a' f && getfacl -c f
chmod 640 f && getfacl -c f && A cat f
setfacl -m m::rw f && stat -c '%n %a' f && A sh -c 'echo more >> f'
setfacl -m u:nobody:rw f && A sh -c 'echo more >> f' && cat f
setfacl -x u:nobody f && A cat f
setfacl -b f && stat -c '%n %a' f && getfacl -c f
setfacl -m g:nogroup:r f && A cat f && setfacl -m o::r,g:nogroup:- f && A cat f
mkdir d && setfacl -d -m u:nobody:rwx,g::rwx d && getfacl -c d
touch d/file && mkdir d/sub && mknod d/fifo p && ln -s file d/sym
stat -c '%n %a' d/file d/sub d/fifo && getfacl -c d/file d/sub d/fifo
A sh -c 'umask 077; echo by-nobody > d/sub/n && mkdir d/sub/nd && stat -c "%n %a" d/sub/n d/sub/nd'
getfacl -c d/sub/n d/sub/nd
A sh -c 'umask 077; echo x > d/not-allowed'
mkdir e && setfacl -m u:nobody:x e && chmod 700 e && echo in-e > e/g && chmod 644 e/g && A cat e/g
setfacl -m m::- e && A cat e/g
chmod 711 e && A cat e/g
setfacl -k d && touch d/after && stat -c '%n %a' d/after && getfacl -c d/after
(umask 027 && mkfifo pf && mkdir pd && touch pt && ln -s pt pl && stat -c '%n %a' pf pd pt) && (umask 0 && touch p0 && stat -c '%n %a' p0)
touch sg sg2 && chown nobody:root sg && chown nobody:nogroup sg2 && chmod 2770 sg sg2 && A setfacl -m u::rwx,g::rx sg && A setfacl -m u::rwx sg2 && stat -c '%n %a' sg sg2
`;

aclTest('POSIX ACLs through the mount as on a native directory: enforced for another user, mode and mask in step, default ACLs inherited (the umask ignored under one)', (t) => {
  const m = withMount(t, ['--allow-other']);
  chmodSync(m.base, 0o711);
  const f = JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { fuseFeatures: { posixAcl: boolean; offered: { posixAcl: boolean } } };
  t.true(f.fuseFeatures.offered.posixAcl, 'the kernel offers FUSE_POSIX_ACL');
  t.true(f.fuseFeatures.posixAcl, 'and strata asked for it');
  t.regex(strata(['status', m.mnt]).stdout, /POSIX ACLs/);
  const native = sh(SCRIPT, m.native);
  const mounted = sh(SCRIPT, m.mnt);
  t.is(native.stderr, '', 'the script runs cleanly on the native side');
  t.is(mounted.stdout, native.stdout);
  t.is(mounted.stderr, native.stderr);
  // The script saw nobody both refused and let in by ACL entries alone.
  t.regex(native.stdout, /nobody: secret/);
  t.regex(native.stdout, /Permission denied/);
  const list = (dir: string): string => sh('find . -printf "%p %m %U %G\\n" | sort; getfacl -R -p -c . 2>&1', dir).stdout;
  t.is(list(m.mnt), list(m.native));
  // The kernel's ACL queries (one per inode it checks for anyone but the owner) were answered on the FUSE thread.
  const st = JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { requestsOnFuseThread: { getxattr?: number } };
  t.true((st.requestsOnFuseThread.getxattr ?? 0) > 0, JSON.stringify(st.requestsOnFuseThread));
});

aclTest('fallback --no-posix-acl and STRATA_POSIX_ACL=0: status says off; ACLs are kept, the kernel checks mode bits only', (t) => {
  for (const [args, env] of [[['--no-posix-acl'], {}], [[], { STRATA_POSIX_ACL: '0' }]] as const) {
    const m = withMount(t, ['--allow-other', ...args], env);
    chmodSync(m.base, 0o711);
    const f = JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { fuseFeatures: { posixAcl: boolean; offered: { posixAcl: boolean } } };
    t.false(f.fuseFeatures.posixAcl, args.join(' ') || 'STRATA_POSIX_ACL=0');
    t.true(f.fuseFeatures.offered.posixAcl);
    t.regex(strata(['status', m.mnt]).stdout, /POSIX ACLs \(not asked for\)/);
    const steps = 'echo secret > f && chmod 600 f && setfacl -m u:nobody:r f && getfacl -c f && stat -c %a f';
    const read = 'setpriv --reuid=65534 --regid=65534 --clear-groups cat f';
    t.is(sh(steps, m.mnt).stdout, sh(steps, m.native).stdout, 'the ACL and the mode it sets are kept as natively');
    t.is(sh(read, m.native).stdout, 'secret\n', 'ext4 lets nobody read through the ACL');
    t.regex(sh(read, m.mnt).stderr, /Permission denied/, 'the mount without ACL enforcement does not (mode 0640: nobody is other)');
    // Without default ACLs the kernel applies the umask: as natively.
    const modes = "umask 027; touch n; mkdir nd; stat -c '%n %a' n nd";
    t.is(sh(modes, m.mnt).stdout, sh(modes, m.native).stdout);
  }
});

/**
 * The primary's tree: ACLs set, changed by chmod and by setfacl (the mode),
 * removed, inherited from default ACLs (files whole, a stub-sized one, a
 * directory, a fifo, a hard link), and a default ACL set on a directory
 * after its entries were made (a restore that creates them again there must
 * not let them inherit it).
 */
const PRIMARY_TREE = [
  'echo a > a && setfacl -m u:nobody:rw a && chmod 604 a && echo b > b && setfacl -m u:nobody:r,m::rwx b && ' +
    'echo c > c && setfacl -m u:nobody:r c && setfacl -b c && ' +
    'mkdir -p old/sub old/deep/er && echo o > old/o && head -c 3000000 /dev/urandom > old/big && mkfifo old/fifo && ln -s o old/sym && ' +
    'echo s > old/sub/s && echo d > old/deep/er/d && ln old/o old/o-link && ' +
    'setfacl -d -m u:nobody:rwx,g::rwx old && setfacl -d -m u:nobody:rx old/sub',
  'mkdir inh && setfacl -d -m u:nobody:rwx,o::- inh && (umask 077 && echo i > inh/i && mkdir -p inh/d/e && echo j > inh/d/e/j) && ' +
    'head -c 2000000 /dev/urandom > inh/big && mkfifo inh/fifo && chmod 640 inh/i && setfacl -m m::r inh/d && ' +
    'setfacl -m u:nobody:rwx inh/d/e && setfacl -k inh/d/e && ln inh/i inh/i-link && setfacl -m u:nobody:- old/sub/s',
];

aclTest('a mirrored mount records what the store\'s file system changes unasked (mode, mask, inherited ACLs); a recovery brings back exactly the primary\'s ACLs and modes', async (t) => {
  const v = await buildVolume(t, PRIMARY_TREE, { picture: true });
  const truth = (dir: string): string => sh('find . -path ./.strata -prune -o -printf "%p %m %U %G %s\\n" | sort; getfacl -R -P -p . 2>&1 | grep -v "^# owner\\|^# group"', dir).stdout
    .split('\n\n').filter((block) => !block.startsWith('# file: ./.strata')).join('\n\n');
  const primary = truth(v.primary.store);
  t.regex(primary, /user:nobody:rwx/, 'the tree has ACLs');
  // The archive holds the primary's store exactly (verify of the primary's store).
  const pv = strata(['verify', '--store', v.primary.store, '--archive', v.server.url, '--volume', v.volume, '--token-file', v.server.tokenFile]);
  t.is(pv.status, 0, `the archive holds what the primary's store holds: ${pv.stdout}${pv.stderr}`);

  // On demand (a walk through the mount materialises every directory, fetches every file).
  const r1 = newRecoveryTarget(t, v);
  runRecover(r1, ['--depth', '1', '--no-background-restore']);
  t.deepEqual(await livePicture(r1.mnt, { nlink: true }), v.picture, 'the tree through the recovered mount (ACLs included) is the primary\'s');
  t.is(truth(r1.store), primary, 'modes and ACLs in the recovered store, as the primary had them');

  t.is(strata(['unmount', r1.mnt]).status, 0);

  // The background restore (small files whole, in one native call each).
  const r2 = newRecoveryTarget(t, v);
  runRecover(r2, ['--depth', '0']);
  await waitRestored(r2.mnt);
  t.is(truth(r2.store), primary);
  const res = verifySummary(r2);
  t.is(res.status, 0, res.out);
  t.is(res.summary.differences, 0);
});

aclTest('a store on a file system without ACLs (ramfs): another user reads by mode bits as before, setfacl is refused as not supported', (t) => {
  const m = withMount(t, ['--allow-other']);
  chmodSync(m.base, 0o711);
  strata(['unmount', m.mnt]);
  const disk = `${m.base}/ramfs`;
  sh(`mkdir -p ${disk}`, m.base);
  const mounted = spawnSync('mount', ['-t', 'ramfs', 'ramfs', disk], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    t.log(`ramfs could not be mounted (${mounted.stderr.trim()}): nothing to check`);
    t.pass();
    return;
  }
  t.teardown(() => { spawnSync('umount', ['-l', disk]); });
  chmodSync(disk, 0o755);
  const r = strata(['mount', '--allow-other', '--store', `${disk}/store`, m.mnt]);
  t.is(r.status, 0, r.stderr);
  t.teardown(() => { strata(['unmount', m.mnt]); });
  const out = sh("echo hi > f && chmod 644 f && chown 1000 f && setpriv --reuid=65534 --regid=65534 --clear-groups cat f; setfacl -m u:nobody:r f; getfacl -c f", m.mnt);
  // Before: the kernel asked for the ACL, the store answered EOPNOTSUPP, and every permission check failed with it.
  t.regex(out.stdout, /^hi\n/, `nobody reads a 0644 file: ${out.stderr}`);
  t.regex(out.stderr, /setfacl: f: Operation not supported/);
  t.notRegex(out.stderr, /cat:/);
});
