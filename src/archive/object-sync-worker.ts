// The archive server's metadata uploader (object storage only): a worker
// thread that runs object-sync.ts's syncPoint every interval, after every new
// volume snapshot in the catalog (checked every 2 s), on request, and once more
// at shutdown. Its blocking work (VACUUM INTO, uploads) never stalls the
// server's event loop. Reports each point, or its failure, to the parent.
import { openSqlite } from './sqlite.js';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { syncPoint, type SyncPointResult } from './object-sync.js';
import { S3PackStore, type ObjectsConfig } from './s3-packs.js';

export interface ObjectSyncWorkerData {
  dir: string;
  config: ObjectsConfig;
  intervalMs: number;
}

export type ObjectSyncMessage =
  | { type: 'point'; result: SyncPointResult; why: string }
  | { type: 'failed'; message: string; why: string }
  | { type: 'stopped' };

const port = parentPort;
if (!port) throw new Error('object sync must run in a worker thread');
const data = workerData as ObjectSyncWorkerData;
const store = S3PackStore.open(data.config);
let lastSnapshots = snapshotMark();
let timer: NodeJS.Timeout | null = null;
let stopping = false;

function snapshotMark(): string {
  try {
    const db = openSqlite(join(data.dir, 'archive.db'), { readonly: true, fileMustExist: true });
    try {
      const hasCatalog = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'`).get() !== undefined;
      if (!hasCatalog) return '';
      return JSON.stringify(db.prepare(`SELECT COUNT(*) AS n, MAX(created_ms) AS last FROM snapshots`).get());
    } finally {
      db.close();
    }
  } catch {
    return lastSnapshots;
  }
}

function run(why: string): void {
  try {
    const result = syncPoint(data.dir, store);
    port!.postMessage({ type: 'point', result, why } satisfies ObjectSyncMessage);
  } catch (err) {
    port!.postMessage({ type: 'failed', message: (err as Error).message, why } satisfies ObjectSyncMessage);
  }
}

function schedule(): void {
  let sinceMs = 0;
  const tickMs = Math.min(2000, data.intervalMs);
  timer = setInterval(() => {
    if (stopping) return;
    sinceMs += tickMs;
    const mark = snapshotMark();
    if (mark !== lastSnapshots) {
      lastSnapshots = mark;
      sinceMs = 0;
      run('snapshot');
    } else if (sinceMs >= data.intervalMs) {
      sinceMs = 0;
      run('interval');
    }
  }, tickMs);
}

port.on('message', (m: { type: 'now' } | { type: 'stop' }) => {
  if (m.type === 'now') run('request');
  if (m.type === 'stop') {
    stopping = true;
    if (timer) clearInterval(timer);
    run('shutdown');
    store.close();
    port.postMessage({ type: 'stopped' } satisfies ObjectSyncMessage);
    port.close();
  }
});

run('start');
schedule();
