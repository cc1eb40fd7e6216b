// The daemon's side of `strata checkpoint ...` and `strata rollback`: control
// requests handed to the store's Checkpoints, with the FUSE adapter told of
// what a rollback changed behind the kernel's back.
import { resolve } from 'node:path';
import type { Checkpoints } from '../checkpoint-service/manager.js';
import type { Area, RollbackObserver } from '../checkpoint-service/rollback.js';
import type { FuseAdapter } from '../fuse/adapter.js';
import { FsError } from '../errors/errno.js';

export type CheckpointRequest =
  | { cmd: 'checkpoint'; op: 'create'; name?: string; copyStore?: string; waitWritersMs?: number }
  | { cmd: 'checkpoint'; op: 'list' }
  | { cmd: 'checkpoint'; op: 'delete'; name: string }
  | { cmd: 'checkpoint'; op: 'diff'; name: string; paths?: string[] }
  | { cmd: 'checkpoint'; op: 'rollback'; name: string; areas?: Area[]; dryRun?: boolean };

export async function checkpointRequest(cps: Checkpoints | null, adapter: FuseAdapter | null, mountpoint: string, req: CheckpointRequest): Promise<unknown> {
  if (!cps) throw new FsError('EAGAIN', 'the mount is not serving yet');
  switch (req.op) {
    case 'create': {
      // With the kernel's writeback cache the kernel keeps a file's size itself
      // and never takes it from strata again, so a rollback that changes a size
      // behind it would show the wrong one: no checkpoints on such a mount.
      if (adapter?.writebackCache === true) {
        throw new FsError('EOPNOTSUPP', 'checkpoints need a mount without --writeback-cache (the kernel would keep its own file sizes across a rollback)');
      }
      if (req.copyStore !== undefined) {
        const dir = resolve(req.copyStore);
        // The daemon never touches its own mountpoint.
        if (dir === mountpoint || dir.startsWith(`${mountpoint}/`)) throw new FsError('EINVAL', `copy store ${dir} lies under the mountpoint ${mountpoint}`);
      }
      const waitWritersMs = req.waitWritersMs;
      if (waitWritersMs !== undefined && (!Number.isFinite(waitWritersMs) || waitWritersMs < 0 || waitWritersMs > 86_400_000)) {
        throw new FsError('EINVAL', `--wait-writers: ${String(waitWritersMs)} ms is not a time from 0 to a day`);
      }
      return cps.create({
        ...(req.name !== undefined ? { name: req.name } : {}), ...(req.copyStore !== undefined ? { copyStore: resolve(req.copyStore) } : {}),
        ...(waitWritersMs !== undefined ? { waitWritersMs } : {}),
      });
    }
    case 'list':
      return { checkpoints: cps.list() };
    case 'delete':
      await cps.delete(req.name);
      return { deleted: req.name };
    case 'diff':
      return cps.diff(req.name, req.paths ?? []);
    case 'rollback': {
      const observer: RollbackObserver | null = adapter === null ? null : {
        removed: (parent, name, ino, survives) => adapter.storeChanged({ kind: 'removed', parent, name, ino, survives }),
        added: (parent, name, ino) => adapter.storeChanged({ kind: 'added', parent, name, ino }),
        moved: (from, to, ino) => adapter.storeChanged({ kind: 'moved', from, to, ino }),
        changed: (ino) => adapter.storeChanged({ kind: 'changed', ino }),
      };
      return cps.rollback(req.name, req.areas ?? [], req.dryRun ?? false, observer);
    }
  }
}
