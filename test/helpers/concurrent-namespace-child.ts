// One of several programs changing the names under the same directories at
// once (the concurrent-namespace fault test): `node
// concurrent-namespace-child.js SEED DIR ITERATIONS ID`. DIR holds d0, d1 and d2;
// each iteration creates a file (in place, or written under a unique name and
// renamed into place as a mail delivery does), renames a file or a
// directory (across directories, over another name), removes one, makes or
// removes a subdirectory, links, symlinks or chmods. The others race it, so
// ENOENT, EEXIST, ENOTEMPTY and the like are expected and skipped. Prints
// `done N` (N changes that succeeded) at the end.
//
// With a fifth argument `hold`, the program is a holder instead: each
// iteration opens one file (creating it when missing) and keeps it open
// across several writes at seeded offsets, truncates, fchmods, futimes and
// fsyncs, while the others rename it or its directory, replace it with
// another file or remove it; then it closes it. What it wrote belongs to
// the file it opened, under whatever name that file has by then (or to no
// name at all).
import { chmodSync, constants, closeSync, fchmodSync, fsyncSync, ftruncateSync, futimesSync, linkSync, mkdirSync, openSync, renameSync, rmdirSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './model-tree.js';

const [seedArg, dir, itersArg, id, role] = process.argv.slice(2);
if (seedArg === undefined || dir === undefined || itersArg === undefined || id === undefined) {
  throw new Error('usage: concurrent-namespace-child SEED DIR ITERATIONS ID [hold]');
}
const rng = new Rng(Number(seedArg) >>> 0);
const RACES = new Set(['ENOENT', 'EEXIST', 'ENOTEMPTY', 'EISDIR', 'ENOTDIR', 'EINVAL', 'EBUSY']);
let done = 0;

const top = (): string => `d${rng.int(0, 2)}`;
const sub = (): string => join(top(), `s${rng.int(0, 3)}`);
/** A file's path: in a top directory, or in one of its subdirectories. */
const file = (): string => join(rng.chance(0.7) ? top() : sub(), `n${rng.int(0, 11)}`);

function data(n: number): Buffer {
  const b = Buffer.allocUnsafe(n + 3);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(rng.next(), i);
  return b.subarray(0, n);
}

function writeFile(path: string): void {
  const fd = openSync(join(dir, path), 'w', 0o644);
  try {
    writeSync(fd, data(rng.int(0, 3000)));
  } finally {
    closeSync(fd);
  }
}

/** One holder iteration: a file kept open across several changes through its descriptor. */
function hold(): void {
  const { O_RDWR, O_CREAT, O_APPEND, O_TRUNC } = constants;
  const flags = O_RDWR | O_CREAT | (rng.chance(0.3) ? O_APPEND : 0) | (rng.chance(0.2) ? O_TRUNC : 0);
  const fd = openSync(join(dir, file()), flags, 0o644);
  try {
    for (let step = 0, steps = rng.int(2, 12); step < steps; step++) {
      const roll = rng.int(0, 99);
      if (roll < 70) writeSync(fd, data(rng.int(1, 5000)), 0, undefined, rng.chance(0.3) ? null : rng.int(0, 20_000));
      else if (roll < 78) ftruncateSync(fd, rng.int(0, 12_000));
      else if (roll < 85) fchmodSync(fd, rng.pick([0o600, 0o640, 0o644, 0o755]));
      else if (roll < 92) futimesSync(fd, rng.int(1, 2e9), rng.int(1, 2e9));
      else fsyncSync(fd);
      done++;
    }
  } finally {
    closeSync(fd);
  }
}

for (let it = 0, n = Number(itersArg); it < n; it++) {
  if (role === 'hold') {
    try {
      hold();
    } catch (err) {
      if (!RACES.has((err as { code?: string }).code ?? '')) throw err;
    }
    continue;
  }
  const roll = rng.int(0, 99);
  try {
    if (roll < 25) writeFile(file());
    else if (roll < 40) {
      const tmp = join(top(), `.tmp-${id}-${it}`);
      writeFile(tmp);
      try {
        renameSync(join(dir, tmp), join(dir, file()));
      } catch (err) {
        unlinkSync(join(dir, tmp));
        throw err;
      }
    } else if (roll < 55) renameSync(join(dir, file()), join(dir, file()));
    else if (roll < 60) renameSync(join(dir, sub()), join(dir, sub()));
    else if (roll < 70) unlinkSync(join(dir, file()));
    else if (roll < 78) mkdirSync(join(dir, sub()), 0o755);
    else if (roll < 84) rmdirSync(join(dir, sub()));
    else if (roll < 90) linkSync(join(dir, file()), join(dir, file()));
    else if (roll < 95) symlinkSync(`../target-${rng.int(0, 9)}`, join(dir, file()));
    else chmodSync(join(dir, file()), rng.pick([0o600, 0o640, 0o644, 0o755]));
    done++;
  } catch (err) {
    if (!RACES.has((err as { code?: string }).code ?? '')) throw err;
  }
}
writeSync(1, `done ${done}\n`);
