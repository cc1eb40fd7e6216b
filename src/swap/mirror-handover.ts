// A mirrored mount's swap: the archive must end up with the swapped-in tree,
// and keep the pre-swap head. While requests are held and the journal is
// drained, the controller (controller.ts) calls these in order:
//  1. snapshotPreSwapHead: an archive snapshot of the drained head (exactly
//     the pre-swap tree) — before the decision, so that a failure rolls back;
//  2. seedMirrorState: the new store's .strata/mirror.json (same volume,
//     epoch and store id; marked not clean) — before the decision too: a crash
//     after the decision restarts on the new store, whose start re-converges
//     it with the archive (a full comparison: checkpoint 0) before serving;
//  (0. HandoverClients, opened before the hold: the snapshot and archive
//     clients the steps below use, so no worker thread starts inside it.)
//  3. handOver (after the decision): the old store's mirror stops without
//     giving up the lease; then the archive is brought to the new tree:
//     - the new tree is exactly a point of the archive's history (the
//       prepare's source, ArchivePoint), so the archive moves its head there
//       itself: a snapshot source is a rollback of the head to that snapshot
//       (keeping the epoch: this primary holds the lease and goes on
//       shipping; the pre-swap snapshot keeps the old head), and the head
//       source needs nothing while the head is still at that record. The
//       objects have the archive's ids (the tree writer gives each object the
//       id of the source's row, and the rollback copies those rows), so
//       nothing differs and nothing is walked ("rollback" / "head");
//     - otherwise (swap back, another archive or volume, the head moved on,
//       the archive refused) reconcile() turns every difference between the
//       new tree and the archive's head into journal records ("reconcile").
//     A mirror opens on the new store's journal, continuing the head's record.
//     A crash anywhere after the decision restarts on the new store, whose
//     state says checkpoint 0: its start re-converges it with whatever the
//     head is then (the pre-swap head or the rolled-back one; the epoch is
//     the same either way), so no new crash window opens.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Mirror, type MirrorOptions } from '../mirror/mirror.js';
import { reconcile, type ReconcileOptions } from '../mirror/reconcile.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import { readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import type { SnapshotClient, SnapshotInfo } from '../protocol/snapshot-api.js';
import type { ArchiveClient } from '../protocol/archive-api.js';
import type { Logger } from '../log/logger.js';
import type { ArchiveRef } from './source.js';
import type { ArchivePoint } from './spare.js';
import { swapCrashPoint } from './crash-points.js';

/** How the archive was brought to the swapped-in tree (`strata status`: swap.lastCommit.handover). */
export interface HandoverInfo {
  /** rollback: the archive rolled its head back to the source snapshot; head: the head was the source already; reconcile: a full comparison walk. */
  kind: 'rollback' | 'head' | 'reconcile';
  /** Why a reconcile (no shortcut possible, or what refused it); for a rollback the snapshot and the new record. */
  detail: string;
  /** Records the comparison put into the journal (reconcile), else 0. */
  records: number;
  ms: number;
}

/**
 * The archive clients a mirrored swap needs, opened before requests are held
 * (each is a worker thread, or a connection, that takes a while to start):
 * a snapshot client for the pre-swap snapshot and the rollback — a rollback
 * through it returns once decided and leaves the head's rebuild to the
 * background — and the archive client the new store's mirror will use. The
 * snapshot client is shared by the pre-swap snapshot's copy (on `file://` it
 * copies in this process) and the handover, and closed when both let it go.
 */
export class HandoverClients {
  private users = 1;
  private archiveTaken = false;

  private constructor(readonly snapshots: SnapshotClient, readonly archive: ArchiveClient) {}

  static async open(ref: ArchiveRef): Promise<HandoverClients> {
    const tok = ref.tokenFile !== undefined ? { tokenFile: ref.tokenFile } : {};
    const [s, a] = await Promise.allSettled([openSnapshotClient(ref.url, { ...tok, rebuildInBackground: true }), openArchiveClient(ref.url, tok)]);
    if (s.status === 'fulfilled' && a.status === 'fulfilled') return new HandoverClients(s.value, a.value);
    if (s.status === 'fulfilled') await s.value.close().catch(() => {});
    if (a.status === 'fulfilled') await a.value.close().catch(() => {});
    throw (s.status === 'rejected' ? s.reason : (a as PromiseRejectedResult).reason) as Error;
  }

