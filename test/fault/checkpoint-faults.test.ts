// Checkpoints under faults: kill -9 of the daemon while programs change the
// tree and while a rollback runs (seeded random changes, and a program that
// keeps a handle opened before the checkpoint and overwrites the same blocks
// again and again, most of them on the FUSE thread's direct path; after a
// remount and a rerun the tree equals a native copy taken at checkpoint
// time), a copy store
// that fills up (the checkpoint is invalidated, writes go on), and a copy store
// that is gone at mount time.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { withMount, strata, CLI, type TestMount } from '../helpers/mount.js';
import { livePicture, Rng } from '../helpers/model-tree.js';
import { randomStep } from '../helpers/checkpoint-ops.js';
import { createCheckpoint, mountActions, rollbackTo, strataJson } from '../helpers/checkpoint.js';

const SEEDS = (process.env['STRATA_CK_SEEDS'] ?? '11,12,13').split(',').map(Number);

function daemonPid(mnt: string): number {
  return strataJson<{ pid: number }>(['status', mnt]).pid;
}

function killDaemon(mnt: string): void {
  process.kill(daemonPid(mnt), 'SIGKILL');
}

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try { process.kill(pid, 0); } catch { return; }
    await new Promise((r) => setTimeout(r, 10));
  }
}

function remount(m: TestMount): void {
  const r = strata(['mount', '--store', m.store, m.mnt]);
  if (r.status !== 0) throw new Error(`remount failed: ${r.stderr}`);
}

for (const seed of SEEDS) {
  test(`seed ${seed}: kill -9 while the tree changes and again during the rollback; the rerun equals a native copy taken at checkpoint time`, async (t) => {
    const m = withMount(t);
    const rng = new Rng(seed);
    const act = mountActions(m.mnt);
    await fsp.mkdir(join(m.mnt, 't'));
    for (let i = 0; i < 40; i++) await randomStep(rng, m.mnt, ['/t'], act);
    await fsp.writeFile(join(m.mnt, 't', 'big'), Buffer.alloc(40 * 65536, 3));
    await fsp.writeFile(join(m.mnt, 't', 'hot'), Buffer.alloc(24 * 65536, 5));
    await fsp.writeFile(join(m.mnt, 't', 'seq'), Buffer.alloc(24 * 1048576, 6));
    // A writer with a handle opened before the checkpoint: after its first write
    // of a block, the FUSE thread answers its writes there without the core.
    const hotBlocks = Array.from({ length: 5 }, () => rng.int(0, 27));
    // Every other write goes through 'seq' in order (256 KiB at a time, round and round): the
    // blocks ahead of it are saved in the background and its writes answered on the FUSE thread.
    const plan = Array.from({ length: 20000 }, (_, i) => (i % 2 === 0
      ? [0, rng.pick(hotBlocks) * 65536 + rng.int(0, 60000), rng.int(1, 5000), i & 0xff]
      : [1, ((i - 1) / 2 * 262144) % (24 * 1048576), 262144, i & 0xff]));
    const writer = spawn('python3', ['-c', `
import os, sys, json
fds = [os.open(p, os.O_RDWR) for p in sys.argv[1:]]
plan = json.loads(sys.stdin.readline())
print('open', flush=True)
sys.stdin.readline()
n = 0
try:
    for f, off, size, fill in plan:
        os.pwrite(fds[f], bytes([fill]) * size, off)
        n += 1
except OSError as e:
    print('stopped', n, e.errno, flush=True)
else:
    print('finished', n, flush=True)
`, join(m.mnt, 't', 'hot'), join(m.mnt, 't', 'seq')], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => { if (writer.exitCode === null) writer.kill('SIGKILL'); });
    let said = '';
    writer.stdout.on('data', (c: Buffer) => { said += c.toString(); });
    const writerDone = new Promise((r) => writer.once('close', r));
    writer.stdin.write(`${JSON.stringify(plan)}\n`);
    while (!said.includes('open')) await new Promise((r) => setTimeout(r, 10));
    createCheckpoint(m.mnt, 'ck');
    t.is(spawnSync('cp', ['-a', join(m.mnt, 't'), join(m.native, 't0')]).status, 0);
    const expected = await livePicture(join(m.native, 't0'), { nlink: true });
    writer.stdin.write('go\n');
    // Changes until the daemon dies at a random point.
    const pid = daemonPid(m.mnt);
    let directAtKill = -1;
    setTimeout(() => {
      // How many writes the FUSE thread answered itself under the checkpoint, read right before the kill.
      try { directAtKill = strataJson<{ checkpointWrites: { direct: number } }>(['status', m.mnt]).checkpointWrites.direct; } catch { /* asked again below */ }
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }, 200 + rng.int(0, 1500));
    let steps = 0;
    for (let i = 0; i < 2000; i++) {
      const big = rng.int(0, 3) === 0;
      if (big) await act.write('/t/big', rng.int(0, 39) * 65536 + rng.int(0, 100), Buffer.alloc(70_000, i & 0xff)).catch(() => {});
      else await randomStep(rng, m.mnt, ['/t'], act).catch(() => null);
      steps++;
      try { process.kill(pid, 0); } catch { break; }
    }
    await waitGone(pid);
    await writerDone;
    remount(m);
    t.is(strataJson<{ checkpoints: { name: string; status: string }[] }>(['checkpoint', 'list', m.mnt]).checkpoints[0]?.status, 'valid');
    // A rollback killed part way, then run again.
    const pid2 = daemonPid(m.mnt);
    const child = spawn(process.execPath, [CLI, 'rollback', m.mnt, '--to', 'ck', join(m.mnt, 't')], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, rng.int(150, 450)));
    try { process.kill(pid2, 'SIGKILL'); } catch { /* gone */ }
    await exited;
    await waitGone(pid2);
    remount(m);
    const r = rollbackTo(m.mnt, 'ck', [join(m.mnt, 't')]);
    t.deepEqual(await livePicture(join(m.mnt, 't'), { nlink: true }), expected, `seed ${seed}: ${steps} steps before the kill, writer: ${said.trim()}; ${r.changed.length} changes in the rerun`);
    t.deepEqual(rollbackTo(m.mnt, 'ck', [join(m.mnt, 't')], true).changed, []);
    // The writer's overwrites of saved blocks went by the FUSE thread's direct path.
    t.true(directAtKill > 0, `writes on the FUSE thread under the checkpoint before the kill: ${directAtKill}`);
  });
}

