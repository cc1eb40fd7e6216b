// Snapshots on conditions (issue 14), end to end: a real `strata archive
// serve` with two storage targets, the issue's rules file as written and its
// Alertmanager webhook endpoint; real mirrored mounts; the CLI as a user runs
// it. An Alertmanager-format POST takes a snapshot on the other target than
// the previous one; a non-matching alert takes none and is logged; the same
// alert repeated takes one; malformed bodies are refused and the server
// lives on; `snapshot verify` catches a corrupt block; the disaster: the
// primary killed, its store wiped, target A removed, `strata recover
// --condition disk-errors` serves exactly the snapshot's tree from B, later
// changes absent, the rolled-back head listed as a snapshot.
// Serial: the helpers block the test process (spawnSync).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh, strata } from '../helpers/mount.js';
import { freePort, startArchiveServer, type ArchiveServer } from '../helpers/archive.js';
import { forceUnmount, mount, readFromArchive, syncMount, type MirroredMount } from '../helpers/mirror.js';
import { manifest, newRecoveryTarget, runRecover, daemonPid, killDaemon, type Volume } from '../helpers/recover.js';
import type { AlertDecision, SnapshotInfo, TargetInfo } from '../../src/protocol/snapshot-api.js';

/** The issue's example, exactly as written, plus the condition a primary raises when its store fills up. */
export const ISSUE_RULES = `conditions:
  - name: disk-errors
    match: { alertname: DiskErrors }
    volume-label: volume
    min-interval: 10m
    keep: 10
schedules:
  - every: 24h
    keep: 7
`;

interface World {
  base: string;
  server: ArchiveServer;
  alertsUrl: string;
  tA: string;
  tB: string;
  primary: MirroredMount;
}

async function world(t: import('ava').ExecutionContext, rules = ISSUE_RULES, storeDisk?: (base: string) => string): Promise<World> {
  const base = mkdtempSync(join(tmpdir(), 'strata-snapit-'));
  const storeRoot = storeDisk ? storeDisk(base) : base;
  const tA = join(base, 'targetA');
  const tB = join(base, 'targetB');
  writeFileSync(join(base, 'rules.yaml'), rules);
  const alertsPort = await freePort();
  const server = await startArchiveServer({
    extraArgs: ['--target', `A=${tA}`, '--target', `B=${tB}`, '--rules', join(base, 'rules.yaml'), '--alerts-listen', `127.0.0.1:${alertsPort}`],
  });
  t.teardown(async () => {
    await server.stop();
    rmSync(base, { recursive: true, force: true });
  });
  const primary: MirroredMount = {
    base, store: join(storeRoot, 'primary'), mnt: join(base, 'primary-mnt'), archiveUrl: server.url, volume: 'v1', tokenFile: server.tokenFile,
    args: ['--store', join(storeRoot, 'primary'), '--archive', server.url, '--volume', 'v1', '--token-file', server.tokenFile],
  };
  mkdirSync(primary.mnt);
  t.teardown(() => forceUnmount(primary.mnt));
  mount(primary);
  return { base, server, alertsUrl: `http://127.0.0.1:${alertsPort}/alerts`, tA, tB, primary };
}