  /** One more user of the snapshot client (the pre-swap snapshot's copy). */
  retain(): void {
    this.users++;
  }

  /** A user is done with the snapshot client; the last one closes it (in the background: nothing waits for a worker to exit). */
  release(): void {
    if (--this.users === 0) void this.snapshots.close().catch(() => {});
  }

  /** The archive client, for the new mirror (it owns it from then on). */
  takeArchive(): ArchiveClient {
    this.archiveTaken = true;
    return this.archive;
  }

  /** The exchange did not get to the handover: the archive client goes too. */
  async abandon(): Promise<void> {
    this.release();
    if (!this.archiveTaken) await this.archive.close().catch(() => {});
  }
}

/**
 * Moves the archive's head of `archive.volume` to `point` (the new tree),
 * keeping the epoch. Returns what it did, or throws why it cannot.
 */
async function moveArchiveToPoint(archive: ArchiveRef, client: Mirror['client'], c: SnapshotClient, point: ArchivePoint, holder: { epoch: number; storeId: string }, keptBy: string | null,
  newPrivateDir: string): Promise<{ kind: 'rollback' | 'head'; detail: string }> {
  if (point.archive !== archive.url || point.volume !== archive.volume) {
    throw new Error(`the tree is a point of ${point.volume} on ${point.archive}, this mount mirrors ${archive.volume} on ${archive.url}`);
  }
  const st = await client.volumeState(archive.volume);
  if (st === null) throw new Error(`volume ${archive.volume} does not exist on ${archive.url}`);
  if (st.epoch !== holder.epoch) throw new Error(`the volume is at epoch ${st.epoch}, this mount's is ${holder.epoch}`);
  if (point.kind === 'head') {
    if (st.appliedSeq !== point.record) throw new Error(`the head moved from record ${point.record} (the prepared tree) to ${st.appliedSeq}, and no snapshot keeps that record`);
    return { kind: 'head', detail: `the head is at record ${point.record}, the prepared tree` };
  }
  // Decided in one small transaction; the head's rows are rebuilt from the snapshot's target in the background (on a
  // file:// archive also by the archive worker of this store's mirror), while this store's changes wait in its journal.
  const res = await c.rollback(archive.volume, point.id, { holder, ...(keptBy !== null ? { keptBy } : {}) });
  if (res.state.epoch !== holder.epoch) {
    // An archive from before the holder option fenced the volume: the rollback is ours and the new journal is empty, so the new store takes that epoch.
    await adoptEpoch(newPrivateDir, res.state.epoch);
  }
  return { kind: 'rollback', detail: `head rolled back to snapshot ${point.id} (record ${point.record}) as record ${res.state.appliedSeq} (rebuilt on the archive in the background); the old head is kept by ${res.kept?.id ?? 'no snapshot (it was empty)'}` };
}

/** Refuses a mirrored swap up front when the archive could not keep the pre-swap head. */
export async function checkSnapshotTarget(archive: ArchiveRef, c: SnapshotClient): Promise<void> {
  const targets = await c.targets();
  if (!targets.some((t) => t.healthy)) {
    throw new Error(`the archive ${archive.url} has no healthy snapshot target to keep the pre-swap head on ` +
      '(strata archive targets): a swap of a mirrored mount keeps it as a snapshot first');
  }
}

/**
 * Takes the snapshot of the head and returns it (state copying or complete);
 * the copy goes on after this returns (`done` resolves when it has finished,
 * closing the client).
 */
export async function snapshotPreSwapHead(archive: ArchiveRef, clients: HandoverClients, generation: number, log: Logger): Promise<SnapshotInfo> {
  const c = clients.snapshots;
  const info = await c.createSnapshot(archive.volume, { reason: `the head before swap ${generation}` });
  // A file:// archive copies in this process: keep the client until the copy is done.
  clients.retain();
  void (async () => {
    try {
      for (let s = info; s.state === 'copying'; s = await c.getSnapshot(s.id)) await new Promise((r) => setTimeout(r, 200));
    } catch (err) {
      log.warn({ err: (err as Error).message, snapshot: info.id }, 'swap: cannot follow the pre-swap snapshot\'s copy');
    } finally {
      clients.release();
    }
  })();
  return info;
}

