// Recovery for the integration and fault tests: a volume built by real
// programs on a mirrored mount against a real `strata archive serve` process,
// its manifest taken on the primary before the disk is "lost", and
// `strata recover` into a fresh store. Everything is unmounted, stopped and
// removed in teardown.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { sh, strata } from './mount.js';
import { startArchiveServer, type ArchiveServer } from './archive.js';
import { forceUnmount, mount, syncMount, type MirroredMount } from './mirror.js';
import { livePicture, type Picture } from './model-tree.js';

export interface Volume {
  base: string;
  server: ArchiveServer;
  volume: string;
  /** The primary's mount (unmounted once built), kept for the fencing test. */
  primary: MirroredMount;
  /** `manifest()` of the primary's tree at the recovery point. */
  manifest: string;
  /** `livePicture()` of the primary's tree at the recovery point (with link counts), when asked for. */
  picture?: Picture;
}

/**
 * Types, modes, owners, sizes, mtimes (ns), symlink targets and xattrs of
 * every entry, the sha256 of every file, and which names share an inode: one
 * sorted text (`mtimes: false`: without times, to compare with a native copy
 * changed by the same commands at other moments). Reading the files through a recovering mount fetches all of it.
 */
export function manifest(dir: string, opts: { mtimes?: boolean } = {}): string {
  const t = opts.mtimes === false ? '' : '|%T@';
  const script = [
    `find . -mindepth 1 \\( -type d -printf '%p|d|%m|%U|%G${t}\\n' \\) -o \\( ! -type d -printf '%p|%y|%m|%U|%G|%s${t}|%l\\n' \\) | LC_ALL=C sort`,
    'find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum',
    "getfattr -R -P -d -m '^user\\.' . 2>/dev/null | grep -v '^$' | LC_ALL=C sort",
    // Hard links: names grouped by inode, the groups by their first name.
    "find . -type f -links +1 -printf '%i %p\\n' | LC_ALL=C sort | awk '{a[$1]=a[$1] \" \" $2} END {for (k in a) print a[k]}' | LC_ALL=C sort",
  ].join(' && ');
  const r = sh(script, dir);
  if (r.status !== 0) throw new Error(`manifest of ${dir} failed: ${r.stderr}`);
  return r.stdout;
}

/** The default tree: real programs, large and sparse files, links, a deep path. */
export const DEFAULT_TREE = [
  'mkdir -p src && tar -C /usr/include -cf - linux/netfilter asm-generic | tar -C src -xf -',
  'git init -q repo && cd repo && git config user.email t@example.com && git config user.name t && ' +
    'for i in 1 2 3; do echo "line $i" >> file.txt; git add file.txt; git commit -qm "commit $i"; done && git gc -q',
  'mkdir -p data && sqlite3 data/db.sqlite "create table t(a integer primary key, b text); begin; ' +
    'insert into t(b) select hex(randomblob(100)) from (with recursive c(x) as (select 1 union all select x+1 from c where x < 3000) select x from c); commit;"',
  'mkdir -p big && head -c 3000000 /dev/urandom > big/random && truncate -s 64M big/sparse && printf tail >> big/sparse',
  'mkdir -p links/inner && echo shared > links/a && ln links/a links/inner/b && ln -s ../a links/inner/sym && mkfifo links/fifo',
  'setfattr -n user.color -v blue links/a && setfattr -n user.dir -v yes links/inner && chmod 640 links/a && chown 1234:5678 links/inner/sym -h',
  'mkdir -p deep/l1/l2/l3/l4/l5/l6/l7/l8 && echo bottom > deep/l1/l2/l3/l4/l5/l6/l7/l8/file && touch -d "2001-02-03 04:05:06.123456789" deep/l1/l2/l3/l4/l5/l6/l7/l8/file',
  // A set-group-ID directory whose entries do not all have its group (the kernel would give them its group).
  'mkdir -p sgid/a/b && chgrp 5678 sgid sgid/a && chmod 2775 sgid sgid/a && mkdir sgid/a/plain && chmod 755 sgid/a/plain && ' +
    'echo x > sgid/a/file && chgrp 1234 sgid/a/file sgid/a/plain && chmod 2750 sgid/a/b',
];

/** A mirrored primary of `volume` on `server`, store and mountpoint under `base`, mounted (unmounted in teardown). */
export function mountPrimary(t: ExecutionContext, base: string, server: ArchiveServer, volume: string): MirroredMount {
  const primary: MirroredMount = {
    base, store: join(base, 'primary'), mnt: join(base, 'primary-mnt'), archiveUrl: server.url, volume,
    tokenFile: server.tokenFile, args: [],
  };
  primary.args = ['--store', primary.store, '--archive', server.url, '--volume', volume, '--token-file', server.tokenFile];
  mkdirSync(primary.mnt);
  t.teardown(() => forceUnmount(primary.mnt));
  mount(primary);
  return primary;
}

