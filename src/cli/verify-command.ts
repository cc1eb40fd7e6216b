// `strata verify`: compares a store with its archive volume (diffTree) and
// prints each difference, one per line, then a summary. Read-only on both
// sides. Exit status: 0 equal, 1 different, 2 could not compare (archive
// unreachable, no such volume, unreadable store...).
//
// Run it when the journal is drained and the store is quiet (unmounted, or
// after `strata sync` with no writers): otherwise it reports changes that are
// still on their way.
import { displayName } from '../protocol/names.js';
import { resolve } from 'node:path';
import { diffTree, type Difference, type DiffValue } from '../mirror/tree-diff.js';
import { isArchiveError, type ArchiveClient } from '../protocol/archive-api.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { badVolumeNameReason } from '../protocol/images.js';
import { callControl } from '../daemon/control.js';
import { syncCommand } from './operator-commands.js';

export interface VerifyOptions {
  store: string;
  archive: string;
  volume: string;
  tokenFile?: string;
  json?: boolean;
  /** Commander's negation of --no-content: false skips the block comparison. */
  content?: boolean;
}

/** A printable xattr value: its text when it is plain text, else its base64. */
function xattrValue(b64: string | null): string {
  if (b64 === null) return 'absent';
  const text = Buffer.from(b64, 'base64').toString('utf8');
  return /^[\x20-\x7e]*$/.test(text) && Buffer.from(text).toString('base64') === b64 ? JSON.stringify(text) : `base64:${b64}`;
}

function show(v: DiffValue | undefined): string {
  if (v === undefined || v === null) return 'none';
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${xattrValue(x)}`).join(' ');
  return String(v);
}

/** One readable line: `path: kind (local …, archive …)`. */
export function formatDifference(d: Difference): string {
  // Bytes of a name that are not UTF-8 as \xNN (src/protocol/names.ts); --json keeps strata's strings.
  const path = displayName(d.path);
  if (d.kind === 'missing-on-archive') return `${path}: missing-on-archive (local ${show(d.local)})`;
  if (d.kind === 'missing-locally') return `${path}: missing-locally (archive ${show(d.archive)})`;
  if (d.kind === 'content') return `${path}: content (${show(d.local)})`;
  return `${path}: ${d.kind} (local ${show(d.local)}, archive ${show(d.archive)})`;
}

/** `strata verify --store S --archive URL --volume V`: each of the three is required. */
export async function verifyStoreCommand(opts: Partial<VerifyOptions>): Promise<number> {
  const missing = (['store', 'archive', 'volume'] as const).filter((k) => opts[k] === undefined);
  if (missing.length > 0) {
    process.stderr.write(`strata verify: give a MOUNTPOINT, or ${missing.map((k) => `--${k}`).join(', ')} (see strata verify --help)\n`);
    return 2;
  }
  return verifyCommand(opts as VerifyOptions);
}

/**
 * `strata verify MOUNTPOINT`: the store, archive, volume and token file the
 * mount's daemon reports, compared once `strata sync` of it returned (the
 * kernel's dirty pages written back, the journal drained); quiet programs
 * make a clean comparison.
 */
export async function verifyMountCommand(mountpoint: string, opts: Partial<VerifyOptions> & { timeout?: number }): Promise<number> {
  const mnt = resolve(mountpoint);
  if (opts.store !== undefined || opts.archive !== undefined || opts.volume !== undefined || opts.tokenFile !== undefined) {
    process.stderr.write('strata verify: a MOUNTPOINT names the store, archive, volume and token file itself: give no --store, --archive, --volume or --token-file with it\n');
    return 2;
  }
  let status: { store?: string; mirror?: { archive: string; volume: string; tokenFile?: string } | null };
  try {
    status = (await callControl(mnt, { cmd: 'status' }, 10_000)) as typeof status;
  } catch (err) {
    process.stderr.write(`strata verify: ${mnt} is not served by a strata daemon (${(err as Error).message})\n`);
    return 2;
  }
  const m = status.mirror;
  if (m === null || m === undefined || status.store === undefined) {
    process.stderr.write(`strata verify: ${mnt} is not mirrored (no archive to compare with)\n`);
    return 2;
  }
  // Its report on stderr: stdout is the comparison's (JSON with --json).
  const synced = await syncCommand(mnt, { out: process.stderr, ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}) });
  if (synced !== 0) return 2;
  return verifyCommand({
    store: status.store, archive: m.archive, volume: m.volume,
    ...(m.tokenFile !== undefined ? { tokenFile: m.tokenFile } : {}),
    ...(opts.json !== undefined ? { json: opts.json } : {}),
    ...(opts.content !== undefined ? { content: opts.content } : {}),
  });
}

export async function verifyCommand(opts: VerifyOptions): Promise<number> {
  const fail = (msg: string): number => {
    process.stderr.write(`strata verify: ${msg}\n`);
    return 2;
  };
  const badVolume = badVolumeNameReason(opts.volume);
  if (badVolume !== null) return fail(badVolume);
  let client: ArchiveClient;
  try {
    client = await openArchiveClient(opts.archive, opts.tokenFile !== undefined ? { tokenFile: opts.tokenFile } : {});
  } catch (err) {
    return fail(`cannot open archive ${opts.archive}: ${(err as Error).message}`);
  }
  const ac = new AbortController();
  const onSignal = (): void => ac.abort();
  process.once('SIGINT', onSignal);
  try {
    const result = await diffTree({
      store: resolve(opts.store),
      archive: client,
      volume: opts.volume,
      content: opts.content === false ? 'none' : 'all',
      signal: ac.signal,
      onDifference: (d) => process.stdout.write(opts.json ? `${JSON.stringify(d)}\n` : `${formatDifference(d)}\n`),
    });
    const unfinished = result.pendingDirs + result.remoteFiles > 0
      ? ` (restore unfinished: ${result.pendingDirs} pending directories (only their materialised entries compared), ${result.remoteFiles} files compared only where local)`
      : '';
    const held = result.heldXattrs > 0
      ? `; ${result.heldXattrs} extended attribute${result.heldXattrs === 1 ? '' : 's'} only the archive holds (this store's file system cannot: docs/recovery.md)`
      : '';
    process.stdout.write(opts.json
      ? `${JSON.stringify({ objects: result.objects, differences: result.count, pendingDirs: result.pendingDirs, remoteFiles: result.remoteFiles, heldXattrs: result.heldXattrs })}\n`
      : `${result.objects} objects compared, ${result.count} difference${result.count === 1 ? '' : 's'}${unfinished}${held}\n`);
    return result.count === 0 ? 0 : 1;
  } catch (err) {
    if (isArchiveError(err, 'ENOVOLUME')) return fail(`volume ${opts.volume} does not exist on ${opts.archive}`);
    if (isArchiveError(err)) return fail(`archive ${opts.archive}: ${(err as Error).message}`);
    if (ac.signal.aborted) return fail('interrupted');
    const code = (err as { code?: string }).code;
    return fail(code === 'ENOENT' ? `store ${opts.store}: no such directory` : (err as Error).message);
  } finally {
    process.off('SIGINT', onSignal);
    await client.close().catch(() => {});
  }
}
