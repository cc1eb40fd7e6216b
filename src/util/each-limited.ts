// Bounded parallel work over a list, for the restore, the swap's writers and
// the rollback, which each build or copy many objects at once.

/**
 * `f` on every item, `limit` at a time. At the first failure no more start,
 * and it goes up only once those under way are done. The callers close
 * descriptors and release handles as soon as this settles; with Promise.all
 * a failure went up while other items were still writing through them, and a
 * descriptor number given meanwhile to another file took their bytes (the
 * background restore did this until 2026-12-06: on-demand.ts). A retry (a
 * directory materialised again, a swap's prepare resumed) must not meet an
 * object still being built by the failed run either.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      try {
        await f(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
}
