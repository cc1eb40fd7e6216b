// The records that carry every change from a primary to its archive, and the
// one binary framing they use both in the primary's journal segments and on
// the wire. Shared by the primary (journal, shipper) and the archive (store,
// server); it depends on nothing else in strata.
//
// A frame:   u32 bodyLength | u32 crc32(body) | body            (little endian)
// A body:    u64 seq | u8 op | u32 metaLength | meta (JSON, UTF-8) | payload
// `payload` is the written bytes of a `write` and the value of a `setxattr`;
// everything else lives in `meta`.
import { nameByteLength } from './names.js';
import { crc32 } from 'node:zlib';

/** A stable object id: 128 bits as 32 lowercase hex digits. */
export type ObjectId = string;

/** The root directory's fixed id. */
export const ROOT_ID: ObjectId = '00000000000000000000000000000001';

/** File data is addressed in blocks of this size (the last block may be short). */
export const BLOCK_SIZE = 64 * 1024;

/** Bounds every reader enforces (journal recovery, archive server). */
export const MAX_NAME_BYTES = 255;
export const MAX_TARGET_BYTES = 4095;
export const MAX_XATTR_NAME_BYTES = 255;
export const MAX_XATTR_VALUE_BYTES = 64 * 1024;
export const MAX_META_BYTES = 16 * 1024;
/** Largest `write` payload in one record (writes larger than this are split). */
export const MAX_WRITE_BYTES = 1024 * 1024;
/**
 * The largest file strata keeps, in bytes (1 PiB): a write record past it is
 * malformed. The FUSE bridge refuses writes, fallocates and sizes past it with
 * EFBIG (its `constants.MAX_FILE_BYTES`, checked equal by test/unit/bridge-limits).
 */
export const MAX_FILE_BYTES = 2 ** 50;
export const MAX_BODY_BYTES = 13 + MAX_META_BYTES + MAX_WRITE_BYTES;
export const FRAME_HEADER_BYTES = 8;

/** Seconds and nanoseconds since the epoch. */
export type Time = readonly [sec: number, nsec: number];

