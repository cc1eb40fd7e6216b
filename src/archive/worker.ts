// The archive worker: runs the synchronous ArchiveStore (SQLite, fsync) on a
// thread of its own, so its blocking work never stalls the event loop of the
// process that uses it (a FUSE daemon, or the archive server). One message is
// handled at a time, so calls reach the store in the order they were sent.
// Messages: worker-protocol.ts. Started by WorkerArchiveClient.
import { parentPort, workerData } from 'node:worker_threads';
import { ArchiveError } from '../protocol/archive-api.js';
import type { DirImage } from '../protocol/images.js';
import { ArchiveStore } from './archive-store.js';
import { SnapshotEngine } from './snapshots.js';
import {
  checkBlockCount, checkDepth, checkEpoch, checkId, checkLength, checkOffset, checkOptionalName, checkVolume, shipSizeReason, toWireError,
} from '../protocol/wire-checks.js';
import { ownArrayBuffer, TIER_CHUNK_ENTRIES, TIER_CHUNK_IMAGES, type FromWorker, type ToWorker, type UnaryMethod } from './worker-protocol.js';

export interface WorkerData {
  dir: string;
  /** A `file://` archive (no server): finish a rollback's rebuild found at open or refusing a batch (docs/snapshots.md). */
  finishRebuilds?: boolean;
}

/** Open tier streams are bounded: a caller that never drains one cannot pile up iterators. */
const MAX_STREAMS = 256;

const port = parentPort;
if (!port) throw new Error('archive worker must run in a worker thread');
const data = workerData as WorkerData;

let store: ArchiveStore | null = null;
const streams = new Map<number, Iterator<DirImage>>();

/** Opened on first use, so an engine that fails to open reports through a call with its code. */
function theStore(): ArchiveStore {
  if (store === null) {
    store = ArchiveStore.open(data.dir);
    if (store.rebuildPending()) finishRebuilds();
  }
  return store;
}

/**
 * A `file://` archive has no server to go on with a rollback's rebuild (a
 * swap's handover leaves it to the background; a process killed during one
 * leaves it half done): this worker runs its steps between calls, bounded
 * pages, until none is left. Another process doing the same is harmless:
 * each step checks, in its transaction, that the page is still to be done.
 */
let rebuilder: SnapshotEngine | null = null;
function finishRebuilds(): void {
  if (data.finishRebuilds !== true || rebuilder !== null || closing) return;
  try {
    // STRATA_REBUILD_PAGE_ROWS (tests): smaller pages, so that a rebuild lasts while a test looks at the mount.
    const rows = Number(process.env['STRATA_REBUILD_PAGE_ROWS'] ?? 0);
    rebuilder = SnapshotEngine.open(data.dir, rows >= 1 ? { pageRows: Math.floor(rows) } : {});
  } catch {
    return; // a call that needs it reports why (EUNAVAILABLE, retried)
  }
  const next = (): void => {
    if (rebuilder === null) return;
    let more = false;
    try {
      more = !closing && rebuilder.stepRebuild();
    } catch {
      more = false;
    }
    if (more) {
      setImmediate(next);
    } else {
      const waiting = !closing && rebuilder.rebuilding; // a failed step waits (REBUILD_RETRY_MS) before the next try
      rebuilder.close();
      rebuilder = null;
      if (waiting) setTimeout(finishRebuilds, 5_000).unref();
    }
  };
  setImmediate(next);
}
let closing = false;

