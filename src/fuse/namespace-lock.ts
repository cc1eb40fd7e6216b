// The adapter's namespace lock. The core reaches named objects by store-relative
// path, taken from its node table (src/core/nodes.ts) when a request starts; a rename
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
//
// A holder's paths are asked for (from the node table) only when a rename is
// there to compare them with, so requests pay nothing while no rename runs;
// and again after it is let go, since a rename it waited for may have moved
// them. Asked later than the request's start, they are still
// the ones its handler resolved: only a rename changes them, and a rename
// compares them before it changes anything.

/** How a request holds the lock (request-hold.ts decides it per op: namespaceModeOf). */
export type NamespaceMode = 'none' | 'shared' | 'exclusive';

/**
 * Namespace paths ('/a/b') a holder covers, with everything below them; 'all'
 * for a request whose paths could not be told (it conflicts with every rename).
 */
export type NamespacePaths = readonly string[] | 'all';

interface Holder {
  mode: 'shared' | 'exclusive';
  pathsOf: () => NamespacePaths;
  /** pathsOf's answer, once asked (cleared when the holder is let go). */
  known: NamespacePaths | undefined;
  start: () => void;
}

function pathsOf(h: Holder): NamespacePaths {
  return (h.known ??= h.pathsOf());
}

function within(p: string, q: string): boolean {
  return p === q || p.startsWith(q === '/' ? '/' : `${q}/`);
}

function conflicts(a: Holder, b: Holder): boolean {
  if (a.mode === 'shared' && b.mode === 'shared') return false;
  if (a.mode === 'exclusive' && b.mode === 'exclusive') return true;
  const [s, x] = a.mode === 'shared' ? [pathsOf(a), pathsOf(b)] : [pathsOf(b), pathsOf(a)];
  if (s === 'all' || x === 'all') return true;
  return s.some((p) => x.some((q) => within(p, q)));
}

export class NamespaceLock {
  private readonly active = new Set<Holder>();
  private readonly waiting: Holder[] = [];

  /** Runs `fn` holding the lock in `mode` on the paths `paths` gives (asked when needed); releases it however `fn` ends. */
  async run<T>(mode: NamespaceMode, paths: NamespacePaths | (() => NamespacePaths), fn: () => Promise<T>): Promise<T> {
    if (mode === 'none') return fn();
    let start!: () => void;
    const started = new Promise<void>((resolve) => { start = resolve; });
    const h: Holder = { mode, pathsOf: typeof paths === 'function' ? paths : () => paths, known: undefined, start };
    this.waiting.push(h);
    this.pump();
    await started;
    try {
      return await fn();
    } finally {
      this.active.delete(h);
      // A rename moved names: the paths the waiting ones gave may be old.
      if (mode === 'exclusive') for (const w of this.waiting) w.known = undefined;
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
      // Asked again when next needed: a rename it waited for may have moved them.
      h.known = undefined;
      h.start();
    }
  }
}
