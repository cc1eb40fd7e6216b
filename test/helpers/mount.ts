// Real mounts for the integration tests: `strata mount` as a user runs it,
// always unmounted in teardown, even when the test fails.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

/** Removes `base` and everything under it. GNU rm walks by descriptor: a tree deeper than PATH_MAX goes too (Node's rmSync cannot). */
export function removeTree(base: string): void {
  if (existsSync(base)) spawnSync('rm', ['-rf', base]);
}

export const CLI = fileURLToPath(new URL('../../../bin/strata.js', import.meta.url));

export interface TestMount {
  base: string;
  store: string;
  mnt: string;
  /** A native directory on the same disk, for side-by-side comparisons. */
  native: string;
}

export function strata(args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
}

/** The CLI without blocking this process (a command that waits while the test acts). */
export function strataAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

/** The pid of the daemon serving `mnt` (from `strata status`). */
export function daemonPid(mnt: string): number {
  const r = strata(['status', '--json', mnt]);
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}

export function mountpointIsMounted(mnt: string): boolean {
  return spawnSync('mountpoint', ['-q', mnt]).status === 0;
}

/** Mounts a fresh store; teardown unmounts and deletes everything. */
export function withMount(t: ExecutionContext, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): TestMount {
  const base = mkdtempSync(join(tmpdir(), 'strata-it-'));
  const m: TestMount = { base, store: join(base, 'store'), mnt: join(base, 'mnt'), native: join(base, 'native') };
  mkdirSync(m.mnt);
  mkdirSync(m.native);
  t.teardown(() => {
    if (mountpointIsMounted(m.mnt)) {
      const r = strata(['unmount', m.mnt]);
      if (r.status !== 0 && mountpointIsMounted(m.mnt)) strata(['unmount', '--lazy', m.mnt]);
      if (mountpointIsMounted(m.mnt)) spawnSync('umount', ['-l', m.mnt]);
    }
    removeTree(base);
  });
  const r = strata(['mount', '--store', m.store, ...extraArgs, m.mnt], env);
  if (r.status !== 0) throw new Error(`strata mount failed: ${r.stderr}${r.stdout}`);
  return m;
}

export interface ShResult { status: number | null; stdout: string; stderr: string }

/** Runs a bash script in `cwd`, optionally as another user (setpriv). */
export function sh(script: string, cwd: string, opts: { uid?: number; gid?: number; umask?: string } = {}): ShResult {
  const body = `${opts.umask ? `umask ${opts.umask}; ` : ''}${script}`;
  const argv = opts.uid !== undefined
    ? ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, '--clear-groups', 'bash', '-c', body]
    : ['bash', '-c', body];
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1' } });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * A program that stores "NEW" at byte 4096 of `file` (8 KiB) through a shared
 * writable mapping, never msyncs, and holds the mapping until killed (the
 * kernel keeps the page dirty). Resolves once it stored; `kill()` ends it and
 * resolves once it is gone. Killed at the test's end in any case.
 */
export async function holdDirtyMapping(t: ExecutionContext, file: string): Promise<{ kill: () => Promise<void> }> {
  const script = 'import mmap,os,sys,time\nfd=os.open(sys.argv[1],os.O_RDWR)\nm=mmap.mmap(fd,8192)\nm[4096:4099]=b"NEW"\nprint("stored",flush=True)\ntime.sleep(600)';
  const holder = spawn('python3', ['-c', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { holder.kill('SIGKILL'); });
  await new Promise<void>((resolveStored, reject) => {
    holder.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('stored')) resolveStored(); });
    holder.on('exit', (code) => reject(new Error(`the mapping program exited (${code}) before it stored`)));
  });
  const gone = new Promise((r) => holder.once('close', r));
  return { kill: async () => { holder.kill('SIGKILL'); await gone; } };
}
