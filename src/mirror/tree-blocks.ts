// Block-level comparison of a local file with the archive's copy of it: the
// sha256 of each 64 KiB block of the local file against the archive's
// FileBlocks. A local block of zeros (a hole or written zeros) equals an
// archive hole or an archive block of zeros, so sparse files compare without
// shipping their holes. Only the local file's data extents are read (lseek
// SEEK_DATA/SEEK_HOLE), so a huge sparse file costs what its data costs.
import { createHash } from 'node:crypto';
import * as native from '../native/index.js';
import type { StoreDir } from '../store/store-dir.js';
import { closeQuietly, readAt } from '../store/fd-io.js';
import { BLOCK_SIZE } from '../protocol/records.js';
import type { FileBlocks } from '../protocol/images.js';

const ZERO = Buffer.alloc(BLOCK_SIZE);
const zeroDigests = new Map<number, string>();

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The digest of `length` zero bytes (the archive may store written zeros as a block). */
export function zeroDigest(length: number): string {
  let d = zeroDigests.get(length);
  if (d === undefined) {
    d = sha256Hex(ZERO.subarray(0, length));
    zeroDigests.set(length, d);
  }
  return d;
}

import { isZero } from '../protocol/records.js';
export { isZero };

/**
 * Whether the archive's block holds the local bytes. An archive block shorter
 * than the local one (the archive's old last block, before the file grew)
 * holds them when it matches their start and the rest is zeros: extending a
 * file on the archive fills with zeros, as it does locally.
 */
function sameBlock(data: Buffer, archive: { digest: string; length: number }): boolean {
  if (archive.length === data.length) return archive.digest === sha256Hex(data);
  return archive.length < data.length && isZero(data.subarray(archive.length)) && archive.digest === sha256Hex(data.subarray(0, archive.length));
}

/** A block where the local file and the archive differ. */
export interface DifferingBlock {
  index: number;
  /** Offset of the block in the file. */
  offset: number;
  /** The local bytes (the block's length within the local size); zeros when the local block is zero. */
  data: Buffer;
}

/**
 * The blocks of the local file (`size` bytes, from its stat) that differ from
 * `archive` (null: the archive has no data for it, e.g. a file this run
 * creates), in increasing order. Blocks that are zero locally differ only
 * when the archive holds non-zero data there. Blocks at or beyond the local
 * size are not looked at: a setattr with the local size cuts them.
 * Nor are the blocks `skip` names.
 */
export async function* differingBlocks(
  dir: StoreDir,
  rel: string,
  size: number,
  archive: FileBlocks | null,
  /** Blocks to leave out (a partly restored file's blocks that are not local yet). */
  skip: ((index: number) => boolean) | null = null,
): AsyncGenerator<DifferingBlock> {
  const nblocks = Math.ceil(size / BLOCK_SIZE);
  const lengthOf = (i: number): number => Math.min(BLOCK_SIZE, size - i * BLOCK_SIZE);
  // Archive blocks inside the local size, in order; the ones with non-zero data
  // that the local walk does not meet are local zeros that must be written.
  const remote = (archive?.blocks ?? [])
    .filter((b) => b.index < nblocks)
    .sort((a, b) => a.index - b.index);
  let r = 0;
  function* zerosBefore(index: number): Generator<DifferingBlock> {
    for (; r < remote.length && remote[r]!.index < index; r++) {
      const b = remote[r]!;
      if (skip?.(b.index)) continue;
      const len = lengthOf(b.index);
      if (b.length !== len || b.digest !== zeroDigest(len)) yield { index: b.index, offset: b.index * BLOCK_SIZE, data: Buffer.alloc(len) };
    }
  }
  if (size > 0) {
    // O_NOATIME where allowed: a verify must leave the store as it found it.
    const fd = await dir.openQuiet(rel);
    try {
      const extents = await native.listExtents(fd);
      let next = 0; // first block index not read yet
      for (const ext of extents) {
        const first = Math.max(next, Math.floor(ext.offset / BLOCK_SIZE));
        const end = Math.min(nblocks, Math.ceil((ext.offset + ext.length) / BLOCK_SIZE));
        for (let i = first; i < end; i++) {
          const len = lengthOf(i);
          // A file shorter than its stat said (it changed under us) reads as zeros.
          const data = await readAt(fd, i * BLOCK_SIZE, len);
          yield* zerosBefore(i);
          const mine = r < remote.length && remote[r]!.index === i ? remote[r++]! : null;
          if (skip?.(i)) continue;
          if (isZero(data)) {
            if (mine !== null && (mine.length !== len || mine.digest !== zeroDigest(len))) yield { index: i, offset: i * BLOCK_SIZE, data };
          } else if (mine === null || !sameBlock(data, mine)) {
            yield { index: i, offset: i * BLOCK_SIZE, data };
          }
        }
        next = Math.max(next, end);
      }
    } finally {
      await closeQuietly(fd);
    }
  }
  yield* zerosBefore(nblocks);
}

/**
 * differingBlocks(dir, rel, size, null) of a small file (one read: at most 64
 * MiB, see native.readFileQuiet), all at once: its non-zero blocks within
 * its data extents, in order.
 */
export async function localBlocksWhole(dir: StoreDir, rel: string, size: number): Promise<DifferingBlock[]> {
  if (size === 0) return [];
  const q = await dir.readFileQuiet(rel, size);
  // A file shorter than its stat said (it changed under us) reads as zeros.
  const data = q.data.length === size ? q.data : Buffer.concat([q.data, Buffer.alloc(size - q.data.length)]);
  const nblocks = Math.ceil(size / BLOCK_SIZE);
  const out: DifferingBlock[] = [];
  let next = 0;
  for (const ext of q.extents) {
    const first = Math.max(next, Math.floor(ext.offset / BLOCK_SIZE));
    const end = Math.min(nblocks, Math.ceil((ext.offset + ext.length) / BLOCK_SIZE));
    for (let i = first; i < end; i++) {
      const block = data.subarray(i * BLOCK_SIZE, Math.min(size, (i + 1) * BLOCK_SIZE));
      if (!isZero(block)) out.push({ index: i, offset: i * BLOCK_SIZE, data: block });
    }
    next = Math.max(next, end);
  }
  return out;
}
