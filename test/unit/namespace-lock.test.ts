// The adapter's namespace lock (src/fuse/namespace-lock.ts), against a model:
// seeded random mixes of requests (shared, on a path) and renames (exclusive,
// on a source and a target) with random durations over a small tree. Checked:
// a rename never runs beside a request at or below its names or beside
// another rename; two holders that conflict run in arrival order (the later
// one starts after the earlier one ends); a request that conflicts with no
// earlier holder starts at once (requests elsewhere never wait for a rename);
// every holder runs, also when one throws.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { NamespaceLock, type NamespaceMode, type NamespacePaths } from '../../src/fuse/namespace-lock.js';
import { Rng } from '../helpers/model-tree.js';

const SEED = Number(process.env.STRATA_NSLOCK_SEED ?? Date.now() % 1_000_000_007);
const PATHS = ['/', '/a', '/a/b', '/a/b/c', '/a/d', '/e', '/e/f', '/ab', '/a/bc'];

function within(p: string, q: string): boolean {
  return p === q || p.startsWith(q === '/' ? '/' : `${q}/`);
}

/** The model's conflict rule, written out independently of the lock's. */
function conflict(a: { mode: NamespaceMode; paths: NamespacePaths }, b: { mode: NamespaceMode; paths: NamespacePaths }): boolean {
  if (a.mode === 'none' || b.mode === 'none') return false;
  if (a.mode === 'exclusive' && b.mode === 'exclusive') return true;
  if (a.mode === 'shared' && b.mode === 'shared') return false;
  if (a.paths === 'all' || b.paths === 'all') return true;
  const [s, x] = a.mode === 'shared' ? [a.paths, b.paths as readonly string[]] : [b.paths, a.paths as readonly string[]];
  return s.some((p) => x.some((q) => within(p, q)));
}

test(`namespace lock against a model: exclusion by path, arrival order among conflicting holders, no wait elsewhere (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED);
  for (let round = 0; round < 30; round++) {
    const lock = new NamespaceLock();
    type H = { i: number; mode: NamespaceMode; paths: NamespacePaths; start?: number; end?: number; immediate?: boolean };
    const holders: H[] = [];
    const running = new Set<H>();
    let clock = 0;
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      const kind = rng.int(0, 9);
      const mode: NamespaceMode = kind < 2 ? 'exclusive' : kind < 3 ? 'none' : 'shared';
      const paths: NamespacePaths = mode === 'exclusive'
        ? [rng.pick(PATHS.slice(1)), rng.pick(PATHS.slice(1))]
        : rng.chance(0.03) ? 'all' : Array.from({ length: rng.int(1, 2) }, () => rng.pick(PATHS));
      const h: H = { i, mode, paths };
      holders.push(h);
      const mustWait = holders.slice(0, i).some((o) => o.end === undefined && conflict(h, o));
      const hold = rng.int(0, 3);
      const fails = rng.chance(0.1);
      let startedSync = false;
      const p = lock.run(mode, paths, async () => {
        startedSync = true;
        h.start = clock++;
        for (const o of running) t.false(conflict(h, o), `round ${round}: ${h.mode} ${JSON.stringify(h.paths)} ran beside ${o.mode} ${JSON.stringify(o.paths)}`);
        running.add(h);
        await sleep(hold);
        running.delete(h);
        h.end = clock++;
        if (fails) throw new Error('holder failed');
      }).catch(() => undefined);
      // The lock starts a holder within run()'s first microtasks when nothing before it conflicts.
      await Promise.resolve();
      await Promise.resolve();
      h.immediate = startedSync;
      if (!mustWait) t.true(h.immediate, `round ${round}: holder ${i} (${mode} ${JSON.stringify(paths)}) conflicts with nothing before it, yet waited`);
      runs.push(p);
      if (rng.chance(0.5)) await sleep(rng.int(0, 2));
    }
    await Promise.all(runs);
    t.deepEqual(lock.size, { active: 0, waiting: 0 });
    for (const h of holders) t.true(h.end !== undefined, `round ${round}: holder ${h.i} never ran`);
    for (const a of holders) {
      for (const b of holders) {
        if (b.i <= a.i || !conflict(a, b)) continue;
        t.true(b.start! > a.end!, `round ${round}: holder ${b.i} (${b.mode} ${JSON.stringify(b.paths)}) started before the earlier conflicting ${a.i} (${a.mode} ${JSON.stringify(a.paths)}) ended`);
      }
    }
  }
});

test('namespace lock: a request that never ends holds up a rename of its directory and requests below it, not requests elsewhere', async (t) => {
  const lock = new NamespaceLock();
  let release!: () => void;
  const long = lock.run('shared', ['/a/b'], () => new Promise<void>((r) => { release = r; }));
  let renamed = false;
  const rename = lock.run('exclusive', ['/a', '/z'], async () => { renamed = true; });
  let below = false;
  const underA = lock.run('shared', ['/a/c'], async () => { below = true; t.true(renamed, 'a request below the rename ran after it'); });
  t.is(await lock.run('shared', ['/e'], async () => 'elsewhere'), 'elsewhere', 'a request elsewhere runs at once');
  t.is(await lock.run('none', [], async () => 'read'), 'read', 'a handle-only request is never held');
  await sleep(20);
  t.false(renamed);
  t.false(below);
  release();
  await Promise.all([long, rename, underA]);
  t.true(renamed && below);
});

test('namespace lock: paths are asked for only when a rename is there, and again after a rename moved them', async (t) => {
  const lock = new NamespaceLock();
  // A node table in miniature: the request's node is /A/x until the rename of /A to /B ends.
  let where = '/A/x';
  let asked = 0;
  const nodePath = (): readonly string[] => { asked++; return [where]; };
  await lock.run('shared', nodePath, async () => undefined);
  t.is(asked, 0, 'no rename: the paths are never asked for');

  let releaseR1!: () => void;
  const r1 = lock.run('exclusive', ['/A', '/B'], () => new Promise<void>((r) => { releaseR1 = r; }));
  let releaseH!: () => void;
  let hRunning = false;
  const h = lock.run('shared', nodePath, () => { hRunning = true; return new Promise<void>((r) => { releaseH = r; }); });
  await sleep(5);
  t.false(hRunning, 'the request below the rename waits for it');
  where = '/B/x';
  releaseR1();
  await r1;
  await sleep(5);
  t.true(hRunning);
  // A rename of /B must now wait for the request: its paths are asked again, and are /B/x.
  let r2Ran = false;
  const r2 = lock.run('exclusive', ['/B', '/C'], async () => { r2Ran = true; });
  await sleep(5);
  t.false(r2Ran, 'a rename of where the request now is waits for it');
  releaseH();
  await Promise.all([h, r2]);
  t.true(r2Ran);
});
