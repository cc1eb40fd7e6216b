// Mirrored mounts for the integration and fault tests: a store mounted with
// --archive (an in-process file:// archive, or a real `strata archive serve`
// process), plus the operator tools the tests use as oracles (`strata sync`,
// `strata verify`). Everything is unmounted and removed in teardown.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { daemonPid, removeTree, strata, mountpointIsMounted, type ShResult } from './mount.js';
import { startArchiveServer } from './archive.js';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import { ROOT_ID } from '../../src/protocol/records.js';

export interface MirroredMount {
  base: string;
  store: string;
  mnt: string;
  archiveUrl: string;
  volume: string;
  tokenFile?: string;
  /** Mount arguments, to mount the same store again. */
  args: string[];
  /** Environment of the mount command (MirrorOpts.env). */
  env?: NodeJS.ProcessEnv;
}

export interface MirrorOpts {
  /** Archive URL; default a fresh file:// archive under the test's directory. */
  archiveUrl?: string;
  tokenFile?: string;
  extraArgs?: string[];
  /** Environment of the mount command (and so of its daemon). */
  env?: NodeJS.ProcessEnv;
  /** Where the store goes, relative to the test's directory (default 'store'); strata creates it. */
  storeSubdir?: string;
  /** The volume's name on the archive (default vol1). */
  volume?: string;
}

/** kill -9 of the primary's daemon; waits until it is gone (its stale mount stays, for the next mount to clear). */
export async function killPrimary(m: MirroredMount): Promise<void> {
  const pid = daemonPid(m.mnt);
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200; i++) {
    try { process.kill(pid, 0); } catch { return; }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Removes a mount whatever its state (live daemon, dead daemon, nothing). */
export function forceUnmount(mnt: string): void {
  if (!mountpointIsMounted(mnt) && spawnSync('grep', ['-q', ` ${mnt} `, '/proc/mounts']).status !== 0) return;
  const r = strata(['unmount', mnt]);
  if (r.status !== 0) strata(['unmount', '--lazy', mnt]);
  if (mountpointIsMounted(mnt)) spawnSync('umount', ['-l', mnt]);
}

/** The directories withMirroredMount made in this process (ava runs each test file in its own). */
const basesMade: string[] = [];

/**
 * The directories withMirroredMount made in this test file: an after-hook
 * that sweeps leftover mounts must take only these, never another file's
 * (test files run at the same time, all under strata-mirror-*).
 */
export function mirroredBasesMade(): readonly string[] {
  return basesMade;
}

export function withMirroredMount(t: ExecutionContext, opts: MirrorOpts = {}): MirroredMount {
  const base = mkdtempSync(join(tmpdir(), 'strata-mirror-'));
  basesMade.push(base);
  const archiveUrl = opts.archiveUrl ?? `file://${join(base, 'archive')}`;
  const m: MirroredMount = {
    base, store: join(base, opts.storeSubdir ?? 'store'), mnt: join(base, 'mnt'), archiveUrl, volume: opts.volume ?? 'vol1', args: [],
    ...(opts.tokenFile ? { tokenFile: opts.tokenFile } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  };
  mkdirSync(m.mnt);
  m.args = ['--store', m.store, '--archive', archiveUrl, '--volume', m.volume, ...(opts.tokenFile ? ['--token-file', opts.tokenFile] : []), ...(opts.extraArgs ?? [])];
  t.teardown(() => {
    forceUnmount(m.mnt);
    removeTree(base);
  });
  mount(m);
  return m;
}

/**
 * A mirrored mount on a real `strata archive serve` with one snapshot target
 * (A, in a temporary directory; server and target gone at the test's end),
 * and `snapshot()`: `strata snapshot create --wait` of it, its id.
 */
export async function withSnapshotMount(t: ExecutionContext): Promise<{ m: MirroredMount; snapshot: () => string }> {
  const targets = mkdtempSync(join(tmpdir(), 'strata-targets-'));
  const server = await startArchiveServer({ extraArgs: ['--target', `A=${join(targets, 'A')}`] });
  t.teardown(async () => { await server.stop(); rmSync(targets, { recursive: true, force: true }); });
  const m = withMirroredMount(t, { archiveUrl: server.url, tokenFile: server.tokenFile });
  const snapshot = (): string => {
    const r = strata(['snapshot', 'create', m.mnt, '--token-file', server.tokenFile, '--wait', '--json']);
    if (r.status !== 0) throw new Error(`strata snapshot create: ${r.stdout}${r.stderr}`);
    return (JSON.parse(r.stdout) as { id: string }).id;
  };
  return { m, snapshot };
}

export function mount(m: MirroredMount, extra: string[] = []): void {
  const r = strata(['mount', ...m.args, ...extra, m.mnt], m.env ?? {});
  if (r.status !== 0) throw new Error(`strata mount failed: ${r.stderr}${r.stdout}`);
}

/** `strata sync`: waits until the archive holds every change; throws when it does not. */
export function syncMount(m: MirroredMount, timeoutS = 60): void {
  const r = strata(['sync', '--timeout', String(timeoutS), m.mnt]);
  if (r.status !== 0) throw new Error(`strata sync failed (${r.status}): ${r.stdout}${r.stderr}`);
}

/** `strata verify` of the store against the archive: status 0 = equal, 1 = different. */
export function verify(m: MirroredMount): ShResult {
  const args = ['verify', '--store', m.store, '--archive', m.archiveUrl, '--volume', m.volume];
  if (m.tokenFile) args.push('--token-file', m.tokenFile);
  const r = strata(args);
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Asserts that `strata verify` finds the store and the archive equal. */
export function assertConverged(t: ExecutionContext, m: MirroredMount, label = ''): void {
  const r = verify(m);
  t.is(r.status, 0, `strata verify ${label}: ${r.stdout.slice(0, 4000)}${r.stderr.slice(0, 2000)}`);
}

/** Status of a mirrored mount (`strata status --json`). */
export function mirrorStatus(m: MirroredMount): { state: string; mirror: { connection: string; ackedSeq: number; lastSeq: number; lag: { records: number; bytes: number; seconds: number }; journal: { bytes: number; limitBytes: number; writersBlocked: number } } } {
  const r = strata(['status', '--json', m.mnt]);
  if (r.status !== 0) throw new Error(`strata status failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof mirrorStatus>;
}

/**
 * Reads a file's content (a symlink's target) from the archive by path (names looked up in
 * directory images from the root), or null when the path does not exist there.
 */
export async function readFromArchive(url: string, volume: string, path: string, tokenFile?: string): Promise<Buffer | null> {
  const client = await openArchiveClient(url, tokenFile ? { tokenFile } : {});
  try {
    let dir = ROOT_ID;
    const parts = path.split('/').filter((p) => p.length > 0);
    for (let i = 0; i < parts.length; i++) {
      const img = await client.dirImage(volume, dir);
      const e = img.entries.find((x) => x.name === parts[i]);
      if (e === undefined) return null;
      // Awaited here: the client closes in `finally`.
      if (i === parts.length - 1) return e.target !== undefined ? Buffer.from(e.target) : await client.readRange(volume, e.id, 0, e.attrs.size);
      dir = e.id;
    }
    return null;
  } finally {
    await client.close();
  }
}
