// `npm run bench:snapshots`: snapshots on conditions (docs/snapshots.md),
// against a real `strata archive serve` with two storage targets, on
// 127.0.0.1. ONE JSON document on stdout, progress on stderr.
//
//   copy          a volume of BENCH_SNAP_ENTRIES entries / BENCH_SNAP_MIB MiB (built by
//                 shipping records, like a primary's shipper does): time from
//                 `snapshot create` to `complete`; and the volume's mirroring throughput
//                 (a shipper writing 1 MiB records in 8 MiB batches into the same volume)
//                 during the copy, as a ratio to the same shipper before it (goal >= 0.8).
//   alert         Alertmanager webhook POST -> snapshot in the catalog as `copying`
//                 (the POST's answer carries the decision): BENCH_RUNS times (goal <= 1 s).
//   serve         `strata recover --snapshot ID` into an empty store until it serves,
//                 for volumes of BENCH_SNAP_SERVE_SIZES entries (goal: flat, like strata recover).
//
// What it is not: the "primary" of `copy` is a shipping client, not a FUSE
// mount (the FUSE side is measured by bench:mirror); the figure is the archive
// side's capacity to apply batches while a copy runs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openArchiveClient } from '../src/archive-client/open-archive.js';
import { openSnapshotClient } from '../src/archive-client/open-snapshots.js';
import type { ArchiveClient } from '../src/protocol/archive-api.js';
import { BLOCK_SIZE, ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../src/protocol/records.js';
import type { SnapshotClient, SnapshotInfo } from '../src/protocol/snapshot-api.js';

const CLI = fileURLToPath(new URL('../../bin/strata.js', import.meta.url));
const MiB = 1024 * 1024;
const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);
const log = (s: string): void => { process.stderr.write(`[bench:snapshots] ${s}\n`); };

const T: Time = [1_700_000_000, 0];
const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 4096, atime: T, mtime: T, rdev: 0 };
const fileAttrs = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: T, mtime: T, rdev: 0 });
let idn = 1;
const newId = (): string => (0x100000 + idn++).toString(16).padStart(32, '0');

class Shipper {
  seq = 0;
  constructor(private readonly c: ArchiveClient, readonly volume: string, public epoch = 1) {}
  async send(recs: NewRecord[]): Promise<void> {
    const frames = Buffer.concat(recs.map((r, i) => encodeRecord({ ...r, seq: this.seq + 1 + i } as Record)));
    this.seq = (await this.c.ship(this.volume, this.epoch, frames)).appliedSeq;
  }
}

/**
 * A tree of `entries` entries (directories of 100 files) holding `bytes` of random file data.
 * `nested`: the directories sit below 10 top directories (tier 1), so the files are at tier 3,
 * below the frontier of `strata recover --depth 2` (as bench:recover's volumes, whose top tiers are small).
 */
async function buildVolume(c: ArchiveClient, volume: string, entries: number, bytes: number, nested = false): Promise<void> {
  await c.createVolume(volume);
  const s = new Shipper(c, volume);
  const tops: string[] = [];
  if (nested) {
    const recs: NewRecord[] = [];
    for (let i = 0; i < 10; i++) {
      const id = newId();
      tops.push(id);
      recs.push({ op: 'create', parent: ROOT_ID, name: `top${i}`, id, attrs: dirAttrs, parentMtime: T });
    }
    await s.send(recs);
  }
  const dirs = Math.max(1, Math.ceil(entries / 101));
  const files = Math.max(1, entries - dirs);
  const per = Math.floor(bytes / files);
  let batch: NewRecord[] = [];
  let batchBytes = 0;
  let made = 0;
  const flush = async (): Promise<void> => {
    if (batch.length > 0) await s.send(batch);
    batch = [];
    batchBytes = 0;
  };
  for (let d = 0; d < dirs && made < files; d++) {
    const dir = newId();
    batch.push({ op: 'create', parent: nested ? tops[d % 10]! : ROOT_ID, name: `d${d}`, id: dir, attrs: dirAttrs, parentMtime: T });
    for (let f = 0; f < 100 && made < files; f++, made++) {
      const id = newId();
      batch.push({ op: 'create', parent: dir, name: `f${f}`, id, attrs: fileAttrs(per), parentMtime: T });
      if (per > 0) batch.push({ op: 'write', id, offset: 0, data: randomBytes(per) });
      batchBytes += per + 200;
      if (batchBytes > 16 * MiB || batch.length > 20_000) await flush();
    }
    if (d % 100 === 0) log(`  ${volume}: ${made}/${files} files`);
  }
  await flush();
}

