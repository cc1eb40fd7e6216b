// `strata demo` / `npm run demo`: the main job on one machine, disk loss
// included. It mounts a fresh store mirrored to an embedded file:// archive,
// builds a realistic tree on the mount with real programs (a git repository,
// a sqlite3 database, an extracted source tarball, a 64 MiB file, a 1 GiB
// sparse file, a deep path), waits until the archive holds every change
// (strata sync, strata verify), then loses the disk: kill -9 of the daemon,
// the stale mount cleared, the store wiped. `strata recover --depth 2` brings
// the volume back: the demo shows the time to serve, programs walking deep
// paths while what they touch is fetched on demand (the restore.fetch
// counters of strata status before and after each), strata verify on the
// partly restored store, then a restart that lets the background restore
// make the rest local (its progress line until 'complete'), that every file
// reads back identical, and a final strata verify with 0 differences. Then it
// unmounts and removes its directory (unless --keep). Any failed step fails
// the demo (exit 1); no mount or daemon outlives it.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { callControl } from '../daemon/control.js';
import { processRunning } from '../daemon/process-running.js';
import type { DaemonStatus } from '../daemon/mount-daemon.js';
import type { RestoreProgress } from '../restore/background.js';
import type { FetchStats } from '../restore/on-demand.js';
import { forgetSideMarks, isPending, readBlockMap } from '../store/restore-marks.js';
import * as native from '../native/index.js';
import { readObjectId } from '../store/object-ids.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { formatRestoreProgress } from './restore-format.js';
import { mib } from '../util/units.js';

const cli = fileURLToPath(new URL('../../../bin/strata.js', import.meta.url));
const VOLUME = 'demo';
const DEPTH = 2;
/** The deep path: 10 directories, so 9 of them below the recovery's frontier (tier 2). */
const DEEP_DIR = 'projects/acme/services/billing/src/main/java/com/acme/billing';
const DEEP_FILE = `${DEEP_DIR}/Invoice.java`;
/** The background restore must be done within this long (the demo's volume is ~70 MiB of data). */
const RESTORE_LIMIT_MS = 180_000;
/** Subdirectories of /usr/include packed into the demo's source tarball (~220 files: extracting stays quick on a mirrored mount). */
const HEADER_DIRS = ['linux/netfilter', 'linux/netfilter_ipv4', 'linux/netfilter_ipv6', 'linux/netfilter_bridge', 'linux/usb', 'linux/can', 'asm-generic', 'netinet', 'arpa', 'net'];

/** When the demo started (its headings show the time since). */
let started = Date.now();

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function step(title: string): void {
  process.stdout.write(`\n== [${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${title}\n`);
}

function say(text: string): void {
  process.stdout.write(`  ${text}\n`);
}

function indent(out: string, maxLines: number): string {
  const lines = out.trimEnd().split('\n');
  const shown = lines.slice(0, maxLines);
  if (lines.length > maxLines) shown.push(`… (${lines.length - maxLines} more lines)`);
  return shown.map((l) => (l ? `    ${l}` : l)).join('\n');
}

