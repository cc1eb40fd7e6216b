// `strata archive serve --objects`: setting up an archive directory for
// object storage, and the metadata uploader's thread (object-sync-worker.ts).
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log/logger.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkPackNumbers, rebuildFromObjects } from './object-sync.js';
import { openDatabase } from './schema.js';
import type { ObjectSyncMessage, ObjectSyncWorkerData } from './object-sync-worker.js';
import { parseObjectsUrl, readObjectsConfig, S3PackStore, writeObjectsConfig, type ObjectsConfig } from './s3-packs.js';

export interface ObjectsOptions {
  objects?: string;
  s3Endpoint?: string;
  s3Region?: string;
  fetchTimeout?: number;
  metadataUploadInterval?: number;
}

/**
 * Records `--objects` in DIR/objects.json (or takes the one there), and for a
 * directory without a metadata database rebuilds it from the bucket's newest
 * copy. Null: not on object storage. Throws with a clear message on bad options.
 */
export function prepareObjects(dataDir: string, o: ObjectsOptions, log: Logger): ObjectsConfig | null {
  if (o.objects === undefined && (o.s3Endpoint !== undefined || o.s3Region !== undefined || o.metadataUploadInterval !== undefined || o.fetchTimeout !== undefined)) {
    throw new Error('--s3-endpoint, --s3-region, --metadata-upload-interval and --fetch-timeout need --objects');
  }
  if (o.metadataUploadInterval !== undefined && !(o.metadataUploadInterval >= 1 && o.metadataUploadInterval <= 86_400)) throw new Error('--metadata-upload-interval must be 1 to 86400 seconds');
  if (o.fetchTimeout !== undefined && !(o.fetchTimeout >= 0.1 && o.fetchTimeout <= 600)) throw new Error('--fetch-timeout must be 0.1 to 600 seconds');
  const existing = readObjectsConfig(dataDir);
  let config: ObjectsConfig;
  if (o.objects !== undefined) {
    parseObjectsUrl(o.objects);
    if (o.s3Endpoint !== undefined && !/^https?:\/\/[^/]+/.test(o.s3Endpoint)) throw new Error(`--s3-endpoint ${JSON.stringify(o.s3Endpoint)}: expected http(s)://HOST[:PORT]`);
    config = {
      url: o.objects,
      ...(o.s3Endpoint !== undefined ? { endpoint: o.s3Endpoint } : {}),
      ...(o.s3Region !== undefined ? { region: o.s3Region } : {}),
      ...(o.fetchTimeout !== undefined ? { fetchTimeoutMs: Math.round(o.fetchTimeout * 1000) } : {}),
    };
    if (existing !== null && existing.url !== config.url) {
      throw new Error(`${dataDir} holds an archive on ${existing.url}; it cannot move to ${config.url} (its packs are there)`);
    }
    writeObjectsConfig(dataDir, config);
  } else if (existing !== null) {
    config = existing;
  } else {
    return null;
  }
  const store = S3PackStore.open(config);
  try {
    const r = rebuildFromObjects(dataDir, store);
    if (r !== null) {
      log.warn({ from: r.key, takenMs: r.takenMs, taken: new Date(r.takenMs).toISOString(), volumes: r.volumes, currentPack: r.currentPack },
        'metadata database rebuilt from the bucket: volumes are served as of this metadata point');
    }
    const created = !existsSync(join(dataDir, 'archive.db'));
    if (created) openDatabase(join(dataDir, 'archive.db')).close();
    const top = checkPackNumbers(dataDir, store, created);
    if (created && top > 0) log.warn({ packs: top }, 'the bucket holds packs but no metadata copy: a new, empty archive continues after them');
  } finally {
    store.close();
  }
  return config;
}

/** The metadata uploader's thread. */
export class ObjectSync {
  private stopped: Promise<void> | null = null;

  private constructor(private readonly worker: Worker, private readonly log: Logger) {}

  static async start(dir: string, config: ObjectsConfig, intervalMs: number, log: Logger): Promise<ObjectSync> {
    const data: ObjectSyncWorkerData = { dir, config, intervalMs };
    const worker = new Worker(new URL('./object-sync-worker.js', import.meta.url), { workerData: data });
    const s = new ObjectSync(worker, log);
    worker.on('message', (m: ObjectSyncMessage) => {
      if (m.type === 'point') {
        const r = m.result;
        log.info({ why: m.why, key: r.key, taken: new Date(r.takenMs).toISOString(), packsUploaded: r.packsUploaded, bytesUploaded: r.bytesUploaded, volumes: r.volumes }, 'metadata point uploaded');
      } else if (m.type === 'failed') {
        log.warn({ why: m.why, err: m.message }, 'metadata point failed (the previous one stands; retried at the next)');
      }
    });
    worker.on('error', (err) => log.error({ err: err.message }, 'metadata uploader failed'));
    return s;
  }

  /** Asks for a metadata point now. */
  now(): void {
    this.worker.postMessage({ type: 'now' });
  }

  /** A last metadata point, then the thread ends (bounded: 5 minutes). */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn('metadata uploader did not finish in 5 minutes; stopping it');
        void this.worker.terminate().then(() => resolve());
      }, 300_000);
      timer.unref();
      const finish = (): void => {
        clearTimeout(timer);
        void this.worker.terminate().then(() => resolve());
      };
      this.worker.on('message', (m: ObjectSyncMessage) => { if (m.type === 'stopped') finish(); });
      this.worker.once('exit', finish);
      this.worker.postMessage({ type: 'stop' });
    });
    return this.stopped;
  }
}
