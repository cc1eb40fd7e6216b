// `npm run bench:objects`: the archive on object storage against the embedded
// default, in one run, on one machine. For each backend (a `strata archive
// serve` on 127.0.0.1 with its packs in --data, or with --objects on the real
// S3 engine of scripts/s3-engine.sh, Ceph radosgw):
//   1. mirrored write: files of random data copied into a mirrored mount, then
//      `strata sync` (every record acked by the archive); MiB/s over both;
//   2. (object only) the upload: time from the sync until a metadata point
//      covers it (the packs in the bucket, their local files gone);
//   3. background restore: `strata recover` of the volume into a new empty
//      store, then the restore status polled until complete; MiB/s from recover
//      returning to complete (on the object backend every block comes from the
//      bucket by ranged GETs).
// Ratios object / local of the medians, runs alternating which backend goes
// first. ONE JSON document on stdout, progress on stderr. Settings:
// BENCH_RUNS (2), BENCH_OBJECTS_MIB (256), BENCH_DIR (/var/tmp).
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callControl } from '../src/daemon/control.js';
import { ArchiveServerProcess } from './lib/mirror-archive.js';
import { envInt } from './lib/env.js';
import { progress, run } from './lib/proc.js';
import { median, sig, sigOrNull } from './lib/stats.js';
import { STRATA_CLI, StrataMount } from './lib/strata.js';
import { dropCaches, isMountPoint, machineFacts } from './lib/system.js';

const MiB = 1024 * 1024;
const ENGINE = fileURLToPath(new URL('../../scripts/s3-engine.sh', import.meta.url));

interface Engine { endpoint: string; bucket: string }

