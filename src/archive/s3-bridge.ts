// The S3 bridge: a worker thread that owns one S3Client (AWS SDK v3) and runs
// object requests for a synchronous caller on another thread (s3-packs.ts).
// The archive store is synchronous by design (SQLite on a worker thread of its
// own), so a ranged GET of a sealed pack is made synchronous here: the caller
// posts a request on a MessagePort and sleeps on a shared counter
// (Atomics.wait) until this thread has posted the answer and bumped the
// counter; it then takes the answer with receiveMessageOnPort. Credentials:
// the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
// ~/.aws/credentials, ...).
import { createReadStream, statSync } from 'node:fs';
import { workerData, type MessagePort } from 'node:worker_threads';
import {
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, S3ServiceException,
} from '@aws-sdk/client-s3';
import { writeFile, rename } from 'node:fs/promises';

export interface BridgeConfig {
  bucket: string;
  endpoint?: string;
  region?: string;
}

export type BridgeRequest =
  | { id: number; op: 'get'; key: string; start: number; end: number; timeoutMs: number; /** Ranges of the same size after this one to fetch ahead. */ ahead?: number }
  | { id: number; op: 'download'; key: string; file: string; timeoutMs: number }
  | { id: number; op: 'put'; key: string; file: string; timeoutMs: number }
  | { id: number; op: 'head'; key: string; timeoutMs: number }
  | { id: number; op: 'list'; prefix: string; timeoutMs: number }
  | { id: number; op: 'delete'; key: string; timeoutMs: number };

/** `missing`: no such object (or range past its end); `unavailable`: the store did not answer in time or refused the connection. */
export type BridgeFailure = { kind: 'missing' | 'unavailable' | 'failed'; message: string };

export type BridgeReply =
  | { id: number; ok: true; data?: Uint8Array; size?: number | null; list?: { key: string; size: number }[] }
  | { id: number; ok: false; failure: BridgeFailure };

/** Bytes of the answer to request `id` are arriving (a ranged GET): the caller's wait starts over. */
export interface BridgeProgress {
  id: number;
  progress: true;
}

/** How often at most a GET in progress tells its caller so. */
const PROGRESS_EVERY_MS = 250;

export interface BridgeWorkerData {
  config: BridgeConfig;
  port: MessagePort;
  counter: SharedArrayBuffer;
}

export function makeClient(config: BridgeConfig): S3Client {
  return new S3Client({
    ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}),
    region: config.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // Ceph, Swift, MinIO and most S3-compatible stores serve path-style URLs; AWS still does too.
    forcePathStyle: config.endpoint !== undefined,
    maxAttempts: 2,
    // The SDK's default since 3.729 (a CRC32 trailer on every upload, aws-chunked) is not understood by many
    // S3-compatible stores (Ceph 16's radosgw answers 411 MissingContentLength): checksums only where the API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: 2000, requestTimeout: 30_000 },
  });
}

