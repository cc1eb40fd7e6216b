// Model-based random test of the swap (issue 13; the pattern of
// recover-model.test.ts). Each sequence, from one seed:
//  1. a random tree (test/helpers/model-tree: hard links across subtrees,
//     xattrs, sparse and multi-block files, symlinks, a fifo, odd names,
//     modes, owners, ns times) built with the same system calls on a mirrored
//     mount and in a native directory: the model of the point in time;
//  2. `strata sync`, an archive snapshot: that record is the point; and a
//     local checkpoint of the same moment (`strata checkpoint create`);
//  3. random operations on the mount (test/helpers/model-ops) — the tree
//     moves on; its picture is the pre-swap model;
//  4. `strata swap prepare --from archive:<the point's record>` or, a random
//     choice, `--from checkpoint:<the checkpoint>` (its T0 tree read off the
//     live store and its pre-image log), sometimes
//     with the daemon killed (kill -9, STRATA_CRASH_AT=swap-prepare-object:N)
//     part-way and the prepare rerun after a restart (it resumes);
//  5. `strata swap commit`: the mount must equal the native copy of the point
//     (names, types, modes, owners, ns mtimes, xattrs, link counts, contents),
//     and after `strata sync` the archive must equal the new store (verify);
//  6. `strata swap back`: the mount must equal the pre-swap picture, the
//     archive again equal to it.
// Run: npx ava dist/test/integration/swap-model.test.js (3 sequences, random seeds);
//   STRATA_SWAP_MODEL_SEED=<seed> replays one; STRATA_SWAP_MODEL_RUNS=<n> runs n.
import test from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { strata } from '../helpers/mount.js';
import { assertConverged, mount, syncMount } from '../helpers/mirror.js';
import { Rng, diffPictures, livePicture } from '../helpers/model-tree.js';
import { describeOp, outcome, randomOp, scan } from '../helpers/model-ops.js';
import { commit, prepare, swapModelStart, swapStatus } from '../helpers/swap.js';

const RUNS = Number(process.env.STRATA_SWAP_MODEL_RUNS ?? 3);
const FIRST = process.env.STRATA_SWAP_MODEL_SEED !== undefined ? Number(process.env.STRATA_SWAP_MODEL_SEED) : Math.floor(Math.random() * 2 ** 31);

for (let run = 0; run < RUNS; run++) {
  const seed = FIRST + run;
  test(`model-based: random tree, random ops, swap to a past record or a checkpoint and back (seed ${seed})`, async (t) => {
    t.timeout(600_000);
    const rng = new Rng(seed);
    const log: string[] = [];
    t.teardown(() => { if (!t.passed) t.log(`seed ${seed}; last steps:\n${log.slice(-30).join('\n')}`); });
    const { m, model, snap } = await swapModelStart(t, rng);
    const point = await livePicture(model, { nlink: true });
    t.deepEqual(diffPictures(point, await livePicture(m.mnt, { nlink: true })), [], 'the build is the same on both sides');
    const ops = rng.int(5, 40);
    for (let i = 0; i < ops; i++) {
      const op = randomOp(rng, await scan(m.mnt));
      log.push(describeOp(op));
      await outcome(m.mnt, op, true);
    }
    const before = await livePicture(m.mnt, { nlink: true });

    const spare = join(m.base, 'spare');
    mkdirSync(spare);
    const fromCheckpoint = rng.chance(0.5);
    const from = fromCheckpoint ? 'checkpoint:point' : `archive:${snap.record}`;
    log.push(`source ${from}`);
    t.log(`source ${from}`);
    if (rng.chance(0.5)) {
      const nth = rng.int(1, 30);
      log.push(`prepare with a crash at swap-prepare-object:${nth}`);
      t.log(`prepare with a crash at swap-prepare-object:${nth}`);
      t.is(strata(['unmount', m.mnt]).status, 0);
      t.is(strata(['mount', ...m.args, m.mnt], { STRATA_CRASH_AT: `swap-prepare-object:${nth}` }).status, 0);
      const p = prepare(m.mnt, spare, from);
      if (p.status !== 0) {
        t.regex(p.out, /stopped answering/);
        for (let i = 0; i < 100 && strata(['status', m.mnt]).status === 0; i++) await new Promise((r) => setTimeout(r, 50));
        strata(['unmount', m.mnt]);
        mount(m);
        log.push('restarted after the crash');
      } else {
        // Fewer objects than nth: no crash; restart without the crash point anyway.
        t.is(strata(['unmount', m.mnt]).status, 0);
        mount(m);
      }
    }
    const p = prepare(m.mnt, spare, from);
    t.is(p.status, 0, p.out);
    t.is(swapStatus(m.mnt).prepare?.state, 'ready');
    const c = commit(m.mnt);
    t.is(c.status, 0, c.out);
    // A checkpoint is not a point of the archive: the archive is brought to it by comparison.
    t.is(c.result?.handover?.kind, fromCheckpoint ? 'reconcile' : 'rollback', `how the archive was brought to the point (${c.result?.handover?.detail ?? ''})`);
    log.push('committed');
    t.deepEqual(diffPictures(point, await livePicture(m.mnt, { nlink: true }), 'model at the point', 'after swap commit'), []);
    syncMount(m);
    assertConverged(t, { ...m, store: spare }, 'after commit');
    const b = commit(m.mnt, [], 'back');
    t.is(b.status, 0, b.out);
    t.deepEqual(diffPictures(before, await livePicture(m.mnt, { nlink: true }), 'before the swap', 'after swap back'), []);
    syncMount(m);
    assertConverged(t, m, 'after swap back');
  });
}
