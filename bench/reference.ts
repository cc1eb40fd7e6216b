// `npm run bench:reference`: how close strata comes to a C FUSE passthrough on
// this machine, in the same run. Sides: a native directory, a strata mount, and
// (when PASSTHROUGH_HP names a binary) libfuse's C++ example passthrough_hp
// over its own source directory. passthrough_hp is not part of strata: build it
// yourself from libfuse's example/passthrough_hp.cc against libfuse3 (it needs
// `apt-get install libfuse3-dev`; as root it mounts without fusermount3).
//
// Figures per side (medians of BENCH_RUNS, sides alternating order):
//   untar_seconds      tar -xf of the source-tree tarball (BENCH_TAR_SOURCE)
//   create_10k_seconds the create_10k worker (10 dirs, 10,000 files of 100 bytes)
//   seq_read_mib_s     fio 1 MiB sequential read of a 1 GiB file after drop_caches
// and each FUSE side's ratio to native. Prints one JSON document on stdout.
//
// The point: the targets for small files (create >= 0.35x, untar <= 3x)
// are ratios to native; a C passthrough shows what the FUSE protocol itself
// costs here (per round trip, and per file in round trips).
import { mkdirSync, mkdtempSync, existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { filesWorker } from './benchmarks.js';
import { envInt } from './lib/env.js';
import { runFio } from './lib/fio.js';
import { progress, removeWorkDir, run } from './lib/proc.js';
import { median, ratioOf, sigOrNull } from './lib/stats.js';
import { StrataMount } from './lib/strata.js';
import { dropCaches, syncAll, isMountPoint, readToNull } from './lib/system.js';
import { buildTarball } from './lib/tarball.js';

interface Side {
  name: 'native' | 'strata' | 'strata_writeback' | 'passthrough_hp';
  dir: string;
}

interface Figures {
  untar_seconds: number[];
  create_10k_seconds: number[];
  seq_read_mib_s: number[];
}

function main(): number {
  const runs = envInt('BENCH_RUNS', 3, 1);
  const seqMiB = envInt('BENCH_SEQ_SIZE_MIB', 1024, 1);
  const passthrough = process.env['PASSTHROUGH_HP'] ? resolve(process.env['PASSTHROUGH_HP']) : null;
  if (passthrough !== null && !existsSync(passthrough)) throw new Error(`PASSTHROUGH_HP ${passthrough} does not exist`);
  const work = mkdtempSync(join(resolve(process.env['BENCH_DIR'] || '/var/tmp'), 'strata-ref-'));
  const strata = new StrataMount(join(work, 'store'), join(work, 'mnt'), [], false);
  const writeback = new StrataMount(join(work, 'store-wb'), join(work, 'mnt-wb'), ['--writeback-cache'], false);
  const phMnt = join(work, 'ph-mnt');
  const sides: Side[] = [
    { name: 'native', dir: join(work, 'native') }, { name: 'strata', dir: strata.mountpoint }, { name: 'strata_writeback', dir: writeback.mountpoint },
  ];
  if (passthrough) sides.push({ name: 'passthrough_hp', dir: phMnt });
  const figures = new Map<string, Figures>(sides.map((s) => [s.name, { untar_seconds: [], create_10k_seconds: [], seq_read_mib_s: [] }]));
  try {
    for (const d of [join(work, 'native'), strata.mountpoint, writeback.mountpoint, join(work, 'ph-src'), phMnt]) mkdirSync(d);
    const tarball = buildTarball(resolve(process.env['BENCH_TAR_SOURCE'] || '/usr/include'), work);
    strata.mount();
    writeback.mount();
    if (passthrough) run(passthrough, [join(work, 'ph-src'), phMnt], { timeoutMs: 30_000 });
    if (passthrough && !isMountPoint(phMnt)) throw new Error('passthrough_hp did not mount');
    for (const side of sides) {
      run('fio', ['--name=prep', `--filename=${join(side.dir, 'seq')}`, '--rw=write', '--bs=1M', `--size=${seqMiB}m`, '--ioengine=psync', '--end_fsync=1', '--fallocate=none', '--output-format=terse'], { timeoutMs: 600_000 });
    }
    for (let rep = 1; rep <= runs; rep++) {
      const order = rep % 2 === 1 ? sides : [...sides].reverse();
      for (const side of order) {
        const f = figures.get(side.name)!;
        const untarDir = join(side.dir, `u${rep}`);
        const createDir = join(side.dir, `c${rep}`);
        mkdirSync(untarDir);
        mkdirSync(createDir);
        syncAll();
        readToNull(tarball.path);
        f.untar_seconds.push(run('tar', ['-xf', tarball.path, '-C', untarDir], { timeoutMs: 900_000 }).seconds);
        syncAll();
        const created = filesWorker(['create', createDir, '10000', '10', '100']).seconds ?? NaN;
        f.create_10k_seconds.push(created);
        dropCaches();
        const fio = runFio({ name: 'seqread', filename: join(side.dir, 'seq'), rw: 'read', bs: '1M', size: `${seqMiB}m` });
        f.seq_read_mib_s.push(fio.bwMiBs);
        progress(`run ${rep}/${runs} ${side.name}: untar ${f.untar_seconds.at(-1)?.toFixed(3)} s, create_10k ${created.toFixed(3)} s, seq read ${fio.bwMiBs.toFixed(0)} MiB/s`);
      }
    }
  } finally {
    if (passthrough && isMountPoint(phMnt)) run('umount', [phMnt], { allowFailure: true, timeoutMs: 60_000 });
    strata.unmount();
    writeback.unmount();
    if (!removeWorkDir(work)) progress(`left ${work} (still mounted?)`);
  }
  const med = (name: string, key: keyof Figures): number | null => median(figures.get(name)?.[key] ?? []);
  const result = Object.fromEntries(sides.map((s) => {
    const untar = med(s.name, 'untar_seconds');
    const create = med(s.name, 'create_10k_seconds');
    const read = med(s.name, 'seq_read_mib_s');
    return [s.name, {
      untar_seconds: sigOrNull(untar),
      create_10k_seconds: sigOrNull(create),
      seq_read_mib_s: sigOrNull(read),
      // The ratio definitions: untar time / native, native create time / this, read / native.
      untar_ratio: sigOrNull(ratioOf(untar, med('native', 'untar_seconds')), 3),
      create_10k_ratio: sigOrNull(ratioOf(med('native', 'create_10k_seconds'), create), 3),
      seq_read_ratio: sigOrNull(ratioOf(read, med('native', 'seq_read_mib_s')), 3),
      runs: figures.get(s.name),
    }];
  }));
  const doc = {
    schema: 'strata-bench-reference/1',
    runs,
    passthrough_hp: passthrough ?? 'not measured (set PASSTHROUGH_HP to its binary)',
    sides: result,
  };
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  process.stdout.write(text);
  if (process.env['BENCH_OUTPUT']) writeFileSync(resolve(process.env['BENCH_OUTPUT']), text);
  return 0;
}

process.exitCode = main();
