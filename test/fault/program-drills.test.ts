// Disaster drills with real programs and kill -9 at a seeded random moment
// (test/helpers/program-drill.sh): sqlite3 in WAL and rollback-journal mode,
// git with core.fsync=all, rename-over with fsyncs, and in-place edits of a
// source tree still being restored. After each failure the data is checked
// against what the programs were told is durable (I1), with sqlite's and
// git's own checkers, and against a native copy of the edited tree (I3), not
// only with `strata verify`.
//
//   npx ava dist/test/fault/program-drills.test.js                       # one random seed per drill
//   STRATA_DRILL_SEED=<seed> npx ava dist/test/fault/program-drills.test.js   # replay
//   STRATA_DRILL_RUNS=<n> ...                                              # n seeds per drill
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withMirroredMount, withSnapshotMount, killPrimary, forceUnmount, mount, syncMount, assertConverged, type MirroredMount } from '../helpers/mirror.js';
import { strata, withMount } from '../helpers/mount.js';
import { startArchiveServer } from '../helpers/archive.js';
import { waitRestored } from '../helpers/recover.js';
import { startSite, primary, leaseOf, waitFor } from '../helpers/takeover.js';
import { Rng } from '../helpers/model-tree.js';
import { startPrograms, checkPrograms, applyEdits, programsThenCopy, checkEqualsCopy } from '../helpers/program-drill.js';