function cli(w: World, args: string[]): { status: number | null; out: string; err: string } {
  const r = strata([...args, '--archive', w.server.url, '--token-file', w.server.tokenFile]);
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function json<T>(w: World, args: string[]): T {
  const r = cli(w, [...args, '--json']);
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')}: ${r.status} ${r.out}${r.err}`);
  return JSON.parse(r.out) as T;
}

async function waitState(w: World, id: string, timeoutMs = 60_000): Promise<SnapshotInfo> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = json<SnapshotInfo>(w, ['snapshot', 'show', id]);
    if (s.state !== 'copying') return s;
    if (Date.now() > until) throw new Error(`snapshot ${id} still copying after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Alertmanager's webhook body (version 4) for some alerts. */
function webhook(alerts: { status?: 'firing' | 'resolved'; labels: { [k: string]: string }; annotations?: { [k: string]: string } }[]): string {
  return JSON.stringify({
    version: '4', groupKey: '{}:{alertname="DiskErrors"}', truncatedAlerts: 0, status: 'firing', receiver: 'strata',
    groupLabels: { alertname: alerts[0]?.labels.alertname ?? '' }, commonLabels: {}, commonAnnotations: {}, externalURL: 'http://alertmanager:9093',
    alerts: alerts.map((a) => ({
      status: a.status ?? 'firing', labels: a.labels, annotations: a.annotations ?? { summary: 'disk errors on /dev/sdb' },
      startsAt: new Date().toISOString(), endsAt: '0001-01-01T00:00:00Z', generatorURL: 'http://prometheus:9090/graph', fingerprint: 'a1b2c3d4e5f60718',
    })),
  });
}

async function post(w: World, body: string | Buffer, headers: { [k: string]: string } = {}): Promise<{ status: number; body: { received?: number; decisions?: AlertDecision[]; error?: string } }> {
  const res = await fetch(w.alertsUrl, {
    method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${w.server.token}`, ...headers },
  });
  return { status: res.status, body: (await res.json()) as { received?: number; decisions?: AlertDecision[]; error?: string } };
}

