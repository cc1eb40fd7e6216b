// The journal on its own: group commit, torn and corrupt tails, reading for
// shipping, trimming, reopening, and the room it keeps ahead on a full disk.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, truncate, readFile, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Journal, roomAheadFor } from '../../src/journal/journal.js';
import { lendRoom, writeFileDurably } from '../../src/store/durable-file.js';
import { decodeFrames, encodeRecord, encodeRecordParts, readFrame, type NewRecord, type Record } from '../../src/protocol/records.js';

const log = pino({ level: 'silent' });
const ID = 'ab'.repeat(16);

function write(offset: number, text: string): NewRecord {
  return { op: 'write', id: ID, offset, data: Buffer.from(text) };
}

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-journal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function allRecords(j: Journal, after = 0): Promise<Record[]> {
  const out: Record[] = [];
  for (let seq = after; ;) {
    const batch = await j.readAfter(seq, 1 << 20);
    if (batch === null) return out;
    out.push(...decodeFrames(batch.frames));
    seq = batch.lastSeq;
  }
}

test('appends get consecutive sequence numbers and read back in order after a flush', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  const seqs = [j.append(write(0, 'a')), j.append(write(1, 'b')), j.append(write(2, 'c'))];
  t.deepEqual(seqs, [1, 2, 3]);
  t.is(await j.readAfter(0, 1024), null, 'nothing is readable before it reaches the segment');
  await j.flush();
  const recs = await allRecords(j);
  t.deepEqual(recs.map((r) => r.seq), [1, 2, 3]);
  t.deepEqual(recs.map((r) => (r.op === 'write' ? r.data.toString() : '')), ['a', 'b', 'c']);
  const tail = await allRecords(j, 2);
  t.deepEqual(tail.map((r) => r.seq), [3]);
  await j.close();
});

test('group commit: syncs waiting together share fsyncs and all become durable', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  const waits: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) {
    j.append(write(i, `r${i}`));
    waits.push(j.sync());
  }
  await Promise.all(waits);
  t.is(j.durableSeq, 50);
  t.is(j.writtenSeq, 50);
  await j.close();
});

test('a torn tail is cut on open and the journal continues after the last whole record', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log);
  for (let i = 0; i < 10; i++) j.append(write(i * 10, 'x'.repeat(100)));
  await j.close();
  const [seg] = await readdir(dir);
  const path = join(dir, seg!);
  const size = (await stat(path)).size;
  await truncate(path, size - 30); // a crash in the middle of the last frame
  const j2 = await Journal.open(dir, log);
  t.is(j2.lastSeq, 9);
  t.is(j2.append(write(0, 'after')), 10);
  await j2.flush();
  const recs = await allRecords(j2);
  t.deepEqual(recs.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await j2.close();
});

test('a corrupt last frame (bad checksum) is cut too; garbage after it never ships', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log);
  for (let i = 0; i < 3; i++) j.append(write(i, 'abc'));
  await j.close();
  const [seg] = await readdir(dir);
  const path = join(dir, seg!);
  const buf = await readFile(path);
  buf[buf.length - 2] ^= 0xff; // flip a byte of record 3's payload
  await writeFile(path, buf);
  await appendFile(path, Buffer.from('garbage that is not a frame'));
  const j2 = await Journal.open(dir, log);
  t.is(j2.lastSeq, 2);
  t.deepEqual((await allRecords(j2)).map((r) => r.seq), [1, 2]);
  await j2.close();
});

/** A closed journal of 20 records in segments of about three records each: its directory and segment names, in order. */
async function smallSegments(t: { teardown(fn: () => Promise<void>): void }): Promise<{ dir: string; segs: string[] }> {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { segmentBytes: 200 });
  for (let i = 0; i < 20; i++) j.append(write(i, 'y'.repeat(60)));
  await j.close();
  return { dir, segs: (await readdir(dir)).sort() };
}

