// systemd's side of sd_notify(3), for tests without systemd: a unix datagram
// socket (Node cannot open one, so a small python3 program does; node-gyp
// needs python3, so it is wherever strata builds), which reports every message
// with the sender's pid from SCM_CREDENTIALS, as systemd sees it.
import { spawn, type ChildProcess } from 'node:child_process';

export interface NotifyMessage {
  /** The sender's pid (the kernel's credentials, not what the sender claims). */
  pid: number;
  /** KEY=VALUE fields. */
  fields: Record<string, string>;
  /** Milliseconds since the receiver started (for ordering only). */
  at: number;
}

export interface NotifySocket {
  readonly path: string;
  readonly messages: NotifyMessage[];
  /** Resolves with the first message (from now on or already received) that has `key`=`value`; rejects after `ms`. */
  waitFor(key: string, value: string, ms?: number): Promise<NotifyMessage>;
  close(): Promise<void>;
}

const RECEIVER = `
import json, os, socket, struct, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + path[1:] if path.startswith("@") else path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
t0 = time.monotonic()
print(json.dumps({"bound": path}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = 0
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    print(json.dumps({"pid": pid, "msg": data.decode("utf-8", "replace"), "at": (time.monotonic() - t0) * 1000}), flush=True)
`;

/** Binds a receiver at `path` ("@name": the abstract namespace); close() stops it. */
export function openNotifySocket(path: string): Promise<NotifySocket> {
  const proc: ChildProcess = spawn('python3', ['-c', RECEIVER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages: NotifyMessage[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  return new Promise((resolve, reject) => {
    let buf = '';
    let bound = false;
    proc.once('exit', (code) => { if (!bound) reject(new Error(`notify receiver exited (${code}): ${stderr}`)); });
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl)) as { bound?: string; pid?: number; msg?: string; at?: number };
        buf = buf.slice(nl + 1);
        if (line.bound !== undefined) {
          bound = true;
          resolve(sock);
          continue;
        }
        const fields: Record<string, string> = {};
        for (const l of (line.msg ?? '').split('\n')) {
          const eq = l.indexOf('=');
          if (eq > 0) fields[l.slice(0, eq)] = l.slice(eq + 1);
        }
        messages.push({ pid: line.pid ?? 0, fields, at: line.at ?? 0 });
        for (const w of waiters.splice(0)) w();
      }
    });
    const sock: NotifySocket = {
      path,
      messages,
      waitFor(key, value, ms = 60_000) {
        return new Promise((res, rej) => {
          const timer = setTimeout(() => rej(new Error(`no ${key}=${value} within ${ms} ms; got ${JSON.stringify(messages)}`)), ms);
          const check = (): void => {
            const m = messages.find((x) => x.fields[key] === value);
            if (m) {
              clearTimeout(timer);
              res(m);
            } else {
              waiters.push(check);
            }
          };
          check();
        });
      },
      close() {
        return new Promise((res) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return res();
          proc.once('exit', () => res());
          proc.kill('SIGTERM');
        });
      },
    };
  });
}