/** MiB/s the shipper gets writing 1 MiB records (8 per batch) into one file of the volume, for `ms` or until `stop()`. */
async function shipFor(s: Shipper, id: string, until: () => boolean): Promise<{ mib: number; seconds: number }> {
  const started = process.hrtime.bigint();
  let n = 0;
  while (!until()) {
    const recs: NewRecord[] = [];
    for (let i = 0; i < 8; i++) recs.push({ op: 'write', id, offset: ((n + i) % 256) * MiB, data: randomBytes(MiB) });
    await s.send(recs);
    n += 8;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { mib: n, seconds };
}

interface Server { proc: ChildProcess; url: string; alerts: string; token: string; tokenFile: string }

async function startServer(dir: string): Promise<Server> {
  const token = randomBytes(16).toString('hex');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'rules.yaml'), 'conditions:\n  - name: disk-errors\n    match: { alertname: DiskErrors }\n    volume-label: volume\n    min-interval: 10m\n    keep: 10\n');
  const proc = spawn(process.execPath, [CLI, 'archive', 'serve', '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--log-level', 'warn',
    '--target', `A=${join(dir, 'tA')}`, '--target', `B=${join(dir, 'tB')}`, '--rules', join(dir, 'rules.yaml'), '--alerts-listen', '127.0.0.1:0',
    ...(process.env.BENCH_SNAP_DUTY ? ['--snapshot-duty', process.env.BENCH_SNAP_DUTY] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((res, rej) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; if (out.includes('\n')) res(out.split('\n')[0]!); });
    proc.once('exit', (code) => rej(new Error(`server exited ${code}`)));
  });
  const j = JSON.parse(line) as { listening: string; alerts: string };
  return { proc, url: `strata://${j.listening}`, alerts: `http://${j.alerts}/alerts`, token, tokenFile };
}

