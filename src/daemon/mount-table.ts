// What the kernel says about mountpoints: is one mounted, is it a dead FUSE
// mount left by a killed daemon, and how to detach it.
import { readFile, stat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

/** Mount entries from /proc/self/mountinfo for a path (unescaped). */
export async function mountsAt(mountpoint: string): Promise<Array<{ fstype: string; source: string }>> {
  const target = resolve(mountpoint);
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: Array<{ fstype: string; source: string }> = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const fields = left.split(' ');
    const mnt = unescapeMount(fields[4] ?? '');
    if (mnt !== target) continue;
    const [fstype = '', source = ''] = right.split(' ');
    out.push({ fstype, source: unescapeMount(source) });
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** 'stale' when the path is a FUSE mount whose daemon is gone ("Transport endpoint is not connected"). */
export async function probeMountpoint(mountpoint: string): Promise<'free' | 'mounted' | 'stale' | 'missing'> {
  try {
    const st = await stat(mountpoint);
    if (!st.isDirectory()) return 'missing';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') return 'stale';
    if (code === 'ENOENT') return 'missing';
    throw err;
  }
  return (await mountsAt(mountpoint)).length > 0 ? 'mounted' : 'free';
}

function exec(cmd: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (err) rej(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else res();
    });
  });
}

/** Unmounts a FUSE mount; `lazy` detaches it even while busy. Rejects with code EBUSY when in use. */
export async function detach(mountpoint: string, lazy: boolean): Promise<void> {
  const args = lazy ? ['-u', '-z', mountpoint] : ['-u', mountpoint];
  try {
    try {
      await exec('fusermount', args);
    } catch (err) {
      // fusermount refuses mounts it does not recognise as the user's; root can umount.
      if (process.geteuid?.() !== 0) throw err;
      await exec('umount', lazy ? ['-l', mountpoint] : [mountpoint]);
    }
  } catch (err) {
    if (!/\bbusy\b/i.test((err as Error).message)) throw err;
    throw Object.assign(new Error(`${resolve(mountpoint)} is busy: a program has its working directory or an open file there`), { code: 'EBUSY' });
  }
}
