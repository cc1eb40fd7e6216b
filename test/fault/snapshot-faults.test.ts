// kill -9 of the archive server in the middle of a snapshot copy: on restart
// the copy starts again from its pinned record (mirroring went on meanwhile)
// and completes; nothing half-written was ever listed as complete, and the
// snapshot, recovered, is exactly the tree at its record.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, strata } from '../helpers/mount.js';
import { startArchiveServer } from '../helpers/archive.js';
import { forceUnmount, mount, syncMount, type MirroredMount } from '../helpers/mirror.js';
import { manifest, newRecoveryTarget, runRecover, type Volume } from '../helpers/recover.js';
import type { SnapshotInfo } from '../../src/protocol/snapshot-api.js';

test.serial('kill -9 of the archive during a snapshot copy: the copy resumes on restart and completes with the tree at its record', async (t) => {
  process.env.STRATA_SNAPSHOT_STEP_PAUSE_MS = '150';
  process.env.STRATA_SNAPSHOT_PAGE_ROWS = '20';
  const base = mkdtempSync(join(tmpdir(), 'strata-snapfault-'));
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
