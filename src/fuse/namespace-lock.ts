// The adapter's namespace lock. The core addresses objects by store-relative
// path, taken from the adapter's node table when a request starts; a rename
// changes the path of the object it moves and of everything below it. So a
// request that resolved a path while a rename ran could reach the store after
// the rename and find nothing there (ENOENT where a native directory, which
// works by inode, succeeds: a program writing in a directory another one
// renames).
//
// So a request that names objects holds the lock, shared, on the paths of the
// nodes it names (its node, and its second node for a link or rename), from
// the resolution of those paths to its answer; a rename holds it on the two
// names it changes (source and target), excluding every request whose paths
// are at or below one of them, and every other rename. Requests elsewhere in
// the tree never wait for a rename, so a request that waits long (a fetch
// from the archive, an acknowledgement in sync mode) holds up only renames of
// what it uses and requests below those. Requests that only use an open
// handle's descriptor (read, write, flush, release, fsync, fallocate,
// releasedir, fsyncdir) never take it. The FUSE thread's own answers work by
// node descriptor and need nothing of this.
//
// In arrival order: a request waits for every conflicting one that came
// before it, running or waiting, and for none that came after it.

/** How a request holds the lock (request-hold.ts decides it per op: namespaceModeOf). */
export type NamespaceMode = 'none' | 'shared' | 'exclusive';

/**
 * Namespace paths ('/a/b') a holder covers, with everything below them; 'all'
 * for a request whose paths could not be told (it conflicts with every rename).
 */
export type NamespacePaths = readonly string[] | 'all';

interface Holder {
  mode: 'shared' | 'exclusive';
  paths: NamespacePaths;
  start: () => void;
}

function within(p: string, q: string): boolean {
  return p === q || p.startsWith(q === '/' ? '/' : `${q}/`);
}

function conflicts(a: Holder, b: Holder): boolean {
  if (a.mode === 'shared' && b.mode === 'shared') return false;
  if (a.mode === 'exclusive' && b.mode === 'exclusive') return true;
  const [shared, rename] = a.mode === 'shared' ? [a, b] : [b, a];
  if (shared.paths === 'all' || rename.paths === 'all') return true;
  return shared.paths.some((p) => (rename.paths as readonly string[]).some((q) => within(p, q)));
}

export class NamespaceLock {
  private readonly active = new Set<Holder>();
  private readonly waiting: Holder[] = [];

  /** Runs `fn` holding the lock in `mode` on `paths`; releases it however `fn` ends. */
  async run<T>(mode: NamespaceMode, paths: NamespacePaths, fn: () => Promise<T>): Promise<T> {
    if (mode === 'none') return fn();
    let start!: () => void;
    const started = new Promise<void>((resolve) => { start = resolve; });
    const h: Holder = { mode, paths, start };
    this.waiting.push(h);
    this.pump();
    await started;
    try {
      return await fn();
    } finally {
      this.active.delete(h);
      this.pump();
    }
  }

  /** Holders running and waiting (for tests). */
  get size(): { active: number; waiting: number } {
    return { active: this.active.size, waiting: this.waiting.length };
  }

  private pump(): void {
    const ahead: Holder[] = [];
    for (let i = 0; i < this.waiting.length;) {
      const h = this.waiting[i]!;
      let blocked = ahead.some((o) => conflicts(h, o));
      if (!blocked) for (const o of this.active) if (conflicts(h, o)) { blocked = true; break; }
      if (blocked) {
        ahead.push(h);
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      this.active.add(h);
      h.start();
    }
  }
}
