// A real `strata archive serve` process for tests: temp data dir and token
// file, port 0 (the port it got is kept across restart()), optional TLS with
// a self-signed certificate. Register stop() in t.teardown.
import { createServer } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './mount.js';

export interface StartArchiveOptions {
  /** Data directory; default a fresh one (deleted by stop()). */
  dataDir?: string;
  /** Serve stratas:// with a self-signed certificate for 127.0.0.1/localhost (caFile). */
  tls?: boolean;
  token?: string;
  logLevel?: string;
  extraArgs?: string[];
  /** Address to listen on (default 127.0.0.1; the URL names it). */
  host?: string;
  /** Run the server in this network namespace (`ip netns exec`). */
  netns?: string;
}

export interface ArchiveServer {
  /** strata://127.0.0.1:PORT or stratas://localhost:PORT. */
  readonly url: string;
  readonly tokenFile: string;
  readonly token: string;
  readonly dataDir: string;
  readonly port: number;
  /** The certificate to trust (tlsCa) when tls. */
  readonly caFile?: string;
  readonly pid: number;
  /** Everything the server(s) wrote on stderr (JSON log lines), across restarts. */
  logs(): string;
  /** SIGTERM, wait for exit (SIGKILL after 10 s); deletes the temp directory. Returns the exit code. Idempotent. */
  stop(): Promise<number | null>;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts a new server on the same data directory and port. */
  restart(): Promise<void>;
}

export function makeSelfSignedCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { cert, key };
}

interface Running {
  proc: ChildProcess;
  exited: Promise<number | null>;
}

function launch(args: string[], logSink: (s: string) => void, netns?: string): Promise<{ run: Running; port: number }> {
  const argv = [process.execPath, CLI, 'archive', 'serve', ...args];
  // `ip netns exec` execs the command: the child's pid is the server's.
  const proc = netns === undefined ? spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err = (err + s).slice(-4000);
    logSink(s);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let ready = false;
    // A test that blocks this worker (a spawnSync of the CLI) can make the
    // timer fire before the "listening" line already in the pipe is read: the
    // verdict waits for the loop's poll phase (setImmediate runs after it).
    const timer = setTimeout(() => setImmediate(() => {
      if (ready) return;
      proc.kill('SIGKILL');
      reject(new Error(`archive server not ready after 60 s; stdout: ${out}; stderr: ${err}`));
    }), 60_000);
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (!line || ready) return;
      ready = true;
      clearTimeout(timer);
      const listening = (JSON.parse(line) as { listening: string }).listening;
      resolve({ run: { proc, exited }, port: Number(listening.slice(listening.lastIndexOf(':') + 1)) });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`archive server exited (${code}) before it was ready`));
    });
  });
}

export async function startArchiveServer(opts: StartArchiveOptions = {}): Promise<ArchiveServer> {
  const base = mkdtempSync(join(tmpdir(), 'strata-archive-'));
  const dataDir = opts.dataDir ?? join(base, 'data');
  const token = opts.token ?? `tok-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const tokenFile = join(base, 'token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const tls = opts.tls ? makeSelfSignedCert(base) : undefined;
  let logText = '';
  const args = (port: number): string[] => [
    '--data', dataDir, '--listen', `${opts.host ?? '127.0.0.1'}:${port}`, '--token-file', tokenFile, '--log-level', opts.logLevel ?? 'info',
    ...(tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []), ...(opts.extraArgs ?? []),
  ];
  let { run, port } = await launch(args(0), (s) => { logText += s; }, opts.netns);
  let stopped = false;
  const server: ArchiveServer = {
    url: tls ? `stratas://localhost:${port}` : `strata://${opts.host ?? '127.0.0.1'}:${port}`,
    tokenFile,
    token,
    dataDir,
    port,
    ...(tls ? { caFile: tls.cert } : {}),
    get pid() { return run.proc.pid!; },
    logs: () => logText,
    async stop() {
      let code: number | null = null;
      if (run.proc.exitCode === null && run.proc.signalCode === null) {
        run.proc.kill('SIGTERM');
        const timer = setTimeout(() => run.proc.kill('SIGKILL'), 10_000);
        code = await run.exited;
        clearTimeout(timer);
      } else {
        code = await run.exited;
      }
      if (!stopped) {
        stopped = true;
        rmSync(base, { recursive: true, force: true });
      }
      return code;
    },
    async kill() {
      if (run.proc.exitCode === null && run.proc.signalCode === null) run.proc.kill('SIGKILL');
      await run.exited;
    },
    async restart() {
      await server.kill();
      // The port was ours a moment ago; another process could take it in between (rare), so retry briefly.
      for (let i = 0; ; i++) {
        try {
          run = (await launch(args(port), (s) => { logText += s; }, opts.netns)).run;
          return;
        } catch (err) {
          if (i >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
  return server;
}

/** A TCP port nobody listens on now (bound and closed: a small race, acceptable on a test machine). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}
