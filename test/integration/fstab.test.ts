// mount(8) and /etc/fstab: `strata install-mount-helper` writes
// /sbin/mount.fuse.strata; `mount -t fuse.strata` and an fstab line (read
// from a test fstab with `mount -T`) mount through it with `strata mount`'s
// options, a bad option is refused with a clear message, and `umount` unmounts
// (the daemon exits by itself).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { forceUnmount } from '../helpers/mirror.js';
import { daemonPid, mountpointIsMounted, strata } from '../helpers/mount.js';

const HELPER = '/sbin/mount.fuse.strata';

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await sleep(100);
  }
  return false;
}

test.serial('mount -t fuse.strata and an fstab line mount with strata mount\'s options; umount ends the daemon', async (t) => {
  const had = existsSync(HELPER) ? readFileSync(HELPER) : null;
  t.teardown(() => {
    if (had === null) rmSync(HELPER, { force: true });
    else writeFileSync(HELPER, had, { mode: 0o755 });
  });
  const base = mkdtempSync(join(tmpdir(), 'strata-fstab-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  t.teardown(() => {
    forceUnmount(mnt);
    rmSync(base, { recursive: true, force: true });
  });
  const inst = strata(['install-mount-helper']);
  t.is(inst.status, 0, inst.stderr);
  t.true(existsSync(HELPER));

  // mount -t, the source as the store, a mirror, and mount(8)'s and systemd's own options.
  const m = spawnSync('mount', ['-t', 'fuse.strata', join(base, 'store'), mnt, '-o',
    `archive=file://${join(base, 'archive')},volume=v1,attr-timeout=5,allow_other,_netdev,nofail,x-systemd.requires=network-online.target`],
  { encoding: 'utf8', timeout: 60_000 });
  t.is(m.status, 0, m.stderr);
  t.true(mountpointIsMounted(mnt));
  writeFileSync(join(mnt, 'hello'), 'through fstab\n');
  t.is(strata(['sync', mnt]).status, 0);
  const st = JSON.parse(strata(['status', '--json', mnt]).stdout) as { store: string; mirror: { volume: string } | null };
  t.is(st.store, join(base, 'store'));
  t.is(st.mirror?.volume, 'v1');
  let pid = daemonPid(mnt);
  t.is(spawnSync('umount', [mnt]).status, 0);
  t.false(mountpointIsMounted(mnt));
  t.true(await gone(pid), 'the daemon exits after umount');

  // An fstab line (store= option, any source).
  const fstab = join(base, 'fstab');
  writeFileSync(fstab, `strata ${mnt} fuse.strata defaults,noauto,store=${join(base, 'store')},archive=file://${join(base, 'archive')},volume=v1 0 0\n`);
  const f = spawnSync('mount', ['-T', fstab, mnt], { encoding: 'utf8', timeout: 60_000 });
  t.is(f.status, 0, f.stderr);
  t.is(readFileSync(join(mnt, 'hello'), 'utf8'), 'through fstab\n');
  pid = daemonPid(mnt);
  t.is(spawnSync('umount', [mnt]).status, 0);
  t.true(await gone(pid));

  // A bad option: refused, named, nothing mounted.
  const bad = spawnSync('mount', ['-t', 'fuse.strata', join(base, 'store'), mnt, '-o', 'stroe=/x'], { encoding: 'utf8', timeout: 60_000 });
  t.not(bad.status, 0);
  t.regex(bad.stderr, /unknown option "stroe=\/x"/);
  t.false(mountpointIsMounted(mnt));
  const ro = spawnSync('mount', ['-t', 'fuse.strata', '-o', 'ro', join(base, 'store'), mnt], { encoding: 'utf8', timeout: 60_000 });
  t.not(ro.status, 0);
  t.false(mountpointIsMounted(mnt));
});
