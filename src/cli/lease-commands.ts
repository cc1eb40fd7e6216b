// `strata release MOUNTPOINT` (a planned move: no more writes, drain, give the
// lease up, unmount), `strata archive status` (every volume's lease, holder,
// epoch, state, lag and takeover) and `strata archive release VOLUME`
// (docs/takeover.md). Exit 0 on success, 1 when refused, 2 on an error.
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callControl } from '../daemon/control.js';
import { processRunning } from '../daemon/process-running.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { describeHolder, type VolumeLease } from '../protocol/leases.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import { flushMount } from './flush-mount.js';

export async function releaseCommand(mountpoint: string, o: { timeout?: number; lazy?: boolean; json?: boolean }): Promise<number> {
  const mnt = resolve(mountpoint);
  const timeoutMs = Math.round((o.timeout ?? 60) * 1000);
  await flushMount(mnt, 'release');
  let reply: { released?: string; volume?: string; epoch?: number; appliedSeq?: number; pid?: number };
  try {
    reply = (await callControl(mnt, { cmd: 'release', timeoutMs, lazy: o.lazy ?? false }, timeoutMs + 30_000)) as typeof reply;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg = code === 'ENOENT' || code === 'ECONNREFUSED' ? `${mnt} is not served by a strata daemon` : (err as Error).message;
    process.stderr.write(`strata release: ${msg}\n`);
    return 1;
  }
  // The daemon exits right after answering: wait, so that the store is free when this returns.
  const pid = reply.pid ?? 0;
  for (let i = 0; pid > 0 && processRunning(pid) && i < 600; i++) await sleep(50);
  if (o.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
  else process.stdout.write(`released volume ${reply.volume} (epoch ${reply.epoch}, the archive holds every record up to ${reply.appliedSeq}); unmounted ${mnt}\n`);
  return 0;
}

export interface ArchiveLeaseOptions {
  archive?: string;
  tokenFile?: string;
  json?: boolean;
}

async function withArchive(name: string, o: ArchiveLeaseOptions, fn: (c: ArchiveClient) => Promise<number>): Promise<number> {
  if (o.archive === undefined) {
    process.stderr.write(`strata archive ${name}: --archive URL is required (strata://HOST:PORT or file:///DIR)\n`);
    return 2;
  }
  let c: ArchiveClient | null = null;
  try {
    c = await openArchiveClient(o.archive, o.tokenFile !== undefined ? { tokenFile: resolve(o.tokenFile) } : {});
    return await fn(c);
  } catch (err) {
    process.stderr.write(`strata archive ${name}: ${(err as Error).message}\n`);
    return 2;
  } finally {
    await c?.close();
  }
}

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s + ' '.repeat(n - s.length);
}

export function formatLeaseRows(rows: VolumeLease[]): string[] {
  const lines = [`${pad('VOLUME', 16)}${pad('STATE', 11)}${pad('EPOCH', 6)}${pad('APPLIED', 9)}${pad('LAG', 6)}${pad('LEASE AGE', 11)}HOLDER`];
  for (const r of rows) {
    const age = r.leaseAgeSeconds === null ? '-' : `${r.leaseAgeSeconds.toFixed(1)}/${r.leaseSeconds ?? '?'} s`;
    lines.push(`${pad(r.volume, 16)}${pad(r.state, 11)}${pad(String(r.epoch), 6)}${pad(String(r.appliedSeq), 9)}${pad(r.lagRecords === null ? '-' : String(r.lagRecords), 6)}${pad(age, 11)}` +
      `${r.holder ? `${describeHolder(r.holder)}${r.holderEpoch !== null && r.holderEpoch !== r.epoch ? ` at epoch ${r.holderEpoch}` : ''}` : '-'}`);
    const t = r.takeover;
    if (t !== null) {
      lines.push(`  takeover: ${t.state}${t.since ? ` since ${t.since}` : ''} at ${t.mountpoint}${t.epoch !== null ? ` (epoch ${t.epoch})` : ''}` +
        `${t.attempts > 1 ? `, ${t.attempts} attempts` : ''}${t.lastError ? `; last error: ${t.lastError}` : ''}${t.retryInSeconds !== null ? `; retry in ${t.retryInSeconds} s` : ''}` +
        `${t.timings ? `; detection ${t.timings.detection.toFixed(1)} s, recover ${t.timings.recover.toFixed(1)} s` : ''}`);
    }
    if (r.releasedAt) lines.push(`  released at ${r.releasedAt}`);
    if (r.fencedBy && (r.state === 'fenced' || r.state === 'taken over')) {
      lines.push(`  fenced at epoch ${r.fencedBy.epoch} by ${describeHolder(r.fencedBy.holder)} at ${r.fencedBy.at}${r.fencedBy.takeover ? ' (takeover)' : ''}${r.fencedBy.force ? ' (forced)' : ''}`);
    }
  }
  return lines;
}

export function archiveStatusCommand(o: ArchiveLeaseOptions & { volume?: string }): Promise<number> {
  return withArchive('status', o, async (c) => {
    const rows = await c.leases(o.volume);
    if (o.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
    else process.stdout.write(`${formatLeaseRows(rows).join('\n')}\n`);
    return 0;
  });
}

export function archiveReleaseCommand(volume: string, o: ArchiveLeaseOptions): Promise<number> {
  return withArchive('release', o, async (c) => {
    const row = await c.releaseVolume(volume);
    if (o.json) process.stdout.write(`${JSON.stringify(row)}\n`);
    else process.stdout.write(`${formatLeaseRows([row]).join('\n')}\n`);
    return row.state === 'released' ? 0 : 1;
  });
}
