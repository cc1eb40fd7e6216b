// `strata recover --snapshot ID | --condition NAME [--before TIME]`: before
// the usual recovery (fence, top tiers, on demand, background), the archive
// rolls the volume back to the snapshot: the head that was there is kept as
// an automatic `rollback` snapshot, then the head becomes the snapshot's tree
// at a new epoch and record. The recovery that follows restores that head,
// lazily as always, so the mount shows exactly the snapshot's tree (I3 at
// that point) and mirrors from there on. Only into an empty store: a store
// already being restored resumes with plain `strata recover`.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { openSnapshotClient } from '../archive-client/open-snapshots.js';
import { RESERVED_NAME } from '../store/local-store.js';
import { StoreDir } from '../store/store-dir.js';
import { removeFreshFsDir } from '../store/fresh-disk.js';
import type { SnapshotClient } from '../protocol/snapshot-api.js';
import { WorkerSnapshotClient } from '../archive/snapshot-worker-client.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { openArchiveClient } from '../archive-client/open-archive.js';
import { describeHolder } from '../protocol/leases.js';
import { isArchiveError } from '../protocol/archive-api.js';

/** How long a rollback waits for an earlier rollback's rebuild of the same volume. */
const REBUILD_WAIT_MS = 600_000;

export interface RollbackRequest {
  archiveUrl: string;
  volume: string;
  tokenFile?: string;
  store: string;
  snapshot: string | undefined;
  condition: string | undefined;
  before: string | undefined;
  /** --force: roll back even while another primary's lease is live. */
  force?: boolean;
}

/** The volume's live holder, when another primary's lease is live (the rollback would change the tree under it). */
async function liveHolder(r: RollbackRequest): Promise<string | null> {
  const c = await openArchiveClient(r.archiveUrl, r.tokenFile !== undefined ? { tokenFile: r.tokenFile } : {});
  try {
    const row = (await c.leases(r.volume))[0];
    if (row === undefined || row.holder === null || (row.state !== 'active' && row.state !== 'taken over')) return null;
    return `volume ${r.volume} is held by ${describeHolder(row.holder)} (lease renewed ${row.leaseAgeSeconds ?? '?'} s ago): release it there first (strata release), or recover with --force`;
  } finally {
    await c.close();
  }
}

/** Exit code: 0 when the head is the snapshot's tree, 2 when nothing was changed (the message says why). */
export async function rollbackBeforeRecovery(r: RollbackRequest): Promise<number> {
  const fail = (msg: string): number => {
    process.stderr.write(`strata recover: ${msg}\n`);
    return 2;
  };
  if ((r.snapshot === undefined) === (r.condition === undefined)) return fail('give one of --snapshot ID or --condition NAME');
  if (r.before !== undefined && r.condition === undefined) return fail('--before goes with --condition');
  if (r.before !== undefined && !Number.isFinite(Date.parse(r.before))) return fail(`--before ${JSON.stringify(r.before)} is not a time (ISO 8601, e.g. 2025-01-02T03:04:05Z)`);
  if (existsSync(join(r.store, RESERVED_NAME, 'restore.json'))) {
    return fail(`${r.store} is being restored already; run strata recover without --snapshot/--condition to resume it, or recover a snapshot into an empty store`);
  }
  if (existsSync(r.store)) {
    await StoreDir.using(r.store, removeFreshFsDir);
    const names = readdirSync(r.store).filter((n) => n !== RESERVED_NAME);
    if (names.length > 0 || existsSync(join(r.store, RESERVED_NAME, 'mirror.json'))) return fail(`the store ${r.store} is not empty; recover a snapshot into an empty store`);
  }
  if (!r.force) {
    const held = await liveHolder(r).catch((err: unknown) => `cannot check the lease: ${(err as Error).message}`);
    if (held !== null) return fail(held);
  }
  let c: SnapshotClient | null = null;
  try {
    c = await openSnapshotClient(r.archiveUrl, r.tokenFile !== undefined ? { tokenFile: r.tokenFile } : {});
    let id = r.snapshot;
    if (id === undefined) {
      const choice = await c.chooseSnapshot(r.volume, { condition: r.condition!, ...(r.before !== undefined ? { before: r.before } : {}) });
      id = choice.snapshot.id;
      process.stdout.write(`chose snapshot ${id}: ${choice.why}\n`);
    }
    // A rebuild from an earlier rollback of this volume still going on (EUNAVAILABLE): wait for it, then roll back.
    let res;
    for (let waited = 0; ; waited += 500) {
      try {
        res = await c.rollback(r.volume, id);
        break;
      } catch (err) {
        if (!isArchiveError(err, 'EUNAVAILABLE') || !/being rebuilt/.test((err as Error).message) || waited >= REBUILD_WAIT_MS) throw err;
        if (waited === 0) process.stdout.write(`waiting: ${(err as Error).message}\n`);
        await sleep(500);
      }
    }
    process.stdout.write(`volume ${r.volume} rolled back to snapshot ${id} (taken ${res.from.createdAt} at record ${res.from.record}); ` +
      `now at record ${res.state.appliedSeq}, epoch ${res.state.epoch}` +
      `${res.kept ? `; the head it replaced (record ${res.kept.record}) is kept as snapshot ${res.kept.id}` : ''}\n`);
    if (c instanceof WorkerSnapshotClient) {
      // A file:// archive copies in this process (the head was rebuilt inside the call): the kept head must be on its target,
      // and the rows it replaced dropped, before the process ends.
      while (await c.busy()) await sleep(100);
    }
    return 0;
  } catch (err) {
    return fail((err as Error).message);
  } finally {
    await c?.close();
  }
}
