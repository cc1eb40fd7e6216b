// The swap record: which of two directories is the live store of a `--store`
// path, and which one is the spare. It is a small JSON file in a fixed place
// next to the store path given to `strata mount --store STORE`:
//
//     dirname(STORE)/.BASENAME.strata-swap.json
//
// (for --store /srv/store: /srv/.store.strata-swap.json). Without it the live
// store is STORE itself. `strata swap commit` decides an exchange in exactly
// one durable step: the new record is written under a temporary name, fsynced,
// renamed over the old one, and the directory is fsynced. A crash before the
// rename leaves the old record (the old store stays live), after it the new
// one; `strata mount` with the same --store serves whichever the record names
// (resolveLiveStore), so exactly one store is ever live.
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { swapCrashPoint } from './crash-points.js';

export interface SwapRecord {
  format: 1;
  /** The --store path this record is about (absolute). */
  store: string;
  /** The directory serving as the store now. */
  live: string;
  /** The directory holding the other tree (the store before the last exchange), or null once discarded. */
  spare: string | null;
  /** Exchanges so far. */
  generation: number;
  /** When the last exchange was decided, ISO 8601. */
  at: string;
  /** What the live tree came from (`snapshot:ID`, `archive:RECORD`, `pre-swap tree`, ...). */
  source: string;
}

export function swapRecordPath(store: string): string {
  const abs = resolve(store);
  return join(dirname(abs), `.${basename(abs)}.strata-swap.json`);
}

export async function readSwapRecord(store: string): Promise<SwapRecord | null> {
  let text: string;
  try {
    text = await readFile(swapRecordPath(store), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const r = JSON.parse(text) as SwapRecord;
  if (r.format !== 1 || typeof r.live !== 'string' || typeof r.generation !== 'number') {
    throw new Error(`unreadable swap record ${swapRecordPath(store)}`);
  }
  return r;
}

/**
 * The directory that is the live store of `store` (the swap record's, or
 * `store` itself). A record naming a directory that is gone is an error: an
 * empty store must never be served in its place.
 */
export async function resolveLiveStore(store: string): Promise<string> {
  const r = await readSwapRecord(store);
  if (r === null) return resolve(store);
  try {
    await stat(r.live);
  } catch {
    throw new Error(`the swap record ${swapRecordPath(store)} names ${r.live} as the live store of ${r.store}, and it does not exist ` +
      '(restore that directory, or remove the record to serve the store itself)');
  }
  return r.live;
}

async function fsyncPath(path: string, flags: string): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces the swap record of `record.store` in one durable step (the commit point of an exchange). */
export async function writeSwapRecord(record: SwapRecord): Promise<void> {
  const path = swapRecordPath(record.store);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await fsyncPath(tmp, 'r+');
  swapCrashPoint('swap-record-temp');
  await rename(tmp, path);
  await fsyncPath(dirname(path), 'r');
}

/** Leftover temporary record of an exchange that was rolled back or crashed before its rename. */
export async function removeSwapRecordTemp(store: string): Promise<void> {
  await rm(`${swapRecordPath(store)}.tmp`, { force: true });
}
