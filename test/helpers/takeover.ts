// Leases and takeover for the integration tests: a real `strata archive serve`
// (optionally with --takeover-dir), primaries mounted against it (directly or
// through a TCP proxy that a test can cut, to make a network partition), the
// archive's status (`strata archive status --json`), and a load of writes
// that records every file whose fsync returned. Everything is unmounted,
// stopped and removed in teardown, even when the test fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { startArchiveServer, type ArchiveServer } from './archive.js';
import { forceUnmount, mount, type MirroredMount } from './mirror.js';
import { strata } from './mount.js';
import type { VolumeLease } from '../../src/protocol/leases.js';

export interface Site {
  base: string;
  server: ArchiveServer;
  /** --takeover-dir of the server (when armed). */
  takeoverDir: string;
}

/** A server (takeover armed when `takeoverAfter` is given); teardown unmounts every takeover mount and stops it. */
export async function startSite(t: ExecutionContext, opts: { takeoverAfter?: number; takeoverLease?: number; onTakeover?: string; depth?: number } = {}): Promise<Site> {
  const base = mkdtempSync(join(tmpdir(), 'strata-takeover-'));
  // --on-takeover commands of the tests write to $HOOK_LOG.
  process.env.HOOK_LOG = join(base, 'hook.log');
  const takeoverDir = join(base, 'takeover');
  const extra = opts.takeoverAfter === undefined ? [] : [
    '--takeover-dir', takeoverDir, '--takeover-after', String(opts.takeoverAfter), '--takeover-lease', String(opts.takeoverLease ?? 3),
    '--takeover-depth', String(opts.depth ?? 2), ...(opts.onTakeover !== undefined ? ['--on-takeover', opts.onTakeover] : []),
  ];
  const server = await startArchiveServer({ extraArgs: extra });
  t.teardown(async () => {
    // Takeover mounts first (they are detached daemons), then the server, then the files.
    if (existsSync(takeoverDir)) {
      for (const v of readdirSafe(takeoverDir)) forceUnmount(join(takeoverDir, v, 'mnt'));
    }
    await server.stop();
    if (existsSync(base)) rmSync(base, { recursive: true, force: true });
  });
  return { base, server, takeoverDir };
}

function readdirSafe(dir: string): string[] {
  try {
    return spawnSync('ls', [dir], { encoding: 'utf8' }).stdout.split('\n').filter((x) => x.length > 0 && !x.endsWith('.json'));
  } catch {
    return [];
  }
}

let n = 0;

/** A primary of `volume` on `site` (through `url` when given: a proxy), mounted with --lease `lease`. */
export function primary(t: ExecutionContext, site: Site, volume: string, opts: { url?: string; lease?: number; mountNow?: boolean; extra?: string[] } = {}): MirroredMount {
  const i = n++;
  const m: MirroredMount = {
    base: site.base, store: join(site.base, `store-${volume}-${i}`), mnt: join(site.base, `mnt-${volume}-${i}`), archiveUrl: site.server.url, volume,
    tokenFile: site.server.tokenFile, args: [],
  };
  m.args = ['--store', m.store, '--archive', opts.url ?? site.server.url, '--volume', volume, '--token-file', site.server.tokenFile,
    '--lease', String(opts.lease ?? 2), ...(opts.extra ?? [])];
  mkdirSync(m.mnt);
  t.teardown(() => forceUnmount(m.mnt));
  if (opts.mountNow !== false) mount(m);
  return m;
}

