// `strata swap prepare | commit | back | discard MOUNTPOINT`: the spare store
// and swap (docs/swap.md). The work runs in the daemon (src/swap); these ask it
// over the control socket, and prepare shows the progress until the spare is
// ready.
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { callControl } from '../daemon/control.js';
import type { BusyMode, CommitResult, PrepareStatus, SwapRequest, SwapStatus } from '../swap/controller.js';
import { mib } from '../util/units.js';

export interface PrepareOptions {
  spare: string;
  from: string;
  archive?: string;
  volume?: string;
  tokenFile?: string;
  /** Return once it has started (the progress is in `strata status`). */
  wait?: boolean;
  json?: boolean;
}

export interface CommitOptions {
  holdTimeout?: number;
  busy?: string;
  json?: boolean;
}

export function prepareLine(p: PrepareStatus): string {
  const done = p.totals.entries > 0 ? Math.min(100, Math.floor((p.progress.entries / p.totals.entries) * 100)) : 100;
  const width = 24;
  const bar = '#'.repeat(Math.round((done / 100) * width)).padEnd(width, '.');
  return `[${bar}] ${String(done).padStart(3)}%  ${p.progress.entries}/${p.totals.entries} entries, ${mib(p.progress.bytes)}/${mib(p.totals.bytes)}` +
    ` (copied locally ${mib(p.progress.copiedBytes)}, ${p.source.startsWith('checkpoint:') ? `from the checkpoint's log ${mib(p.progress.logBytes ?? 0)}` : `fetched ${mib(p.progress.fetchedBytes)}`}` +
    `${p.progress.kept > 0 ? `, ${p.progress.kept} already in place` : ''})`;
}

async function ask(mnt: string, swap: SwapRequest, timeoutMs = 120_000): Promise<unknown> {
  return callControl(mnt, { cmd: 'swap', swap }, timeoutMs);
}

function fail(cmd: string, msg: string): number {
  process.stderr.write(`strata swap ${cmd}: ${msg}\n`);
  return 1;
}

export async function swapPrepareCommand(mountpoint: string, o: PrepareOptions): Promise<number> {
  const mnt = resolve(mountpoint);
  if ((o.archive === undefined) !== (o.volume === undefined)) return fail('prepare', '--archive and --volume go together');
  const archive = o.archive !== undefined ? { url: o.archive, volume: o.volume!, ...(o.tokenFile !== undefined ? { tokenFile: o.tokenFile } : {}) } : undefined;
  let job: PrepareStatus;
  try {
    job = await ask(mnt, { action: 'prepare', spare: resolve(o.spare), source: o.from, ...(archive ? { archive } : {}) }) as PrepareStatus;
  } catch (err) {
    return fail('prepare', (err as Error).message);
  }
  if (!o.json) process.stdout.write(`${job.resumed ? 'resuming' : 'preparing'} ${job.spare} from ${job.describe}: ${job.totals.entries} entries, ${mib(job.totals.bytes)}\n`);
  if (o.wait === false) {
    if (o.json) process.stdout.write(JSON.stringify(job) + '\n');
    return 0;
  }
  const tty = process.stdout.isTTY === true && !o.json;
  let lastPrint = 0;
  for (;;) {
    await sleep(300);
    let st: { swap: SwapStatus | null };
    try {
      st = await callControl(mnt, { cmd: 'status' }, 10_000) as { swap: SwapStatus | null };
    } catch (err) {
      if (tty) process.stdout.write('\n');
      return fail('prepare', `the daemon stopped answering (${(err as Error).message}); once ${mnt} is mounted again, the same command resumes the prepare`);
    }
    const p = st.swap?.prepare ?? null;
    if (p === null || p.spare !== job.spare) return fail('prepare', 'the prepare was discarded');
    if (tty) process.stdout.write(`\r${prepareLine(p)}`);
    else if (!o.json && Date.now() - lastPrint >= 2000) { lastPrint = Date.now(); process.stdout.write(`${prepareLine(p)}\n`); }
    if (p.state === 'ready') {
      if (tty) process.stdout.write('\n');
      if (o.json) process.stdout.write(JSON.stringify(p) + '\n');
      else process.stdout.write(`${prepareLine(p)}\nthe spare ${p.spare} is ready: \`strata swap commit ${mnt}\` exchanges it with the live store\n`);
      return 0;
    }
    if (p.state === 'failed' || p.state === 'interrupted') {
      if (tty) process.stdout.write('\n');
      return fail('prepare', p.error ?? p.state);
    }
  }
}

export async function swapExchangeCommand(direction: 'commit' | 'back', mountpoint: string, o: CommitOptions): Promise<number> {
  const mnt = resolve(mountpoint);
  if (o.busy !== undefined && o.busy !== 'wait' && o.busy !== 'ebusy') return fail(direction, `--busy takes wait or ebusy, not ${JSON.stringify(o.busy)}`);
  const holdMs = Math.round((o.holdTimeout ?? 5) * 1000);
  let r: CommitResult;
  try {
    r = await ask(mnt, { action: direction, holdTimeoutMs: holdMs, busy: (o.busy ?? 'wait') as BusyMode }, holdMs + 60_000) as CommitResult;
  } catch (err) {
    return fail(direction, (err as Error).message);
  }
  if (o.json) process.stdout.write(JSON.stringify(r) + '\n');
  if (!r.committed) {
    if (!o.json) process.stderr.write(`strata swap ${direction}: rolled back, the old store serves on: ${r.rolledBack ?? ''}\n`);
    return 3;
  }
  if (!o.json) {
    process.stdout.write(`${mnt} now serves ${r.live} (swap ${r.generation}); the old store ${r.spare} is the spare (\`strata swap back\` undoes it)\n` +
      `held ${r.held} requests for at most ${r.longestWaitMs} ms (hold ${r.holdMs} ms${r.ebusy > 0 ? `, ${r.ebusy} answered EBUSY` : ''})\n`);
  }
  return 0;
}

export async function swapDiscardCommand(mountpoint: string, o: { json?: boolean }): Promise<number> {
  const mnt = resolve(mountpoint);
  try {
    const r = await ask(mnt, { action: 'discard' }) as { discarded: string };
    process.stdout.write(o.json ? JSON.stringify(r) + '\n' : `emptied the spare ${r.discarded}\n`);
    return 0;
  } catch (err) {
    return fail('discard', (err as Error).message);
  }
}

/** The swap part of `strata status`, for people. */
export function swapLines(s: SwapStatus | null | undefined): string[] {
  if (!s) return [];
  const out = [`swap         live ${s.live}${s.generation > 0 ? ` (swap ${s.generation})` : ''}${s.spare ? `, spare ${s.spare} (pre-swap tree)` : ''}${s.holding ? ', HOLDING requests' : ''}`];
  if (s.prepare) out.push(`spare        ${s.prepare.spare} from ${s.prepare.describe}: ${s.prepare.state}${s.prepare.error ? ` (${s.prepare.error})` : ''}  ${prepareLine(s.prepare)}`);
  return out;
}
