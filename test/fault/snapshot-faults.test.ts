// kill -9 of the archive server in the middle of a snapshot copy: on restart
// the copy starts again from its pinned record (mirroring went on meanwhile)
// and completes; nothing half-written was ever listed as complete, and the
// snapshot, recovered, is exactly the tree at its record.
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, strata } from '../helpers/mount.js';
import { startArchiveServer } from '../helpers/archive.js';
import { assertConverged, forceUnmount, mount, readFromArchive, syncMount, type MirroredMount } from '../helpers/mirror.js';
import { daemonPid, killDaemon, manifest, newRecoveryTarget, runRecover, verifySummary, type Volume } from '../helpers/recover.js';
import type { SnapshotInfo } from '../../src/protocol/snapshot-api.js';


/** An archive server with targets A and B in a new temp dir, and a mirrored mount of volume v1 on it; both go at teardown. */
async function mountWithTwoTargets(t: ExecutionContext, prefix: string): Promise<{ base: string; server: Awaited<ReturnType<typeof startArchiveServer>>; p: MirroredMount }> {
  const base = mkdtempSync(join(tmpdir(), prefix));
  const server = await startArchiveServer({ extraArgs: ['--target', `A=${join(base, 'tA')}`, '--target', `B=${join(base, 'tB')}`] });
  t.teardown(async () => {
    await server.stop();
    rmSync(base, { recursive: true, force: true });
  });
  const p: MirroredMount = {
    base, store: join(base, 'store'), mnt: join(base, 'mnt'), archiveUrl: server.url, volume: 'v1', tokenFile: server.tokenFile,
    args: ['--store', join(base, 'store'), '--archive', server.url, '--volume', 'v1', '--token-file', server.tokenFile],
  };
  mkdirSync(p.mnt);
  t.teardown(() => forceUnmount(p.mnt));
  mount(p);
  return { base, server, p };
}

test.serial('kill -9 of the archive during a snapshot copy: the copy resumes on restart and completes with the tree at its record', async (t) => {
  process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS = '150';
  process.env.STRATA_SNAPSHOT_PAGE_ROWS = '20';
  const { base, server, p } = await mountWithTwoTargets(t, 'strata-snapfault-');
  const b = sh('for d in $(seq 1 20); do mkdir d$d; for f in $(seq 1 10); do echo "$d/$f" > d$d/f$f; done; done && head -c 4000000 /dev/urandom > big', p.mnt);
  t.is(b.status, 0, b.stderr);
  syncMount(p);
  const atSnapshot = manifest(p.mnt);
  const arch = ['--archive', server.url, '--token-file', server.tokenFile];
  const c = strata(['snapshot', 'create', '--volume', 'v1', ...arch, '--json']);
  t.is(c.status, 0, c.stderr);
  const snap = JSON.parse(c.stdout) as SnapshotInfo;
  await new Promise((r) => setTimeout(r, 800));
  const mid = JSON.parse(strata(['snapshot', 'show', snap.id, ...arch, '--json']).stdout) as SnapshotInfo;
  t.is(mid.state, 'copying', 'the kill lands in the middle of the copy');
  await server.kill();
  // Mirroring goes on against the restarted server while the copy starts again.
  await server.restart();
  t.is(sh('echo later > later && rm -r d1', p.mnt).status, 0);
  syncMount(p);
  let s = mid;
  const until = Date.now() + 60_000;
  while (s.state === 'copying' && Date.now() < until) {
    const listed = JSON.parse(strata(['snapshot', 'list', ...arch, '--json']).stdout) as SnapshotInfo[];
    t.false(listed.some((x) => x.id === snap.id && x.state === 'complete' && x.completedAt === null), 'never complete without a completion time');
    await new Promise((r) => setTimeout(r, 200));
    s = JSON.parse(strata(['snapshot', 'show', snap.id, ...arch, '--json']).stdout) as SnapshotInfo;
  }
  t.is(s.state, 'complete');
  t.regex(server.logs(), /snapshot copy interrupted earlier: starting it again/);
  t.is(strata(['snapshot', 'verify', snap.id, ...arch]).status, 0);
  strata(['unmount', p.mnt]);
  delete process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS;
  delete process.env.STRATA_SNAPSHOT_PAGE_ROWS;
  const v: Volume = { base, server, volume: 'v1', primary: p, manifest: atSnapshot };
  const rec = newRecoveryTarget(t, v);
  runRecover(rec, ['--snapshot', snap.id]);
  t.is(manifest(rec.mnt), atSnapshot, 'the resumed snapshot is exactly the tree at its record');
});

