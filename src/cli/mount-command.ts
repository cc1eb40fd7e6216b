// `strata mount`: by default returns once the mount serves and leaves the
// daemon running in the background (like mount-s3); --foreground stays attached.
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { createLogger, type Logger } from '../log/logger.js';
import { DaemonLogFile } from '../daemon/log-file.js';
import { MountDaemon, checkStore } from '../daemon/mount-daemon.js';
import { RESERVED_NAME } from '../store/local-store.js';
import type { MountOptions } from '../fuse/adapter.js';

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
  debugFuse?: boolean;
  notifyParent?: boolean;
}

type ParentMessage = { type: 'ready' } | { type: 'error'; message: string };

function mountOptions(o: MountCliOptions): MountOptions {
  const m: MountOptions = {};
  if (o.allowOther) m.allowOther = true;
  if (o.attrTimeout !== undefined) m.attrTimeout = o.attrTimeout;
  if (o.entryTimeout !== undefined) m.entryTimeout = o.entryTimeout;
  if (o.negativeTimeout !== undefined) m.negativeTimeout = o.negativeTimeout;
  if (o.directIo === false) m.directIo = false;
  if (o.debugFuse) m.debug = true;
  return m;
}

export async function mountCommand(mountpoint: string, o: MountCliOptions): Promise<number> {
  if (!o.foreground) {
    // Checked here too: the background daemon's log lives in the store, so
    // with a store that is a file it could only die without a word.
    try {
      await checkStore(o.store);
    } catch (err) {
      process.stderr.write(`strata mount: ${(err as Error).message}\n`);
      return 1;
    }
    return spawnBackground(mountpoint, o);
  }
  let log: Logger;
  try {
    // A log file must neither kill nor hang the daemon when its disk fills up (see DaemonLogFile).
    log = o.logFile
      ? pino({ name: 'strata', level: o.logLevel ?? 'info', base: { pid: process.pid } }, new DaemonLogFile(resolve(o.logFile)))
      : createLogger(o.logLevel ? { level: o.logLevel } : {});
  } catch (err) {
    const message = `cannot start logging${o.logFile ? ` to ${resolve(o.logFile)}` : ''}: ${(err as Error).message}`;
    notify({ type: 'error', message });
    process.stderr.write(`strata mount: ${message}\n`);
    return 1;
  }
  const daemon = new MountDaemon({ store: o.store, mountpoint, options: mountOptions(o) }, log);
  try {
    await daemon.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ err }, 'mount failed');
    notify({ type: 'error', message });
    process.stderr.write(`strata mount: ${message}\n`);
    return 1;
  }
  notify({ type: 'ready' });
  if (!o.notifyParent) process.stderr.write(`strata: serving ${resolve(o.store)} at ${resolve(mountpoint)} (Ctrl-C or 'strata unmount' to stop)\n`);
  return new Promise<number>(() => { /* serve until unmounted or signalled */ });
}

function notify(msg: ParentMessage): void {
  if (process.send) {
    process.send(msg);
    process.disconnect?.();
  }
}

/** Starts `strata mount --foreground` detached and waits until it serves or fails. */
function spawnBackground(mountpoint: string, o: MountCliOptions): Promise<number> {
  const logFile = o.logFile ? resolve(o.logFile) : join(resolve(o.store), RESERVED_NAME, 'daemon.log');
  const args = [process.argv[1]!, 'mount', '--foreground', '--notify-parent', '--store', resolve(o.store), '--log-file', logFile];
  if (o.logLevel) args.push('--log-level', o.logLevel);
  if (o.allowOther) args.push('--allow-other');
  if (o.attrTimeout !== undefined) args.push('--attr-timeout', String(o.attrTimeout));
  if (o.entryTimeout !== undefined) args.push('--entry-timeout', String(o.entryTimeout));
  if (o.negativeTimeout !== undefined) args.push('--negative-timeout', String(o.negativeTimeout));
  if (o.directIo === false) args.push('--no-direct-io');
  args.push(resolve(mountpoint));
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  return new Promise((resolvePromise) => {
    let settled = false;
    child.on('message', (msg: ParentMessage) => {
      if (settled) return;
      settled = true;
      if (msg.type === 'ready') {
        process.stdout.write(`mounted ${resolve(o.store)} at ${resolve(mountpoint)} (daemon pid ${child.pid}, log ${logFile})\n`);
        child.unref();
        child.disconnect();
        resolvePromise(0);
      } else {
        process.stderr.write(`strata mount: ${msg.message}\n`);
        resolvePromise(1);
      }
    });
    child.on('exit', (code, signal) => {
      if (settled) return;
      settled = true;
      process.stderr.write(`strata mount: the daemon exited before serving (${signal ?? `exit ${code}`}); see ${logFile}\n`);
      resolvePromise(1);
    });
  });
}