/** What the archive keeps of an object's inode (nlink is derived from entries). */
export interface Attrs {
  /** Full st_mode: type bits and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atime: Time;
  mtime: Time;
  rdev: number;
}

export type Record =
  | { op: 'create'; seq: number; parent: ObjectId; name: string; id: ObjectId; attrs: Attrs; target?: string; parentMtime: Time }
  | { op: 'link'; seq: number; parent: ObjectId; name: string; id: ObjectId; parentMtime: Time }
  | { op: 'unlink'; seq: number; parent: ObjectId; name: string; parentMtime: Time }
  | { op: 'rmdir'; seq: number; parent: ObjectId; name: string; parentMtime: Time }
  | { op: 'rename'; seq: number; parent: ObjectId; name: string; newParent: ObjectId; newName: string; parentMtime: Time; newParentMtime: Time }
  /** renameat2(RENAME_EXCHANGE): the objects of the two names swap, atomically (both names exist). */
  | { op: 'exchange'; seq: number; parent: ObjectId; name: string; newParent: ObjectId; newName: string; parentMtime: Time; newParentMtime: Time }
  /** Sets every attribute; a size change truncates or extends (with a hole) the data. */
  | { op: 'setattr'; seq: number; id: ObjectId; attrs: Attrs }
  | { op: 'write'; seq: number; id: ObjectId; offset: number; data: Buffer }
  | { op: 'setxattr'; seq: number; id: ObjectId; name: string; value: Buffer }
  | { op: 'removexattr'; seq: number; id: ObjectId; name: string };

export type RecordOp = Record['op'];
/** A record before the journal gives it its sequence number. */
export type NewRecord = Record extends infer R ? (R extends Record ? Omit<R, 'seq'> : never) : never;

const OP_CODES: Readonly<{ [K in RecordOp]: number }> = {
  create: 1, link: 2, unlink: 3, rmdir: 4, rename: 5, setattr: 6, write: 7, setxattr: 8, removexattr: 9, exchange: 10,
};
const OP_BY_CODE: readonly (RecordOp | undefined)[] = (() => {
  const out: (RecordOp | undefined)[] = [];
  for (const [op, code] of Object.entries(OP_CODES)) out[code] = op as RecordOp;
  return out;
})();

/** A record that cannot be decoded or breaks a bound; `.code` is 'EBADRECORD'. */
export class RecordError extends Error {
  readonly code = 'EBADRECORD';
  constructor(message: string) {
    super(message);
    this.name = 'RecordError';
  }
}

const ID_RE = /^[0-9a-f]{32}$/;

export function isObjectId(v: unknown): v is ObjectId {
  return typeof v === 'string' && ID_RE.test(v);
}

/**
 * Why `name` cannot be one directory entry, or null when it can: empty, '.',
 * '..', containing '/' or NUL, or longer than MAX_NAME_BYTES.
 */
export function badNameReason(name: unknown): string | null {
  if (typeof name !== 'string') return 'name is not a string';
  if (name.length === 0) return 'empty name';
  if (name === '.' || name === '..') return `name "${name}" is not allowed`;
  if (name.includes('/')) return 'name contains "/"';
  if (name.includes('\0')) return 'name contains NUL';
  if (nameByteLength(name) > MAX_NAME_BYTES) return `name longer than ${MAX_NAME_BYTES} bytes`;
  return null;
}

/** Encodes one record as a frame (header + body). */
export function encodeRecord(rec: Record): Buffer {
  const [head, payload] = encodeRecordParts(rec);
  if (payload === null || payload.length === 0) return head;
  return Buffer.concat([head, payload], head.length + payload.length);
}

/**
 * Encodes one record as the two parts of its frame without copying its
 * payload: `head` (frame header, seq, op, meta) and the payload itself (the
 * `data` of a write, the `value` of a setxattr; null for other ops). The
 * frame is `head` followed by `payload`; the checksum in `head` covers both
 * (CRC-32 continued over the payload). The caller must not change the
 * payload's bytes until the frame has been written wherever it goes.
 */
export function encodeRecordParts(rec: Record): [head: Buffer, payload: Buffer | null] {
  const { seq, op } = rec;
  let payload: Buffer | undefined;
  let meta: object;
  if (rec.op === 'write') {
    const { data, seq: _s, op: _o, ...rest } = rec;
    payload = data;
    meta = rest;
  } else if (rec.op === 'setxattr') {
    const { value, seq: _s, op: _o, ...rest } = rec;
    payload = value;
    meta = rest;
  } else {
    const { seq: _s, op: _o, ...rest } = rec;
    meta = rest;
  }
  const metaText = JSON.stringify(meta);
  const metaLen = Buffer.byteLength(metaText);
  const bodyLen = 13 + metaLen + (payload?.length ?? 0);
  const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 13 + metaLen);
  head.writeUInt32LE(bodyLen, 0);
  head.writeBigUInt64LE(BigInt(seq), 8);
  head.writeUInt8(OP_CODES[op], 16);
  head.writeUInt32LE(metaLen, 17);
  head.write(metaText, 21, 'utf8');
  let crc = crc32(head.subarray(FRAME_HEADER_BYTES));
  if (payload !== undefined && payload.length > 0) crc = crc32(payload, crc);
  head.writeUInt32LE(crc, 4);
  return [head, payload ?? null];
}

/** Result of reading one frame from a buffer. */
export type FrameRead =
  | { kind: 'record'; record: Record; bytes: number }
  /** The buffer ends inside a frame (a torn tail, or more bytes to come). */
  | { kind: 'incomplete' }
  /** The frame is damaged: a checksum mismatch or an impossible length. */
  | { kind: 'corrupt'; reason: string };

