// One of several programs writing the same few files at once (the
// concurrent-writers fault test): `node concurrent-writer-child.js SEED DIR
// FILES ITERATIONS`. Each iteration opens one of the files (appending, or
// read-write at random offsets; now and then truncating it as it opens, as
// a log rotation's `> log` does under appenders), writes 1 to 30 times (mostly small writes, as a log does), sometimes
// fsyncs, truncates, changes the mode or the times, and closes it: so one
// program's close (a FLUSH and a RELEASE) falls among the others' writes.
// Prints `done N` (N writes) at the end. The data is random from the seed.
import { closeSync, constants as C, fchmodSync, fstatSync, fsyncSync, ftruncateSync, futimesSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './model-tree.js';

const [seedArg, dir, filesArg, itersArg] = process.argv.slice(2);
if (seedArg === undefined || dir === undefined || filesArg === undefined || itersArg === undefined) {
  throw new Error('usage: concurrent-writer-child SEED DIR FILES ITERATIONS');
}
const rng = new Rng(Number(seedArg) >>> 0);
const files = Number(filesArg);
let writes = 0;

function data(n: number): Buffer {
  const b = Buffer.allocUnsafe(n + 3);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(rng.next(), i);
  return b.subarray(0, n);
}

for (let it = 0, n = Number(itersArg); it < n; it++) {
  const path = join(dir, `f${rng.int(0, files - 1)}`);
  const append = rng.chance(0.5);
  const truncating = !append && rng.chance(0.05);
  const fd = openSync(path, (append ? C.O_WRONLY | C.O_APPEND : C.O_RDWR) | C.O_CREAT | (truncating ? C.O_TRUNC : 0), 0o644);
  for (let w = rng.int(1, 30); w > 0; w--) {
    const len = rng.chance(0.03) ? rng.int(20_000, 200_000) : rng.int(1, 600);
    const buf = data(len);
    const at = append ? null : rng.int(0, Number(fstatSync(fd).size) + 4096);
    writeSync(fd, buf, 0, len, at);
    writes++;
  }
  if (rng.chance(0.1)) fsyncSync(fd);
  if (rng.chance(0.04)) ftruncateSync(fd, rng.int(0, Number(fstatSync(fd).size)));
  if (rng.chance(0.06)) fchmodSync(fd, rng.pick([0o600, 0o640, 0o644, 0o664]));
  if (rng.chance(0.03)) futimesSync(fd, rng.int(1_000_000_000, 1_600_000_000), rng.int(1_000_000_000, 1_600_000_000));
  closeSync(fd);
}
writeSync(1, `done ${writes}\n`);
