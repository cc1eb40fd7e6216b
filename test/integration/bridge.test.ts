// strata's FUSE bridge (native/fuse-native) on its own, without the adapter:
// its constants come from its C, and a request handle answers exactly once.
// A second reply, a reply with a handle whose slot now holds a newer request,
// a reply after close() and a number that never was a handle are all refused
// with ERR_FUSE_REQUEST_ANSWERED: no crash, and the kernel gets no second
// answer. These tests mount with the bridge directly, so this process serves
// the mount: everything that touches it runs in a child process, never
// synchronously here.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ll, FC, type Session } from '../../src/fuse/bridge.js';
import { encodeAttr } from '../../src/fuse/attr-encoding.js';
import type * as Bridge from 'fuse-native';

const { ENOSYS, EIO } = osConstants.errno;
const REFUSED = 'ERR_FUSE_REQUEST_ANSWERED';

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The error code a call throws, or 'none'. */
function refusal(f: () => unknown): string {
  try {
    f();
    return 'none';
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
}

interface RawMount {
  mnt: string;
  session: Session;
  exited: Promise<void>;
}

/** Mounts a directory served by `handler` in this process; init and exit are handled here. */
async function rawMount(t: ExecutionContext, handler: (op: number, req: number, ino: number) => void): Promise<RawMount> {
  const base = mkdtempSync(join(tmpdir(), 'strata-bridge-'));
  const mnt = join(base, 'mnt');
  mkdirSync(mnt);
  let ready!: () => void;
  let exited!: () => void;
  const init = new Promise<void>((resolve) => { ready = resolve; });
  const exit = new Promise<void>((resolve) => { exited = resolve; });
  const onRequest: Bridge.RequestHandler = (op, req, ino) => {
    if (op === ll.ops.init) ready();
    else if (op === ll.ops.exit) exited();
    else if (req !== 0) handler(op, req, ino);
  };
  const session = ll.mount(mnt, 'subtype=strata-bridge-test', onRequest, 0);
  t.teardown(async () => {
    if ((await run('mountpoint', ['-q', mnt])).code === 0) await run('fusermount', ['-u', '-z', mnt]);
    rmSync(base, { recursive: true, force: true });
  });
  await init;
  return { mnt, session, exited: exit };
}

test('constants come from the C: every name the types declare has a value, and layouts are dense', (t) => {
  // Compile time: these records must name exactly the types' fields; run time: the C must export each of them.
  const attr: Record<Bridge.AttrField, true> = {
    INO_LO: true, INO_HI: true, MODE: true, NLINK: true, UID: true, GID: true, RDEV: true, SIZE: true, BLKSIZE: true,
    BLOCKS: true, ATIME_S: true, ATIME_NS: true, MTIME_S: true, MTIME_NS: true, CTIME_S: true, CTIME_NS: true,
  };
  const setattrArgs: Record<Bridge.SetattrArgField, true> = { UID: true, GID: true, ATIME_S: true, ATIME_NS: true, MTIME_S: true, MTIME_NS: true };
  const statfs: Record<Bridge.StatfsField, true> = {
    BSIZE: true, FRSIZE: true, BLOCKS: true, BFREE: true, BAVAIL: true, FILES: true, FFREE: true, FAVAIL: true, NAMEMAX: true,
  };
  const dirent: Record<Bridge.DirentField, true> = { INO_LO: true, INO_HI: true, MODE: true };
  const layouts: Array<[string, Record<string, number>, string[]]> = [
    ['attr', FC.attr, Object.keys(attr)],
    ['setattrArgs', FC.setattrArgs, Object.keys(setattrArgs)],
    ['statfs', FC.statfs, Object.keys(statfs)],
    ['dirent', FC.dirent, Object.keys(dirent)],
  ];
  for (const [name, layout, fields] of layouts) {
    t.deepEqual(Object.keys(layout).filter((k) => k !== 'LEN').sort(), [...fields].sort(), name);
    t.is(layout['LEN'], fields.length, name);
    t.deepEqual(fields.map((f) => layout[f]).sort((a, b) => a! - b!), fields.map((_, i) => i), `${name} is dense`);
  }
  const setattr: Record<Bridge.SetattrBit, true> = { MODE: true, UID: true, GID: true, SIZE: true, ATIME: true, MTIME: true, ATIME_NOW: true, MTIME_NOW: true, KILL_SUIDGID: true };
  t.deepEqual(Object.keys(FC.setattr).sort(), Object.keys(setattr).sort());
  const bits = Object.values(FC.setattr);
  t.is(bits.reduce((a, b) => a | b, 0), bits.reduce((a, b) => a + b, 0), 'setattr bits are distinct single bits');
  const open: Record<Bridge.OpenFlag, true> = { KEEP_CACHE: true, DIRECT_IO: true, DIRECT_READ: true, DIRECT_WRITE: true, JOURNAL_WRITE: true };
  t.deepEqual(Object.keys(FC.open).sort(), Object.keys(open).sort());
  const fast: Record<Bridge.FastFlag, true> = { READ: true, WRITE: true, TRACK: true, SETTLED: true, JOURNAL: true, NODES: true };
  t.deepEqual(Object.keys(FC.fast).sort(), Object.keys(fast).sort());
  t.is(FC.ROOT_ID, 1);
  t.is(FC.HANDLE_MAX, 2 ** 32 - 1);
  const ops = Object.entries(ll.ops);
  t.deepEqual(ops.map(([, v]) => v).sort((a, b) => a - b), ops.map((_, i) => i), 'op numbers are dense');
  t.true(Object.isFrozen(FC) && Object.isFrozen(FC.attr) && Object.isFrozen(ll.ops));
});

test.serial('a number that never was a request handle is refused, without a crash', (t) => {
  const before = ll.pendingRequests();
  for (const h of [0, 1, -1, 0.5, 123456789, 2 ** 52, 2 ** 60, Number.NaN, Number.POSITIVE_INFINITY]) {
    t.is(refusal(() => ll.replyErr(h, 0)), REFUSED, String(h));
    t.is(refusal(() => ll.replyAttr(h, new Float64Array(FC.attr.LEN), 1)), REFUSED, String(h));
  }
  t.is(refusal(() => ll.replyErr('x' as unknown as number, 0)), 'TypeError');
  t.is(ll.pendingRequests(), before);
});

test.serial('a request is answered once: a second reply, a stale handle whose slot holds a newer request, and a reply after close are refused', async (t) => {
  const rootAttrs = encodeAttr(statSync(tmpdir(), { bigint: true }));
  const handles: number[] = [];
  const outcomes: string[] = [];
  const m = await rawMount(t, (op, req) => {
    if (op !== ll.ops.getattr) {
      ll.replyErr(req, ENOSYS);
      return;
    }
    const first = handles[0];
    handles.push(req);
    // A handle of an answered request never reaches this one, even if it names the same slot.
    if (first !== undefined) outcomes.push(`stale:${refusal(() => ll.replyErr(first, EIO))}`);
    outcomes.push(`first:${refusal(() => ll.replyAttr(req, rootAttrs, 0))}`);
    outcomes.push(`second:${refusal(() => ll.replyAttr(req, rootAttrs, 0))}`);
    outcomes.push(`third:${refusal(() => ll.replyErr(req, EIO))}`);
  });
  const a = await run('stat', ['-c', '%i', m.mnt]);
  const b = await run('stat', ['-c', '%i', m.mnt]);
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr); // not EIO: the stale reply did not answer it
  t.is(a.stdout.trim(), String(statSync(tmpdir()).ino));
  t.true(handles.length >= 2, JSON.stringify(handles));
  t.log(handles.map((h) => `slot ${h % 2 ** 21} gen ${Math.floor(h / 2 ** 21)}`).join(", "));
  t.is(outcomes.slice(0, 3).join(' '), `first:none second:${REFUSED} third:${REFUSED}`);
  t.is(outcomes.slice(3, 7).join(' '), `stale:${REFUSED} first:none second:${REFUSED} third:${REFUSED}`);
  t.is(ll.pendingRequests(), 0);

  t.is(refusal(() => ll.close(m.session)), 'EBUSY', 'close refuses while the mount serves');
  const u = await run('fusermount', ['-u', m.mnt]);
  t.is(u.code, 0, u.stderr);
  await m.exited;
  t.is(ll.close(m.session), 0);
  t.is(ll.close(m.session), 0, 'a second close does nothing');
  for (const h of handles) t.is(refusal(() => ll.replyErr(h, 0)), REFUSED);
  t.is(ll.notifyInvalInode(m.session, 1, 0, 0), -osConstants.errno.ENOTCONN);
});

