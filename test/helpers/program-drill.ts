// Disaster drills with real programs (test/fault/program-drills.test.ts):
// sqlite3 (WAL and rollback journal), git and rename-over-with-fsync writers,
// and optionally in-place edits of a source tree, run on a strata mount by
// program-drill.sh until the daemon under them is killed. What they were
// told is durable is logged in a native directory; checkPrograms compares a
// mount (after a restart, a recovery or a takeover) with those logs, with
// the programs' own checkers (sqlite's integrity_check, git fsck) and with a
// native copy of the edited tree.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync, closeSync, writeSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

const SCRIPT = fileURLToPath(new URL('../../../test/helpers/program-drill.sh', import.meta.url));

export interface Programs {
  /** Resolves when every program has stopped (they stop at their first failure); kills them after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<void>;
  /** kill -9 of every program (mid-transaction, as a crash of the programs would leave their files). */
  stop(): Promise<void>;
  /**
   * Resolves once every program has acknowledged a change (or they stopped,
   * or after `timeoutMs`): a kill timed from then falls among acknowledged
   * work however slowly the machine started them (sync mode under load: git's
   * first commit alone may take seconds).
   */
  acknowledged(timeoutMs?: number): Promise<void>;
}

/** The logs each program appends what it was told is durable to. */
const ACK_LOGS = ['acked-wal', 'acked-rb', 'acked-git', 'acked-mv'] as const;

/**
 * Starts the programs on `mnt`, logging what they were told is durable in
 * `log` (continuing an earlier run's logs); as user `uid` when given (the
 * mount's root and `log` must let it write).
 */
