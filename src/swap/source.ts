// SOURCE of `strata swap prepare`: which point-in-time tree goes into the spare.
//   checkpoint:NAME   a local checkpoint of the live store (read by the daemon's
//                     Checkpoints: src/swap/checkpoint-writer.ts, not here)
//   snapshot:ID       an archive snapshot
//   archive:RECORD    the archive's tree at record RECORD (a number)
//   archive:TIME      the archive's tree at TIME (ISO 8601)
// The archive keeps a volume's past rows only where a snapshot pins them
// (src/archive/versioned.ts), so the trees it can give are its head (RECORD =
// the volume's applied record) and each snapshot's record; archive:TIME is
// the newest complete snapshot taken at or before TIME. A snapshot is read
// from its target directory, itself an archive directory in which the
// snapshot is the volume named by its id (docs/snapshots.md): the target must
// be readable from this host (always so for a file:// archive).
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import type { SubtreeTotals } from '../protocol/images.js';
import type { SnapshotClient, SnapshotInfo } from '../protocol/snapshot-api.js';

export type SwapSource =
  | { kind: 'checkpoint'; name: string }
  | { kind: 'snapshot'; id: string }
  | { kind: 'archive-record'; record: number }
  | { kind: 'archive-time'; time: string };

export function parseSource(text: string): SwapSource {
  const i = text.indexOf(':');
  const kind = i < 0 ? text : text.slice(0, i);
  const arg = i < 0 ? '' : text.slice(i + 1);
  if (arg.length === 0) throw new Error(`bad source ${JSON.stringify(text)}: expected checkpoint:NAME, snapshot:ID, archive:RECORD or archive:TIME`);
  switch (kind) {
    case 'checkpoint': return { kind: 'checkpoint', name: arg };
    case 'snapshot': return { kind: 'snapshot', id: arg };
    case 'archive':
      if (/^\d+$/.test(arg)) return { kind: 'archive-record', record: Number(arg) };
      if (Number.isFinite(Date.parse(arg))) return { kind: 'archive-time', time: new Date(Date.parse(arg)).toISOString() };
      throw new Error(`bad source ${JSON.stringify(text)}: archive: takes a record number or an ISO 8601 time`);
    default:
      throw new Error(`bad source ${JSON.stringify(text)}: expected checkpoint:NAME, snapshot:ID, archive:RECORD or archive:TIME`);
  }
}

export function formatSource(s: SwapSource): string {
  switch (s.kind) {
    case 'checkpoint': return `checkpoint:${s.name}`;
    case 'snapshot': return `snapshot:${s.id}`;
    case 'archive-record': return `archive:${s.record}`;
    case 'archive-time': return `archive:${s.time}`;
  }
}

export interface ArchiveRef {
  url: string;
  volume: string;
  tokenFile?: string;
}

/**
 * Which point of the archive's history the tree is: a snapshot of the volume,
 * or the volume's head at a record. A mirrored mount's commit can move the
 * archive's head to that point itself instead of re-converging (docs/swap.md).
 */
export type SourcePoint =
  | { kind: 'snapshot'; id: string; record: number }
  | { kind: 'head'; record: number };

/** Where the tree of a source is read: an archive client and the volume in it that holds the tree. */
export interface TreeReader {
  point: SourcePoint;
  client: ArchiveClient;
  volume: string;
  /** What it is, for status and logs. */
  describe: string;
  totals: SubtreeTotals;
  close(): Promise<void>;
}

async function snapshotReader(snaps: SnapshotClient, info: SnapshotInfo, volume: string): Promise<TreeReader> {
  if (info.volume !== volume) throw new Error(`snapshot ${info.id} is of volume ${info.volume}, not ${volume}`);
  if (info.state !== 'complete') throw new Error(`snapshot ${info.id} is ${info.state}${info.error ? ` (${info.error})` : ''}: only a complete snapshot can be swapped in`);
  if (info.target === null) throw new Error(`snapshot ${info.id} is on no target`);
  const target = (await snaps.targets()).find((t) => t.name === info.target);
  if (target === undefined) throw new Error(`snapshot ${info.id} is on target ${info.target}, which the archive no longer lists`);
  if (!existsSync(target.path)) {
    throw new Error(`snapshot ${info.id} is on target ${info.target} at ${target.path}, which this host cannot read (a remote archive's targets must be readable here)`);
  }
  const client = await openArchiveClient(pathToFileURL(target.path).href);
  try {
    const st = await client.volumeState(info.id);
    if (st === null) throw new Error(`snapshot ${info.id} is not on its target ${target.path}`);
    return { point: { kind: 'snapshot', id: info.id, record: info.record }, client, volume: info.id, describe: `snapshot ${info.id} of ${info.volume} at record ${info.record}`, totals: st.totals, close: () => client.close() };
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
}

/** Opens the tree of `src`; throws a clear Error when it does not exist. */
export async function openSource(src: SwapSource, archive: ArchiveRef | null): Promise<TreeReader> {
  if (src.kind === 'checkpoint') throw new Error(`source ${formatSource(src)} is a local checkpoint, not a tree of the archive (the daemon reads it: src/swap/checkpoint-writer.ts)`);
  if (archive === null) throw new Error(`source ${formatSource(src)} needs an archive: give --archive URL --volume NAME (a mirrored mount uses its own)`);
  const tokenOpts = archive.tokenFile !== undefined ? { tokenFile: archive.tokenFile } : {};
  if (src.kind === 'archive-record') {
    const client = await openArchiveClient(archive.url, tokenOpts);
    let st;
    try {
      st = await client.volumeState(archive.volume);
    } catch (err) {
      await client.close().catch(() => {});
      throw err;
    }
    if (st === null) { await client.close(); throw new Error(`volume ${archive.volume} does not exist on ${archive.url}`); }
    if (st.appliedSeq === src.record) {
      return { point: { kind: 'head', record: src.record }, client, volume: archive.volume, describe: `${archive.volume} at record ${src.record} (the head)`, totals: st.totals, close: () => client.close() };
    }
    await client.close();
    const snaps = await openSnapshotClient(archive.url, tokenOpts);
    try {
      const all = (await snaps.listSnapshots({ volume: archive.volume })).filter((s) => s.state === 'complete');
      const at = all.find((s) => s.record === src.record);
      if (at === undefined) {
        const have = [...new Set(all.map((s) => s.record)), st.appliedSeq].sort((a, b) => a - b);
        throw new Error(`the archive keeps no tree of ${archive.volume} at record ${src.record}: it has records ${have.join(', ')} (the head and its snapshots)`);
      }
      return await snapshotReader(snaps, at, archive.volume);
    } finally {
      await snaps.close();
    }
  }
  const snaps = await openSnapshotClient(archive.url, tokenOpts);
  try {
    let info: SnapshotInfo;
    if (src.kind === 'snapshot') {
      try {
        info = await snaps.getSnapshot(src.id);
      } catch (err) {
        throw new Error(`no snapshot ${src.id} on ${archive.url}: ${(err as Error).message}`);
      }
    } else {
      const before = Date.parse(src.time);
      const all = (await snaps.listSnapshots({ volume: archive.volume }))
        .filter((s) => s.state === 'complete' && Date.parse(s.createdAt) <= before)
        .sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
      const pick = all[0];
      if (pick === undefined) throw new Error(`the archive keeps no tree of ${archive.volume} at or before ${src.time} (no complete snapshot taken by then)`);
      info = pick;
    }
    return await snapshotReader(snaps, info, archive.volume);
  } finally {
    await snaps.close();
  }
}
