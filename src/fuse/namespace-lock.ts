// The adapter's namespace lock. The core addresses objects by store-relative
// path, taken from the adapter's node table when a request starts; a rename
// changes the path of the object it moves and of everything below it. So a
// request that resolved a path while a rename ran could reach the store after
// the rename and find nothing there (ENOENT where a native directory, which
// works by inode, succeeds: a program writing in a directory another one
// renames). Requests that name objects hold this lock shared from the path's
// resolution to their answer; a rename holds it alone, store and node table
// changed together. Requests that only use an open handle's descriptor (read,
// write, flush, release, fsync, fallocate, releasedir, fsyncdir) never take
// it, so a long read is never in a rename's way. The FUSE thread's own
// answers work by node descriptor and need nothing of this.
//
// Fair: a rename waits for the requests under way, and requests arriving
// after it wait for it; when a rename ends, every request waiting then goes
// before the next rename.

/** How a request holds the lock (request-hold.ts decides it per op: namespaceModeOf). */
export type NamespaceMode = 'none' | 'shared' | 'exclusive';

export class NamespaceLock {
  private readers = 0;
  private writer = false;
  private readonly waitingReaders: (() => void)[] = [];
  private readonly waitingWriters: (() => void)[] = [];

  /** Runs `fn` holding the lock in `mode`; releases it however `fn` ends. */
  async run<T>(mode: NamespaceMode, fn: () => Promise<T>): Promise<T> {
    if (mode === 'none') return fn();
    if (mode === 'shared') await this.shared();
    else await this.exclusive();
    try {
      return await fn();
    } finally {
      if (mode === 'shared') this.releaseShared();
      else this.releaseExclusive();
    }
  }

  private shared(): Promise<void> | void {
    if (!this.writer && this.waitingWriters.length === 0) {
      this.readers++;
      return;
    }
    return new Promise((resolve) => this.waitingReaders.push(resolve));
  }

  private exclusive(): Promise<void> | void {
    if (!this.writer && this.readers === 0 && this.waitingWriters.length === 0) {
      this.writer = true;
      return;
    }
    return new Promise((resolve) => this.waitingWriters.push(resolve));
  }

  private releaseShared(): void {
    this.readers--;
    if (this.readers === 0) this.grantWriter();
  }

  private releaseExclusive(): void {
    this.writer = false;
    if (this.waitingReaders.length > 0) {
      const ready = this.waitingReaders.splice(0);
      this.readers += ready.length;
      for (const r of ready) r();
    } else {
      this.grantWriter();
    }
  }

  private grantWriter(): void {
    const next = this.waitingWriters.shift();
    if (next === undefined) return;
    this.writer = true;
    next();
  }
}
