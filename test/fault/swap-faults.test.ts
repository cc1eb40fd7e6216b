// kill -9 of the daemon during a swap (issue 13): during prepare (a rerun
// resumes it), during the hold, and at every step of the exchange (a restart
// with the same arguments serves exactly one of the two stores, whole). The
// daemon kills itself at a crash point (src/swap/crash-points.ts,
// STRATA_CRASH_AT), the pattern of src/restore/crash-points.ts.
import test from 'ava';
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { sh, strata, withMount, mountpointIsMounted } from '../helpers/mount.js';
import { assertConverged, mount, syncMount } from '../helpers/mirror.js';
import { manifest } from '../helpers/recover.js';
import { commit, prepare, snapshotNow, swapStatus, withSwapMount } from '../helpers/swap.js';
import { swapRecordPath } from '../../src/swap/record.js';
import type { SwapCrashPoint } from '../../src/swap/crash-points.js';

const SOURCE_TREE = 'mkdir -p a/b c && for i in $(seq 1 12); do head -c $((i * 9000)) /dev/urandom > a/f$i; done && ln a/f1 c/l1 && ln -s a/f2 s && echo new > top';

/** A source volume (mirrored mount) and its head record. */
function source(t: Parameters<typeof withSwapMount>[0]): { archiveArgs: string[]; record: number; picture: string } {
  const src = withSwapMount(t);
  const r = sh(SOURCE_TREE, src.mnt);
  if (r.status !== 0) throw new Error(r.stderr);
  syncMount(src);
  const record = (JSON.parse(strata(['status', '--json', src.mnt]).stdout) as { mirror: { ackedSeq: number } }).mirror.ackedSeq;
  return { archiveArgs: ['--archive', src.archiveUrl, '--volume', src.volume], record, picture: manifest(src.mnt) };
}

/** After a kill -9: the stale mount cleared, the daemon started again with the same arguments (no crash point). */
function restart(store: string, mnt: string): void {
  for (let i = 0; i < 100 && mountpointIsMounted(mnt) && strata(['status', mnt]).status === 0; i++) sh('sleep 0.05', '/');
  strata(['unmount', mnt]);
  const r = strata(['mount', '--store', store, mnt]);
  if (r.status !== 0) throw new Error(`remount failed: ${r.stderr}`);
}

const EXCHANGE_POINTS: [SwapCrashPoint, 'old' | 'new'][] = [
  ['swap-held', 'old'], ['swap-record-temp', 'old'], ['swap-recorded', 'new'], ['swap-switched', 'new'],
];

for (const [point, serves] of EXCHANGE_POINTS) {
  test(`kill -9 at ${point}: the restart serves the ${serves} store, whole`, (t) => {
    const src = source(t);
    const m = withMount(t, [], { STRATA_CRASH_AT: point });
    sh('mkdir -p a && echo old > a/f1 && echo old > top && echo only-old > gone', m.mnt);
    const old = manifest(m.mnt);
    const spare = join(m.base, 'spare');
    mkdirSync(spare);
    const p = prepare(m.mnt, spare, `archive:${src.record}`, src.archiveArgs);
    t.is(p.status, 0, p.out);
    const c = commit(m.mnt);
    t.not(c.status, 0, 'the daemon died during the commit');
    restart(m.store, m.mnt);
    t.is(manifest(m.mnt), serves === 'old' ? old : src.picture);
    t.false(existsSync(`${swapRecordPath(m.store)}.tmp`), 'no temporary record left');
    const st = swapStatus(m.mnt);
    t.is(st.live, serves === 'old' ? m.store : spare);
    if (serves === 'old') {
      // The spare is still prepared: the commit can simply be run again.
      t.is(st.prepare?.state, 'ready');
      t.is(commit(m.mnt).status, 0);
      t.is(manifest(m.mnt), src.picture);
    }
    // Either way the other tree is one exchange away.
    t.is(commit(m.mnt, [], 'back').status, 0);
    t.is(manifest(m.mnt), old);
  });
}

test('kill -9 during prepare: the rerun resumes (keeps what is in place) and the result is exact', (t) => {
  const src = source(t);
  const m = withMount(t, [], { STRATA_CRASH_AT: 'swap-prepare-object:6' });
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, `archive:${src.record}`, src.archiveArgs);
  t.not(p.status, 0);
  t.regex(p.out, /stopped answering/);
  restart(m.store, m.mnt);
  t.is(swapStatus(m.mnt).prepare?.state, 'interrupted');
  const again = prepare(m.mnt, spare, `archive:${src.record}`, src.archiveArgs);
  t.is(again.status, 0, again.out);
  t.regex(again.out, /resuming/);
  const st = swapStatus(m.mnt).prepare!;
  t.true(st.progress.kept >= 5, `objects already in place were kept (${st.progress.kept})`);
  t.is(commit(m.mnt).status, 0);
  t.is(manifest(m.mnt), src.picture);
});

// swap-recorded: decided, the archive still at the pre-swap head; swap-archive-moved: the archive's head
// rolled back to the source snapshot, the new store's mirror not open yet. Either way the restart compares
// the new store with the head and goes on mirroring at the same epoch (not fenced: a write after it converges).
for (const point of ['swap-recorded', 'swap-archive-moved'] as SwapCrashPoint[]) test(`kill -9 at ${point} on a mirrored mount: the restart serves the new store and re-converges the archive with it`, (t) => {
  const m = withSwapMount(t);
  sh('mkdir d && echo good > d/f && echo keep > k', m.mnt);
  syncMount(m);
  const snap = snapshotNow(m);
  const good = manifest(m.mnt);
  sh('echo bad > d/f && rm k && echo junk > j', m.mnt);
  syncMount(m);
  // Restart the daemon with the crash point.
  t.is(strata(['unmount', m.mnt]).status, 0);
  const r = strata(['mount', ...m.args, m.mnt], { STRATA_CRASH_AT: point });
  t.is(r.status, 0, r.stderr);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  t.is(prepare(m.mnt, spare, `snapshot:${snap.id}`).status, 0);
  t.not(commit(m.mnt).status, 0);
  for (let i = 0; i < 100 && strata(['status', m.mnt]).status === 0; i++) sh('sleep 0.05', '/');
  strata(['unmount', m.mnt]);
  mount(m);
  t.is(manifest(m.mnt), good);
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after the restart');
  t.is(sh('echo after > after', m.mnt).status, 0, 'the restarted mount is writable (not fenced)');
  syncMount(m);
  assertConverged(t, { ...m, store: spare }, 'after a write following the restart');
});
