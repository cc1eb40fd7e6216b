// strata as a package (issue 11): `npm pack` gives a tarball whose own native
// code (the FUSE bridge and the block-copy addon) is prebuilt inside it
// (prebuildify, at prepack), so `npm install -g ./strata-*.tgz` on this machine
// compiles neither (only better-sqlite3, from its bundled SQLite sources), and
// the installed `strata demo` mounts, loses its store and recovers.
//
// The pack runs in a copy of the checkout without .git (prepack rebuilds
// build/ and prebuilds/, which the other tests' daemons load from here).
// Needs the npm registry (or a warm npm cache) for the dependencies, as `npm ci` does.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

/** Runs a command without blocking the test worker; its status and output. */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<{ status: number | null; out: string }> {
  return new Promise((resolvePromise) => {
    const p = spawn(cmd, args, { cwd, env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.on('error', (err) => resolvePromise({ status: null, out: `${out}${err.message}` }));
    p.on('close', (status) => resolvePromise({ status, out }));
  });
}

// Three steps, each within ava's timeout; a later one is skipped in effect when an earlier failed.
const base = mkdtempSync('/var/tmp/strata-package-');
test.after.always(() => rmSync(base, { recursive: true, force: true }));
let tarball: string | null = null;
let installed: string | null = null;

test.serial('npm pack of a copy of the checkout carries both native binaries prebuilt and no patch', async (t) => {
  const src = join(base, 'src');
  mkdirSync(src);
  const copy = await run('bash', ['-c', `tar -C ${JSON.stringify(REPO)} --exclude=./.git --exclude=./prebuilds --exclude=./native/fuse-native/prebuilds -cf - . | tar -C ${JSON.stringify(src)} -xf -`], base, 120_000);
  t.is(copy.status, 0, copy.out);
  const pack = await run('npm', ['pack', '--pack-destination', base], src, 4 * 60_000);
  t.is(pack.status, 0, pack.out.slice(-4000));
  const name = readdirSync(base).find((n) => n.endsWith('.tgz'));
  t.truthy(name, 'npm pack made a tarball');
  const listing = (await run('tar', ['tzf', join(base, name!)], base, 60_000)).out.split('\n');
  t.true(listing.includes('package/prebuilds/linux-x64/strata.node'), 'the block-copy addon is prebuilt in the tarball');
  t.true(listing.includes('package/node_modules/fuse-native/prebuilds/linux-x64/fuse-native.node'), 'the FUSE bridge is prebuilt in the tarball');
  t.false(listing.some((n) => n.includes('/patches/')), 'no patch step');
  tarball = join(base, name!);
});

test.serial('npm install -g of the tarball compiles neither of strata\'s own binaries', async (t) => {
  if (tarball === null) return t.fail('no tarball (the pack step failed)');
  const prefix = join(base, 'prefix');
  const install = await run('npm', ['install', '-g', '--prefix', prefix, '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball], base, 4 * 60_000);
  t.is(install.status, 0, install.out.slice(-4000));
  t.regex(install.out, /FUSE bridge: prebuilt/);
  t.regex(install.out, /strata native addon: prebuilt/);
  t.notRegex(install.out, /build the FUSE bridge|build strata native addon/, 'neither is compiled at install');
  installed = join(prefix, 'bin', 'strata');
});

test.serial('the installed strata runs its demo: mount, disk loss, recover', async (t) => {
  if (installed === null) return t.fail('not installed (an earlier step failed)');
  const demo = await run(installed, ['demo'], base, 4 * 60_000);
  t.is(demo.status, 0, demo.out.slice(-4000));
  t.regex(demo.out, /demo finished: all steps passed/);
});