function seeds(): number[] {
  const fixed = process.env['STRATA_DRILL_SEED'];
  if (fixed !== undefined && fixed !== '') return [Number(fixed) >>> 0];
  const runs = Math.max(1, Number(process.env['STRATA_DRILL_RUNS'] ?? '1'));
  const first = (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
  return Array.from({ length: runs }, (_, i) => (first + i) >>> 0);
}

/** The store is lost: the (dead) daemon's stale mount cleared, the store removed. */
function loseStore(m: MirroredMount): void {
  forceUnmount(m.mnt);
  rmSync(m.store, { recursive: true, force: true });
}

/** A plain mount (no archive), in the shape the mirrored helpers take (mount again, kill). */
function unmirrored(t: ExecutionContext): MirroredMount {
  const p = withMount(t);
  return { base: p.base, store: p.store, mnt: p.mnt, archiveUrl: '', volume: '', args: ['--store', p.store] };
}

function recoverInto(t: ExecutionContext, m: MirroredMount, seed: number, extra: string[] = []): void {
  const r = strata(['recover', ...m.args, '--depth', '1', ...extra, m.mnt]);
  if (r.status !== 0) t.fail(`seed ${seed}: strata recover failed (${r.status}): ${r.stdout}${r.stderr}`);
}

/** The mount's store equals the archive once the restore is complete and everything shipped. */
async function converged(t: ExecutionContext, m: MirroredMount, label: string): Promise<void> {
  await waitRestored(m.mnt, 180_000);
  syncMount(m, 120);
  assertConverged(t, m, label);
}

// The writeback cache: the kernel holds written pages until an fsync (or close) sends them.
for (const [mode, uid, extra] of [['async', undefined, []], ['sync', undefined, []], ['async', 65534, []], ['async', undefined, ['--writeback-cache']]] as const) {
  const who = `${uid === undefined ? '' : ', the programs run by another user'}${extra.length > 0 ? `, ${extra.join(' ')}` : ''}`;
  test.serial(`disk loss under sqlite3, git and rename-over writers (${mode} mirror${who}): every acknowledged change is recovered`, async (t) => {
    for (const seed of seeds()) {
      const rng = new Rng(seed);
      const killAfterMs = rng.int(300, 4000);
      t.log(`seed ${seed}: kill -9 ${killAfterMs} ms after every program acknowledged a change (replay: STRATA_DRILL_SEED=${seed})`);
      // async to an embedded file:// archive; sync to a real `strata archive serve`.
      const server = mode === 'sync' ? await startArchiveServer() : null;
      if (server) t.teardown(() => server.stop());
      const m = withMirroredMount(t, { extraArgs: ['--mirror', mode, ...extra, ...(uid !== undefined ? ['--allow-other'] : [])], ...(server ? { archiveUrl: server.url, tokenFile: server.tokenFile } : {}) });
      const log = join(m.base, 'acked');
      if (uid !== undefined) {
        // Writes by a caller but root take the set-ID checks (no handle_killpriv_v2 on a mirrored mount).
        mkdirSync(log);
        chmodSync(m.base, 0o755);
        chmodSync(log, 0o777);
        chmodSync(m.mnt, 0o777);
      }
      const programs = startPrograms(t, m.mnt, log, undefined, uid);
      await programs.acknowledged();
      await sleep(killAfterMs);
      await killPrimary(m);
      await programs.exited();
      loseStore(m);
      // The dead primary's lease on the server has not lapsed yet: the operator fences it (--force).
      recoverInto(t, m, seed, server ? ['--force'] : []);
      checkPrograms(t, m.mnt, log, `seed ${seed}, recovered on demand`, undefined, mode);
      await converged(t, m, `seed ${seed}`);
      checkPrograms(t, m.mnt, log, `seed ${seed}, restore complete`, undefined, mode);
      forceUnmount(m.mnt);
    }
  });
}

for (const uid of [undefined, 65534]) {
  const who = uid === undefined ? '' : ' (the programs run by another user)';
  test.serial(`kill -9 during a restore while programs edit the tree it restores${who}: the restart and a second disk loss keep every acknowledged change`, async (t) => {
  for (const seed of seeds()) {
    const rng = new Rng(seed);
    const firstRunMs = rng.int(200, 2000);
    const secondRunMs = rng.int(300, 4000);
    const restart = rng.pick(['recover', 'mount'] as const);
    t.log(`seed ${seed}: programs ${firstRunMs} ms after their first acknowledgements, loss, recover (on demand only), programs and edits ${secondRunMs} ms, kill -9, restart by strata ${restart}, second loss (replay: STRATA_DRILL_SEED=${seed})`);
    const m = withMirroredMount(t, uid === undefined ? {} : { extraArgs: ['--allow-other'] });
    const log = join(m.base, 'acked');
    // A source tree, and its native copy that the acknowledged edits are applied to.
    const tarball = join(m.base, 'src.tar');
    spawnSync('tar', ['-C', '/usr/include', '-cf', tarball, 'linux', 'asm-generic']);
    const src = join(m.mnt, 'a/src');
    const nativeSrc = join(m.base, 'native-src');
    mkdirSync(src, { recursive: true });
    mkdirSync(nativeSrc);
    t.is(spawnSync('tar', ['-C', src, '-xf', tarball]).status, 0);
    t.is(spawnSync('tar', ['-C', nativeSrc, '-xf', tarball]).status, 0);
    const list = join(m.base, 'files');
    writeFileSync(list, spawnSync('find', ['.', '-type', 'f'], { cwd: nativeSrc, encoding: 'utf8' }).stdout.split('\n').filter((l) => l.length > 0).sort().join('\n') + '\n');
    if (uid !== undefined) {
      // The other user's tree: its writes during the restore take the set-ID checks (no handle_killpriv_v2 when mirrored).
      t.is(spawnSync('chown', ['-R', `${uid}:${uid}`, src]).status, 0);
      mkdirSync(log);
      chmodSync(m.base, 0o755);
      chmodSync(log, 0o777);
      chmodSync(m.mnt, 0o777);
      chmodSync(join(m.mnt, 'a'), 0o777);
    }

    let programs = startPrograms(t, m.mnt, log, undefined, uid);
    await programs.acknowledged();
    await sleep(firstRunMs);
    await killPrimary(m);
    await programs.exited();
    loseStore(m);
    // No background restore yet: the edits land in files whose data is still only in the archive.
    recoverInto(t, m, seed, ['--no-background-restore']);
    programs = startPrograms(t, m.mnt, log, { root: src, list }, uid);
    await sleep(secondRunMs);
    await killPrimary(m);
    await programs.exited();
    applyEdits(nativeSrc, log);
    t.log(`seed ${seed}: ${readFileSync(join(log, 'acked-edit'), { encoding: 'utf8', flag: 'a+' }).split('\n').filter((l) => l.length > 0).length} edits acknowledged during the restore`);
    forceUnmount(m.mnt);
    if (restart === 'recover') recoverInto(t, m, seed);
    else mount(m);
    checkPrograms(t, m.mnt, log, `seed ${seed}, after the restart`, { root: src, nativeRoot: nativeSrc });
    await converged(t, m, `seed ${seed}, after the restart`);

    // The second loss: everything acknowledged before it comes back again.
    await killPrimary(m);
    loseStore(m);
    recoverInto(t, m, seed);
    checkPrograms(t, m.mnt, log, `seed ${seed}, after the second loss`, { root: src, nativeRoot: nativeSrc });
    await converged(t, m, `seed ${seed}, after the second loss`);
    checkPrograms(t, m.mnt, log, `seed ${seed}, second restore complete`, { root: src, nativeRoot: nativeSrc });
    forceUnmount(m.mnt);
  }
});
}

for (const mode of ['async', 'sync'] as const) {
  test.serial(`the archive host takes over a primary killed under sqlite3, git and rename-over writers (${mode} mirror): every acknowledged change is there`, async (t) => {
    for (const seed of seeds()) {
      const rng = new Rng(seed);
      const killAfterMs = rng.int(300, 3500);
      t.log(`seed ${seed}: kill -9 ${killAfterMs} ms after every program acknowledged a change (replay: STRATA_DRILL_SEED=${seed})`);
      const site = await startSite(t, { takeoverAfter: 3, depth: 1 });
      const p = primary(t, site, 'drill', { lease: 2, extra: ['--mirror', mode] });
      const log = join(site.base, 'acked');
      const programs = startPrograms(t, p.mnt, log);
      await programs.acknowledged();
      await sleep(killAfterMs);
      await killPrimary(p);
      await programs.exited();
      loseStore(p);
      await waitFor('the takeover', () => leaseOf(site, 'drill')?.takeover?.state === 'serving', 60_000, 100);
      const tmnt = join(site.takeoverDir, 'drill', 'mnt');
      checkPrograms(t, tmnt, log, `seed ${seed}, on the takeover mount`, undefined, mode);
    }
  });
}

for (const mirrored of [false, true]) {
  test.serial(`checkpoint under sqlite3, git and rename-over writers, kill -9 of the daemon while they go on, restart, rollback of one database and then of the tree (${mirrored ? 'mirrored' : 'unmirrored'}): the tree is the native copy taken at checkpoint time`, async (t) => {
    for (const seed of seeds()) {
      const rng = new Rng(seed);
      const beforeMs = rng.int(800, 2000);
      const afterMs = rng.int(300, 3000);
      t.log(`seed ${seed}: programs ${beforeMs} ms, killed; checkpoint; programs ${afterMs} ms, kill -9 of the daemon (replay: STRATA_DRILL_SEED=${seed})`);
      const m: MirroredMount = mirrored ? withMirroredMount(t) : unmirrored(t);
      const log = join(m.base, 'acked');
      const native = join(m.base, 'native-a');
      await programsThenCopy(t, m.mnt, log, beforeMs, native);
      const ck = strata(['checkpoint', 'create', m.mnt, '--name', 'ck']);
      t.is(ck.status, 0, ck.stderr);
      const programs = startPrograms(t, m.mnt, log);
      await sleep(afterMs);
      await killPrimary(m);
      await programs.exited();
      forceUnmount(m.mnt);
      mount(m);
      // One file first (a partial rollback), then everything under a/.
      const one = 'b/c/dbr.sq';
      const r1 = strata(['rollback', m.mnt, '--to', 'ck', join(m.mnt, 'a', one)]);
      t.is(r1.status, 0, r1.stderr);
      t.true(readFileSync(join(m.mnt, 'a', one)).equals(readFileSync(join(native, one))), `seed ${seed}: ${one} after its rollback`);
      const r2 = strata(['rollback', m.mnt, '--to', 'ck', join(m.mnt, 'a')]);
      t.is(r2.status, 0, r2.stderr);
      checkEqualsCopy(t, m.mnt, native, `seed ${seed}, rolled back to the checkpoint`);
      if (mirrored) { syncMount(m); assertConverged(t, m, `seed ${seed}`); }
      forceUnmount(m.mnt);
    }
  });
}

test.serial('snapshot on the archive right after the programs died mid-transaction, the programs again, the disk lost: strata recover --snapshot gives the native copy taken then', async (t) => {
  for (const seed of seeds()) {
    const rng = new Rng(seed);
    const beforeMs = rng.int(800, 2000);
    const afterMs = rng.int(300, 3000);
    t.log(`seed ${seed}: programs ${beforeMs} ms, killed; snapshot; programs ${afterMs} ms, kill -9 of the primary, disk lost (replay: STRATA_DRILL_SEED=${seed})`);
    const { m, snapshot } = await withSnapshotMount(t);
    const log = join(m.base, 'acked');
    const native = join(m.base, 'native-a');
    await programsThenCopy(t, m.mnt, log, beforeMs, native);
    const snap = { id: snapshot() };
    const programs = startPrograms(t, m.mnt, log);
    await sleep(afterMs);
    await killPrimary(m);
    await programs.exited();
    loseStore(m);
    recoverInto(t, m, seed, ['--force', '--snapshot', snap.id]);
    checkEqualsCopy(t, m.mnt, native, `seed ${seed}, recovered from the snapshot`);
    await converged(t, m, `seed ${seed}, recovered from the snapshot`);
    forceUnmount(m.mnt);
  }
});
