// Op-latency worker for bench/mirror.ts, one process per measured run, so the
// timed loop is nothing but syscalls from a single thread:
//
//   node mirror-ops-worker.js DIR OPS [MAX_SECONDS]
//
// Makes DIR/ops-<pid>, does 20 untimed warm-up rounds, then ceil(OPS/4) rounds
// of four small mutating ops, each timed on its own with hrtime:
//   mkdir(d) · rmdir(d) · create (open(O_CREAT|O_EXCL|O_WRONLY) + close) · unlink
// With MAX_SECONDS, the timed rounds stop after that long even if fewer than
// OPS ops were done (`truncated: 1`, `ops` says how many), so a pathologically
// slow mount cannot stretch the whole benchmark.
// Prints one JSON line: per op kind and over all ops, median / p99 / mean / max in µs.
import { closeSync, mkdirSync, openSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { summarizeNs } from './mirror-stats.js';

type Kind = 'mkdir' | 'rmdir' | 'create' | 'unlink';
const KINDS: readonly Kind[] = ['mkdir', 'rmdir', 'create', 'unlink'];

function main(): void {
  const [dir, opsRaw, maxRaw] = process.argv.slice(2);
  const ops = Number(opsRaw);
  const maxNs = maxRaw === undefined ? Infinity : Number(maxRaw) * 1e9;
  if (!dir || !Number.isInteger(ops) || ops < 4) {
    process.stderr.write('usage: mirror-ops-worker.js DIR OPS (OPS >= 4)\n');
    process.exit(2);
  }
  const root = join(dir, `ops-${process.pid}`);
  mkdirSync(root);
  const samples: Record<Kind, number[]> = { mkdir: [], rmdir: [], create: [], unlink: [] };
  const round = (i: number, record: boolean): void => {
    const d = join(root, `d${i}`);
    const f = join(root, `f${i}`);
    let t = process.hrtime.bigint();
    mkdirSync(d);
    let t2 = process.hrtime.bigint();
    if (record) samples.mkdir.push(Number(t2 - t));
    t = t2;
    rmdirSync(d);
    t2 = process.hrtime.bigint();
    if (record) samples.rmdir.push(Number(t2 - t));
    t = t2;
    closeSync(openSync(f, 'wx', 0o644));
    t2 = process.hrtime.bigint();
    if (record) samples.create.push(Number(t2 - t));
    t = t2;
    unlinkSync(f);
    t2 = process.hrtime.bigint();
    if (record) samples.unlink.push(Number(t2 - t));
  };
  for (let i = 0; i < 20; i++) round(-1 - i, false);
  const rounds = Math.ceil(ops / 4);
  const t0 = process.hrtime.bigint();
  let truncated = 0;
  for (let i = 0; i < rounds; i++) {
    if (Number(process.hrtime.bigint() - t0) > maxNs) {
      truncated = 1;
      break;
    }
    round(i, true);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  rmdirSync(root);
  const all = KINDS.flatMap((k) => samples[k]);
  const out: Record<string, unknown> = { ops: all.length, seconds, ops_per_s: all.length / seconds, truncated, all: summarizeNs(all) };
  for (const k of KINDS) out[k] = summarizeNs(samples[k]);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main();
