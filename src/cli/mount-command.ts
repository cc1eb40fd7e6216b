// `strata mount`: by default returns once the mount serves and leaves the
// daemon running in the background (like mount-s3); --foreground stays attached.
// This module checks the command line and spawns the daemon; the daemon's own
// modules load only in the process that serves (mount-foreground.ts).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MountConfig } from '../daemon/mount-daemon.js';
import { checkStore } from '../daemon/store-check.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { parseMetricsAddress } from '../metrics-http/listener.js';

export interface MountCliOptions {
  store: string;
  foreground?: boolean;
  logFile?: string;
  logLevel?: string;
  allowOther?: boolean;
  attrTimeout?: number;
  entryTimeout?: number;
  negativeTimeout?: number;
  directIo?: boolean;
  writebackCache?: boolean;
  /** false: --no-passthrough. */
  passthrough?: boolean;
  /** --passthrough-writes. */
  passthroughWrites?: boolean;
  /** false: --no-direct-journal. */
  directJournal?: boolean;
  /** false: --no-killpriv-v2. */
  killprivV2?: boolean;
  /** false: --no-parallel-dirops. */
  parallelDirops?: boolean;
  /** false: --no-posix-acl. */
  posixAcl?: boolean;
  debugFuse?: boolean;
  notifyParent?: boolean;
  archive?: string;
  volume?: string;
  mirror?: string;
  tokenFile?: string;
  journalMax?: number;
  journalFull?: string;
  ackTimeout?: number;
  archiveWait?: number;
  /** `strata recover`: the tier whose directories stay pending. */
  depth?: number;
  /** Seconds an op waits for data of an unfinished restore before EIO. */
  fetchTimeout?: number;
  /** Commander's negation of --no-background-restore. */
  backgroundRestore?: boolean;
  /** `strata recover --snapshot ID`: roll the volume back to this snapshot first. */
  snapshot?: string;
  /** `strata recover --condition NAME [--before TIME]`: the newest complete snapshot for the condition. */
  condition?: string;
  before?: string;
  /** `--lease S`: the lease on the volume, seconds. */
  lease?: number;
  /** `strata recover --force`: fence even while another primary's lease is live. */
  force?: boolean;
  /** `--metrics HOST:PORT`: serve Prometheus metrics at http://HOST:PORT/metrics. */
  metrics?: string;
}

export type ParentMessage = { type: 'ready'; detail?: string; warning?: string; metrics?: string } | { type: 'error'; message: string };

/** The command this process runs as. */
export function commandName(o: MountCliOptions): string {
  return o.depth !== undefined ? 'recover' : 'mount';
}

/** The mirror settings of the command line; throws a clear message on a bad combination. */
export function mirrorConfig(o: MountCliOptions): MountConfig['mirror'] {
  if (o.archive === undefined) {
    if (o.volume !== undefined || o.mirror !== undefined) throw new Error('--volume and --mirror need --archive');
    return undefined;
  }
  if (o.volume === undefined) throw new Error('--archive needs --volume NAME');
  const mode = o.mirror ?? 'async';
  if (mode !== 'async' && mode !== 'sync') throw new Error(`--mirror must be async or sync, not ${mode}`);
  if (mode === 'sync' && o.writebackCache) throw new Error('--writeback-cache cannot be used with --mirror sync: a write would return before the archive has it');
  const full = o.journalFull ?? 'block';
  if (full !== 'block' && full !== 'enospc') throw new Error(`--journal-full must be block or enospc, not ${full}`);
  const cfg: NonNullable<MountConfig['mirror']> = { archiveUrl: o.archive, volume: o.volume, mode, fullPolicy: full };
  if (o.tokenFile !== undefined) cfg.tokenFile = resolve(o.tokenFile);
  if (o.journalMax !== undefined) cfg.journalMaxBytes = o.journalMax;
  if (o.ackTimeout !== undefined) cfg.ackTimeoutMs = Math.round(o.ackTimeout * 1000);
  if (o.archiveWait !== undefined) cfg.archiveWaitMs = Math.round(o.archiveWait * 1000);
  if (o.fetchTimeout !== undefined) cfg.fetchTimeoutMs = Math.max(1, Math.round(o.fetchTimeout * 1000));
  if (o.lease !== undefined) {
    if (!(o.lease >= 1 && o.lease <= 3600)) throw new Error('--lease must be 1 to 3600 seconds');
    cfg.leaseMs = Math.round(o.lease * 1000);
  }
  return cfg;
}

export async function mountCommand(mountpoint: string, o: MountCliOptions): Promise<number> {
  const cmd = commandName(o);
  let mirror: MountConfig['mirror'];
  try {
    mirror = mirrorConfig(o);
    if (o.depth !== undefined && mirror === undefined) throw new Error('recover needs --archive and --volume');
    if (o.depth !== undefined && (!Number.isInteger(o.depth) || o.depth < 0 || o.depth > 64)) throw new Error('--depth must be an integer from 0 to 64');
    if (o.metrics !== undefined) parseMetricsAddress(o.metrics);
  } catch (err) {
    process.stderr.write(`strata ${cmd}: ${(err as Error).message}\n`);
    return 2;
  }
  if (o.depth !== undefined && (o.snapshot !== undefined || o.condition !== undefined || o.before !== undefined)) {
    // The archive makes the volume's head the snapshot's tree (keeping the head as a snapshot); the recovery then restores that head.
    const { rollbackBeforeRecovery } = await import('./recover-snapshot.js');
    const code = await rollbackBeforeRecovery({ ...mirror!, store: resolve(o.store), snapshot: o.snapshot, condition: o.condition, before: o.before, ...(o.force ? { force: true } : {}) });
    if (code !== 0) return code;
  }
  if (!o.foreground) {
    // Checked here too: the background daemon's log lives in the store, so
    // with a store that is a file it could only die without a word.
    try {
      await checkStore(o.store);
    } catch (err) {
      process.stderr.write(`strata ${cmd}: ${(err as Error).message}\n`);
      return 1;
    }
    return spawnBackground(mountpoint, o);
  }
  const { serveForeground } = await import('./mount-foreground.js');
  return serveForeground(mountpoint, o, mirror);
}

