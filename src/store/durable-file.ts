// Small state files (STORE/.strata/*.json): read when present, replaced
// atomically and durably (write a temporary file, fsync it, rename it over).
//
// On a full disk a replacement needs a few blocks the disk may not have. The
// mirror's journal keeps room allocated ahead of its records
// (src/journal/journal.ts) and lends some of it (`lendRoom`): a replacement
// that meets ENOSPC under a directory with a lender asks it for room and is
// tried once more. Without it a mirrored store whose disk programs filled
// could not save its state, and so could not start again after a kill -9.
import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { sep } from 'node:path';
import { isNoRoomError } from '../errors/errno.js';

/** Gives back up to `bytes` of room on the disk; true when it gave some. */
export type RoomLender = (bytes: number) => Promise<boolean>;

const lenders = new Map<string, RoomLender>();

/**
 * `lender` gives room to the state files under `dir` that meet a full disk;
 * returns the function that ends it.
 */
export function lendRoom(dir: string, lender: RoomLender): () => void {
  lenders.set(dir, lender);
  return () => { if (lenders.get(dir) === lender) lenders.delete(dir); };
}

function lenderFor(path: string): RoomLender | undefined {
  for (const [dir, lender] of lenders) if (path.startsWith(dir + sep)) return lender;
  return undefined;
}

/** The file's text, or null when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Writes of one path in flight: each waits for the one before (the last call's content wins). */
const queues = new Map<string, Promise<void>>();

/**
 * Replaces `path` with `text`. Concurrent calls for one path (a periodic
 * checkpoint and a final state, say) run one after the other, in call order.
 */
export function writeFileDurably(path: string, text: string): Promise<void> {
  const prev = queues.get(path) ?? Promise.resolve();
  const next = prev.catch(() => {}).then(() => replace(path, text));
  const tail = next.catch(() => {});
  queues.set(path, tail);
  void tail.then(() => { if (queues.get(path) === tail) queues.delete(path); });
  return next;
}

async function replace(path: string, text: string): Promise<void> {
  try {
    await replaceOnce(path, text);
  } catch (err) {
    const lender = lenderFor(path);
    if (!isNoRoomError(err) || lender === undefined) throw err;
    await rm(`${path}.tmp`, { force: true });
    // A page for the text and one for the file system's own (rounded up by the lender).
    if (!(await lender(Buffer.byteLength(text) + 2 * 4096))) throw err;
    await replaceOnce(path, text);
  }
}

async function replaceOnce(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
