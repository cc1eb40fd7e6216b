// Stress reproduction: a tree walker (readdir, then lstat and llistxattr of
// every name just listed) must never get ENOENT on a name it just listed,
// across `strata swap commit` of a mirrored mount (file:// archive; the
// archive's head is rolled back to the source snapshot and rebuilt in the
// background), after the commit, and after a remount.
// Variants per iteration: 'walker' — a walker process runs through the
// commit and for a while after; 'after' — no walker during the commit, one
// walk right after it, then a remount and one walk more.
// 'model' — the extended swap-model flow (below).
// Run: npx ava dist/test/integration/swap-walk.test.js; STRATA_SWAP_WALK_RUNS=<n> iterations (default 1 in the suite);
// STRATA_SWAP_WALK_SEED=<seed> the first seed of the model variant.
// Results on 2026-12-02 (Linux 6.18, 2 shared cores): walker 35 runs, after+remount 29, model 30 (19 of
// them with one-row rebuild pages, the rebuild seen still under way right after the commit in most, once
// at the kill -9 and resumed after the restart): no error in any walk begun after the commit returned.
// Walks under way across the exchange get ENOENT on names of the pre-swap tree (listed from the old
// directory, looked up in the new: expected, as for a tree removed under a walker) and, 3 times in 35
// runs, ESTALE from opendir of a directory looked up before the exchange (not asserted; see the report).
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { strata } from '../helpers/mount.js';
import { killPrimary, mount, syncMount, type MirroredMount } from '../helpers/mirror.js';
import { Rng, diffPictures, livePicture } from '../helpers/model-tree.js';
import { outcome, randomOp, scan } from '../helpers/model-ops.js';
import { setxattr } from '../../src/native/index.js';
import { commit, prepare, snapshotNow, swapModelStart, swapStatus, withSwapMount, sleepMs } from '../helpers/swap.js';
import { walkOnce, type WalkReport } from '../helpers/swap-walker.js';

const RUNS = Number(process.env.STRATA_SWAP_WALK_RUNS ?? 1);
// The daemons started here rebuild a rolled-back head one row per page (src/archive/worker.ts), so that the
// rebuild is still under way while the tests walk the mount (each test logs how far it was).
process.env['STRATA_REBUILD_PAGE_ROWS'] ??= '1';
const WALKER = fileURLToPath(new URL('../helpers/swap-walker.js', import.meta.url));

/** About 400 files in 60 nested directories, with an xattr on every third file. */
async function buildTree(root: string, tag: string): Promise<void> {
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 5; b++) {
      const d = join(root, `d${a}`, `s${b}`);
      mkdirSync(d, { recursive: true });
      for (let f = 0; f < 8; f++) {
        const p = join(d, `f${f}`);
        writeFileSync(p, `${tag} ${a}/${b}/${f}\n`);
        if (f % 3 === 0) await setxattr(p, 'user.k', Buffer.from(`${tag}${f}`), 0);
      }
    }
  }
}

