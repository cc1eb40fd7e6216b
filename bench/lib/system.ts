// Machine-level helpers: page cache control, mount table, machine facts.
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { run } from './proc.js';

/** Flushes every file system (including the store's disk behind a FUSE mount). */
export function syncAll(): void {
  run('sync', [], { timeoutMs: 300_000 });
}

let ownDrops = 0;

/** `sync; echo 3 > /proc/sys/vm/drop_caches`: cold page cache, dentries and inodes everywhere. */
export function dropCaches(): void {
  syncAll();
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  ownDrops++;
}

/** How many times this harness wrote drop_caches. */
export function ownCacheDrops(): number {
  return ownDrops;
}

/**
 * /proc/vmstat drop_slab: how many times anyone wrote 2 or 3 to drop_caches.
 * Another program doing that (a test suite, say) while a benchmark runs empties
 * the dentry and inode caches behind its back; run.ts reports such "foreign" drops.
 */
export function slabDropCount(): number {
  const m = /^drop_slab (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'));
  return m?.[1] ? Number(m[1]) : 0;
}

function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/** Percentage of all CPUs busy over the next `ms` milliseconds (blocks). */
export function cpuBusyPercent(ms: number): number {
  const a = cpuTimes();
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  const b = cpuTimes();
  return b.total === a.total ? 0 : Math.round(((b.busy - a.busy) / (b.total - a.total)) * 1000) / 10;
}

/** Reads a file sequentially (to /dev/null) so that its pages are in the page cache. */
export function readToNull(path: string): void {
  run('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M', 'status=none'], { timeoutMs: 300_000 });
}

/** Whether `dir` is a mount point right now, from /proc/self/mountinfo (never touches the mount). */
export function isMountPoint(dir: string): boolean {
  const info = readFileSync('/proc/self/mountinfo', 'utf8');
  // Field 5 is the mount point, with spaces etc. octal-escaped.
  const esc = dir.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return info.split('\n').some((line) => line.split(' ')[4] === esc);
}

export interface MachineFacts {
  kernel: string;
  os: string;
  arch: string;
  cpu_count: number;
  cpu_model: string;
  memory_gib: number;
  fio_version: string;
  node_version: string;
  tar_version: string;
  bench_filesystem: { path: string; source: string; fstype: string; options: string };
}

function firstLine(s: string): string {
  return s.split('\n')[0]?.trim() ?? '';
}

export function machineFacts(benchDir: string, fioVersion: string): MachineFacts {
  const fm = run('findmnt', ['-n', '-o', 'SOURCE,FSTYPE,OPTIONS', '-T', benchDir], { allowFailure: true, timeoutMs: 10_000 });
  const [source = '?', fstype = '?', options = '?'] = firstLine(fm.stdout).split(/\s+/);
  let osName = `${os.type()} ${os.release()}`;
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m?.[1]) osName = m[1];
  } catch {
    // keep the fallback
  }
  return {
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    os: osName,
    arch: os.arch(),
    cpu_count: os.cpus().length,
    cpu_model: os.cpus()[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    fio_version: fioVersion,
    node_version: process.version,
    tar_version: firstLine(run('tar', ['--version'], { allowFailure: true, timeoutMs: 10_000 }).stdout),
    bench_filesystem: { path: benchDir, source, fstype, options },
  };
}