export function archiveStatus(site: Site): VolumeLease[] {
  const r = strata(['archive', 'status', '--json', '--archive', site.server.url, '--token-file', site.server.tokenFile]);
  if (r.status !== 0) throw new Error(`strata archive status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as VolumeLease[];
}

export function leaseOf(site: Site, volume: string): VolumeLease | undefined {
  return archiveStatus(site).find((r) => r.volume === volume);
}

export async function waitFor<T>(what: string, fn: () => T | null | undefined | false, timeoutMs: number, stepMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Writes a file and fsyncs it (python: one open, write, fsync); returns the errno name on failure, null on success. */
export function writeFsync(path: string, content: string, timeoutMs = 30_000): string | null {
  const r = spawnSync('python3', ['-c', `
import os, sys, errno
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, sys.argv[2].encode())
    os.fsync(fd)
    os.close(fd)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
    sys.exit(1)
`, path, content], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status === 0) return null;
  return (r.stdout.trim() || r.stderr.trim() || `exit ${r.status} ${r.signal ?? ''}`);
}

/** The content the load writes into file `i` of `tag`. */
export function loadContent(tag: string, i: number): string {
  return `${tag} file ${i}\n`.repeat(200);
}

export interface Load {
  /** Stops the writer; resolves with the numbers of the files whose fsync returned. */
  stop(): Promise<number[]>;
  /** Files fsynced so far. */
  done(): number[];
}

/**
 * A steady writer on a mount: file after file under DIR/load/, each written
 * and fsynced; the number of each file whose fsync returned 0 is appended to
 * a log outside the mount (the oracle of I1).
 */
export function startLoad(t: ExecutionContext, mnt: string, tag: string, logDir: string, pauseMs = 50): Load {
  const log = join(logDir, `load-${tag}.log`);
  const script = `
import os, sys, time
d = os.path.join(sys.argv[1], 'load')
os.makedirs(d, exist_ok=True)
log = open(sys.argv[2], 'a')
i = 0
while True:
    i += 1
    data = ((sys.argv[3] + ' file %d\\n' % i) * 200).encode()
    try:
        fd = os.open(os.path.join(d, 'f%d' % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        time.sleep(0.2)
        continue
    log.write('%d\\n' % i)
    log.flush()
    time.sleep(float(sys.argv[4]))
`;
  const p: ChildProcess = spawn('python3', ['-c', script, mnt, log, tag, String(pauseMs / 1000)], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  const done = (): number[] => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => l.length > 0).map(Number) : []);
  const stop = async (): Promise<number[]> => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await exited;
    return done();
  };
  t.teardown(async () => { await stop(); });
  return { stop, done };
}

/** A TCP proxy to the archive that a test can cut (packets vanish: requests hang, nothing is refused) and heal. */
export interface Proxy {
  url: string;
  cut(): Promise<void>;
  heal(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The proxy runs in a process of its own: the tests block their own event
 * loop in spawnSync (strata mount, sh), which must not stall the link.
 * Commands on stdin ("cut", "heal"), each answered by "ok" on stdout.
 */
const PROXY_SCRIPT = `
const net = require('node:net');
const target = Number(process.argv[1]);
let cut = false;
const pairs = new Set();
const server = net.createServer((client) => {
  const pair = [client, null];
  pairs.add(pair);
  client.on('error', () => {});
  client.on('close', () => { if (pair[1]) pair[1].destroy(); pairs.delete(pair); });
  if (cut) { client.on('data', () => {}); return; }
  const up = net.connect(target, '127.0.0.1');
  pair[1] = up;
  up.on('error', () => client.destroy());
  up.on('close', () => client.destroy());
  client.on('data', (d) => { if (!cut) up.write(d); });
  up.on('data', (d) => { if (!cut) client.write(d); });
});
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
let buf = '';
process.stdin.setEncoding('utf8').on('data', (s) => {
  buf += s;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const cmd = buf.slice(0, i); buf = buf.slice(i + 1);
    if (cmd === 'cut') cut = true;
    if (cmd === 'heal') { cut = false; for (const [a, b] of pairs) { a.destroy(); if (b) b.destroy(); } pairs.clear(); }
    process.stdout.write('ok\\n');
  }
});
process.stdin.on('end', () => process.exit(0));
`;

export async function startProxy(t: ExecutionContext, targetPort: number): Promise<Proxy> {
  const p = spawn(process.execPath, ['-e', PROXY_SCRIPT, String(targetPort)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  let out = '';
  const waiters: (() => void)[] = [];
  let oks = 0;
  p.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    const n = (out.match(/^ok$/gm) ?? []).length;
    while (oks < n) { oks++; waiters.shift()?.(); }
  });
  const port = await waitFor('the proxy', () => { const m = /port (\d+)/.exec(out); return m ? Number(m[1]) : null; }, 10_000, 20);
  const command = (cmd: string): Promise<void> => new Promise((resolve) => { waiters.push(resolve); p.stdin!.write(`${cmd}\n`); });
  const close = async (): Promise<void> => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await exited;
  };
  t.teardown(close);
  return { url: `strata://127.0.0.1:${port}`, cut: () => command('cut'), heal: () => command('heal'), close };
}

/** The daemon's pid of a mount. */
export function pidOf(mnt: string): number {
  const r = strata(['status', '--json', mnt]);
  return (JSON.parse(r.stdout) as { pid: number }).pid;
}
