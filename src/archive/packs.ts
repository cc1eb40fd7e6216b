// Pack files: the archive's block data, appended to DIR/packs/NNNNNN.pack and
// located by the `blocks` table (digest -> pack, offset, length). A block in a
// pack is a 40-byte header (magic "SBK1", u32 LE length, the 32-byte sha256)
// followed by its bytes; the header makes a pack self-describing, so a lost
// database could be rebuilt from the packs, and a read checks it against the
// row as well as re-hashing the bytes.
//
// Appends happen only inside a write transaction (which holds SQLite's write
// lock across processes); the append position is the pack's length from
// fstat at the transaction's start, never a remembered one, since another
// process may have appended since. Bytes appended by a transaction that
// rolled back are unreferenced garbage: harmless, and overwritten by nobody.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ArchiveError } from '../protocol/archive-api.js';

export const PACK_MAGIC = 0x314b4253; // "SBK1" read as u32 LE
export const BLOCK_HEADER_BYTES = 40;
/** At most this many buffers in one preadv (Linux's IOV_MAX is 1024). */
const MAX_RUN_IOV = 1024;
/** Roll over to a new pack once the current one reaches this size. */
export const DEFAULT_PACK_LIMIT = 256 * 1024 * 1024;
/** Appends gathered in memory before one write (a block is at most 64 KiB + header). */
const STAGE_BYTES = 1024 * 1024;
/** Read descriptors kept open (least recently used closed first). */
const MAX_READ_FDS = 32;

