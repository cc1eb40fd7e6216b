// Faults and the daemon's life cycle, with real mounts and real processes:
// kill -9 with files open (stale mount, detected and cleared), SIGTERM/SIGINT,
// busy and lazy unmounts, unmounts of nothing and of stale mounts, refused
// mounts, --foreground, `strata status`, and a full disk under the store.
//
// Every background daemon is started under a small "subreaper" (python3,
// prctl(PR_SET_CHILD_SUBREAPER)): the daemon is re-parented to it instead of to
// init, so the test learns its real exit status. Every test cleans up in
// t.teardown, pass or fail (its processes killed, its mounts detached lazily,
// tmpfs unmounted, directories removed), and the last test checks that
// nothing this file started is still mounted or running.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { appendFileSync, chmodSync, closeSync, cpSync, existsSync, openSync, writeSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Rng } from '../helpers/model-tree.js';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, strata, sh } from '../helpers/mount.js';
import { startArchiveServer } from '../helpers/archive.js';
import { controlSocketPath } from '../../src/daemon/control.js';

/** The op runner of the full-disk model (python, so that a hung mount hangs a child, not the test). */
const FULL_DISK_OPS = fileURLToPath(new URL('../../../test/helpers/full-disk-ops.py', import.meta.url));

// ---- what this file started (checked by the last test) -------------------------

const bases: string[] = [];
const mountpoints: string[] = [];
const daemonPids: number[] = [];

// ---- the kernel's and /proc's view ----------------------------------------------

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mountpoints at `dir` or below it, deepest first (one entry per stacked mount). */
function mountsUnder(dir: string): string[] {
  const root = resolve(dir);
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mnt = unescapeMount(line.split(' ')[4] ?? '');
    if (mnt === root || mnt.startsWith(`${root}/`)) out.push(mnt);
  }
  return out.sort((a, b) => b.length - a.length);
}

function isMounted(mnt: string): boolean {
  return mountsUnder(mnt).includes(resolve(mnt));
}

function mountCount(mnt: string): number {
  return mountsUnder(mnt).filter((m) => m === resolve(mnt)).length;
}

/** True while `pid` runs (zombies count as gone). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false;
  }
}

/** Live processes whose command line mentions `needle` (strata daemons of a base directory). */
function processesMentioning(needle: string): Array<{ pid: number; cmdline: string }> {
  const out: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (cmdline.includes(needle) && running(pid)) out.push({ pid, cmdline });
  }
  return out;
}

/** strata daemons (`node strata.js mount --foreground ...`) working under `base`. */
function daemonsOf(base: string): Array<{ pid: number; cmdline: string }> {
  return processesMentioning(base).filter((p) => p.cmdline.startsWith(`${process.execPath} ${CLI} mount `));
}

