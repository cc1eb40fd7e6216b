// systemd's readiness protocol (Type=notify units, examples/*.service) without
// systemd: the test binds the notification socket itself (NOTIFY_SOCKET) and
// checks that `strata mount --foreground` says READY=1 only once the mount
// serves, STOPPING=1 on SIGTERM, and exits 0 with the mount gone; the same for
// `strata archive serve`. Here systemd is not PID 1, so systemd-run is not
// tried (see the README's "Running in production").
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, mountpointIsMounted } from '../helpers/mount.js';
import { forceUnmount } from '../helpers/mirror.js';
import { openNotifySocket } from '../helpers/notify-socket.js';

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

function setup(t: import('ava').ExecutionContext): { base: string; store: string; mnt: string } {
  const base = mkdtempSync(join(tmpdir(), 'strata-systemd-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  t.teardown(() => {
    forceUnmount(mnt);
    if (existsSync(base)) rmSync(base, { recursive: true, force: true });
  });
  return { base, store: join(base, 'store'), mnt };
}

test('strata mount --foreground: READY=1 from the daemon itself once the mount serves, STOPPING=1 on SIGTERM, exit 0 and the mount gone', async (t) => {
  const { base, store, mnt } = setup(t);
  const sock = await openNotifySocket(join(base, 'notify.sock'));
  t.teardown(() => sock.close());
  // Relative paths (from the test's base): the daemon chdirs into its store, yet says where it serves absolutely.
  const child = spawn(process.execPath, [CLI, 'mount', '--foreground', '--store', 'store', 'mnt'], {
    cwd: base, env: { ...process.env, NOTIFY_SOCKET: sock.path }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { log += d; });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });

  const ready = await sock.waitFor('READY', '1');
  // Said by the main process (NotifyAccess=main suffices), and true when said: the mount serves.
  t.is(ready.pid, child.pid!);
  t.true(mountpointIsMounted(mnt), 'mounted when READY=1 arrives');
  writeFileSync(join(mnt, 'hello'), 'through the mount\n');
  t.is(readFileSync(join(store, 'hello'), 'utf8'), 'through the mount\n');
  t.is(ready.fields['STATUS'], `serving ${store} at ${mnt}`);
  t.is(sock.messages.filter((m) => m.fields['READY'] === '1').length, 1);
  t.is(sock.messages.filter((m) => m.fields['STOPPING'] === '1').length, 0);
  child.kill('SIGTERM');
  const stopping = await sock.waitFor('STOPPING', '1');
  t.is(stopping.pid, child.pid!);
  t.is(await exited(child), 0, log);
  t.false(mountpointIsMounted(mnt), 'unmounted');
  t.true(sock.messages.every((m) => m.pid === child.pid), 'every message from the daemon itself');
});

test('a mount that cannot start says no READY=1 and exits 1', async (t) => {
  const { base, store } = setup(t);
  const sock = await openNotifySocket(join(base, 'notify.sock'));
  t.teardown(() => sock.close());
  const child = spawn(process.execPath, [CLI, 'mount', '--foreground', '--store', store, join(base, 'no-such-dir')], {
    env: { ...process.env, NOTIFY_SOCKET: sock.path }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { log += d; });
  t.is(await exited(child), 1);
  t.regex(log, /does not exist or is not a directory/);
  // Give a stray datagram time to arrive before checking there is none.
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(sock.messages.filter((m) => m.fields['READY'] === '1'), []);
});

test('strata archive serve: READY=1 once it accepts connections (abstract socket name), STOPPING=1 on SIGTERM, exit 0', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-systemd-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  writeFileSync(join(base, 'token'), 'token-of-this-test\n', { mode: 0o600 });
  const sock = await openNotifySocket(`@strata-test-${process.pid}-${Date.now()}`);
  t.teardown(() => sock.close());
  const child = spawn(process.execPath, [CLI, 'archive', 'serve', '--data', join(base, 'data'), '--listen', '127.0.0.1:0', '--token-file', join(base, 'token')], {
    env: { ...process.env, NOTIFY_SOCKET: sock.path }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr!.resume();
  const ready = await sock.waitFor('READY', '1');
  t.is(ready.pid, child.pid!);
  // The address line is written before READY=1, on another channel: wait for it to arrive.
  while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 10));
  const listening = (JSON.parse(out.split('\n')[0]!) as { listening: string }).listening;
  const port = Number(listening.slice(listening.lastIndexOf(':') + 1));
  await new Promise<void>((resolve, reject) => {
    const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(); });
    c.once('error', reject);
  });
  t.pass('accepts connections when READY=1 arrives');
  child.kill('SIGTERM');
  const stopping = await sock.waitFor('STOPPING', '1');
  t.is(stopping.pid, child.pid!);
  t.is(await exited(child), 0);
});

test('strata archive serve: a SIGTERM the moment READY=1 arrives still gets STOPPING=1 and exit 0 (the handlers are in place before READY=1 is sent)', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-systemd-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  writeFileSync(join(base, 'token'), 'token-of-this-test\n', { mode: 0o600 });
  const sock = await openNotifySocket(`@strata-test-${process.pid}-${Date.now()}-early`);
  t.teardown(() => sock.close());
  const child = spawn(process.execPath, [CLI, 'archive', 'serve', '--data', join(base, 'data'), '--listen', '127.0.0.1:0', '--token-file', join(base, 'token')], {
    env: { ...process.env, NOTIFY_SOCKET: sock.path }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { log += d; });
  await sock.waitFor('READY', '1');
  child.kill('SIGTERM');
  const stopping = await sock.waitFor('STOPPING', '1');
  t.is(stopping.pid, child.pid!);
  t.is(await exited(child), 0, log);
});
