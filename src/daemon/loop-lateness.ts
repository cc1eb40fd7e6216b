// How late the event loop runs, from perf_hooks' delay histogram.
//
// monitorEventLoopDelay() records the whole time between two ticks of its
// timer, so an idle loop sampled every 10 ms reads ~10.1 ms. What status
// reports (and what anyone alerting on it means) is the lateness: the time
// past the timer's interval, which is 0 on an idle loop.

export interface DelayHistogram {
  percentile(p: number): number;
  readonly max: number;
  readonly count?: number;
}

export interface LoopLateness {
  p50: number;
  p99: number;
  max: number;
}

/** Lateness in ms (two decimals) from a histogram sampled every `intervalMs`. */
export function loopLateness(h: DelayHistogram, intervalMs: number = LOOP_PROBE_MS): LoopLateness {
  if (h.count === 0) return { p50: 0, p99: 0, max: 0 };
  const late = (ns: number): number => Math.max(0, Math.round((ns / 1e6 - intervalMs) * 100) / 100);
  return { p50: late(h.percentile(50)), p99: late(h.percentile(99)), max: late(h.max) };
}

/** The sampling interval of the daemon's delay histogram, ms. */
export const LOOP_PROBE_MS = 10;