async function waitComplete(sc: SnapshotClient, id: string): Promise<SnapshotInfo> {
  for (;;) {
    const s = await sc.getSnapshot(id);
    if (s.state !== 'copying') return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const entries = env('BENCH_SNAP_ENTRIES', 100_000);
  const mib = env('BENCH_SNAP_MIB', 2048);
  const runs = env('BENCH_RUNS', 3);
  const serveSizes = (process.env.BENCH_SNAP_SERVE_SIZES ?? '10000,100000').split(',').map(Number);
  const only = process.env.BENCH_SNAP_ONLY?.split(',') ?? ['copy', 'alert', 'serve'];
  const base = mkdtempSync(join(resolve(process.env.BENCH_DIR ?? '/var/tmp'), 'strata-bench-snap-'));
  const doc: { [k: string]: unknown } = { benchmark: 'snapshots', settings: { entries, mib, runs, serveSizes }, started: new Date().toISOString() };
  const server = await startServer(base);
  const c = await openArchiveClient(server.url, { tokenFile: server.tokenFile, requestTimeoutMs: 600_000 });
  const sc = await openSnapshotClient(server.url, { tokenFile: server.tokenFile });
  try {
    if (only.includes('copy')) {
      log(`copy: building ${entries} entries / ${mib} MiB`);
      const t0 = Date.now();
      await buildVolume(c, 'big', entries, mib * MiB);
      log(`  built in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const s = new Shipper(c, 'big');
      s.seq = (await c.volumeState('big'))!.appliedSeq;
      const load = newId();
      await s.send([{ op: 'create', parent: ROOT_ID, name: 'load', id: load, attrs: fileAttrs(0), parentMtime: T }]);
      const windowMs = env('BENCH_SNAP_WINDOW_MS', 10_000);
      const end0 = Date.now() + windowMs;
      const before = await shipFor(s, load, () => Date.now() > end0);
      const started = Date.now();
      const snap = await sc.createSnapshot('big', { reason: 'bench' });
      let done = false;
      const doneP = waitComplete(sc, snap.id).then((x) => { done = true; return x; });
      const during = await shipFor(s, load, () => done);
      const fin = await doneP;
      const copySeconds = (Date.now() - started) / 1000;
      const rateBefore = before.mib / before.seconds;
      const rateDuring = during.mib / during.seconds;
      doc.copy = {
        entries: fin.entries, bytes: fin.sizeBytes, blocks: fin.blockCount, state: fin.state, target: fin.target,
        seconds_to_complete: Math.round(copySeconds * 100) / 100,
        mirror_mib_s_before: Math.round(rateBefore * 10) / 10, mirror_mib_s_during: Math.round(rateDuring * 10) / 10,
        mirror_ratio: Math.round((rateDuring / rateBefore) * 100) / 100, goal_ratio: 0.8, met: rateDuring / rateBefore >= 0.8,
      };
      log(`  ${JSON.stringify(doc.copy)}`);
    }
    if (only.includes('alert')) {
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) {
        const vol = `alert${i}`;
        await buildVolume(c, vol, 1000, 10 * MiB);
        const t0 = process.hrtime.bigint();
        const res = await fetch(server.alerts, {
          method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${server.token}` },
          body: JSON.stringify({ version: '4', status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'DiskErrors', volume: vol }, annotations: {} }] }),
        });
        const body = (await res.json()) as { decisions: { decision: string; snapshot: string }[] };
        const t1 = Number(process.hrtime.bigint() - t0) / 1e6;
        const row = await sc.getSnapshot(body.decisions[0]!.snapshot);
        if (row.state !== 'copying' && row.state !== 'complete') throw new Error(`alert snapshot ${row.id} is ${row.state}`);
        ms.push(t1);
        await waitComplete(sc, row.id);
      }
      ms.sort((a, b) => a - b);
      doc.alert = { ms, median_ms: Math.round(ms[Math.floor(ms.length / 2)]! * 10) / 10, goal_ms: 1000, met: ms[ms.length - 1]! <= 1000 };
      log(`  alert: ${JSON.stringify(doc.alert)}`);
    }
    if (only.includes('serve')) {
      const out: { entries: number; seconds: number[]; median_s: number; plain_recover_seconds: number[]; plain_median_s: number }[] = [];
      for (const n of serveSizes) {
        const vol = `serve${n}`;
        log(`serve: building ${n} entries`);
        await buildVolume(c, vol, n, n * 300, true);
        const snap = await sc.createSnapshot(vol);
        await waitComplete(sc, snap.id);
        const secs: number[] = [];
        const plain: number[] = [];
        const recoverOnce = (extra: string[], tag: string): number => {
          const store = join(base, `store-${n}-${tag}`);
          const mnt = join(base, `mnt-${n}-${tag}`);
          mkdirSync(mnt);
          const t0 = process.hrtime.bigint();
          const r = spawnSync(process.execPath, [CLI, 'recover', '--archive', server.url, '--token-file', server.tokenFile, '--volume', vol, '--store', store, ...extra, '--no-background-restore', mnt], { encoding: 'utf8' });
          const sec = Number(process.hrtime.bigint() - t0) / 1e9;
          spawnSync(process.execPath, [CLI, 'unmount', mnt]);
          if (r.status !== 0) throw new Error(`recover ${extra.join(' ')} failed: ${r.stderr}`);
          rmSync(store, { recursive: true, force: true });
          return Math.round(sec * 100) / 100;
        };
        for (let i = 0; i < runs; i++) {
          // The kept-head snapshots of earlier runs finish first: each run starts from the same state.
          for (const x of await sc.listSnapshots({ volume: vol })) if (x.state === 'copying') await waitComplete(sc, x.id);
          plain.push(recoverOnce([], `plain${i}`));
          for (const x of await sc.listSnapshots({ volume: vol })) if (x.state === 'copying') await waitComplete(sc, x.id);
          secs.push(recoverOnce(['--snapshot', snap.id], `snap${i}`));
        }
        secs.sort((a, b) => a - b);
        plain.sort((a, b) => a - b);
        out.push({ entries: n, seconds: secs, median_s: secs[Math.floor(secs.length / 2)]!, plain_recover_seconds: plain, plain_median_s: plain[Math.floor(plain.length / 2)]! });
        log(`  ${JSON.stringify(out[out.length - 1])}`);
      }
      doc.serve = { sizes: out, note: 'strata recover --snapshot, including the rollback on the archive (decided in one small transaction, the kept-head snapshot taken; the head is rebuilt in the background while the restore reads the snapshot on its target)' };
    }
  } finally {
    await sc.close();
    await c.close();
    server.proc.kill('SIGTERM');
    await new Promise((r) => server.proc.once('exit', r));
    if (!process.env.BENCH_KEEP) rmSync(base, { recursive: true, force: true });
  }
  doc.finished = new Date().toISOString();
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

void BLOCK_SIZE;
main().catch((err: unknown) => {
  process.stderr.write(`bench:snapshots failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
