// Archive apply cost per record (issue 16, "Archive apply"): applies batches
// of small records straight to an ArchiveStore (no worker, no network) and
// prints µs of archive time per record as JSON. The workload is what an untar
// of a source tree ships: directories a few tiers deep, and per file a
// `create`, one small `write` and the closing `setattr`; plus a metadata mix
// (rename, setxattr, unlink) over the same tree. Only `applyBatch` is timed
// (decode, transaction, pack append and fsync, COMMIT).
//
// "native" in the same run: the same frames appended to a plain file with one
// fdatasync per batch, the disk's floor for a durable batch of that size.
//
//   npm run bench:apply
//   BENCH_APPLY_FILES=5000 BENCH_APPLY_BATCH=1000 BENCH_RUNS=5 node dist/bench/apply.js
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ArchiveStore } from '../src/archive/archive-store.js';
import { ROOT_ID, encodeRecord, type Attrs, type NewRecord, type Record, type Time } from '../src/protocol/records.js';
import { envInt } from './lib/env.js';
import { median, sig, spread } from './lib/stats.js';

const FILES = envInt('BENCH_APPLY_FILES', 6000, 10);
const BATCH = envInt('BENCH_APPLY_BATCH', 1000, 1);
const RUNS = envInt('BENCH_RUNS', 5, 1);
const FILE_BYTES = envInt('BENCH_APPLY_FILE_BYTES', 2000, 1);
const DIR = process.env['BENCH_DIR'] ?? '/var/tmp';
const GOAL_US = 30;

const T: Time = [1_700_000_000, 1];
const dirAttrs: Attrs = { mode: 0o040755, uid: 0, gid: 0, size: 4096, atime: T, mtime: T, rdev: 0 };
const fileAttrs = (size: number, t: Time = T): Attrs => ({ mode: 0o100644, uid: 0, gid: 0, size, atime: t, mtime: t, rdev: 0 });
/** A distinct time per record, as a real untar's parent mtimes and file mtimes are. */
const tick = (n: number): Time => [T[0] + Math.floor(n / 1000), (n % 1000) * 1000];
const idOf = (n: number): string => n.toString(16).padStart(32, '0');

/** The untar-like workload: 4 tiers of directories (fan-out 4), files spread over the leaves. */
function untarRecords(): NewRecord[] {
  const out: NewRecord[] = [];
  let next = 0x1000;
  let level = [ROOT_ID];
  for (let tier = 1; tier <= 4; tier++) {
    const nextLevel: string[] = [];
    for (const p of level) {
      for (let i = 0; i < 4; i++) {
        const id = idOf(next++);
        out.push({ op: 'create', parent: p, name: `d${tier}-${i}`, id, attrs: dirAttrs, parentMtime: T });
        nextLevel.push(id);
      }
    }
    level = nextLevel;
  }
  for (let f = 0; f < FILES; f++) {
    const parent = level[f % level.length]!;
    const id = idOf(next++);
    const data = Buffer.alloc(FILE_BYTES, `file ${f} `);
    out.push({ op: 'create', parent, name: `f${f}.h`, id, attrs: fileAttrs(0, tick(f)), parentMtime: tick(f) });
    out.push({ op: 'write', id, offset: 0, data });
    out.push({ op: 'setattr', id, attrs: fileAttrs(FILE_BYTES, tick(f + 1)) });
  }
  return out;
}

/** Metadata over the tree the untar left: rename each file, an xattr on it, then unlink half. */
function metaRecords(untar: readonly NewRecord[]): NewRecord[] {
  const out: NewRecord[] = [];
  const files = untar.filter((r): r is Extract<NewRecord, { op: 'create' }> => r.op === 'create' && (r.attrs.mode & 0o170000) === 0o100000);
  let n = 10_000_000;
  for (const f of files) out.push({ op: 'rename', parent: f.parent, name: f.name, newParent: f.parent, newName: `${f.name}.r`, parentMtime: tick(n++), newParentMtime: tick(n) });
  for (const f of files) out.push({ op: 'setxattr', id: f.id, name: 'user.tag', value: Buffer.from('x') });
  files.forEach((f, i) => { if (i % 2 === 0) out.push({ op: 'unlink', parent: f.parent, name: `${f.name}.r`, parentMtime: tick(n++) }); });
  return out;
}

