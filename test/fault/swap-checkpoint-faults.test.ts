// kill -9 of the daemon while `strata swap prepare --from checkpoint:NAME`
// writes the spare (src/swap/checkpoint-writer.ts): the restart keeps the
// checkpoint, the same prepare resumes (keeps the objects in place, removes
// the half-made one) and the committed tree is the checkpoint's exactly.
import test from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sh, strata, mountpointIsMounted } from '../helpers/mount.js';
import { manifest } from '../helpers/recover.js';
import { commit, prepare, swapStatus } from '../helpers/swap.js';
import { createCheckpoint, strataJson } from '../helpers/checkpoint.js';
import type { CheckpointListing } from '../../src/checkpoint-service/manager.js';
import { withMount } from '../helpers/mount.js';

const TREE = 'mkdir -p a/b c gone && for i in $(seq 1 12); do head -c $((i * 90000)) /dev/urandom > a/f$i; done && ln a/f1 c/l1 && ln a/f2 a/b/l2 && ln -s a/f2 s && echo x > gone/x && mkfifo c/p';
const CHANGES = 'for i in 1 3 5; do dd if=/dev/urandom of=a/f$i bs=1000 count=2 seek=10 conv=notrunc status=none; done && rm -r gone c/l1 && mv a/b b-moved && echo new > a/new && echo more >> a/f12 && truncate -s 10 a/f11';

function restart(store: string, mnt: string): void {
  for (let i = 0; i < 100 && mountpointIsMounted(mnt) && strata(['status', mnt]).status === 0; i++) sh('sleep 0.05', '/');
  strata(['unmount', mnt]);
  const r = strata(['mount', '--store', store, mnt]);
  if (r.status !== 0) throw new Error(`remount failed: ${r.stderr}`);
}

for (const nth of [2, 9, 17]) {
  test(`kill -9 during a prepare from a checkpoint (object ${nth}): the rerun resumes and the result is the checkpoint's tree`, (t) => {
    const m = withMount(t);
    const r = sh(TREE, m.mnt);
    t.is(r.status, 0, r.stderr);
    createCheckpoint(m.mnt, 'ck');
    const good = manifest(m.mnt);
    t.is(sh(CHANGES, m.mnt).status, 0);
    const changed = manifest(m.mnt);
    // The same store, now with the crash point.
    t.is(strata(['unmount', m.mnt]).status, 0);
    t.is(strata(['mount', '--store', m.store, m.mnt], { STRATA_CRASH_AT: `swap-prepare-object:${nth}` }).status, 0);
    const spare = join(m.base, 'spare');
    mkdirSync(spare);
    const p = prepare(m.mnt, spare, 'checkpoint:ck');
    t.not(p.status, 0, 'the daemon died during the prepare');
    t.regex(p.out, /stopped answering/);
    restart(m.store, m.mnt);
    t.is(manifest(m.mnt), changed, 'the live tree is untouched');
    t.is(swapStatus(m.mnt).prepare?.state, 'interrupted');
    const cks = strataJson<{ checkpoints: CheckpointListing[] }>(['checkpoint', 'list', m.mnt]).checkpoints;
    t.deepEqual(cks.map((c) => [c.name, c.status]), [['ck', 'valid']], 'the checkpoint survives the crash');
    const again = prepare(m.mnt, spare, 'checkpoint:ck');
    t.is(again.status, 0, again.out);
    const st = swapStatus(m.mnt).prepare!;
    t.is(st.state, 'ready');
    t.true(st.progress.kept > 0, 'objects placed before the crash are kept');
    t.true(st.resumed);
    const c = commit(m.mnt);
    t.is(c.status, 0, c.out);
    t.is(manifest(m.mnt), good, 'the tree is the checkpoint\'s exactly');
    t.is(commit(m.mnt, [], 'back').status, 0);
    t.is(manifest(m.mnt), changed);
  });
}
