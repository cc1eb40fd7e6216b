// The messages between a WorkerArchiveClient (calling thread) and the archive
// worker (worker.ts). The argument checks both sides make live in
// src/protocol/wire-checks.ts (the network client and server share them).
import type { DirImage } from '../protocol/images.js';
import type { WireError } from '../protocol/wire-checks.js';

/** Tier images travel in chunks of at most this many images or entries, one chunk per pull. */
export const TIER_CHUNK_IMAGES = 64;
export const TIER_CHUNK_ENTRIES = 4096;

export type UnaryMethod = 'open' | 'volumeState' | 'createVolume' | 'ship' | 'fence' | 'dirImage' | 'deepImages' | 'readBlocks' | 'readRange' | 'fileBlocks' | 'listVolumes';

export type ToWorker =
  | { type: 'call'; id: number; method: UnaryMethod; args: unknown[]; bytes?: ArrayBuffer }
  /** Starts a tier stream (no answer until the first pull). */
  | { type: 'stream'; id: number; args: unknown[] }
  /** Asks for the next chunk of a stream. */
  | { type: 'pull'; id: number }
  /** The consumer is gone: drop the stream. */
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'result'; id: number; result: unknown; bytes?: ArrayBuffer }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'chunk'; id: number; images: DirImage[]; done: boolean }
  | { type: 'closed' };

/** Copies `buf` into an ArrayBuffer of its own, so it can be transferred without detaching anyone else's memory. */
export function ownArrayBuffer(buf: Uint8Array): ArrayBuffer {
  const ab = new ArrayBuffer(buf.byteLength);
  new Uint8Array(ab).set(buf);
  return ab;
}
