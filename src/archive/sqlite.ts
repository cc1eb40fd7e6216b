// Opens the archive's SQLite databases (better-sqlite3). In a checkout, or an
// install whose better-sqlite3 built itself, its own build/Release binary serves.
// An installed strata tarball also carries the packing checkout's build, named
// for better-sqlite3's version and Node's module ABI (scripts/prebuild.mjs):
// when better-sqlite3 has no build of its own (its install script was denied,
// or failed), that one is loaded instead (better-sqlite3's `nativeBinding`).
import Database from 'better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let binding: string | null | undefined;

/** The carried binary to load, or null when better-sqlite3's own build serves (decided once). */
export function carriedSqliteBinding(packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')): string | null {
  if (binding !== undefined) return binding;
  binding = null;
  try {
    const require = createRequire(join(packageRoot, 'package.json'));
    const sqliteDir = dirname(require.resolve('better-sqlite3/package.json'));
    if (!existsSync(join(sqliteDir, 'build', 'Release', 'better_sqlite3.node'))) {
      const { version } = JSON.parse(readFileSync(join(sqliteDir, 'package.json'), 'utf8')) as { version: string };
      const carried = join(packageRoot, 'prebuilds', 'better-sqlite3', `${process.platform}-${process.arch}-${version}-node-v${process.versions.modules}.node`);
      if (existsSync(carried)) binding = carried;
    }
  } catch {
    binding = null;
  }
  return binding;
}

/** `new Database(path, options)`, with the carried binary when better-sqlite3 has none. */
export function openSqlite(path: string, options: Database.Options = {}): Database.Database {
  const carried = carriedSqliteBinding();
  return new Database(path, carried === null ? options : { ...options, nativeBinding: carried });
}
