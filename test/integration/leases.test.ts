// Leases (issue 15) with real mounts and a real `strata archive serve`: the
// refused double mount and recover (naming the holder), --force, the fenced
// primary that turns read-only (EROFS on writes, reads still work, status
// says who fenced it), `strata release` and a recover elsewhere without
// --force, an archive restart that fires no takeover, and a network partition
// (a TCP proxy that is cut): the cut-off primary stops acknowledging fsync
// within its lease, the archive takes over, and after the partition heals the
// old primary finds itself fenced.
import test from 'ava';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { holdDirtyMapping, sh, strata } from '../helpers/mount.js';
import { mirrorStatus, syncMount } from '../helpers/mirror.js';
import { newRecoveryTarget, runRecover, verifySummary, waitRestored } from '../helpers/recover.js';
import { archiveStatus, leaseOf, primary, startProxy, startSite, waitFor, writeFsync } from '../helpers/takeover.js';

test.serial('a volume held by a live lease: a second mount and a recover are refused naming the holder; --force fences it and the old primary turns read-only', async (t) => {
  const site = await startSite(t);
  const a = primary(t, site, 'web');
  t.is(writeFsync(join(a.mnt, 'before'), 'before\n'), null);
  const row = await waitFor('an active lease', () => { const r = leaseOf(site, 'web'); return r?.state === 'active' ? r : null; }, 10_000);
  t.is(row.holder?.mountpoint, a.mnt);
  t.is(row.holderEpoch, 1);

  // A second primary of the same volume: refused, and told who holds it.
  const b = primary(t, site, 'web', { mountNow: false });
  const second = strata(['mount', ...b.args, b.mnt]);
  t.is(second.status, 1);
  t.regex(second.stderr, /is held by .*pid \d+, mount .*mnt-web-/);
  t.regex(second.stderr, new RegExp(a.mnt.replace(/[/.]/g, '\\$&')));

  // strata recover on another store: refused too, the store is left as it was.
  const r = newRecoveryTarget(t, { base: site.base, server: site.server, volume: 'web' });
  const refused = runRecover(r, [], {}, false);
  t.is(refused.status, 1, refused.out);
  t.regex(refused.out, /EHELD: volume web is held by .* --force/);
  t.is(leaseOf(site, 'web')?.epoch, 1, 'no fence happened');

  // A handle opened for writing before the fence (its writes may be applied on the FUSE thread: journalled direct writes).
  const held = openSync(join(a.mnt, 'held'), 'w');
  let heldOpen = true;
  const closeHeld = (): void => { if (heldOpen) { heldOpen = false; try { closeSync(held); } catch { /* EROFS at flush */ } } };
  t.teardown(closeHeld);
  writeSync(held, 'one\n');
  fsyncSync(held);

  // --force: fenced at epoch 2; the old primary learns it within a renewal and turns read-only.
  runRecover(r, ['--force']);
  t.is(leaseOf(site, 'web')?.epoch, 2);
  await waitFor('the old primary to turn read-only', () => mirrorStatus(a).mirror.connection === 'fenced' || (mirrorStatus(a) as unknown as { readOnly: string | null }).readOnly !== null, 10_000);
  const w = sh('echo after > after-fence', a.mnt);
  t.not(w.status, 0);
  t.regex(w.stderr, /Read-only file system/);
  t.regex(sh('mkdir d', a.mnt).stderr, /Read-only file system/);
  t.regex(sh('touch before', a.mnt).stderr, /Read-only file system/);
  t.is(sh('cat before', a.mnt).stdout, 'before\n', 'reads still work');
  t.throws(() => writeSync(held, 'two\n'), { code: 'EROFS' }, 'a handle opened before the fence writes nothing after it');
  closeHeld();
  t.is(readFileSync(join(a.mnt, 'held'), 'utf8'), 'one\n');
  const human = strata(['status', a.mnt]).stdout;
  t.regex(human, /read-only +fenced: .*fenced by .*mnt\d+.*\(forced\)/);
  t.regex(human, /lease +FENCED/);
  const log = readFileSync(join(a.store, '.strata', 'daemon.log'), 'utf8');
  t.regex(log, /"event":"fenced".*fenced by /);
  // The new primary has what was fsynced, serves and ships.
  t.is(sh('cat before', r.mnt).stdout, 'before\n');
  t.is(writeFsync(join(r.mnt, 'new'), 'new\n'), null);
  // The fenced mount still unmounts.
  t.is(strata(['unmount', a.mnt]).status, 0);
  const st = leaseOf(site, 'web')!;
  t.is(st.state, 'active');
  t.is(st.holder?.mountpoint, r.mnt);
  t.true(st.fencedBy?.force);
});

