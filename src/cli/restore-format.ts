// The background restore's progress for people: one line, with a bar.
import type { RestoreProgress } from '../restore/background.js';
import { BLOCK_SIZE } from '../protocol/records.js';
import { mib } from '../util/units.js';

function duration(s: number): string {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function formatRestoreProgress(p: RestoreProgress, width = 24): string {
  const frac = p.bytes.total > 0 ? p.bytes.done / p.bytes.total : p.entries.total > 0 ? p.entries.done / p.entries.total : 1;
  const filled = Math.round(Math.min(1, frac) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const pct = `${(Math.min(1, frac) * 100).toFixed(1)}%`;
  if (p.phase === 'complete') {
    const bad = p.unreadable.length > 0 ? ` with ${p.unreadable.length} unreadable object${p.unreadable.length === 1 ? '' : 's'}` : '';
    return `restore complete${bad}: ${p.entries.total} entries, ${mib(p.bytes.total)} local`;
  }
  const eta = p.etaSeconds === null ? 'ETA unknown' : `ETA ${duration(p.etaSeconds)}`;
  return `restore ${bar} ${pct} ${p.entries.done}/${p.entries.total} entries, ${mib(p.bytes.done)}/${mib(p.bytes.total)}, ` +
    `${mib(p.rate)}/s, ${eta}${p.unreadable.length > 0 ? `, ${p.unreadable.length} unreadable` : ''}${p.lastError ? ` (waiting: ${p.lastError})` : ''}`;
}

/** The restore part of `strata status`, for people. */
export function restoreLines(p: RestoreProgress | null): string[] {
  if (p === null) return [];
  const f = p.fetch;
  return [
    `restore      ${p.phase} (volume ${p.volume}, epoch ${p.epoch}, depth ${p.depth}, recovery point record ${p.recoveredSeq})`,
    `             ${formatRestoreProgress(p)}`,
    `fetched      ${f.dirFetches} directories, ${f.blocksFetched} blocks in ${f.rangeFetches} requests (${mib(f.bytesFetched)})` +
      (f.failures > 0 ? `, ${f.failures} failed (last: ${f.lastError ?? '?'})` : '') +
      (f.readsThrough > 0 ? `; ${f.readsThrough} reads answered from the archive (no room in the store)` : ''),
    ...(p.room !== null ? [`room         ${p.room}`] : []),
    ...(p.heldXattrObjects > 0
      ? [`xattrs       ${p.heldXattrObjects} object${p.heldXattrObjects === 1 ? ' has' : 's have'} extended attributes this store's file system cannot hold: restored without them, the archive keeps them (the log names them; docs/recovery.md)`]
      : []),
    ...p.unreadable.slice(0, 20).map((o) =>
      `unreadable   ${o.path ?? `object ${o.id}`}: ${o.blocks.length} block${o.blocks.length === 1 ? '' : 's'} (from byte ${o.blocks[0]! * BLOCK_SIZE}) the archive cannot deliver: ${o.error}`),
    ...(p.unreadable.length > 20 ? [`             … and ${p.unreadable.length - 20} more (strata status --json)`] : []),
  ];
}
