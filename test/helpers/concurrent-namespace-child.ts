// One of several programs changing the names under the same directories at
// once (the concurrent-namespace fault test): `node
// concurrent-namespace-child.js SEED DIR ITERATIONS ID`. DIR holds d0, d1 and d2;
// each iteration creates a file (in place, or written under a unique name and
// renamed into place as a mail delivery does), renames a file or a
// directory (across directories, over another name), removes one, makes or
// removes a subdirectory, links, symlinks or chmods. The others race it, so
// ENOENT, EEXIST, ENOTEMPTY and the like are expected and skipped. Prints
// `done N` (N changes that succeeded) at the end.
import { chmodSync, closeSync, linkSync, mkdirSync, openSync, renameSync, rmdirSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './model-tree.js';

const [seedArg, dir, itersArg, id] = process.argv.slice(2);
if (seedArg === undefined || dir === undefined || itersArg === undefined || id === undefined) {
  throw new Error('usage: concurrent-namespace-child SEED DIR ITERATIONS ID');
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

for (let it = 0, n = Number(itersArg); it < n; it++) {
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