test.serial('an Alertmanager webhook matching a rule takes a snapshot on the other target; non-matching and repeated alerts take none; bad bodies are refused', async (t) => {
  const w = await world(t);
  const r = sh('mkdir -p a/b && echo one > a/b/f && head -c 300000 /dev/urandom > big && ln -s a/b/f sym && setfattr -n user.x -v y big', w.primary.mnt);
  t.is(r.status, 0, r.stderr);
  syncMount(w.primary);

  const targets = json<TargetInfo[]>(w, ['archive', 'targets']);
  t.deepEqual(targets.map((x) => [x.name, x.healthy]), [['A', true], ['B', true]]);
  t.true(targets[0]!.sharesDeviceWith.includes('B'), 'two directories on one disk are reported');

  // A manual snapshot first (from the mountpoint: after the archive holds everything).
  const c = strata(['snapshot', 'create', w.primary.mnt, '--reason', 'baseline', '--token-file', w.server.tokenFile, '--wait', '--json']);
  t.is(c.status, 0, c.stderr);
  const manual = JSON.parse(c.stdout) as SnapshotInfo;
  t.is(manual.state, 'complete');
  t.is(manual.trigger, 'manual');

  const res = await post(w, webhook([{ labels: { alertname: 'DiskErrors', volume: 'v1', severity: 'critical', instance: 'web1:9100' } }]));
  t.is(res.status, 200);
  t.is(res.body.received, 1);
  const d = res.body.decisions![0]!;
  t.is(d.decision, 'snapshot', d.detail);
  t.is(d.condition, 'disk-errors');
  const snap = await waitState(w, d.snapshot!);
  t.is(snap.state, 'complete');
  t.not(snap.target, manual.target, 'a different target than the previous snapshot');
  t.is(snap.trigger, 'alert');
  t.is(snap.condition, 'disk-errors');
  t.deepEqual(snap.labels, { alertname: 'DiskErrors', volume: 'v1', severity: 'critical', instance: 'web1:9100' });
  t.is(snap.annotations.summary, 'disk errors on /dev/sdb');

  // Not matching: no snapshot, logged. The same alert again (and twice in one body): suppressed.
  const other = await post(w, webhook([{ labels: { alertname: 'HighLoad', volume: 'v1' } }]));
  t.is(other.body.decisions![0]!.decision, 'no-match');
  const again = await post(w, webhook([{ labels: { alertname: 'DiskErrors', volume: 'v1' } }, { labels: { alertname: 'DiskErrors', volume: 'v1' } }]));
  t.deepEqual(again.body.decisions!.map((x) => x.decision), ['suppressed', 'suppressed']);
  const resolved = await post(w, webhook([{ status: 'resolved', labels: { alertname: 'DiskErrors', volume: 'v1' } }]));
  t.is(resolved.body.decisions![0]!.decision, 'resolved');
  const nolabel = await post(w, webhook([{ labels: { alertname: 'DiskErrors', instance: 'x' } }]));
  t.is(nolabel.body.decisions![0]!.decision, 'no-volume');
  const list = json<SnapshotInfo[]>(w, ['snapshot', 'list', '--volume', 'v1']);
  t.deepEqual(list.map((s) => s.id), [manual.id, snap.id]);
  for (const key of ['id', 'volume', 'target', 'trigger', 'condition', 'state', 'record', 'createdAt']) t.true(key in list[0]!, key);
  t.deepEqual(json<SnapshotInfo[]>(w, ['snapshot', 'list', '--condition', 'disk-errors']).map((s) => s.id), [snap.id]);
  const log = json<AlertDecision[]>(w, ['archive', 'alerts']);
  t.deepEqual(log.map((a) => a.decision), ['no-volume', 'resolved', 'suppressed', 'suppressed', 'no-match', 'snapshot']);
  t.is(log[4]!.alertname, 'HighLoad');

  // Bad input: refused with a clear status, nothing created, the server lives on.
  t.is((await post(w, '{not json')).status, 400);
  t.regex((await post(w, JSON.stringify({ alerts: [{ status: 'firing', labels: { alertname: 7 } }] }))).body.error!, /labels\.alertname must be a string/);
  t.is((await post(w, JSON.stringify({ version: '4' }))).status, 400);
  t.is((await post(w, Buffer.alloc(2 * 1024 * 1024, 0x20))).status, 413);
  t.is((await post(w, webhook([{ labels: { alertname: 'DiskErrors', volume: 'v1' } }]), { authorization: 'Bearer wrong' })).status, 401);
  t.is((await fetch(w.alertsUrl.replace('/alerts', '/other'), { method: 'POST', body: '{}' })).status, 404);
  t.is((await fetch(w.alertsUrl, { method: 'GET' })).status, 405);
  const raw = spawnSync('bash', ['-c', `printf 'GARBAGE\\r\\n\\r\\n' > /dev/tcp/127.0.0.1/${new URL(w.alertsUrl).port}`]);
  t.is(raw.status, 0);
  t.is(json<SnapshotInfo[]>(w, ['snapshot', 'list']).length, 2, 'nothing created by bad input');
  t.is((await post(w, webhook([{ labels: { alertname: 'Other', volume: 'v1' } }]))).status, 200, 'still serving');

  // verify: ok, then a corrupt block on the target is caught (exit 1).
  t.is(cli(w, ['snapshot', 'verify', snap.id]).status, 0);
  const tdir = snap.target === 'A' ? w.tA : w.tB;
  const pack = join(tdir, 'packs', readdirSync(join(tdir, 'packs')).sort()[0]!);
  const fd = openSync(pack, 'r+');
  writeSync(fd, Buffer.from('CORRUPT!'), 0, 8, 100);
  closeSync(fd);
  const bad = cli(w, ['snapshot', 'verify', snap.id]);
  t.is(bad.status, 1, bad.out + bad.err);
  t.regex(bad.out, /DAMAGED: \d+ blocks re-hashed, 1 bad/);

  // delete: gone from the catalog; an unknown id is a clear error.
  t.is(cli(w, ['snapshot', 'delete', manual.id]).status, 0);
  const gone = cli(w, ['snapshot', 'show', manual.id]);
  t.is(gone.status, 2);
  t.regex(gone.err, /ENOSNAPSHOT: no snapshot/);
  t.regex(cli(w, ['snapshot', 'show', 'nonsense']).err, /bad snapshot id/);
});

