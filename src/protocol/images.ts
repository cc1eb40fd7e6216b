// What an archive serves about a volume's tree: directory images (one
// directory's entries with full attributes), block digests of a file, and the
// state of a volume. Shared by the archive (store, server) and its clients.
import { createHash } from 'node:crypto';
import { BLOCK_SIZE, type Attrs, type ObjectId } from './records.js';

/** Entries and bytes in a directory's whole subtree (the directory itself excluded). */
export interface SubtreeTotals {
  entries: number;
  bytes: number;
}

/** One entry of a directory image. */
export interface EntryImage {
  name: string;
  id: ObjectId;
  attrs: Attrs;
  /** Number of names the object has (directories: 2 + subdirectories). */
  nlink: number;
  /** Symlink target. */
  target?: string;
  /** Extended attributes, values base64-encoded. */
  xattrs: { [name: string]: string };
  /** Subtree totals, for directories. */
  totals?: SubtreeTotals;
}

/** One directory's image. */
export interface DirImage {
  id: ObjectId;
  /** Depth below the root (root = 0), when served as part of a tier stream. */
  tier?: number;
  attrs: Attrs;
  nlink: number;
  xattrs: { [name: string]: string };
  totals: SubtreeTotals;
  entries: EntryImage[];
}

/** The data blocks of a file: absent indices are holes (read as zeros). */
export interface FileBlocks {
  id: ObjectId;
  size: number;
  blockSize: number;
  blocks: { index: number; digest: string; length: number }[];
}

/**
 * A file's stored blocks as the archive holds them (`ArchiveClient.readBlocks`):
 * sent without re-hashing, so the receiver MUST check each block's bytes
 * against its digest (`verifiedRange`) before it uses them.
 */
export interface RawBlocks {
  id: ObjectId;
  /** The file's size on the archive. */
  size: number;
  /** The stored blocks asked for, in order (holes left out); `data` holds their bytes one after the other. */
  blocks: { index: number; length: number; digest: string }[];
  data: Buffer;
}

/** At most this many blocks in one readBlocks (16 MiB). */
export const MAX_RAW_BLOCKS = 256;

/** RawBlocks on the wire: u32 LE length of the JSON of everything but `data`, that JSON, then `data`. */
export function encodeRawBlocks(r: RawBlocks): Buffer[] {
  const { data, ...meta } = r;
  const json = Buffer.from(JSON.stringify(meta));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(json.length, 0);
  return [head, json, data];
}

/** The inverse of encodeRawBlocks; throws on a malformed body (the caller makes it EARCHIVE). */
export function decodeRawBlocks(body: Buffer): RawBlocks {
  if (body.length < 4) throw new Error('raw blocks answer shorter than its header');
  const n = body.readUInt32LE(0);
  if (4 + n > body.length) throw new Error('raw blocks answer shorter than its JSON');
  const meta = JSON.parse(body.subarray(4, 4 + n).toString('utf8')) as Omit<RawBlocks, 'data'>;
  if (typeof meta !== 'object' || meta === null || !Array.isArray(meta.blocks) || typeof meta.size !== 'number') throw new Error('raw blocks answer without its block list');
  return { ...meta, data: body.subarray(4 + n) };
}

/** A received block whose bytes do not hash to its digest (or do not fit): the caller fails what needs it, never uses the bytes. */
export class BlockDigestError extends Error {
  readonly code = 'ECORRUPT';
  constructor(readonly id: ObjectId, readonly index: number, message: string) {
    super(message);
    this.name = 'BlockDigestError';
  }
}

/** sha256 of consecutive blocks of `data` (`lengths[i]` bytes each): 32 bytes per block, one after the other. */
export type BlockHasher = (data: Buffer, lengths: number[]) => Promise<Buffer>;

/**
 * Bytes [offset, offset + length) of the file from `raw` (the blocks asked
 * for), short at the archive's end of file, holes as zeros — after checking
 * every block's bytes against its sha256 digest. A mismatch throws
 * BlockDigestError and no byte is returned. Hashed on the calling thread
 * (~0.6 ms per MiB here) unless `hashBlocks` is given: the restore passes the
 * addon's sha256Blocks, one call on libuv's pool for all the blocks (webcrypto's
 * digest, one call and one copy per block, cost three times the CPU there).
 * Whole blocks from the range's first one without a hole (what a restore's
 * fetch usually gets) come back as a slice of raw.data, not a copy.
 */