/**
 * Reads the frame at `offset`. Never throws for damaged input: a torn or
 * corrupt frame is reported so the caller can cut a journal tail or reject a
 * request. A frame that checks out but breaks a bound is 'corrupt' too.
 */
export function readFrame(buf: Buffer, offset = 0): FrameRead {
  if (buf.length - offset < FRAME_HEADER_BYTES) return { kind: 'incomplete' };
  const bodyLen = buf.readUInt32LE(offset);
  if (bodyLen < 13 || bodyLen > MAX_BODY_BYTES) return { kind: 'corrupt', reason: `frame length ${bodyLen} out of bounds` };
  if (buf.length - offset - FRAME_HEADER_BYTES < bodyLen) return { kind: 'incomplete' };
  const body = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + bodyLen);
  if (crc32(body) !== buf.readUInt32LE(offset + 4)) return { kind: 'corrupt', reason: 'checksum mismatch' };
  try {
    return { kind: 'record', record: decodeBody(body), bytes: FRAME_HEADER_BYTES + bodyLen };
  } catch (err) {
    return { kind: 'corrupt', reason: (err as Error).message };
  }
}

/** Every record in a buffer of whole frames; throws RecordError on any damage. */
export function decodeFrames(buf: Buffer): Record[] {
  const out: Record[] = [];
  let off = 0;
  while (off < buf.length) {
    const r = readFrame(buf, off);
    if (r.kind === 'incomplete') throw new RecordError(`truncated frame at byte ${off}`);
    if (r.kind === 'corrupt') throw new RecordError(`bad frame at byte ${off}: ${r.reason}`);
    out.push(r.record);
    off += r.bytes;
  }
  return out;
}

function decodeBody(body: Buffer): Record {
  const seqBig = body.readBigUInt64LE(0);
  if (seqBig > BigInt(Number.MAX_SAFE_INTEGER) || seqBig === 0n) throw new RecordError('sequence number out of range');
  const seq = Number(seqBig);
  const op = OP_BY_CODE[body.readUInt8(8)];
  if (op === undefined) throw new RecordError(`unknown op code ${body.readUInt8(8)}`);
  const metaLen = body.readUInt32LE(9);
  if (metaLen > MAX_META_BYTES || 13 + metaLen > body.length) throw new RecordError('meta length out of bounds');
  let meta: { [k: string]: unknown };
  try {
    meta = JSON.parse(body.subarray(13, 13 + metaLen).toString('utf8')) as { [k: string]: unknown };
  } catch {
    throw new RecordError('meta is not JSON');
  }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new RecordError('meta is not an object');
  const payload = body.subarray(13 + metaLen);
  // The parsed object itself becomes the record (a copy per record costs more than the parse).
  const rec = meta;
  rec.seq = seq;
  rec.op = op;
  if (op === 'write') rec.data = payload; // a view: the frame buffer stays alive as long as the record
  else if (op === 'setxattr') rec.value = payload;
  else if (payload.length !== 0) throw new RecordError(`${op} carries an unexpected payload`);
  const reason = invalidRecordReason(rec);
  if (reason !== null) throw new RecordError(`${op} record ${seq}: ${reason}`);
  return rec as unknown as Record;
}

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isTime(v: unknown): v is Time {
  return Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && isUint(v[1]) && (v[1] as number) < 1e9;
}

function attrsReason(a: unknown): string | null {
  if (a === null || typeof a !== 'object') return 'attrs missing';
  const x = a as { [k: string]: unknown };
  for (const k of ['mode', 'uid', 'gid', 'size', 'rdev'] as const) if (!isUint(x[k])) return `attrs.${k} is not an unsigned integer`;
  if (!isTime(x.atime) || !isTime(x.mtime)) return 'attrs times are not [sec, nsec]';
  return null;
}

