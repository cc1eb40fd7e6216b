// HTTP/2 plumbing for the archive server: answering with JSON or an error,
// reading a request body under a bound while it streams in, waiting for a
// stream to drain, and the table from ArchiveError codes to HTTP statuses.
import { constants, type ServerHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { ArchiveError, type ArchiveErrorCode } from '../protocol/archive-api.js';

/** The wire protocol this server speaks; sent on every response, checked by clients. */
export const PROTOCOL_VERSION = '1';
export const PROTOCOL_HEADER = 'strata-protocol';

export const STATUS_OF: Readonly<{ [K in ArchiveErrorCode]: number }> = {
  ENOVOLUME: 404,
  ENOOBJECT: 404,
  ENOSNAPSHOT: 404,
  ENOTARGET: 409,
  EFENCED: 409,
  EGAP: 409,
  EHELD: 409,
  EAUTH: 401,
  EBADREQ: 400,
  ECORRUPT: 500,
  EUNAVAILABLE: 503,
  EARCHIVE: 500,
};

/** A request error that has its own status (404 route, 405, 413) but an ArchiveError code. */
export class HttpError extends ArchiveError {
  constructor(readonly status: number, code: ArchiveErrorCode, message: string) {
    super(code, message);
  }
}

function usable(stream: ServerHttp2Stream): boolean {
  return !stream.destroyed && !stream.closed;
}

export function sendJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (!usable(stream)) return;
  const data = Buffer.from(JSON.stringify(body));
  stream.respond({
    ':status': status,
    'content-type': 'application/json',
    'content-length': data.length,
    [PROTOCOL_HEADER]: PROTOCOL_VERSION,
  });
  stream.end(data);
}

export function sendBytes(stream: ServerHttp2Stream, data: Buffer, extra: OutgoingHttpHeaders = {}): void {
  if (!usable(stream)) return;
  stream.respond({
    ':status': 200,
    'content-type': 'application/octet-stream',
    'content-length': data.length,
    [PROTOCOL_HEADER]: PROTOCOL_VERSION,
    ...extra,
  });
  stream.end(data);
}

/** Answers with the bytes of `parts`, one after the other (no copy into one buffer). */
export function sendParts(stream: ServerHttp2Stream, parts: readonly Buffer[], extra: OutgoingHttpHeaders = {}): void {
  if (!usable(stream)) return;
  stream.respond({
    ':status': 200,
    'content-type': 'application/octet-stream',
    'content-length': parts.reduce((n, p) => n + p.length, 0),
    [PROTOCOL_HEADER]: PROTOCOL_VERSION,
    ...extra,
  });
  for (let i = 0; i < parts.length - 1; i++) stream.write(parts[i]);
  stream.end(parts[parts.length - 1]);
}

/**
 * Answers with `{code, message}`. When the answer goes out before the request
 * body has been read (413, 401 on an upload), the stream is then reset with
 * NO_ERROR, which RFC 9113 §8.1 defines as "stop sending, the response is
 * complete": the rest of the body is never read.
 */
export function sendError(stream: ServerHttp2Stream, status: number, code: ArchiveErrorCode, message: string, stopBody = false): void {
  if (!usable(stream)) return;
  if (stream.headersSent) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  sendJson(stream, status, { code, message });
  if (stopBody) stream.close(constants.NGHTTP2_NO_ERROR);
}

/** The declared content-length, or null when absent; throws on a malformed one. */
function contentLength(headers: IncomingHttpHeaders): number | null {
  const v = headers['content-length'];
  if (v === undefined) return null;
  if (!/^\d{1,16}$/.test(v)) throw new HttpError(400, 'EBADREQ', 'bad content-length');
  return Number(v);
}

/**
 * Reads a request body of at most `limit` bytes into one Buffer that owns its
 * ArrayBuffer (so it can be handed to the worker without a copy). Bytes past
 * the bound are never kept: the read stops and HttpError 413 is thrown.
 */
export function readBody(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, limit: number): Promise<Buffer> {
  const declared = contentLength(headers);
  if (declared !== null && declared > limit) return Promise.reject(tooLarge(declared, limit));
  return new Promise<Buffer>((resolve, reject) => {
    // With a declared length the body lands in one allocation; otherwise chunks are joined once at the end.
    const into = declared !== null ? Buffer.from(new ArrayBuffer(declared)) : null;
    const chunks: Buffer[] = [];
    let n = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onAbort);
      stream.off('error', onAbort);
    };
    const fail = (err: Error): void => {
      cleanup();
      stream.pause();
      reject(err);
    };
    const onData = (c: Buffer): void => {
      if (n + c.length > limit || (into && n + c.length > into.length)) {
        fail(into && n + c.length <= limit ? new HttpError(400, 'EBADREQ', 'body longer than its content-length') : tooLarge(n + c.length, limit));
        return;
      }
      if (into) c.copy(into, n);
      else chunks.push(c);
      n += c.length;
    };
    const onEnd = (): void => {
      cleanup();
      if (into) {
        if (n !== into.length) reject(new HttpError(400, 'EBADREQ', 'body shorter than its content-length'));
        else resolve(into);
        return;
      }
      const out = Buffer.from(new ArrayBuffer(n));
      let off = 0;
      for (const c of chunks) off += c.copy(out, off);
      resolve(out);
    };
    const onAbort = (): void => fail(new HttpError(400, 'EBADREQ', 'request aborted'));
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onAbort);
    stream.once('error', onAbort);
  });
}

function tooLarge(n: number, limit: number): HttpError {
  return new HttpError(413, 'EBADREQ', `request body of ${n}+ bytes exceeds ${limit}`);
}

/** Resolves when the stream can take more data, or is gone. */
export function drained(stream: ServerHttp2Stream): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
    stream.once('error', done);
  });
}

/** Admits at most `active` holders; up to `queued` more wait; beyond that, EUNAVAILABLE (503). */
export class Gate {
  private holders = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly active: number, private readonly queued: number) {}

  async enter(): Promise<() => void> {
    if (this.holders >= this.active) {
      if (this.waiting.length >= this.queued) throw new HttpError(503, 'EUNAVAILABLE', 'archive busy: too many batches in flight');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.holders++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.holders--;
    };
  }
}
