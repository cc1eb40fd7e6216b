#!/usr/bin/env node
// Builds strata's native code on `npm install` / `npm ci`:
//  1. strata's FUSE bridge: the in-tree fork of fuse-native (native/fuse-native,
//     a `file:` dependency, so node_modules/fuse-native links to it), built from
//     its sources against libfuse 3 (libfuse3-dev, found with pkg-config;
//     docs/fuse-bridge.md);
//  2. better-sqlite3 (the archive's metadata database) from its bundled
//     SQLite sources: its own install script would download a prebuilt binary
//     (an installed tarball carries one built where it was packed, loaded
//     when better-sqlite3 has no build of its own and its version and Node's
//     module ABI match: then it is not compiled here);
//  3. strata's own addon (binding.gyp at the top).
// npm 11 does not run dependencies' install scripts unless allowed, so this, the
// root package's own install script, is where all native code gets built.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))

function run (label, cmd, args, cwd) {
  process.stderr.write(`[strata build] ${label}: ${cmd} ${args.join(' ')} (in ${cwd})\n`)
  const res = spawnSync(cmd, args, { cwd, stdio: 'inherit' })
  if (res.status !== 0) {
    process.stderr.write(`[strata build] ${label} failed (exit ${res.status ?? res.signal})\n`)
    process.exit(res.status || 1)
  }
}

// node-gyp: the devDependency in a checkout; npm's own (npm_config_node_gyp)
// when strata is installed from its tarball, without devDependencies.
function findNodeGyp () {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js')
  } catch (err) {
    if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp
    throw err
  }
}
const nodeGyp = findNodeGyp()
// Build against the headers of the running Node when it ships them (Debian's and
// the official tarballs do): no header download, which this network forbids.
const gypArgs = ['rebuild', '--release']
const nodePrefix = dirname(dirname(process.execPath))
if (process.env.npm_config_nodedir) gypArgs.push(`--nodedir=${process.env.npm_config_nodedir}`)
else if (existsSync(join(nodePrefix, 'include', 'node', 'common.gypi'))) gypArgs.push(`--nodedir=${nodePrefix}`)

// An installed tarball carries both of strata's own binaries prebuilt
// (scripts/prebuild.mjs, at prepack): nothing of them to compile then.
// A git checkout always compiles them (its prebuilds/ may be older than its
// sources), and STRATA_BUILD_FROM_SOURCE=1 does anywhere.
const platformDir = `${process.platform}-${process.arch}`
const prebuilt = (dir) => !process.env.STRATA_BUILD_FROM_SOURCE && !existsSync(join(root, '.git')) && existsSync(join(dir, 'prebuilds', platformDir))

const fuseNativeDir = dirname(require.resolve('fuse-native/package.json'))
if (prebuilt(fuseNativeDir)) process.stderr.write(`[strata build] FUSE bridge: prebuilt (${join(fuseNativeDir, 'prebuilds', platformDir)})\n`)
else run('build the FUSE bridge (fuse-native fork)', process.execPath, [nodeGyp, ...gypArgs], fuseNativeDir)

// better-sqlite3: an installed tarball carries the packing checkout's build, named
// for its version and Node's module ABI (scripts/prebuild.mjs); it is used when
// both match, and compiled otherwise.
const sqliteDir = dirname(require.resolve('better-sqlite3/package.json'))
const sqliteBuild = join(sqliteDir, 'build', 'Release', 'better_sqlite3.node')
const sqliteVersion = JSON.parse(readFileSync(join(sqliteDir, 'package.json'), 'utf8')).version
const sqliteCarried = join(root, 'prebuilds', 'better-sqlite3', `${platformDir}-${sqliteVersion}-node-v${process.versions.modules}.node`)
if (process.env.STRATA_SKIP_SQLITE_BUILD && existsSync(sqliteBuild)) {
  process.stderr.write('[strata build] better-sqlite3: kept the existing build (STRATA_SKIP_SQLITE_BUILD)\n')
} else if (prebuilt(root) && existsSync(sqliteCarried)) {
  // Nothing is written into better-sqlite3's folder: npm may run its own install
  // script (prebuild-install || node-gyp rebuild) at the same time. Whatever it
  // builds serves; without it strata loads the carried build (src/archive/sqlite.ts).
  process.stderr.write(`[strata build] better-sqlite3: prebuilt (${sqliteCarried})\n`)
} else {
  run('build better-sqlite3', process.execPath, [nodeGyp, ...gypArgs, `--jobs=${Math.max(1, availableParallelism())}`], sqliteDir)
}

if (prebuilt(root)) process.stderr.write(`[strata build] strata native addon: prebuilt (${join(root, 'prebuilds', platformDir)})\n`)
else if (existsSync(join(root, 'binding.gyp'))) run('build strata native addon', process.execPath, [nodeGyp, ...gypArgs], root)
