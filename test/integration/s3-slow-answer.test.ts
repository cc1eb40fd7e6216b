// The object store's read path over a slow link (src/archive/s3-bridge.ts,
// s3-packs.ts): a ranged GET whose bytes keep arriving is waited for as long
// as it takes; one whose bytes stop fails with EUNAVAILABLE after the fetch
// timeout. Before 2026-12-04 the timeout bounded the whole GET: an 8 MiB
// window from a store slower than 2 MiB/s (16 Mbit/s) never arrived within
// the default 4 s, and a restore from such an archive failed every read.
// Against a scripted S3 endpoint in a child process (the store's calls are
// synchronous: this thread sleeps while it waits).
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { SyncObjects } from '../../src/archive/s3-packs.js';
import { isArchiveError } from '../../src/protocol/archive-api.js';

const SIZE = 1024 * 1024;

/** An HTTP server answering every GET with 206 and bytes i % 251 of the asked range, `chunk` bytes every `everyMs`, stopping after `stopAt` bytes. */
const SERVER = `
const http = require('node:http');
const [chunk, everyMs, stopAt] = process.argv.slice(1).map(Number);
http.createServer((req, res) => {
  const m = /bytes=(\\d+)-(\\d+)/.exec(req.headers.range || '');
  const start = m ? Number(m[1]) : 0;
  const end = m ? Number(m[2]) + 1 : ${SIZE};
  res.writeHead(206, { 'content-length': end - start, 'content-range': 'bytes ' + start + '-' + (end - 1) + '/${SIZE}', 'content-type': 'application/octet-stream' });
  let at = start;
  const timer = setInterval(() => {
    if (at - start >= stopAt) return;
    const n = Math.min(chunk, end - at);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (at + i) % 251;
    res.write(b);
    at += n;
    if (at >= end) { clearInterval(timer); res.end(); }
  }, everyMs);
  res.on('close', () => clearInterval(timer));
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });
`;

async function scriptedStore(chunk: number, everyMs: number, stopAt = Number.MAX_SAFE_INTEGER): Promise<{ child: ChildProcess; endpoint: string }> {
  const child = spawn(process.execPath, ['-e', SERVER, String(chunk), String(everyMs), String(stopAt)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`scripted store exited (${code})`)));
  });
  return { child, endpoint: `http://127.0.0.1:${port}` };
}

function objects(endpoint: string, fetchTimeoutMs: number): SyncObjects {
  process.env['AWS_ACCESS_KEY_ID'] ??= 'test';
  process.env['AWS_SECRET_ACCESS_KEY'] ??= 'test';
  return new SyncObjects({ url: 's3://bucket/p/', endpoint, region: 'us-east-1', fetchTimeoutMs });
}

test.serial('a ranged GET whose bytes keep arriving is waited for, however long it takes in all', async (t) => {
  // 1 MiB, 32 KiB every 50 ms: about 1.6 s, three times the 500 ms fetch timeout.
  const { child, endpoint } = await scriptedStore(32 * 1024, 50);
  const o = objects(endpoint, 500);
  t.teardown(() => { o.close(); child.kill(); });
  const started = Date.now();
  const data = o.getRange('p/packs/000001.pack', 0, SIZE);
  const ms = Date.now() - started;
  t.log(`1 MiB at about 640 KB/s: ${ms} ms`);
  t.is(data.length, SIZE);
  let wrong = -1;
  for (let i = 0; i < SIZE && wrong < 0; i++) if (data[i] !== i % 251) wrong = i;
  t.is(wrong, -1, 'the bytes are the store\'s');
  t.true(ms > 1000, 'it did take longer than the fetch timeout');
});

test.serial('a ranged GET whose bytes stop arriving fails with EUNAVAILABLE after the fetch timeout', async (t) => {
  const { child, endpoint } = await scriptedStore(32 * 1024, 50, 128 * 1024);
  const o = objects(endpoint, 500);
  t.teardown(() => { o.close(); child.kill(); });
  const started = Date.now();
  const err = t.throws(() => o.getRange('p/packs/000001.pack', 0, SIZE));
  t.log(`failed after ${Date.now() - started} ms: ${err?.message}`);
  t.true(isArchiveError(err, 'EUNAVAILABLE'), String(err));
});