test.serial('strata release drains, gives the lease up and unmounts; a recover elsewhere then needs no --force and has every write', async (t) => {
  const site = await startSite(t);
  const a = primary(t, site, 'db', { extra: ['--mirror', 'async'] });
  // Written but never fsynced: release must drain it.
  t.is(sh('for i in $(seq 1 200); do echo "row $i" >> table; done; mkdir -p x/y && echo deep > x/y/z', a.mnt).status, 0);
  const rel = strata(['release', a.mnt]);
  t.is(rel.status, 0, rel.stderr);
  t.regex(rel.stdout, /released volume db \(epoch 1, the archive holds every record up to \d+\); unmounted/);
  t.false(existsSync(join(a.mnt, 'table')), 'unmounted');
  const row = leaseOf(site, 'db')!;
  t.is(row.state, 'released');
  t.truthy(row.releasedAt);
  t.regex(JSON.stringify(archiveStatus(site)), /"state":"released"/);
  // Failback elsewhere: no --force needed.
  const r = newRecoveryTarget(t, { base: site.base, server: site.server, volume: 'db' });
  runRecover(r, ['--lease', '2']);
  t.is(sh('wc -l < table', r.mnt).stdout.trim(), '200');
  t.is(sh('cat x/y/z', r.mnt).stdout, 'deep\n');
  await waitRestored(r.mnt);
  syncMount(r);
  const v = verifySummary(r);
  t.is(v.summary.differences, 0, v.out);
  t.is(leaseOf(site, 'db')?.state, 'active');
  // The released store, mounted again, finds itself fenced: read-only.
  t.is(strata(['mount', ...a.args, a.mnt]).status, 0);
  t.regex(sh('echo x > y', a.mnt).stderr, /Read-only file system/);
  t.is(sh('wc -l < table', a.mnt).stdout.trim(), '200');
});

// A release hands the volume over with what programs have written so far,
// including stores into a shared mapping the kernel has not written back: the
// CLI has the kernel write them back before the drain (src/cli/flush-mount.ts).
// The program still maps the file, so the mount is busy: --lazy detaches it.
test.serial('strata release --lazy hands over what a program stored through a shared mapping it has not synced', async (t) => {
  const site = await startSite(t);
  const a = primary(t, site, 'mapped', { extra: ['--mirror', 'async'] });
  const file = join(a.mnt, 'mapped');
  writeFileSync(file, Buffer.alloc(8192, 'o'));
  syncMount(a);
  const holder = await holdDirtyMapping(t, file);
  const rel = strata(['release', '--lazy', a.mnt]);
  t.is(rel.status, 0, rel.stderr);
  await holder.kill();
  const r = newRecoveryTarget(t, { base: site.base, server: site.server, volume: 'mapped' });
  runRecover(r, ['--lease', '2']);
  const want = Buffer.alloc(8192, 'o');
  want.write('NEW', 4096);
  t.true(readFileSync(join(r.mnt, 'mapped')).equals(want), 'the volume recovered elsewhere holds the program\'s stores');
});

test.serial('the archive restarted (kill -9) while primaries run: the leases come back with their next renewals and no takeover fires', async (t) => {
  const site = await startSite(t, { takeoverAfter: 3 });
  const a = primary(t, site, 'a');
  const b = primary(t, site, 'b');
  t.is(writeFsync(join(a.mnt, 'x'), 'x\n'), null);
  t.is(writeFsync(join(b.mnt, 'x'), 'x\n'), null);
  await waitFor('both leases active', () => archiveStatus(site).filter((r) => r.state === 'active').length === 2, 10_000);
  await site.server.kill();
  // Down for longer than --takeover-after and the leases.
  await sleep(5000);
  await site.server.restart();
  // The grace period starts now: both primaries renew well within it.
  const rows = await waitFor('both leases active again', () => { const r = archiveStatus(site); return r.filter((x) => x.state === 'active').length === 2 ? r : null; }, 10_000);
  t.true(rows.every((r) => r.takeover === null));
  await sleep(4000); // past --takeover-after after the restart
  t.true(archiveStatus(site).every((r) => r.state === 'active' && r.takeover === null), JSON.stringify(archiveStatus(site)));
  t.notRegex(site.server.logs(), /takeover-start/);
  t.regex(site.server.logs(), /leases-loaded/);
  // Durability is promised again.
  t.is(writeFsync(join(a.mnt, 'y'), 'y\n'), null);
  t.is(writeFsync(join(b.mnt, 'y'), 'y\n'), null);
  t.is(mirrorStatus(a).mirror.connection, 'connected');
});

