// A C reference file system of `npm run bench:reference` (libfuse's
// passthrough_hp or passthrough_ll, built by scripts/build-reference-fs.sh),
// run in the foreground as a child of the harness so that it is this harness's
// own process: mounted before the benchmarks, unmounted and stopped (by its pid)
// after them, even when they fail.
//
// Both keep one descriptor per node the kernel knows (passthrough_hp raises its
// soft limit to the hard one for that). The hard limit a harness inherits can be
// low (20,000 in this sandbox: the three create_10k trees alone exhaust it, and
// every FLUSH then fails with EBADF from close(dup(fh))), while strata's bridge
// raises its own hard limit to 2^20 as root (native/fuse-native/src/nodes.c). So
// the references start under `prlimit --nofile=2^20:2^20` (capped at
// /proc/sys/fs/nr_open), the same limit strata gives itself, where the machine
// allows it (this sandbox does not: CAP_SYS_RESOURCE is missing, and strata's
// table makes do with half of the 20,000 by evicting). `nofile()` says what they got.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { progress, run } from './proc.js';
import { isMountPoint } from './system.js';

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class ReferenceMount {
  private pid: number | null = null;

  constructor(
    readonly name: string,
    readonly binary: string,
    /** Its whole command line after the program name (options, source, mount point). */
    readonly args: readonly string[],
    readonly mountpoint: string,
    /** Its stdout and stderr go here. */
    readonly logPath: string,
  ) {}

  /** Alive and still the program we started (not a recycled pid, not a zombie). */
  private alive(): boolean {
    if (this.pid === null) return false;
    try {
      return readFileSync(`/proc/${this.pid}/cmdline`, 'utf8').includes(basename(this.binary));
    } catch {
      return false;
    }
  }

  private logTail(): string {
    try {
      return readFileSync(this.logPath, 'utf8').trim().split('\n').slice(-5).join('\n');
    } catch {
      return '';
    }
  }

  /** The descriptor limit (soft and hard) to start it under: 2^20 if this process may raise its hard limit that far, else null (inherited). */
  static nofileLimit(): number | null {
    let max = 1 << 20;
    try {
      max = Math.min(max, Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()) || max);
    } catch {
      // keep 2^20
    }
    return run('prlimit', [`--nofile=${max}:${max}`, '--', 'true'], { allowFailure: true, timeoutMs: 10_000 }).status === 0 ? max : null;
  }

  /** The running daemon's descriptor limit ("soft:hard"), from /proc. */
  nofile(): string | null {
    try {
      const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${this.pid}/limits`, 'utf8'));
      return m ? `${m[1]}:${m[2]}` : null;
    } catch {
      return null;
    }
  }

  mount(): void {
    const fd = openSync(this.logPath, 'a');
    try {
      const n = ReferenceMount.nofileLimit();
      // prlimit execs the program: the pid is the reference's own.
      const child = n === null
        ? spawn(this.binary, [...this.args], { stdio: ['ignore', fd, fd], detached: true })
        : spawn('prlimit', [`--nofile=${n}:${n}`, '--', this.binary, ...this.args], { stdio: ['ignore', fd, fd], detached: true });
      child.unref();
      this.pid = child.pid ?? null;
    } finally {
      closeSync(fd);
    }
    for (let i = 0; i < 150 && !isMountPoint(this.mountpoint); i++) {
      if (!this.alive()) throw new Error(`${this.name} exited without mounting: ${this.logTail()}`);
      sleepMs(100);
    }
    if (!isMountPoint(this.mountpoint)) throw new Error(`${this.name} did not mount within 15 s: ${this.logTail()}`);
  }

  healthy(): boolean {
    return isMountPoint(this.mountpoint) && run('ls', ['-a', this.mountpoint], { allowFailure: true, timeoutMs: 10_000 }).status === 0;
  }

  /** Unmounts (as root, without fusermount3) and waits for the daemon to end; true when nothing is mounted there any more. */
  unmount(): boolean {
    if (isMountPoint(this.mountpoint)) run('umount', [this.mountpoint], { allowFailure: true, timeoutMs: 60_000 });
    if (isMountPoint(this.mountpoint)) run('umount', ['-l', this.mountpoint], { allowFailure: true, timeoutMs: 30_000 });
    for (let i = 0; i < 100 && this.alive(); i++) sleepMs(100);
    if (this.alive() && this.pid !== null) {
      progress(`${this.name} (pid ${this.pid}) still running after the unmount: sending SIGTERM`);
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    return !isMountPoint(this.mountpoint);
  }
}
