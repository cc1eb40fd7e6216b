// The archive transport end to end: the same ArchiveClient checks against an
// in-process file:// archive and a real `strata archive serve` (strata://),
// then what only a network server faces: TLS, tokens, hostile input, bounds,
// a server killed under a client, restarts.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import { isArchiveError, type ArchiveClient, type ArchiveErrorCode } from '../../src/protocol/archive-api.js';
import { verifiedRange, type DirImage } from '../../src/protocol/images.js';
import { encodeRecord, ROOT_ID, type Attrs, type NewRecord, type ObjectId, type Record as StrataRecord } from '../../src/protocol/records.js';
import { startArchiveServer, type ArchiveServer } from '../helpers/archive.js';
import { strata } from '../helpers/mount.js';

// ---- building batches ------------------------------------------------------

const T0 = [1_700_000_000, 5] as const;
const fileAttrs = (size = 0): Attrs => ({ mode: 0o100644, uid: 1000, gid: 1000, size, atime: T0, mtime: T0, rdev: 0 });
const dirAttrs = (): Attrs => ({ mode: 0o040755, uid: 1000, gid: 1000, size: 4096, atime: T0, mtime: T0, rdev: 0 });

let idCounter = 0x1000;
const newId = (): ObjectId => (idCounter++).toString(16).padStart(32, '0');

/** Numbers records from `from` and frames them into one batch. */
function batch(from: number, recs: NewRecord[]): { frames: Buffer; last: number } {
  const frames = Buffer.concat(recs.map((r, i) => encodeRecord({ ...r, seq: from + i } as StrataRecord)));
  return { frames, last: from + recs.length - 1 };
}

const mkfile = (parent: ObjectId, name: string, id: ObjectId): NewRecord => ({ op: 'create', parent, name, id, attrs: fileAttrs(), parentMtime: T0 });
const mkdir = (parent: ObjectId, name: string, id: ObjectId): NewRecord => ({ op: 'create', parent, name, id, attrs: dirAttrs(), parentMtime: T0 });

