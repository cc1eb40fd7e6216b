// The one errno mapping table of strata. Every error that leaves the filesystem
// core towards a FUSE request goes through `errnoOf`: a known POSIX code maps to
// its negative errno, anything else becomes EIO and is reported to `onUnknown`.
import { constants } from 'node:os';

const ERRNO: Readonly<Record<string, number>> = constants.errno;

/** An error raised by strata itself, carrying a POSIX code such as 'ENOENT'. */
export class FsError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(code: keyof typeof constants.errno, message?: string) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'FsError';
    this.code = code;
    this.errno = -(ERRNO[code] ?? ERRNO.EIO!);
  }
}

/** The disk has no room (ENOSPC, or the quota's EDQUOT). */
export function isNoRoomError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * EIO because the archive did not deliver what a restore needed (it did not
 * answer in time, or answered with data it cannot vouch for): not the local
 * disk's failure, so it raises no StrataStoreIOError.
 */
export class ArchiveDataError extends FsError {
  constructor(message: string) {
    super('EIO', message);
  }
}

export const EIO = -(ERRNO.EIO ?? 5);

/** Negative errno for a POSIX code name, or undefined when the name is unknown. */
export function errnoForCode(code: string): number | undefined {
  const n = ERRNO[code];
  return n === undefined ? undefined : -n;
}

export interface UnknownErrorSink {
  (err: unknown): void;
}

/**
 * Maps any thrown value to a negative errno. Errors with a known `.code`
 * (Node's system errors, the native addon's errors, FsError) keep it; the rest
 * become EIO and are handed to `onUnknown` for logging.
 */
export function errnoOf(err: unknown, onUnknown?: UnknownErrorSink): number {
  if (err !== null && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') {
      const n = errnoForCode(code);
      if (n !== undefined) return n;
    }
  }
  onUnknown?.(err);
  return EIO;
}

/** True for errors that are a normal answer rather than a fault worth logging. */
export function isExpectedError(errno: number): boolean {
  return errno === -(ERRNO.ENOENT ?? 2) || errno === -(ERRNO.ENODATA ?? 61) || errno === -(ERRNO.EEXIST ?? 17) ||
    errno === -(ERRNO.ENOTEMPTY ?? 39) || errno === -(ERRNO.EACCES ?? 13) || errno === -(ERRNO.EPERM ?? 1) ||
    errno === -(ERRNO.ENOTDIR ?? 20) || errno === -(ERRNO.EISDIR ?? 21) || errno === -(ERRNO.ERANGE ?? 34) ||
    errno === -(ERRNO.ENAMETOOLONG ?? 36) || errno === -(ERRNO.EINVAL ?? 22) || errno === -(ERRNO.EXDEV ?? 18) ||
    errno === -(ERRNO.ELOOP ?? 40) || errno === -(ERRNO.EOPNOTSUPP ?? 95);
}