test.serial('a request still pending at close is answered EIO by close, and a late reply is refused', async (t) => {
  const rootAttrs = encodeAttr(statSync(tmpdir(), { bigint: true }));
  let held = 0;
  const m = await rawMount(t, (op, req) => {
    if (op === ll.ops.getattr) ll.replyAttr(req, rootAttrs, 0);
    else if (op === ll.ops.opendir) ll.replyOpen(req, 1, -1, 0);
    else if (op === ll.ops.readdir) ll.replyDir(req, [], new Float64Array(0), 0);
    // The kernel sends RELEASEDIR in the background (nobody waits for it): left unanswered.
    else if (op === ll.ops.releasedir && held === 0) held = req;
    else ll.replyErr(req, ENOSYS);
  });
  const ls = await run('ls', [m.mnt]);
  t.is(ls.code, 0, ls.stderr);
  const until = Date.now() + 10_000;
  while (held === 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
  t.not(held, 0, 'the releasedir arrived');
  t.is(ll.pendingRequests(), 1);
  const u = await run('fusermount', ['-u', m.mnt]);
  t.is(u.code, 0, u.stderr);
  await m.exited;
  t.is(ll.close(m.session), 1, 'close answered the pending request');
  t.is(ll.pendingRequests(), 0);
  t.is(refusal(() => ll.replyErr(held, 0)), REFUSED);
  t.is(refusal(() => ll.replyOpen(held, 1, -1, 0)), REFUSED);
});
