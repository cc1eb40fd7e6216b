// What `strata recover` and `strata mount` load before they spawn the daemon,
// and what the daemon loads to serve: the time to serve is mostly two Node
// starts, so neither process may load the archive server, snapshot rules
// (yaml), SQLite, Prometheus (prom-client) or the S3 SDK unless asked
// (docs/recovery.md, "Time to serve"). No mount, no network.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const HOOK = fileURLToPath(new URL('../helpers/record-loads.js', import.meta.url));
const CLI = join(REPO, 'bin/strata.js');
const HEAVY = ['yaml', 'prom-client', 'better-sqlite3', '@aws-sdk', '@opentelemetry'];

/** Runs node with the load recorder; returns its exit status, stderr and the URLs it loaded. */
function loads(args: string[]): { status: number | null; stderr: string; urls: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'strata-loads-'));
  const log = join(dir, 'loads');
  writeFileSync(log, '');
  try {
    const r = spawnSync(process.execPath, ['--import', HOOK, ...args], { env: { ...process.env, STRATA_LOAD_LOG: log }, encoding: 'utf8', cwd: dir });
    return { status: r.status, stderr: r.stderr, urls: [...new Set(readFileSync(log, 'utf8').split('\n').filter((l) => l !== ''))] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function packagesOf(urls: string[]): string[] {
  const out = new Set<string>();
  for (const u of urls) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u);
    if (m) out.add(m[1]!);
  }
  return [...out].sort();
}

test('strata recover checks its command line and the store with the CLI parser alone: no daemon, archive or FUSE module', (t) => {
  // A store that is a file: refused by the check that runs right before the daemon is spawned.
  const r = loads([CLI, 'recover', '/nonexistent-mnt', '--archive', 'file:///nonexistent-archive', '--volume', 'v', '--store', '/etc/hostname']);
  t.is(r.status, 1, r.stderr);
  t.regex(r.stderr, /exists and is not a directory/);
  t.true(r.urls.some((u) => u.endsWith('/dist/src/cli/mount-command.js')), 'the recorder saw the command module');
  t.deepEqual(packagesOf(r.urls), ['commander']);
  const strataModules = r.urls.filter((u) => u.includes('/dist/src/'));
  t.false(strataModules.some((u) => /\/dist\/src\/(daemon\/mount-daemon|fuse|archive|archive-client|restore|mirror|core)\//.test(u) || u.endsWith('/mount-daemon.js')), strataModules.join('\n'));
  t.true(strataModules.length <= 10, `${strataModules.length} strata modules:\n${strataModules.join('\n')}`);
});

test('the daemon (strata mount/recover --foreground) loads no archive-server, snapshot-rule, SQLite, metrics or S3 package', (t) => {
  const r = loads(['--input-type=module', '-e', `await import(${JSON.stringify(join(REPO, 'dist/src/cli/mount-foreground.js'))});`]);
  t.is(r.status, 0, r.stderr);
  t.true(r.urls.some((u) => u.endsWith('/dist/src/daemon/mount-daemon.js')), 'the recorder saw the daemon');
  const heavy = packagesOf(r.urls).filter((p) => HEAVY.some((h) => p === h || p.startsWith(`${h}/`)));
  t.deepEqual(heavy, []);
});

test('the recorder sees what a command does load (strata archive serve loads SQLite and the rules parser)', (t) => {
  const r = loads(['--input-type=module', '-e', `await import(${JSON.stringify(join(REPO, 'dist/src/cli/archive-command.js'))});`]);
  t.is(r.status, 0, r.stderr);
  const pkgs = packagesOf(r.urls);
  t.true(pkgs.includes('better-sqlite3'), pkgs.join(' '));
  t.true(pkgs.includes('yaml'), pkgs.join(' '));
});
