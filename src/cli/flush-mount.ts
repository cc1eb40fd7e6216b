// What a program wrote but the kernel still holds for a mount (dirty pages of
// shared writable mappings; on a --writeback-cache mount every cached write)
// reaches strata only when the kernel writes it back: at msync, close, or its
// periodic write-back, up to half a minute later. Commands that stand for
// "what programs have written so far" (`checkpoint create`, `snapshot create
// MOUNTPOINT`, `sync`, `release`) have the kernel write it back first:
// syncfs(2) of the mount, from the CLI's process (the daemon never touches
// its own mountpoint).
import { syncfs } from '../store/syncfs.js';

/** How long the write-back may take before the command goes on without it. */
const FLUSH_TIMEOUT_MS = 30_000;

/**
 * syncfs of `mnt`. A mount that does not answer, or is not mounted, is the
 * command's own request to report: this only warns (on stderr) and returns.
 */
export async function flushMount(mnt: string, command: string): Promise<void> {
  try {
    if (!(await syncfs(mnt, FLUSH_TIMEOUT_MS))) {
      process.stderr.write(`strata ${command}: the kernel did not write back its cached pages of ${mnt} within ${FLUSH_TIMEOUT_MS / 1000} s; going on without them\n`);
    }
  } catch {
    // Not mounted, or the mount is gone: the request to the daemon says so.
  }
}
