// `npm run bench:metrics`: what `--metrics` costs the requests it times. In
// one run, on one disk: small-file creates and a warm stat pass (every request
// through the JavaScript core: --no-direct-io, the worst case for the per-
// request observer) on a native directory, a mount without --metrics and a
// mount with --metrics that is scraped once a second (Prometheus' usual
// interval is 15 s). Sides alternate their order each repetition. ONE JSON
// document on stdout (medians and ratios), progress on stderr. Not a test:
// nothing fails on a figure.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STRATA_CLI } from './lib/strata.js';
import { median, ratioOf, sigOrNull } from './lib/stats.js';
import { DaemonMetrics } from '../src/daemon/metrics.js';

/**
 * The observer's own cost per request, in this process: what dispatch adds
 * (two hrtime reads) plus a histogram observation, over N calls spread on a
 * few ops, in ns. CPU-bound, so far less noisy on a busy machine than the
 * mounts' figures.
 */
function observerCost(n: number): { ns_per_request: number; ns_per_hrtime_pair: number } {
  const m = new DaemonMetrics({ mountpoint: '/bench' });
  const observe = m.observers.request!;
  const ops = ['lookup', 'getattr', 'create', 'write', 'flush', 'release'];
  let t0 = process.hrtime.bigint();
  let sink = 0n;
  for (let i = 0; i < n; i++) sink += process.hrtime.bigint() - process.hrtime.bigint();
  const pair = Number(process.hrtime.bigint() - t0) / n;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const a = process.hrtime.bigint();
    observe(ops[i % ops.length]!, Number(process.hrtime.bigint() - a) / 1e9, 0);
  }
  const per = Number(process.hrtime.bigint() - t0) / n;
  if (sink === 1n) process.stderr.write('');
  return { ns_per_request: Math.round(per), ns_per_hrtime_pair: Math.round(pair) };
}

const FILES_WORKER = fileURLToPath(new URL('./workers/files.js', import.meta.url));
const runs = Number(process.env['BENCH_RUNS'] ?? 7);
const files = Number(process.env['BENCH_FILES'] ?? 2000);
const parent = resolve(process.env['BENCH_DIR'] || '/var/tmp');

type Side = 'native' | 'strata' | 'strata_metrics';
const SIDES: Side[] = ['native', 'strata', 'strata_metrics'];

function strata(args: string[]): string {
  const r = spawnSync(process.execPath, [STRATA_CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`strata ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The worker in a child process, awaited without blocking this one (the scraper runs meanwhile). */
function worker(cmd: 'create' | 'stat', root: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(process.execPath, [FILES_WORKER, cmd, root, String(files), '10', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    p.once('exit', (code) => {
      if (code !== 0) reject(new Error(`files.js ${cmd} ${root}: ${err}`));
      else resolvePromise((JSON.parse(out.trim()) as { seconds: number }).seconds);
    });
  });
}

/** Every request reaches the daemon: the FUSE thread answers nothing, the kernel caches no attributes or names. */
const MOUNT_ARGS = ['--no-direct-io', '--attr-timeout', '0', '--entry-timeout', '0', '--negative-timeout', '0'];

async function main(): Promise<void> {
  const work = mkdtempSync(join(parent, 'strata-bench-metrics-'));
  const roots: Record<Side, string> = { native: join(work, 'native'), strata: join(work, 'mnt'), strata_metrics: join(work, 'mnt-metrics') };
  for (const d of Object.values(roots)) mkdirSync(d);
  let metricsUrl = '';
  let scrapes = 0;
  let scrapeBytes = 0;
  let scrapeErrors = 0;
  let lastScrapeError: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  try {
    strata(['mount', '--store', join(work, 'store'), ...MOUNT_ARGS, roots.strata]);
    const out = strata(['mount', '--store', join(work, 'store-metrics'), ...MOUNT_ARGS, '--metrics', '127.0.0.1:0', roots.strata_metrics]);
    metricsUrl = /^metrics at (\S+)$/m.exec(out)?.[1] ?? '';
    if (metricsUrl === '') throw new Error(`no metrics address in: ${out}`);
    // Scraped throughout, once a second (the workers run in child processes, so this loop is free to).
    timer = setInterval(() => {
      void fetch(metricsUrl).then(async (r) => { scrapeBytes = (await r.text()).length; scrapes++; }, (err: unknown) => { scrapeErrors++; lastScrapeError = String((err as { cause?: unknown }).cause ?? err); });
    }, 1000);
    const times: Record<Side, { create: number[]; stat: number[] }> = {
      native: { create: [], stat: [] }, strata: { create: [], stat: [] }, strata_metrics: { create: [], stat: [] },
    };
    for (let i = 0; i < runs; i++) {
      const order = SIDES.map((_, k) => SIDES[(k + i) % SIDES.length]!);
      for (const side of order) {
        const root = join(roots[side], `r${i}`);
        mkdirSync(root);
        spawnSync('sync');
        times[side].create.push(await worker('create', root));
        times[side].stat.push(await worker('stat', root));
        process.stderr.write(`[bench:metrics] run ${i + 1}/${runs} ${side}: create ${times[side].create.at(-1)!.toFixed(3)} s, stat ${times[side].stat.at(-1)!.toFixed(3)} s\n`);
      }
    }
    const med = (s: Side, k: 'create' | 'stat'): number | null => median(times[s][k]);
    const observer = observerCost(1_000_000);
    const doc = {
      schema: 'strata-bench-metrics/1',
      files, runs,
      mount_args: MOUNT_ARGS.join(' '),
      observer,
      scrapes, scrape_errors: scrapeErrors, last_scrape_error: lastScrapeError, scrape_body_bytes: scrapeBytes,
      seconds_median: Object.fromEntries(SIDES.map((s) => [s, { create: sigOrNull(med(s, 'create')), stat: sigOrNull(med(s, 'stat')) }])),
      ratios: {
        create_metrics_over_plain: sigOrNull(ratioOf(med('strata_metrics', 'create'), med('strata', 'create'))),
        stat_metrics_over_plain: sigOrNull(ratioOf(med('strata_metrics', 'stat'), med('strata', 'stat'))),
        create_plain_over_native: sigOrNull(ratioOf(med('strata', 'create'), med('native', 'create'))),
        create_metrics_over_native: sigOrNull(ratioOf(med('strata_metrics', 'create'), med('native', 'create'))),
        stat_plain_over_native: sigOrNull(ratioOf(med('strata', 'stat'), med('native', 'stat'))),
        stat_metrics_over_native: sigOrNull(ratioOf(med('strata_metrics', 'stat'), med('native', 'stat'))),
      },
      raw: times,
    };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } finally {
    if (timer) clearInterval(timer);
    for (const m of [roots.strata, roots.strata_metrics]) {
      const r = spawnSync(process.execPath, [STRATA_CLI, 'unmount', m], { encoding: 'utf8' });
      if (r.status !== 0) spawnSync(process.execPath, [STRATA_CLI, 'unmount', '--lazy', m]);
    }
    if (spawnSync('grep', ['-q', work, '/proc/mounts']).status !== 0) rmSync(work, { recursive: true, force: true });
  }
}

await main();