/** The file:// archive's rollback rebuild, if one is under way: "phase, rows copied", else "none". */
function rebuildState(m: MirroredMount): string {
  const db = new Database(join(fileURLToPath(m.archiveUrl), 'archive.db'), { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const r = db.prepare('SELECT phase, rows_copied FROM rebuilds').get() as { phase: string; rows_copied: number } | undefined;
    return r === undefined ? 'none' : `${r.phase}, ${r.rows_copied} rows copied`;
  } finally {
    db.close();
  }
}

/** Names of the point's tree that the pre-swap tree lacks: looked up before the swap, they are negative dentries in the kernel. */
const PROBES: string[] = ['d9', 'd8', 'd9/s0', 'd8/s1/f0'];
for (let a = 0; a < 8; a++) for (let b = 0; b < 5; b++) PROBES.push(`d${a}/s${b}/f7`, `d${a}/s${b}/f6`);

function startWalker(t: ExecutionContext, dir: string, mnt: string): { mark(): void; stop(): Promise<WalkReport> } {
  const stopFile = join(dir, 'stop');
  const markFile = join(dir, 'committed');
  const out = join(dir, 'walk.json');
  const p = spawn(process.execPath, [WALKER, mnt, stopFile, out, '--loop', PROBES.join('\n'), markFile], { stdio: 'inherit' });
  // A test that fails before stop(): the walker must not outlive it.
  t.teardown(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL'); });
  return {
    mark: () => writeFileSync(markFile, ''),
    stop: () => new Promise((resolve) => {
      writeFileSync(stopFile, '');
      const done = (): void => resolve(existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) as WalkReport : { walks: 0, names: 0, errors: [], walksAfter: 0, errorsAfter: [`walker exited without a report (code ${p.exitCode})`] });
      if (p.exitCode !== null) done(); else p.once('exit', done);
    }),
  };
}

async function oneWalk(mnt: string, probes: readonly string[] = []): Promise<WalkReport> {
  const rep: WalkReport = { walks: 0, names: 0, errors: [], walksAfter: 0, errorsAfter: [] };
  await walkOnce(mnt, rep, Date.now(), probes);
  return rep;
}

async function prepared(t: ExecutionContext): Promise<{ m: MirroredMount; spare: string }> {
  const m = withSwapMount(t);
  await buildTree(m.mnt, 'point');
  syncMount(m);
  const snap = snapshotNow(m);
  // The tree moves on: different contents, some names gone (renamed, removed), new ones.
  await buildTree(m.mnt, 'later');
  rmSync(join(m.mnt, 'd9'), { recursive: true });
  renameSync(join(m.mnt, 'd8'), join(m.mnt, 'd8x'));
  for (let a = 0; a < 8; a++) {
    for (let b = 0; b < 5; b++) {
      rmSync(join(m.mnt, `d${a}`, `s${b}`, 'f7'));
      renameSync(join(m.mnt, `d${a}`, `s${b}`, 'f6'), join(m.mnt, `d${a}`, `s${b}`, 'g6'));
    }
  }
  mkdirSync(join(m.mnt, 'extra', 'deep'), { recursive: true });
  for (let f = 0; f < 50; f++) writeFileSync(join(m.mnt, 'extra', 'deep', `n${f}`), `${f}\n`);
  syncMount(m);
  const spare = join(m.base, 'spare');
  mkdirSync(spare);
  const p = prepare(m.mnt, spare, `archive:${snap.record}`);
  if (p.status !== 0) throw new Error(p.out);
  for (let i = 0; i < 600 && swapStatus(m.mnt).prepare?.state !== 'ready'; i++) sleepMs(100);
  return { m, spare };
}

for (let run = 0; run < RUNS; run++) {
  test.serial(`swap commit: a walker never gets ENOENT on a name it just listed (walker across the commit, run ${run})`, async (t) => {
    t.timeout(300_000);
    const { m } = await prepared(t);
    const dir = join(m.base, 'walk');
    mkdirSync(dir);
    const w = startWalker(t, dir, m.mnt);
    sleepMs(300);
    const c = commit(m.mnt);
    t.is(c.status, 0, c.out);
    t.is(c.result?.handover?.kind, 'rollback', c.result?.handover?.detail ?? c.out);
    w.mark();
    t.log(`rebuild right after the commit: ${rebuildState(m)}`);
    sleepMs(2000);
    const rep = await w.stop();
    t.log(`walks ${rep.walks} (${rep.walksAfter} begun after the commit returned), names ${rep.names}; errors of walks under way across the exchange: ${rep.errors.length}${rep.errors.length > 0 ? ` (first: ${rep.errors[0]})` : ''}`);
    t.true(rep.walksAfter > 0);
    t.deepEqual(rep.errorsAfter, [], 'walks begun after the commit returned');
    const after = await oneWalk(m.mnt);
    t.deepEqual(after.errorsAfter, [], 'a walk after the walker');
  });

  test.serial(`swap commit: a walk right after the commit and after a remount lists only names that exist (run ${run})`, async (t) => {
    t.timeout(300_000);
    const { m } = await prepared(t);
    await oneWalk(m.mnt, PROBES);
    const c = commit(m.mnt);
    t.is(c.status, 0, c.out);
    t.is(c.result?.handover?.kind, 'rollback', c.result?.handover?.detail ?? c.out);
    const rb = rebuildState(m);
    const first = await oneWalk(m.mnt);
    t.log(`rebuild right after the commit: ${rb}; after the walk: ${rebuildState(m)}`);
    t.deepEqual(first.errorsAfter, [], 'right after the commit');
    t.is(strata(['unmount', m.mnt]).status, 0);
    mount(m);
    const second = await oneWalk(m.mnt);
    t.deepEqual(second.errorsAfter, [], 'after a remount');
    t.is(first.names, second.names);
  });
}

// The extended swap-model flow (the source: the snapshot's record, or a local checkpoint of the same moment): a random tree (hard links, odd names, xattrs, a fifo, symlinks) and random
// operations before the snapshot's record moves on; commit to that record (rollback); a walk of the mount right
// after; a remount; random operations on mount and model; kill -9; restart; a walk. Any walk error fails.
const MODEL_FIRST = Number(process.env.STRATA_SWAP_WALK_SEED ?? Math.floor(Math.random() * 2 ** 31));
for (let run = 0; run < RUNS; run++) {
  const seed = MODEL_FIRST + run;
  test.serial(`swap commit, remount, ops, kill -9, restart: every walk sees only names that exist (seed ${seed})`, async (t) => {
    t.timeout(300_000);
    const rng = new Rng(seed);
    const { m, model, snap } = await swapModelStart(t, rng);
    for (let i = rng.int(5, 40); i > 0; i--) await outcome(m.mnt, randomOp(rng, await scan(m.mnt)), true);
    await oneWalk(m.mnt, PROBES);
    const spare = join(m.base, 'spare');
    mkdirSync(spare);
    const fromCheckpoint = rng.chance(0.5);
    t.log(`source ${fromCheckpoint ? 'checkpoint:point' : `archive:${snap.record}`}`);
    const p = prepare(m.mnt, spare, fromCheckpoint ? 'checkpoint:point' : `archive:${snap.record}`);
    t.is(p.status, 0, p.out);
    const c = commit(m.mnt);
    t.is(c.status, 0, c.out);
    t.is(c.result?.handover?.kind, fromCheckpoint ? 'reconcile' : 'rollback', c.result?.handover?.detail ?? c.out);
    const rb = rebuildState(m);
    const w1 = await oneWalk(m.mnt);
    t.log(`rebuild right after the commit: ${rb}; after the walk: ${rebuildState(m)}`);
    t.deepEqual(w1.errorsAfter, [], 'right after the commit');
    t.deepEqual(diffPictures(await livePicture(model, { nlink: true }), await livePicture(m.mnt, { nlink: true })), [], 'after the commit');
    t.is(strata(['unmount', m.mnt]).status, 0);
    mount(m);
    const w2 = await oneWalk(m.mnt);
    t.deepEqual(w2.errorsAfter, [], 'after the remount');
    for (let i = rng.int(1, 8); i > 0; i--) {
      const op = randomOp(rng, await scan(model));
      await outcome(model, op, false);
      await outcome(m.mnt, op, true);
    }
    const w3 = await oneWalk(m.mnt);
    t.deepEqual(w3.errorsAfter, [], 'after the ops');
    const rbKill = rebuildState(m);
    await killPrimary(m);
    mount(m);
    t.log(`rebuild at the kill: ${rbKill}; after the restart: ${rebuildState(m)}`);
    const w4 = await oneWalk(m.mnt);
    t.deepEqual(w4.errorsAfter, [], 'after kill -9 and a restart');
    // (No picture comparison here: the ops ran on the model and the mount at different moments, so directory mtimes differ.)
  });
}
