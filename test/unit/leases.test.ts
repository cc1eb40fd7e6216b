// The lease rules on both sides (issue 15), with injected monotonic clocks:
// the archive's LeaseTable (renew, refuse another holder while live, lapse,
// release, fence with and without force, the grace period after a restart)
// and the primary's LeaseKeeper (held, expired, fenced). A jump of the wall
// clock (Date.now) never expires a lease early.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { LeaseTable } from '../../src/archive/leases.js';
import { LeaseKeeper } from '../../src/mirror/lease.js';
import { ArchiveError, type ArchiveClient } from '../../src/protocol/archive-api.js';
import type { LeaseHolder, LeaseRenewal } from '../../src/protocol/leases.js';

const log = pino({ level: 'silent' });
const A: LeaseHolder = { host: 'a', storeId: 'aaaaaaaaaaaaaaaa', pid: 1, mountpoint: '/mnt/a' };
const B: LeaseHolder = { host: 'b', storeId: 'bbbbbbbbbbbbbbbb', pid: 2, mountpoint: '/mnt/b' };
const ren = (holder: LeaseHolder, epoch = 1, leaseMs = 10_000): LeaseRenewal => ({ holder, epoch, leaseMs, ackedSeq: 5, lastSeq: 7 });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as ArchiveError).code;
  }
  return undefined;
}

