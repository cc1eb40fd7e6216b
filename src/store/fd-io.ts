// Reads, writes and closes by descriptor, off the event loop (libuv's thread pool):
// what the walks over a store (mirror compare, checkpoint diff and rollback)
// do with a descriptor their StoreDir opened.
import * as fs from 'node:fs';

/** Up to `len` bytes at `pos` (fewer at the end of the file; the rest of the buffer stays zero). */
export async function readAt(fd: number, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  await readInto(fd, buf, len, pos);
  return buf;
}

/** Up to `len` bytes at `pos` into `buf` (from its start); returns how many (fewer only at the end of the file). */
export async function readInto(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  let done = 0;
  while (done < len) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, done, len - done, pos + done, (err, r) => (err ? reject(err) : resolve(r))));
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** close(2); an error (EIO of a file only read) is not the caller's concern. */
export function closeQuietly(fd: number): Promise<void> {
  return new Promise((resolve) => fs.close(fd, () => resolve()));
}

/** Writes all of `data` at `pos`. */
export async function writeAllAt(fd: number, data: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    done += await new Promise<number>((resolve, reject) => fs.write(fd, data, done, data.length - done, pos + done, (err, n) => (err ? reject(err) : resolve(n))));
  }
}

/** ftruncate(2). */
export function truncateFd(fd: number, size: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, size, (err) => (err ? reject(err) : resolve())));
}

/** close(2) of a descriptor written to: its error (EIO, ENOSPC of a delayed write) is the caller's. */
export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}