test.serial('a rules file with a mistake: the server refuses to start and names the line', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-snaprules-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  writeFileSync(join(base, 'rules.yaml'), 'conditions:\n  - name: disk-errors\n    match: { alertname: DiskErrors }\n    min-interval: soon\n    kepe: 3\n');
  writeFileSync(join(base, 'tok'), 'tok\n', { mode: 0o600 });
  const r = strata(['archive', 'serve', '--data', join(base, 'data'), '--listen', '127.0.0.1:0', '--token-file', join(base, 'tok'), '--rules', join(base, 'rules.yaml')]);
  t.is(r.status, 1);
  t.regex(r.stderr, /line 4, column 19: conditions\[0\]\.min-interval must be a duration/);
  t.regex(r.stderr, /line 5, column 5: conditions\[0\]: unknown key "kepe"/);
});

test.serial('disaster: primary killed, store wiped, target A removed; recover --condition disk-errors serves the snapshot from B; the rolled-back head is kept', async (t) => {
  const w = await world(t);
  const build = sh('mkdir -p docs/deep/er && for i in $(seq 1 30); do echo "file $i" > docs/deep/er/f$i; done && head -c 2000000 /dev/urandom > docs/blob && ' +
    'echo v1 > state && ln docs/blob docs/blob-link && setfattr -n user.tag -v before docs', w.primary.mnt);
  t.is(build.status, 0, build.stderr);
  syncMount(w.primary);
  const manual = JSON.parse(strata(['snapshot', 'create', w.primary.mnt, '--token-file', w.server.tokenFile, '--wait', '--json']).stdout) as SnapshotInfo;
  t.is(manual.target, 'A');
  const atSnapshot = manifest(w.primary.mnt);
  const res = await post(w, webhook([{ labels: { alertname: 'DiskErrors', volume: 'v1', severity: 'critical' } }]));
  const snap = await waitState(w, res.body.decisions![0]!.snapshot!);
  t.is(snap.state, 'complete');
  t.is(snap.target, 'B');
  // Later changes, mirrored: they must not be in the recovered tree.
  const later = sh('echo v2 > state && echo new > after-snapshot && rm docs/deep/er/f1 && setfattr -n user.tag -v after docs', w.primary.mnt);
  t.is(later.status, 0, later.stderr);
  syncMount(w.primary);
  const headBefore = manifest(w.primary.mnt);

  // The disaster.
  killDaemon(w.primary.mnt, daemonPid(w.primary.mnt));
  rmSync(w.primary.store, { recursive: true, force: true });
  rmSync(w.tA, { recursive: true, force: true });

  const v: Volume = { base: w.base, server: w.server, volume: 'v1', primary: w.primary, manifest: atSnapshot };
  const rec = newRecoveryTarget(t, v);
  // The killed primary's lease is still live for up to 10 s (issue 15): the operator, who knows it is dead, forces the fence.
  const out = runRecover(rec, ['--condition', 'disk-errors', '--force']);
  t.regex(out.out, new RegExp(`chose snapshot ${snap.id}: newest complete snapshot of v1 for condition disk-errors`));
  t.regex(out.out, /target B/);
  t.regex(out.out, /kept as snapshot s-/);
  t.regex(out.out, /serving after [\d.]+ s/);
  // With the background restore racing this walk (docs/deep/er, tier 3, once showed the time of the recovery as its
  // mtime while the background restore created its entries: a stat now waits for the restore's own times).
  t.is(manifest(rec.mnt), atSnapshot, 'the mount shows exactly the snapshot\'s tree');
  t.is(sh('cat state', rec.mnt).stdout, 'v1\n');
  t.is(sh('test -e after-snapshot', rec.mnt).status, 1, 'later changes are absent');

  const list = json<SnapshotInfo[]>(w, ['snapshot', 'list', '--volume', 'v1']);
  const byId = new Map(list.map((s) => [s.id, s]));
  t.is(byId.get(manual.id)!.state, 'lost', 'the snapshot on the removed target is lost');
  const kept = list.find((s) => s.trigger === 'rollback')!;
  t.truthy(kept, 'the rolled-back head is listed as a snapshot');
  const keptDone = await waitState(w, kept.id);
  t.is(keptDone.state, 'complete');
  t.is(keptDone.target, 'B', 'the only healthy target');

  // The recovered primary mirrors on from the snapshot, at the new epoch.
  t.is(sh('echo again > after-recovery', rec.mnt).status, 0);
  syncMount(rec);
  t.deepEqual(await readFromArchive(w.server.url, 'v1', 'after-recovery', w.server.tokenFile), Buffer.from('again\n'));
  t.is(await readFromArchive(w.server.url, 'v1', 'after-snapshot', w.server.tokenFile), null);

  // The kept head is whole: recovering it (into another store) shows the tree as it was before the rollback.
  forceUnmount(rec.mnt);
  const rec2 = newRecoveryTarget(t, v);
  runRecover(rec2, ['--snapshot', kept.id, '--no-background-restore']);
  t.is(manifest(rec2.mnt), headBefore);
});

