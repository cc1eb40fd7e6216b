// The archive's side of the restore read path (issue 16, "Restore read
// path"): what serving file data costs the archive per MiB when it re-hashes
// every block (readRange, as the restore read before) and when it sends pack
// bytes with their digests for the receiver to check (readBlocks), plus what
// the receiver's check (verifiedRange: sha256 on the calling thread) costs it.
// Straight on an ArchiveStore (no worker, no network); page cache warm (the
// pack is read once first), so this is CPU, not disk.
//
// Native in the same run: reading the pack file itself, 1 MiB at a time.
//
//   npm run compile && node dist/bench/read-path.js
//   BENCH_READ_MIB=256 BENCH_RUNS=5 node dist/bench/read-path.js
import { closeSync, mkdtempSync, openSync, readdirSync, readSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ArchiveStore } from '../src/archive/archive-store.js';
import { verifiedRange } from '../src/protocol/images.js';
import { BLOCK_SIZE, ROOT_ID, encodeRecord, type Attrs, type Time } from '../src/protocol/records.js';
import { envInt } from './lib/env.js';
import { median, sig, spread } from './lib/stats.js';

const MIB = 1024 * 1024;
const SIZE_MIB = envInt('BENCH_READ_MIB', 128, 1);
const RUNS = envInt('BENCH_RUNS', 5, 1);
const DIR = process.env['BENCH_DIR'] ?? '/var/tmp';
const T: Time = [1_700_000_000, 0];
const attrs = (size: number): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: T, mtime: T, rdev: 0 });
const ID = '0'.repeat(31) + 'f';

function cpuMs<T>(f: () => T): { value: T; wallMs: number; cpuMs: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = f();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { value, wallMs, cpuMs: (c.user + c.system) / 1000 };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(DIR, 'strata-bench-read-'));
  const store = ArchiveStore.open(join(work, 'archive'));
  try {
    const st = store.createVolume('bench');
    let seq = st.appliedSeq + 1;
    store.applyBatch('bench', st.epoch, encodeRecord({ op: 'create', seq: seq++, parent: ROOT_ID, name: 'data', id: ID, attrs: attrs(0), parentMtime: T }));
    for (let done = 0; done < SIZE_MIB; done += 4) {
      const frames = [];
      for (let i = 0; i < 4 && done + i < SIZE_MIB; i++) frames.push(encodeRecord({ op: 'write', seq: seq++, id: ID, offset: (done + i) * MIB, data: randomBytes(MIB) }));
      store.applyBatch('bench', st.epoch, Buffer.concat(frames));
    }
    const packs = join(work, 'archive', 'packs');
    const readPacks = (): number => {
      let n = 0;
      const buf = Buffer.allocUnsafe(MIB);
      for (const f of readdirSync(packs)) {
        const fd = openSync(join(packs, f), 'r');
        for (let got = readSync(fd, buf, 0, MIB, null); got > 0; got = readSync(fd, buf, 0, MIB, null)) n += got;
        closeSync(fd);
      }
      return n;
    };
    readPacks(); // warm the page cache
    const runs: { native_ms_per_mib: number; read_range_cpu_ms_per_mib: number; read_blocks_cpu_ms_per_mib: number; verify_wall_ms_per_mib: number; verify_cpu_ms_per_mib: number }[] = [];
    for (let r = 0; r < RUNS; r++) {
      const native = cpuMs(readPacks);
      const range = cpuMs(() => { for (let m = 0; m < SIZE_MIB; m++) store.readRange('bench', ID, m * MIB, MIB); });
      const raws = cpuMs(() => { const out = []; for (let m = 0; m < SIZE_MIB; m++) out.push(store.readBlocks('bench', ID, m * (MIB / BLOCK_SIZE), MIB / BLOCK_SIZE)); return out; });
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let m = 0; m < SIZE_MIB; m++) await verifiedRange(raws.value[m]!, m * MIB, MIB);
      const vWall = Number(process.hrtime.bigint() - t0) / 1e6;
      const vc = process.cpuUsage(c0);
      runs.push({
        native_ms_per_mib: sig(native.wallMs / SIZE_MIB),
        read_range_cpu_ms_per_mib: sig(range.cpuMs / SIZE_MIB),
        read_blocks_cpu_ms_per_mib: sig(raws.cpuMs / SIZE_MIB),
        verify_wall_ms_per_mib: sig(vWall / SIZE_MIB),
        verify_cpu_ms_per_mib: sig((vc.user + vc.system) / 1000 / SIZE_MIB),
      });
      process.stderr.write(`bench:read-path run ${r + 1}/${RUNS}: ${JSON.stringify(runs[r])}\n`);
    }
    const med = (k: keyof (typeof runs)[number]): number => sig(median(runs.map((x) => x[k]))!);
    const rr = med('read_range_cpu_ms_per_mib');
    const rb = med('read_blocks_cpu_ms_per_mib');
    const doc = {
      schema: 'strata-bench-read-path/1',
      config: { mib: SIZE_MIB, runs: RUNS, dir: DIR },
      results: {
        archive_cpu_ms_per_mib_read_range: rr,
        archive_cpu_ms_per_mib_read_blocks: rb,
        archive_ratio_read_blocks_over_read_range: sig(rb / rr, 3),
        receiver_verify_wall_ms_per_mib: med('verify_wall_ms_per_mib'),
        receiver_verify_cpu_ms_per_mib: med('verify_cpu_ms_per_mib'),
        native_pack_read_ms_per_mib: med('native_ms_per_mib'),
        ratio_read_blocks_over_native: sig(rb / med('native_ms_per_mib'), 3),
        spread_read_range: sig(spread(runs.map((x) => x.read_range_cpu_ms_per_mib)) ?? 0, 3),
      },
      runs,
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } finally {
    store.close();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