/**
 * What a refused start should not leave behind: the store directory and its
 * private directory when this start creates them, else only the default log
 * file when it does not exist yet. Returns the clean-up (nothing is removed
 * that holds anything else).
 */
function whatAStartLeaves(store: string, logFile: string): () => void {
  const priv = join(store, RESERVED_NAME);
  const created = [store, priv].filter((d) => !existsSync(d));
  const newLog = logFile === join(priv, 'daemon.log') && !existsSync(logFile);
  return () => {
    try {
      if (newLog) rmSync(logFile, { force: true });
      for (const d of created.reverse()) if (existsSync(d) && readdirSync(d).length === 0) rmdirSync(d);
    } catch {
      // Best effort: a leftover is untidy, not harmful.
    }
  };
}

/** Starts `strata mount --foreground` detached and waits until it serves or fails. */
function spawnBackground(mountpoint: string, o: MountCliOptions): Promise<number> {
  const logFile = o.logFile ? resolve(o.logFile) : join(resolve(o.store), RESERVED_NAME, 'daemon.log');
  const args = [process.argv[1]!, commandName(o), '--foreground', '--notify-parent', '--store', resolve(o.store), '--log-file', logFile];
  if (o.logLevel) args.push('--log-level', o.logLevel);
  if (o.allowOther) args.push('--allow-other');
  if (o.attrTimeout !== undefined) args.push('--attr-timeout', String(o.attrTimeout));
  if (o.entryTimeout !== undefined) args.push('--entry-timeout', String(o.entryTimeout));
  if (o.negativeTimeout !== undefined) args.push('--negative-timeout', String(o.negativeTimeout));
  if (o.directIo === false) args.push('--no-direct-io');
  if (o.writebackCache) args.push('--writeback-cache');
  if (o.passthrough === false) args.push('--no-passthrough');
  if (o.passthroughWrites) args.push('--passthrough-writes');
  if (o.killprivV2 === false) args.push('--no-killpriv-v2');
  if (o.parallelDirops === false) args.push('--no-parallel-dirops');
  if (o.posixAcl === false) args.push('--no-posix-acl');
  if (o.directJournal === false) args.push('--no-direct-journal');
  if (o.archive !== undefined) args.push('--archive', o.archive);
  if (o.volume !== undefined) args.push('--volume', o.volume);
  if (o.mirror !== undefined) args.push('--mirror', o.mirror);
  if (o.tokenFile !== undefined) args.push('--token-file', resolve(o.tokenFile));
  if (o.journalMax !== undefined) args.push('--journal-max', String(o.journalMax));
  if (o.journalFull !== undefined) args.push('--journal-full', o.journalFull);
  if (o.ackTimeout !== undefined) args.push('--ack-timeout', String(o.ackTimeout));
  if (o.archiveWait !== undefined) args.push('--archive-wait', String(o.archiveWait));
  if (o.fetchTimeout !== undefined) args.push('--fetch-timeout', String(o.fetchTimeout));
  if (o.depth !== undefined) args.push('--depth', String(o.depth));
  if (o.backgroundRestore === false) args.push('--no-background-restore');
  if (o.lease !== undefined) args.push('--lease', String(o.lease));
  if (o.force) args.push('--force');
  if (o.metrics !== undefined) args.push('--metrics', o.metrics);
  args.push(resolve(mountpoint));
  const leftovers = whatAStartLeaves(resolve(o.store), logFile);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  return new Promise((resolvePromise) => {
    let settled = false;
    child.on('message', (msg: ParentMessage) => {
      if (settled) return;
      settled = true;
      if (msg.type === 'ready') {
        process.stdout.write(`${o.depth !== undefined ? 'recovered' : 'mounted'} ${resolve(o.store)} at ${resolve(mountpoint)} (daemon pid ${child.pid}, log ${logFile})\n`);
        if (msg.detail) process.stdout.write(`${msg.detail}\n`);
        if (msg.warning) process.stderr.write(`strata ${commandName(o)}: warning: ${msg.warning}\n`);
        if (msg.metrics) process.stdout.write(`metrics at ${msg.metrics}\n`);
        child.unref();
        child.disconnect();
        resolvePromise(0);
      } else {
        // Refused (the message says why): a store this start created, or its log, goes again.
        process.stderr.write(`strata ${commandName(o)}: ${msg.message}\n`);
        child.once('exit', () => { leftovers(); resolvePromise(1); });
      }
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      settled = true;
      process.stderr.write(`strata ${commandName(o)}: the daemon exited before serving (${signal ?? `exit ${code}`}); see ${logFile}\n`);
      resolvePromise(1);
    });
  });
}