test('damage in a segment that is not the last one: cut there, the later segments set aside (never read as if they followed), and said (journal.damage); dropSetAside removes them', async (t) => {
  const { dir, segs } = await smallSegments(t);
  t.true(segs.length > 2);
  const first = join(dir, segs[0]!);
  const buf = await readFile(first);
  const firstFrame = readFrame(buf, 0);
  t.is(firstFrame.kind, 'record');
  // The second frame of the first segment is damaged: the first record stays, every later one is cut or set aside.
  const second = firstFrame.kind === 'record' ? firstFrame.bytes : 0;
  buf[second + 20] ^= 0xff;
  await writeFile(first, buf);
  const k = await Journal.open(dir, log, { segmentBytes: 200 });
  t.like(k.damage, { segment: first, atByte: second, lastGoodSeq: 1 });
  t.is(k.damage!.setAside.length, segs.length - 1);
  t.is(k.lastSeq, 1, 'the journal ends at the last record before the damage');
  t.deepEqual((await allRecords(k)).map((r) => r.seq), [1]);
  t.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.damaged')).sort(), segs.slice(1).map((n) => `${n}.damaged`));
  // New records continue after it (the mirror has the store re-compared: src/mirror/mirror.ts, durableSeq).
  t.is(k.append(write(99, 'after')), 2);
  await k.sync();
  await k.dropSetAside();
  t.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.damaged')), []);
  t.is(k.damage, null);
  await k.close();
  const again = await Journal.open(dir, log, { segmentBytes: 200 });
  t.is(again.damage, null);
  t.deepEqual((await allRecords(again)).map((r) => r.seq), [1, 2]);
  await again.close();
});

test('a segment missing between others: the ones after the gap are set aside, not read as following', async (t) => {
  const { dir, segs } = await smallSegments(t);
  t.true(segs.length > 3);
  await rm(join(dir, segs[1]!));
  const k = await Journal.open(dir, log, { segmentBytes: 200 });
  t.not(k.damage, null);
  t.regex(k.damage!.reason, /does not continue/);
  t.is(k.damage!.setAside.length, segs.length - 2);
  t.deepEqual((await allRecords(k)).map((r) => r.seq), Array.from({ length: k.lastSeq }, (_, i) => i + 1));
  await k.close();
});

test('segments roll over by size, batches stop at segment ends, trim removes only acked segments', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { segmentBytes: 1000 });
  for (let i = 0; i < 100; i++) j.append(write(i, 'z'.repeat(50)));
  await j.flush();
  const before = (await readdir(dir)).length;
  t.true(before > 5, `${before} segments`);
  const recs = await allRecords(j);
  t.deepEqual(recs.map((r) => r.seq), Array.from({ length: 100 }, (_, i) => i + 1));
  await j.trim(50);
  const after = (await readdir(dir)).length;
  t.true(after < before);
  t.true(j.firstSeq <= 51, 'records after the ack are kept');
  t.deepEqual((await allRecords(j, 50)).map((r) => r.seq), Array.from({ length: 50 }, (_, i) => i + 51));
  await t.throwsAsync(j.readAfter(0, 1024), { message: /no longer holds/ });
  await j.close();
  // Reopening continues the sequence from the kept segments.
  const j2 = await Journal.open(dir, log, { segmentBytes: 1000 });
  t.is(j2.lastSeq, 100);
  t.is(j2.firstSeq <= 51, true);
  await j2.close();
});

test('an empty journal starts after the sequence the archive already holds', async (t) => {
  const j = await Journal.open(await tempDir(t), log, { startAfterSeq: 41 });
  t.is(j.append(write(0, 'q')), 42);
  await j.flush();
  t.deepEqual((await allRecords(j, 41)).map((r) => r.seq), [42]);
  await j.close();
});

test('a record bigger than the read size is still read whole', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  j.append(write(0, 'w'.repeat(200_000)));
  j.append(write(0, 'small'));
  await j.flush();
  const batch = await j.readAfter(0, 1000);
  t.truthy(batch);
  t.is(batch!.count, 1);
  t.is(decodeFrames(batch!.frames)[0]!.seq, 1);
  await j.close();
});

test('bytesAfter counts only what the archive has not acknowledged', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  for (let i = 0; i < 10; i++) j.append(write(i, 'k'.repeat(100)));
  await j.flush();
  const frame = encodeRecord({ ...write(0, 'k'.repeat(100)), seq: 1 } as Record).length;
  t.is(j.bytesAfter(0), 10 * frame);
  t.is(j.bytesAfter(10), 0);
  t.is(j.bytesAfter(5), 5 * frame);
  await j.close();
});