export function startPrograms(t: ExecutionContext, mnt: string, log: string, edit?: { root: string; list: string }, uid?: number): Programs {
  const args = [SCRIPT, mnt, log, ...(edit ? [edit.root, edit.list] : [])];
  const [cmd, argv] = uid === undefined ? ['bash', args] : ['setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'bash', ...args]];
  // Its own process group: a stuck program is killed with the group.
  const p: ChildProcess = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { ...process.env, HOME: '/tmp' } });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => { if (stderr.length < 4000) stderr += d.toString(); });
  let running = true;
  const done = new Promise<void>((resolve) => p.once('exit', () => { running = false; resolve(); }));
  const killGroup = (): void => { try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ } };
  t.teardown(async () => { killGroup(); await done; });
  return {
    async exited(timeoutMs = 60_000): Promise<void> {
      const timer = setTimeout(killGroup, timeoutMs);
      await done;
      clearTimeout(timer);
    },
    async stop(): Promise<void> {
      killGroup();
      await done;
    },
    async acknowledged(timeoutMs = 60_000): Promise<void> {
      for (const until = Date.now() + timeoutMs; running && Date.now() < until;) {
        if (ACK_LOGS.every((f) => lines(join(log, f)).length > 0)) return;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0) : [];
}

function run(cmd: string, args: string[], cwd: string): { status: number | null; out: string } {
  // git as root in a repository another user made: no "dubious ownership" refusal.
  const argv = cmd === 'git' ? ['-c', 'safe.directory=*', ...args] : args;
  const r = spawnSync(cmd, argv, { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Applies the edits program-drill.sh made (the acked ones) to a native copy of the tree, as it made them. */
export function applyEdits(nativeRoot: string, log: string): void {
  for (const line of lines(join(log, 'acked-edit'))) {
    const sp = line.indexOf(' ');
    const i = Number(line.slice(0, sp));
    const fd = openSync(join(nativeRoot, line.slice(sp + 1)), 'r+');
    try {
      const size = fstatSync(fd).size;
      writeSync(fd, Buffer.from(`X${i}X`), 0, undefined, Math.floor(size / 2));
      const end = fstatSync(fd).size;
      writeSync(fd, Buffer.from(`\nappended ${i}\n`), 0, undefined, end);
    } finally {
      closeSync(fd);
    }
  }
}

/**
 * Checks the programs' data on `mnt` against the logs in `log`: every
 * acknowledged row, commit, rename and edit is there, the databases and the
 * repository pass their own checks, and the edited tree equals its native
 * copy `nativeRoot` (after applyEdits) but for the one edit that was under
 * way, which may be there or not. `label` names the stage in messages.
 */
export function checkPrograms(t: ExecutionContext, mnt: string, log: string, label: string, edited?: { root: string; nativeRoot: string }, mirror: 'async' | 'sync' = 'async'): void {
  // A drill whose programs acknowledged nothing would prove nothing.
  const acked = ACK_LOGS.map((f) => lines(join(log, f)).length);
  t.true(acked.every((n) => n > 0), `${label}: every program acknowledged changes (rows, rows, commits, renames: ${acked.join(', ')})`);
  const dbDir = join(mnt, 'a/b/c');
  for (const [db, acked] of [['db.sq', 'acked-wal'], ['dbr.sq', 'acked-rb']] as const) {
    const ids = lines(join(log, acked)).map(Number);
    const last = ids.length > 0 ? ids[ids.length - 1]! : 0;
    const ic = run('sqlite3', [db, 'PRAGMA integrity_check;'], dbDir);
    t.is(ic.out, 'ok', `${label}: ${db} integrity_check`);
    const q = run('sqlite3', [db, 'SELECT coalesce(max(i), 0), count(*) FROM t;'], dbDir);
    const [max, count] = q.out.split('|').map(Number);
    t.true(max! >= last, `${label}: ${db} has rows up to ${max}, but ${last} was committed`);
    t.is(count, max, `${label}: ${db} has ${count} rows for ids up to ${max} (a committed row is missing)`);
  }
  const repo = join(mnt, 'a/g');
  const commits = lines(join(log, 'acked-git'));
  if (existsSync(repo)) {
    const fsck = run('git', ['fsck', '--no-dangling'], repo);
    t.is(fsck.status, 0, `${label}: git fsck: ${fsck.out}`);
    // One listing of HEAD's history instead of a git process per commit (the history is linear).
    // A commit is known by its subject "c<i>" (program-drill.sh logs i once `git commit` returned).
    const history = new Set(run('git', ['log', '--format=%s', 'HEAD'], repo).out.split('\n'));
    const missing = commits.filter((i) => !history.has(`c${i}`));
    // git ends a commit by renaming the branch's lock file over the ref, with no fsync after it (not
    // of the directory either: strace of git 2.39 with core.fsync=all). In async mode only an fsync
    // waits for the archive (docs/mirroring.md), so the last commit's ref may be lost with the disk,
    // as on ext4 after a power cut; the next commit's first fsync makes it durable. So in async mode
    // the last acknowledged commit may be missing, with HEAD at the one before it.
    const head = run('git', ['log', '-1', '--format=%s', 'HEAD'], repo);
    const headSubject = head.status === 0 ? head.out : '';
    const lastRefLost = mirror === 'async' && missing.length === 1 && missing[0] === commits[commits.length - 1] &&
      (commits.length === 1 ? headSubject === '' : headSubject === `c${commits[commits.length - 2]}`);
    if (lastRefLost) t.log(`${label}: the last commit's ref update (a rename git does not sync) did not survive: HEAD is the commit before it`);
    else t.deepEqual(missing, [], `${label}: commits made with core.fsync=all are not in HEAD's history`);
  } else {
    t.is(commits.length, 0, `${label}: the repository is gone but commits were made`);
  }
  const moves = lines(join(log, 'acked-mv')).map((l) => l.split(' ').map(Number) as [number, number]);
  if (moves.length > 0) {
    const inFlight = (moves[moves.length - 1]![0] + 1) % 5;
    for (const k of new Set(moves.map(([, k]) => k))) {
      const got = readFileSync(join(mnt, 'a', `x${k}`));
      const acked = readFileSync(join(log, `native-x${k}`));
      // The replacement under way when the daemon died may have landed (its bytes are still in ntmp).
      const ok = got.equals(acked) || (k === inFlight && existsSync(join(log, 'ntmp')) && got.equals(readFileSync(join(log, 'ntmp'))));
      t.true(ok, `${label}: a/x${k} is neither its last acknowledged replacement nor the one under way`);
    }
  }
  if (edited) {
    const begun = lines(join(log, 'begun-edit'));
    const ackedN = lines(join(log, 'acked-edit')).length;
    const underWay = begun.length > ackedN ? begun[begun.length - 1]!.slice(begun[begun.length - 1]!.indexOf(' ') + 1) : null;
    const diff = run('diff', ['-rq', '--no-dereference', edited.nativeRoot, edited.root], '/');
    const differing = diff.out.split('\n').filter((l) => l.length > 0);
    const allowed = underWay === null ? [] : [`Files ${join(edited.nativeRoot, underWay)} and ${join(edited.root, underWay)} differ`];
    t.deepEqual(differing.filter((l) => !allowed.includes(l)), [], `${label}: the edited tree differs from its native copy (${ackedN} edits acknowledged)`);
  }
}

/**
 * Runs the programs on `mnt` for `ms`, kills them (mid-transaction: a hot
 * journal, a WAL) and copies their tree `a/` natively to `native`: the
 * crash state a checkpoint or snapshot taken right after must give back.
 */
export async function programsThenCopy(t: ExecutionContext, mnt: string, log: string, ms: number, native: string): Promise<void> {
  const programs = startPrograms(t, mnt, log);
  await new Promise((resolve) => setTimeout(resolve, ms));
  await programs.stop();
  t.is(spawnSync('cp', ['-a', join(mnt, 'a'), native]).status, 0);
}

/** The tree `a/` on `mnt` is the native copy `native` (diff -r), and the programs' own checks pass on it. */
export function checkEqualsCopy(t: ExecutionContext, mnt: string, native: string, label: string): void {
  const diff = spawnSync('diff', ['-r', '--no-dereference', native, join(mnt, 'a')], { encoding: 'utf8' });
  t.is(diff.status, 0, `${label}: the tree differs from the native copy: ${diff.stdout.slice(0, 2000)}`);
  // sqlite rolls a hot journal back, as it would on the native copy.
  for (const db of ['db.sq', 'dbr.sq']) t.is(run('sqlite3', [db, 'PRAGMA integrity_check;'], join(mnt, 'a/b/c')).out, 'ok', `${label}: ${db}`);
  const fsck = run('git', ['fsck', '--no-dangling'], join(mnt, 'a/g'));
  t.is(fsck.status, 0, `${label}: git fsck: ${fsck.out}`);
}
