// syncfs(2) of the file system holding a directory, by coreutils' `sync -f`
// in a child process: a file system that does not answer (a hung FUSE mount)
// blocks that child, never this process's threads.
import { spawn } from 'node:child_process';

/**
 * Resolves once `sync -f dir` finished. With `timeoutMs`, resolves false when
 * it has not finished by then (the child is left to finish on its own);
 * otherwise true. Rejects when it fails.
 */
export function syncfs(dir: string, timeoutMs?: number): Promise<boolean> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn('sync', ['-f', dir], { stdio: 'ignore' });
    const timer = timeoutMs === undefined ? null : setTimeout(() => {
      p.unref();
      resolvePromise(false);
    }, timeoutMs);
    p.on('error', (err) => {
      if (timer !== null) clearTimeout(timer);
      reject(err);
    });
    p.on('exit', (code) => {
      if (timer !== null) clearTimeout(timer);
      if (code === 0) resolvePromise(true);
      else reject(new Error(`sync -f ${dir} exited ${code}`));
    });
  });
}