test('archive: a live lease refuses another holder (naming it); once lapsed, another may take it', (t) => {
  let now = 0;
  const tab = new LeaseTable({ file: null, log, now: () => now });
  t.like(tab.renew('v', ren(A), 1), { epoch: 1, enforced: true });
  now = 9_000;
  const err = t.throws(() => tab.renew('v', ren(B), 1)) as ArchiveError;
  t.is(err.code, 'EHELD');
  t.regex(err.message, /held by a \(pid 1, mount \/mnt\/a/);
  t.is(tab.stateOf(tab.get('v'), 1), 'active');
  now = 20_001;
  t.is(tab.stateOf(tab.get('v'), 1), 'lapsed');
  t.is(tab.tick().length, 1);
  tab.renew('v', ren(B), 1);
  t.is(tab.get('v')!.holder!.host, 'b');
});

test('archive: EFENCED names who fenced and when; a fence is refused while a lease is live unless forced', (t) => {
  let now = 0;
  const tab = new LeaseTable({ file: null, log, now: () => now });
  tab.renew('v', ren(A), 1);
  t.is(codeOf(() => tab.checkFence('v', { holder: B })), 'EHELD');
  t.is(codeOf(() => tab.checkFence('v', { holder: B, force: true })), undefined);
  tab.fenced('v', 2, { holder: B, force: true });
  const err = t.throws(() => tab.renew('v', ren(A, 1), 2)) as ArchiveError;
  t.is(err.code, 'EFENCED');
  t.regex(err.message, /fenced by b \(pid 2.*at \d{4}-.*\(forced\)/);
  t.is(tab.stateOf(tab.get('v'), 2), 'active', 'the fencer holds the lease');
  now = 11_000;
  t.is(codeOf(() => tab.checkFence('v', { holder: A })), undefined, 'lapsed: no force needed');
});

test('archive: a release by its holder makes the volume free at once; the operator cannot release a live lease', (t) => {
  const now = 0;
  const tab = new LeaseTable({ file: null, log, now: () => now });
  tab.renew('v', ren(A), 1);
  t.is(codeOf(() => tab.releaseLapsed('v')), 'EHELD');
  t.is(codeOf(() => tab.release('v', { holder: B, epoch: 1, lastSeq: 7 })), 'EHELD');
  tab.release('v', { holder: A, epoch: 1, lastSeq: 7 });
  t.is(tab.stateOf(tab.get('v'), 1), 'released');
  t.false(tab.live(tab.get('v')!));
  t.deepEqual(tab.tick(), [], 'a released volume is never taken over');
  t.is(codeOf(() => tab.checkFence('v', { holder: B })), undefined);
});

test('archive: after a restart every holder gets a full lease from the restart (no takeover because the archive was down)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-leases-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let now = 0;
  const first = new LeaseTable({ file: join(dir, 'leases.json'), log, now: () => now });
  first.renew('v', ren(A), 1);
  // The archive is down for an hour; a new process starts its monotonic clock elsewhere.
  now = 3_600_000;
  const second = new LeaseTable({ file: join(dir, 'leases.json'), log, now: () => now });
  t.is(second.get('v')!.holder!.storeId, A.storeId);
  t.true(second.live(second.get('v')!));
  t.deepEqual(second.tick(), []);
  now += 10_001;
  t.is(second.tick().length, 1);
});

test('archive: a wall-clock jump does not expire a lease (ages are monotonic)', (t) => {
  const tab = new LeaseTable({ file: null, log });
  tab.renew('v', ren(A), 1);
  const realNow = Date.now;
  Date.now = () => realNow() + 3_600_000;
  try {
    t.true(tab.live(tab.get('v')!));
    t.true(tab.ageSeconds(tab.get('v')!)! < 5);
  } finally {
    Date.now = realNow;
  }
});

function fakeClient(answer: () => Promise<unknown>): ArchiveClient {
  return { url: 'strata://fake:1', renewLease: answer, releaseLease: async () => ({}) } as unknown as ArchiveClient;
}

test('primary: held while renewals succeed, expired after the lease without one, fenced for good on EFENCED', async (t) => {
  let now = 0;
  let mode: 'ok' | 'down' | 'fenced' = 'ok';
  const states: string[] = [];
  let fencedWith = '';
  const k = new LeaseKeeper(fakeClient(async () => {
    if (mode === 'down') throw new ArchiveError('EUNAVAILABLE', 'down');
    if (mode === 'fenced') throw new ArchiveError('EFENCED', 'volume v is at epoch 2; epoch 1 was fenced by b');
    return { epoch: 1, leaseMs: 2000, enforced: true };
  }), 'v', 1, A, log, { leaseMs: 2000, progress: () => ({ ackedSeq: 0, lastSeq: 0 }), onFenced: (r) => { fencedWith = r; }, onChange: (s) => states.push(s), now: () => now });
  t.is(await k.acquire(), 'held');
  t.true(k.durable);
  mode = 'down';
  now = 1500;
  t.is(k.state, 'held');
  // A wall-clock jump changes nothing.
  const realNow = Date.now;
  Date.now = () => realNow() + 86_400_000;
  try {
    t.is(k.state, 'held');
  } finally {
    Date.now = realNow;
  }
  now = 2001;
  t.is(k.state, 'expired');
  t.false(k.durable);
  t.is(await k.acquire(), 'unreachable');
  t.true(states.includes('expired'), 'the mirror is told (it fails waiting fsyncs with EIO)');
  mode = 'ok';
  t.is(await k.acquire(), 'held', 'renewed again: durability again');
  mode = 'fenced';
  t.is(await k.acquire(), 'fenced');
  t.regex(fencedWith, /fenced by b/);
  t.false(k.durable);
  mode = 'ok';
  await k.acquire();
  t.is(k.state, 'fenced', 'fenced for good');
});

test('primary: another holder refuses the first renewal (EHELD)', async (t) => {
  const k = new LeaseKeeper(fakeClient(async () => { throw new ArchiveError('EHELD', 'volume v is held by b'); }), 'v', 1, A, log,
    { leaseMs: 2000, progress: () => ({ ackedSeq: 0, lastSeq: 0 }), onFenced: () => {} });
  const err = await t.throwsAsync(k.acquire());
  t.regex(err!.message, /held by b/);
});

test('primary: renewals answered later than a third of the lease (a slow, full link) keep it held; they go out while earlier ones wait', async (t) => {
  // Each answer takes 600 ms, a lease is 1500 ms: one renewal at a time, each given a third of the lease (at least 500 ms), would never be answered in time.
  const rttMs = 600;
  let outstanding = 0;
  let most = 0;
  const client = {
    url: 'strata://fake:1',
    renewLease: (_v: string, _r: LeaseRenewal, timeoutMs?: number) => new Promise((resolve, reject) => {
      outstanding++;
      most = Math.max(most, outstanding);
      const done = (): void => { outstanding--; };
      if (timeoutMs !== undefined && timeoutMs < rttMs) setTimeout(() => { done(); reject(new ArchiveError('EUNAVAILABLE', `no answer for ${timeoutMs} ms`)); }, timeoutMs);
      else setTimeout(() => { done(); resolve({ epoch: 1, leaseMs: 1500, enforced: true }); }, rttMs);
    }),
    releaseLease: async () => ({}),
  } as unknown as ArchiveClient;
  const states: string[] = [];
  const k = new LeaseKeeper(client, 'v', 1, A, log, { leaseMs: 1500, renewMs: 100, progress: () => ({ ackedSeq: 0, lastSeq: 0 }), onFenced: () => {}, onChange: (s) => states.push(s) });
  t.is(await k.acquire(), 'held');
  k.start();
  try {
    const seen = new Set<string>();
    for (let i = 0; i < 25; i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen.add(k.state);
    }
    t.deepEqual([...seen], ['held'], `states seen over 2.5 s: ${[...seen].join(', ')}`);
    t.false(states.includes('expired'));
    t.true(most > 1, 'renewals overlap');
    t.true(most <= 8, `at most 8 renewals out at once (saw ${most})`);
  } finally {
    await k.stop();
  }
});
