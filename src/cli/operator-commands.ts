// `strata unmount` and `strata status`.
import type { StartupTimes } from '../daemon/phase-clock.js';
import { resolve } from 'node:path';
import { rmSync } from 'node:fs';
import { processRunning } from '../daemon/process-running.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { callControl, controlSocketPath } from '../daemon/control.js';
import { probeMountpoint, detach } from '../daemon/mount-table.js';
import type { FuseFeatures } from '../daemon/mount-daemon.js';
import type { MirrorStatus } from '../mirror/mirror.js';
import type { RestoreProgress } from '../restore/background.js';
import { restoreLines } from './restore-format.js';
import { swapLines } from './swap-command.js';
import type { SwapStatus } from '../swap/controller.js';
import { flushMount } from './flush-mount.js';
import { mib } from '../util/units.js';

/** The mirror part of `strata status`, for people. */
function mirrorLines(m: MirrorStatus | null): string[] {
  if (m === null) return ['mirror       none (no archive configured)'];
  const sync = m.initialSync;
  const total = sync.totalEntries !== null ? ` of ${sync.totalEntries} entries, ${mib(sync.totalBytes ?? 0)}` : '';
  return [
    `archive      ${m.archive} volume ${m.volume} (epoch ${m.epoch})`,
    `mirror       ${m.mode}, ${m.connection}${m.lastError ? ` (${m.lastError})` : ''}${m.lastAckAt ? `, last ack ${m.lastAckAt}` : ''}`,
    `lag          ${m.lag.records} records, ${mib(m.lag.bytes)}, ${m.lag.seconds} s (acked ${m.ackedSeq} of ${m.lastSeq})`,
    `journal      ${mib(m.journal.bytes)} on disk` + (m.journal.roomAhead > 0 ? ` (and ${mib(m.journal.roomAhead)} kept ahead)` : '') +
      `; at most ${mib(m.journal.limitBytes)} not yet acked, then ${m.journal.fullPolicy === 'block' ? 'writers wait' : 'writers get ENOSPC'}` +
      (m.journal.writersBlocked > 0 ? `, ${m.journal.writersBlocked} writers waiting` : ''),
    ...(m.journal.roomShort === null ? [] : [
      `             ROOM SHORT on the store's disk since ${m.journal.roomShort.since} (${m.journal.roomShort.message}): ${mib(m.journal.roomShort.aheadBytes)} left ahead of the journal; changes that need room get ENOSPC, removals, renames and attributes are taken and durable`,
    ]),
    ...(m.journal.noRoom === null ? [] : [
      `             NO ROOM on the store's disk since ${m.journal.noRoom.since} (${m.journal.noRoom.message}): ${m.journal.noRoom.records} records (${mib(m.journal.noRoom.bytes)}) wait in memory; changes that need room get ENOSPC, removals are taken`,
    ]),
    `initial sync ${sync.state}${sync.state === 'done' ? '' : `: ${sync.entries} entries, ${mib(sync.bytes)}${total}`}`,
    leaseLine(m),
  ];
}

function leaseLine(m: MirrorStatus): string {
  const l = m.lease;
  if (l === undefined) return 'lease        -';
  const age = l.ageSeconds === null ? 'never renewed' : `renewed ${l.ageSeconds} s ago`;
  switch (l.state) {
    case 'held': return `lease        held (${age}, lease ${l.leaseSeconds} s)`;
    case 'local': return 'lease        none needed (in-process file:// archive; the epoch is checked every second)';
    case 'acquiring': return `lease        acquiring (${l.lastError ?? 'first renewal'})`;
    case 'expired': return `lease        EXPIRED (${age}, lease ${l.leaseSeconds} s): fsync and sync-mode writes fail with EIO${l.lastError ? ` (${l.lastError})` : ''}`;
    case 'fenced': return `lease        FENCED: read-only, every change answers EROFS (${l.readOnly ?? ''})`;
    case 'released': return 'lease        released (planned move): read-only';
  }
}

/** The checkpoints part of `strata status` (an invalid checkpoint says why). */
function checkpointLines(list: { name: string; status: string; reason?: string }[]): string[] {
  if (list.length === 0) return [];
  return [`checkpoints  ${list.map((c) => (c.status === 'valid' ? c.name : `${c.name} INVALID (${c.reason ?? ''})`)).join(', ')}`];
}

