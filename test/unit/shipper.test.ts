// The shipper against an in-memory archive that can fail on demand (down,
// lost acks, fenced): records arrive in order, exactly once, and shipping
// resumes by itself.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Journal } from '../../src/journal/journal.js';
import { Shipper } from '../../src/mirror/shipper.js';
import { decodeFrames, type NewRecord } from '../../src/protocol/records.js';
import { ArchiveError, type ArchiveClient, type ShipResult } from '../../src/protocol/archive-api.js';
import type { VolumeState } from '../../src/protocol/images.js';

const log = pino({ level: 'silent' });

/** Keeps shipped record seqs; `down` fails every call; `loseAcks` applies a batch but fails the reply. */
class FakeArchive implements Pick<ArchiveClient, 'url' | 'volumeState' | 'ship' | 'fence'> {
  readonly url = 'fake://';
  applied: number[] = [];
  epoch = 1;
  down = false;
  /** Every call hangs (a stopped archive process) until released. */
  hang: Promise<void> | null = null;
  loseAcks = 0;
  calls = 0;

  async volumeState(volume: string): Promise<VolumeState | null> {
    this.calls++;
    if (this.hang) await this.hang;
    if (this.down) throw new ArchiveError('EUNAVAILABLE', 'down');
    return { name: volume, epoch: this.epoch, appliedSeq: this.appliedSeq, totals: { entries: 0, bytes: 0 } };
  }

  get appliedSeq(): number {
    return this.applied[this.applied.length - 1] ?? 0;
  }

  async ship(_volume: string, epoch: number, frames: Buffer): Promise<ShipResult> {
    this.calls++;
    if (this.down) throw new ArchiveError('EUNAVAILABLE', 'down');
    if (epoch < this.epoch) throw new ArchiveError('EFENCED', 'fenced');
    for (const r of decodeFrames(frames)) {
      if (r.seq <= this.appliedSeq) continue;
      if (r.seq !== this.appliedSeq + 1) throw new ArchiveError('EGAP', `gap before ${r.seq}`);
      this.applied.push(r.seq);
    }
    if (this.loseAcks > 0) {
      this.loseAcks--;
      throw new ArchiveError('EUNAVAILABLE', 'connection lost before the ack');
    }
    return { appliedSeq: this.appliedSeq };
  }

  async fence(volume: string): Promise<VolumeState> {
    this.epoch++;
    return (await this.volumeState(volume))!;
  }
}

async function setup(t: { teardown(fn: () => Promise<void>): void }, archive: FakeArchive) {
  const dir = await mkdtemp(join(tmpdir(), 'strata-shipper-'));
  const journal = await Journal.open(dir, log, { segmentBytes: 4096 });
  const shipper = new Shipper(journal, archive as unknown as ArchiveClient, 'vol', 1, log, {
    backoffMinMs: 10, backoffMaxMs: 40, batchBytes: 2048, heartbeatMs: 50, unresponsiveMs: 100,
  });
  t.teardown(async () => {
    await shipper.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { journal, shipper };
}

const rec = (i: number): NewRecord => ({ op: 'write', id: 'cd'.repeat(16), offset: i, data: Buffer.alloc(100, i) });

test('records reach the archive in order, exactly once, and acked segments are trimmed', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  shipper.start();
  let last = 0;
  for (let i = 0; i < 200; i++) last = journal.append(rec(i));
  await shipper.waitAcked(last);
  t.deepEqual(archive.applied, Array.from({ length: 200 }, (_, i) => i + 1));
  t.is(shipper.state, 'connected');
  t.true(journal.firstSeq > 150, `segments up to the ack are gone (oldest kept ${journal.firstSeq})`);
});

test('an outage: appends go on, waiters wait, shipping resumes by itself where the archive left off', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  shipper.start();
  await shipper.waitAcked(journal.append(rec(0)));
  archive.down = true;
  let last = 0;
  for (let i = 1; i < 50; i++) last = journal.append(rec(i));
  let acked = false;
  const waiting = shipper.waitAcked(last).then(() => { acked = true; });
  await sleep(150);
  t.false(acked, 'no ack while the archive is down');
  t.is(shipper.state, 'disconnected');
  archive.down = false;
  await waiting;
  t.deepEqual(archive.applied, Array.from({ length: 50 }, (_, i) => i + 1));
});

test('a lost ack: the batch is resent and the archive keeps each record once', async (t) => {
  const archive = new FakeArchive();
  archive.loseAcks = 3;
  const { journal, shipper } = await setup(t, archive);
  shipper.start();
  let last = 0;
  for (let i = 0; i < 100; i++) last = journal.append(rec(i));
  await shipper.waitAcked(last);
  t.deepEqual(archive.applied, Array.from({ length: 100 }, (_, i) => i + 1));
});

test('fenced: shipping stops, waiters are told, nothing more is sent', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  shipper.start();
  await shipper.waitAcked(journal.append(rec(0)));
  await archive.fence('vol');
  const err = await t.throwsAsync(shipper.waitAcked(journal.append(rec(1))));
  t.regex(err!.message, /fenced/);
  t.is(shipper.state, 'fenced');
  const calls = archive.calls;
  journal.append(rec(2));
  await sleep(100);
  t.is(archive.calls, calls);
  t.deepEqual(archive.applied, [1]);
});

test('a restart resumes from the archive: records it already holds are not sent again', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  for (let i = 0; i < 30; i++) journal.append(rec(i));
  await journal.flush();
  // The archive already got 1..20 before the restart (e.g. the ack was lost with the primary).
  archive.applied = Array.from({ length: 20 }, (_, i) => i + 1);
  shipper.start();
  await shipper.waitAcked(30);
  t.deepEqual(archive.applied, Array.from({ length: 30 }, (_, i) => i + 1));
});

test('an archive behind what the journal still holds: shipping stops as failed, it does not retry forever', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  for (let i = 0; i < 100; i++) journal.append(rec(i));
  await journal.flush();
  await journal.trim(60); // as if the archive had acked up to 60 before losing it
  shipper.start();
  const err = await t.throwsAsync(shipper.waitAcked(100));
  t.regex(err!.message, /no longer holds record 1/);
  t.is(shipper.state, 'failed');
  t.deepEqual(archive.applied, []);
});

test('an idle shipper notices an archive that went away or hangs, and says so in its connection state', async (t) => {
  const archive = new FakeArchive();
  const { journal, shipper } = await setup(t, archive);
  shipper.start();
  await shipper.waitAcked(journal.append(rec(0)));
  t.is(shipper.connection.state, 'connected');
  // Gone, with nothing to ship: the heartbeat finds out.
  archive.down = true;
  await sleep(300);
  t.is(shipper.connection.state, 'disconnected');
  archive.down = false;
  await sleep(300);
  t.is(shipper.connection.state, 'connected');
  // Hung (stopped, not gone): a request without answer.
  let release!: () => void;
  archive.hang = new Promise((resolve) => { release = resolve; });
  await sleep(400);
  t.is(shipper.connection.state, 'unresponsive');
  t.regex(shipper.connection.lastError ?? '', /no answer from the archive/);
  archive.hang = null;
  release();
  await sleep(200);
  t.is(shipper.connection.state, 'connected');
});
