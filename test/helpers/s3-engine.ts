// The real S3 engine for object-storage tests: Ceph's radosgw on a one-node
// cluster, started by scripts/s3-engine.sh (CI's .ci/run starts it before the
// tests; here it is started on first use if it is not running, under a lock so
// parallel test files start one). No mock counts: without the engine the tests
// are skipped, and say why.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { ArchiveStore, type ArchiveStoreOptions } from '../../src/archive/archive-store.js';
import { syncPoint } from '../../src/archive/object-sync.js';
import { readObjectsConfig, S3PackStore, writeObjectsConfig, type ObjectsConfig } from '../../src/archive/s3-packs.js';
import { packName } from '../../src/archive/packs.js';
import type { StoreBackend } from './archive-store-suite.js';

export const ENGINE_SCRIPT = fileURLToPath(new URL('../../../scripts/s3-engine.sh', import.meta.url));

export interface S3Engine {
  endpoint: string;
  /** The engine's second gateway (same cluster), which test/integration/archive-objects.test.ts stops and starts. */
  faultEndpoint: string;
  /** A third one, for test/fault/archive-objects-wipe.test.ts (test files run in parallel). */
  faultEndpointC: string;
  bucket: string;
}

let cached: S3Engine | string | null = null;

/** The running engine (its credentials put in process.env), or why there is none. */
export function s3Engine(): S3Engine | string {
  if (cached !== null) return cached;
  if (process.env.STRATA_S3_ENGINE === 'off') return (cached = 'STRATA_S3_ENGINE=off');
  // Idempotent: prints the env lines of a running engine, or installs and starts one (a few minutes at most).
  const r = spawnSync('flock', ['--close', '/var/tmp/strata-s3-engine.lock', ENGINE_SCRIPT, 'start'], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return (cached = `no S3 engine: scripts/s3-engine.sh start failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  const env: { [k: string]: string } = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  if (!env.STRATA_S3_ENDPOINT || !env.STRATA_S3_BUCKET) return (cached = `no S3 engine: scripts/s3-engine.sh printed no endpoint (${r.stdout.trim()})`);
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION']) if (env[k]) process.env[k] = env[k];
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  return (cached = { endpoint: env.STRATA_S3_ENDPOINT, faultEndpoint: env.STRATA_S3_FAULT_ENDPOINT ?? env.STRATA_S3_ENDPOINT, faultEndpointC: env.STRATA_S3_FAULT_ENDPOINT_C ?? env.STRATA_S3_ENDPOINT, bucket: env.STRATA_S3_BUCKET });
}

/** Stops or starts one of the engine's S3 gateways (the cluster stays): the object store unreachable, and back. */
export function gateway(action: 'stop-rgw' | 'start-rgw' | 'freeze-rgw' | 'thaw-rgw', name: 'a' | 'b' | 'c'): void {
  const r = spawnSync(ENGINE_SCRIPT, [action, name], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`s3-engine.sh ${action}: ${r.stderr}`);
}

/** A fresh prefix in the engine's bucket for one archive. */
export function objectsConfigFor(engine: S3Engine, extra: Partial<ObjectsConfig> = {}): ObjectsConfig {
  return { url: `s3://${engine.bucket}/t-${Date.now()}-${randomBytes(4).toString('hex')}`, endpoint: engine.endpoint, ...extra };
}

/**
 * The behavioural suite's object-storage backend: the store's directory names
 * a fresh prefix of the bucket, and after every batch (and new volume) a
 * metadata point seals and uploads the packs and drops their local files, so
 * every later read of that data is a ranged GET from radosgw.
 */
export function s3Backend(engine: S3Engine): StoreBackend {
  const open = (dir: string, options?: ArchiveStoreOptions): ArchiveStore => {
    mkdirSync(dir, { recursive: true });
    if (readObjectsConfig(dir) === null) writeObjectsConfig(dir, objectsConfigFor(engine));
    const store = ArchiveStore.open(dir, options);
    const packs = S3PackStore.open(readObjectsConfig(dir)!);
    return new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        if (prop === 'applyBatch' || prop === 'createVolume') {
          return (...args: unknown[]) => {
            const result = (v as (...a: unknown[]) => unknown).apply(target, args);
            syncPoint(dir, packs);
            return result;
          };
        }
        if (prop === 'close') {
          return () => {
            target.close();
            packs.close();
          };
        }
        return (v as (...a: unknown[]) => unknown).bind(target);
      },
    });
  };
  const withPacks = <T>(dir: string, fn: (p: S3PackStore) => T): T => {
    const p = S3PackStore.open(readObjectsConfig(dir)!);
    try {
      return fn(p);
    } finally {
      p.close();
    }
  };
  return {
    name: 's3 (radosgw)',
    open,
    packSizes: (dir) => withPacks(dir, (p) => {
      const sizes = p.list();
      for (const f of readdirSync(join(dir, 'packs'))) sizes.set(Number(f.slice(0, -5)), statSync(join(dir, 'packs', f)).size);
      return sizes;
    }),
    corrupt: (dir, pack, offset) => withPacks(dir, (p) => {
      const tmp = mkdtempSync('/var/tmp/strata-s3-corrupt-');
      try {
        const file = join(tmp, packName(pack));
        p.objects.download(p.key(pack), file);
        const bytes = readFileSync(file);
        bytes[offset]! ^= 0x01;
        writeFileSync(file, bytes);
        p.put(pack, file); // a test rewrites a sealed pack: strata never does
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }),
  };
}