test('a write record is framed without copying its payload: head + payload is the frame encodeRecord makes, and it decodes', async (t) => {
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  const rec = { op: 'write', id: ID, offset: 12345, data, seq: 9 } as Record;
  const [head, payload] = encodeRecordParts(rec);
  t.is(payload, data, 'the payload is the caller\'s buffer itself');
  const frame = Buffer.concat([head, payload!]);
  t.deepEqual(frame, encodeRecord(rec));
  const r = readFrame(frame);
  t.is(r.kind, 'record');
  if (r.kind === 'record' && r.record.op === 'write') t.deepEqual(r.record.data, data);
  // One flipped payload byte breaks the checksum that covers head and payload together.
  frame[frame.length - 1] ^= 1;
  t.is(readFrame(frame).kind, 'corrupt');
});

test('large and small records written together read back whole and in order (heads and payloads in one writev)', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { segmentBytes: 3 << 20 });
  const big = (i: number): Buffer => Buffer.alloc(700_000 + i, i);
  const want: string[] = [];
  for (let i = 0; i < 12; i++) {
    if (i % 3 === 0) {
      j.append({ op: 'setattr', id: ID, attrs: { mode: 0o100644, uid: 0, gid: 0, size: i, atime: [1, 0], mtime: [2, 0], rdev: 0 } });
      want.push(`setattr ${i}`);
    } else {
      j.append({ op: 'write', id: ID, offset: i, data: big(i) });
      want.push(`write ${big(i).length} ${i}`);
    }
  }
  await j.flush();
  const recs = await allRecords(j);
  t.deepEqual(recs.map((r) => (r.op === 'write' ? `write ${r.data.length} ${r.data[0]}` : `setattr ${r.op === 'setattr' ? r.attrs.size : ''}`)), want);
  t.true((await readdir(dir)).length > 1, 'the segments rolled over');
  await j.close();
  // Reopened: every frame checks out (nothing cut).
  const j2 = await Journal.open(dir, log, { segmentBytes: 3 << 20 });
  t.is(j2.lastSeq, 12);
  t.is((await allRecords(j2)).length, 12);
  await j2.close();
});

test('readAfter: the same batch read again (after a linger, after a failed send), or from any record, is the same records; `into` is used when large enough', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  for (let i = 0; i < 300; i++) j.append(write(i, `record ${i} `.repeat(20)));
  await j.flush();
  const seqsOf = (b: { frames: Buffer } | null): number[] => (b === null ? [] : decodeFrames(b.frames).map((r) => r.seq));
  const b1 = await j.readAfter(0, 8192);
  t.truthy(b1);
  t.deepEqual(seqsOf(await j.readAfter(0, 8192)), seqsOf(b1), 'the first batch again');
  const b2 = await j.readAfter(b1!.lastSeq, 8192);
  t.is(seqsOf(b2)[0], b1!.lastSeq + 1);
  t.deepEqual(seqsOf(await j.readAfter(b1!.lastSeq, 8192)), seqsOf(b2), 'the second batch again');
  // Not where a batch started or ended: found by walking the frame headers.
  const mid = b2!.lastSeq - 3;
  t.is(seqsOf(await j.readAfter(mid, 8192))[0], mid + 1);
  const into = Buffer.alloc(16384);
  const b3 = await j.readAfter(b2!.lastSeq, 8192, into);
  t.is(b3!.frames.buffer, into.buffer, 'read into the buffer given');
  t.is(seqsOf(b3)[0], b2!.lastSeq + 1);
  const small = Buffer.alloc(100);
  const b4 = await j.readAfter(b3!.lastSeq, 8192, small);
  t.not(b4!.frames.buffer, small.buffer, 'a buffer too small is not used');
  t.is(seqsOf(b4)[0], b3!.lastSeq + 1);
  await j.close();
});

test('a record appended is written by flush() and sync() at once, without waiting for the small-record delay', async (t) => {
  const j = await Journal.open(await tempDir(t), log);
  j.append(write(0, 'x'));
  await j.flush();
  t.is(j.writtenSeq, 1);
  j.append(write(1, 'y'));
  await j.sync();
  t.is(j.durableSeq, 2);
  // Left alone, it is written by itself soon after.
  j.append(write(2, 'z'));
  for (let i = 0; i < 100 && j.writtenSeq < 3; i++) await new Promise((r) => setTimeout(r, 5));
  t.is(j.writtenSeq, 3);
  await j.close();
});