async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, code: ArchiveErrorCode, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: resolved, expected ${code}`);
  } catch (err) {
    t.true(isArchiveError(err, code), `${what}: expected ${code}, got ${String(err)}`);
  }
}

let volCounter = 0;
const vol = (tag: string): string => `${tag}-${process.pid}-${volCounter++}`;

// ---- the same checks for every transport -------------------------------------

type Check = (t: ExecutionContext, c: ArchiveClient) => Promise<void>;

const checks: [string, Check][] = [
  ['volumes: create (idempotent), state, unknown volume', async (t, c) => {
    const v = vol('create');
    t.is(await c.volumeState(v), null);
    const st = await c.createVolume(v);
    t.like(st, { name: v, epoch: 1, appliedSeq: 0 });
    t.like(await c.createVolume(v), { name: v, epoch: 1, appliedSeq: 0 });
    t.like(await c.volumeState(v), { name: v, epoch: 1, appliedSeq: 0 });
    const ghost = vol('ghost');
    await rejectsWith(t, c.ship(ghost, 1, batch(1, [mkfile(ROOT_ID, 'x', newId())]).frames), 'ENOVOLUME', 'ship to unknown volume');
    await rejectsWith(t, c.dirImage(ghost, ROOT_ID), 'ENOVOLUME', 'dirImage of unknown volume');
    await rejectsWith(t, c.fence(ghost), 'ENOVOLUME', 'fence of unknown volume');
    await rejectsWith(t, (async () => { for await (const _ of c.tierImages(ghost, 2)); })(), 'ENOVOLUME', 'tiers of unknown volume');
    await rejectsWith(t, c.createVolume('../etc'), 'EBADREQ', 'bad volume name');
    await rejectsWith(t, c.dirImage(v, 'not-an-id'), 'EBADREQ', 'bad object id');
    await rejectsWith(t, c.readRange(v, ROOT_ID, 0, 64 * 1024 * 1024), 'EBADREQ', 'readRange over 16 MiB');
    await rejectsWith(t, (async () => { for await (const _ of c.tierImages(v, 65)); })(), 'EBADREQ', 'depth over 64');
  }],

  ['a file: create, write, read back, blocks, directory image; resend is harmless, a gap is refused', async (t, c) => {
    const v = vol('file');
    await c.createVolume(v);
    const id = newId();
    const data = randomBytes(200_000);
    const b = batch(1, [
      mkfile(ROOT_ID, 'hello.bin', id),
      { op: 'write', id, offset: 0, data: data.subarray(0, 150_000) },
      { op: 'write', id, offset: 150_000, data: data.subarray(150_000) },
      { op: 'setxattr', id, name: 'user.k', value: Buffer.from('v') },
    ]);
    t.deepEqual(await c.ship(v, 1, b.frames), { appliedSeq: b.last });
    t.deepEqual(await c.ship(v, 1, b.frames), { appliedSeq: b.last }, 'a resend is skipped');
    t.true(data.equals(await c.readRange(v, id, 0, 1 << 20)), 'whole file');
    t.true(data.subarray(100_000, 150_000).equals(await c.readRange(v, id, 100_000, 50_000)), 'a range across blocks');
    t.is((await c.readRange(v, id, 300_000, 10)).length, 0, 'past the end');
    const blocks = await c.fileBlocks(v, id);
    t.is(blocks.id, id);
    t.is(blocks.size, data.length);
    t.is(blocks.blocks.reduce((n, bl) => n + bl.length, 0), data.length);
    const root = await c.dirImage(v, ROOT_ID);
    const e = root.entries.find((x) => x.name === 'hello.bin');
    t.truthy(e);
    t.is(e!.id, id);
    t.is(e!.attrs.size, data.length);
    t.is(Buffer.from(e!.xattrs['user.k'] ?? '', 'base64').toString(), 'v');
    await rejectsWith(t, c.ship(v, 1, batch(b.last + 2, [mkfile(ROOT_ID, 'late', newId())]).frames), 'EGAP', 'a batch past a gap');
    await rejectsWith(t, c.dirImage(v, id), 'ENOOBJECT', 'dirImage of a file');
    t.deepEqual(await c.deepImages(v, ROOT_ID, 'hello.bin'), [root], 'deepImages below a file: the directory alone');
    t.deepEqual(await c.deepImages(v, ROOT_ID), [root], 'deepImages of a directory without subdirectories');
    await rejectsWith(t, c.deepImages(v, id), 'ENOOBJECT', 'deepImages of a file');
    await rejectsWith(t, c.deepImages(v, ROOT_ID, 'a/b'), 'EBADREQ', 'deepImages with a name holding "/"');
    // A 255-byte name whose bytes are not UTF-8 (src/protocol/names.ts): 255 characters, 2,295 percent-encoded in the query.
    const odd = '\uf7ff'.repeat(255);
    const dirId = newId();
    const subId = newId();
    const b2 = batch(b.last + 1, [mkdir(ROOT_ID, odd, dirId), mkdir(dirId, 'sub', subId)]);
    t.deepEqual(await c.ship(v, 1, b2.frames), { appliedSeq: b2.last });
    const deep = await c.deepImages(v, ROOT_ID, odd);
    t.deepEqual(deep.map((img) => img.id).slice(0, 2), [ROOT_ID, dirId], 'deepImages below a 255-byte non-UTF-8 name');
    t.true(deep[0]!.entries.some((x) => x.name === odd && x.id === dirId), 'the name comes back as it went');
    await rejectsWith(t, c.deepImages(v, ROOT_ID, '\uf7ff'.repeat(256)), 'EBADREQ', 'a 256-byte name');
    const raw = await c.readBlocks(v, id, 1, 3);
    t.deepEqual(raw.blocks.map((x) => x.index), [1, 2, 3].filter((i) => i * 65536 < data.length), 'readBlocks: the stored blocks asked for');
    t.true((await verifiedRange(raw, 100_000, 50_000)).equals(data.subarray(100_000, 150_000)), 'readBlocks: verified by the receiver');
    await rejectsWith(t, c.readBlocks(v, id, 0, 0), 'EBADREQ', 'readBlocks of no block');
    await rejectsWith(t, c.readBlocks(v, ROOT_ID, 0, 1), 'ENOOBJECT', 'readBlocks of a directory');
    await rejectsWith(t, c.readRange(v, newId(), 0, 10), 'ENOOBJECT', 'read of an unknown object');
  }],

  ['tier images: a few hundred directories stream parents first, tier by tier; a stopped stream frees the archive', async (t, c) => {
    const v = vol('tiers');
    await c.createVolume(v);
    const recs: NewRecord[] = [];
    const tops: ObjectId[] = [];
    for (let i = 0; i < 20; i++) {
      const d = newId();
      tops.push(d);
      recs.push(mkdir(ROOT_ID, `d${i}`, d));
      for (let j = 0; j < 15; j++) {
        const s = newId();
        recs.push(mkdir(d, `s${j}`, s), mkfile(s, 'f', newId()), mkdir(s, 'deeper', newId()));
      }
    }
    await c.ship(v, 1, batch(1, recs).frames);
    const seen = new Map<ObjectId, DirImage>();
    let lastTier = 0;
    for await (const img of c.tierImages(v, 2)) {
      t.true((img.tier ?? -1) >= lastTier, 'tiers in order');
      lastTier = img.tier ?? -1;
      if (img.id !== ROOT_ID) t.true([...seen.values()].some((p) => p.entries.some((e) => e.id === img.id)), 'parent came first');
      seen.set(img.id, img);
    }
    t.is(seen.size, 1 + 20 + 300);
    t.is(seen.get(ROOT_ID)!.entries.length, 20);
    t.is(seen.get(tops[3]!)!.entries.length, 15);
    t.is(seen.get(ROOT_ID)!.totals.entries, 20 + 20 * 15 * 3);
    let n = 0;
    for await (const _ of c.tierImages(v, 2)) if (++n === 5) break;
    t.is(n, 5);
    t.like(await c.volumeState(v), { appliedSeq: recs.length }, 'calls still work after a stream was dropped');
    let depth0 = 0;
    for await (const img of c.tierImages(v, 0)) depth0 += img.id === ROOT_ID ? 1 : 100;
    t.is(depth0, 1);
  }],

  ['bad batches: damaged frames and names with "/" or ".." are refused, the volume is unchanged', async (t, c) => {
    const v = vol('bad');
    await c.createVolume(v);
    await c.ship(v, 1, batch(1, [mkfile(ROOT_ID, 'ok', newId())]).frames);
    const before = { state: await c.volumeState(v), root: await c.dirImage(v, ROOT_ID) };
    const good = batch(2, [mkfile(ROOT_ID, 'a', newId()), mkfile(ROOT_ID, 'b', newId())]).frames;
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3] ^= 0xff;
    await rejectsWith(t, c.ship(v, 1, flipped), 'EBADREQ', 'checksum mismatch');
    await rejectsWith(t, c.ship(v, 1, good.subarray(0, good.length - 5)), 'EBADREQ', 'truncated frame');
    await rejectsWith(t, c.ship(v, 1, randomBytes(4000)), 'EBADREQ', 'garbage');
    await rejectsWith(t, c.ship(v, 1, batch(2, [mkfile(ROOT_ID, 'a', newId()), mkfile(ROOT_ID, 'x/y', newId())]).frames), 'EBADREQ', 'name with "/"');
    await rejectsWith(t, c.ship(v, 1, batch(2, [mkfile(ROOT_ID, '..', newId())]).frames), 'EBADREQ', 'name ".."');
    await rejectsWith(t, c.ship(v, 1, batch(2, [mkfile(ROOT_ID, 'a', 'ABC')]).frames), 'EBADREQ', 'bad id');
    t.deepEqual(await c.volumeState(v), before.state);
    t.deepEqual(await c.dirImage(v, ROOT_ID), before.root);
    t.deepEqual(await c.ship(v, 1, good), { appliedSeq: 3 }, 'a good batch still applies');
  }],

  ['volumes are isolated: shipping to A never changes B', async (t, c) => {
    const a = vol('iso-a');
    const b = vol('iso-b');
    await c.createVolume(a);
    await c.createVolume(b);
    const bBefore = { state: await c.volumeState(b), root: await c.dirImage(b, ROOT_ID) };
    const id = newId();
    await c.ship(a, 1, batch(1, [mkfile(ROOT_ID, 'only-in-a', id), { op: 'write', id, offset: 0, data: Buffer.from('A') }]).frames);
    t.deepEqual(await c.volumeState(b), bBefore.state);
    t.deepEqual(await c.dirImage(b, ROOT_ID), bBefore.root);
    await rejectsWith(t, c.readRange(b, id, 0, 10), 'ENOOBJECT', "A's object is not in B");
  }],

  ['fence: the epoch rises and an older epoch is refused with EFENCED', async (t, c) => {
    const v = vol('fence');
    await c.createVolume(v);
    await c.ship(v, 1, batch(1, [mkfile(ROOT_ID, 'one', newId())]).frames);
    t.like(await c.fence(v), { epoch: 2, appliedSeq: 1 });
    await rejectsWith(t, c.ship(v, 1, batch(2, [mkfile(ROOT_ID, 'two', newId())]).frames), 'EFENCED', 'old epoch');
    t.like(await c.volumeState(v), { epoch: 2, appliedSeq: 1 });
    t.deepEqual(await c.ship(v, 2, batch(2, [mkfile(ROOT_ID, 'two', newId())]).frames), { appliedSeq: 2 });
  }],
];

// ---- transports ------------------------------------------------------------

let shared: ArchiveServer | undefined;
let remote: ArchiveClient | undefined;
let fileDir: string | undefined;
let local: ArchiveClient | undefined;

test.before(async () => {
  shared = await startArchiveServer();
  remote = await openArchiveClient(shared.url, { tokenFile: shared.tokenFile });
  fileDir = mkdtempSync(join(tmpdir(), 'strata-file-archive-'));
  local = await openArchiveClient(`file://${fileDir}`);
});