/** Why a decoded record is malformed, or null when it is well formed. */
export function invalidRecordReason(r: { [k: string]: unknown }): string | null {
  if (!isUint(r.seq) || r.seq === 0) return 'bad seq';
  const idOk = (k: string): string | null => (isObjectId(r[k]) ? null : `${k} is not an object id`);
  const nameOk = (k: string): string | null => {
    const why = badNameReason(r[k]);
    return why === null ? null : `${k}: ${why}`;
  };
  const timeOk = (k: string): string | null => (isTime(r[k]) ? null : `${k} is not [sec, nsec]`);
  const first = (...checks: (string | null)[]): string | null => checks.find((c) => c !== null) ?? null;
  switch (r.op) {
    case 'create': {
      const base = first(idOk('parent'), nameOk('name'), idOk('id'), attrsReason(r.attrs), timeOk('parentMtime'));
      if (base) return base;
      if (r.target !== undefined && (typeof r.target !== 'string' || nameByteLength(r.target) > MAX_TARGET_BYTES || r.target.length === 0)) return 'bad symlink target';
      return null;
    }
    case 'link':
      return first(idOk('parent'), nameOk('name'), idOk('id'), timeOk('parentMtime'));
    case 'unlink':
    case 'rmdir':
      return first(idOk('parent'), nameOk('name'), timeOk('parentMtime'));
    case 'rename':
    case 'exchange':
      return first(idOk('parent'), nameOk('name'), idOk('newParent'), nameOk('newName'), timeOk('parentMtime'), timeOk('newParentMtime'));
    case 'setattr':
      return first(idOk('id'), attrsReason(r.attrs));
    case 'write':
      if (!isUint(r.offset) || (r.offset as number) > MAX_FILE_BYTES) return 'bad offset';
      if (!Buffer.isBuffer(r.data) || r.data.length > MAX_WRITE_BYTES) return 'bad data';
      return idOk('id');
    case 'setxattr':
    case 'removexattr': {
      const base = idOk('id');
      if (base) return base;
      if (typeof r.name !== 'string' || r.name.length === 0 || nameByteLength(r.name) > MAX_XATTR_NAME_BYTES || r.name.includes('\0')) return 'bad xattr name';
      if (r.op === 'setxattr' && (!Buffer.isBuffer(r.value) || r.value.length > MAX_XATTR_VALUE_BYTES)) return 'bad xattr value';
      return null;
    }
    default:
      return 'unknown op';
  }
}

/** timeFromNs as `{ sec, nsec }` (the shape the native calls' times take). */
export function timeSpecFromNs(ns: bigint): { sec: number; nsec: number } {
  const [sec, nsec] = timeFromNs(ns);
  return { sec, nsec };
}

/** Converts a bigint nanosecond timestamp (fs.BigIntStats.*timeNs) to a Time. */
export function timeFromNs(ns: bigint): Time {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return [Number(sec), Number(nsec)];
}

/** The attributes of a bigint stat, as records carry them. */
export function attrsFromStat(st: { mode: bigint; uid: bigint; gid: bigint; size: bigint; rdev: bigint; atimeNs: bigint; mtimeNs: bigint }): Attrs {
  return {
    mode: Number(st.mode), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size), rdev: Number(st.rdev),
    atime: timeFromNs(st.atimeNs), mtime: timeFromNs(st.mtimeNs),
  };
}

/** The type of an object, from its mode. */
export type ObjectType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chardev' | 'blockdev' | 'socket' | 'unknown';

export const S_IFMT = 0o170000;

export function typeOfMode(mode: number | bigint): ObjectType {
  switch (Number(mode) & S_IFMT) {
    case 0o100000: return 'file';
    case 0o040000: return 'dir';
    case 0o120000: return 'symlink';
    case 0o010000: return 'fifo';
    case 0o020000: return 'chardev';
    case 0o060000: return 'blockdev';
    case 0o140000: return 'socket';
    default: return 'unknown';
  }
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

/** True when `data` (at most one block) is all zero bytes. */
export function isZero(data: Buffer): boolean {
  return data.length <= BLOCK_SIZE ? data.equals(ZERO_BLOCK.subarray(0, data.length)) : data.every((b) => b === 0);
}
