// A checkpoint's pre-image log: one append-only file in the copy store holding
// everything the checkpoint saved (attributes, directory listings, old block
// contents, identities). Appends are group-committed: every caller waiting for
// durability shares one write and one fdatasync with the others queued at the
// same time. Each frame carries a CRC-32 of its body, so a frame torn by a
// crash (written after the last fdatasync) is found and cut off when the log
// is opened; nothing the daemon ever waited for can be lost that way.
//
// Frame: u32 body length, u32 crc32(body), body = u8 type, u32 JSON length,
// JSON, data bytes.
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';

export const FRAME_HEADER = 8;
const BODY_PREFIX = 5;
/** Largest body replay accepts (a block plus generous metadata). */
const MAX_BODY = 16 * 1024 * 1024;

export interface Frame {
  type: number;
  json: unknown;
  /** Offset of the frame's data bytes in the log, and their length. */
  dataOffset: number;
  dataLength: number;
}

interface Pending {
  bufs: Buffer[];
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class CheckpointLog {
  private pending: Pending[] = [];
  private writing = false;
  private failure: Error | null = null;

  private constructor(readonly path: string, readonly fd: number, private size: number) {}

  /**
   * Opens (creating if missing) the log at `path`, calling `onFrame` for each
   * intact frame in order; a torn tail is cut off (and the cut made durable).
   */
  static async open(path: string, onFrame: (f: Frame) => void): Promise<CheckpointLog> {
    const fd = await new Promise<number>((resolve, reject) => fs.open(path, fs.constants.O_RDWR | fs.constants.O_CREAT | 0o2000000, 0o600, (err, f) => (err ? reject(err) : resolve(f))));
    try {
      const total = (await fstat(fd)).size;
      let pos = 0;
      const head = Buffer.alloc(FRAME_HEADER);
      while (pos + FRAME_HEADER <= total) {
        if ((await pread(fd, head, pos)) < FRAME_HEADER) break;
        const len = head.readUInt32LE(0);
        const sum = head.readUInt32LE(4);
        if (len < BODY_PREFIX || len > MAX_BODY || pos + FRAME_HEADER + len > total) break;
        const body = Buffer.allocUnsafe(len);
        if ((await pread(fd, body, pos + FRAME_HEADER)) < len || crc32(body) !== sum) break;
        const type = body.readUInt8(0);
        const jsonLen = body.readUInt32LE(1);
        if (BODY_PREFIX + jsonLen > len) break;
        const json: unknown = JSON.parse(body.toString('utf8', BODY_PREFIX, BODY_PREFIX + jsonLen));
        const dataOffset = pos + FRAME_HEADER + BODY_PREFIX + jsonLen;
        onFrame({ type, json, dataOffset, dataLength: len - BODY_PREFIX - jsonLen });
        pos += FRAME_HEADER + len;
      }
      if (pos < total) {
        await new Promise<void>((resolve, reject) => fs.ftruncate(fd, pos, (err) => (err ? reject(err) : resolve())));
        await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
      }
      return new CheckpointLog(path, fd, pos);
    } catch (err) {
      fs.close(fd, () => {});
      throw err;
    }
  }

  /** Bytes in the log (including frames not yet durable). */
  get bytes(): number {
    return this.size;
  }

  /**
   * Appends a frame; returns where its data bytes will be and a promise that
   * resolves once the frame is durable (rejects when it cannot be written: the
   * checkpoint is then broken and every later append fails too).
   */
  append(type: number, json: unknown, data?: Buffer): { dataOffset: number; durable: Promise<void> } {
    const j = Buffer.from(JSON.stringify(json), 'utf8');
    const dataLen = data?.length ?? 0;
    const bodyLen = BODY_PREFIX + j.length + dataLen;
    // The header and JSON in one small buffer; the data is written from the caller's buffer (no copy).
    const head = Buffer.allocUnsafe(FRAME_HEADER + BODY_PREFIX + j.length);
    head.writeUInt32LE(bodyLen, 0);
    head.writeUInt8(type, FRAME_HEADER);
    head.writeUInt32LE(j.length, FRAME_HEADER + 1);
    j.copy(head, FRAME_HEADER + BODY_PREFIX);
    const headSum = crc32(head.subarray(FRAME_HEADER));
    head.writeUInt32LE(data && dataLen > 0 ? crc32(data, headSum) : headSum, 4);
    const bufs = data && dataLen > 0 ? [head, data] : [head];
    const dataOffset = this.size + head.length;
    const bytes = head.length + dataLen;
    this.size += bytes;
    if (this.failure) return { dataOffset, durable: Promise.reject(this.failure) };
    const durable = new Promise<void>((resolve, reject) => this.pending.push({ bufs, bytes, resolve, reject }));
    if (!this.writing) void this.flush();
    return { dataOffset, durable };
  }

  /** Reads `length` bytes of the log at `offset`. */
  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    const n = await pread(this.fd, buf, offset);
    if (n !== length) throw Object.assign(new Error(`checkpoint log ${this.path}: short read at ${offset}`), { code: 'EIO' });
    return buf;
  }

  /** Resolves once everything appended so far is durable. */
  async sync(): Promise<void> {
    await this.append(0, null).durable;
  }

  async close(): Promise<void> {
    while (this.writing) await new Promise((r) => setTimeout(r, 2));
    await new Promise<void>((resolve) => fs.close(this.fd, () => resolve()));
  }

  private async flush(): Promise<void> {
    this.writing = true;
    // The frames of one batch follow each other in the file: one writev, one fdatasync.
    let offset = this.size - this.pending.reduce((n, p) => n + p.bytes, 0);
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      let bufs = batch.flatMap((p) => p.bufs);
      const total = batch.reduce((n, p) => n + p.bytes, 0);
      try {
        if (this.failure) throw this.failure;
        let done = 0;
        while (done < total) {
          const n = await new Promise<number>((resolve, reject) => fs.writev(this.fd, bufs, offset + done, (err, w) => (err ? reject(err) : resolve(w))));
          if (n <= 0) throw Object.assign(new Error(`checkpoint log ${this.path}: short write`), { code: 'EIO' });
          done += n;
          bufs = skipBytes(bufs, n);
        }
        await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
        for (const p of batch) p.resolve();
      } catch (err) {
        this.failure ??= err as Error;
        for (const p of batch) p.reject(this.failure);
      }
      offset += total;
    }
    this.writing = false;
  }
}

/** `bufs` without its first `n` bytes (after a partial write). */
function skipBytes(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i]!.length) n -= bufs[i++]!.length;
  const rest = bufs.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

function fstat(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, s) => (err ? reject(err) : resolve(s))));
}

function pread(fd: number, buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}
