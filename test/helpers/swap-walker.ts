// A tree walker for the swap stress test (test/integration/swap-walk.test.ts),
// run as its own process: it walks `root` again and again (readdir, then
// lstat and llistxattr of every name just listed, recursing into
// directories) until `stopFile` exists (or once, with `--once`), and writes a
// JSON report to `outFile`: walks done, and every error on a name that the
// same walk had just listed, split by whether the walk began after MARK_FILE
// existed (ENOENT there is the bug being looked for; a walk under way across
// the exchange may list the old tree's names and look them up in the new one).
// Usage: node swap-walker.js ROOT STOP_FILE OUT_FILE [--once|--loop] [PROBES (newline-separated)] [MARK_FILE]
import { existsSync, writeFileSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { byteName, readdirNames } from './model-tree.js';
import { join } from 'node:path';
import { listxattr } from '../../src/native/index.js';

export interface WalkReport {
  walks: number;
  names: number;
  /** "op path: code (walk N, ms since start)". */
  errors: string[];
  /** Walks that began after `markFile` existed (the commit had returned), and the errors of those walks. */
  walksAfter: number;
  errorsAfter: string[];
}

/** `probes`: paths (relative to root) lstat'ed first on every walk, whose ENOENT is fine (they leave negative dentries). */
export async function walkOnce(root: string, rep: WalkReport, t0: number, probes: readonly string[] = [], after = true): Promise<void> {
  if (after) rep.walksAfter++;
  for (const p of probes) await lstat(byteName(join(root, p))).catch(() => {});
  const err = (op: string, p: string, e: unknown): void => {
    const line = `${op} ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)} (walk ${rep.walks}, ${Date.now() - t0} ms)`;
    const list = after ? rep.errorsAfter : rep.errors;
    if (list.length < 200) list.push(line);
  };
  const dirs = [root];
  while (dirs.length > 0) {
    const d = dirs.pop()!;
    let names: string[];
    try {
      names = await readdirNames(d);
    } catch (e) {
      err('scandir', d, e);
      continue;
    }
    for (const n of names) {
      const p = join(d, n);
      rep.names++;
      try {
        const st = await lstat(byteName(p));
        if (st.isDirectory()) dirs.push(p);
      } catch (e) {
        err('lstat', p, e);
        continue;
      }
      try {
        await listxattr(p);
      } catch (e) {
        err('llistxattr', p, e);
      }
    }
  }
  rep.walks++;
}

async function main(): Promise<void> {
  const [root, stopFile, outFile, once, probeList, markFile] = process.argv.slice(2);
  const probes = probeList !== undefined && probeList !== '' ? probeList.split('\n') : [];
  const rep: WalkReport = { walks: 0, names: 0, errors: [], walksAfter: 0, errorsAfter: [] };
  const t0 = Date.now();
  do {
    await walkOnce(root!, rep, t0, probes, markFile !== undefined && existsSync(markFile));
  } while (once !== '--once' && !existsSync(stopFile!));
  writeFileSync(outFile!, JSON.stringify(rep));
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) void main();
