// Replacing a small state file atomically and durably: write a temporary
// file, fsync it, rename it over the old one.
import { open, rename, writeFile } from 'node:fs/promises';

export async function writeFileDurably(path: string, text: string): Promise<void> {
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
