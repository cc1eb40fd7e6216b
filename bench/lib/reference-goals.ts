// The arithmetic of `npm run bench:reference` (bench/reference.ts), kept pure so
// that test/unit/bench-reference.test.ts can check it: each side's ratio to
// native as the issue defines it, the goals (met or not), and what each
// strata feature is worth (the figure with every feature on, against the same
// figure with that one feature switched off).

/** What the harness needs to know about a figure (a Benchmark of bench/benchmarks.ts fits). */
export interface FigureDef {
  name: string;
  unit: string;
  /** Throughput: true; times and latencies: false. */
  higherIsBetter: boolean;
  /** How a side's ratio to native is taken ("strata" stands for the side). */
  ratioDefinition: 'strata/native' | 'native/strata';
}

/** Median per figure name, per side name; null when the side did not measure it. */
export type Medians = Record<string, Record<string, number | null>>;

/** A side's ratio to native for one figure, as the figure's ratioDefinition says. */
export function ratioToNative(def: FigureDef, side: number | null | undefined, native: number | null | undefined): number | null {
  if (side === null || side === undefined || native === null || native === undefined) return null;
  const [num, den] = def.ratioDefinition === 'strata/native' ? [side, native] : [native, side];
  return den === 0 || !Number.isFinite(num / den) ? null : num / den;
}

export interface Goal {
  /** Short name in the report. */
  id: string;
  figure: string;
  /**
   * ratio: the side's ratio to native (ratioToNative) against `value`;
   * absolute: the side's own median against `value`;
   * faster_than: the side's median better than side `than`'s (lower time, higher throughput).
   */
  kind: 'ratio' | 'absolute' | 'faster_than';
  op?: '>=' | '<=';
  value?: number;
  than?: string;
  text: string;
}

/** The goals for strata (ratios to native in the same run). */
export const REFERENCE_GOALS: readonly Goal[] = [
  { id: 'create_10k', figure: 'create_10k', kind: 'ratio', op: '>=', value: 0.35, text: 'create 10k files: native time / strata time >= 0.35' },
  { id: 'untar', figure: 'untar_source_tree', kind: 'ratio', op: '<=', value: 3, text: 'untar of a source tree: strata time / native time <= 3' },
  { id: 'seq_read', figure: 'seq_read_1m', kind: 'ratio', op: '>=', value: 0.8, text: 'sequential read (cold): strata MiB/s / native MiB/s >= 0.8' },
  { id: 'seq_write', figure: 'seq_write_1m', kind: 'ratio', op: '>=', value: 0.9, text: 'sequential write: strata MiB/s / native MiB/s >= 0.9' },
  { id: 'stat_warm', figure: 'stat_warm', kind: 'ratio', op: '>=', value: 0.9, text: 'warm stat: native time / strata time >= 0.9' },
  { id: 'rand_read_4k', figure: 'rand_read_4k_latency', kind: 'absolute', op: '<=', value: 25, text: '4 KiB random read: strata mean latency <= 25 µs' },
  { id: 'create_vs_passthrough_hp', figure: 'create_10k', kind: 'faster_than', than: 'passthrough_hp', text: 'create 10k files: strata faster than passthrough_hp' },
  { id: 'untar_vs_passthrough_hp', figure: 'untar_source_tree', kind: 'faster_than', than: 'passthrough_hp', text: 'untar: strata faster than passthrough_hp' },
];

export interface GoalResult {
  id: string;
  text: string;
  /** true / false, or null when a figure it needs was not measured (e.g. no passthrough_hp in this run). */
  met: boolean | null;
  /** What was compared with the goal: the ratio, the absolute figure, or strata / the other side (as the ratio to native is taken). */
  measured: number | null;
  why?: string;
}

function compare(v: number, op: '>=' | '<=', target: number): boolean {
  return op === '>=' ? v >= target : v <= target;
}

/** Judges every goal for side `subject` (normally "strata") from the medians. */
export function evaluateGoals(goals: readonly Goal[], defs: readonly FigureDef[], medians: Medians, subject: string): GoalResult[] {
  return goals.map((g): GoalResult => {
    const def = defs.find((d) => d.name === g.figure);
    const fig = medians[g.figure] ?? {};
    const own = fig[subject] ?? null;
    const base = { id: g.id, text: g.text };
    if (def === undefined || own === null) return { ...base, met: null, measured: null, why: `${g.figure} was not measured on ${subject}` };
    if (g.kind === 'absolute') return { ...base, met: compare(own, g.op ?? '<=', g.value ?? 0), measured: own };
    if (g.kind === 'ratio') {
      const r = ratioToNative(def, own, fig['native']);
      if (r === null) return { ...base, met: null, measured: null, why: `${g.figure} was not measured on native` };
      return { ...base, met: compare(r, g.op ?? '>=', g.value ?? 0), measured: r };
    }
    const other = g.than === undefined ? null : fig[g.than] ?? null;
    if (other === null) return { ...base, met: null, measured: null, why: `${g.figure} was not measured on ${g.than ?? '?'} (not in this run)` };
    // Expressed like a ratio to native with the other side in native's place: > 1 is better for times and throughput alike.
    const rel = def.higherIsBetter ? own / other : other / own;
    return { ...base, met: def.higherIsBetter ? own > other : own < other, measured: rel };
  });
}

/** A strata feature whose worth is measured by a mount with it switched (the others as by default). */
export interface FeatureSwitch {
  feature: string;
  /** The side name of that mount. */
  side: string;
  /** On in the default mount (measured by switching it off) or opt-in (measured by switching it on). */
  defaultOn: boolean;
}

export interface FeatureEffect {
  side: string;
  /**
   * How much better the figure is with the feature than without it (> 1: it helps):
   * for times and latencies time-without / time-with, for throughput with / without.
   * With the default mount as "with" for default-on features, as "without" for opt-in ones.
   */
  speedup: number | null;
  /**
   * Default-on features only: ln(speedup) / the sum of ln(speedup) over the
   * default-on features of this figure, when that sum is positive: the feature's
   * part of the combined gain if the gains multiplied. The switches overlap
   * (see the report's notes), so shares are a reading aid, not a budget.
   */
  share: number | null;
}

/** Each feature's effect on each figure, against side `all` (the default mount). */
export function featureEffects(defs: readonly FigureDef[], medians: Medians, all: string, switches: readonly FeatureSwitch[]): Record<string, Record<string, FeatureEffect>> {
  const out: Record<string, Record<string, FeatureEffect>> = {};
  for (const def of defs) {
    const fig = medians[def.name] ?? {};
    const base = fig[all] ?? null;
    const effects: Record<string, FeatureEffect> = {};
    for (const s of switches) {
      const other = fig[s.side] ?? null;
      let speedup: number | null = null;
      if (base !== null && other !== null && base > 0 && other > 0) {
        const [withF, withoutF] = s.defaultOn ? [base, other] : [other, base];
        speedup = def.higherIsBetter ? withF / withoutF : withoutF / withF;
      }
      effects[s.feature] = { side: s.side, speedup, share: null };
    }
    const logs = switches.filter((s) => s.defaultOn).map((s) => effects[s.feature]?.speedup ?? null);
    const total = logs.every((x) => x !== null) ? logs.reduce<number>((a, x) => a + Math.log(x as number), 0) : null;
    if (total !== null && total > 0) {
      for (const s of switches) {
        const e = effects[s.feature];
        if (s.defaultOn && e?.speedup != null) e.share = Math.log(e.speedup) / total;
      }
    }
    out[def.name] = effects;
  }
  return out;
}
