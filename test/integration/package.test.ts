// strata as a package (issue 11): `npm pack` gives a tarball whose own native
// code (the FUSE bridge and the block-copy addon) is prebuilt inside it
// (prebuildify, at prepack), so `npm install -g ./strata-*.tgz` on this machine
// compiles neither (nor better-sqlite3, whose build the tarball carries for the
// same version on the same Node; another version is compiled), and
// the installed `strata demo` mounts, loses its store and recovers.
//
// The pack runs in a copy of the checkout without .git (prepack rebuilds
// build/ and prebuilds/, which the other tests' daemons load from here).
// Needs the npm registry (or a warm npm cache) for the dependencies, as `npm ci` does.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const readJson = (path: string): { version: string } => JSON.parse(readFileSync(path, 'utf8')) as { version: string };
const SQLITE_VERSION = readJson(join(REPO, 'node_modules', 'better-sqlite3', 'package.json')).version;
const CARRIED_SQLITE = `${process.platform}-${process.arch}-${SQLITE_VERSION}-node-v${process.versions.modules}.node`;

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
let installedRoot: string | null = null;
let carriedServes = false;

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
  t.true(listing.includes(`package/prebuilds/better-sqlite3/${CARRIED_SQLITE}`), 'the checkout\'s better-sqlite3 build is carried');
  t.false(listing.some((n) => n.includes('/patches/')), 'no patch step');
  tarball = join(base, name!);
});

test.serial('npm install -g of the tarball compiles neither of strata\'s own binaries', async (t) => {
  if (tarball === null) return t.fail('no tarball (the pack step failed)');
  const prefix = join(base, 'prefix');
  // 8 min: an install that must compile better-sqlite3 (another version resolved) takes minutes on 2 cores.
  const install = await run('npm', ['install', '-g', '--prefix', prefix, '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball], base, 8 * 60_000);
  t.is(install.status, 0, `${install.status === null ? 'timed out or failed to start: ' : ''}${install.out.slice(-4000)}`);
  t.regex(install.out, /FUSE bridge: prebuilt/);
  t.regex(install.out, /strata native addon: prebuilt/);
  // The carried better-sqlite3 build serves when npm resolved the same version (it compiles otherwise).
  const installedSqlite = readJson(join(prefix, 'lib', 'node_modules', 'strata', 'node_modules', 'better-sqlite3', 'package.json')).version;
  if (installedSqlite === SQLITE_VERSION) t.regex(install.out, /better-sqlite3: prebuilt/);
  else t.log(`npm resolved better-sqlite3 ${installedSqlite}, the checkout has ${SQLITE_VERSION}: compiled at install`);
  t.notRegex(install.out, /build the FUSE bridge|build strata native addon|build better-sqlite3/, 'strata compiles none of them at install');
  carriedServes = installedSqlite === SQLITE_VERSION;
  installed = join(prefix, 'bin', 'strata');
  installedRoot = join(prefix, 'lib', 'node_modules', 'strata');
});

test.serial('the installed strata runs its demo: mount, disk loss, recover (on the carried better-sqlite3 build)', async (t) => {
  if (installed === null || installedRoot === null) return t.fail('not installed (an earlier step failed)');
  // As when npm denies better-sqlite3's own install script: no build of its own,
  // so the archive's databases open with the build the tarball carries.
  if (carriedServes) rmSync(join(installedRoot, 'node_modules', 'better-sqlite3', 'build'), { recursive: true, force: true });
  const demo = await run(installed, ['demo'], base, 4 * 60_000);
  t.is(demo.status, 0, demo.out.slice(-4000));
  t.regex(demo.out, /demo finished: all steps passed/);
});
