// The one interface through which a primary (and the operator tools) talk to
// an archive, whatever the transport: in-process for `file://DIR`, HTTP/2 for
// `strata://HOST:PORT` and `stratas://HOST:PORT`. Errors carry a `.code`.
import type { ObjectId } from './records.js';
import type { DirImage, FileBlocks, RawBlocks, VolumeState } from './images.js';
import type { FenceOptions, LeaseGrant, LeaseRelease, LeaseRenewal, VolumeLease } from './leases.js';

export type ArchiveErrorCode =
  /** The volume does not exist. */
  | 'ENOVOLUME'
  /** The shipper's epoch is older than the volume's: another primary took over. */
  | 'EFENCED'
  /** A batch does not continue the volume's sequence (records missing before it). */
  | 'EGAP'
  /** Wrong or missing token. */
  | 'EAUTH'
  /** A malformed request, frame or record; bounds broken. */
  | 'EBADREQ'
  /** An object id the volume does not have. */
  | 'ENOOBJECT'
  /** Stored data failed its digest check: never returned as data. */
  | 'ECORRUPT'
  /** The archive cannot be reached or did not answer in time. */
  | 'EUNAVAILABLE'
  /** A snapshot id the archive's catalog does not have. */
  | 'ENOSNAPSHOT'
  /** No storage target can take or serve what was asked (none healthy, or only the one to avoid). */
  | 'ENOTARGET'
  /** Another primary holds a live lease on the volume (the message names it). */
  | 'EHELD'
  /** Anything else on the archive's side. */
  | 'EARCHIVE';

export class ArchiveError extends Error {
  constructor(readonly code: ArchiveErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'ArchiveError';
  }
}

export function isArchiveError(err: unknown, code?: ArchiveErrorCode): err is ArchiveError {
  return err instanceof Error && err.name === 'ArchiveError' && (code === undefined || (err as ArchiveError).code === code);
}

export interface ShipResult {
  /** The volume's applied sequence number after the batch. */
  appliedSeq: number;
}

export interface ArchiveClient {
  /** The URL it was opened with. */
  readonly url: string;
  /** The volume's state, or null when it does not exist. */
  volumeState(volume: string): Promise<VolumeState | null>;
  /** Creates the volume (epoch 1, empty root) if it does not exist; returns its state. */
  createVolume(volume: string): Promise<VolumeState>;
  /**
   * Applies a batch of whole frames (records with consecutive sequence numbers,
   * see records.ts) in one transaction. Records at or below the applied
   * sequence are skipped, so a resend is harmless; a batch that starts beyond
   * appliedSeq + 1 is refused with EGAP; an epoch below the volume's with EFENCED.
   */
  ship(volume: string, epoch: number, frames: Buffer): Promise<ShipResult>;
  /**
   * Raises the volume's epoch by one (fencing older primaries); returns the new
   * state. A served archive refuses (EHELD) while another primary's lease is
   * live, unless `force`; the fencer (`holder`) holds the lease from then on.
   */
  fence(volume: string, opts?: FenceOptions): Promise<VolumeState>;
  /** Acquires or renews the lease (EHELD: another holder's lease is live; EFENCED: the epoch is old). */
  renewLease(volume: string, renewal: LeaseRenewal, timeoutMs?: number): Promise<LeaseGrant>;
  /** Gives the lease up after draining (refused unless the archive has applied `lastSeq`). */
  releaseLease(volume: string, release: LeaseRelease): Promise<VolumeLease>;
  /** Every volume with its lease (one volume when named). */
  leases(volume?: string): Promise<VolumeLease[]>;
  /** Operator: release a volume whose holder is gone (a takeover mount is released by draining it). EHELD while a primary's lease is live. */
  releaseVolume(volume: string): Promise<VolumeLease>;
  /** One directory's image; ENOOBJECT when the id is not a directory of the volume. */
  dirImage(volume: string, dirId: ObjectId): Promise<DirImage>;
  /**
   * In one request, the image of directory `dirId` (ENOOBJECT when it is not
   * one) and the images a program walking down from it will need: of its
   * subdirectory `name` and the directories below that (without a name:
   * below `dirId`), breadth first, within DEEP_MAX_IMAGES / DEEP_MAX_ENTRIES
   * (images.ts, deepImageSelection). The first image is `dirId`'s.
   */
  deepImages(volume: string, dirId: ObjectId, name?: string): Promise<DirImage[]>;
  /** Every directory image of tiers 0..depth (root = 0), parents before children, streamed. */
  tierImages(volume: string, depth: number): AsyncIterable<DirImage>;
  /** Up to `length` bytes of a file from `offset` (short at end of file; holes read as zeros). */
  readRange(volume: string, id: ObjectId, offset: number, length: number): Promise<Buffer>;
  /**
   * Blocks first..first+count-1 of a file as stored (holes left out) with
   * their digests, NOT verified by the archive: the caller checks every
   * block against its digest (`verifiedRange`) before using a byte.
   */
  readBlocks(volume: string, id: ObjectId, first: number, count: number): Promise<RawBlocks>;
  /** The block digests of a file. */
  fileBlocks(volume: string, id: ObjectId): Promise<FileBlocks>;
  close(): Promise<void>;
}

export interface ArchiveClientOptions {
  /** File holding the shared token (remote archives). */
  tokenFile?: string;
  /** CA certificate to trust for stratas:// (default: the system's). */
  tlsCa?: string;
  /** Per-request time limit, ms (default 10 000). */
  requestTimeoutMs?: number;
}
