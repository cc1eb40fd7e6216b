// Runs one fio job with --output-format=json and extracts the figures the
// benchmarks report. fio's JSON is validated field by field (no `any`).
import { run } from './proc.js';

export interface FioJob {
  name: string;
  filename: string;
  rw: 'write' | 'read' | 'randread';
  bs: string;
  /** fio size syntax, e.g. "1024m". */
  size: string;
  direct?: boolean;
  endFsync?: boolean;
  /** Seconds; makes the job time based. */
  runtimeS?: number;
  rampS?: number;
  /** fio's default (true) drops the file's page cache before the job. */
  invalidate?: boolean;
}

export interface FioFigures {
  /** Bytes moved by the job (excluding ramp time). */
  ioBytes: number;
  /** MiB/s as fio computes it (its runtime includes the final fsync with end_fsync=1). */
  bwMiBs: number;
  iops: number;
  runtimeMs: number;
  clatMeanUs: number;
  clatP50Us: number;
  clatP99Us: number;
  clatMaxUs: number;
}

function field(o: unknown, path: readonly string[]): unknown {
  let cur: unknown = o;
  for (const key of path) {
    if (typeof cur !== 'object' || cur === null || !(key in cur)) throw new Error(`fio JSON lacks ${path.join('.')}`);
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function num(o: unknown, ...path: string[]): number {
  const v = field(o, path);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`fio JSON: ${path.join('.')} is not a number`);
  return v;
}

/** fio's JSON may be preceded by warning lines on stdout; parse from the first '{' line. */
export function parseFioJson(stdout: string): unknown {
  const at = stdout.search(/^\{/m);
  if (at < 0) throw new Error(`fio printed no JSON: ${stdout.slice(0, 300)}`);
  return JSON.parse(stdout.slice(at)) as unknown;
}

export function fioArgs(job: FioJob): string[] {
  const a = [
    `--name=${job.name}`,
    `--filename=${job.filename}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--size=${job.size}`,
    '--ioengine=psync',
    '--iodepth=1',
    '--numjobs=1',
    // Same on both sides: FUSE file systems often lack fallocate, and fio's
    // preallocation would otherwise differ between native and strata.
    '--fallocate=none',
    `--direct=${job.direct ? 1 : 0}`,
    `--invalidate=${job.invalidate === false ? 0 : 1}`,
    '--output-format=json',
  ];
  if (job.endFsync) a.push('--end_fsync=1');
  if (job.runtimeS !== undefined) a.push('--time_based', `--runtime=${job.runtimeS}`);
  if (job.rampS !== undefined) a.push(`--ramp_time=${job.rampS}`);
  return a;
}

export function runFio(job: FioJob, timeoutMs = 600_000): FioFigures {
  const r = run('fio', fioArgs(job), { timeoutMs });
  const doc = parseFioJson(r.stdout);
  const jobs = field(doc, ['jobs']);
  if (!Array.isArray(jobs) || jobs.length !== 1) throw new Error('fio JSON: expected exactly one job');
  const j: unknown = jobs[0];
  const err = num(j, 'error');
  if (err !== 0) throw new Error(`fio job ${job.name} reported error ${err}`);
  const dir = job.rw === 'write' ? 'write' : 'read';
  const pct = (p: string): number => num(j, dir, 'clat_ns', 'percentile', p) / 1000;
  return {
    ioBytes: num(j, dir, 'io_bytes'),
    bwMiBs: num(j, dir, 'bw_bytes') / 1048576,
    iops: num(j, dir, 'iops'),
    runtimeMs: num(j, dir, 'runtime'),
    clatMeanUs: num(j, dir, 'clat_ns', 'mean') / 1000,
    clatP50Us: pct('50.000000'),
    clatP99Us: pct('99.000000'),
    clatMaxUs: num(j, dir, 'clat_ns', 'max') / 1000,
  };
}

export function fioVersion(): string {
  return run('fio', ['--version'], { timeoutMs: 10_000 }).stdout.trim();
}
