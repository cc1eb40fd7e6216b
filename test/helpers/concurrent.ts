// Several programs at once on one mount, for the concurrent fault tests
// (test/fault/concurrent-writers.test.ts, concurrent-namespace.test.ts):
// start them, stop them where they are, let them finish.
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertConverged, forceUnmount, killPrimary, mount, syncMount, type MirroredMount } from './mirror.js';
import { Rng } from './model-tree.js';
import { strata } from './mount.js';

export interface Programs {
  pids: number[];
  /** Resolves with the sum of what the programs counted (`done N`) once every one finished (rejects when one failed). */
  done: Promise<number>;
  /** How many have not exited yet. */
  running: () => number;
}

/** A seed from STRATA_CONCURRENT_SEED, or a fresh one (mixed with `label`, so each test gets its own). */
export function seedOf(label: string): number {
  const fixed = process.env['STRATA_CONCURRENT_SEED'];
  if (fixed !== undefined && fixed !== '') return Number(fixed) >>> 0;
  let h = (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
  for (const c of label) h = (Math.imul(h, 31) + c.charCodeAt(0)) >>> 0;
  return h;
}

/**
 * Starts `count` programs (`script` with argsOf(i), run by `interpreter`:
 * node unless said), each printing `done N` at the end. `mayFail`: a program
 * that fails (its mount died under it) counts nothing instead of failing the test.
 */
export function startPrograms(t: ExecutionContext, script: string, count: number, argsOf: (i: number) => string[], label: string, mayFail = false, interpreter = process.execPath): Programs {
  const pids: number[] = [];
  let exited = 0;
  const runs = Array.from({ length: count }, (_, i) => new Promise<number>((resolve, reject) => {
    const child = spawn(interpreter, [script, ...argsOf(i)], { stdio: ['ignore', 'pipe', 'pipe'] });
    pids.push(child.pid!);
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('close', (code) => {
      exited++;
      const m = /^done (\d+)$/m.exec(out);
      if (m !== null && code === 0) resolve(Number(m[1]));
      else if (mayFail) resolve(-1);
      else reject(new Error(`program ${i} failed (${code}): ${err.slice(0, 2000)}`));
    });
  }));
  const done = Promise.all(runs).then((counts) => {
    const finished = counts.filter((n) => n >= 0);
    const total = finished.reduce((a, b) => a + b, 0);
    t.log(`${label}: ${finished.length} of ${count} programs finished${finished.length > 0 ? `, ${total} changes` : ''}`);
    return total;
  });
  // A test that failed before awaiting it (its programs then killed by the teardown) must not
  // leave an unhandled rejection behind, which would fail whatever test runs next.
  done.catch(() => {});
  return { pids, done, running: () => count - exited };
}

/** Several groups of programs as one (their counts added). */
export function allPrograms(...groups: Programs[]): Programs {
  const done = Promise.all(groups.map((g) => g.done)).then((counts) => counts.reduce((a, b) => a + b, 0));
  done.catch(() => {}); // as startPrograms' own
  return { pids: groups.flatMap((g) => g.pids), done, running: () => groups.reduce((a, g) => a + g.running(), 0) };
}

/**
 * Stops the programs where they are (SIGSTOP: a request in flight is answered
 * first, so the mount is after it), runs `fn`, and lets them go on. Throws
 * when one had already finished (the moment would not be "among them").
 */
export async function whileStopped<T>(p: Programs, fn: () => T | Promise<T>): Promise<T> {
  for (const pid of p.pids) signal(pid, 'SIGSTOP');
  try {
    await sleep(300);
    // A thread in the middle of a request to the mount stops only once the daemon has answered it (a
    // SIGSTOP does not interrupt it): under CI load that took longer than the 300 ms, and a rename or a
    // create landed while the native copy was being made (2026-12-06: a directory's mtime older than the
    // entry made in it). Every thread of every program is stopped before `fn` runs.
    for (let i = 0; i < 200 && !p.pids.every(isStopped); i++) await sleep(50);
    if (p.running() < p.pids.length) throw new Error(`only ${p.running()} of ${p.pids.length} programs were still running when stopped`);
    return await fn();
  } finally {
    for (const pid of p.pids) signal(pid, 'SIGCONT');
  }
}

/** Every thread of `pid` is stopped (state T or t), or the process is gone. */
function isStopped(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return true;
  }
  return tasks.every((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // The state follows the command name's closing parenthesis.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state === 'T' || state === 't' || state === 'Z' || state === 'X';
    } catch {
      return true;
    }
  });
}

/** kill(2), where a program that has already exited (ESRCH) is no error: whileStopped counts them. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * The disk under a primary is lost: kill -9 of its daemon, its stale mount
 * cleared, its store gone; then `strata recover --depth 1` into an empty one
 * (on demand only unless `background`; `extra`: more options).
 */
export async function loseDiskAndRecover(t: ExecutionContext, m: MirroredMount, label: string, opts: { extra?: string[]; background?: boolean } = {}): Promise<void> {
  await killPrimary(m);
  forceUnmount(m.mnt);
  spawnSync('rm', ['-rf', m.store]);
  const r = strata(['recover', ...m.args, '--depth', '1', ...(opts.background === true ? [] : ['--no-background-restore']), ...(opts.extra ?? []), m.mnt]);
  t.is(r.status, 0, `${label}: strata recover: ${r.stdout}${r.stderr}`);
}

/**
 * kill -9 of `m`'s daemon at a seeded moment among the programs `p` (started
 * to be killed: startPrograms' `mayFail`), then `strata mount` of the same
 * store, `strata sync`, and the archive must equal the store.
 */
export async function killAmongAndRestart(t: ExecutionContext, m: MirroredMount, p: Programs, seed: number, label: string): Promise<void> {
  await sleep(new Rng(seed).int(200, 1200));
  t.true(p.running() > 0, `${label}: the programs finished before the kill`);
  await killPrimary(m);
  await p.done;
  forceUnmount(m.mnt);
  mount(m);
  syncMount(m);
  assertConverged(t, m, `${label}, after the restart`);
}
