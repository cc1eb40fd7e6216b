// systemd's readiness protocol for `Type=notify` units (sd_notify(3)): READY=1
// once the mount serves (or the archive listens), STOPPING=1 when a stop
// begins. The datagram goes to NOTIFY_SOCKET from this process itself, through
// strata's native addon (Node's dgram has no AF_UNIX datagram sockets), so the
// unit needs no NotifyAccess=all. Without NOTIFY_SOCKET (not under systemd)
// every call does nothing.
import { sdNotify } from '../native/index.js';

/** NOTIFY_SOCKET, read once and removed from the environment (children such as fusermount or a takeover's `strata recover` must not report for this unit). */
const socketPath: string | null = (() => {
  const v = process.env['NOTIFY_SOCKET'];
  delete process.env['NOTIFY_SOCKET'];
  return v !== undefined && v !== '' ? v : null;
})();

/** Whether systemd (or a test standing in for it) asked for notifications. */
export function notifyingSystemd(): boolean {
  return socketPath !== null;
}

/**
 * Sends `fields` (e.g. { READY: '1', STATUS: 'serving' }) as one message;
 * resolves false without NOTIFY_SOCKET, rejects when the socket refuses it.
 */
export async function notifySystemd(fields: Record<string, string>): Promise<boolean> {
  if (socketPath === null) return false;
  const msg = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`).join('\n');
  await sdNotify(socketPath, msg);
  return true;
}
