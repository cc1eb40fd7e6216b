// The archive node's disk wiped, with real processes: a primary mirrors to
// `strata archive serve --objects` (a real radosgw, scripts/s3-engine.sh);
// a volume snapshot triggers a metadata point (the interval is an hour); once
// a point covers everything the primary has had acked, the
// archive server is killed (-9) and its data directory deleted; the same
// command on the empty directory rebuilds the database from the bucket, the
// primary reconnects, `strata verify` is clean, and mirroring goes on.
// And the object store unreachable under a recovery: the primary's reads of
// data in the bucket get EIO at its fetch timeout, its writes are still acked,
// and everything reads again once the gateway is back.
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sh, strata } from '../helpers/mount.js';
import { readFileSync } from 'node:fs';
import { assertConverged, mirrorStatus, syncMount, withMirroredMount } from '../helpers/mirror.js';
import { startArchiveServer, type ArchiveServer } from '../helpers/archive.js';
import { gateway, objectsConfigFor, s3Engine } from '../helpers/s3-engine.js';
import { newRecoveryTarget, runRecover } from '../helpers/recover.js';

const engine = s3Engine();

interface Point { why: string; key: string; volumes: { name: string; appliedSeq: number }[] }

function points(server: ArchiveServer): Point[] {
  const out: Point[] = [];
  for (const line of server.logs().split('\n')) {
    if (!line.includes('metadata point uploaded')) continue;
    try {
      out.push(JSON.parse(line) as Point);
    } catch { /* a partial line */ }
  }
  return out;
}

/** Waits for a metadata point (for `why`) in which `volume` has at least `seq` applied. */
async function waitPoint(server: ArchiveServer, volume: string, seq: number, why: string, timeoutMs = 60_000): Promise<Point> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(200)) {
    const p = points(server).find((x) => x.why === why && (x.volumes.find((v) => v.name === volume)?.appliedSeq ?? -1) >= seq);
    if (p) return p;
  }
  throw new Error(`no metadata point with ${volume} at ${seq} within ${timeoutMs} ms; logs: ${server.logs().slice(-3000)}`);
}

if (typeof engine === 'string') {
  console.error(`archive-objects-wipe: skipped: ${engine}`);
  test.skip(`archive disk wipe on object storage skipped: ${engine}`, () => {});
} else {
  test('archive disk wiped: the same --objects on an empty --data rebuilds from the bucket; verify of the primary is clean; mirroring goes on', async (t) => {
    const config = objectsConfigFor(engine);
    const targets = mkdtempSync(join(tmpdir(), 'strata-objects-targets-')); // snapshot targets: other disks, they survive
    t.teardown(() => rmSync(targets, { recursive: true, force: true }));
    const server = await startArchiveServer({ extraArgs: [
      '--objects', config.url, '--s3-endpoint', config.endpoint!, '--metadata-upload-interval', '3600',
      '--target', `A=${join(targets, 'A')}`, '--target', `B=${join(targets, 'B')}`,
    ] });
    t.teardown(() => server.stop());
    const snapshot = (): void => {
      const r = strata(['snapshot', 'create', '--volume', m.volume, '--archive', server.url, '--token-file', server.tokenFile, '--json']);
      t.is(r.status, 0, r.stderr);
    };
    const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
    const w = sh([
      'set -e', 'mkdir -p a/b/c d',
      'for i in $(seq 1 30); do head -c $((i * 7919)) /dev/urandom > a/b/f$i; done',
      'head -c 3000000 /dev/urandom > d/big', 'ln a/b/f1 d/hard', 'ln -s ../a/b/f2 d/sym',
      'setfattr -n user.k -v v a/b/f3', 'mv a/b/f4 a/b/c/moved', 'rm a/b/f5', 'truncate -s 100000 a/b/f6',
    ].join('\n'), m.mnt);
    t.is(w.status, 0, w.stderr);
    syncMount(m);
    const acked = mirrorStatus(m).mirror.ackedSeq;
    snapshot(); // a metadata point follows every volume snapshot
    const point = await waitPoint(server, m.volume, acked, 'snapshot');
    t.log(`metadata point ${point.key} (${point.why}) covers ${m.volume} up to record ${acked}`);
    const packsLeft = readdirSync(join(server.dataDir, 'packs'));
    t.log(`packs still on the archive disk: ${JSON.stringify(packsLeft)}`);

    await server.kill();
    rmSync(server.dataDir, { recursive: true, force: true }); // the archive node's disk is gone
    t.false(existsSync(server.dataDir));
    await server.restart(); // same command, same port, an empty --data
    t.regex(server.logs(), /metadata database rebuilt from the bucket/);
    assertConverged(t, m, 'against the rebuilt archive');

    // Mirroring goes on against the rebuilt archive; its new packs go to the bucket too.
    t.is(sh('head -c 500000 /dev/urandom > after && echo more >> a/b/f7', m.mnt).status, 0);
    syncMount(m);
    assertConverged(t, m, 'after new writes');
    snapshot();
    const later = await waitPoint(server, m.volume, mirrorStatus(m).mirror.ackedSeq, 'snapshot');
    t.not(later.key, point.key);
  });

  test('the object store unreachable during a recovery: reads of data in the bucket get EIO at the fetch timeout, writes are acked, all reads again when it is back', async (t) => {
    gateway('start-rgw', 'c');
    t.teardown(() => gateway('start-rgw', 'c'));
    const config = objectsConfigFor(engine, { endpoint: engine.faultEndpointC });
    const server = await startArchiveServer({ extraArgs: ['--objects', config.url, '--s3-endpoint', config.endpoint!, '--metadata-upload-interval', '1', '--fetch-timeout', '2'] });
    t.teardown(() => server.stop());
    const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
    t.is(sh('mkdir d && head -c 2000000 /dev/urandom > d/big && echo small > d/small', m.mnt).status, 0);
    const want = readFileSync(join(m.mnt, 'd', 'big'));
    syncMount(m);
    await waitPoint(server, m.volume, mirrorStatus(m).mirror.ackedSeq, 'interval');
    t.deepEqual(readdirSync(join(server.dataDir, 'packs')), [], 'every pack is in the bucket');
    t.is(strata(['unmount', m.mnt]).status, 0);
    await server.restart(); // a server with an empty window cache (the writes' read-modify-writes may have filled it)

    gateway('stop-rgw', 'c');
    const r = newRecoveryTarget(t, { base: m.base, server, volume: m.volume });
    runRecover(r, ['--depth', '2', '--no-background-restore', '--fetch-timeout', '4']);
    const started = Date.now();
    const cat = sh('cat d/big > /dev/null', r.mnt);
    t.log(`cat of a file in the bucket with the gateway down: exit ${cat.status} after ${Date.now() - started} ms (primary fetch timeout 4 s, archive 2 s): ${cat.stderr.trim()}`);
    t.not(cat.status, 0);
    t.regex(cat.stderr, /Input\/output error/);
    t.is(sh('echo during > during.txt', r.mnt).status, 0);
    syncMount(r); // acked: the archive's local pack takes it

    gateway('start-rgw', 'c');
    t.deepEqual(readFileSync(join(r.mnt, 'd', 'big')), want, 'reads recover');
    t.is(readFileSync(join(r.mnt, 'd', 'small'), 'utf8'), 'small\n');
    assertConverged(t, r, 'after the gateway came back');
  });
}
