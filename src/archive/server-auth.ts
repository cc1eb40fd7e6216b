// The archive server's shared-token check. The token file is read once at
// start; requests carry `authorization: Bearer <token>`. Both sides are hashed
// before timingSafeEqual so neither the token's bytes nor its length leak
// through timing.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http2';

export interface TokenCheck {
  /** Null when the request carries the token; otherwise why not (for the log, never containing the token). */
  reject(headers: IncomingHttpHeaders): string | null;
}

const digest = (s: string | Buffer): Buffer => createHash('sha256').update(s).digest();

/** Reads the token (trimmed); `warn` is told when the file is readable by others. */
export async function loadToken(file: string, warn: (msg: string) => void): Promise<TokenCheck> {
  const st = await stat(file);
  if ((st.mode & 0o077) !== 0) warn(`token file ${file} is readable or writable by group/others (mode ${(st.mode & 0o777).toString(8)}); use chmod 600`);
  const token = (await readFile(file, 'utf8')).trim();
  if (token.length === 0) throw new Error(`token file ${file} is empty`);
  const expected = digest(token);
  return {
    reject(headers) {
      const h = headers.authorization;
      if (h === undefined) return 'no authorization header';
      const m = /^Bearer +(\S+) *$/i.exec(h);
      if (!m) return 'authorization is not "Bearer <token>"';
      return timingSafeEqual(digest(m[1]!), expected) ? null : 'wrong token';
    },
  };
}
