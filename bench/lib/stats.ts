// Small numeric helpers for the report.

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Rounds to a number of significant digits, keeping the JSON readable. */
export function sig(x: number, digits = 4): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

export function sigOrNull(x: number | null, digits = 4): number | null {
  return x === null ? null : sig(x, digits);
}

export function ratioOf(num: number | null, den: number | null): number | null {
  if (num === null || den === null || den === 0) return null;
  return num / den;
}

/** Relative spread of the runs, (max - min) / median: a quick variance indicator. */
export function spread(xs: readonly number[]): number | null {
  const m = median(xs);
  if (m === null || m === 0 || xs.length < 2) return null;
  return (Math.max(...xs) - Math.min(...xs)) / m;
}

/** Per key, the median of the numeric figures runs recorded besides their value (rep, position, value and load left out). */
export function medianExtras(rs: readonly Readonly<Record<string, number | string>>[]): Record<string, number> {
  const keys = new Set(rs.flatMap((r) => Object.keys(r)).filter((k) => !['rep', 'position', 'value', 'load_1m', 'foreign_cache_drops'].includes(k)));
  const out: Record<string, number> = {};
  for (const k of keys) {
    const m = median(rs.map((r) => r[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
    if (m !== null) out[k] = sig(m);
  }
  return out;
}