function engine(): Engine {
  const r = run('flock', ['/var/tmp/strata-s3-engine.lock', ENGINE, 'start'], { allowFailure: true, timeoutMs: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/s3-engine.sh start failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const env: { [k: string]: string } = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) if (env[k]) process.env[k] = env[k];
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return { endpoint: env.STRATA_S3_ENDPOINT!, bucket: env.STRATA_S3_BUCKET! };
}

function cli(args: string[], timeoutMs = 600_000): ReturnType<typeof run> {
  return run(process.execPath, [STRATA_CLI, ...args], { allowFailure: true, timeoutMs });
}

interface Restore { phase: string; bytes: { done: number; total: number }; fetch: { rangeFetches: number } }

async function waitRestore(mnt: string, maxS: number): Promise<{ seconds: number; last: Restore }> {
  const t0 = performance.now();
  for (;;) {
    const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { restore?: Restore | null };
    const s = (performance.now() - t0) / 1000;
    if (st.restore?.phase === 'complete') return { seconds: s, last: st.restore };
    if (s > maxS) throw new Error(`restore not complete after ${maxS} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function waitPoint(server: ArchiveServerProcess, seq: number, maxS: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const lines = readFileSync(server.stderrFile, 'utf8').split('\n').filter((l) => l.includes('metadata point uploaded'));
    if (lines.some((l) => ((JSON.parse(l) as { volumes: { name: string; appliedSeq: number }[] }).volumes.find((v) => v.name === 'bench')?.appliedSeq ?? -1) >= seq)) {
      return (performance.now() - t0) / 1000;
    }
    if ((performance.now() - t0) / 1000 > maxS) throw new Error(`no metadata point covering record ${seq} after ${maxS} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface RunFigures { backend: string; rep: number; position: number; load_1m: number; write_mib_s: number; upload_s: number | null; restore_mib_s: number; range_fetches: number; identical: boolean }

async function oneRun(backend: 'local' | 'object', e: Engine, base: string, src: string, bytes: number, rep: number, position: number): Promise<RunFigures> {
  const dir = mkdtempSync(join(base, `${backend}-`));
  const objects = backend === 'object'
    ? ['--objects', `s3://${e.bucket}/bench-${Date.now()}-${randomBytes(3).toString('hex')}`, '--s3-endpoint', e.endpoint, '--metadata-upload-interval', '1']
    : [];
  const server = new ArchiveServerProcess(join(dir, 'archive'), 'info', objects);
  await server.start();
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const m = new StrataMount(join(dir, 'store'), mnt, ['--archive', server.url, '--token-file', server.tokenFile, '--volume', 'bench'], false);
  try {
    m.mount();
    const load = loadavg()[0]!;
    const w0 = performance.now();
    run('cp', ['-r', src, join(mnt, 'data')], { timeoutMs: 900_000 });
    const sy = cli(['sync', '--timeout', '900', mnt]);
    if (sy.status !== 0) throw new Error(`strata sync: ${sy.stderr}`);
    const writeS = (performance.now() - w0) / 1000;
    const st = (await callControl(mnt, { cmd: 'status' }, 10_000)) as { mirror: { ackedSeq: number } };
    const uploadS = backend === 'object' ? await waitPoint(server, st.mirror.ackedSeq, 600) : null;
    m.unmount();
    const store2 = join(dir, 'store2');
    dropCaches();
    const r = cli(['recover', '--archive', server.url, '--token-file', server.tokenFile, '--volume', 'bench', '--store', store2, '--depth', '1', mnt]);
    if (r.status !== 0) throw new Error(`strata recover: ${r.stderr}${r.stdout}`);
    const w = await waitRestore(mnt, 900);
    const d = run('diff', ['-rq', src, join(mnt, 'data')], { allowFailure: true, timeoutMs: 600_000 });
    new StrataMount(store2, mnt, [], false).unmount();
    const fig: RunFigures = {
      backend, rep, position, load_1m: sig(load), write_mib_s: sig(bytes / MiB / writeS), upload_s: sigOrNull(uploadS),
      restore_mib_s: sig(w.last.bytes.total / MiB / w.seconds), range_fetches: w.last.fetch.rangeFetches, identical: d.status === 0,
    };
    progress(`${backend} run ${rep}: mirrored write ${fig.write_mib_s} MiB/s${uploadS !== null ? `, upload ${fig.upload_s} s` : ''}, background restore ${fig.restore_mib_s} MiB/s (${fig.range_fetches} range fetches), ${fig.identical ? 'identical' : 'DIFFERENT'}`);
    return fig;
  } finally {
    if (isMountPoint(mnt)) new StrataMount('', mnt, [], false).unmount();
    await server.stopAsync();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const runs = envInt('BENCH_RUNS', 2, 1);
  const totalMiB = envInt('BENCH_OBJECTS_MIB', 256, 8);
  const base = mkdtempSync(join(resolve(process.env['BENCH_DIR'] || '/var/tmp'), 'strata-bench-objects-'));
  const startedAt = new Date().toISOString();
  try {
    const t0 = performance.now();
    const e = engine();
    const engineS = (performance.now() - t0) / 1000;
    progress(`S3 engine ready after ${sig(engineS)} s (${e.endpoint})`);
    // The data: files of 1-16 MiB of random bytes, in two directories.
    const src = join(base, 'src');
    mkdirSync(join(src, 'a'), { recursive: true });
    mkdirSync(join(src, 'b'));
    let bytes = 0;
    for (let i = 0; bytes < totalMiB * MiB; i++) {
      const n = Math.min(totalMiB * MiB - bytes, (1 + (i * 7) % 16) * MiB);
      const fd = openSync(join(src, i % 2 ? 'a' : 'b', `f${i}`), 'w');
      for (let off = 0; off < n; off += MiB) writeSync(fd, randomBytes(Math.min(MiB, n - off)));
      closeSync(fd);
      bytes += n;
    }
    const all: RunFigures[] = [];
    for (let rep = 1; rep <= runs; rep++) {
      const order: ('local' | 'object')[] = rep % 2 ? ['local', 'object'] : ['object', 'local'];
      for (const [i, b] of order.entries()) all.push(await oneRun(b, e, base, src, bytes, rep, i + 1));
    }
    const med = (b: string, k: 'write_mib_s' | 'restore_mib_s'): number => median(all.filter((x) => x.backend === b).map((x) => x[k])) ?? NaN;
    const doc = {
      schema: 'strata-bench-object-store/1',
      started_at: startedAt,
      machine: machineFacts(base, ''),
      engine: { kind: 'Ceph 16 radosgw (beast) on a one-node cluster, one OSD on memstore, scripts/s3-engine.sh', endpoint: e.endpoint, ready_s: sig(engineS) },
      data: { bytes, files: 'random bytes, 1-16 MiB each, two directories' },
      runs: all,
      mirrored_write: {
        unit: 'MiB/s', description: 'cp -r of the data into a mirrored mount + strata sync (all acked by the archive server on 127.0.0.1)',
        local: sig(med('local', 'write_mib_s')), object: sig(med('object', 'write_mib_s')), ratio: sig(med('object', 'write_mib_s') / med('local', 'write_mib_s'), 3),
        ratio_definition: 'object / local (medians)',
      },
      upload_after_sync_s: sigOrNull(median(all.filter((x) => x.upload_s !== null).map((x) => x.upload_s!))),
      background_restore: {
        unit: 'MiB/s', description: 'strata recover --depth 1 into an empty store (caches dropped), bytes / time from recover returning until the restore is complete',
        local: sig(med('local', 'restore_mib_s')), object: sig(med('object', 'restore_mib_s')), ratio: sig(med('object', 'restore_mib_s') / med('local', 'restore_mib_s'), 3),
        ratio_definition: 'object / local (medians)',
      },
      all_identical: all.every((x) => x.identical),
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return doc.all_identical ? 0 : 1;
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  progress(`FATAL: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 2;
});
