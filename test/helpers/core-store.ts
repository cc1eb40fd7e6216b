// A store entered as the daemon enters it (chdir into the store root, umask 0),
// for the unit tests of the filesystem core. The core works relative to the
// process's working directory, so a test file uses one such store and runs
// its tests serially; `leave` (a test.after.always hook) restores the process
// and removes the store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../../src/store/local-store.js';

export interface EnteredStore {
  base: string;
  store: LocalStore;
  leave(): void;
}

export async function enterTempStore(prefix: string): Promise<EnteredStore> {
  const base = mkdtempSync(join(tmpdir(), prefix));
  const store = new LocalStore(join(base, 'store'));
  const startCwd = process.cwd();
  const startUmask = process.umask();
  await store.init();
  // As the daemon does: modes arrive already masked by the caller's umask.
  process.umask(0);
  store.enter();
  return {
    base,
    store,
    leave() {
      process.chdir(startCwd);
      process.umask(startUmask);
      rmSync(base, { recursive: true, force: true });
    },
  };
}
