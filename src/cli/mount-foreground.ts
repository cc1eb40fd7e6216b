// `strata mount --foreground` / `strata recover --foreground`: this process
// becomes the daemon. Loaded only by the process that serves: the CLI that
// spawns a background daemon never loads it (mount-command.ts).
import { resolve } from 'node:path';
import { pino } from 'pino';
import { createLogger, type Logger } from '../log/logger.js';
import { DaemonLogFile } from '../daemon/log-file.js';
import { MountDaemon, type MountConfig } from '../daemon/mount-daemon.js';
import type { MountOptions } from '../fuse/adapter.js';
import { formatRestoreProgress } from './restore-format.js';
import { parseMetricsAddress, serveMetrics, type MetricsListener } from '../metrics-http/listener.js';
import { notifySystemd } from '../daemon/sd-notify.js';
import { commandName, type MountCliOptions, type ParentMessage } from './mount-command.js';

function mountOptions(o: MountCliOptions): MountOptions {
  const m: MountOptions = {};
  if (o.allowOther) m.allowOther = true;
  if (o.attrTimeout !== undefined) m.attrTimeout = o.attrTimeout;
  if (o.entryTimeout !== undefined) m.entryTimeout = o.entryTimeout;
  if (o.negativeTimeout !== undefined) m.negativeTimeout = o.negativeTimeout;
  if (o.directIo === false) m.directIo = false;
  if (o.writebackCache) m.writebackCache = true;
  if (o.passthrough === false) m.passthrough = false;
  if (o.passthroughWrites) m.passthroughWrites = true;
  if (o.killprivV2 === false) m.handleKillprivV2 = false;
  if (o.parallelDirops === false) m.parallelDirops = false;
  if (o.posixAcl === false) m.posixAcl = false;
  if (o.directJournal === false) m.directJournal = false;
  if (o.debugFuse) m.debug = true;
  return m;
}

/** Serves until unmounted or signalled; returns an exit code only when the start fails. */
export async function serveForeground(mountpoint: string, o: MountCliOptions, mirror: MountConfig['mirror']): Promise<number> {
  const cmd = commandName(o);
  // Resolved now: every later user of these paths gets them absolute (nothing depends on the working directory).
  const storeAbs = resolve(o.store);
  const mountAbs = resolve(mountpoint);
  let log: Logger;
  try {
    // A log file must neither kill nor hang the daemon when its disk fills up (see DaemonLogFile).
    log = o.logFile
      ? pino({ name: 'strata', level: o.logLevel ?? 'info', base: { pid: process.pid } }, new DaemonLogFile(resolve(o.logFile)))
      : createLogger(o.logLevel ? { level: o.logLevel } : {});
  } catch (err) {
    const message = `cannot start logging${o.logFile ? ` to ${resolve(o.logFile)}` : ''}: ${(err as Error).message}`;
    notify({ type: 'error', message });
    process.stderr.write(`strata ${cmd}: ${message}\n`);
    return 1;
  }
  // prom-client loads only for a daemon that serves metrics.
  const metrics = o.metrics !== undefined ? new (await import('../daemon/metrics.js')).DaemonMetrics({ mountpoint: mountAbs, ...(mirror ? { volume: mirror.volume } : {}) }) : null;
  const daemon = new MountDaemon({
    store: o.store, mountpoint, options: mountOptions(o), ...(mirror ? { mirror } : {}),
    ...(o.depth !== undefined ? { recover: { depth: o.depth, ...(o.force ? { force: true } : {}) } } : {}),
    ...(o.backgroundRestore === false ? { backgroundRestore: false } : {}),
    ...(metrics !== null ? { observers: metrics.observers } : {}),
    onStopping: async () => { await notifySystemd({ STOPPING: '1', STATUS: 'unmounting' }); },
  }, log);
  let listener: MetricsListener | null = null;
  if (metrics !== null) {
    // Before anything is mounted: a port in use refuses the start with nothing to undo.
    metrics.attach(daemon);
    try {
      const at = parseMetricsAddress(o.metrics!);
      listener = await serveMetrics(metrics.registry, at.host, at.port, (err) => log.warn({ err: err.message }, 'metrics'));
      log.info({ metrics: `http://${listener.address}/metrics` }, 'metrics served');
    } catch (err) {
      const message = (err as Error).message;
      log.error({ err: message }, 'mount refused');
      notify({ type: 'error', message });
      process.stderr.write(`strata ${cmd}: ${message}\n`);
      return 1;
    }
  }
  try {
    await daemon.start();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ err }, 'mount failed');
    notify({ type: 'error', message });
    process.stderr.write(`strata ${cmd}: ${message}\n`);
    // Whatever start() had opened (control socket, archive client) must not keep the process alive.
    await daemon.abort();
    await listener?.close();
    return 1;
  }
  const restore = daemon.status().restore;
  const detail = restore !== null && daemon.timeToServeMs !== null
    ? `serving after ${(daemon.timeToServeMs / 1000).toFixed(2)} s; restore ${restore.phase}: ${restore.entries.done} of ${restore.entries.total} entries local`
    : undefined;
  const metricsUrl = listener !== null ? `http://${listener.address}/metrics` : undefined;
  const warning = restore?.room ?? undefined;
  notify({ type: 'ready', ...(detail !== undefined ? { detail } : {}), ...(warning !== undefined ? { warning } : {}), ...(metricsUrl !== undefined ? { metrics: metricsUrl } : {}) });
  // systemd (Type=notify): the mount serves now.
  await notifySystemd({ READY: '1', STATUS: `serving ${storeAbs} at ${mountAbs}${detail ? `; ${detail}` : ''}` })
    .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not tell systemd that the mount serves (NOTIFY_SOCKET)'));
  if (!o.notifyParent) {
    process.stderr.write(`strata: serving ${storeAbs} at ${mountAbs}${detail ? ` (${detail})` : ''}${metricsUrl ? `, metrics at ${metricsUrl}` : ''} (Ctrl-C or 'strata unmount' to stop)\n`);
    if (warning !== undefined) process.stderr.write(`strata ${cmd}: warning: ${warning}\n`);
    if (restore !== null && restore.phase !== 'complete') showRestoreProgress(daemon);
  }
  return new Promise<number>(() => { /* serve until unmounted or signalled */ });
}
/** The background restore's progress on stderr: a bar on a terminal, a line every 10 s otherwise. */
function showRestoreProgress(daemon: MountDaemon): void {
  const tty = process.stderr.isTTY === true;
  const timer = setInterval(() => {
    const p = daemon.status().restore;
    if (p === null) return;
    const line = formatRestoreProgress(p);
    if (tty) process.stderr.write(`\r\x1b[K${line}`);
    else process.stderr.write(`${line}\n`);
    if (p.phase === 'complete') {
      if (tty) process.stderr.write('\n');
      clearInterval(timer);
    }
  }, tty ? 500 : 10_000);
  timer.unref();
}

function notify(msg: ParentMessage): void {
  if (process.send) {
    process.send(msg);
    process.disconnect?.();
  }
}