test('batches taken from the frames kept in memory are the bytes the segment holds; past the window they come from the segment', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { segmentBytes: 8 << 20 });
  // 24 MiB of writes (more than the 16 MiB kept) with small records between them, across segment roll-overs.
  for (let i = 0; i < 24; i++) {
    j.append({ op: 'write', id: ID, offset: i << 20, data: Buffer.alloc(1 << 20, i + 1) });
    j.append(write(i, `small ${i}`));
  }
  await j.flush();
  const fromLive: Buffer[] = [];
  for (let seq = 0; ;) {
    const b = await j.readAfter(seq, 3 << 20);
    if (b === null) break;
    fromLive.push(Buffer.from(b.frames));
    seq = b.lastSeq;
  }
  await j.close();
  // The same journal reopened keeps nothing in memory: every batch is read from the segments.
  const j2 = await Journal.open(dir, log, { segmentBytes: 8 << 20 });
  const fromDisk: Buffer[] = [];
  for (let seq = 0; ;) {
    const b = await j2.readAfter(seq, 3 << 20);
    if (b === null) break;
    fromDisk.push(Buffer.from(b.frames));
    seq = b.lastSeq;
  }
  t.true(Buffer.concat(fromLive).equals(Buffer.concat(fromDisk)), 'the same bytes');
  t.deepEqual(fromLive.map((b) => b.length), fromDisk.map((b) => b.length), 'the same batches');
  const recs = decodeFrames(Buffer.concat(fromLive));
  t.is(recs.length, 48);
  t.true(recs.every((r, i) => r.seq === i + 1 && (r.op !== 'write' || i % 2 === 1 || r.data.every((x) => x === i / 2 + 1))));
  // After an ack, what is left still reads back right (the kept frames are trimmed with the segments).
  await j2.trim(30);
  t.is(decodeFrames((await j2.readAfter(30, 1 << 20))!.frames)[0]!.seq, 31);
  await j2.close();
});

// ---- a full disk (a small tmpfs of its own) ------------------------------------------------------

/** A tmpfs of `size` (its own disk, which the test fills), unmounted after; null (and a skip reason) when none can be mounted. */
async function smallDisk(t: ExecutionContext, size: string): Promise<string | null> {
  const dir = await tempDir(t);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (m.status !== 0) return null;
  t.teardown(() => { spawnSync('umount', ['-l', dir]); });
  return dir;
}
const diskWhy = process.getuid?.() === 0 ? '' : ' (skipped: mounting a tmpfs needs root)';
const diskTest = diskWhy === '' ? test.serial : test.skip;

