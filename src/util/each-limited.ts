// Bounded parallel work over a list, for the restore, the swap's writers and
// the rollback, which each build or copy many objects at once.

/**
 * Waits for every promise to settle, then throws the first rejection (in
 * the order given), if any. Where the work writes through a descriptor its
 * caller closes as soon as this settles: with Promise.all a failure went up
 * while other work was still writing, and a descriptor number given meanwhile
 * to another file took its bytes (the background restore did this until
 * 2026-12-06: on-demand.ts).
 */
export async function settleAll(work: readonly Promise<unknown>[]): Promise<void> {
  for (const s of await Promise.allSettled(work)) if (s.status === 'rejected') throw s.reason;
}

/**
 * `f` on every item (taken from `items` as the workers go: a generator
 * stays lazy), `limit` at a time. At the first failure no more start, and it
 * goes up only once those under way are done (settleAll). A retry (a
 * directory materialised again, a swap's prepare resumed) must not meet an
 * object still being built by the failed run either.
 */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, f: (item: T) => Promise<void>): Promise<void> {
  const next = items[Symbol.iterator]();
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed) {
      const item = next.next();
      if (item.done === true) return;
      try {
        await f(item.value);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await settleAll(Array.from({ length: Math.max(1, limit) }, worker));
}
