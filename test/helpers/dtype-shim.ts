// Builds test/helpers/dtype-unknown.c (an LD_PRELOAD shim under which readdir
// reports every entry as DT_UNKNOWN) into `dir`; returns the .so's path.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('../../../test/helpers/dtype-unknown.c', import.meta.url));

export function buildDtypeUnknownShim(dir: string): string {
  const so = join(dir, 'dtype-unknown.so');
  const cc = spawnSync('g++', ['-x', 'c', '-shared', '-fPIC', '-o', so, SOURCE, '-ldl'], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`building ${SOURCE}: ${cc.stderr}`);
  return so;
}