/** Fills the disk holding `dir` (a file of zeros until ENOSPC); returns its path. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, 'filler');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) await appendFile(path, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  return path;
}

async function waitUntil(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

diskTest(`room kept ahead: on a disk something else filled, records are still written and made durable, roomShort says so, a reopen after a crash reads every one, and it ends when room returns${diskWhy}`, async (t) => {
  const disk = await smallDisk(t, '4m');
  if (disk === null) return t.fail('cannot mount a tmpfs');
  const dir = join(disk, 'journal');
  const j = await Journal.open(dir, log, { roomAhead: 512 * 1024 });
  t.is(j.roomAhead, 512 * 1024);
  const seg = join(dir, (await readdir(dir))[0]!);
  t.true((await stat(seg)).blocks * 512 >= 512 * 1024, 'the room is allocated at open');
  t.is((await stat(seg)).size, 0, 'past the end of the segment (a reader sees no frame there)');
  const filler = await fill(disk);
  // About 350 KiB of records (~180 bytes each): past half the room kept, so a top-up is tried, and finds none.
  const n = 2600;
  for (let i = 0; i < n; i++) {
    j.append(write(i, `${i}:${'x'.repeat(40)}`));
    if (i % 500 === 499) await j.sync();
  }
  await j.sync();
  t.log(`${j.bytes} bytes of records in 512 KiB kept ahead`);
  t.is(j.durableSeq, n, 'every record durable on a full disk');
  t.is(j.noRoom, null, 'nothing waits in memory');
  t.not(j.roomShort, null, 'the top-up found no room');
  t.true(j.roomShort!.aheadBytes > 0 && j.roomShort!.aheadBytes < 256 * 1024);
  // A crash (no close): a second journal opened on the directory reads every record.
  const again = await Journal.open(dir, log, { roomAhead: 512 * 1024 });
  const recs = await allRecords(again);
  t.deepEqual(recs.map((r) => r.seq), Array.from({ length: n }, (_, i) => i + 1));
  t.true(recs.every((r, i) => r.op === 'write' && r.data.toString() === `${i}:${'x'.repeat(40)}`));
  await again.close();
  // Room again: the next retry tops up, and the state ends.
  await rm(filler);
  await waitUntil('the room kept ahead to be whole again', () => j.roomShort === null, 5000);
  t.true((await stat(seg)).blocks * 512 - (await stat(seg)).size >= 512 * 1024);
  await j.close();
});

diskTest(`past the room kept ahead, records wait in memory (noRoom) and are written in order, none twice, once there is room${diskWhy}`, async (t) => {
  const disk = await smallDisk(t, '4m');
  if (disk === null) return t.fail('cannot mount a tmpfs');
  const dir = join(disk, 'journal');
  const j = await Journal.open(dir, log, { roomAhead: 64 * 1024 });
  const filler = await fill(disk);
  const n = 2000;
  for (let i = 0; i < n; i++) j.append(write(i, `${i}:${'y'.repeat(200)}`));
  await t.throwsAsync(j.sync(), { code: 'ENOSPC' }, 'more than the room kept cannot be made durable');
  // (A scheduled flush may be trying again meanwhile, the frames out of the queue: the next try settles it.)
  await t.throwsAsync(j.flush(), { code: 'ENOSPC' });
  t.not(j.noRoom, null);
  t.true(j.noRoom!.records > 0 && j.noRoom!.records <= n, JSON.stringify(j.noRoom));
  await rm(filler);
  await j.sync();
  t.is(j.noRoom, null);
  t.is(j.durableSeq, n);
  const recs = await allRecords(j);
  t.deepEqual(recs.map((r) => r.seq), Array.from({ length: n }, (_, i) => i + 1), 'in order, none twice, none torn');
  await j.close();
});

diskTest(`makeRoomFor: a record that fits with half the room kept left is let through; a larger one on a full disk is refused first (roomShort), and removals' records still fit after${diskWhy}`, async (t) => {
  const disk = await smallDisk(t, '4m');
  if (disk === null) return t.fail('cannot mount a tmpfs');
  const j = await Journal.open(join(disk, 'journal'), log, { roomAhead: 512 * 1024 });
  await fill(disk);
  t.is(j.roomLeft, 512 * 1024);
  t.true(await j.makeRoomFor(100 * 1024), 'fits, half the room still left: nothing to allocate');
  t.is(j.roomShort, null);
  // An overwrite of 400 KiB of existing blocks (needs no room on the store): its record would leave less than half.
  t.false(await j.makeRoomFor(400 * 1024), 'refused: the disk has no room to top up');
  t.not(j.roomShort, null);
  // What the room kept is for: records of changes that take none.
  for (let i = 0; i < 1000; i++) j.append({ op: 'unlink', parent: ID, name: `n${i}`, parentMtime: [1, 0] });
  await j.sync();
  t.is(j.durableSeq, 1000);
  t.is(j.noRoom, null);
  await j.close();
});

diskTest(`a disk the journal's own records filled: once the archive has them all, the segment goes early and the room kept ahead is whole again (not short for good)${diskWhy}`, async (t) => {
  const disk = await smallDisk(t, '4m');
  if (disk === null) return t.fail('cannot mount a tmpfs');
  const dir = join(disk, 'journal');
  const j = await Journal.open(dir, log, { roomAhead: 512 * 1024 });
  // 64 KiB records until the top-up finds no room: the segment (64 MiB by default) holds them all.
  let n = 0;
  while (j.roomShort === null && n < 100) {
    j.append({ op: 'write', id: ID, offset: n * 65536, data: Buffer.alloc(65536, n) });
    n++;
    await j.sync().catch(() => {});
  }
  t.not(j.roomShort, null, `short after ${n} records`);
  // The archive acks everything (as the shipper's trim says): the segment being written can go.
  await j.trim(j.lastSeq);
  await waitUntil('the room kept ahead to be whole again', () => j.roomShort === null, 5000);
  t.is(j.noRoom, null);
  // And it goes on: more records, read back after the ones acked.
  const first = j.append(write(1, 'after'));
  await j.sync();
  t.deepEqual((await allRecords(j, first - 1)).map((r) => r.seq), [first]);
  await j.close();
});

test('on a small disk (room kept ahead under a quarter of a segment) a segment the archive holds entirely goes once it is twice that room, disk full or not', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { roomAhead: 256 * 1024 });
  for (let i = 0; i < 8; i++) j.append({ op: 'write', id: ID, offset: i * 65536, data: Buffer.alloc(65536, i) });
  await j.sync();
  const first = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
  t.is(first.length, 1);
  await j.trim(j.lastSeq - 1);
  await j.flush();
  t.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.seg')), first, 'not while a record is not acked');
  await j.trim(j.lastSeq);
  await j.flush(); // the drop runs in the journal's chain, behind the trim
  const after = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
  t.is(after.length, 1);
  t.not(after[0], first[0], 'a new segment; the acked one is gone');
  t.is(j.append(write(1, 'more')), 9);
  await j.sync();
  t.deepEqual((await allRecords(j, 8)).map((r) => r.seq), [9]);
  await j.close();
});

test('on a small disk a segment rolls over at four times the room kept: a stream never acked whole leaves only its last segment once the archive holds the rest', async (t) => {
  const dir = await tempDir(t);
  const j = await Journal.open(dir, log, { roomAhead: 256 * 1024 });
  for (let i = 0; i < 40; i++) j.append({ op: 'write', id: ID, offset: i * 65536, data: Buffer.alloc(65536, i) });
  await j.sync();
  const segs = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
  t.true(segs.length >= 3, `2.5 MiB of records in segments of 1 MiB: ${segs.length}`);
  // Every record but the last acked (a stream goes on): all but the last segment go.
  await j.trim(j.lastSeq - 1);
  await j.flush();
  const left = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
  t.is(left.length, 1);
  t.true(j.bytes <= 1024 * 1024 + 2 * 65536, `bytes the journal still takes: ${j.bytes}`);
  t.deepEqual((await allRecords(j, j.lastSeq - 1)).map((r) => r.seq), [j.lastSeq]);
  await j.close();
});

diskTest(`a state file on a full disk borrows from the journal's room kept ahead; the journal goes on writing${diskWhy}`, async (t) => {
  const disk = await smallDisk(t, '4m');
  if (disk === null) return t.fail('cannot mount a tmpfs');
  const j = await Journal.open(join(disk, 'journal'), log, { roomAhead: 512 * 1024 });
  const privateDir = join(disk, 'private');
  await mkdir(privateDir);
  await fill(disk);
  const state = join(privateDir, 'state.json');
  await t.throwsAsync(writeFileDurably(state, '{"a":1}\n'), { code: 'ENOSPC' }, 'without a lender the disk has no room');
  const end = lendRoom(privateDir, (bytes) => j.giveBackRoom(bytes));
  t.teardown(end);
  await writeFileDurably(state, '{"a":2}\n');
  t.is(await readFile(state, 'utf8'), '{"a":2}\n');
  await writeFileDurably(state, '{"a":3}\n');
  t.is(await readFile(state, 'utf8'), '{"a":3}\n', 'and again');
  for (let i = 0; i < 100; i++) j.append(write(i, `after ${i}`));
  await j.sync();
  t.is(j.durableSeq, 100);
  t.is((await allRecords(j)).length, 100);
  await j.close();
  // Closed (a clean stop writes its last state after the journal closes): it still lends.
  await fill(disk);
  await writeFileDurably(state, '{"a":4}\n');
  t.is(await readFile(state, 'utf8'), '{"a":4}\n', 'after close');
});

test('the room kept ahead: 1% of the disk, at least 1 MiB, at most 64 MiB, never more than an eighth of a small disk', (t) => {
  const MiB = 1024 * 1024;
  t.is(roomAheadFor(12 * MiB), MiB);
  t.is(roomAheadFor(4 * MiB), 512 * 1024);
  t.is(roomAheadFor(1000 * MiB), 10 * MiB);
  t.is(roomAheadFor(2 ** 40), 64 * MiB);
});
