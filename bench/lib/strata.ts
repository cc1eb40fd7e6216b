// The strata side of the benchmarks: mount, health check, remount, unmount.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMountPoint } from './system.js';
import { progress, run } from './proc.js';

/** bin/strata.js, from dist/bench/lib/strata.js. */
export const STRATA_CLI = fileURLToPath(new URL('../../../bin/strata.js', import.meta.url));

/** The checkout the benchmarks run from. */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** The commit measured, and whether the work tree had uncommitted changes. */
export function gitFacts(): { commit: string; dirty: boolean } {
  const head = run('git', ['-C', REPO, 'rev-parse', 'HEAD'], { allowFailure: true, timeoutMs: 10_000 });
  const st = run('git', ['-C', REPO, 'status', '--porcelain'], { allowFailure: true, timeoutMs: 30_000 });
  return { commit: head.status === 0 ? head.stdout.trim() : 'unknown', dirty: st.stdout.trim() !== '' };
}

/** Alive and still our strata daemon (not a recycled pid). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('strata.js');
  } catch {
    return false;
  }
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class StrataMount {
  /** Daemon pids this harness started (parsed from `strata mount` output). */
  private readonly daemonPids: number[] = [];
  readonly remounts: string[] = [];

  constructor(
    readonly store: string,
    readonly mountpoint: string,
    readonly extraArgs: readonly string[],
    /** Harness self-test: no mount at all, the "strata" side is a plain directory. */
    readonly smoke: boolean,
  ) {}

  private cli(args: readonly string[], timeoutMs = 60_000): ReturnType<typeof run> {
    return run(process.execPath, [STRATA_CLI, ...args], { allowFailure: true, timeoutMs });
  }

  private logTail(): string {
    const log = join(this.store, '.strata', 'daemon.log');
    if (!existsSync(log)) return '';
    return readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
  }

  mount(): void {
    if (this.smoke) return;
    const r = this.cli(['mount', '--store', this.store, ...this.extraArgs, this.mountpoint]);
    const m = /daemon pid (\d+)/.exec(r.stdout);
    if (m?.[1]) this.daemonPids.push(Number(m[1]));
    if (r.status !== 0) {
      throw new Error(`strata mount failed (exit ${r.status}): ${(r.stderr || r.stdout).trim()}\n${this.logTail()}`);
    }
    if (!this.healthy()) {
      throw new Error(`strata mount returned but the mount does not answer\n${this.logTail()}`);
    }
  }

  /** Mounted and answering: stat of the root and a directory listing, with a time limit. */
  healthy(): boolean {
    if (this.smoke) return true;
    if (!isMountPoint(this.mountpoint)) return false;
    return run('ls', ['-a', this.mountpoint], { allowFailure: true, timeoutMs: 10_000 }).status === 0;
  }

  /** Before each benchmark: remount (same store) if the daemon died. Returns a note if it did. */
  ensure(): string | null {
    if (this.healthy()) return null;
    const why = `mount was not answering before this benchmark; remounted. Daemon log tail: ${this.logTail()}`;
    progress(`strata mount is not answering: remounting (${this.logTail().split('\n').pop() ?? ''})`);
    this.unmount();
    this.mount();
    this.remounts.push(why);
    return why;
  }

  /** Unmounts by every means available; true when the mount point is no longer mounted. */
  unmount(): boolean {
    if (this.smoke) return true;
    if (isMountPoint(this.mountpoint)) {
      const r = this.cli(['unmount', this.mountpoint]);
      if (r.status !== 0) progress(`strata unmount failed: ${(r.stderr || r.stdout).trim()}`);
    }
    if (isMountPoint(this.mountpoint)) this.cli(['unmount', '--lazy', this.mountpoint]);
    if (isMountPoint(this.mountpoint)) run('fusermount', ['-uz', this.mountpoint], { allowFailure: true, timeoutMs: 30_000 });
    if (isMountPoint(this.mountpoint)) run('umount', ['-l', this.mountpoint], { allowFailure: true, timeoutMs: 30_000 });
    // The daemons exit after unmounting; give them a moment, then stop the ones we started.
    for (const pid of this.daemonPids) {
      for (let i = 0; i < 50 && alive(pid); i++) sleepMs(100);
      if (alive(pid)) {
        progress(`strata daemon ${pid} still running after unmount: sending SIGTERM`);
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    }
    return !isMountPoint(this.mountpoint);
  }
}