test.serial('a primary-raised condition: the store (a small tmpfs) fills up until ENOSPC -> StrataStoreFull -> condition store-full -> a snapshot', async (t) => {
  const rules = `${ISSUE_RULES.replace('schedules:', `  - name: store-full
    match: { alertname: StrataStoreFull, source: strata-primary }
    min-interval: 10m
    keep: 3
schedules:`)}`;
  let disk = '';
  const w = await world(t, rules, (base) => {
    disk = join(base, 'disk');
    mkdirSync(disk);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', disk]);
    if (m.status !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
    return disk;
  });
  // Registered after world()'s teardowns, so it runs before them? ava runs teardowns in reverse order: this one runs first,
  // so the mount is unmounted before the tmpfs; forceUnmount is idempotent.
  t.teardown(() => {
    forceUnmount(w.primary.mnt);
    spawnSync('umount', ['-l', disk]);
  });
  const first = sh('echo hello > a && mkdir d && echo x > d/f', w.primary.mnt);
  t.is(first.status, 0, first.stderr);
  syncMount(w.primary);
  t.deepEqual(json<SnapshotInfo[]>(w, ['snapshot', 'list']), [], 'nothing before the store fills up');
  const fill = sh('dd if=/dev/urandom of=fill bs=1M count=64 2>&1', w.primary.mnt);
  t.not(fill.status, 0);
  t.regex(fill.stdout, /No space left on device/);
  let snaps: SnapshotInfo[] = [];
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    snaps = json<SnapshotInfo[]>(w, ['snapshot', 'list', '--condition', 'store-full']);
    if (snaps.length > 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.is(snaps.length, 1, 'one snapshot for the condition');
  const s = snaps[0]!;
  t.is(s.trigger, 'alert');
  t.is(s.volume, 'v1');
  t.is(s.labels.alertname, 'StrataStoreFull');
  t.is(s.labels.source, 'strata-primary');
  t.regex(s.annotations.summary ?? '', /bytes free/);
  t.is((await waitState(w, s.id)).state, 'complete');
  const log = json<AlertDecision[]>(w, ['archive', 'alerts']);
  const fromPrimary = log.filter((a) => a.source === 'primary');
  t.true(fromPrimary.some((a) => a.decision === 'snapshot' && a.condition === 'store-full'));
  // More space resolves it (logged, no snapshot). Not `rm`: on a full store a mirrored mount cannot even journal an unlink
  // (the journal shares the store's disk; see the report), so the tmpfs grows instead.
  t.is(spawnSync('mount', ['-o', 'remount,size=256m', disk]).status, 0);
  const until2 = Date.now() + 30_000;
  while (Date.now() < until2 && !json<AlertDecision[]>(w, ['archive', 'alerts']).some((a) => a.source === 'primary' && a.status === 'resolved')) {
    await new Promise((r) => setTimeout(r, 250));
  }
  t.true(json<AlertDecision[]>(w, ['archive', 'alerts']).some((a) => a.source === 'primary' && a.status === 'resolved' && a.decision === 'resolved'));
  t.is(json<SnapshotInfo[]>(w, ['snapshot', 'list', '--condition', 'store-full']).length, 1);
});