/** `opts.manifest` false: none is taken (manifest's sha256sum and getfattr take whole paths: not for a tree deeper than PATH_MAX); `manifest` is then ''. */
export async function buildVolume(t: ExecutionContext, steps: string[] = DEFAULT_TREE, opts: { picture?: boolean; syncEachStep?: boolean; manifest?: boolean; snapshotTarget?: boolean } = {}): Promise<Volume> {
  const base = mkdtempSync(join(tmpdir(), 'strata-recover-'));
  // A snapshot target (BASE/targetA): what a mirrored swap commit keeps the pre-swap head on.
  if (opts.snapshotTarget) mkdirSync(join(base, 'targetA'));
  const server = await startArchiveServer(opts.snapshotTarget ? { extraArgs: ['--target', `A=${join(base, 'targetA')}`] } : {});
  t.teardown(async () => {
    await server.stop();
    if (existsSync(base)) rmSync(base, { recursive: true, force: true });
  });
  const primary = mountPrimary(t, base, server, 'vol1');
  for (const s of steps) {
    const r = sh(s, primary.mnt);
    if (r.status !== 0) throw new Error(`${s}: ${r.stderr}`);
    // Each step's changes reach the archive before the next: a block a later step changes is stored in both versions.
    if (opts.syncEachStep) syncMount(primary);
  }
  syncMount(primary);
  const m = opts.manifest === false ? '' : manifest(primary.mnt);
  const picture = opts.picture ? await livePicture(primary.mnt, { nlink: true }) : undefined;
  const u = strata(['unmount', primary.mnt]);
  if (u.status !== 0) throw new Error(`unmount: ${u.stderr}`);
  return { base, server, volume: 'vol1', primary, manifest: m, ...(picture ? { picture } : {}) };
}

export interface Recovered extends MirroredMount {
  /** What `strata recover` printed. */
  output: string;
}

let counter = 0;

/** A fresh, empty store and mountpoint for a recovery of `v`. */
export function newRecoveryTarget(t: ExecutionContext, v: Pick<Volume, 'base' | 'server' | 'volume'>): Recovered {
  const n = counter++;
  const r: Recovered = {
    base: v.base, store: join(v.base, `store${n}`), mnt: join(v.base, `mnt${n}`), archiveUrl: v.server.url, volume: v.volume,
    tokenFile: v.server.tokenFile, args: [], output: '',
  };
  r.args = ['--store', r.store, '--archive', r.archiveUrl, '--volume', r.volume, '--token-file', v.server.tokenFile];
  mkdirSync(r.mnt);
  t.teardown(() => forceUnmount(r.mnt));
  return r;
}

/** `strata recover` (status and output; throws when `mustSucceed` and it fails). */
export function runRecover(r: Recovered, extra: string[] = [], env: NodeJS.ProcessEnv = {}, mustSucceed = true): { status: number | null; out: string } {
  const res = strata(['recover', ...r.args, ...extra, r.mnt], env);
  const out = `${res.stdout}${res.stderr}`;
  if (mustSucceed && res.status !== 0) throw new Error(`strata recover failed (${res.status}): ${out}`);
  r.output = out;
  return { status: res.status, out };
}

export function recover(t: ExecutionContext, v: Volume, extra: string[] = []): Recovered {
  const r = newRecoveryTarget(t, v);
  runRecover(r, extra);
  return r;
}

export interface RestoreStatus {
  phase: string;
  entries: { done: number; total: number };
  bytes: { done: number; total: number };
  fetch: { dirFetches: number; rangeFetches: number; blocksFetched: number; bytesFetched: number; entriesMaterialised: number; failures: number; lastError: string | null };
}

export function restoreStatus(mnt: string): RestoreStatus {
  const r = strata(['status', '--json', mnt]);
  if (r.status !== 0) throw new Error(`strata status failed: ${r.stdout}${r.stderr}`);
  const s = JSON.parse(r.stdout) as { restore: RestoreStatus | null };
  if (s.restore === null) throw new Error('status has no restore');
  return s.restore;
}

/** Waits until the background restore says 'complete' (throws after `timeoutMs`). */
export async function waitRestored(mnt: string, timeoutMs = 120_000): Promise<RestoreStatus> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = restoreStatus(mnt);
    if (s.phase === 'complete') return s;
    if (Date.now() > until) throw new Error(`restore not complete after ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** `strata verify --json` of a recovered store: exit status and the summary object. */
export function verifySummary(r: MirroredMount): { status: number | null; summary: { objects: number; differences: number; pendingDirs: number; remoteFiles: number; heldXattrs: number }; out: string } {
  const res = strata(['verify', '--json', '--store', r.store, '--archive', r.archiveUrl, '--volume', r.volume, ...(r.tokenFile ? ['--token-file', r.tokenFile] : [])]);
  const lines = res.stdout.trim().split('\n');
  const summary = JSON.parse(lines[lines.length - 1] ?? '{}') as { objects: number; differences: number; pendingDirs: number; remoteFiles: number; heldXattrs: number };
  return { status: res.status, summary, out: `${res.stdout}${res.stderr}` };
}

export { daemonPid } from './mount.js';

/** kill -9 of a daemon, and the stale mount it leaves cleared. */
export function killDaemon(mnt: string, pid: number): void {
  spawnSync('kill', ['-9', String(pid)]);
  for (let i = 0; i < 100 && spawnSync('kill', ['-0', String(pid)]).status === 0; i++) spawnSync('sleep', ['0.05']);
  strata(['unmount', mnt]);
}