function post(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

/** An answer of JSON and bytes: the bytes cross as a transferred ArrayBuffer. */
class WithBytes {
  /** `own`: the bytes are a buffer of their own (nobody keeps it): transferred without a copy. */
  constructor(readonly meta: unknown, readonly bytes: Buffer, readonly own = false) {}
}

function callStore(method: UnaryMethod, args: unknown[], bytes: ArrayBuffer | undefined): unknown {
  switch (method) {
    case 'open':
      theStore();
      return null;
    case 'volumeState':
      return theStore().volumeState(checkVolume(args[0]));
    case 'createVolume':
      return theStore().createVolume(checkVolume(args[0]));
    case 'ship': {
      const volume = checkVolume(args[0]);
      const epoch = checkEpoch(args[1]);
      const frames = Buffer.from(bytes ?? new ArrayBuffer(0));
      const why = shipSizeReason(frames.length);
      if (why !== null) throw new ArchiveError('EBADREQ', why);
      // The store decodes and checks every frame (checksums, names with '/'
      // or '..', bounds) before its transaction: EBADREQ, nothing applied.
      try {
        return theStore().applyBatch(volume, epoch, frames);
      } catch (err) {
        if (err instanceof ArchiveError && err.code === 'EUNAVAILABLE') finishRebuilds();
        throw err;
      }
    }
    case 'fence':
      return theStore().fence(checkVolume(args[0]));
    case 'dirImage':
      return theStore().dirImage(checkVolume(args[0]), checkId(args[1]));
    case 'deepImages':
      return theStore().deepImages(checkVolume(args[0]), checkId(args[1]), checkOptionalName(args[2]));
    case 'readBlocks': {
      const { data, ...meta } = theStore().readBlocks(checkVolume(args[0]), checkId(args[1]), checkOffset(args[2]), checkBlockCount(args[3]));
      // readBlocks reads into a buffer of its own (FileData.readBlocksUnhashed): handed on as it is.
      return new WithBytes(meta, data, true);
    }
    case 'readRange':
      return theStore().readRange(checkVolume(args[0]), checkId(args[1]), checkOffset(args[2]), checkLength(args[3]));
    case 'fileBlocks':
      return theStore().fileBlocks(checkVolume(args[0]), checkId(args[1]));
    case 'listVolumes':
      return theStore().listVolumes();
    default:
      throw new ArchiveError('EBADREQ', `unknown method ${String(method)}`);
  }
}

function onCall(id: number, method: UnaryMethod, args: unknown[], bytes: ArrayBuffer | undefined): void {
  try {
    const result = callStore(method, args, bytes);
    if (result instanceof WithBytes) {
      const b = result.bytes;
      const ab = result.own && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b.buffer : ownArrayBuffer(b);
      post({ type: 'result', id, result: result.meta, bytes: ab }, [ab]);
    } else if (Buffer.isBuffer(result)) {
      // A copy of our own to transfer: the store may keep the buffer it returned (a cache).
      const ab = ownArrayBuffer(result);
      post({ type: 'result', id, result: null, bytes: ab }, [ab]);
    } else {
      post({ type: 'result', id, result });
    }
  } catch (err) {
    post({ type: 'error', id, error: toWireError(err) });
  }
}

function onStream(id: number, args: unknown[]): void {
  try {
    if (streams.size >= MAX_STREAMS) throw new ArchiveError('EARCHIVE', `more than ${MAX_STREAMS} tier streams open`);
    const it = theStore().tierImages(checkVolume(args[0]), checkDepth(args[1]))[Symbol.iterator]();
    streams.set(id, it);
  } catch (err) {
    post({ type: 'error', id, error: toWireError(err) });
  }
}

/** One chunk per pull: the consumer's pace bounds what sits in either thread's memory. */
function onPull(id: number): void {
  const it = streams.get(id);
  if (!it) return; // cancelled, or already reported as an error
  const images: DirImage[] = [];
  let entries = 0;
  try {
    while (images.length < TIER_CHUNK_IMAGES && entries < TIER_CHUNK_ENTRIES) {
      const r = it.next();
      if (r.done) {
        streams.delete(id);
        post({ type: 'chunk', id, images, done: true });
        return;
      }
      images.push(r.value);
      entries += r.value.entries.length;
    }
    post({ type: 'chunk', id, images, done: false });
  } catch (err) {
    streams.delete(id);
    post({ type: 'error', id, error: toWireError(err) });
  }
}

function onCancel(id: number): void {
  const it = streams.get(id);
  streams.delete(id);
  try {
    it?.return?.();
  } catch {
    // The consumer is gone; nobody to tell.
  }
}

function onClose(): void {
  closing = true;
  try {
    rebuilder?.close();
  } catch { /* closing anyway */ }
  rebuilder = null;
  for (const id of [...streams.keys()]) onCancel(id);
  try {
    store?.close();
  } finally {
    store = null;
    post({ type: 'closed' });
    port!.close();
  }
}

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'call': return onCall(msg.id, msg.method, msg.args, msg.bytes);
    case 'stream': return onStream(msg.id, msg.args);
    case 'pull': return onPull(msg.id);
    case 'cancel': return onCancel(msg.id);
    case 'close': return onClose();
  }
});
