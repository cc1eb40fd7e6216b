// Where a daemon's start went: milliseconds per named phase, and how long the
// process ran before the daemon was constructed (starting Node and loading
// modules). Reported by `strata status --json` (`startup`) and logged with
// "mounted" (docs/recovery.md, "Time to serve").
import { performance } from 'node:perf_hooks';

export interface StartupTimes {
  /** From the process's start to the daemon's construction: Node's start and module loading. */
  processToDaemonMs: number;
  /** Each phase of start(), in order, with its duration. */
  phases: { name: string; ms: number }[];
  /** From the process's start until the mount served (null while starting). */
  processToServingMs: number | null;
}

export class PhaseClock {
  private readonly createdAt = performance.now();
  private last = this.createdAt;
  private readonly phases: { name: string; ms: number }[] = [];
  private servingAt: number | null = null;

  /** Closes the phase that ran since the previous mark under this name. */
  mark(name: string): void {
    const now = performance.now();
    this.phases.push({ name, ms: round(now - this.last) });
    this.last = now;
  }

  serving(): void {
    this.servingAt = performance.now();
  }

  /** From the clock's creation until serving() (null before). */
  sinceCreatedMs(): number | null {
    return this.servingAt === null ? null : this.servingAt - this.createdAt;
  }

  times(): StartupTimes {
    return {
      processToDaemonMs: round(this.createdAt),
      phases: [...this.phases],
      processToServingMs: this.servingAt === null ? null : round(this.servingAt),
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
