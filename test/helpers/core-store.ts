// A store opened as the daemon opens it (its root's descriptor, umask 0), for
// the unit tests of the filesystem core. The umask is the process's, so a
// test file uses one such store and runs its tests serially; `leave` (a
// test.after.always hook) restores the umask and removes the store.
//
// The tests' own checks of the store use store-relative paths, so the store
// root is made the working directory for them. Strata's code does not use it
// (the local-object layer works relative to the root's descriptor): the
// daemon never changes its working directory, and test/unit/store-dir.test.ts
// runs the core on two stores with the working directory elsewhere.
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
  await store.open();
  process.chdir(store.root);
  return {
    base,
    store,
    leave() {
      store.close();
      process.chdir(startCwd);
      process.umask(startUmask);
      rmSync(base, { recursive: true, force: true });
    },
  };
}
