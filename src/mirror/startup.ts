// Re-convergence before a mirrored store serves: the first mount with an
// archive (initial sync: ship everything the archive lacks), or the first
// mount after an unclean stop (re-compare what may have reached the store
// without a durable journal record, and re-ship it).
//
// Order: first the journal drains (the archive then holds every record this
// store ever wrote durably), then the store is compared with the archive and
// every difference becomes new journal records, which ship like any other.
// Nothing else changes the store meanwhile: the mount is not served yet. A
// crash in the middle leaves the state file saying "not reconciled", and the
// next start does it again; the comparison skips what already arrived.
import type { Mirror } from './mirror.js';
import { reconcile } from './reconcile.js';
import type { Logger } from '../log/logger.js';

export async function reconcileBeforeServing(mirror: Mirror, storeRoot: string, archiveWaitMs: number, log: Logger): Promise<void> {
  const scope = mirror.reconcileScope;
  log.info({ scope: scope.kind, journalRecords: mirror.journal.lastSeq - mirror.shipper.ackedSeq }, 'mirror: draining the journal before re-converging');
  const drained = await mirror.drain(archiveWaitMs).catch(() => false);
  if (mirror.shipper.state === 'fenced') {
    // Another primary owns the volume: nothing this store does can reach the
    // archive again. Serve (status and the log say why), never re-converge.
    log.error({ reason: mirror.shipper.lastError }, 'mirror: this store is fenced off its volume; serving without shipping');
    return;
  }
  if (!drained) {
    const st = mirror.status();
    throw new Error(`the archive ${st.archive} did not take the journal within ${Math.round(archiveWaitMs / 1000)} s ` +
      `(${st.connection}${st.lastError ? `: ${st.lastError}` : ''}); this store must re-converge with it before serving`);
  }
  // The archive holds the whole journal: its room goes back to the store before the comparison needs some.
  await mirror.journal.dropAcked(mirror.shipper.ackedSeq);
  const started = Date.now();
  mirror.initialSync.state = 'running';
  let lastLog = 0;
  const stats = await reconcile({
    store: storeRoot,
    archive: mirror.client,
    volume: mirror.opts.volume,
    ...(scope.kind !== 'initial' ? { changedSinceNs: scope.ctimeNs } : {}),
    sink: {
      append: async (rec) => {
        // Room in the journal: an estimate, as the core's (encoding the frame twice would be exact, and wasted).
        // The store already holds what these records say: they need room in the journal only, and the room it
        // keeps ahead is for them as much as for removals (journal.ts, "Room kept ahead"). Once even that is
        // used up (records would wait in memory), the start fails as a change that needs room would.
        await mirror.admit(512 + (rec.op === 'write' ? rec.data.length : rec.op === 'setxattr' ? rec.value.length : 0), mirror.journal.noRoom === null);
        mirror.append(rec);
      },
    },
    onProgress: (done, total) => {
      Object.assign(mirror.initialSync, {
        entries: done.entries, bytes: done.bytes,
        totalEntries: total?.entries ?? null, totalBytes: total?.bytes ?? null,
      });
      if (Date.now() - lastLog >= 2000) {
        lastLog = Date.now();
        log.info({ done, total }, scope.kind === 'initial' ? 'initial sync: progress' : scope.kind === 'since-archived' ? 're-convergence (since the newest checkpoint the archive holds): progress' : 're-convergence: progress');
      }
    },
  });
  await mirror.reconciled();
  log.info({ ...stats, ms: Date.now() - started, scope: scope.kind }, scope.kind === 'initial' ? 'initial sync: every object is in the journal' : 're-convergence done');
}