test.serial('recover --snapshot serves lazily from the target while the head is rebuilt; kill -9 of the archive mid-rebuild: it goes on after restart, and the head is the snapshot plus the primary\'s later changes', async (t) => {
  // Small pages and a pause between steps: the rebuild lasts long enough to serve, read and kill the archive in its middle.
  process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS = '100';
  process.env.STRATA_SNAPSHOT_PAGE_ROWS = '10';
  t.teardown(() => {
    delete process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS;
    delete process.env.STRATA_SNAPSHOT_PAGE_ROWS;
  });
  const { base, server, p } = await mountWithTwoTargets(t, 'strata-snaprebuild-');
  const b = sh('for d in $(seq 1 20); do mkdir -p d$d/sub; echo "top $d" > d$d/top; for f in $(seq 1 8); do echo "$d/$f" > d$d/sub/f$f; done; done && ' +
    'head -c 3000000 /dev/urandom > big && ln d2/top d2/top-link && ln -s d3/top sym && setfattr -n user.k -v v d4', p.mnt);
  t.is(b.status, 0, b.stderr);
  syncMount(p);
  const atSnapshot = manifest(p.mnt);
  // The model: a native copy of the tree at the snapshot, changed by the same commands as the recovered mount.
  const native = join(base, 'native');
  t.is(sh(`cp -a ${p.mnt} ${native}`, base).status, 0);
  t.is(manifest(native, { mtimes: false }), manifest(p.mnt, { mtimes: false }), 'the native copy is the tree at the snapshot');
  const arch = ['--archive', server.url, '--token-file', server.tokenFile];
  const c = strata(['snapshot', 'create', '--volume', 'v1', ...arch, '--wait', '--json']);
  t.is(c.status, 0, c.stderr);
  const snap = JSON.parse(c.stdout) as SnapshotInfo;
  t.is(snap.state, 'complete');
  // Later changes, mirrored; then a collection: the snapshot's rows and big's blocks are on its target only.
  t.is(sh('rm -r d1 big && echo later > later', p.mnt).status, 0);
  syncMount(p);
  t.is(strata(['archive', 'gc', ...arch]).status, 0);
  killDaemon(p.mnt, daemonPid(p.mnt));
  rmSync(p.store, { recursive: true, force: true });

  const v: Volume = { base, server, volume: 'v1', primary: p, manifest: atSnapshot };
  const rec = newRecoveryTarget(t, v);
  runRecover(rec, ['--snapshot', snap.id, '--force', '--no-background-restore']);
  t.notRegex(server.logs(), /volume rebuilt from a snapshot/, 'serving before the head is rebuilt');
  t.true(verifySummary(rec).summary.pendingDirs > 0, 'directories below the top tiers are still pending');
  t.is(manifest(rec.mnt), atSnapshot, 'the mount shows exactly the snapshot\'s tree, read from its target');
  // Changes on the recovered mount (and the model): journaled, shipped once the head is rebuilt.
  const later = 'echo after > d2/top && rm -r d3 && mkdir newdir && echo n > newdir/f && mv d4 d4-moved && echo more >> d5/sub/f1';
  t.is(sh(later, rec.mnt).status, 0);
  t.is(sh(later, native).status, 0);
  t.notRegex(server.logs(), /volume rebuilt from a snapshot/, 'the kill lands in the middle of the rebuild');
  await server.kill();
  await server.restart();
  t.regex(server.logs(), /a rollback's rebuild was interrupted earlier: going on with it/);
  syncMount(rec, 120); // the journal drains once the rebuild is done
  for (const until = Date.now() + 10_000; !/volume rebuilt from a snapshot/.test(server.logs()) && Date.now() < until;) await new Promise((r) => setTimeout(r, 100));
  t.regex(server.logs(), /volume rebuilt from a snapshot/);
  assertConverged(t, rec, 'after the rebuild');
  t.is(manifest(rec.mnt, { mtimes: false }), manifest(native, { mtimes: false }), 'the mount equals the model');
  // Mirroring goes on after the rebuild.
  t.is(sh('echo again > again', rec.mnt).status, 0);
  t.is(sh('echo again > again', native).status, 0);
  syncMount(rec);
  t.deepEqual(await readFromArchive(server.url, 'v1', 'again', server.tokenFile), Buffer.from('again\n'));
  // The rolled-back head is kept whole.
  const kept = (JSON.parse(strata(['snapshot', 'list', '--volume', 'v1', ...arch, '--json']).stdout) as SnapshotInfo[]).find((s) => s.trigger === 'rollback');
  t.truthy(kept);
  let k = kept!;
  for (const until = Date.now() + 60_000; k.state === 'copying' && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 200));
    k = JSON.parse(strata(['snapshot', 'show', k.id, ...arch, '--json']).stdout) as SnapshotInfo;
  }
  t.is(k.state, 'complete');
  t.is(strata(['snapshot', 'verify', k.id, ...arch]).status, 0);
  // The head, recovered plainly into another store, is the snapshot plus the later changes: the model.
  t.is(strata(['unmount', rec.mnt]).status, 0);
  const rec2 = newRecoveryTarget(t, v);
  runRecover(rec2, ['--force', '--no-background-restore']);
  t.is(manifest(rec2.mnt, { mtimes: false }), manifest(native, { mtimes: false }), 'the archive\'s head equals the model');
  strata(['unmount', rec2.mnt]);
});