export function packName(pack: number): string {
  return `${String(pack).padStart(6, '0')}.pack`;
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * Where sealed packs live when they are not in the archive directory (object
 * storage: s3-packs.ts). Packs are appended in DIR/packs; once sealed (no
 * longer the current pack) one is stored here once, never rewritten, and its
 * local file may go. Without a PackStore every pack stays in DIR/packs.
 * Synchronous like the rest of the store; failures are ArchiveErrors
 * (ECORRUPT for a missing pack, EUNAVAILABLE when the store does not answer).
 */
export interface PackStore {
  /** For messages: where the packs are (e.g. s3://bucket/prefix/packs/). */
  readonly name: string;
  /** Stores the sealed pack `pack` from `file`; storing it again is harmless (same bytes). */
  put(pack: number, file: string): void;
  /** Up to `length` bytes at `offset` (short at the pack's end). */
  readRange(pack: number, offset: number, length: number): Buffer;
  /** The pack's size, or null when it is not there. */
  size(pack: number): number | null;
  /** Every stored pack and its size. */
  list(): Map<number, number>;
  delete(pack: number): void;
  close(): void;
}

export interface BlockLocation {
  pack: number;
  offset: number;
  length: number;
}

/** A write transaction's append state. */
interface WriteState {
  pack: number;
  fd: number;
  position: number;
  appended: boolean;
  created: boolean;
  /** Opened by a rollover: the next block goes here whatever its size (a killed batch may have left this pack nearly full). */
  rolled?: boolean;
}

export class Packs {
  private readonly readFds = new Map<number, number>();
  /** The transaction's append state; null outside a write transaction, or before its first append. */
  private writing: WriteState | null = null;
  /** The pack a write transaction appends to, opened at its first append (a batch of metadata opens none). */
  private pending: number | null = null;

  /** Appends not written yet (copies), for the file from `stagedAt` on. */
  private readonly staged = new Staged();
  private stagedAt = 0;

  constructor(readonly dir: string, private readonly limit = DEFAULT_PACK_LIMIT, readonly sealed?: PackStore) {}

  /** Starts appending to `pack` (the database's current pack), at its real length. */
  begin(pack: number): void {
    this.abort();
    this.pending = pack;
  }

  /** The append state, the pack opened (at its real length) on first use. */
  private appending(what: string): WriteState {
    if (this.writing === null) {
      if (this.pending === null) throw new Error(`Packs.${what} outside a write transaction`);
      this.writing = this.openForAppend(this.pending);
    }
    return this.writing;
  }

  /**
   * Appends one block; returns where it went. Rolls to the next pack when this
   * one is full; the caller records the new current pack (`currentPack`).
   */
  /**
   * Where `append` of `length` bytes will put them (unless something else is
   * appended first): lets a caller record a block's place in the same
   * statement that finds out whether it is new. Rolls over to the next pack
   * now when this one has no room (the next one's real length decides).
   */
  nextLocation(length: number): BlockLocation {
    const w = this.room(length, 'nextLocation');
    return { pack: w.pack, offset: w.position, length };
  }

  /** The append state with room for `length` more bytes: the next pack when this one is full. */
  private room(length: number, what: string): WriteState {
    const w = this.appending(what);
    if (w.position === 0 || w.rolled === true || w.position + BLOCK_HEADER_BYTES + length <= this.limit) return w;
    // The full pack's appends become durable now; its descriptor is done.
    this.finishPack(w);
    fs.closeSync(w.fd);
    this.writing = null;
    return (this.writing = { ...this.openForAppend(w.pack + 1), rolled: true });
  }

  append(digest: Buffer, data: Buffer): BlockLocation {
    const w = this.room(data.length, 'append');
    const header = Buffer.alloc(BLOCK_HEADER_BYTES);
    header.writeUInt32LE(PACK_MAGIC, 0);
    header.writeUInt32LE(data.length, 4);
    digest.copy(header, 8);
    const offset = w.position;
    // Small appends gather in a buffer written with one call when it fills or
    // before anything needs them (sync, a read, the next pack): a batch of
    // small files costs a few writes, not one per block.
    const size = BLOCK_HEADER_BYTES + data.length;
    if (this.staged.length + size > STAGE_BYTES) this.writeStaged();
    if (size > STAGE_BYTES) {
      writeFully(w.fd, Buffer.concat([header, data]), offset);
    } else {
      if (this.staged.length === 0) this.stagedAt = offset;
      this.staged.push(header, data);
    }
    w.position += size;
    w.appended = true;
    w.rolled = false;
    return { pack: w.pack, offset, length: data.length };
  }

  /** The pack appends go to now (the database keeps it in meta.current_pack). */
  get currentPack(): number | null {
    return this.writing?.pack ?? null;
  }

  /** Makes every append of this transaction durable; call before COMMIT. */
  sync(): void {
    const w = this.writing;
    if (w === null) return;
    this.finishPack(w);
    this.writing = { ...w, appended: false, created: false };
  }

  /** Ends the transaction's append state (after COMMIT or ROLLBACK). */
  abort(): void {
    this.staged.take();
    if (this.writing !== null) fs.closeSync(this.writing.fd);
    this.writing = null;
    this.pending = null;
  }

  /**
   * The block at `loc`, verified: header and sha256 must match `digest`.
   * `what` names the block in the error (volume, object, index).
   * `hash` false: the header is checked, the data is not re-hashed (for a
   * reader that verifies the bytes against `digest` itself).
   */
  read(loc: BlockLocation, digest: Buffer, what: string, hash = true): Buffer {
    this.writeStaged(); // a block appended in this transaction may be read back
    const fd = this.readFd(loc.pack, what);
    let buf: Buffer = Buffer.allocUnsafe(BLOCK_HEADER_BYTES + loc.length);
    let got = 0;
    if (fd === null) {
      // Sealed and no longer local: from the pack store (a ranged GET).
      try {
        buf = this.sealed!.readRange(loc.pack, loc.offset, buf.length);
      } catch (err) {
        if (err instanceof ArchiveError) throw new ArchiveError(err.code, `${what}: ${err.message.slice(err.code.length + 2)}`);
        throw err;
      }
      got = buf.length;
      buf = got === BLOCK_HEADER_BYTES + loc.length ? buf : Buffer.concat([buf, Buffer.alloc(BLOCK_HEADER_BYTES + loc.length - got)]);
    }
    while (fd !== null && got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, loc.offset + got);
      if (n === 0) break;
      got += n;
    }
    const where = fd === null ? ` in ${this.sealed!.name}` : '';
    const corrupt = (why: string): ArchiveError => new ArchiveError('ECORRUPT', `${what}: ${why} (pack ${packName(loc.pack)}${where} at ${loc.offset})`);
    if (got < buf.length) throw corrupt('pack ends inside the block');
    if (buf.readUInt32LE(0) !== PACK_MAGIC || buf.readUInt32LE(4) !== loc.length || !buf.subarray(8, 40).equals(digest)) throw corrupt('block header does not match');
    const data = buf.subarray(BLOCK_HEADER_BYTES);
    if (hash && !sha256(data).equals(digest)) throw corrupt('sha256 mismatch');
    return data;
  }

  /**
   * Blocks read as `read(..., hash false)` reads them, each straight into
   * `out` at its `at`: blocks that follow one another in a local pack come
   * with one preadv (headers aside, data into `out`), so a run of a file's
   * blocks costs one system call and no copy. A block whose header does not
   * match (or a short read) is read again alone, which throws as `read` does.
   */
  readInto(items: readonly { loc: BlockLocation; digest: Buffer; what: string; at: number }[], out: Buffer): void {
    this.writeStaged(); // a block appended in this transaction may be read back
    let i = 0;
    while (i < items.length) {
      const first = items[i]!;
      const fd = this.readFd(first.loc.pack, first.what);
      let j = i + 1;
      if (fd !== null) {
        while (j < items.length && j - i < MAX_RUN_IOV / 2) {
          const prev = items[j - 1]!.loc;
          const next = items[j]!.loc;
          if (next.pack !== prev.pack || next.offset !== prev.offset + BLOCK_HEADER_BYTES + prev.length) break;
          j++;
        }
      }
      const run = items.slice(i, j);
      i = j;
      if (fd === null) {
        for (const b of run) this.read(b.loc, b.digest, b.what, false).copy(out, b.at);
        continue;
      }
      const headers = Buffer.allocUnsafe(BLOCK_HEADER_BYTES * run.length);
      const iov: Buffer[] = [];
      let want = 0;
      run.forEach((b, k) => {
        iov.push(headers.subarray(k * BLOCK_HEADER_BYTES, (k + 1) * BLOCK_HEADER_BYTES), out.subarray(b.at, b.at + b.loc.length));
        want += BLOCK_HEADER_BYTES + b.loc.length;
      });
      const got = fs.readvSync(fd, iov, first.loc.offset);
      run.forEach((b, k) => {
        const h = headers.subarray(k * BLOCK_HEADER_BYTES, (k + 1) * BLOCK_HEADER_BYTES);
        const ok = got === want && h.readUInt32LE(0) === PACK_MAGIC && h.readUInt32LE(4) === b.loc.length && h.subarray(8, 40).equals(b.digest);
        // Short or not this block: read alone, which says what is wrong (or reads the rest of a short read).
        if (!ok) this.read(b.loc, b.digest, b.what, false).copy(out, b.at);
      });
    }
  }

  /** The pack's size, local or sealed in the pack store; null when it is nowhere. */
  size(pack: number): number | null {
    try {
      return fs.statSync(join(this.dir, packName(pack))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return this.sealed?.size(pack) ?? null;
  }

  /** Removes a pack (garbage collection), wherever it is. */
  remove(pack: number): void {
    const fd = this.readFds.get(pack);
    if (fd !== undefined) {
      this.readFds.delete(pack);
      fs.closeSync(fd);
    }
    fs.rmSync(join(this.dir, packName(pack)), { force: true });
    this.sealed?.delete(pack);
  }

  close(): void {
    this.abort();
    for (const fd of this.readFds.values()) fs.closeSync(fd);
    this.readFds.clear();
    this.sealed?.close();
  }

  private openForAppend(pack: number): WriteState {
    const path = join(this.dir, packName(pack));
    let created = false;
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
      created = true;
    }
    return { pack, fd, position: fs.fstatSync(fd).size, appended: false, created };
  }

  private writeStaged(): void {
    if (this.staged.length === 0 || this.writing === null) return;
    writeFully(this.writing.fd, this.staged.take(), this.stagedAt);
  }

  private finishPack(w: { fd: number; appended: boolean; created: boolean }): void {
    this.writeStaged();
    if (w.appended) fs.fsyncSync(w.fd);
    if (w.created) fsyncDir(this.dir);
  }

  /** A descriptor of the local pack; null when it is only in the pack store. */
  private readFd(pack: number, what: string): number | null {
    let fd = this.readFds.get(pack);
    if (fd !== undefined) {
      this.readFds.delete(pack);
      this.readFds.set(pack, fd);
      return fd;
    }
    try {
      fd = fs.openSync(join(this.dir, packName(pack)), fs.constants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        if (this.sealed !== undefined) return null;
        throw new ArchiveError('ECORRUPT', `${what}: pack ${packName(pack)} is missing`);
      }
      throw err;
    }
    this.readFds.set(pack, fd);
    if (this.readFds.size > MAX_READ_FDS) {
      const [oldest, oldFd] = this.readFds.entries().next().value as [number, number];
      this.readFds.delete(oldest);
      fs.closeSync(oldFd);
    }
    return fd;
  }
}

/** Bytes gathered for one write: copies of what was appended (the caller may reuse its buffers). */
class Staged {
  private buf: Buffer | null = null; // allocated on the first append
  length = 0;

  push(...parts: Buffer[]): void {
    const buf = (this.buf ??= Buffer.allocUnsafe(STAGE_BYTES));
    for (const p of parts) this.length += p.copy(buf, this.length);
  }

  /** The gathered bytes (valid until the next push), and empties it. */
  take(): Buffer {
    const out = this.buf === null ? Buffer.alloc(0) : this.buf.subarray(0, this.length);
    this.length = 0;
    return out;
  }
}

function writeFully(fd: number, buf: Buffer, position: number): void {
  for (let done = 0; done < buf.length;) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