export function failureOf(err: unknown): BridgeFailure {
  const e = err as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const message = `${e.name ?? 'Error'}${status !== undefined ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.name === 'InvalidRange' || status === 404 || status === 416) return { kind: 'missing', message };
  if (err instanceof S3ServiceException && status !== undefined && status < 500) return { kind: 'failed', message };
  // No answer, a refused or reset connection, a timeout, a 5xx: the store is not there (now).
  return { kind: 'unavailable', message };
}

/**
 * Runs one request. A ranged GET is bounded on progress: it fails when no
 * byte of it arrives for `timeoutMs` (an 8 MiB window from a store 1 MB/s
 * away takes 8 s, and arrives); `progressed` is told as bytes come. The
 * other requests are bounded as a whole.
 */
export async function runRequest(client: S3Client, bucket: string, req: BridgeRequest, progressed?: () => void): Promise<BridgeReply> {
  const idle = new AbortController();
  const idleTimer = setTimeout(() => idle.abort(new Error(`no bytes for ${req.timeoutMs} ms`)), req.timeoutMs);
  const abortSignal = req.op === 'get' ? idle.signal : AbortSignal.timeout(req.timeoutMs);
  try {
    switch (req.op) {
      case 'get': {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: req.key, Range: `bytes=${req.start}-${req.end - 1}` }), { abortSignal });
        const chunks: Buffer[] = [];
        let n = 0;
        for await (const chunk of r.Body as AsyncIterable<Uint8Array>) {
          idleTimer.refresh();
          progressed?.();
          chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          n += chunk.byteLength;
        }
        return { id: req.id, ok: true, data: new Uint8Array(Buffer.concat(chunks, n)) };
      }
      case 'download': {
        const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: req.key }), { abortSignal });
        const data = await r.Body!.transformToByteArray();
        await writeFile(`${req.file}.part`, data);
        await rename(`${req.file}.part`, req.file);
        return { id: req.id, ok: true, size: data.length };
      }
      case 'put': {
        const size = statSync(req.file).size;
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: req.key, Body: createReadStream(req.file), ContentLength: size }), { abortSignal });
        return { id: req.id, ok: true, size };
      }
      case 'head': {
        try {
          const r = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: req.key }), { abortSignal });
          return { id: req.id, ok: true, size: r.ContentLength ?? 0 };
        } catch (err) {
          if (failureOf(err).kind === 'missing') return { id: req.id, ok: true, size: null };
          throw err;
        }
      }
      case 'list': {
        const list: { key: string; size: number }[] = [];
        let token: string | undefined;
        do {
          const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: req.prefix, ...(token ? { ContinuationToken: token } : {}) }), { abortSignal });
          for (const o of r.Contents ?? []) if (o.Key !== undefined) list.push({ key: o.Key, size: o.Size ?? 0 });
          token = r.IsTruncated ? r.NextContinuationToken : undefined;
        } while (token !== undefined);
        return { id: req.id, ok: true, list };
      }
      case 'delete':
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: req.key }), { abortSignal });
        return { id: req.id, ok: true };
    }
  } catch (err) {
    return { id: req.id, ok: false, failure: idle.signal.aborted ? { kind: 'unavailable', message: `no bytes for ${req.timeoutMs} ms` } : failureOf(err) };
  } finally {
    clearTimeout(idleTimer);
  }
}

// ---- the worker thread ----------------------------------------------------------------
if (workerData !== null && typeof workerData === 'object' && 'counter' in (workerData as object)) {
  // The SDK warns on every process that versions after January 2027 need Node 22; strata pins the version it
  // was tested with (package.json), so the warning would only fill the archive's log.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { config, port, counter } = workerData as BridgeWorkerData;
  const client = makeClient(config);
  const count = new Int32Array(counter);
  // Read-ahead: GETs of the ranges after a ranged GET, started at once and kept (a few) until asked for, so a
  // caller reading a pack in order finds the next window on its way. A failed one is not kept.
  // Each tells the callers waiting for it that its bytes are arriving.
  const ahead = new Map<string, { reply: Promise<BridgeReply>; waiting: Set<() => void> }>();
  const MAX_AHEAD = 8;
  /** Tells the caller of request `id`, at most every PROGRESS_EVERY_MS, that its answer is arriving. */
  const progressOf = (id: number): (() => void) => {
    let last = 0;
    return () => {
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS) return;
      last = now;
      port.postMessage({ id, progress: true } satisfies BridgeProgress);
      Atomics.add(count, 0, 1);
      Atomics.notify(count, 0);
    };
  };
  const getOf = (req: Extract<BridgeRequest, { op: 'get' }>): Promise<BridgeReply> => {
    const k = `${req.key}\0${req.start}\0${req.end}`;
    const early = ahead.get(k);
    ahead.delete(k);
    const progressed = progressOf(req.id);
    if (early !== undefined) early.waiting.add(progressed);
    const reply = early !== undefined
      ? early.reply.then((r) => (r.ok ? { ...r, id: req.id } : runRequest(client, config.bucket, req, progressed)))
      : runRequest(client, config.bucket, req, progressed);
    const size = req.end - req.start;
    for (let i = 1; i <= (req.ahead ?? 0); i++) {
      const next = { ...req, id: -1, start: req.start + i * size, end: req.end + i * size, ahead: 0 };
      const nk = `${next.key}\0${next.start}\0${next.end}`;
      if (ahead.has(nk)) continue;
      const waiting = new Set<() => void>();
      const pr = runRequest(client, config.bucket, next, () => { for (const f of waiting) f(); });
      ahead.set(nk, { reply: pr, waiting });
      void pr.then((r) => { if (!r.ok && ahead.get(nk)?.reply === pr) ahead.delete(nk); });
      while (ahead.size > MAX_AHEAD) ahead.delete(ahead.keys().next().value as string);
    }
    return reply;
  };
  port.on('message', (req: BridgeRequest) => {
    void (req.op === 'get' ? getOf(req) : runRequest(client, config.bucket, req)).then((reply) => {
      port.postMessage(reply); // copied: the SDK's bytes may share a pooled buffer
      Atomics.add(count, 0, 1);
      Atomics.notify(count, 0);
    });
  });
}
