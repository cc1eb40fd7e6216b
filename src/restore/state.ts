// What a store remembers of its restore, in STORE/.strata/restore.json:
// which volume and epoch it was recovered from, how deep the first pass
// went, the phase it reached, and the totals to show progress against.
import { join } from 'node:path';
import { readFileIfExists, writeFileDurably } from '../store/durable-file.js';
import type { SubtreeTotals } from '../protocol/images.js';

export type RestorePhase =
  /** Fenced; the top tiers are being materialised (not served yet). */
  | 'materialising'
  /** Served; pending directories and stubs are restored on demand and in the background. */
  | 'restoring'
  /** Everything is local. */
  | 'complete';

export interface RestoreState {
  format: 1;
  volume: string;
  archive: string;
  /** The epoch this store was given by its fence. */
  epoch: number;
  depth: number;
  phase: RestorePhase;
  /** The archive's applied sequence at the fence: the recovery point. */
  recoveredSeq: number;
  /** Root subtree totals at the recovery point. */
  totals: SubtreeTotals;
  startedAt: string;
  /** When the top tiers were in place (the mount could serve). */
  servingAt: string | null;
  completedAt: string | null;
  /** Progress saved by the background restore: entries and bytes made local. */
  done: SubtreeTotals;
  /** Set when complete: files with blocks the archive could not deliver (they stay remote, reads of those blocks fail). */
  unreadable?: { id: string; path: string | null; blocks: number[]; error: string }[];
}

const STATE_FILE = 'restore.json';

export async function readRestoreState(privateDir: string): Promise<RestoreState | null> {
  const text = await readFileIfExists(join(privateDir, STATE_FILE));
  if (text === null) return null;
  const s = JSON.parse(text) as RestoreState;
  if (s.format !== 1 || typeof s.volume !== 'string' || typeof s.epoch !== 'number') throw new Error(`unreadable ${STATE_FILE} in ${privateDir}`);
  return s;
}

export async function writeRestoreState(privateDir: string, state: RestoreState): Promise<void> {
  await writeFileDurably(join(privateDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}