test.after.always(async () => {
  await remote?.close();
  await local?.close();
  await shared?.stop();
  if (fileDir) rmSync(fileDir, { recursive: true, force: true });
});

for (const [title, check] of checks) {
  test(`file:// ${title}`, (t) => check(t, local!));
  test(`strata:// ${title}`, (t) => check(t, remote!));
}

// ---- only a network server -----------------------------------------------

async function server(t: ExecutionContext, opts: Parameters<typeof startArchiveServer>[0] = {}): Promise<ArchiveServer> {
  const s = await startArchiveServer(opts);
  t.teardown(() => s.stop());
  return s;
}

async function client(t: ExecutionContext, url: string, opts: Parameters<typeof openArchiveClient>[1] = {}): Promise<ArchiveClient> {
  const c = await openArchiveClient(url, opts);
  t.teardown(() => c.close());
  return c;
}

/** One raw HTTP/2 exchange (no strata client): status, body. */
async function raw(url: string, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<{ status: number; body: string }> {
  const s = http2.connect(url.replace(/^strata:/, 'http:'));
  s.on('error', () => {});
  try {
    return await new Promise((resolve, reject) => {
      const req = s.request(headers, { endStream: body === undefined });
      let out = '';
      let status = 0;
      req.on('response', (h) => { status = Number(h[':status']); });
      req.setEncoding('utf8').on('data', (d: string) => { out += d; });
      req.on('end', () => resolve({ status, body: out }));
      req.on('error', reject);
      if (body) req.end(body);
    });
  } finally {
    s.close();
  }
}

test('stratas:// with a self-signed certificate and tlsCa; without the CA the connection is refused', async (t) => {
  const s = await server(t, { tls: true });
  const c = await client(t, s.url, { tokenFile: s.tokenFile, tlsCa: s.caFile! });
  const v = vol('tls');
  await c.createVolume(v);
  const id = newId();
  await c.ship(v, 1, batch(1, [mkfile(ROOT_ID, 'secret', id), { op: 'write', id, offset: 0, data: Buffer.from('over TLS') }]).frames);
  t.is((await c.readRange(v, id, 0, 100)).toString(), 'over TLS');
  const untrusting = await client(t, s.url, { tokenFile: s.tokenFile, requestTimeoutMs: 3000 });
  await rejectsWith(t, untrusting.volumeState(v), 'EUNAVAILABLE', 'untrusted certificate');
});

test('a wrong or missing token is EAUTH, logged without the token; the hello route needs none', async (t) => {
  const s = await server(t);
  const dir = mkdtempSync(join(tmpdir(), 'strata-tok-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const wrongFile = join(dir, 'wrong');
  (await import('node:fs')).writeFileSync(wrongFile, 'not-the-token-123\n');
  const wrong = await client(t, s.url, { tokenFile: wrongFile });
  await rejectsWith(t, wrong.createVolume('v'), 'EAUTH', 'wrong token');
  const none = await client(t, s.url);
  await rejectsWith(t, none.volumeState('v'), 'EAUTH', 'no token');
  const hello = await raw(s.url, { ':path': '/v1/hello' });
  t.is(hello.status, 200);
  t.is((JSON.parse(hello.body) as { protocol: number }).protocol, 1);
  await sleep(100);
  t.regex(s.logs(), /authentication failed/);
  t.false(s.logs().includes('not-the-token-123'), 'the token is not logged');
  t.false(s.logs().includes(s.token), 'nor the real one');
  const right = await client(t, s.url, { tokenFile: s.tokenFile });
  t.like(await right.createVolume('v'), { epoch: 1 });
});

test('hostile input: garbage on the socket, HTTP/1, odd routes, huge headers, a foreign protocol version; the server keeps serving', async (t) => {
  const s = await server(t);
  const auth = { authorization: `Bearer ${s.token}` };
  for (const payload of [randomBytes(5000), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), randomBytes(3000)])]) {
    await new Promise<void>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1', () => sock.end(payload));
      sock.on('error', () => resolve());
      sock.on('close', () => resolve());
      sock.resume();
      setTimeout(() => { sock.destroy(); resolve(); }, 2000);
    });
  }
  const cases: [http2.OutgoingHttpHeaders, number][] = [
    [{ ':path': '/nope', ...auth }, 404],
    [{ ':path': '/v1/volumes', ...auth }, 404],
    [{ ':path': '/v1/volumes/..', ...auth }, 400],
    [{ ':path': '/v1/volumes/a%2Fb', ...auth }, 400],
    [{ ':path': '/v1/volumes/a/dirs/xyz', ...auth }, 400],
    [{ ':path': '/v1/volumes/a/objects/00000000000000000000000000000001/data?offset=-1&length=2', ...auth }, 400],
    [{ ':path': '/v1/volumes/a/tiers?depth=1e9', ...auth }, 400],
    [{ ':path': '/v1/volumes/a', ':method': 'DELETE', ...auth }, 405],
    [{ ':path': '/v1/volumes/a/journal', ':method': 'POST', 'strata-epoch': 'x', ...auth }, 400],
    [{ ':path': '/v1/volumes/a', 'strata-protocol': '2', ...auth }, 400],
    [{ ':path': '/v1/volumes/a' }, 401],
  ];
  for (const [headers, status] of cases) {
    const r = await raw(s.url, headers, headers[':method'] === 'POST' ? Buffer.alloc(10) : undefined);
    t.is(r.status, status, `${String(headers[':method'] ?? 'GET')} ${String(headers[':path'])}`);
    if (status !== 200) t.truthy((JSON.parse(r.body) as { code: string }).code, 'a JSON error');
  }
  // A header block over the bound is refused at the HTTP/2 layer.
  await t.throwsAsync(raw(s.url, { ':path': '/v1/hello', 'x-big': 'x'.repeat(64 * 1024) }));
  const c = await client(t, s.url, { tokenFile: s.tokenFile });
  t.like(await c.createVolume('still-up'), { epoch: 1 });
  t.is(spawnSync('kill', ['-0', String(s.pid)]).status, 0, 'the server process is alive');
});

