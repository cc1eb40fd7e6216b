#!/usr/bin/env node
// postinstall: compiles the TypeScript (tsc -p tsconfig.json) in a checkout.
// Installed from strata's tarball, without devDependencies, there is no tsc:
// the tarball carries dist/src (compiled by prepack), which is used as it is.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'package.json'))
// The compiler's entry point, from its package.json (its exports map hides bin/).
let tsc = null
try {
  const pkgPath = require.resolve('typescript/package.json')
  const bin = JSON.parse(readFileSync(pkgPath, 'utf8')).bin
  tsc = join(dirname(pkgPath), typeof bin === 'string' ? bin : bin.tsc)
} catch {}
if (tsc !== null && existsSync(join(root, 'tsconfig.json'))) {
  const res = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' })
  process.exit(res.status ?? 1)
}
if (!existsSync(join(root, 'dist', 'src', 'cli', 'main.js'))) {
  process.stderr.write('[strata build] no TypeScript compiler and no compiled dist/src: install the devDependencies and run npm run compile\n')
  process.exit(1)
}