/** Runs `cmd` in bash, shows it and (the first lines of) its output; throws when it fails unless `allowFail`. */
function sh(cmd: string, cwd: string, opts: { maxLines?: number; allowFail?: boolean; quiet?: boolean } = {}): { out: string; ms: number; status: number } {
  if (!opts.quiet) process.stdout.write(`  $ ${cmd}\n`);
  const t = Date.now();
  const res = spawnSync('bash', ['-c', `set -o pipefail; ${cmd}`], { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const ms = Date.now() - t;
  const out = (res.stdout ?? '') + (res.stderr ?? '');
  if (!opts.quiet && out.trim() !== '') process.stdout.write(`${indent(out, opts.maxLines ?? 12)}\n`);
  const status = res.status ?? 1;
  if (status !== 0 && !opts.allowFail) throw new Error(`command failed (exit ${res.status ?? res.signal}): ${cmd}`);
  return { out, ms, status };
}

/** `strata ARGS...` as a shell command line (for sh). */
function strata(args: string): string {
  return `node ${cli} ${args}`;
}

function has(program: string): boolean {
  return spawnSync('bash', ['-c', `command -v ${program}`]).status === 0;
}

function inMountTable(mnt: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
}

async function daemonStatus(mnt: string): Promise<DaemonStatus> {
  return (await callControl(mnt, { cmd: 'status' }, 5000)) as DaemonStatus;
}

async function restoreOf(mnt: string): Promise<RestoreProgress> {
  const s = await daemonStatus(mnt);
  if (s.restore === null) throw new Error(`${mnt}: the daemon reports no restore`);
  return s.restore;
}

function fetchDelta(a: FetchStats, b: FetchStats): string {
  const d = (k: 'dirFetches' | 'rangeFetches' | 'blocksFetched' | 'bytesFetched' | 'entriesMaterialised' | 'failures'): number => b[k] - a[k];
  return `+${d('dirFetches')} directories (+${d('entriesMaterialised')} entries), +${d('blocksFetched')} blocks in +${d('rangeFetches')} requests (${mib(d('bytesFetched'))})` +
    (d('failures') > 0 ? `, +${d('failures')} FAILED (${b.lastError ?? '?'})` : '');
}

function counters(f: FetchStats): string {
  return `dirFetches=${f.dirFetches} entriesMaterialised=${f.entriesMaterialised} rangeFetches=${f.rangeFetches} ` +
    `blocksFetched=${f.blocksFetched} bytesFetched=${f.bytesFetched} holesSkipped=${f.holesSkipped} failures=${f.failures}`;
}

/**
 * What of `rel` is local in the store right now, from a read-only look at the
 * store (pending marks, block maps): how many directories on its path are
 * restored (the rest are pending or not materialised yet: only in the
 * archive), and for a file whether it is a stub.
 */
async function localState(store: string, rel: string, isDir: boolean): Promise<string> {
  const parts = rel.split('/');
  const dirs = isDir ? parts.length : parts.length - 1;
  let restored = 0;
  const privateDir = join(store, RESERVED_NAME);
  forgetSideMarks(privateDir); // the daemon (another process) may have made some since the last look
  for (let i = 1; i <= dirs; i++) {
    const p = join(store, ...parts.slice(0, i));
    if (!existsSync(p) || (await isPending(privateDir, p, native.AT_FDCWD))) break;
    restored++;
  }
  const where = dirs === 0 ? 'in the root directory (restored)' : `${restored} of ${dirs} directories on the path restored`;
  if (isDir) return where;
  const file = join(store, rel);
  let exists = true;
  try { lstatSync(file); } catch { exists = false; }
  if (!exists) return `${where}; the file is not materialised yet`;
  const id = await readObjectId(file, native.AT_FDCWD).catch(() => null);
  const map = id !== null ? await readBlockMap(join(store, RESERVED_NAME), id).catch(() => null) : null;
  return map === null ? `${where}; the file is local` : `${where}; the file is a stub (${map.present.length - map.missing} of ${map.present.length} blocks local)`;
}

export async function demoCommand(opts: { keep?: boolean }): Promise<number> {
  started = Date.now();
  const base = mkdtempSync(join(tmpdir(), 'strata-demo-'));
  const store = join(base, 'store');
  const mnt = join(base, 'mnt');
  const archive = `file://${join(base, 'archive')}`;
  mkdirSync(mnt);
  let daemonPid = 0;
  const summary: string[] = [];
  try {
    step(`mount a fresh store (${store}) at ${mnt}, mirrored to ${archive} (volume ${VOLUME})`);
    const mount = sh(strata(`mount --store ${store} --archive ${archive} --volume ${VOLUME} ${mnt}`), base);
    daemonPid = (await daemonStatus(mnt)).pid;
    say(`serving after ${secs(mount.ms)} (command's wall time)`);

    // ---------------------------------------------------------------- the tree
    step('build a realistic tree on the mount with real programs');
    let t = Date.now();
    say('a git repository with history:');
    sh('git init -q repo && cd repo && git config user.email demo@strata && git config user.name demo && ' +
      'printf "# acme\\n" > README.md && git add . && git commit -qm "initial commit" && ' +
      'mkdir -p src && for i in 1 2 3 4 5; do printf "int f%d(void) { return %d; }\\n" $i $i >> src/lib.c; ' +
      'echo "- change $i" >> README.md; git add -A; git commit -qm "change $i"; done && ' +
      'git tag v1.0 && git log --oneline --decorate', mnt);
    const sqlite = has('sqlite3');
    if (sqlite) {
      say('a sqlite3 database:');
      sh("sqlite3 app.db 'create table t(k integer primary key, v text); begin; " +
        'insert into t(v) select hex(randomblob(16)) from (with recursive c(x) as (select 1 union all select x+1 from c where x<5000) select x from c); commit; ' +
        "select count(*) from t; pragma integrity_check;'", mnt);
    } else {
      say('(sqlite3 not installed: the database is skipped)');
    }
    say('a source tarball (C headers from /usr/include), extracted on the mount:');
    const headers = HEADER_DIRS.filter((d) => existsSync(join('/usr/include', d)));
    const tarSource = headers.length > 0 ? `-C /usr/include ${headers.join(' ')}` : `-C ${join(cli, '../..')} src native`;
    sh(`tar -czf ${join(base, 'sources.tar.gz')} ${tarSource} && mkdir -p dist include && ` +
      `cp ${join(base, 'sources.tar.gz')} dist/ && tar -xzf dist/sources.tar.gz -C include && ` +
      'echo "$(find include -type f | wc -l) files, $(du -sh --apparent-size include | cut -f1) in include/"', mnt);
    say('a large file, a sparse file, a deep path, links, a fifo and a nanosecond mtime:');
    const disk = join(base, 'disk.img');
    sh('mkdir -p media vm misc && dd if=/dev/urandom of=media/big.bin bs=1M count=64 status=none && ' +
      `truncate -s 1G ${disk} && dd if=/dev/urandom of=${disk} bs=1M count=2 seek=100 conv=notrunc status=none && ` +
      `dd if=/dev/urandom of=${disk} bs=1M count=2 seek=900 conv=notrunc status=none && ` +
      `cp --sparse=always ${disk} vm/disk.img && ` +
      `mkdir -p ${DEEP_DIR} && printf "package com.acme.billing;\\npublic class Invoice {}\\n" > ${DEEP_FILE} && ` +
      'echo "hello from strata" > misc/notes.txt && ln misc/notes.txt misc/notes-hardlink.txt && ln -s ../media/big.bin misc/big-symlink && mkfifo misc/fifo && ' +
      'touch -m -d "2001-02-03 04:05:06.123456789" misc/notes.txt && ' +
      'ls -l media vm && echo "vm/disk.img: $(du -h --apparent-size vm/disk.img | cut -f1) apparent, $(du -h vm/disk.img | cut -f1) allocated" && ' +
      `echo "deep file: ${DEEP_FILE} ($(echo ${DEEP_DIR} | tr / '\\n' | wc -l) directories)"`, mnt);
    say('checksums of every file, to compare after the recovery:');
    sh(`find . -type f ! -name disk.img -print0 | sort -z | xargs -0 sha256sum > ${join(base, 'manifest.sha256')} && ` +
      `echo "$(wc -l < ${join(base, 'manifest.sha256')}) files + vm/disk.img" && git -C repo rev-parse HEAD > ${join(base, 'head')}`, mnt);
    summary.push(`tree built in ${secs(Date.now() - t)}`);

    step('the archive catches up (strata sync) and holds exactly the store (strata verify)');
    t = Date.now();
    sh(strata(`sync ${mnt}`), base);
    summary.push(`strata sync: ${secs(Date.now() - t)}`);
    sh(strata(`verify --store ${store} --archive ${archive} --volume ${VOLUME}`), base);

    // ---------------------------------------------------------------- the loss
    step('disk loss: kill -9 the daemon, clear the stale mount, wipe the store');
    const st = JSON.parse(sh(strata(`status --json ${mnt}`), base, { quiet: true }).out) as { pid?: unknown };
    if (typeof st.pid !== 'number') throw new Error('strata status --json has no daemon pid');
    daemonPid = st.pid;
    sh(`kill -9 ${daemonPid}`, base);
    for (let i = 0; i < 250 && processRunning(daemonPid); i++) await sleep(20);
    if (processRunning(daemonPid)) throw new Error(`daemon ${daemonPid} survived kill -9`);
    daemonPid = 0;
    sh(`ls ${mnt}`, base, { allowFail: true });
    sh(strata(`unmount ${mnt}`), base);
    sh(`rm -rf ${store} && ls -ld ${store}`, base, { allowFail: true });
    if (existsSync(store)) throw new Error(`${store} still exists`);

    // ---------------------------------------------------------------- recover
    // --no-background-restore for this first part: what the counters show
    // below is then only what the programs touched. (Without it, the default,
    // the background restore starts at once and races the programs to the
    // same directories; the restart further down runs it.)
    step(`strata recover --depth ${DEPTH}: fence the volume, restore tiers 0..${DEPTH - 1}, serve`);
    const rec = sh(strata(`recover --archive ${archive} --volume ${VOLUME} --store ${store} --depth ${DEPTH} --no-background-restore ${mnt}`), base);
    daemonPid = (await daemonStatus(mnt)).pid;
    const serving = /serving after ([\d.]+) s/.exec(rec.out);
    if (!serving) throw new Error('strata recover did not say "serving after X s"');
    say(`time to serve: ${serving[1]} s inside the daemon, ${secs(rec.ms)} for the whole command`);
    say('(--no-background-restore only so that the counters below show just what the programs fetch; ' +
      'by default the background restore starts as soon as the mount serves, as after the restart below)');
    summary.push(`time to serve after recover: ${serving[1]} s (whole command: ${secs(rec.ms)})`);
    const first = await restoreOf(mnt);
    say(`restore ${first.phase}: ${first.entries.done} of ${first.entries.total} entries local, ` +
      `volume ${mib(first.bytes.total)}, epoch ${first.epoch} (fenced), recovery point record ${first.recoveredSeq}`);
    sh('ls -F', mnt);

    // ---------------------------------------------------------------- on demand
    step('programs on the recovered mount: what they touch is fetched on demand');
    const programs: { title: string; target: string; isDir?: boolean; cmd: string; check?: (out: string) => void }[] = [
      {
        title: `cat the deep file (${DEEP_DIR.split('/').length} directories down)`, target: DEEP_FILE, cmd: `cat ${DEEP_FILE}`,
        check: (out) => { if (!out.includes('class Invoice')) throw new Error('the deep file reads back wrong'); },
      },
      {
        title: 'git log and git fsck in the repository', target: 'repo/.git/objects', isDir: true,
        cmd: 'cd repo && git log --oneline --decorate -3 && git fsck --no-progress && git rev-parse HEAD',
        check: (out) => { if (!out.includes(readFileSync(join(base, 'head'), 'utf8').trim())) throw new Error('git HEAD differs after the recovery'); },
      },
      ...(sqlite ? [{
        title: 'sqlite3 queries the database', target: 'app.db', cmd: "sqlite3 app.db 'select count(*) from t; pragma integrity_check;'",
        check: (out: string) => { if (!/^5000\nok$/m.test(out.trim())) throw new Error('the database reads back wrong'); },
      }] : []),
      {
        title: 'sha256sum of the 64 MiB file', target: 'media/big.bin', cmd: 'sha256sum media/big.bin',
        check: (out) => {
          const want = readFileSync(join(base, 'manifest.sha256'), 'utf8').split('\n').find((l) => l.endsWith(' ./media/big.bin'))?.split(' ')[0];
          if (want === undefined || !out.startsWith(want)) throw new Error('media/big.bin reads back wrong');
        },
      },
    ];
    for (const p of programs) {
      say(`-- ${p.title}`);
      say(`before: ${await localState(store, p.target, p.isDir ?? false)}`);
      const before = (await restoreOf(mnt)).fetch;
      const run = sh(p.cmd, mnt);
      const after = (await restoreOf(mnt)).fetch;
      p.check?.(run.out);
      say(`after:  ${await localState(store, p.target, p.isDir ?? false)}`);
      say(`restore.fetch before: ${counters(before)}`);
      say(`restore.fetch after:  ${counters(after)}`);
      say(`took ${secs(run.ms)}, fetching on demand ${fetchDelta(before, after)}`);
      if (after.failures > before.failures) throw new Error(`fetches failed: ${after.lastError ?? '?'}`);
      summary.push(`${p.title}: ${secs(run.ms)} (${fetchDelta(before, after)})`);
    }

    step('strata verify on the partly restored store: 0 differences so far, and it says what is not local yet');
    const partial = sh(strata(`verify --store ${store} --archive ${archive} --volume ${VOLUME}`), base);
    if (!/ 0 differences/.test(partial.out)) throw new Error('strata verify found differences on the partly restored store');

    // ---------------------------------------------------------------- background
    step('restart without --no-background-restore: the background restore makes the rest local');
    sh(strata(`unmount ${mnt}`), base);
    daemonPid = 0;
    sh(strata(`mount --store ${store} --archive ${archive} --volume ${VOLUME} ${mnt}`), base);
    daemonPid = (await daemonStatus(mnt)).pid;
    say('progress, polled from strata status while the mount serves:');
    const bgStart = Date.now();
    for (;;) {
      const p = await restoreOf(mnt);
      say(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${formatRestoreProgress(p)}`);
      if (p.fetch.failures > 0) throw new Error(`the restore had ${p.fetch.failures} failed fetches (${p.fetch.lastError ?? '?'})`);
      if (p.phase === 'complete') {
        summary.push(`background restore: fully local after ${secs(Date.now() - bgStart)} ` +
          `(${p.fetch.dirFetches} directories, ${p.fetch.blocksFetched} blocks in ${p.fetch.rangeFetches} requests, ${mib(p.fetch.bytesFetched)}; ` +
          `${p.fetch.holesSkipped} blocks of holes not fetched)`);
        break;
      }
      if (Date.now() - bgStart > RESTORE_LIMIT_MS) throw new Error(`the restore is not complete after ${RESTORE_LIMIT_MS / 1000} s`);
      await sleep(500);
    }
    sh(strata(`status ${mnt}`), base, { maxLines: 20 });

    step('every file reads back identical; holes stayed holes');
    sh(`sha256sum --quiet -c ${join(base, 'manifest.sha256')} && echo "$(wc -l < ${join(base, 'manifest.sha256')}) files identical" && ` +
      `for at in 100 900; do cmp <(dd if=vm/disk.img bs=1M skip=$((at - 1)) count=4 status=none) <(dd if=${disk} bs=1M skip=$((at - 1)) count=4 status=none) || exit 1; done && ` +
      'echo "vm/disk.img: its data regions identical" && ' +
      `stat -c "%n mtime=%y links=%h" misc/notes.txt && ls -l misc/big-symlink misc/fifo && ` +
      `echo "store: vm/disk.img $(du -h --apparent-size ${join(store, 'vm/disk.img')} | cut -f1) apparent, $(du -h ${join(store, 'vm/disk.img')} | cut -f1) allocated" && ` +
      `[ "$(du -k ${join(store, 'vm/disk.img')} | cut -f1)" -lt 65536 ]`, mnt);

    step('the recovered store is mirrored again: a new change, strata sync, strata verify');
    sh('echo "written after the recovery" > after-recovery.txt', mnt);
    sh(strata(`sync ${mnt}`), base);
    const verify = sh(strata(`verify --store ${store} --archive ${archive} --volume ${VOLUME}`), base);
    if (!/ 0 differences$/m.test(verify.out) || /restore unfinished/.test(verify.out)) throw new Error('strata verify did not report 0 differences on a complete restore');
    summary.push(`strata verify: ${verify.out.trim().split('\n').pop() ?? ''}`);

    step('unmount');
    sh(strata(`unmount ${mnt}`), base);
    daemonPid = 0;
    if (inMountTable(mnt)) throw new Error(`${mnt} is still mounted`);

    process.stdout.write(`\nsummary\n${summary.map((l) => `  - ${l}`).join('\n')}\n  - demo total: ${secs(Date.now() - started)}\n`);
    process.stdout.write('\ndemo finished: all steps passed\n');
    return 0;
  } catch (err) {
    process.stderr.write(`\ndemo failed: ${(err as Error).message}\n`);
    return 1;
  } finally {
    // Never leave a mount or a daemon behind: unmount (a stale mount too), then make sure the daemon is gone.
    if (inMountTable(mnt) || daemonPid !== 0) {
      spawnSync(process.execPath, [cli, 'unmount', '--lazy', mnt], { stdio: 'inherit' });
    }
    if (daemonPid !== 0 && processRunning(daemonPid)) {
      try { process.kill(daemonPid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 250 && processRunning(daemonPid); i++) await sleep(20);
    }
    if (inMountTable(mnt)) {
      process.stderr.write(`demo: ${mnt} is still mounted; not removing ${base}\n`);
    } else if (!opts.keep) {
      rmSync(base, { recursive: true, force: true });
    } else {
      process.stdout.write(`kept ${base}\n`);
    }
  }
}
