// The remote archive client's transport against a scripted HTTP/2 server on
// loopback (no strata server: what a slow or broken link does to an answer).
//  - An answer that keeps arriving is not cut off by the time limit, however
//    long it takes in all (over a slow link a 16 MiB block answer takes longer
//    than the 10 s limit): the limit is on progress.
//  - An answer that stops arriving fails with EUNAVAILABLE after the limit.
//  - An answer cut short (the connection goes away mid-answer: Node ends the
//    stream as if it were complete) fails with EUNAVAILABLE; its bytes are
//    never handed out as the whole answer.
//  - A request body the server takes in slowly (a journal batch over a slow
//    uplink) is not cut off either while it moves.
import test from 'ava';
import http2, { type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { openArchiveClient } from '../../src/archive-client/open-archive.js';
import { isArchiveError, type ArchiveClient } from '../../src/protocol/archive-api.js';

const PROTOCOL = { 'strata-protocol': '1' };
const ID = 'a'.repeat(32);

/** A server answering every request with `answer`; `cut()` drops its connections (their sockets, as a lost link would). */
async function scripted(answer: (stream: ServerHttp2Stream, cut: () => void) => void, settings: http2.Settings = {}): Promise<{ server: Http2Server; url: string }> {
  const server = http2.createServer({ settings });
  const sockets = new Set<Socket>();
  server.on('connection', (sock: Socket) => sockets.add(sock));
  const cut = (): void => { for (const sock of sockets) sock.destroy(); };
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    answer(stream, cut);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `strata://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function closeAll(client: ArchiveClient, server: Http2Server): Promise<void> {
  await client.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Sends `total` bytes in chunks of `chunk` every `everyMs`. */
function trickle(stream: ServerHttp2Stream, total: number, chunk: number, everyMs: number, stopAt = total): void {
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream', 'content-length': total, ...PROTOCOL });
  let sent = 0;
  const timer = setInterval(() => {
    if (stream.destroyed) return clearInterval(timer);
    if (sent >= stopAt) {
      clearInterval(timer);
      if (stopAt >= total) stream.end();
      return;
    }
    const n = Math.min(chunk, stopAt - sent);
    stream.write(Buffer.alloc(n, 7));
    sent += n;
  }, everyMs);
  stream.on('close', () => clearInterval(timer));
}

test('an answer that keeps arriving takes as long as it takes: the time limit is on progress', async (t) => {
  // 40 KiB in 20 chunks, one every 100 ms: 2 s in all, four times the 500 ms limit.
  const { server, url } = await scripted((s) => trickle(s, 40 * 1024, 2048, 100));
  const client = await openArchiveClient(url, { requestTimeoutMs: 500 });
  try {
    const started = Date.now();
    const data = await client.readRange('v', ID, 0, 40 * 1024);
    t.is(data.length, 40 * 1024);
    t.true(data.every((b) => b === 7));
    t.true(Date.now() - started >= 1500, 'it did take longer than the limit');
  } finally {
    await closeAll(client, server);
  }
});

test('an answer that stops arriving fails with EUNAVAILABLE after the time limit', async (t) => {
  // Half the bytes, then nothing.
  const { server, url } = await scripted((s) => trickle(s, 8192, 1024, 20, 4096));
  const client = await openArchiveClient(url, { requestTimeoutMs: 400 });
  try {
    const err = await t.throwsAsync(client.readRange('v', ID, 0, 8192));
    t.true(isArchiveError(err, 'EUNAVAILABLE'), String(err));
    t.regex(err!.message, /no answer .* for 400 ms/);
  } finally {
    await closeAll(client, server);
  }
});

test('an answer cut short by a lost connection fails with EUNAVAILABLE; its bytes are not the answer', async (t) => {
  // Half the declared bytes, then the connection goes.
  const { server, url } = await scripted((s, cut) => {
    s.respond({ ':status': 200, 'content-type': 'application/octet-stream', 'content-length': 8192, ...PROTOCOL });
    s.write(Buffer.alloc(4096, 7), () => setTimeout(cut, 50));
  });
  const client = await openArchiveClient(url, { requestTimeoutMs: 5000 });
  try {
    const err = await t.throwsAsync(client.readRange('v', ID, 0, 8192));
    t.true(isArchiveError(err, 'EUNAVAILABLE'), String(err));
  } finally {
    await closeAll(client, server);
  }
});

test('a request body the server takes in slowly is sent as long as it moves: the time limit is on progress both ways', async (t) => {
  // The server reads 16 KiB (its whole window) every 50 ms: 2 MiB take about 6.5 s, the limit is 1.5 s.
  let received = 0;
  const { server, url } = await scripted((s) => {
    s.pause();
    const timer = setInterval(() => {
      s.resume();
      setImmediate(() => s.pause());
    }, 50);
    s.on('data', (c: Buffer) => { received += c.length; });
    s.on('end', () => {
      clearInterval(timer);
      const body = Buffer.from(JSON.stringify({ appliedSeq: 1 }));
      s.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': body.length, ...PROTOCOL });
      s.end(body);
    });
    s.on('close', () => clearInterval(timer));
  }, { initialWindowSize: 16 * 1024 });
  const client = await openArchiveClient(url, { requestTimeoutMs: 1500 });
  try {
    const started = Date.now();
    const result = await client.ship('v', 1, Buffer.alloc(2 * 1024 * 1024, 3));
    t.is(result.appliedSeq, 1);
    t.is(received, 2 * 1024 * 1024);
    t.log(`2 MiB sent in ${Date.now() - started} ms`);
    t.true(Date.now() - started > 1500, 'it did take longer than the limit');
  } finally {
    await closeAll(client, server);
  }
});
