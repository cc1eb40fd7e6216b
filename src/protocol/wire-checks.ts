// The archive protocol's argument checks and error transport, shared by every
// side that speaks it: the archive's worker and HTTP/2 server check what they
// receive, the clients check what they send and re-create the errors they get.
import { MAX_RAW_BLOCKS, badVolumeNameReason } from './images.js';
import { badNameReason, isObjectId } from './records.js';
import { ArchiveError, type ArchiveErrorCode } from './archive-api.js';

/** Bounds every transport enforces, whoever the caller is. */
export const LIMITS = {
  /** One ship batch (concatenated frames). */
  maxShipBytes: 64 * 1024 * 1024,
  /** One readRange. */
  maxReadBytes: 16 * 1024 * 1024,
  /** Deepest tier a tier stream may ask for. */
  maxDepth: 64,
} as const;

export interface WireError { code: ArchiveErrorCode; message: string }

const bad = (message: string): ArchiveError => new ArchiveError('EBADREQ', message);

export function checkVolume(v: unknown): string {
  const why = badVolumeNameReason(v);
  if (why !== null) throw bad(why);
  return v as string;
}

export function checkId(id: unknown): string {
  if (!isObjectId(id)) throw bad(`bad object id ${JSON.stringify(id)?.slice(0, 80)} (32 lowercase hex digits)`);
  return id;
}

/** A directory entry name, or undefined (absent). */
export function checkOptionalName(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  const why = badNameReason(v);
  if (why !== null) throw bad(why);
  return v as string;
}

function checkUint(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw bad(`${what} must be an integer 0..${max}`);
  return v;
}

export const checkEpoch = (v: unknown): number => checkUint(v, 'epoch', Number.MAX_SAFE_INTEGER);
export const checkDepth = (v: unknown): number => checkUint(v, 'depth', LIMITS.maxDepth);
export const checkOffset = (v: unknown): number => checkUint(v, 'offset', Number.MAX_SAFE_INTEGER);
export const checkLength = (v: unknown): number => checkUint(v, 'length', LIMITS.maxReadBytes);
export const checkBlockCount = (v: unknown): number => {
  const n = checkUint(v, 'block count', MAX_RAW_BLOCKS);
  if (n === 0) throw bad('block count must be at least 1');
  return n;
};

/** Why a ship body cannot be a batch before decoding it, or null. */
export function shipSizeReason(bytes: number): string | null {
  if (bytes === 0) return 'empty batch';
  if (bytes > LIMITS.maxShipBytes) return `batch of ${bytes} bytes exceeds ${LIMITS.maxShipBytes}`;
  return null;
}

/** The message an unexpected error should carry across a thread or the network. */
export function toWireError(err: unknown): WireError {
  if (err instanceof Error && err.name === 'ArchiveError') return { code: (err as ArchiveError).code, message: stripCode(err as ArchiveError) };
  if (err instanceof Error && (err as { code?: unknown }).code === 'EBADRECORD') return { code: 'EBADREQ', message: err.message };
  return { code: 'EARCHIVE', message: err instanceof Error ? err.message : String(err) };
}

/** ArchiveError prefixes its message with the code; the wire carries the bare message. */
function stripCode(err: ArchiveError): string {
  const prefix = `${err.code}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

const CODES: ReadonlySet<string> = new Set<ArchiveErrorCode>(['ENOVOLUME', 'EFENCED', 'EGAP', 'EAUTH', 'EBADREQ', 'ENOOBJECT', 'ECORRUPT', 'EUNAVAILABLE', 'ENOSNAPSHOT', 'ENOTARGET', 'EHELD', 'EARCHIVE']);

export function isArchiveErrorCode(v: unknown): v is ArchiveErrorCode {
  return typeof v === 'string' && CODES.has(v);
}

/** Re-creates an error that crossed a thread or the network. */
export function fromWireError(e: unknown): ArchiveError {
  const x = (e ?? {}) as { code?: unknown; message?: unknown };
  const code = isArchiveErrorCode(x.code) ? x.code : 'EARCHIVE';
  return new ArchiveError(code, typeof x.message === 'string' ? x.message : 'unknown archive error');
}
