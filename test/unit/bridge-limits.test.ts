// The largest file strata keeps is one number in two places that cannot share
// a module: the FUSE bridge's C (BRIDGE_MAX_FILE_BYTES, which refuses writes,
// fallocates and sizes past it with EFBIG) and the archive's record check
// (src/protocol/records.ts, which takes no write past it). They must agree: a
// write the bridge let through and the archive refused stopped the shipper
// for good (EBADREQ "bad offset"; 2026-12-05, a pwrite at 2^53 + 1).
import test from 'ava';
import { FC } from '../../src/fuse/bridge.js';
import { MAX_FILE_BYTES } from '../../src/protocol/records.js';

test('the bridge\'s largest file is the archive\'s, and a double holds it and every offset below it exactly', (t) => {
  t.is(FC.MAX_FILE_BYTES, MAX_FILE_BYTES);
  t.true(Number.isSafeInteger(MAX_FILE_BYTES + 2 ** 20), 'offsets and sizes up to it (and a 1 MiB write past it) are exact as doubles');
});
