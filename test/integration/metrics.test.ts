// `--metrics HOST:PORT` on real mounts, a real recovery and a real archive
// server: scraped with fetch, parsed as Prometheus text, and checked to move
// with the I/O the test does.
import test from 'ava';
import { createServer, type Server } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, strata, mountpointIsMounted, withMount } from '../helpers/mount.js';
import { withMirroredMount, syncMount, mirrorStatus, forceUnmount } from '../helpers/mirror.js';
import { startArchiveServer } from '../helpers/archive.js';
import { buildVolume, recover } from '../helpers/recover.js';
import { freePort, scrape, series, total } from '../helpers/prometheus.js';

const MiB = 1024 * 1024;

test('an unmirrored mount counts requests per op and thread, their latency, and the bytes read and written', async (t) => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/metrics`;
  const m = withMount(t, ['--metrics', `127.0.0.1:${port}`]);
  const before = await scrape(url);
  t.is(total(before, 'strata_daemon_state', { state: 'serving' }), 1);
  t.is(total(before, 'strata_fuse_written_bytes_total'), 0);
  // Written by the FUSE thread (direct descriptors), read back past the page cache (O_DIRECT), renamed by the core.
  const r = sh('dd if=/dev/urandom of=f bs=1M count=3 conv=fsync status=none && dd if=f of=/dev/null bs=1M iflag=direct status=none && mv f g && ls -l > /dev/null', m.mnt);
  t.is(r.status, 0, r.stderr);
  const after = await scrape(url);
  t.true(total(after, 'strata_fuse_written_bytes_total') >= 3 * MiB, 'bytes written');
  t.true(total(after, 'strata_fuse_read_bytes_total') >= 3 * MiB, 'bytes read');
  t.true(total(after, 'strata_fuse_requests_total', { op: 'write' }) >= 3);
  t.true(total(after, 'strata_fuse_requests_total', { op: 'write', thread: 'fuse' }) >= 1, 'writes answered by the FUSE thread');
  t.true(total(after, 'strata_fuse_requests_total', { op: 'rename', thread: 'js' }) >= 1, 'rename answered by the core');
  // Every request the core answered is in the latency histogram of its op.
  const renames = series(after, 'strata_fuse_request_duration_seconds_count', { op: 'rename' });
  t.is(renames.length, 1);
  t.is(renames[0]!.value, total(after, 'strata_fuse_requests_total', { op: 'rename', thread: 'js' }));
  const inf = series(after, 'strata_fuse_request_duration_seconds_bucket', { op: 'rename', le: '+Inf' });
  t.is(inf[0]?.value, renames[0]!.value);
  // The labels say which mount; an unmirrored mount has no journal figures.
  t.is(series(after, 'strata_open_handles')[0]?.labels['mountpoint'], m.mnt);
  t.is(series(after, 'strata_journal_bytes').length, 0);
  t.true(series(after, 'strata_event_loop_lateness_seconds', { window: 'p99' }).length === 1);
  t.is(strata(['unmount', m.mnt]).status, 0);
  await t.throwsAsync(fetch(url), undefined, 'the metrics end with the daemon');
});

test('a port in use refuses the mount (and the archive server) at start, with a clear error and nothing mounted', async (t) => {
  const busy: Server = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const base = mkdtempSync(join(tmpdir(), 'strata-metrics-'));
  t.teardown(() => { if (existsSync(base)) rmSync(base, { recursive: true, force: true }); });
  mkdirSync(join(base, 'mnt'));
  for (const fg of [false, true]) {
    const r = strata(['mount', '--store', join(base, 'store'), ...(fg ? ['--foreground'] : []), '--metrics', `127.0.0.1:${port}`, join(base, 'mnt')]);
    t.is(r.status, 1, `${fg ? 'foreground' : 'background'}: ${r.stdout}${r.stderr}`);
    t.regex(r.stderr, /metrics: cannot listen on 127\.0\.0\.1:\d+: the address is in use/);
    t.false(mountpointIsMounted(join(base, 'mnt')));
  }
  t.false(existsSync(join(base, 'store')), 'a refused background start leaves no store behind');
  const bad = strata(['mount', '--store', join(base, 'store'), '--metrics', 'nonsense', join(base, 'mnt')]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--metrics "nonsense": expected HOST:PORT/);
  writeFileSync(join(base, 'token'), 'a-token-for-this-test\n', { mode: 0o600 });
  const a = strata(['archive', 'serve', '--data', join(base, 'archive'), '--listen', '127.0.0.1:0', '--token-file', join(base, 'token'), '--metrics', `127.0.0.1:${port}`]);
  t.is(a.status, 1);
  t.regex(a.stderr, /metrics: cannot listen on 127\.0\.0\.1:\d+: the address is in use/);
});

test('a mirrored mount and its archive server: journal, lag, lease, ack and ship figures; records applied and snapshots on the archive', async (t) => {
  const archivePort = await freePort();
  const base = mkdtempSync(join(tmpdir(), 'strata-metrics-'));
  t.teardown(() => { if (existsSync(base)) rmSync(base, { recursive: true, force: true }); });
  mkdirSync(join(base, 'snapA'));
  const server = await startArchiveServer({ extraArgs: ['--metrics', `127.0.0.1:${archivePort}`, '--target', `A=${join(base, 'snapA')}`] });
  t.teardown(async () => { await server.stop(); });
  const archiveUrl = `http://127.0.0.1:${archivePort}/metrics`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/metrics`;
  const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile, extraArgs: ['--metrics', `127.0.0.1:${port}`] });
  syncMount(m);
  const a0 = await scrape(archiveUrl);
  const applied0 = total(a0, 'strata_archive_records_applied_total', { volume: 'vol1' });
  const p0 = await scrape(url);
  const shipped0 = total(p0, 'strata_mirror_shipped_records_total');

  const r = sh('mkdir d && for i in 1 2 3 4 5; do echo $i > d/f$i; done && dd if=/dev/urandom of=big bs=1M count=2 conv=fsync status=none', m.mnt);
  t.is(r.status, 0, r.stderr);
  syncMount(m);
  const st = mirrorStatus(m);
  const p1 = await scrape(url);
  const labels = { volume: 'vol1', mountpoint: m.mnt };
  // The figures of `strata status`, with the volume and mountpoint as labels.
  t.is(total(p1, 'strata_mirror_acked_seq', labels), st.mirror.ackedSeq);
  t.true(st.mirror.ackedSeq > 0);
  t.is(total(p1, 'strata_mirror_lag_records', labels), 0, 'drained');
  t.is(series(p1, 'strata_mirror_lag_seconds', labels).length, 1);
  t.is(series(p1, 'strata_mirror_lag_bytes', labels).length, 1);
  t.is(total(p1, 'strata_journal_limit_bytes'), st.mirror.journal.limitBytes);
  t.is(series(p1, 'strata_journal_bytes', labels).length, 1);
  t.is(total(p1, 'strata_lease_state', { state: 'held' }), 1);
  t.is(total(p1, 'strata_mirror_connection', { state: 'connected' }), 1);
  // Records shipped since the first scrape: at least the mkdir, five creates and writes, the big file's create and its writes.
  t.true(total(p1, 'strata_mirror_shipped_records_total') - shipped0 >= 12, 'records shipped');
  t.true(total(p1, 'strata_mirror_shipped_bytes_total') >= 2 * MiB);
  t.true(total(p1, 'strata_fuse_written_bytes_total') >= 2 * MiB + 10);
  t.true(total(p1, 'strata_mirror_ship_duration_seconds_count') >= 1);
  t.true(total(p1, 'strata_mirror_ack_wait_seconds_count', { result: 'acked' }) >= 1, 'the fsync waited for an ack');
  // On a mirrored async mount the FUSE thread applies writes itself and journals them (docs/mirroring.md,
  // "Journalled direct writes"): the FUSE-thread write count is the one `strata status` gives.
  const dj = (JSON.parse(strata(['status', '--json', m.mnt]).stdout) as { directJournal: { directWrites: number } }).directJournal;
  t.true(dj.directWrites > 0, 'writes were applied on the FUSE thread');
  t.is(total(p1, 'strata_fuse_requests_total', { op: 'write', thread: 'fuse' }), dj.directWrites);

  const a1 = await scrape(archiveUrl);
  t.is(total(a1, 'strata_archive_volume_applied_seq', { volume: 'vol1' }), st.mirror.ackedSeq);
  t.true(total(a1, 'strata_archive_records_applied_total', { volume: 'vol1' }) - applied0 >= 12, 'records applied');
  t.true(total(a1, 'strata_archive_applied_bytes_total', { volume: 'vol1' }) >= 2 * MiB);
  t.true(total(a1, 'strata_archive_apply_duration_seconds_count') >= 1);
  t.is(series(a1, 'strata_archive_apply_rate_records_per_second', { volume: 'vol1' }).length, 1);
  t.is(total(a1, 'strata_archive_volume_lease_state', { volume: 'vol1', state: 'active' }), 1);
  t.is(total(a1, 'strata_archive_volume_lease_state', { volume: 'vol1' }), 1, 'one state at a time');
  t.is(total(a1, 'strata_archive_snapshots', { volume: 'vol1', state: 'complete' }), 0);
  t.is(total(a1, 'strata_archive_target_healthy', { target: 'A' }), 1);

  const s = strata(['snapshot', 'create', '--archive', server.url, '--token-file', server.tokenFile, '--volume', 'vol1', '--wait']);
  t.is(s.status, 0, `${s.stdout}${s.stderr}`);
  const a2 = await scrape(archiveUrl);
  t.is(total(a2, 'strata_archive_snapshots', { volume: 'vol1', state: 'complete' }), 1);
  t.is(total(a2, 'strata_archive_snapshots', { volume: 'vol1', state: 'copying' }), 0);
});

