// `strata unmount` and `strata status`.
import { resolve } from 'node:path';
import { callControl } from '../daemon/control.js';
import { probeMountpoint, detach } from '../daemon/mount-table.js';

export async function unmountCommand(mountpoint: string, opts: { lazy?: boolean }): Promise<number> {
  const mnt = resolve(mountpoint);
  try {
    await callControl(mnt, { cmd: 'unmount', lazy: opts.lazy ?? false });
    process.stdout.write(`unmounted ${mnt}\n`);
    return 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED') {
      process.stderr.write(`strata unmount: ${(err as Error).message}\n`);
      return 1;
    }
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
    `open handles ${String(status.openHandles)}`,
    `mirror       ${status.mirror === null ? 'none (no archive configured)' : JSON.stringify(status.mirror)}`,
    `requests     ${Object.entries((status.requests ?? {}) as Record<string, number>).map(([k, v]) => `${k}=${v}`).join(' ') || '-'}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