function batches(records: readonly NewRecord[], firstSeq: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < records.length; i += BATCH) {
    const frames = records.slice(i, i + BATCH).map((r, j) => encodeRecord({ ...r, seq: firstSeq + i + j } as Record));
    out.push(Buffer.concat(frames));
  }
  return out;
}

/** Wall time per record, and this process's CPU time (user + system) per record: less sensitive to other load on the machine. */
interface Phase { records: number; us_per_record: number; cpu_us_per_record: number }

function applyRun(work: string, untar: readonly NewRecord[], meta: readonly NewRecord[]): { untar: Phase; meta: Phase } {
  const store = ArchiveStore.open(join(work, 'archive'));
  try {
    const st = store.createVolume('bench');
    const phase = (records: readonly NewRecord[], first: number): Phase => {
      const bs = batches(records, first);
      let ns = 0n;
      let cpuUs = 0;
      for (const b of bs) {
        const c0 = process.cpuUsage();
        const t0 = process.hrtime.bigint();
        store.applyBatch('bench', st.epoch, b);
        ns += process.hrtime.bigint() - t0;
        const c = process.cpuUsage(c0);
        cpuUs += c.user + c.system;
      }
      return { records: records.length, us_per_record: sig(Number(ns) / 1000 / records.length), cpu_us_per_record: sig(cpuUs / records.length) };
    };
    const a = phase(untar, st.appliedSeq + 1);
    const m = phase(meta, st.appliedSeq + 1 + untar.length);
    return { untar: a, meta: m };
  } finally {
    store.close();
  }
}

/** The same frames appended to one file, one fdatasync per batch. */
function nativeRun(work: string, records: readonly NewRecord[]): Phase {
  const bs = batches(records, 1);
  const fd = openSync(join(work, 'native.log'), 'w');
  let ns = 0n;
  let cpuUs = 0;
  try {
    for (const b of bs) {
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      writeSync(fd, b);
      fdatasyncSync(fd);
      ns += process.hrtime.bigint() - t0;
      const c = process.cpuUsage(c0);
      cpuUs += c.user + c.system;
    }
  } finally {
    closeSync(fd);
  }
  return { records: records.length, us_per_record: sig(Number(ns) / 1000 / records.length), cpu_us_per_record: sig(cpuUs / records.length) };
}

function main(): void {
  const untar = untarRecords();
  const meta = metaRecords(untar);
  const runs: { untar: Phase; meta: Phase; native: Phase }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const work = mkdtempSync(join(DIR, 'strata-bench-apply-'));
    try {
      const native = nativeRun(work, untar);
      runs.push({ ...applyRun(work, untar, meta), native });
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    const r = runs[i]!;
    process.stderr.write(`bench:apply run ${i + 1}/${RUNS}: untar ${r.untar.us_per_record} µs/record (cpu ${r.untar.cpu_us_per_record}), meta ${r.meta.us_per_record} (cpu ${r.meta.cpu_us_per_record}), native ${r.native.us_per_record}\n`);
  }
  const med = (f: (r: (typeof runs)[number]) => number): number => sig(median(runs.map(f))!);
  const untarUs = med((r) => r.untar.us_per_record);
  const nativeUs = med((r) => r.native.us_per_record);
  const doc = {
    schema: 'strata-bench-apply/1',
    config: { files: FILES, file_bytes: FILE_BYTES, records_per_batch: BATCH, runs: RUNS, dir: DIR },
    results: {
      untar_us_per_record: untarUs,
      untar_cpu_us_per_record: med((r) => r.untar.cpu_us_per_record),
      meta_us_per_record: med((r) => r.meta.us_per_record),
      meta_cpu_us_per_record: med((r) => r.meta.cpu_us_per_record),
      native_us_per_record: nativeUs,
      ratio_untar_over_native: sig(untarUs / nativeUs, 3),
      spread_untar: sig(spread(runs.map((r) => r.untar.us_per_record)) ?? 0, 3),
      goal_us_per_record: GOAL_US,
      met: untarUs <= GOAL_US,
    },
    runs,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

main();
