// A new file system (mkfs.ext4) comes with an empty `lost+found` at its root.
// Recovering onto a fresh disk mounted as the store is what `strata recover`
// is for, so that directory is not content of the store: the recovery removes
// it (only while it is empty) before it looks for anything else. The volume's
// own `lost+found`, if the primary's store had one, comes back from the
// archive like any other directory; e2fsck makes one again when it needs it.
import type { StoreDir } from './store-dir.js';

export const FRESH_FS_DIR = 'lost+found';

/** Removes an empty `lost+found` at the root of `dir`; true when it did. A non-empty one stays (it is content). */
export async function removeFreshFsDir(dir: StoreDir): Promise<boolean> {
  let st;
  try {
    st = await dir.lstat(FRESH_FS_DIR);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (!st.isDirectory()) return false;
  try {
    await dir.rmdir(FRESH_FS_DIR);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}