function errCode(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

// ---- a scratch directory per test, and its teardown ----------------------------

interface Scratch {
  base: string;
  mnt: string;
  store: string;
  /** Processes to kill first in teardown (holders of files, subreapers, foreground daemons). */
  children: ChildProcess[];
  /** Every path this test mounted strata on (or tried to). */
  strataMounts: string[];
}

function scratch(t: ExecutionContext): Scratch {
  const base = mkdtempSync(join(tmpdir(), 'strata-lc-'));
  const s: Scratch = { base, mnt: join(base, 'mnt'), store: join(base, 'store'), children: [], strataMounts: [] };
  s.strataMounts.push(s.mnt);
  mkdirSync(s.mnt);
  bases.push(base);
  mountpoints.push(s.mnt);
  t.teardown(async () => {
    // Whatever still runs dies first (a hung daemon must not stall the
    // teardown); then its mounts, stale by now, are cleared the way a user
    // would, lazily; then other mounts (tmpfs), deepest first.
    for (const c of s.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const p of processesMentioning(base)) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    for (const pid of daemonPids) {
      try {
        if (running(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(base)) process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    await waitFor('leftover processes to die', () => processesMentioning(base).length === 0, 5000).catch(() => {});
    for (const m of s.strataMounts) {
      if (isMounted(m)) spawnSync(process.execPath, [CLI, 'unmount', '--lazy', m], { timeout: 15_000 });
    }
    for (let i = 0; i < 5 && mountsUnder(base).length > 0; i++) {
      for (const m of mountsUnder(base)) spawnSync('umount', ['-l', m], { timeout: 10_000 });
    }
    for (const m of [s.mnt, ...mountsUnder(base)]) rmSync(controlSocketPath(m), { force: true });
    // Never recurse into something still mounted.
    if (mountsUnder(base).length === 0 && existsSync(base)) rmSync(base, { recursive: true, force: true });
  });
  return s;
}

// ---- background mounts under a subreaper ------------------------------------------

const REAPER = `
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"cli": r.returncode, "stdout": r.stdout, "stderr": r.stderr}), flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
`;

/** Debian's python3 (a pyenv shim on PATH costs a tenth of a second per start). */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

interface BgMount {
  status: number;
  stdout: string;
  stderr: string;
  /** The daemon's pid (from `strata mount`'s output), 0 when it did not start. */
  pid: number;
  /** The daemon's exit: code, or minus the signal number. */
  exit(ms?: number): Promise<number>;
}

/** `strata mount --store STORE MNT` (or `strata recover`: background), with the daemon re-parented to a reaper of ours. */
async function mountBg(t: ExecutionContext, s: Scratch, args: string[] = [], mnt = s.mnt, store = s.store, command: 'mount' | 'recover' = 'mount'): Promise<BgMount> {
  if (!s.strataMounts.includes(mnt)) s.strataMounts.push(mnt);
  if (!mountpoints.includes(mnt)) mountpoints.push(mnt);
  const reaper = spawn(PYTHON, ['-c', REAPER, process.execPath, CLI, command, '--store', store, ...args, mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
  s.children.push(reaper);
  const exits = new Map<number, number>();
  let cli: { cli: number; stdout: string; stderr: string } | null = null;
  let ended = false;
  const lines = createInterface({ input: reaper.stdout! });
  lines.on('line', (line) => {
    const msg = JSON.parse(line) as { cli?: number; stdout?: string; stderr?: string; pid?: number; code?: number };
    if (msg.cli !== undefined) cli = { cli: msg.cli, stdout: msg.stdout ?? '', stderr: msg.stderr ?? '' };
    else if (msg.pid !== undefined && msg.code !== undefined) exits.set(msg.pid, msg.code);
  });
  reaper.on('exit', () => { ended = true; });
  reaper.on('error', () => { ended = true; });
  await waitFor('strata mount to return', () => cli !== null || ended, 30_000);
  const r = cli as { cli: number; stdout: string; stderr: string } | null;
  if (r === null) throw new Error('the reaper ended without running strata mount (is python3 installed?)');
  const pid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (pid > 0) daemonPids.push(pid);
  t.log(`strata ${command} ${[...args, mnt].join(' ')}: exit ${r.cli}${pid ? `, daemon ${pid}` : ''}${r.stderr ? `, ${r.stderr.trim()}` : ''}`);
  return {
    status: r.cli, stdout: r.stdout, stderr: r.stderr, pid,
    exit: async (ms = 10_000) => {
      await waitFor(`daemon ${pid} to exit`, () => exits.has(pid) || ended, ms);
      const code = exits.get(pid);
      if (code === undefined) throw new Error(`daemon ${pid} was not reaped by the subreaper`);
      return code;
    },
  };
}

async function mounted(t: ExecutionContext, s: Scratch, args: string[] = []): Promise<BgMount> {
  const m = await mountBg(t, s, args);
  if (m.status !== 0 || m.pid === 0) throw new Error(`strata mount failed: ${m.stderr}${m.stdout}`);
  return m;
}

interface Status {
  state: string;
  mountpoint: string;
  store: string;
  pid: number;
  requests: Record<string, number>;
}

function statusJson(mnt: string): { status: number | null; json: Status } {
  const r = strata(['status', '--json', mnt]);
  return { status: r.status, json: JSON.parse(r.stdout) as Status };
}

/** A process that keeps its working directory (`cwd`) or an open file (`file`) on the mount until killed. */
async function holder(s: Scratch, how: { cwd: string } | { file: string }): Promise<ChildProcess> {
  const script = 'cwd' in how ? 'echo ready; exec sleep 600' : 'exec 3>>"$1" && echo held >&3 && echo ready && exec sleep 600';
  const p = spawn('bash', ['-c', script, 'holder', 'file' in how ? how.file : ''], { cwd: 'cwd' in how ? how.cwd : s.base, stdio: ['ignore', 'pipe', 'pipe'] });
  s.children.push(p);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor('the holder to be ready', () => out.includes('ready') || p.exitCode !== null, 10_000);
  if (!out.includes('ready')) throw new Error('the holder could not start');
  return p;
}

const STALE = 'Transport endpoint is not connected';

// ---- 1. kill -9 with a file open ---------------------------------------------------

test.serial('kill -9 of the daemon with a file open: stale, reported, cleared by the next mount; closed data survives', async (t) => {
  const s = scratch(t);
  const m = await mounted(t, s);
  const closed = randomBytes(300_000);
  writeFileSync(join(s.mnt, 'closed.bin'), closed);
  mkdirSync(join(s.mnt, 'dir'));
  writeFileSync(join(s.mnt, 'dir', 'note.txt'), 'written and closed\n');
  await holder(s, { file: join(s.mnt, 'open.log') });

  process.kill(m.pid, 'SIGKILL');
  t.is(await m.exit(), -9, 'the daemon died of SIGKILL');

  // The kernel still has the mount, with nobody behind it.
  t.true(isMounted(s.mnt));
  t.is(errCode(() => statSync(s.mnt)), 'ENOTCONN');
  t.regex(sh(`ls ${s.mnt}`, s.base).stderr, new RegExp(STALE));

  const st = strata(['status', s.mnt]);
  t.is(st.status, 1);
  t.regex(st.stdout, /stale \(daemon dead\)/);
  const sj = statusJson(s.mnt);
  t.is(sj.status, 1);
  t.regex(sj.json.state, /^stale/);

  // Everything written and closed is in the store.
  t.is(sha256(readFileSync(join(s.store, 'closed.bin'))), sha256(closed));
  t.is(readFileSync(join(s.store, 'dir', 'note.txt'), 'utf8'), 'written and closed\n');

  // The next mount clears the stale mount and serves the same tree.
  const m2 = await mounted(t, s);
  t.not(m2.pid, m.pid);
  t.is(mountCount(s.mnt), 1, 'the stale mount is gone, not stacked under the new one');
  t.true(statSync(s.mnt).isDirectory());
  t.is(sha256(readFileSync(join(s.mnt, 'closed.bin'))), sha256(closed));
  t.is(readFileSync(join(s.mnt, 'dir', 'note.txt'), 'utf8'), 'written and closed\n');
  t.regex(readFileSync(join(s.mnt, 'open.log'), 'utf8'), /^held\n/);
  writeFileSync(join(s.mnt, 'after.txt'), 'after remount\n');
  t.is(readFileSync(join(s.store, 'after.txt'), 'utf8'), 'after remount\n');
  const again = statusJson(s.mnt);
  t.is(again.status, 0);
  t.is(again.json.state, 'serving');
  t.is(again.json.pid, m2.pid);
  t.regex(readFileSync(join(s.store, '.strata', 'daemon.log'), 'utf8'), /clearing a stale mount/);

  const u = strata(['unmount', s.mnt]);
  t.is(u.status, 0, u.stderr);
  t.is(await m2.exit(), 0);
  t.false(isMounted(s.mnt));
});

// ---- 2. SIGTERM and SIGINT ------------------------------------------------------------

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test.serial(`${signal} to the daemon: clean unmount, exit 0, store intact`, async (t) => {
    const s = scratch(t);
    const m = await mounted(t, s);
    const data = randomBytes(200_000);
    writeFileSync(join(s.mnt, 'data.bin'), data);
    someDirs(s.mnt);

    // Right after a close: its `release` may still be on the way to the
    // daemon (answering it after the unmount crashed the daemon, SIGSEGV).
    process.kill(m.pid, signal);
    t.is(await m.exit(), 0, `the daemon exits 0 on ${signal}`);
    t.false(running(m.pid));
    t.false(isMounted(s.mnt), 'no mount left, stale or not');
    t.is(errCode(() => statSync(s.mnt)), undefined);
    t.deepEqual(readdirSync(s.mnt), [], 'the mountpoint is an empty directory again');
    t.false(existsSync(controlSocketPath(s.mnt)), 'the control socket is removed');
    t.is(sha256(readFileSync(join(s.store, 'data.bin'))), sha256(data));
    t.is(readFileSync(join(s.store, 'a', 'b', 'c.txt'), 'utf8'), 'c\n');
    const st = strata(['status', s.mnt]);
    t.is(st.status, 1);
    t.regex(st.stdout, /not served by strata/);
    t.regex(readFileSync(join(s.store, '.strata', 'daemon.log'), 'utf8'), /"msg":"unmounted"/);
  });
}

function someDirs(mnt: string): void {
  mkdirSync(join(mnt, 'a', 'b'), { recursive: true });
  writeFileSync(join(mnt, 'a', 'b', 'c.txt'), 'c\n');
}

// ---- 3. busy unmount, then lazy --------------------------------------------------------

test.serial('strata unmount of a busy mount fails clearly and keeps serving; --lazy detaches it', async (t) => {
  const s = scratch(t);
  const m = await mounted(t, s);
  mkdirSync(join(s.mnt, 'work'));
  writeFileSync(join(s.mnt, 'work', 'f.txt'), 'still here\n');

  const stillServing = (): void => {
    t.true(isMounted(s.mnt));
    t.is(readFileSync(join(s.mnt, 'work', 'f.txt'), 'utf8'), 'still here\n');
    const st = statusJson(s.mnt);
    t.is(st.json.state, 'serving');
    t.is(st.json.pid, m.pid);
  };

  const inCwd = await holder(s, { cwd: join(s.mnt, 'work') });
  const busy1 = strata(['unmount', s.mnt]);
  t.is(busy1.status, 1);
  t.regex(busy1.stderr, /busy/);
  t.regex(busy1.stderr, /--lazy/);
  stillServing();
  inCwd.kill('SIGKILL');
  await waitFor('the cwd holder to exit', () => inCwd.exitCode !== null || inCwd.signalCode !== null);

  await holder(s, { file: join(s.mnt, 'work', 'open.log') });
  const busy2 = strata(['unmount', s.mnt]);
  t.is(busy2.status, 1);
  t.regex(busy2.stderr, /busy/);
  stillServing();

  const lazy = strata(['unmount', '--lazy', s.mnt]);
  t.is(lazy.status, 0, lazy.stderr);
  t.false(isMounted(s.mnt));
  t.is(await m.exit(), 0);
  t.is(readFileSync(join(s.store, 'work', 'f.txt'), 'utf8'), 'still here\n');
});

// ---- 4. unmount of nothing, of a stale mount -----------------------------------------------

test.serial('strata unmount: of nothing is an error; of a stale mount clears it', async (t) => {
  const s = scratch(t);
  const none = strata(['unmount', s.mnt]);
  t.is(none.status, 1);
  t.regex(none.stderr, /is not mounted/);
  const missing = strata(['unmount', join(s.base, 'no-such-dir')]);
  t.is(missing.status, 1);
  t.regex(missing.stderr, /is not mounted/);

  const m = await mounted(t, s);
  writeFileSync(join(s.mnt, 'f'), 'f\n');
  process.kill(m.pid, 'SIGKILL');
  t.is(await m.exit(), -9);
  t.is(errCode(() => statSync(s.mnt)), 'ENOTCONN');
  t.true(existsSync(controlSocketPath(s.mnt)), 'a killed daemon leaves its socket behind');

  const u = strata(['unmount', s.mnt]);
  t.is(u.status, 0, u.stderr);
  t.regex(u.stdout, /stale mount of a dead daemon/);
  t.false(isMounted(s.mnt));
  t.true(statSync(s.mnt).isDirectory());
  t.false(existsSync(controlSocketPath(s.mnt)), 'the dead socket is removed');
  t.is(readFileSync(join(s.store, 'f'), 'utf8'), 'f\n');
  const again = strata(['unmount', s.mnt]);
  t.is(again.status, 1);
  t.regex(again.stderr, /is not mounted/);
});

// ---- 5. refused mounts ----------------------------------------------------------------------

test.serial('strata mount refuses a mounted mountpoint, a missing mountpoint and a store that is a file', async (t) => {
  const s = scratch(t);
  const m = await mounted(t, s);
  writeFileSync(join(s.mnt, 'f'), 'first\n');

  const twice = await mountBg(t, s, [], s.mnt, join(s.base, 'other-store'));
  t.is(twice.status, 1);
  t.regex(twice.stderr, /already served by a strata daemon/);
  t.is(mountCount(s.mnt), 1);
  t.is(readFileSync(join(s.mnt, 'f'), 'utf8'), 'first\n');
  t.is(statusJson(s.mnt).json.pid, m.pid);

  const missing = await mountBg(t, s, [], join(s.base, 'no-such-dir'), join(s.base, 'store2'));
  t.is(missing.status, 1);
  t.regex(missing.stderr, /mountpoint \S+no-such-dir does not exist/);

  // A non-strata mount is refused too.
  const tmpfs = join(s.base, 'tmpfs');
  mkdirSync(tmpfs);
  t.is(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', tmpfs]).status, 0);
  const onTmpfs = await mountBg(t, s, [], tmpfs, join(s.base, 'store3'));
  t.is(onTmpfs.status, 1);
  t.regex(onTmpfs.stderr, /is already a mountpoint/);
  t.is(mountCount(tmpfs), 1);
  t.is(spawnSync('umount', [tmpfs]).status, 0);

  const file = join(s.base, 'store-file');
  writeFileSync(file, 'not a directory\n');
  const mnt2 = join(s.base, 'mnt2');
  mkdirSync(mnt2);
  const bg = await mountBg(t, s, [], mnt2, file);
  t.not(bg.status, 0);
  t.regex(bg.stderr, /store \S+store-file exists and is not a directory/);
  const fg = spawnSync(process.execPath, [CLI, 'mount', '--foreground', '--store', file, mnt2], { encoding: 'utf8', timeout: 30_000 });
  t.not(fg.status, 0);
  t.regex(fg.stderr, /strata mount: store \S+store-file exists and is not a directory/);
  const under = await mountBg(t, s, [], mnt2, join(file, 'sub'));
  t.not(under.status, 0);
  t.regex(under.stderr, /not a directory/);
  t.false(isMounted(mnt2), 'nothing mounted');
  t.is(readFileSync(file, 'utf8'), 'not a directory\n');

  // Only the first daemon runs; it still serves.
  t.deepEqual(daemonsOf(s.base).map((p) => p.pid), [m.pid]);
  t.is(readFileSync(join(s.mnt, 'f'), 'utf8'), 'first\n');
  const u = strata(['unmount', s.mnt]);
  t.is(u.status, 0, u.stderr);
  t.is(await m.exit(), 0);
});

// ---- 6. --foreground and status ------------------------------------------------------------------

test.serial('strata mount --foreground serves until SIGINT; strata status --json reports it', async (t) => {
  const s = scratch(t);
  const fg = spawn(process.execPath, [CLI, 'mount', '--foreground', '--store', s.store, s.mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  s.children.push(fg);
  if (fg.pid !== undefined) daemonPids.push(fg.pid);
  let stderr = '';
  fg.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => fg.on('exit', (code, signal) => res({ code, signal })));
  await waitFor('the foreground mount to serve', () => /strata: serving/.test(stderr) || fg.exitCode !== null, 30_000);
  t.regex(stderr, new RegExp(`strata: serving ${s.store} at ${s.mnt}`));
  t.true(isMounted(s.mnt));

  const before = statusJson(s.mnt);
  t.is(before.status, 0);
  t.is(before.json.state, 'serving');
  t.is(before.json.mountpoint, s.mnt);
  t.is(before.json.store, s.store);
  t.is(before.json.pid, fg.pid ?? -1);
  const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

  for (let i = 0; i < 5; i++) writeFileSync(join(s.mnt, `f${i}`), `file ${i}\n`);
  mkdirSync(join(s.mnt, 'd'));
  t.deepEqual(readdirSync(s.mnt).sort(), ['d', 'f0', 'f1', 'f2', 'f3', 'f4']);
  t.is(readFileSync(join(s.mnt, 'f3'), 'utf8'), 'file 3\n');

  const after = statusJson(s.mnt);
  t.is(after.json.state, 'serving');
  t.true(total(after.json.requests) > total(before.json.requests), JSON.stringify(after.json.requests));
  t.true((after.json.requests.create ?? 0) >= (before.json.requests.create ?? 0) + 5);
  t.true((after.json.requests.mkdir ?? 0) >= (before.json.requests.mkdir ?? 0) + 1);
  t.true((after.json.requests.readdir ?? 0) > (before.json.requests.readdir ?? 0));

  const human = strata(['status', s.mnt]);
  t.is(human.status, 0);
  t.regex(human.stdout, /state {8}serving/);
  t.regex(human.stdout, new RegExp(`daemon pid +${fg.pid}`));

  fg.kill('SIGINT');
  const end = await Promise.race([exited, sleep(10_000).then(() => null)]);
  t.deepEqual(end, { code: 0, signal: null });
  t.false(isMounted(s.mnt));
  t.is(readFileSync(join(s.store, 'f4'), 'utf8'), 'file 4\n');
});

// ---- 7. full disk under the store ---------------------------------------------------------------

/** Runs a bash script with a hard time limit (SIGKILL: a FUSE wait ignores anything less). */
function shLimited(script: string, cwd: string, seconds = 20): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('timeout', ['-s', 'KILL', String(seconds), 'bash', '-c', script], { cwd, encoding: 'utf8', timeout: (seconds + 10) * 1000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}


for (const variant of [[], ['--no-direct-io']]) {
  test.serial(`a full disk under the store: ENOSPC to the writer, the daemon keeps serving${variant.length ? ` (${variant.join(' ')})` : ''}`, async (t) => {
    const s = scratch(t);
    const disk = join(s.base, 'disk');
    mkdirSync(disk);
    const tm = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', disk], { encoding: 'utf8' });
    if (tm.status !== 0) { t.fail(`cannot mount a tmpfs: ${tm.stderr}`); return; }
    // The store, and with it the daemon's log, on the small disk.
    const store = join(disk, 'store');
    const m = await mountBg(t, s, variant, s.mnt, store);
    t.is(m.status, 0, m.stderr);
    const keep = randomBytes(100_000);
    writeFileSync(join(s.mnt, 'keep.bin'), keep);

    // Fill it through the mount.
    const dd = shLimited('dd if=/dev/zero of=big bs=64k count=1000', s.mnt);
    t.not(dd.status, 0);
    t.regex(dd.stderr, /No space left on device/);
    // A program writing by itself sees the code (in a child: a hung daemon must fail the test, not hang it).
    const writer = spawnSync(process.execPath, ['-e', `
      const fs = require('node:fs');
      const fd = fs.openSync('more', 'w');
      try { for (let i = 0; i < 1000; i++) fs.writeSync(fd, Buffer.alloc(65536)); console.log('no error'); }
      catch (err) { console.log(err.code); }
      fs.closeSync(fd);`], { cwd: s.mnt, encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' });
    t.is(writer.stdout.trim(), 'ENOSPC', writer.stderr);
    // Failures served by JavaScript (long symlink targets need a block) and
    // logged as warnings, to a log that cannot grow either.
    const target = 'x'.repeat(1000);
    const storm = shLimited(`for i in $(seq 1 40); do ln -s ${target} link$i 2>>../ln.err; done; echo done`, s.mnt, 10);
    // Touching a hung mount from this process would hang the test: stop here (teardown kills the daemon).
    if (storm.stdout.trim() !== 'done') { t.fail(`the daemon hung or died: ${storm.stderr}`); return; }
    t.regex(readFileSync(join(s.base, 'ln.err'), 'utf8'), /No space left on device/);

    // Still serving.
    t.true(running(m.pid), 'the daemon is alive');
    const ls = shLimited('ls -la', s.mnt, 10);
    if (ls.status !== 0) { t.fail(`ls on the mount failed: ${ls.stderr}`); return; }
    t.regex(ls.stdout, /keep\.bin/);
    const cat = shLimited('sha256sum keep.bin', s.mnt, 10);
    t.is(cat.stdout.split(' ')[0], sha256(keep));
    const st = strata(['status', s.mnt]);
    t.is(st.status, 0, st.stderr);
    t.regex(st.stdout, /state {8}serving/);

    // Room again after deleting the big files.
    const rm = shLimited('rm big more', s.mnt, 10);
    t.is(rm.status, 0, rm.stderr);
    const again = randomBytes(2_000_000);
    writeFileSync(join(s.mnt, 'again.bin'), again);
    t.is(sha256(readFileSync(join(s.mnt, 'again.bin'))), sha256(again));
    t.is(sha256(readFileSync(join(store, 'again.bin'))), sha256(again));
    symlinkSync(target, join(s.mnt, 'link-ok'));
    t.is(readlinkSync(join(s.mnt, 'link-ok')), target);
    // The log has room again: the next warning (a fallocate larger than the
    // disk) comes after a note of the lines the full disk swallowed.
    t.regex(shLimited('fallocate -l 64MiB huge', s.mnt, 10).stderr, /No space left on device/);
    const log = readFileSync(join(store, '.strata', 'daemon.log'), 'utf8');
    const note = /"lost":(\d+),"error":"ENOSPC","msg":"log lines lost/.exec(log);
    t.truthy(note, 'a note of the lost log lines');
    t.true(Number(note?.[1] ?? 0) > 0);
    t.regex(log.slice(note?.index ?? 0), /"op":"fallocate"/);

    // Full again: the daemon still unmounts and exits (its log cannot be flushed).
    t.not(shLimited('dd if=/dev/zero of=big bs=64k count=1000', s.mnt).status, 0);
    t.not(shLimited(`ln -s ${target} link-full`, s.mnt).status, 0);
    const u = strata(['unmount', s.mnt]);
    t.is(u.status, 0, u.stderr);
    t.is(await m.exit(), 0);
    // `strata unmount` returns once the daemon is gone: the disk is free.
    const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
    t.is(ut.status, 0, ut.stderr);
  });
}

/** The mirror part of `strata status --json` of `mnt`. */
type MirrorJournalJson = { journal: { noRoom: { records: number } | null; roomShort: { aheadBytes: number } | null } };

function mirrorJson(mnt: string): MirrorJournalJson {
  const r = strata(['status', '--json', mnt]);
  if (r.status !== 0) throw new Error(`strata status: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { mirror: MirrorJournalJson }).mirror;
}

/** Names, types, modes and sha256 of every object under `root`, the private directory left out (a child with a time limit: a hung mount fails, it does not hang). */
function pictureOf(root: string): string {
  // pipefail: a listing or a read that fails must fail the picture, not shorten it.
  const r = shLimited(`set -o pipefail; find . -path ./.strata -prune -o -printf "%p %y %m\\n" | sort && find . -path ./.strata -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum`, root, 60);
  if (r.status !== 0) throw new Error(`picture of ${root}: ${r.stderr}`);
  return r.stdout;
}

/** A tmpfs of `size` at `dir` (the store's disk), or a failed test. */
function smallDisk(t: ExecutionContext, dir: string, size: string): boolean {
  mkdirSync(dir);
  const tm = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (tm.status !== 0) t.fail(`cannot mount a tmpfs: ${tm.stderr}`);
  return tm.status === 0;
}

/**
 * A mirrored mount whose store is on a tmpfs of `size` and whose archive is a real server (so that
 * a test can stop it: SIGSTOP); null (and a failed test) when the tmpfs cannot be made.
 */
async function mirroredOnSmallDisk(t: ExecutionContext, size: string): Promise<{ s: Scratch; disk: string; store: string; server: Awaited<ReturnType<typeof startArchiveServer>>; archive: string[]; m: BgMount } | null> {
  const s = scratch(t);
  const disk = join(s.base, 'disk');
  if (!smallDisk(t, disk, size)) return null;
  const store = join(disk, 'store');
  const server = await startArchiveServer();
  t.teardown(() => server.stop());
  const archive = ['--archive', server.url, '--token-file', server.tokenFile, '--volume', 'v'];
  const m = await mountBg(t, s, archive, s.mnt, store);
  t.is(m.status, 0, m.stderr);
  return { s, disk, store, server, archive, m };
}

/**
 * The end of a full-disk test: `strata sync` and `strata verify` (0
 * differences), unmount, then `strata recover` into another store; returns
 * the recovered tree's picture (the archive's, through no code of the
 * primary's), and unmounts it.
 */
async function syncVerifyRecover(t: ExecutionContext, s: Scratch, m: BgMount, archive: string[]): Promise<string> {
  t.is(strata(['sync', s.mnt]).status, 0);
  t.regex(strata(['verify', s.mnt]).stdout, / 0 differences/);
  t.is(strata(['unmount', s.mnt]).status, 0);
  t.is(await m.exit(), 0);
  const mnt2 = join(s.base, 'mnt2');
  mkdirSync(mnt2);
  s.strataMounts.push(mnt2);
  const rec = strata(['recover', '--store', join(s.base, 'store2'), ...archive, '--force', mnt2]);
  t.is(rec.status, 0, rec.stderr);
  const picture = pictureOf(mnt2);
  t.is(strata(['unmount', mnt2]).status, 0);
  return picture;
}

// A mirrored store whose disk fills up behind the journal (another program on the same disk). Until
// 2026-12-06 the first journal write without room failed the journal for good: every later change
// failed, removals too (the disk could not be freed through the mount), and nothing shipped until a
// restart. Then the records waited in memory (an fsync failed, a kill -9 lost them, and the next start
// needed room for the re-convergence, which a disk that programs filled did not have: the operator had
// to free some). Now the journal keeps room allocated ahead of its records (src/journal: "Room kept
// ahead"): once it cannot top that up, changes that need room fail with ENOSPC before they are made,
// removals, renames and attributes are taken *and durable* (an fsync succeeds), and a start after a
// kill -9 on the still-full disk serves again with nothing freed.
test.serial('a full disk under a mirrored store: changes that need room get ENOSPC and are not made, removals, renames and fsync work, it converges when room returns; killed -9 on the full disk, it starts again without room freed, and a recovery equals the store', async (t) => {
  // A real archive server, stopped (SIGSTOP) while the disk is full: nothing is acked meanwhile, so the
  // journal cannot give back a segment the archive holds, and the disk stays full until the test frees it.
  const setup = await mirroredOnSmallDisk(t, '8m');
  if (setup === null) return;
  const { s, disk, store, server, archive } = setup;
  let m = setup.m;
  t.regex(strata(['status', s.mnt]).stdout, /journal .* on disk \(and 1\.0 MiB kept ahead\)/);
  writeFileSync(join(s.mnt, 'keep'), 'kept\n');
  t.is(strata(['sync', s.mnt]).status, 0);
  const fill = (): void => { spawnSync('dd', ['if=/dev/zero', `of=${join(disk, 'filler')}`, 'bs=64k'], { encoding: 'utf8' }); };

  process.kill(server.pid, 'SIGSTOP');
  fill();
  // Through the mount (in a child: a hung daemon must fail the test, not hang it). Empty files take no
  // room on a tmpfs, only journal records: the creates go on until the journal's room kept ahead is half used.
  const py = shLimited(`${PYTHON} - <<'EOF'
import os, errno, json
def code(f):
    try: f(); return 'ok'
    except OSError as e: return errno.errorcode[e.errno]
n = 0
while n < 20000 and code(lambda: open(f'c{n}', 'wb').close()) == 'ok': n += 1
out = {'created': n, 'mkdir': code(lambda: os.mkdir('dir')), 'chmod': code(lambda: os.chmod('keep', 0o600)),
       'rename': code(lambda: os.rename('c0', 'c0-renamed')), 'unlink': code(lambda: os.unlink('c1'))}
print(json.dumps(out))
EOF`, s.mnt, 60);
  t.is(py.status, 0, py.stderr);
  const r = JSON.parse(py.stdout) as { created: number; mkdir: string; chmod: string; rename: string; unlink: string };
  t.true(r.created >= 2 && r.created < 20000, `creates before the journal was short of room: ${r.created}`);
  t.like(r, { mkdir: 'ENOSPC', chmod: 'ok', rename: 'ok', unlink: 'ok' });
  t.false(existsSync(join(store, `c${r.created}`)), 'the create that failed was not made');
  t.false(existsSync(join(store, 'dir')), 'nor the mkdir');
  const j = mirrorJson(s.mnt).journal;
  t.is(j.noRoom, null, 'no record waits in memory');
  t.not(j.roomShort, null, 'the journal says it is short of room');
  t.regex(strata(['status', s.mnt]).stdout, /ROOM SHORT on the store's disk since/);
  t.is(strata(['sync', '--timeout', '1', s.mnt]).status, 1, 'the archive is stopped: not drained');
  // The archive back, the disk still full: every record is on disk, so an fsync (which waits for the
  // archive in async mode) succeeds; before, the records waited in memory and it failed with ENOSPC.
  process.kill(server.pid, 'SIGCONT');
  const fsync = shLimited(`${PYTHON} -c "import os; fd = os.open('keep', os.O_RDONLY); os.fsync(fd)"`, s.mnt, 30);
  t.is(fsync.status, 0, `fsync on the full disk: ${fsync.stderr}`);
  t.is(strata(['sync', s.mnt]).status, 0);

  // Room again: the room kept ahead is topped up, changes are taken again, the archive converges.
  rmSync(join(disk, 'filler'));
  await waitFor('the journal to have its room kept ahead again', () => mirrorJson(s.mnt).journal.roomShort === null, 10_000);
  writeFileSync(join(s.mnt, 'after'), 'room again\n');
  t.is(strata(['sync', s.mnt]).status, 0);
  t.regex(strata(['verify', s.mnt]).stdout, / 0 differences/);

  // Full again, the archive stopped, changes acknowledged, and the daemon killed -9. The disk stays full:
  // the next mount needs no room freed (its state file borrows from the journal's room kept ahead).
  process.kill(server.pid, 'SIGSTOP');
  fill();
  const more = shLimited('for i in $(seq 1 200); do : > d$i || exit 1; done; mv after after-renamed && chmod 640 keep && rm c2', s.mnt, 20);
  t.is(more.status, 0, more.stderr);
  process.kill(m.pid, 'SIGKILL');
  await m.exit();
  process.kill(server.pid, 'SIGCONT');
  t.is(strata(['unmount', s.mnt]).status, 0);
  // What a state file borrowed from the journal's room and did not use (whole 64 KiB pieces) is free
  // now: taken too, so that the start below has no room at all.
  spawnSync('dd', ['if=/dev/zero', `of=${join(disk, 'filler2')}`, 'bs=4k'], { encoding: 'utf8' });
  t.is(spawnSync('df', ['--output=avail', disk], { encoding: 'utf8' }).stdout.split('\n')[1]!.trim(), '0', 'the disk is still full');
  m = await mountBg(t, s, archive, s.mnt, store);
  t.is(m.status, 0, m.stderr);
  t.true(existsSync(join(s.mnt, 'after-renamed')) && existsSync(join(s.mnt, 'd200')) && !existsSync(join(s.mnt, 'c2')), 'what was acknowledged is there');
  t.is(statSync(join(s.mnt, 'keep')).mode & 0o777, 0o640);
  rmSync(join(disk, 'filler'));
  rmSync(join(disk, 'filler2'), { force: true });
  // A recovery (through the archive alone) gives what the store has.
  t.is(await syncVerifyRecover(t, s, m, archive), pictureOf(store));
  const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
  t.is(ut.status, 0, ut.stderr);
});

// Overwrites of existing blocks on a disk another program filled take no room for their data, only
// for their records. The FUSE thread applies a mirrored mount's writes under a credit of journal room;
// until 2026-12-06 that credit could exceed the room the journal keeps allocated ahead, so a run of
// overwrites on a full disk left records waiting in memory (fsync failed with ENOSPC, and a kill -9
// then needed room freed to start). Now the credit is never more than the room kept ahead holds with
// half of it left (Mirror.reserve): past it the writes go through the core, which refuses them with
// ENOSPC before they are made (natively an overwrite succeeds: docs/SEMANTICS.md) or waits for the
// archive when the journal's own records fill the disk.
test.serial('overwrites on a full disk under a mirrored store: their records stay in the room kept ahead (none waits in memory), fsync works, and a kill -9 there starts again with what was acknowledged', async (t) => {
  const setup = await mirroredOnSmallDisk(t, '24m');
  if (setup === null) return;
  const { s, disk, store, server, archive } = setup;
  let m = setup.m;
  const old = randomBytes(6 * 1024 * 1024);
  const fresh = randomBytes(old.length);
  writeFileSync(join(s.mnt, 'big'), old);
  writeFileSync(join(s.base, 'fresh'), fresh);
  t.is(strata(['sync', s.mnt]).status, 0);
  // Nothing is acked from now on (the journal cannot give back a segment), and the disk is full.
  process.kill(server.pid, 'SIGSTOP');
  spawnSync('dd', ['if=/dev/zero', `of=${join(disk, 'filler')}`, 'bs=64k'], { encoding: 'utf8' });
  const py = shLimited(`${PYTHON} - <<'EOF'
import os, errno, json
new = open(${JSON.stringify(join(s.base, 'fresh'))}, 'rb').read()
fd = os.open('big', os.O_WRONLY)
n, err = 0, None
while n < len(new):
    try:
        n += os.pwrite(fd, new[n:n + 65536], n)
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
os.close(fd)
print(json.dumps({'n': n, 'err': err}))
EOF`, s.mnt, 60);
  t.is(py.status, 0, py.stderr);
  const r = JSON.parse(py.stdout) as { n: number; err: string | null };
  t.true(r.n > 0, 'some overwrites were taken');
  t.is(r.err, 'ENOSPC', `overwritten ${r.n} of ${fresh.length} bytes`);
  t.is(mirrorJson(s.mnt).journal.noRoom, null, 'no record waits in memory');
  const expected = Buffer.concat([fresh.subarray(0, r.n), old.subarray(r.n)]);
  t.true(readFileSync(join(s.mnt, 'big')).equals(expected), 'the file holds what was acknowledged');
  process.kill(server.pid, 'SIGCONT');
  const fsync = shLimited(`${PYTHON} -c "import os; fd = os.open('big', os.O_RDONLY); os.fsync(fd)"`, s.mnt, 30);
  t.is(fsync.status, 0, `fsync on the full disk: ${fsync.stderr}`);
  // Killed -9 on the still-full disk: it starts again without room freed, with every byte acknowledged.
  process.kill(m.pid, 'SIGKILL');
  await m.exit();
  t.is(strata(['unmount', s.mnt]).status, 0);
  m = await mountBg(t, s, archive, s.mnt, store);
  t.is(m.status, 0, m.stderr);
  t.true(readFileSync(join(s.mnt, 'big')).equals(expected), 'after the restart too');
  rmSync(join(disk, 'filler'));
  t.is(await syncVerifyRecover(t, s, m, archive), pictureOf(store));
  const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
  t.is(ut.status, 0, ut.stderr);
});

// A mirrored store on a small disk that its own writes fill, the archive taking every record at once.
// Until 2026-12-06 the journal's records of a stream of writes stayed on the disk until the stream
// paused (a segment went only once the archive held all of it and a newer one existed, and a segment
// was 64 MiB), so on a 24 MiB store a second 7 MiB cp right after a first failed with ENOSPC part-way
// though natively both fit. Now a small disk's segments roll over at four times the room kept ahead,
// and a write that meets a full disk while the journal's own records are what fills it waits for the
// archive to take them (the FUSE thread hands such a write to the core instead of answering ENOSPC).
// A file that does not fit beside the others still gets ENOSPC, as natively.
// With the writeback cache the kernel writes a whole file back at close, in 1 MiB writes several at a
// time. A write tried again after waiting is admitted again first (e0dadf5: before, its data took the
// room that came back and its record then waited in memory for good). Still left: data and the records
// of unacked writes must fit together, and a burst of 1 MiB write-backs on a disk this tight can find
// no room for its records; a close still gets ENOSPC in some runs (batches beside a CI run: 3 of 6, 0 of 6,
// 1 of 5, 1 of 8; docs/mirroring.md). Skipped for that reason unless STRATA_SMALL_STORE_WRITEBACK=1.
const WRITEBACK_RACE = process.env['STRATA_SMALL_STORE_WRITEBACK'] === '1';
for (const variant of [[], ['--no-direct-journal'], ['--writeback-cache']]) {
  const known = variant.includes('--writeback-cache') && !WRITEBACK_RACE;
  (known ? test.skip : test.serial)(`${known ? '[skipped: a burst of 1 MiB write-backs on a disk this tight can find no room for its records under load (docs/mirroring.md); STRATA_SMALL_STORE_WRITEBACK=1 runs it] ' : ''}a small mirrored store that its own writes fill: writes wait for the archive to take the journal's records instead of failing${variant.length ? ` (${variant.join(' ')})` : ''}`, async (t) => {
    const s = scratch(t);
    const disk = join(s.base, 'disk');
    if (!smallDisk(t, disk, '24m')) return;
    const store = join(disk, 'store');
    const archive = ['--archive', `file://${join(s.base, 'archive')}`, '--volume', 'v'];
    const m = await mountBg(t, s, [...archive, ...variant], s.mnt, store);
    t.is(m.status, 0, m.stderr);
    const sources = [0, 1, 2].map((i) => {
      const path = join(s.base, `src${i}`);
      writeFileSync(path, randomBytes(7 * 1024 * 1024));
      return path;
    });
    // One after another, no pause: 21 MiB of data on a 24 MiB disk.
    const cp = shLimited(sources.map((src, i) => `cp ${src} f${i} || exit ${i + 1}`).join('\n'), s.mnt, 120);
    t.is(cp.status, 0, `cp number ${cp.status} failed: ${cp.stderr}`);
    for (const [i, src] of sources.entries()) t.true(readFileSync(join(s.mnt, `f${i}`)).equals(readFileSync(src)), `f${i} as written`);
    // What does not fit beside them fails as natively, and takes nothing with it.
    const big = shLimited(`head -c 4194304 ${sources[0]} > big`, s.mnt, 60);
    t.regex(big.stderr, /No space left on device/);
    rmSync(join(s.mnt, 'big'), { force: true }); // (its create may be what got ENOSPC)
    writeFileSync(join(s.mnt, 'after'), 'room again\n');
    t.is(await syncVerifyRecover(t, s, m, archive), pictureOf(store));
    const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
    t.is(ut.status, 0, ut.stderr);
  });
}

/** A file's bytes as test/helpers/full-disk-ops.py writes them. */
function opBytes(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (seed + i * 7) % 251;
  return b;
}

type DiskOp =
  | { op: 'create' | 'append'; path: string; size: number; seed: number }
  | { op: 'overwrite'; path: string; offset: number; size: number; seed: number }
  | { op: 'unlink' | 'mkdir' | 'rmdir' | 'fsync'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'fill'; filler: string; bytes: number }
  | { op: 'free'; filler: string };
type DiskOutcome = string | { n: number; err: string | null };

/** Applies to the native model what the mount acknowledged of `op`. */
function applyToModel(model: string, op: DiskOp, out: DiskOutcome): void {
  const p = (rel: string): string => join(model, rel);
  if (op.op === 'create' || op.op === 'append') {
    if (typeof out === 'string') return; // the open failed: nothing was made
    const data = opBytes(op.seed, op.size).subarray(0, out.n);
    if (op.op === 'create') writeFileSync(p(op.path), data);
    else appendFileSync(p(op.path), data);
    return;
  }
  if (op.op === 'overwrite') {
    if (typeof out === 'string') return;
    const fd = openSync(p(op.path), 'r+');
    try {
      writeSync(fd, opBytes(op.seed, op.size).subarray(0, out.n), 0, out.n, op.offset);
    } finally {
      closeSync(fd);
    }
    return;
  }
  if (out !== 'ok') return;
  switch (op.op) {
    case 'unlink': rmSync(p(op.path)); break;
    case 'mkdir': mkdirSync(p(op.path), 0o755); break;
    case 'rmdir': rmdirSync(p(op.path)); break;
    case 'rename': renameSync(p(op.from), p(op.to)); break;
    case 'chmod': chmodSync(p(op.path), op.mode); break;
    case 'truncate': truncateSync(p(op.path), op.size); break;
    default: break;
  }
}

/**
 * Runs `ops` through the mount at `mnt` (test/helpers/full-disk-ops.py: a child with a time limit, so a
 * hung mount fails the test), applies to the native `model` what the mount acknowledged and logs
 * the round; how many ops met ENOSPC, or null (the test failed) when the ops did not finish.
 */
function runDiskOps(t: ExecutionContext, mnt: string, model: string, ops: DiskOp[], round: number): number | null {
  const r = shLimited(`${PYTHON} ${JSON.stringify(FULL_DISK_OPS)} <<'EOF'\n${JSON.stringify(ops)}\nEOF`, mnt, 120);
  if (r.status !== 0) {
    t.fail(`round ${round}: the ops did not finish: ${r.stderr}`);
    return null;
  }
  const outs = JSON.parse(r.stdout) as DiskOutcome[];
  ops.forEach((op, i) => applyToModel(model, op, outs[i]!));
  t.log(`round ${round}: ${ops.map((op, i) => `${describeDiskOp(op)} = ${JSON.stringify(outs[i])}`).join('; ')}`);
  return outs.filter((o) => o === 'ENOSPC' || (typeof o === 'object' && o.err === 'ENOSPC')).length;
}

/** Errors of an op the daemon died under (the mount is gone: its outcome is unknown). */
const DIED = new Set(['ENOTCONN', 'ECONNABORTED', 'EIO']);

/**
 * runDiskOps with the daemon (`pid`) killed -9 `killAfterMs` into the ops: the ops before the first
 * one that met the dead mount are applied to the model as acknowledged, that one's names are returned
 * as unknown (it may or may not have happened), and the rest met the dead mount (nothing happened).
 */
async function runDiskOpsKilled(t: ExecutionContext, mnt: string, model: string, ops: DiskOp[], round: number, pid: number, killAfterMs: number): Promise<{ met: number | null; unknown: string[] }> {
  // The interpreter itself, not a wrapper found on PATH (pyenv's shim is a shell script that changes
  // into its working directory first: with the daemon killed before that, it failed, and so did the
  // test, though no op had run; seed 961216402 of the recovery model, killed 0-400 ms in).
  const child = spawn('timeout', ['-s', 'KILL', '120', PYTHON, FULL_DISK_OPS], { cwd: mnt, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdin.end(JSON.stringify(ops));
  const timer = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, killAfterMs);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  // Killed after the ops were done: the kill happens now.
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  if (code !== 0) {
    t.fail(`round ${round}: the ops did not finish: ${err}`);
    return { met: null, unknown: [] };
  }
  const outs = JSON.parse(out) as DiskOutcome[];
  const died = (o: DiskOutcome): boolean => DIED.has(typeof o === 'string' ? o : o.err ?? '');
  const cut = outs.findIndex(died);
  const acked = cut < 0 ? ops.length : cut;
  ops.slice(0, acked).forEach((op, i) => applyToModel(model, op, outs[i]!));
  const inFlight = cut < 0 ? undefined : ops[cut];
  const unknown = inFlight === undefined ? [] : 'path' in inFlight ? [inFlight.path] : 'from' in inFlight ? [inFlight.from, inFlight.to] : [];
  t.log(`round ${round} (killed after ${killAfterMs} ms, at op ${acked} of ${ops.length}): ${ops.slice(0, acked + 1).map((op, i) => `${describeDiskOp(op)} = ${JSON.stringify(outs[i])}`).join('; ')}`);
  return { met: outs.slice(0, acked).filter((o) => o === 'ENOSPC' || (typeof o === 'object' && o.err === 'ENOSPC')).length, unknown };
}

/** The store-relative path of the regular file that takes the most room on disk (its private directory left out), or null. */
function largestFile(store: string): string | null {
  let best: { rel: string; blocks: number } | null = null;
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(store, rel))) {
      if (rel === '' && name === '.strata') continue;
      const child = rel === '' ? name : `${rel}/${name}`;
      const st = statSync(join(store, child));
      if (st.isDirectory()) walk(child);
      else if (st.isFile() && (best === null || st.blocks > best.blocks)) best = { rel: child, blocks: st.blocks };
    }
  };
  walk('');
  return best === null ? null : (best as { rel: string }).rel;
}

/** The model takes the mount's version of `rel` (a file, a directory, or nothing). */
function adoptFromMount(mnt: string, model: string, rel: string): void {
  rmSync(join(model, rel), { recursive: true, force: true });
  if (existsSync(join(mnt, rel))) cpSync(join(mnt, rel), join(model, rel), { recursive: true, preserveTimestamps: true });
}

/** One op, short, for a log. */
function describeDiskOp(op: DiskOp): string {
  switch (op.op) {
    case 'create': case 'append': return `${op.op} ${op.path} ${op.size}`;
    case 'overwrite': return `overwrite ${op.path} ${op.size}@${op.offset}`;
    case 'rename': return `rename ${op.from} ${op.to}`;
    case 'chmod': return `chmod ${op.path} ${op.mode.toString(8)}`;
    case 'truncate': return `truncate ${op.path} ${op.size}`;
    case 'fill': return `fill ${op.bytes}`;
    case 'free': return 'free';
    default: return `${op.op} ${op.path}`;
  }
}

/** Random ops over a few names: creates and appends of up to 700 KiB, removals, renames, the disk filled and freed from outside. */
function diskOps(rng: Rng, n: number, filler: string): DiskOp[] {
  const names = ['a', 'b', 'c', 'd', 'e', 'f', 'sub/a', 'sub/b', 'sub/c', 'sub2/x', 'sub2/y'];
  const dirs = ['sub', 'sub2'];
  const ops: DiskOp[] = [];
  for (let i = 0; i < n; i++) {
    const kind = rng.weighted([['create', 6], ['append', 3], ['overwrite', 3], ['unlink', 4], ['rename', 2], ['mkdir', 1], ['rmdir', 1], ['chmod', 1], ['truncate', 1], ['fsync', 2], ['fill', 1], ['free', 1]] as const);
    const name = rng.pick(names);
    switch (kind) {
      case 'create': case 'append': ops.push({ op: kind, path: name, size: rng.int(0, 700 * 1024), seed: rng.int(0, 250) }); break;
      // Within and past the end of files up to 1.5 MiB, across 64 KiB blocks.
      case 'overwrite': ops.push({ op: 'overwrite', path: name, offset: rng.int(0, 1600 * 1024), size: rng.int(1, 200 * 1024), seed: rng.int(0, 250) }); break;
      case 'unlink': case 'fsync': ops.push({ op: kind, path: name }); break;
      case 'mkdir': case 'rmdir': ops.push({ op: kind, path: rng.pick(dirs) }); break;
      case 'rename': ops.push({ op: 'rename', from: name, to: rng.pick(names) }); break;
      case 'chmod': ops.push({ op: 'chmod', path: name, mode: rng.pick([0o600, 0o644, 0o640]) }); break;
      case 'truncate': ops.push({ op: 'truncate', path: name, size: rng.int(0, 100_000) }); break;
      case 'fill': ops.push({ op: 'fill', filler, bytes: rng.int(1, 16) * 1024 * 1024 }); break;
      case 'free': ops.push({ op: 'free', filler }); break;
    }
  }
  return ops;
}

// The seeded model of a full mirrored store: random ops through the mount while another program fills
// and frees the store's disk, a kill -9 of the daemon between rounds; after each round the mount equals
// a native copy of what it acknowledged (an op that failed with ENOSPC made nothing), and at the end the
// archive (a recovery into another store) equals it too. STRATA_FULL_DISK_SEED=<seed> replays one.
test.serial('seeded model: random ops on a mirrored store whose disk fills and frees, kill -9 between rounds; the mount, and a recovery, equal a native copy of what was acknowledged', async (t) => {
  const seed = Number(process.env['STRATA_FULL_DISK_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (replay: STRATA_FULL_DISK_SEED=${seed})`);
  const rng = new Rng(seed);
  const s = scratch(t);
  const disk = join(s.base, 'disk');
  if (!smallDisk(t, disk, '12m')) return;
  const store = join(disk, 'store');
  const filler = join(disk, 'filler');
  const model = join(s.base, 'model');
  mkdirSync(model);
  const archive = ['--archive', `file://${join(s.base, 'archive')}`, '--volume', 'v'];
  let m = await mountBg(t, s, archive, s.mnt, store);
  t.is(m.status, 0, m.stderr);
  let enospc = 0;
  for (let round = 0; round < 4; round++) {
    const ops = diskOps(rng, 40, filler);
    const met = runDiskOps(t, s.mnt, model, ops, round);
    if (met === null) return;
    enospc += met;
    t.is(pictureOf(s.mnt), pictureOf(model), `round ${round}: the mount equals the model`);
    // The daemon killed -9 (records may wait in memory), the disk freed, a new mount re-converges.
    process.kill(m.pid, 'SIGKILL');
    await m.exit();
    rmSync(filler, { force: true });
    t.is(strata(['unmount', s.mnt]).status, 0);
    m = await mountBg(t, s, archive, s.mnt, store);
    t.is(m.status, 0, m.stderr);
    t.is(pictureOf(s.mnt), pictureOf(model), `round ${round}: after the restart`);
  }
  const daemonLog = readFileSync(join(store, '.strata', 'daemon.log'), 'utf8');
  t.log(`${enospc} ops met ENOSPC; the journal had no room ${daemonLog.split('journal: no room on the store').length - 1} times, dropped a segment the archive held ${daemonLog.split('dropped early').length - 1} times`);
  t.is(await syncVerifyRecover(t, s, m, archive), pictureOf(model), 'a recovery equals the model');
  const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
  t.is(ut.status, 0, ut.stderr);
});

// The same model on a store being recovered (2026-12-06): the volume's files are in the archive only, in
// pending directories (--depth 0 or 1) and not local yet, when the ops start; the store's disk is small
// and another program fills and frees it. Writes in place and appends into files whose data is still in
// the archive must either be acknowledged and kept, or fail with nothing changed; a kill -9 between
// rounds, then `strata recover` again (it goes on) or `strata mount`; at the end a fresh recovery into
// another store equals the model. STRATA_FULL_DISK_RECOVER_SEED=<seed> replays one.
test.serial('seeded model: random ops on a store being recovered whose disk fills and frees, kill -9 between rounds; the mount, and a new recovery, equal a native copy of what was acknowledged', async (t) => {
  const seed = Number(process.env['STRATA_FULL_DISK_RECOVER_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  t.log(`seed ${seed} (replay: STRATA_FULL_DISK_RECOVER_SEED=${seed})`);
  const rng = new Rng(seed);
  const s = scratch(t);
  const model = join(s.base, 'model');
  mkdirSync(join(model, 'sub'), { recursive: true });
  mkdirSync(join(model, 'sub2'));
  for (const name of ['a', 'b', 'c', 'd', 'e', 'f', 'sub/a', 'sub/b', 'sub/c', 'sub2/x', 'sub2/y']) {
    if (rng.int(0, 3) > 0) writeFileSync(join(model, name), randomBytes(rng.int(0, 1500 * 1024)));
  }
  // Deeper directories the ops never touch, only the pictures (which read them through the mount), and
  // sometimes more data than the store holds: the restore then waits for room, reads are answered from
  // the archive, and every directory must still list.
  for (const dir of ['deep/x/y', 'deep/x/z', 'deep/w']) {
    mkdirSync(join(model, dir), { recursive: true });
    for (let i = rng.int(0, 3); i > 0; i--) writeFileSync(join(model, dir, `f${i}`), randomBytes(rng.int(0, 3 * 1024 * 1024)));
  }
  const archive = ['--archive', `file://${join(s.base, 'archive')}`, '--volume', 'v'];
  // The volume: the model copied onto a mirrored mount of an ordinary store, which is then lost.
  let m = await mountBg(t, s, archive);
  t.is(m.status, 0, m.stderr);
  t.is(sh(`cp -a ${JSON.stringify(model)}/. .`, s.mnt).status, 0);
  t.is(strata(['sync', s.mnt]).status, 0);
  t.is(strata(['unmount', s.mnt]).status, 0);
  t.is(await m.exit(), 0);
  rmSync(s.store, { recursive: true, force: true });

  const disk = join(s.base, 'disk');
  if (!smallDisk(t, disk, '12m')) return;
  const store = join(disk, 'store');
  const filler = join(disk, 'filler');
  const depth = String(rng.int(0, 1));
  const background = rng.int(0, 1) === 0 ? [] : ['--no-background-restore'];
  t.log(`recover --depth ${depth} ${background.join(' ')}`);
  m = await mountBg(t, s, [...archive, '--depth', depth, ...background, '--force'], s.mnt, store, 'recover');
  t.is(m.status, 0, m.stderr);
  let enospc = 0;
  for (let round = 0; round < 4; round++) {
    const ops = diskOps(rng, 40, filler);
    // Every other round the daemon is killed -9 while the ops run (at a random moment): what it
    // acknowledged before must be there after the restart; the op it was in the middle of may have
    // happened or not, so its names are taken from the mount afterwards.
    const killAfterMs = rng.int(0, 1) === 0 ? rng.int(0, 400) : null;
    const run = killAfterMs === null ? { met: runDiskOps(t, s.mnt, model, ops, round), unknown: [] } : await runDiskOpsKilled(t, s.mnt, model, ops, round, m.pid, killAfterMs);
    if (run.met === null) return;
    enospc += run.met;
    // Room first: a directory not made local yet cannot be while the disk is full (looking in it
    // fails with ENOSPC; docs/recovery.md), and the picture looks in every one.
    rmSync(filler, { force: true });
    if (killAfterMs === null) {
      t.is(pictureOf(s.mnt), pictureOf(model), `round ${round}: the mount equals the model`);
      process.kill(m.pid, 'SIGKILL');
    }
    await m.exit();
    t.is(strata(['unmount', s.mnt]).status, 0);
    const again = rng.int(0, 1) === 0 ? 'recover' : 'mount';
    const restart = (): Promise<BgMount> => mountBg(t, s, again === 'recover' ? [...archive, '--depth', depth, ...background] : archive, s.mnt, store, again);
    m = await restart();
    for (let tries = 0; tries < 3 && m.status !== 0 && /the journal has had no room since/.test(m.stderr); tries++) {
      // The documented limit (SEMANTICS, "a mirrored store's disk full"): programs' files filled the disk,
      // and the re-convergence after the kill has no room for its records. What an operator does: free
      // room in the store (the file taking the most room goes, here and in the model), and start again.
      const largest = largestFile(store);
      t.log(`round ${round}: strata ${again} found no room for the re-convergence (${m.stderr.trim()}); ${largest ?? 'nothing'} removed from the store`);
      if (largest !== null) {
        rmSync(join(store, largest));
        rmSync(join(model, largest), { force: true });
      }
      strata(['unmount', s.mnt]); // a start that failed may have left nothing mounted
      m = await restart();
    }
    t.is(m.status, 0, m.stderr);
    for (const rel of run.unknown) adoptFromMount(s.mnt, model, rel);
    t.is(pictureOf(s.mnt), pictureOf(model), `round ${round}: after the restart (strata ${again})${killAfterMs !== null ? `, killed ${killAfterMs} ms into the ops${run.unknown.length > 0 ? ` during ${run.unknown.join(', ')}` : ''}` : ''}`);
  }
  t.log(`${enospc} ops met ENOSPC`);
  t.is(await syncVerifyRecover(t, s, m, archive), pictureOf(model), 'a new recovery equals the model');
  const ut = spawnSync('umount', [disk], { encoding: 'utf8' });
  t.is(ut.status, 0, ut.stderr);
});

// ---- 8. nothing left behind -----------------------------------------------------------------------

test.serial('no leftovers: no mount and no daemon of this file remains', async (t) => {
  t.true(bases.length > 0);
  // Teardowns of the tests above have run; give the last exits a moment.
  await waitFor('leftovers to go', () => bases.every((b) => mountsUnder(b).length === 0 && processesMentioning(b).length === 0), 5000).catch(() => {});
  for (const b of bases) {
    t.deepEqual(mountsUnder(b), [], `mounts left under ${b}`);
    t.deepEqual(processesMentioning(b), [], `processes left for ${b}`);
    t.false(existsSync(b), `${b} not removed`);
  }
  for (const mnt of mountpoints) {
    t.false(isMounted(mnt), `${mnt} still mounted`);
    t.false(existsSync(controlSocketPath(mnt)), `control socket of ${mnt} left`);
  }
  const alive = daemonPids.filter((pid) => running(pid) && bases.some((b) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(b)));
  t.deepEqual(alive, [], 'daemons still running');
});
