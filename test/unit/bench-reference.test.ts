// The arithmetic of `npm run bench:reference` (bench/lib/reference-goals.ts):
// ratios to native as the issue defines them, goals met / not met / not judged,
// and each feature's speedup and share. Made-up medians; no timing is measured.
import test from 'ava';
import { evaluateGoals, featureEffects, ratioToNative, REFERENCE_GOALS, type FigureDef, type Medians } from '../../bench/lib/reference-goals.js';
import { create10k, randRead, seqRead, seqWrite, statWarm, untar } from '../../bench/benchmarks.js';

const DEFS: readonly FigureDef[] = [create10k, statWarm, untar, seqWrite, seqRead, randRead];
const time: FigureDef = { name: 't', unit: 's', higherIsBetter: false, ratioDefinition: 'native/strata' };
const thr: FigureDef = { name: 'b', unit: 'MiB/s', higherIsBetter: true, ratioDefinition: 'strata/native' };

test('ratios to native follow each figure\'s definition (the issue\'s: create native/side, untar side/native, throughput side/native)', (t) => {
  t.is(ratioToNative(create10k, 2, 1), 0.5);
  t.is(ratioToNative(untar, 2, 1), 2);
  t.is(ratioToNative(seqRead, 400, 800), 0.5);
  t.is(ratioToNative(time, null, 1), null);
  t.is(ratioToNative(time, 1, undefined), null);
  t.is(ratioToNative(thr, 1, 0), null);
});

function medians(strata: Record<string, number>, extra: Record<string, Record<string, number>> = {}): Medians {
  const native: Record<string, number> = { create_10k: 1, stat_warm: 1, untar_source_tree: 1, seq_write_1m: 1000, seq_read_1m: 1000, rand_read_4k_latency: 2 };
  const out: Medians = {};
  for (const [fig, n] of Object.entries(native)) out[fig] = { native: n, strata: strata[fig] ?? null, ...(extra[fig] ?? {}) };
  return out;
}

test('every goal met, at the boundaries (>= and <= include them)', (t) => {
  const m = medians(
    // Exact in binary floating point: 0.35 / 1, 0.9 / 1, 3 / 1, 900 / 1000, 800 / 1000.
    { create_10k: 1, stat_warm: 1, untar_source_tree: 3, seq_write_1m: 900, seq_read_1m: 800, rand_read_4k_latency: 25 },
    { create_10k: { native: 0.35, passthrough_hp: 3 }, stat_warm: { native: 0.9 }, untar_source_tree: { passthrough_hp: 3.5 } },
  );
  const r = evaluateGoals(REFERENCE_GOALS, DEFS, m, 'strata');
  t.deepEqual(r.map((g) => [g.id, g.met]), [
    ['create_10k', true], ['untar', true], ['seq_read', true], ['seq_write', true], ['stat_warm', true], ['rand_read_4k', true],
    ['create_vs_passthrough_hp', true], ['untar_vs_passthrough_hp', true],
  ]);
  t.is(r.find((g) => g.id === 'untar_vs_passthrough_hp')?.measured, 3.5 / 3);
});

test('goals missed, and the ones that cannot be judged without passthrough_hp', (t) => {
  const m = medians({ create_10k: 5, stat_warm: 2, untar_source_tree: 4, seq_write_1m: 100, seq_read_1m: 700, rand_read_4k_latency: 26 });
  const r = evaluateGoals(REFERENCE_GOALS, DEFS, m, 'strata');
  t.deepEqual(r.map((g) => g.met), [false, false, false, false, false, false, null, null]);
  t.is(r[0]?.measured, 0.2);
  t.is(r[5]?.measured, 26);
  t.regex(r[6]?.why ?? '', /passthrough_hp/);
});

test('slower than passthrough_hp is "not met"; a figure missing on strata is not judged', (t) => {
  const m = medians({ create_10k: 2, untar_source_tree: 2 }, { create_10k: { passthrough_hp: 1 }, untar_source_tree: { passthrough_hp: 2 } });
  const r = evaluateGoals(REFERENCE_GOALS, DEFS, m, 'strata');
  t.is(r.find((g) => g.id === 'create_vs_passthrough_hp')?.met, false);
  t.is(r.find((g) => g.id === 'untar_vs_passthrough_hp')?.met, false, 'equal is not faster');
  t.is(r.find((g) => g.id === 'seq_write')?.met, null);
});

test('feature effects: speedups oriented so that > 1 helps, shares of ln(speedup) over the default-on features', (t) => {
  const m: Medians = {
    t: { strata: 1, a_off: 4, b_off: 2, opt_in: 0.5 },
    b: { strata: 100, a_off: 50, b_off: 200, opt_in: 100 },
  };
  const e = featureEffects([time, thr], m, 'strata', [
    { feature: 'a', side: 'a_off', defaultOn: true },
    { feature: 'b', side: 'b_off', defaultOn: true },
    { feature: 'w', side: 'opt_in', defaultOn: false },
  ]);
  t.is(e['t']?.['a']?.speedup, 4);
  t.is(e['t']?.['b']?.speedup, 2);
  t.is(e['t']?.['w']?.speedup, 2, 'opt-in: default time / time with it');
  t.is(e['t']?.['a']?.share, Math.log(4) / Math.log(8));
  t.is(e['t']?.['b']?.share, Math.log(2) / Math.log(8));
  t.is(e['t']?.['w']?.share, null, 'opt-in features take no share');
  t.is(e['b']?.['a']?.speedup, 2);
  t.is(e['b']?.['b']?.speedup, 0.5);
  t.is(e['b']?.['a']?.share, null, 'no share when the features together gain nothing');
});

test('feature effects: a side that did not measure the figure gives null, and no shares', (t) => {
  const e = featureEffects([time], { t: { strata: 1, a_off: null } }, 'strata', [{ feature: 'a', side: 'a_off', defaultOn: true }, { feature: 'b', side: 'b_off', defaultOn: true }]);
  t.deepEqual(e['t']?.['a'], { side: 'a_off', speedup: null, share: null });
  t.deepEqual(e['t']?.['b'], { side: 'b_off', speedup: null, share: null });
});
