// What the kernel says about mountpoints: is one mounted, is it a dead FUSE
// mount left by a killed daemon, and how to detach it.
import { readFile, stat, statfs } from 'node:fs/promises';
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
  const mounts = await mountsAt(mountpoint);
  if (mounts.length === 0) return 'free';
  // The kernel may answer stat from attributes it cached before the daemon died; statfs is never cached.
  if (mounts.some((m) => m.fstype.startsWith('fuse'))) {
    try {
      await statfs(mountpoint);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTCONN' || code === 'ECONNABORTED') return 'stale';
    }
  }
  return 'mounted';
}

/** How long an unmount command may take before the mount table decides. */
const DETACH_WAIT_MS = 10_000;

/**
 * Runs an unmount command. Seen once under heavy load: the command exited
 * but its completion never reached the daemon (a zombie child), which then
 * waited forever; after DETACH_WAIT_MS the mount table says whether the
 * mount is gone instead.
 */
function exec(cmd: string, args: string[], mountpoint: string): Promise<void> {
  return new Promise((res, rej) => {
    let done = false;
    const timer = setTimeout(() => {
      void mountsAt(mountpoint).then((m) => {
        if (done) return;
        done = true;
        if (m.length === 0) res();
        else rej(new Error(`${cmd} ${args.join(' ')}: no answer within ${DETACH_WAIT_MS / 1000} s and still mounted`));
      }, (err: unknown) => {
        if (!done) { done = true; rej(err as Error); }
      });
    }, DETACH_WAIT_MS);
    execFile(cmd, args, (err, _stdout, stderr) => {
      clearTimeout(timer);
      if (done) return;
      done = true;
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
      await exec('fusermount', args, mountpoint);
    } catch (err) {
      // fusermount refuses mounts it does not recognise as the user's; root can umount.
      if (process.geteuid?.() !== 0) throw err;
      await exec('umount', lazy ? ['-l', mountpoint] : [mountpoint], mountpoint);
    }
  } catch (err) {
    if (!/\bbusy\b/i.test((err as Error).message)) throw err;
    throw Object.assign(new Error(`${resolve(mountpoint)} is busy: a program has its working directory or an open file there`), { code: 'EBUSY' });
  }
}
