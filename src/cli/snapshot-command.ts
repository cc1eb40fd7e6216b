// `strata snapshot create|list|show|delete|verify` and `strata archive
// targets|alerts|gc`: the operator's view of snapshots on conditions
// (docs/snapshots.md). Every command takes --archive URL [--token-file F];
// exit 0 on success, 1 when the answer is bad news (verify found damage),
// 2 on an error (the message says what).
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callControl } from '../daemon/control.js';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import type { AlertDecision, SnapshotClient, SnapshotInfo, TargetInfo } from '../protocol/snapshot-api.js';
import { parseTargetSpec } from '../archive/targets.js';
import { WorkerSnapshotClient } from '../archive/snapshot-worker-client.js';
import { fileURLToPath } from 'node:url';
import { flushMount } from './flush-mount.js';
import { mib } from '../util/units.js';

export interface ArchiveCliOptions {
  archive?: string;
  tokenFile?: string;
  json?: boolean;
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function withClient(name: string, o: ArchiveCliOptions, fn: (c: SnapshotClient) => Promise<number>): Promise<number> {
  if (o.archive === undefined) {
    process.stderr.write(`strata ${name}: --archive URL is required (file:///DIR or strata://HOST:PORT)\n`);
    return 2;
  }
  let c: SnapshotClient | null = null;
  try {
    c = await openSnapshotClient(o.archive, o.tokenFile !== undefined ? { tokenFile: resolve(o.tokenFile) } : {});
    return await fn(c);
  } catch (err) {
    process.stderr.write(`strata ${name}: ${(err as Error).message}\n`);
    return 2;
  } finally {
    await c?.close();
  }
}

export function formatSnapshot(s: SnapshotInfo): string[] {
  const lines = [
    `snapshot     ${s.id}`,
    `volume       ${s.volume} at record ${s.record}, taken ${s.createdAt}`,
    `state        ${s.state}${s.completedAt ? ` (complete ${s.completedAt})` : ''}${s.error ? `: ${s.error}` : ''}`,
    `target       ${s.target ?? '-'}${s.attempts.length > 0 ? ` (after ${s.attempts.map((a) => `${a.target}: ${a.error}`).join('; ')})` : ''}`,
    `trigger      ${s.trigger}${s.condition ? `, condition ${s.condition}` : ''}${s.reason ? ` (${s.reason})` : ''}`,
    `size         ${s.entries} entries, ${mib(s.sizeBytes)} in files, ${s.blockCount} blocks`,
  ];
  if (Object.keys(s.labels).length > 0) lines.push(`labels       ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (Object.keys(s.annotations).length > 0) lines.push(`annotations  ${Object.entries(s.annotations).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')}`);
  const v = s.lastVerification;
  lines.push(`verified     ${v === null ? 'never' : `${v.at}: ${v.ok ? 'ok' : 'DAMAGED'}, ${v.blocks} blocks, ${v.bad} bad${v.errors.length > 0 ? `\n             ${v.errors.join('\n             ')}` : ''}`}`);
  return lines;
}

function snapshotRow(s: SnapshotInfo): string {
  return [s.id, s.volume, String(s.record), s.state, s.target ?? '-', s.trigger, s.condition ?? '-', s.createdAt, mib(s.sizeBytes)].join('  ');
}

/** Waits while a snapshot is copying; prints a line every 10 s. */
async function waitComplete(c: SnapshotClient, id: string, quiet: boolean): Promise<SnapshotInfo> {
  let last = Date.now();
  for (;;) {
    const s = await c.getSnapshot(id);
    if (s.state !== 'copying') return s;
    if (!quiet && Date.now() - last > 10_000) {
      process.stderr.write(`snapshot ${id}: still copying to ${s.target}\n`);
      last = Date.now();
    }
    await sleep(200);
  }
}

export interface CreateOptions extends ArchiveCliOptions {
  volume?: string;
  reason?: string;
  wait?: boolean;
  timeout?: number;
}

export async function snapshotCreateCommand(mountpoint: string | undefined, o: CreateOptions): Promise<number> {
  let archive = o.archive;
  let volume = o.volume;
  if (mountpoint !== undefined) {
    if (archive !== undefined || volume !== undefined) {
      process.stderr.write('strata snapshot create: give either MOUNTPOINT or --archive and --volume\n');
      return 2;
    }
    const mnt = resolve(mountpoint);
    const timeoutMs = Math.round((o.timeout ?? 60) * 1000);
    // What programs stored through shared mappings (or a writeback cache) reaches strata first.
    await flushMount(mnt, 'snapshot create');
    try {
      // Every change acknowledged so far must be in the archive first, so the snapshot holds it.
      const r = await callControl(mnt, { cmd: 'sync', timeoutMs }, timeoutMs + 5000) as { mirrored?: boolean; drained?: boolean; ackedSeq?: number; lastSeq?: number; connection?: string };
      if (r.mirrored === false) throw new Error(`${mnt} is not mirrored to an archive`);
      if (!r.drained) throw new Error(`${mnt}: the archive does not hold every change yet (${r.ackedSeq} of ${r.lastSeq} records, ${r.connection}); nothing taken`);
      const st = await callControl(mnt, { cmd: 'status' }, 5000) as { mirror?: { archive: string; volume: string } | null };
      if (!st.mirror) throw new Error(`${mnt} is not mirrored to an archive`);
      archive = st.mirror.archive;
      volume = st.mirror.volume;
      if (!o.json) out(`${mnt}: the archive holds every change up to record ${r.ackedSeq}`);
    } catch (err) {
      process.stderr.write(`strata snapshot create: ${(err as Error).message}\n`);
      return 2;
    }
  }
  if (volume === undefined) {
    process.stderr.write('strata snapshot create: give MOUNTPOINT, or --archive URL --volume NAME\n');
    return 2;
  }
  const vol = volume;
  return withClient('snapshot create', { ...o, archive }, async (c) => {
    let s = await c.createSnapshot(vol, o.reason !== undefined ? { reason: o.reason } : {});
    // A file:// archive copies in this process: it must finish before the process ends.
    if (o.wait || c instanceof WorkerSnapshotClient) s = await waitComplete(c, s.id, o.json === true);
    if (o.json) out(JSON.stringify(s));
    else for (const l of formatSnapshot(s)) out(l);
    return s.state === 'failed' ? 1 : 0;
  });
}

export async function snapshotListCommand(o: ArchiveCliOptions & { volume?: string; condition?: string }): Promise<number> {
  return withClient('snapshot list', o, async (c) => {
    const list = await c.listSnapshots({ ...(o.volume !== undefined ? { volume: o.volume } : {}), ...(o.condition !== undefined ? { condition: o.condition } : {}) });
    if (o.json) {
      out(JSON.stringify(list));
      return 0;
    }
    if (list.length === 0) {
      out('no snapshots');
      return 0;
    }
    out(['id', 'volume', 'record', 'state', 'target', 'trigger', 'condition', 'created', 'size'].join('  '));
    for (const s of list) out(snapshotRow(s));
    return 0;
  });
}

export async function snapshotShowCommand(id: string, o: ArchiveCliOptions): Promise<number> {
  return withClient('snapshot show', o, async (c) => {
    const s = await c.getSnapshot(id);
    if (o.json) out(JSON.stringify(s));
    else for (const l of formatSnapshot(s)) out(l);
    return 0;
  });
}

export async function snapshotDeleteCommand(id: string, o: ArchiveCliOptions): Promise<number> {
  return withClient('snapshot delete', o, async (c) => {
    const s = await c.deleteSnapshot(id);
    if (o.json) out(JSON.stringify(s));
    else out(`deleted ${s.id} (${s.volume} at record ${s.record}, ${s.state} on ${s.target ?? '-'})`);
    return 0;
  });
}

export async function snapshotVerifyCommand(id: string, o: ArchiveCliOptions): Promise<number> {
  return withClient('snapshot verify', o, async (c) => {
    const s = await c.verifySnapshot(id);
    const v = s.lastVerification!;
    if (o.json) out(JSON.stringify(s));
    else {
      out(`${s.id} on ${s.target}: ${v.ok ? 'ok' : 'DAMAGED'}: ${v.blocks} blocks re-hashed, ${v.bad} bad`);
      for (const e of v.errors) out(`  ${e}`);
    }
    return v.ok ? 0 : 1;
  });
}

function targetLines(ts: TargetInfo[]): string[] {
  if (ts.length === 0) return ['no storage targets (strata archive serve --target NAME=DIR, two or more on separate disks)'];
  const lines = ts.map((t) => `${t.name}  ${t.path}  device ${t.device ?? '?'}  ${t.freeBytes === null ? '?' : mib(t.freeBytes)} free of ${t.totalBytes === null ? '?' : mib(t.totalBytes)}  ` +
    `${t.healthy ? 'healthy' : `UNHEALTHY (${t.problem})`}  ${t.snapshots} snapshots${t.sharesDeviceWith.length > 0 ? `  WARNING: same device as ${t.sharesDeviceWith.join(', ')}` : ''}`);
  return lines;
}

export async function targetsCommand(o: ArchiveCliOptions & { target?: string[] }): Promise<number> {
  if (o.target !== undefined && o.target.length > 0) {
    // file:// archives: set the targets (the server's --target flags do this for a served archive).
    if (o.archive === undefined || !o.archive.startsWith('file:')) {
      process.stderr.write('strata archive targets: --target is for file:// archives; a server takes --target on `strata archive serve`\n');
      return 2;
    }
    let c: WorkerSnapshotClient | null = null;
    try {
      const specs = o.target.map(parseTargetSpec);
      c = await WorkerSnapshotClient.open({ dataDir: fileURLToPath(o.archive), targets: specs, tickMs: 0 }, {
        info() {}, warn: (obj, msg) => process.stderr.write(`warning: ${msg} ${JSON.stringify(obj)}\n`), error: (obj, msg) => process.stderr.write(`error: ${msg} ${JSON.stringify(obj)}\n`),
      });
      const ts = await c.targets();
      if (o.json) out(JSON.stringify(ts));
      else for (const l of targetLines(ts)) out(l);
      return 0;
    } catch (err) {
      process.stderr.write(`strata archive targets: ${(err as Error).message}\n`);
      return 2;
    } finally {
      await c?.close();
    }
  }
  return withClient('archive targets', o, async (c) => {
    const ts = await c.targets();
    if (o.json) out(JSON.stringify(ts));
    else for (const l of targetLines(ts)) out(l);
    return ts.every((t) => t.healthy) ? 0 : 1;
  });
}

function alertLine(a: AlertDecision): string {
  return `${a.receivedAt}  ${a.source}  ${a.status}  ${a.alertname ?? '-'}  volume ${a.volume ?? '-'}  ${a.decision}${a.condition ? ` (${a.condition})` : ''}${a.snapshot ? ` ${a.snapshot}` : ''}: ${a.detail}`;
}

export async function alertsCommand(o: ArchiveCliOptions & { limit?: number }): Promise<number> {
  return withClient('archive alerts', o, async (c) => {
    const list = await c.alerts(o.limit ?? 50);
    if (o.json) out(JSON.stringify(list));
    else if (list.length === 0) out('no alerts received');
    else for (const a of list) out(alertLine(a));
    return 0;
  });
}

export async function gcCommand(o: ArchiveCliOptions): Promise<number> {
  return withClient('archive gc', o, async (c) => {
    const r = await c.gc();
    if (o.json) out(JSON.stringify(r));
    else for (const s of r.stores) out(`${s.store}: ${s.blocksDropped} blocks dropped, ${mib(s.bytesReclaimed)} reclaimed, ${s.packsRewritten} packs rewritten, ${s.rowsPruned} rows pruned`);
    return 0;
  });
}