test('an oversized ship body is refused with 413 while it streams, never buffered; a declared one before any byte', async (t) => {
  const s = await server(t);
  const c = await client(t, s.url, { tokenFile: s.tokenFile });
  await c.createVolume('big');
  const session = http2.connect(`http://127.0.0.1:${s.port}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const headers = { ':method': 'POST', ':path': '/v1/volumes/big/journal', 'strata-epoch': '1', authorization: `Bearer ${s.token}` };
  // Streamed without a length: the server answers once 64 MiB have passed, and we stop well before 200 MiB.
  const res = await new Promise<{ status: number; sent: number; body: string }>((resolve) => {
    const req = session.request(headers);
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let sent = 0;
    let status = 0;
    let body = '';
    let finished = false;
    const finish = (): void => { if (!finished) { finished = true; resolve({ status, sent, body }); } };
    req.on('response', (h) => { status = Number(h[':status']); });
    req.setEncoding('utf8').on('data', (d: string) => { body += d; });
    req.on('end', finish);
    req.on('close', finish);
    req.on('error', () => {});
    const pump = (): void => {
      while (!finished && status === 0 && sent < 200 * 1024 * 1024 && !req.destroyed) {
        sent += chunk.length;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
      if (sent >= 200 * 1024 * 1024) req.end();
    };
    pump();
  });
  t.is(res.status, 413);
  t.is((JSON.parse(res.body) as { code: string }).code, 'EBADREQ');
  t.true(res.sent < 150 * 1024 * 1024, `stopped after ${res.sent} bytes`);
  // Declared too large: refused on the headers, before any byte of the body is sent.
  const declared = await new Promise<number>((resolve, reject) => {
    const req = session.request({ ...headers, 'content-length': String(100 * 1024 * 1024) }, { endStream: false });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
  });
  t.is(declared, 413);
  t.like(await c.volumeState('big'), { appliedSeq: 0 });
  await rejectsWith(t, c.ship('big', 1, Buffer.alloc(64 * 1024 * 1024 + 1)), 'EBADREQ', 'the client refuses too');
});

test('server killed -9: calls fail with EUNAVAILABLE promptly, and work again after a restart on the same data', async (t) => {
  const s = await server(t);
  const c = await client(t, s.url, { tokenFile: s.tokenFile, requestTimeoutMs: 10_000 });
  const v = vol('kill');
  await c.createVolume(v);
  const id = newId();
  await c.ship(v, 1, batch(1, [mkfile(ROOT_ID, 'kept', id), { op: 'write', id, offset: 0, data: Buffer.from('kept') }]).frames);
  await s.kill();
  const started = Date.now();
  await rejectsWith(t, c.volumeState(v), 'EUNAVAILABLE', 'server gone');
  await rejectsWith(t, c.readRange(v, id, 0, 10), 'EUNAVAILABLE', 'still gone');
  t.true(Date.now() - started < 3000, `failed in ${Date.now() - started} ms`);
  await s.restart();
  t.like(await c.volumeState(v), { appliedSeq: 2 }, 'the same client reconnects');
  t.is((await c.readRange(v, id, 0, 10)).toString(), 'kept');
});

test('a server that stops answering: a call fails with EUNAVAILABLE after requestTimeoutMs', async (t) => {
  // A TCP listener that accepts and never speaks HTTP/2.
  const mute = net.createServer((sock) => { sock.on('error', () => {}); });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => mute.close());
  const port = (mute.address() as net.AddressInfo).port;
  const c = await client(t, `strata://127.0.0.1:${port}`, { requestTimeoutMs: 500 });
  const started = Date.now();
  await rejectsWith(t, c.volumeState('v'), 'EUNAVAILABLE', 'mute server');
  t.true(Date.now() - started < 2500);
  await rejectsWith(t, (await client(t, 'strata://127.0.0.1:1')).volumeState('v'), 'EUNAVAILABLE', 'refused connection');
  await t.throwsAsync(openArchiveClient('http://x:1'), { message: /unsupported archive URL/ });
  await t.throwsAsync(openArchiveClient('strata://host-without-port'), { message: /HOST:PORT/ });
});

test('SIGTERM: the server exits 0; its data directory opens as a file:// archive', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'strata-reopen-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const s = await server(t, { dataDir: join(base, 'data') });
  const c = await openArchiveClient(s.url, { tokenFile: s.tokenFile });
  const id = newId();
  await c.createVolume('reopen');
  await c.ship('reopen', 1, batch(1, [mkfile(ROOT_ID, 'f', id), { op: 'write', id, offset: 0, data: Buffer.from('persisted') }]).frames);
  await c.close();
  t.is(await s.stop(), 0);
  const f = await client(t, `file://${join(base, 'data')}`);
  t.like(await f.volumeState('reopen'), { appliedSeq: 2 });
  t.is((await f.readRange('reopen', id, 0, 100)).toString(), 'persisted');
});

