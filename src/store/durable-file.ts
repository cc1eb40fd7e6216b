// Small state files (STORE/.strata/*.json): read when present, replaced
// atomically and durably (write a temporary file, fsync it, rename it over).
import { open, readFile, rename, writeFile } from 'node:fs/promises';

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
