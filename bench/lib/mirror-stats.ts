// Latency summaries for bench/mirror.ts and its op worker: nearest-rank
// percentiles of nanosecond samples, reported in µs.

export interface LatencySummary {
  n: number;
  median_us: number;
  p99_us: number;
  mean_us: number;
  max_us: number;
}

/** Nearest-rank percentile of sorted values. */
export function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function summarizeNs(ns: readonly number[]): LatencySummary {
  const s = [...ns].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x / 100) / 10; // ns -> µs, 0.1 µs precision
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { n: s.length, median_us: r(pct(s, 50)), p99_us: r(pct(s, 99)), mean_us: r(mean), max_us: r(s[s.length - 1] ?? NaN) };
}