test('an idle client does not keep its process alive (file:// and strata://)', async (t) => {
  const s = await server(t);
  const base = mkdtempSync(join(tmpdir(), 'strata-idle-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const mod = new URL('../../src/archive-client/open-archive.js', import.meta.url).href;
  for (const [url, opts] of [[s.url, { tokenFile: s.tokenFile }], [`file://${base}`, {}]] as const) {
    const script = `const { openArchiveClient } = await import(${JSON.stringify(mod)});
      const c = await openArchiveClient(${JSON.stringify(url)}, ${JSON.stringify(opts)});
      await c.createVolume('idle'); console.log('done');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    // 'close', not 'exit': the child's stdout may still hold "done" when it exits.
    const code = await Promise.race([new Promise<number | null>((r) => child.on('close', r)), sleep(8000).then(() => 'hung' as const)]);
    if (code === 'hung') child.kill('SIGKILL');
    t.is(code, 0, `${url}: exited by itself`);
    t.is(out.trim(), 'done');
  }
});

test('clients that go away before their answer: the server keeps serving (a request log line once crashed it)', async (t) => {
  const s = await server(t, { logLevel: 'debug' });
  const c = await client(t, s.url, { tokenFile: s.tokenFile });
  const v = vol('gone');
  await c.createVolume(v);
  const id = newId();
  const MiB = 1024 * 1024;
  const { frames } = batch(1, [mkfile(ROOT_ID, 'big', id), ...[0, 1, 2, 3].map((k): NewRecord => ({ op: 'write', id, offset: k * MiB, data: randomBytes(MiB) }))]);
  await c.ship(v, 1, frames);
  // Requests whose sessions are destroyed at once, many times: some answers find their stream gone.
  for (let i = 0; i < 40; i++) {
    const session = http2.connect(s.url.replace(/^strata:/, 'http:'));
    session.on('error', () => {});
    const req = session.request({
      ':method': 'GET', ':path': `/v1/volumes/${v}/objects/${id}/data?offset=0&length=${4 * 1024 * 1024}`,
      'strata-protocol': '1', authorization: `Bearer ${s.token}`,
    });
    req.on('error', () => {});
    await sleep(i % 4);
    session.destroy();
  }
  await sleep(200);
  t.is((await c.volumeState(v))?.appliedSeq, 5, 'the server still answers');
  t.notRegex(s.logs(), /TypeError/);
});

test('a mount or recover the archive refuses leaves nothing behind: no store it created, no log in a store it did not', async (t) => {
  const s = await server(t);
  const dir = mkdtempSync(join(tmpdir(), 'strata-refused-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const wrongFile = join(dir, 'wrong');
  writeFileSync(wrongFile, 'not-the-token-123\n');
  mkdirSync(join(dir, 'mnt'));
  const wrong = strata(['mount', '--store', join(dir, 'store'), '--archive', s.url, '--token-file', wrongFile, '--volume', 'v', '--archive-wait', '1', join(dir, 'mnt')]);
  t.not(wrong.status, 0);
  t.regex(wrong.stderr, /EAUTH/);
  t.false(existsSync(join(dir, 'store')), 'the store this start created is gone again');
  mkdirSync(join(dir, 'full'));
  writeFileSync(join(dir, 'full', 'mine'), 'data\n');
  const full = strata(['recover', '--store', join(dir, 'full'), '--archive', s.url, '--token-file', s.tokenFile, '--volume', 'v', join(dir, 'mnt')]);
  t.not(full.status, 0);
  t.regex(full.stderr, /not empty/);
  t.deepEqual(readdirSync(join(dir, 'full')), ['mine'], 'nothing added to a store that was not strata\'s');
});