test('a copy store that fills up: the checkpoint is marked invalid (status, log), writes keep working; rollback refuses it', async (t) => {
  const m = withMount(t);
  const cs = join(m.base, 'cs');
  await fsp.mkdir(cs);
  t.is(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', cs]).status, 0);
  t.teardown(() => { spawnSync('umount', ['-l', cs]); });
  const data = Buffer.alloc(4 * 1048576, 1);
  await fsp.writeFile(join(m.mnt, 'f'), data);
  createCheckpoint(m.mnt, 'small', ['--copy-store', cs]);
  const next = Buffer.alloc(4 * 1048576, 2);
  await fsp.writeFile(join(m.mnt, 'g'), 'new file');
  const fh = await fsp.open(join(m.mnt, 'f'), 'r+');
  await fh.write(next, 0, next.length, 0);
  await fh.close();
  t.deepEqual(await fsp.readFile(join(m.mnt, 'f')), next);
  const list = strataJson<{ checkpoints: { name: string; status: string; reason?: string }[] }>(['checkpoint', 'list', m.mnt]).checkpoints;
  t.is(list[0]?.status, 'invalid');
  t.regex(list[0]?.reason ?? '', /copy store full/);
  t.regex(strata(['status', m.mnt]).stdout, /checkpoints {2}small INVALID \(copy store full/);
  t.regex(await fsp.readFile(join(m.store, '.strata', 'daemon.log'), 'utf8'), /checkpoint invalidated/);
  const r = strata(['rollback', m.mnt, '--to', 'small']);
  t.is(r.status, 1);
  t.regex(r.stderr, /invalid/);
  t.deepEqual(await fsp.readFile(join(m.mnt, 'f')), next);
  // With no valid checkpoint left, the FUSE thread answers writes again.
  t.is(strata(['checkpoint', 'delete', m.mnt, 'small']).status, 0);
});

test('a copy store that is gone when the daemon starts: the checkpoint is invalid, nothing else changes', async (t) => {
  const m = withMount(t);
  const cs = join(m.base, 'elsewhere');
  await fsp.mkdir(cs);
  await fsp.writeFile(join(m.mnt, 'f'), 'one');
  createCheckpoint(m.mnt, 'away', ['--copy-store', cs]);
  await fsp.writeFile(join(m.mnt, 'f'), 'two');
  t.is(strata(['unmount', m.mnt]).status, 0);
  await fsp.rm(cs, { recursive: true });
  remount(m);
  const c = strataJson<{ checkpoints: { status: string; reason?: string }[] }>(['checkpoint', 'list', m.mnt]).checkpoints[0];
  t.is(c?.status, 'invalid');
  t.regex(c?.reason ?? '', /copy store unreadable/);
  t.regex(strata(['rollback', m.mnt, '--to', 'away']).stderr, /invalid/);
  t.is(await fsp.readFile(join(m.mnt, 'f'), 'utf8'), 'two');
  // Killing the daemon mid-checkpoint-free life changes nothing either.
  killDaemon(m.mnt);
});
