// A store path checked before anything is started (by the CLI before it
// spawns a daemon, and by the daemon itself).
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';

/**
 * Refuses a store path that exists but is not a directory, with a message that
 * says so (instead of "ENOTDIR: mkdir STORE/.strata"). A missing store is fine:
 * it is created.
 */
export async function checkStore(store: string): Promise<void> {
  const root = resolve(store);
  let isDir: boolean;
  try {
    isDir = (await stat(root)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR') throw new Error(`store ${root}: a component of the path is not a directory`);
    throw err;
  }
  if (!isDir) throw new Error(`store ${root} exists and is not a directory`);
}