/** How long `strata unmount` waits for the daemon to exit after it unmounted (it closes its journal and archive link). */
const DAEMON_EXIT_WAIT_MS = 60_000;

export async function unmountCommand(mountpoint: string, opts: { lazy?: boolean }): Promise<number> {
  const mnt = resolve(mountpoint);
  try {
    const reply = (await callControl(mnt, { cmd: 'unmount', lazy: opts.lazy ?? false })) as { pid?: unknown } | null;
    // The daemon leaves right after replying; wait for it, so that the store's
    // disk is free (`strata unmount M && umount DISK`) when this returns.
    const pid = typeof reply?.pid === 'number' ? reply.pid : 0;
    const start = Date.now();
    let told = false;
    while (pid > 0 && processRunning(pid)) {
      if (Date.now() - start > DAEMON_EXIT_WAIT_MS) {
        process.stderr.write(`strata unmount: ${mnt} is unmounted, but its daemon (pid ${pid}) has not exited after ${DAEMON_EXIT_WAIT_MS / 1000} s\n`);
        return 1;
      }
      if (!told && Date.now() - start > 2000) {
        process.stderr.write(`strata unmount: waiting for the daemon (pid ${pid}) to finish and exit\n`);
        told = true;
      }
      await sleep(20);
    }
    process.stdout.write(`unmounted ${mnt}\n`);
    return 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED') {
      const busy = /\bbusy\b/.test((err as Error).message);
      process.stderr.write(`strata unmount: ${(err as Error).message}${busy && !opts.lazy ? "; it keeps serving ('strata unmount --lazy' detaches it anyway)" : ''}\n`);
      return 1;
    }
    // A socket nobody listens on is what a killed daemon leaves behind.
    if (code === 'ECONNREFUSED') rmSync(controlSocketPath(mnt), { force: true });
  }
  // No daemon answers: clear what the kernel still has there.
  const state = await probeMountpoint(mnt);
  if (state === 'stale' || state === 'mounted') {
    try {
      await detach(mnt, state === 'stale' || (opts.lazy ?? false));
      process.stdout.write(`unmounted ${mnt} (${state === 'stale' ? 'stale mount of a dead daemon' : 'no daemon answered'})\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`strata unmount: ${(err as Error).message}\n`);
      return 1;
    }
  }
  process.stderr.write(`strata unmount: ${mnt} is not mounted\n`);
  return 1;
}

export async function statusCommand(mountpoint: string, opts: { json?: boolean }): Promise<number> {
  const mnt = resolve(mountpoint);
  let status: Record<string, unknown>;
  try {
    status = (await callControl(mnt, { cmd: 'status' }, 5000)) as Record<string, unknown>;
  } catch {
    const state = await probeMountpoint(mnt).catch(() => 'missing' as const);
    const s = { mountpoint: mnt, state: state === 'stale' ? 'stale (daemon dead)' : 'not served by strata' };
    process.stdout.write(opts.json ? JSON.stringify(s) + '\n' : `${mnt}: ${s.state}\n`);
    return 1;
  }
  if (opts.json) {
    process.stdout.write(JSON.stringify(status) + '\n');
    return 0;
  }
  const lines = [
    `mountpoint   ${String(status.mountpoint)}`,
    `state        ${String(status.state)}`,
    `store        ${String(status.store)}`,
    `daemon pid   ${String(status.pid)} (up ${String(status.uptimeSeconds)} s)`,
    ...startupLines(status.startup as StartupTimes | undefined),
    `open handles ${String(status.openHandles)}`,
    ...(status.writebackCache === true ? ['page cache   writeback (the kernel caches writes)'] : []),
    ...fuseFeatureLines(status.fuseFeatures as FuseFeatures | null | undefined),
    ...(typeof status.readOnly === 'string' ? [`read-only    ${status.readOnly}`] : []),
    ...mirrorLines(status.mirror as MirrorStatus | null),
    ...restoreLines((status.restore ?? null) as RestoreProgress | null),
    ...checkpointLines((status.checkpoints ?? []) as { name: string; status: string; reason?: string }[]),
    ...swapLines(status.swap as SwapStatus | null | undefined),
    `requests     ${Object.entries((status.requests ?? {}) as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(' ') || '-'}`,
    `  of which answered on the FUSE thread: ${Object.entries((status.requestsOnFuseThread ?? {}) as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(' ') || '-'}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** `strata sync`: exit 0 once the archive holds every change so far, 1 on timeout, 2 when unreachable. `out`: where its report goes (stdout). */
export async function syncCommand(mountpoint: string, opts: { timeout?: number; json?: boolean; out?: NodeJS.WritableStream }): Promise<number> {
  const mnt = resolve(mountpoint);
  const out = opts.out ?? process.stdout;
  const timeoutMs = Math.round((opts.timeout ?? 60) * 1000);
  await flushMount(mnt, 'sync');
  let reply: { mirrored?: boolean; drained?: boolean; ackedSeq?: number; lastSeq?: number; connection?: string; lastError?: string | null; journal?: { noRoom?: { records: number } | null } };
  try {
    reply = (await callControl(mnt, { cmd: 'sync', timeoutMs }, timeoutMs + 5000)) as typeof reply;
  } catch (err) {
    process.stderr.write(`strata sync: ${mnt} is not served by a strata daemon (${(err as Error).message})\n`);
    return 2;
  }
  if (opts.json) out.write(JSON.stringify(reply) + '\n');
  if (reply.mirrored === false) {
    if (!opts.json) out.write(`${mnt}: not mirrored (no archive configured)\n`);
    return 0;
  }
  if (reply.drained) {
    if (!opts.json) out.write(`${mnt}: the archive holds every change (record ${reply.ackedSeq})\n`);
    return 0;
  }
  if (!opts.json && reply.connection === 'fenced') {
    out.write(`${mnt}: fenced off its volume (another primary recovered it); ${(reply.lastSeq ?? 0) - (reply.ackedSeq ?? 0)} records ` +
      `will never reach the archive (${reply.lastError ?? 'EFENCED'})\n`);
    return 1;
  }
  if (!opts.json) {
    const noRoom = reply.journal?.noRoom ?? null;
    out.write(`${mnt}: not drained after ${timeoutMs / 1000} s: archive has ${reply.ackedSeq} of ${reply.lastSeq} records` +
      ` (${reply.connection}${reply.lastError ? `: ${reply.lastError}` : ''})` +
      (noRoom === null ? '' : `; the store's disk is full: ${noRoom.records} records wait in memory for room in the journal (removals are taken: free some room)`) + '\n');
  }
  return 1;
}

/** `strata status`'s line about what the FUSE connection negotiated. */
function fuseFeatureLines(f: FuseFeatures | null | undefined): string[] {
  if (!f) return [];
  const on = [
    f.writebackCache ? 'writeback cache' : null,
    `${Math.round(f.maxWriteBytes / 1024)} KiB writes`,
    f.handleKillprivV2 ? 'handle_killpriv_v2' : null,
    f.parallelDirops ? 'parallel dirops' : null,
    f.posixAcl ? 'POSIX ACLs' : null,
    f.passthrough ? `passthrough (${f.passthroughOpens} opens, ${f.backingFiles} backing files now)` : null,
    f.passthroughWrites === true ? `passthrough writes (${f.passthroughWriteOpens} opens, ${f.passthroughWriters} open for writing now)` : null,
  ].filter((x): x is string => x !== null);
  const off = [
    !f.handleKillprivV2 ? `handle_killpriv_v2 (${f.offered.handleKillprivV2 ? 'not asked for' : 'kernel lacks it'})` : null,
    !f.passthrough ? `passthrough (${f.offered.passthrough ? 'not asked for' : 'kernel lacks it'})` : null,
    f.parallelDirops === false ? `parallel dirops (${f.offered?.parallelDirops ? 'not asked for' : 'kernel lacks it'})` : null,
    f.posixAcl === false ? `POSIX ACLs (${f.offered?.posixAcl ? 'not asked for' : 'kernel lacks it'})` : null,
  ].filter((x): x is string => x !== null);
  return [`fuse         ${on.join(', ')}${off.length > 0 ? `; off: ${off.join(', ')}` : ''}`];
}

/** Where the daemon's start went: `startup     serving 0.41 s after the process started (Node and modules 0.20 s, …)`. */
function startupLines(t: StartupTimes | undefined): string[] {
  if (t === undefined || t.processToServingMs === null) return [];
  const parts = [`Node and modules ${(t.processToDaemonMs / 1000).toFixed(2)} s`, ...t.phases.map((p) => `${p.name} ${(p.ms / 1000).toFixed(2)} s`)];
  return [`startup      serving ${(t.processToServingMs / 1000).toFixed(2)} s after the daemon process started (${parts.join(', ')})`];
}