/** The new store's mirror state takes `epoch` (its own rollback raised it; nothing is journaled yet). */
async function adoptEpoch(privateDir: string, epoch: number): Promise<void> {
  const text = await readFileIfExists(join(privateDir, 'mirror.json'));
  if (text === null) throw new Error(`no mirror state in ${privateDir}`);
  await writeFileDurably(join(privateDir, 'mirror.json'), `${JSON.stringify({ ...(JSON.parse(text) as Record<string, unknown>), epoch }, null, 2)}\n`);
}

/** Writes the mirror state of `fromPrivateDir` into `toPrivateDir`, marked not clean with checkpoint 0. */
export async function seedMirrorState(fromPrivateDir: string, toPrivateDir: string): Promise<void> {
  const text = await readFileIfExists(join(fromPrivateDir, 'mirror.json'));
  if (text === null) throw new Error(`no mirror state in ${fromPrivateDir}`);
  const state = JSON.parse(text) as Record<string, unknown>;
  await rm(join(toPrivateDir, 'journal'), { recursive: true, force: true });
  await writeFileDurably(join(toPrivateDir, 'mirror.json'), `${JSON.stringify({ ...state, initialSyncDone: true, clean: false, checkpointNs: '0' }, null, 2)}\n`);
}

/**
 * Stops `old` (journal drained; the lease stays ours) and returns the new
 * store's running mirror, with the archive brought to the new tree: moved to
 * `point` when the new tree is that point of the archive (null: not known to
 * be one), else re-converged by a comparison of the whole tree.
 */
export async function handOver(old: Mirror, archive: ArchiveRef, clients: HandoverClients, opts: MirrorOptions, newRoot: string, newPrivateDir: string, log: Logger,
  point: ArchivePoint | null, keptBy: string | null, content?: ReconcileOptions['content']): Promise<{ mirror: Mirror; handover: HandoverInfo }> {
  const t0 = Date.now();
  const holder = { epoch: old.status().epoch, storeId: await Mirror.storeIdOf(newPrivateDir) };
  await old.abandon();
  const client = clients.takeArchive();
  let moved: { kind: 'rollback' | 'head'; detail: string } | null = null;
  let why = 'swap back: the pre-swap tree is not known to equal a point of the archive (open files may have written to it)';
  try {
    if (point !== null) {
      try {
        moved = await moveArchiveToPoint(archive, client, clients.snapshots, point, holder, keptBy, newPrivateDir);
      } catch (err) {
        why = `the archive was not moved to the source point: ${(err as Error).message}`;
        log.warn({ err: (err as Error).message, point }, 'swap: the archive cannot be moved to the source point; comparing the whole tree instead');
      }
      // The archive may have moved (or not, if the answer was lost); a crash from here restarts on the new store and compares it with the head.
      swapCrashPoint('swap-archive-moved');
    }
  } finally {
    clients.release();
  }
  let m: Mirror;
  try {
    m = await Mirror.open(newPrivateDir, client, opts, log);
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  await m.acquireLease();
  await m.start();
  if (moved !== null) {
    // The new tree is the head: nothing to ship but what changes from now on.
    await m.reconciled();
    const handover: HandoverInfo = { kind: moved.kind, detail: moved.detail, records: 0, ms: Date.now() - t0 };
    log.info(handover, 'swap: the archive\'s head is the new tree (no comparison walk)');
    return { mirror: m, handover };
  }
  const before = m.journal.lastSeq;
  const stats = await reconcile({
    store: newRoot, archive: m.client, volume: opts.volume, ...(content !== undefined ? { content } : {}),
    sink: {
      append: async (rec) => {
        await m.admit(512 + (rec.op === 'write' ? rec.data.length : rec.op === 'setxattr' ? rec.value.length : 0));
        m.append(rec);
      },
    },
  });
  await m.reconciled();
  const handover: HandoverInfo = { kind: 'reconcile', detail: why, records: m.journal.lastSeq - before, ms: Date.now() - t0 };
  log.info({ ...stats, ...handover }, 'swap: the new store\'s differences from the archive are in the journal');
  return { mirror: m, handover };
}