test.serial('network partition: the cut-off primary stops acknowledging fsync within its lease, the archive takes over, and after the heal the old primary is fenced and read-only', async (t) => {
  // This takeover runs `strata recover` as a child (no warm standby): the
  // fallback path; the takeover test runs the standby's.
  process.env.STRATA_TAKEOVER_STANDBY = '0';
  const site = await startSite(t, { takeoverAfter: 5 }).finally(() => { delete process.env.STRATA_TAKEOVER_STANDBY; });
  const proxy = await startProxy(t, site.server.port);
  const a = primary(t, site, 'part', { url: proxy.url, lease: 2 });
  for (let i = 0; i < 20; i++) t.is(writeFsync(join(a.mnt, `acked${i}`), `acked ${i}\n`), null);
  await waitFor('an active lease', () => leaseOf(site, 'part')?.state === 'active', 10_000);

  await proxy.cut();
  const cutAt = Date.now();
  // An fsync after the cut is never acknowledged: EIO once the lease (2 s) runs out, not a hang.
  const err = writeFsync(join(a.mnt, 'after-cut'), 'after cut\n');
  const fsyncFailedAfter = (Date.now() - cutAt) / 1000;
  t.is(err, 'EIO');
  t.true(fsyncFailedAfter < 2 + 2, `fsync failed ${fsyncFailedAfter} s after the cut (lease 2 s)`);
  t.log(`fsync after the cut failed with EIO after ${fsyncFailedAfter.toFixed(2)} s`);
  t.regex(strata(['status', a.mnt]).stdout, /lease +EXPIRED/);
  t.is(sh('cat acked3', a.mnt).stdout, 'acked 3\n', 'reads go on');

  // The archive sees the lease lapse and takes over after --takeover-after.
  const row = await waitFor('the takeover', () => { const r = leaseOf(site, 'part'); return r?.state === 'taken over' && r.takeover?.state === 'serving' ? r : null; }, 30_000);
  const tookOver = (Date.now() - cutAt) / 1000;
  t.log(`taken over ${tookOver.toFixed(2)} s after the cut; ${JSON.stringify(row.takeover?.timings)}`);
  // --takeover-after counts from the archive's last renewal, which came up to one lease (2 s)
  // before the cut: the archive's own measure is checked, and the wall clock within that lease.
  // (Until 2026-12-05 this asserted 5 s from the cut: a CI run took over 4.98 s after it, with
  // the lease 5.12 s old.)
  t.true((row.takeover?.timings?.detection ?? 0) >= 5, `not before --takeover-after: the lease was ${row.takeover?.timings?.detection} s old`);
  t.true(tookOver >= 5 - 2, `not before --takeover-after less one lease: ${tookOver} s after the cut`);
  const tmnt = join(site.takeoverDir, 'part', 'mnt');
  for (let i = 0; i < 20; i++) t.is(sh(`cat acked${i}`, tmnt).stdout, `acked ${i}\n`, `acked${i} is on the takeover mount`);
  t.is(row.epoch, 2);
  // The server's log line may reach us a moment after its status says serving.
  t.truthy(await waitFor('the takeover-serving line (via strata recover)', () => /"via":"strata recover"/.test(site.server.logs()) || null, 10_000));

  // Heal: the old primary's next renewal is refused (EFENCED): read-only, and it says who fenced it.
  await proxy.heal();
  await waitFor('the old primary to learn it was fenced', () => (mirrorStatus(a) as unknown as { readOnly: string | null }).readOnly !== null, 20_000);
  t.regex(sh('echo late > late', a.mnt).stderr, /Read-only file system/);
  t.regex(strata(['status', a.mnt]).stdout, /fenced by .*takeover\/part\/mnt.*automatic takeover by the archive host/);
  t.is(sh('cat acked0', a.mnt).stdout, 'acked 0\n');
  // What it wrote after losing the lease never reached the archive, and was never called durable.
  t.false(existsSync(join(tmnt, 'late')));
  t.is(strata(['unmount', a.mnt]).status, 0);
});
