// The control channel of a running daemon: a Unix socket per mountpoint under
// the run directory, speaking one JSON request and one JSON reply per line.
// `strata status` and `strata unmount` use it; the daemon never has to be
// reached through its own mountpoint.
import { createServer, createConnection, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CheckpointRequest } from './checkpoint-control.js';
import type { SwapRequest } from '../swap/controller.js';

export function runDir(): string {
  return process.env.STRATA_RUN_DIR ?? '/run/strata';
}

export function controlSocketPath(mountpoint: string): string {
  const id = createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 24);
  return join(runDir(), `${id}.sock`);
}

export type ControlRequest = { cmd: 'status' } | { cmd: 'unmount'; lazy?: boolean } | { cmd: 'sync'; timeoutMs?: number }
  | { cmd: 'release'; timeoutMs?: number; lazy?: boolean } | CheckpointRequest | { cmd: 'swap'; swap: SwapRequest }
  /** Test only: the daemon's main thread busy-waits `ms` (at most 10 s); refused unless STRATA_TEST_HOOKS=1 (docs/recovery.md, "The mount's answers during a restore"). */
  | { cmd: 'test-block'; ms: number };
export type ControlReply = { ok: true; result: unknown } | { ok: false; error: string };
export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export function serveControl(mountpoint: string, handler: ControlHandler): Promise<Server> {
  const path = controlSocketPath(mountpoint);
  mkdirSync(runDir(), { recursive: true, mode: 0o700 });
  rmSync(path, { force: true });
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 65536) { sock.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      let req: ControlRequest;
      try {
        req = JSON.parse(line) as ControlRequest;
      } catch {
        sock.end(JSON.stringify({ ok: false, error: 'malformed request' }) + '\n');
        return;
      }
      handler(req).then(
        (result) => sock.end(JSON.stringify({ ok: true, result }) + '\n'),
        (err: unknown) => sock.end(JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) }) + '\n'),
      );
    });
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolvePromise(server));
  });
}

/** Sends one request to the daemon serving `mountpoint`; rejects with code ENOENT/ECONNREFUSED when none runs. */
export function callControl(mountpoint: string, req: ControlRequest, timeoutMs = 30_000): Promise<unknown> {
  const path = controlSocketPath(mountpoint);
  return new Promise((resolvePromise, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer from the daemon within ${timeoutMs} ms`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => { buf += c; });
    sock.on('error', (err) => { clearTimeout(timer); reject(err); });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(buf) as ControlReply;
        if (reply.ok) resolvePromise(reply.result);
        else reject(new Error(reply.error));
      } catch {
        reject(new Error('malformed reply from the daemon'));
      }
    });
  });
}
