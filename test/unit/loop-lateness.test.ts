import test from 'ava';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loopLateness } from '../../src/daemon/loop-lateness.js';

test('an idle loop reads about 0 ms late, not the probe interval', async (t) => {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  await new Promise((r) => setTimeout(r, 300));
  h.disable();
  const l = loopLateness(h, 10);
  // The raw histogram holds ~10 ms per sample; the lateness must not.
  t.true(h.percentile(50) / 1e6 >= 10);
  t.true(l.p50 < 5, `p50 ${l.p50}`);
});

test('a blocked loop reads as late as it was blocked, minus the interval', async (t) => {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  await new Promise((r) => setTimeout(r, 30));
  const until = Date.now() + 120;
  while (Date.now() < until) { /* block the loop */ }
  await new Promise((r) => setTimeout(r, 30));
  h.disable();
  const l = loopLateness(h, 10);
  t.true(l.max >= 100, `max ${l.max}`);
  t.true(l.max < 200, `max ${l.max}`);
});

test('an empty histogram reads 0, not a negative or NaN figure', (t) => {
  const empty = { percentile: () => 0, max: 0, count: 0 };
  t.deepEqual(loopLateness(empty, 10), { p50: 0, p99: 0, max: 0 });
});