test('strata recover --metrics: restore progress, fetch counts and their latency move with what a program reads', async (t) => {
  const v = await buildVolume(t, [
    'mkdir -p a/b/c/d && head -c 300000 /dev/urandom > a/b/c/d/file && for i in 1 2 3; do mkdir -p x$i/y && echo $i > x$i/y/z; done',
  ]);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/metrics`;
  const r = recover(t, v, ['--depth', '1', '--no-background-restore', '--metrics', `127.0.0.1:${port}`]);
  t.regex(r.output, new RegExp(`metrics at http://127\\.0\\.0\\.1:${port}/metrics`));
  const s0 = await scrape(url);
  t.is(total(s0, 'strata_restore_complete'), 0);
  t.true(total(s0, 'strata_restore_volume_entries') >= 12);
  t.true(total(s0, 'strata_restore_volume_bytes') >= 300000);
  t.is(series(s0, 'strata_restore_directories_queued').length, 1);
  t.is(series(s0, 'strata_restore_unreadable_objects').length, 1);
  t.deepEqual(series(s0, 'strata_restore_reads_through_total').map((s) => s.value), [0], 'no read needed the archive for want of room');
  const range0 = total(s0, 'strata_restore_fetches_total', { kind: 'range' });
  const dirs0 = total(s0, 'strata_restore_fetches_total', { kind: 'directory' });
  const c = sh('cat a/b/c/d/file | wc -c', r.mnt);
  t.is(c.stdout.trim(), '300000');
  const s1 = await scrape(url);
  // a, b, c and d were pending below the depth: one deep request brings them all (deepImages).
  t.true(total(s1, 'strata_restore_fetches_total', { kind: 'directory' }) - dirs0 >= 1, 'the pending directories of the path were fetched');
  t.true(total(s1, 'strata_restore_fetches_total', { kind: 'range' }) > range0);
  t.true(total(s1, 'strata_restore_fetched_bytes_total') >= 300000);
  t.true(total(s1, 'strata_restore_fetch_duration_seconds_count', { result: 'ok' }) >= 2, 'the deep directory request and the file data');
  t.true(total(s1, 'strata_restore_entries_materialised_total') > total(s0, 'strata_restore_entries_materialised_total'));
  t.is(total(s1, 'strata_restore_fetch_failures_total'), 0);
  t.is(total(s1, 'strata_daemon_state', { state: 'serving' }), 1);
});

test('metrics= as a mount option (what mount -t fuse.strata and an fstab line pass through mount.fuse.strata)', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-metrics-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  t.teardown(() => {
    forceUnmount(mnt);
    if (existsSync(base)) rmSync(base, { recursive: true, force: true });
  });
  const port = await freePort();
  // The command mount.fuse.strata runs (installing that helper into /sbin is test/integration/fstab.test.ts's business).
  const r = strata(['mount-helper', join(base, 'store'), mnt, '-o', `metrics=127.0.0.1:${port},_netdev,nofail`]);
  t.is(r.status, 0, `${r.stdout}${r.stderr}`);
  t.true(mountpointIsMounted(mnt));
  writeFileSync(join(mnt, 'f'), 'x'.repeat(10_000));
  const s = await scrape(`http://127.0.0.1:${port}/metrics`);
  t.is(series(s, 'strata_open_handles')[0]?.labels['mountpoint'], mnt);
  t.true(total(s, 'strata_fuse_written_bytes_total') >= 10_000);
});
