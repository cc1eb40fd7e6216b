// `node --import <this file>`: appends the URL of every module the process
// loads through the ES module loader to the file named by STRATA_LOAD_LOG (one
// per line). Used to check what a command loads (test/unit/cli-startup.test.ts).
import { register } from 'node:module';
import { appendFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

type Next = (specifier: string, context: unknown) => Promise<{ url: string }>;

/** The loader hook (runs on the loader's thread): record, then resolve as usual. */
export async function resolve(specifier: string, context: unknown, next: Next): Promise<{ url: string }> {
  const r = await next(specifier, context);
  const log = process.env['STRATA_LOAD_LOG'];
  if (log) appendFileSync(log, `${r.url}\n`);
  return r;
}

// Imported with --import on the main thread: install this same file as the
// hooks module (which the loader's own thread imports again: no second register there).
if (process.env['STRATA_LOAD_LOG'] && isMainThread) register(import.meta.url);
