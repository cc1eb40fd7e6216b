// Fault injection for the swap's kill -9 tests (test/fault/swap-faults), the
// pattern of src/restore/crash-points.ts: with STRATA_CRASH_AT=<point>[:<n>]
// in its environment the daemon kills itself with SIGKILL the n-th time it
// reaches <point>. Read once at load; without it a point costs a comparison.
import { crashAt } from '../store/crash-at.js';

export type SwapCrashPoint =
  /** Prepare: one more object of the point-in-time tree is in place in the spare. */
  | 'swap-prepare-object'
  /** Commit: requests are held, nothing in flight; the swap record is not written yet. */
  | 'swap-held'
  /** Commit: the new swap record is written and durable under its temporary name, not renamed into place. */
  | 'swap-record-temp'
  /** Commit: the new swap record is in place (the exchange is decided); the daemon still serves the old store. */
  | 'swap-recorded'
  /** Commit, mirrored: decided and switched; the archive was asked to move its head to the source point (snapshot rollback), the new store's mirror is not open yet. */
  | 'swap-archive-moved'
  /** Commit: the daemon serves the new store, held requests are not released yet. */
  | 'swap-switched';

export const SWAP_CRASH_POINTS: readonly SwapCrashPoint[] = [
  'swap-prepare-object', 'swap-held', 'swap-record-temp', 'swap-recorded', 'swap-archive-moved', 'swap-switched',
];

export function swapCrashPoint(point: SwapCrashPoint): void {
  crashAt(point);
}
