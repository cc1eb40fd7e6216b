// A new file system (mkfs.ext4) comes with an empty `lost+found` at its root.
// Recovering onto a fresh disk mounted as the store is what `strata recover`
// is for, so that directory is not content of the store: the recovery removes
// it (only while it is empty) before it looks for anything else. The volume's
// own `lost+found`, if the primary's store had one, comes back from the
// archive like any other directory; e2fsck makes one again when it needs it.
import type { StoreDir } from './store-dir.js';

export const FRESH_FS_DIR = 'lost+found';

/** Removes an empty `lost+found` directory at the root of `dir`; true when it did. Anything else of that name stays (it is content). */
export async function removeFreshFsDir(dir: StoreDir): Promise<boolean> {
  try {
    await dir.rmdir(FRESH_FS_DIR);
    return true;
  } catch (err) {
    // None, not a directory, or not empty.
    if (['ENOENT', 'ENOTDIR', 'ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
}
