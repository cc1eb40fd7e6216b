#!/usr/bin/env node
// prepack: prebuilds strata's own native code with prebuildify (N-API, so one
// binary serves every Node >= 20 on this platform), into prebuilds/<platform>-<arch>/:
//  - the FUSE bridge (native/fuse-native: fuse-native.node; it links libfuse3.so.3,
//    so the machine that installs the tarball needs Debian's libfuse3-3);
//  - strata's block-copy addon (binding.gyp at the top: strata.node);
//  - and a copy of this checkout's better-sqlite3 build, named for its version and
//    Node's module ABI (better-sqlite3 is not N-API): an install with the same
//    better-sqlite3 on the same Node takes it instead of compiling SQLite (minutes
//    on a small machine); any other install compiles it as before.
// Both are loaded with node-gyp-build, which takes build/Release first (a
// checkout) and prebuilds/ otherwise (an installed tarball). scripts/build-native.mjs
// then skips compiling them at install.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))
const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js')
// Node's own headers when it ships them (no download: this network forbids it).
const env = { ...process.env }
const nodePrefix = dirname(dirname(process.execPath))
if (!env.npm_config_nodedir && existsSync(join(nodePrefix, 'include', 'node', 'common.gypi'))) env.npm_config_nodedir = nodePrefix

for (const dir of [join(root, 'native', 'fuse-native'), root]) {
  process.stderr.write(`[strata prebuild] ${dir}\n`)
  const res = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '-t', process.versions.node], { cwd: dir, stdio: 'inherit', env })
  if (res.status !== 0) process.exit(res.status || 1)
}

const sqliteDir = dirname(require.resolve('better-sqlite3/package.json'))
const sqliteBuild = join(sqliteDir, 'build', 'Release', 'better_sqlite3.node')
if (existsSync(sqliteBuild)) {
  const { version } = JSON.parse(readFileSync(join(sqliteDir, 'package.json'), 'utf8'))
  // Not in prebuilds/<platform>-<arch>/: node-gyp-build would take any .node there for strata's addon.
  const dir = join(root, 'prebuilds', 'better-sqlite3')
  const dest = join(dir, `${process.platform}-${process.arch}-${version}-node-v${process.versions.modules}.node`)
  mkdirSync(dir, { recursive: true })
  copyFileSync(sqliteBuild, dest)
  process.stderr.write(`[strata prebuild] better-sqlite3 ${version}: ${dest}\n`)
}