export async function verifiedRange(raw: RawBlocks, offset: number, length: number, hashBlocks?: BlockHasher): Promise<Buffer> {
  const parts: { index: number; bytes: Buffer }[] = [];
  let pos = 0;
  for (const b of raw.blocks) {
    const bytes = raw.data.subarray(pos, pos + b.length);
    pos += b.length;
    if (bytes.length !== b.length || b.length > BLOCK_SIZE) throw new BlockDigestError(raw.id, b.index, `file ${raw.id} block ${b.index}: ${bytes.length} bytes received for ${b.length}`);
    parts.push({ index: b.index, bytes });
  }
  let digests: string[];
  if (hashBlocks !== undefined && parts.length > 0) {
    // The blocks are consecutive in raw.data (checked above): one call for all of them.
    const all = await hashBlocks(raw.data.subarray(0, pos), parts.map((p) => p.bytes.length));
    digests = parts.map((_, i) => all.toString('hex', 32 * i, 32 * (i + 1)));
  } else {
    digests = parts.map((p) => createHash('sha256').update(p.bytes).digest('hex'));
  }
  const end = Math.min(raw.size, offset + length);
  parts.forEach((p, i) => {
    const want = raw.blocks[i]!.digest;
    if (digests[i] !== want) throw new BlockDigestError(raw.id, p.index, `file ${raw.id} block ${p.index}: the bytes received do not match their sha256 digest ${want}`);
  });
  // Full blocks one after the other from the range's first one, no hole before its end: the range is a slice of what came.
  const first = Math.floor(offset / BLOCK_SIZE);
  const base = first * BLOCK_SIZE;
  const last = parts[parts.length - 1];
  if (end <= offset) return Buffer.alloc(0);
  if (last !== undefined && parts.every((p, i) => p.index === first + i && (p === last || p.bytes.length === BLOCK_SIZE)) && last.index * BLOCK_SIZE + last.bytes.length >= end) {
    return raw.data.subarray(offset - base, end - base);
  }
  const out = Buffer.alloc(end - offset);
  parts.forEach((p) => {
    const start = p.index * BLOCK_SIZE;
    const from = Math.max(offset, start);
    const to = Math.min(end, start + p.bytes.length);
    if (to > from) p.bytes.copy(out, from - offset, from - start, to - start);
  });
  return out;
}

export interface VolumeState {
  name: string;
  /** Bumped by a fence; a primary shipping with an older epoch is refused. */
  epoch: number;
  /** Highest sequence number applied (0 before any record). */
  appliedSeq: number;
  /** Root subtree totals. */
  totals: SubtreeTotals;
}

/** A volume name: 1–64 of [A-Za-z0-9._-], not starting with '.'. */
export function badVolumeNameReason(name: unknown): string | null {
  if (typeof name !== 'string') return 'volume name is not a string';
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)) return `bad volume name ${JSON.stringify(name).slice(0, 80)} (1-64 of A-Z a-z 0-9 . _ -, not starting with ".")`;
  return null;
}

/**
 * A deep request (`ArchiveClient.deepImages`) returns at most this many
 * images and entries (the directory asked for and its named subdirectory
 * always go, whatever their size).
 */
export const DEEP_MAX_IMAGES = 64;
export const DEEP_MAX_ENTRIES = 4096;

const isDirImageEntry = (e: EntryImage): boolean => (e.attrs.mode & 0o170000) === 0o040000;

/**
 * What a deep request answers, given the image of the directory asked for
 * (`first`) and a way to read another directory's image: `first`; then, when
 * `name` is one of its subdirectories, that subdirectory's image and the
 * directories below it (without a name: the directories below `first`),
 * breadth first, as long as they fit in DEEP_MAX_IMAGES images and
 * DEEP_MAX_ENTRIES entries. A program walking down a path from a pending
 * directory finds every image it needs in one answer while the subtree is
 * that small, and a name the images lack is absent (ENOENT) with nothing
 * more to ask.
 */
export function deepImageSelection(first: DirImage, name: string | undefined, imageOf: (id: ObjectId) => DirImage | null): DirImage[] {
  const out = [first];
  let entries = first.entries.length;
  let queue: ObjectId[];
  if (name !== undefined) {
    const e = first.entries.find((x) => x.name === name);
    if (e === undefined || !isDirImageEntry(e)) return out;
    const child = imageOf(e.id);
    if (child === null) return out;
    out.push(child);
    entries += child.entries.length;
    queue = child.entries.filter(isDirImageEntry).map((x) => x.id);
  } else {
    queue = first.entries.filter(isDirImageEntry).map((x) => x.id);
  }
  for (let i = 0; i < queue.length && out.length < DEEP_MAX_IMAGES && entries < DEEP_MAX_ENTRIES; i++) {
    const img = imageOf(queue[i]!);
    if (img === null) continue;
    if (entries + img.entries.length > DEEP_MAX_ENTRIES) break;
    out.push(img);
    entries += img.entries.length;
    for (const x of img.entries) if (isDirImageEntry(x)) queue.push(x.id);
  }
  return out;
}
