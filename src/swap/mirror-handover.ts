// A mirrored mount's swap: the archive must end up with the swapped-in tree,
// and keep the pre-swap head. While requests are held and the journal is
// drained, the controller (controller.ts) calls these in order:
//  1. snapshotPreSwapHead: an archive snapshot of the drained head (exactly
//     the pre-swap tree) — before the decision, so that a failure rolls back;
//  2. seedMirrorState: the new store's .strata/mirror.json (same volume,
//     epoch and store id; marked not clean) — before the decision too: a crash
//     after the decision restarts on the new store, whose start re-converges
//     it with the archive (a full comparison: checkpoint 0) before serving;
//  3. handOver (after the decision): the old store's mirror stops without
//     giving up the lease, a mirror opens on the new store's journal, and
//     reconcile() turns every difference between the new tree and the
//     archive's head into journal records (shipped after the release).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Mirror, type MirrorOptions } from '../mirror/mirror.js';
import { reconcile } from '../mirror/reconcile.js';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import { readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import type { SnapshotInfo } from '../protocol/snapshot-api.js';
import type { Logger } from '../log/logger.js';
import type { ArchiveRef } from './source.js';

/** Refuses a mirrored swap up front when the archive could not keep the pre-swap head. */
export async function checkSnapshotTarget(archive: ArchiveRef): Promise<void> {
  const c = await openSnapshotClient(archive.url, archive.tokenFile !== undefined ? { tokenFile: archive.tokenFile } : {});
  try {
    const targets = await c.targets();
    if (!targets.some((t) => t.healthy)) {
      throw new Error(`the archive ${archive.url} has no healthy snapshot target to keep the pre-swap head on ` +
        '(strata archive targets): a swap of a mirrored mount keeps it as a snapshot first');
    }
  } finally {
    await c.close();
  }
}

/**
 * Takes the snapshot of the head and returns it (state copying or complete);
 * the copy goes on after this returns (`done` resolves when it has finished,
 * closing the client).
 */
export async function snapshotPreSwapHead(archive: ArchiveRef, generation: number, log: Logger): Promise<SnapshotInfo> {
  const c = await openSnapshotClient(archive.url, archive.tokenFile !== undefined ? { tokenFile: archive.tokenFile } : {});
  let info: SnapshotInfo;
  try {
    info = await c.createSnapshot(archive.volume, { reason: `the head before swap ${generation}` });
  } catch (err) {
    await c.close().catch(() => {});
    throw err;
  }
  // A file:// archive copies in this process: keep the client until the copy is done.
  void (async () => {
    try {
      for (let s = info; s.state === 'copying'; s = await c.getSnapshot(s.id)) await new Promise((r) => setTimeout(r, 200));
    } catch (err) {
      log.warn({ err: (err as Error).message, snapshot: info.id }, 'swap: cannot follow the pre-swap snapshot\'s copy');
    } finally {
      await c.close().catch(() => {});
    }
  })();
  return info;
}

/** Writes the mirror state of `fromPrivateDir` into `toPrivateDir`, marked not clean with checkpoint 0. */
export async function seedMirrorState(fromPrivateDir: string, toPrivateDir: string): Promise<void> {
  const text = await readFileIfExists(join(fromPrivateDir, 'mirror.json'));
  if (text === null) throw new Error(`no mirror state in ${fromPrivateDir}`);
  const state = JSON.parse(text) as Record<string, unknown>;
  await rm(join(toPrivateDir, 'journal'), { recursive: true, force: true });
  await writeFileDurably(join(toPrivateDir, 'mirror.json'), `${JSON.stringify({ ...state, initialSyncDone: true, clean: false, checkpointNs: '0' }, null, 2)}\n`);
}

/** Stops `old` (journal drained; the lease stays ours) and returns the new store's running, re-converged mirror. */
export async function handOver(old: Mirror, archive: ArchiveRef, opts: MirrorOptions, newRoot: string, newPrivateDir: string, log: Logger): Promise<Mirror> {
  await old.abandon();
  const client = await openArchiveClient(archive.url, archive.tokenFile !== undefined ? { tokenFile: archive.tokenFile } : {});
  let m: Mirror;
  try {
    m = await Mirror.open(newPrivateDir, client, opts, log);
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  await m.acquireLease();
  await m.start();
  const stats = await reconcile({
    store: newRoot, archive: m.client, volume: opts.volume,
    sink: {
      append: async (rec) => {
        await m.admit(512 + (rec.op === 'write' ? rec.data.length : rec.op === 'setxattr' ? rec.value.length : 0));
        m.append(rec);
      },
    },
  });
  await m.reconciled();
  log.info(stats, 'swap: the new store\'s differences from the archive are in the journal');
  return m;
}
