// The adapter's namespace lock (src/fuse/namespace-lock.ts), against a model:
// seeded random mixes of shared and exclusive holders with random durations.
// An exclusive holder never overlaps anyone, shared ones overlap freely, every
// holder runs, a holder that throws releases the lock, and neither kind
// starves: a rename waits only for the requests under way or let go before it,
// and a request that came after a rename runs after it, unless it was let go
// with the others waiting at the end of an earlier rename.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { NamespaceLock, type NamespaceMode } from '../../src/fuse/namespace-lock.js';
import { Rng } from '../helpers/model-tree.js';

const SEED = Number(process.env.STRATA_NSLOCK_SEED ?? Date.now() % 1_000_000_007);

test(`namespace lock: exclusive alone, shared together, in arrival order around each exclusive holder (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED);
  for (let round = 0; round < 20; round++) {
    const lock = new NamespaceLock();
    let readers = 0;
    let writers = 0;
    let maxReaders = 0;
    const events: string[] = [];
    const runs: Promise<unknown>[] = [];
    const modes: NamespaceMode[] = [];
    for (let i = 0; i < 40; i++) {
      const mode: NamespaceMode = rng.chance(0.25) ? 'exclusive' : rng.chance(0.1) ? 'none' : 'shared';
      modes.push(mode);
      const hold = rng.int(0, 3);
      const fails = rng.chance(0.1);
      runs.push(lock.run(mode, async () => {
        if (mode === 'exclusive') {
          t.is(readers, 0, `round ${round}: a rename ran beside a request`);
          t.is(writers, 0, `round ${round}: two renames at once`);
          writers++;
        } else if (mode === 'shared') {
          t.is(writers, 0, `round ${round}: a request ran beside a rename`);
          readers++;
          maxReaders = Math.max(maxReaders, readers);
        }
        events.push(`start ${i}`);
        await sleep(hold);
        if (mode === 'exclusive') writers--;
        else if (mode === 'shared') readers--;
        events.push(`end ${i}`);
        if (fails) throw new Error('holder failed');
      }).catch(() => undefined));
      if (rng.chance(0.5)) await sleep(rng.int(0, 2));
    }
    await Promise.all(runs);
    t.is(events.filter((e) => e.startsWith('end')).length, 40, 'every holder ran');
    // Order around exclusive holders: a holder that came after rename i starts after it, except a
    // request let go, with the others waiting then, at the end of a rename that came before i.
    const startAt = new Map(events.flatMap((e, k) => (e.startsWith('start') ? [[Number(e.slice(6)), k] as const] : [])));
    for (let i = 0; i < 40; i++) {
      if (modes[i] !== 'exclusive') continue;
      for (let j = i + 1; j < 40; j++) {
        if (modes[j] === 'none' || startAt.get(j)! > startAt.get(i)!) continue;
        const lastEnd = events.slice(0, startAt.get(j)!).reverse().find((e) => e.startsWith('end'));
        const k = lastEnd === undefined ? -1 : Number(lastEnd.slice(4));
        t.true(modes[j] === 'shared' && k >= 0 && k < i && modes[k] === 'exclusive',
          `round ${round}: holder ${j} (${modes[j]}) started before the rename ${i} that came first (after ${lastEnd ?? 'nothing'})`);
      }
    }
    t.true(maxReaders >= 1);
  }
});

test('namespace lock: a shared holder that never ends keeps a rename waiting, and requests after that rename wait too; they all go once it ends', async (t) => {
  const lock = new NamespaceLock();
  let release!: () => void;
  const long = lock.run('shared', () => new Promise<void>((r) => { release = r; }));
  let renamed = false;
  let after = false;
  const rename = lock.run('exclusive', async () => { renamed = true; });
  const later = lock.run('shared', async () => { after = true; t.true(renamed, 'the later request ran after the rename'); });
  const handleOnly = lock.run('none', async () => 'read');
  t.is(await handleOnly, 'read', 'a handle-only request is never held');
  await sleep(20);
  t.false(renamed);
  t.false(after);
  release();
  await Promise.all([long, rename, later]);
  t.true(renamed && after);
});
