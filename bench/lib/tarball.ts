// The source-tree tarball of the untar benchmarks (bench/run.ts and
// bench/mirror.ts): built once per run from BENCH_TAR_SOURCE, with its counts.
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { TarballInfo } from '../benchmarks.js';
import { progress, run } from './proc.js';

export function countTree(root: string): Omit<TarballInfo, 'path' | 'source' | 'tarball_bytes'> {
  const c = { entries: 0, files: 0, directories: 0, symlinks: 0, other: 0, content_bytes: 0 };
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      c.entries++;
      if (st.isDirectory()) {
        c.directories++;
        walk(p);
      } else if (st.isFile()) {
        c.files++;
        c.content_bytes += st.size;
      } else if (st.isSymbolicLink()) c.symlinks++;
      else c.other++;
    }
  };
  walk(root);
  // tar also stores the top directory itself.
  c.entries++;
  c.directories++;
  return c;
}

export function buildTarball(source: string, workDir: string): TarballInfo {
  if (!existsSync(source) || !statSync(source).isDirectory()) throw new Error(`BENCH_TAR_SOURCE ${source} is not a directory`);
  const path = join(workDir, 'source-tree.tar');
  run('tar', ['-C', dirname(source), '-cf', path, basename(source)], { timeoutMs: 600_000 });
  const listed = run('tar', ['-tf', path], { timeoutMs: 120_000 }).stdout.split('\n').filter(Boolean).length;
  const counts = countTree(source);
  if (listed !== counts.entries) progress(`note: tar lists ${listed} entries, the tree walk found ${counts.entries}`);
  return { path, source, ...counts, entries: listed, tarball_bytes: statSync(path).size };
}

export function tarballReport(t: TarballInfo): Omit<TarballInfo, 'path'> & { built_with: string } {
  const { path: _path, ...rest } = t;
  return { ...rest, built_with: `tar -C ${dirname(t.source)} -cf source-tree.tar ${basename(t.source)}` };
}
