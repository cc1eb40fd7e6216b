// Automatic takeover (issue 15): three primaries (three stores, mounts and
// volumes) mirror to one real `strata archive serve --takeover-dir` under a
// steady write load. One primary's daemon is killed (kill -9) and its store
// wiped: the archive host serves that volume within --takeover-after plus the
// time to serve, every file fsynced before the kill is on the takeover mount
// (I1 through a takeover), the other two keep mirroring (their lag returns to
// zero) and --on-takeover ran with the volume, mountpoint and epoch. Then
// failback: `strata release` of the takeover mount, `strata recover` on a
// fresh store, the writes of the takeover period are there, and `strata
// verify` is clean for all three volumes.
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sh, strata } from '../helpers/mount.js';
import { mirrorStatus, syncMount, type MirroredMount } from '../helpers/mirror.js';
import { newRecoveryTarget, runRecover, verifySummary, waitRestored } from '../helpers/recover.js';
import { archiveStatus, leaseOf, loadContent, pidOf, primary, startLoad, startSite, waitFor, writeFsync } from '../helpers/takeover.js';

const AFTER_S = 5;

test.serial('three primaries, one archive: kill -9 of one primary, the archive host takes its volume over, the others keep mirroring; failback after strata release', async (t) => {
  const site = await startSite(t, { takeoverAfter: AFTER_S, onTakeover: 'echo "$STRATA_VOLUME $STRATA_MOUNTPOINT $STRATA_EPOCH" >> "$HOOK_LOG"' });
  const hookLog = join(site.base, 'hook.log');
  // The hook's output file comes through the server's environment: the helper sets HOOK_LOG for it below.
  const vols = ['alpha', 'beta', 'gamma'];
  const prims: MirroredMount[] = vols.map((v) => primary(t, site, v, { lease: 2 }));
  const loads = prims.map((p, i) => startLoad(t, p.mnt, vols[i]!, site.base, 30));
  await waitFor('every load to fsync files', () => loads.every((l) => l.done().length >= 10), 60_000, 200);
  const acked = (m: MirroredMount): number => mirrorStatus(m).mirror.ackedSeq;
  const beforeB = acked(prims[1]!);
  const beforeC = acked(prims[2]!);

  // The disk of alpha's primary dies: kill -9, the stale mount cleared, the store wiped.
  const victim = prims[0]!;
  const killAt = Date.now();
  process.kill(pidOf(victim.mnt), 'SIGKILL');
  const fsynced = await loads[0]!.stop();
  strata(['unmount', victim.mnt]);
  rmSync(victim.store, { recursive: true, force: true });
  t.true(fsynced.length >= 10);

  const tmnt = join(site.takeoverDir, 'alpha', 'mnt');
  const row = await waitFor('the takeover of alpha', () => { const r = leaseOf(site, 'alpha'); return r?.takeover?.state === 'serving' ? r : null; }, 60_000, 100);
  const servingAfter = (Date.now() - killAt) / 1000;
  t.log(`kill -9 -> takeover mount serving: ${servingAfter.toFixed(2)} s (--takeover-after ${AFTER_S}, lease 2 s); ${JSON.stringify(row.takeover?.timings)}`);
  t.true(servingAfter < AFTER_S + 2 + 15, `served ${servingAfter} s after the kill`);
  t.is(row.state, 'taken over');
  t.is(row.epoch, 2);
  t.is(row.takeover?.mountpoint, tmnt);

  // I1 through a takeover: every file whose fsync returned is there, whole.
  let missing = 0;
  for (const i of fsynced) {
    let got = '';
    try {
      got = readFileSync(join(tmnt, 'load', `f${i}`), 'utf8');
    } catch {
      got = '';
    }
    if (got !== loadContent('alpha', i)) missing++;
  }
  t.is(missing, 0, `${missing} of ${fsynced.length} fsynced files are missing or wrong on the takeover mount`);
  // The hook ran with the volume, mountpoint and epoch.
  const hook = await waitFor('the --on-takeover hook', () => { try { return readFileSync(hookLog, 'utf8'); } catch { return null; } }, 10_000);
  t.is(hook.trim(), `alpha ${tmnt} 2`);

  // The others never stopped mirroring: they shipped while the takeover happened, and their lag returns to zero.
  t.true(acked(prims[1]!) > beforeB && acked(prims[2]!) > beforeC, 'beta and gamma kept shipping');
  const during = [loads[1]!.done().length, loads[2]!.done().length];
  // Writes on the takeover mount are mirrored too.
  t.is(writeFsync(join(tmnt, 'written-during-takeover'), 'takeover\n'), null);
  t.is(sh('mkdir -p takeover-dir && echo x > takeover-dir/y', tmnt).status, 0);
  await loads[1]!.stop();
  await loads[2]!.stop();
  t.true(during.every((n) => n > 10));
  for (const p of prims.slice(1)) {
    syncMount(p);
    t.is(mirrorStatus(p).mirror.lag.records, 0);
    t.is(leaseOf(site, p.volume)?.state, 'active');
  }

  // Failback: the repaired primary's recover is refused while the takeover mount holds the lease...
  const fresh = newRecoveryTarget(t, { base: site.base, server: site.server, volume: 'alpha' });
  const refused = runRecover(fresh, [], {}, false);
  t.is(refused.status, 1);
  t.regex(refused.out, /held by .*takeover\/alpha\/mnt/);
  // ...until the takeover mount is released (drained, lease given up, unmounted).
  const rel = strata(['release', tmnt]);
  t.is(rel.status, 0, rel.stderr);
  t.is(leaseOf(site, 'alpha')?.state, 'released');
  runRecover(fresh, ['--lease', '2']);
  t.is(sh('cat written-during-takeover takeover-dir/y', fresh.mnt).stdout, 'takeover\nx\n');
  t.is(sh(`cat load/f${fsynced[fsynced.length - 1]}`, fresh.mnt).stdout, loadContent('alpha', fsynced[fsynced.length - 1]!));
  await waitRestored(fresh.mnt);
  syncMount(fresh);
  const after = archiveStatus(site);
  t.deepEqual(after.map((r) => [r.volume, r.state]), [['alpha', 'active'], ['beta', 'active'], ['gamma', 'active']]);
  t.is(after[0]!.epoch, 3);

  // strata verify: clean for all three.
  const v = verifySummary(fresh);
  t.is(v.summary.differences, 0, v.out);
  for (const p of prims.slice(1)) {
    const r = verifySummary(p);
    t.is(r.summary.differences, 0, r.out);
  }
  await new Promise((r) => setTimeout(r, 500)); // the server's stderr is read when this process's event loop runs
  const logs = site.server.logs();
  for (const ev of ['lease-lapsed', 'takeover-start', 'fenced', 'takeover-serving', 'takeover-hook', 'lease-released']) t.regex(logs, new RegExp(`"event":"${ev}"`));
  // The takeover daemon was the warm standby (no Node start after the lapse).
  t.regex(logs, /"event":"takeover-serving".*"via":"standby"/);
});
