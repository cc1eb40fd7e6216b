// The archive store's behavioural suite (test/helpers/archive-store-suite.ts)
// on object storage: a real S3 engine (Ceph radosgw, scripts/s3-engine.sh),
// every sealed pack in the bucket and read back with ranged GETs.
import test from 'ava';
import { archiveStoreSuite } from '../helpers/archive-store-suite.js';
import { s3Backend, s3Engine } from '../helpers/s3-engine.js';

const engine = s3Engine();
if (typeof engine === 'string') {
  console.error(`archive-objects: skipped: ${engine}`);
  test.skip(`object-storage suite skipped: ${engine}`, () => {});
} else {
  archiveStoreSuite(s3Backend(engine));
}
