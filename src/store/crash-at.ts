// Fault injection for the kill -9 tests: with STRATA_CRASH_AT=<point>[:<n>] in
// its environment, the process kills itself with SIGKILL the n-th time
// (default 1st) it reaches <point>. The variable is read once at load; without
// it a crash point costs one comparison. The named points of each part live
// with it (src/restore/crash-points.ts, src/swap/crash-points.ts).

const spec = process.env.STRATA_CRASH_AT ?? '';
const [target, nth] = spec.split(':');
const limit = Math.max(1, Number(nth ?? '1') || 1);
let reached = 0;

/** Kills this process (SIGKILL) when `point` is the one STRATA_CRASH_AT names, the n-th time. */
export function crashAt(point: string): void {
  if (target !== point) return;
  if (++reached >= limit) process.kill(process.pid, 'SIGKILL');
}
