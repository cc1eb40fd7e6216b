// Helpers of the swap tests (docs/swap.md): a mirrored mount whose file://
// archive has a snapshot target, snapshots taken through the CLI, swap
// commands, and programs that hammer a mount across a swap.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { strata } from './mount.js';
import { syncMount, withMirroredMount, type MirroredMount } from './mirror.js';
import { Rng, applyBuild, randomTree } from './model-tree.js';
import { createCheckpoint } from './checkpoint.js';
import type { SnapshotInfo } from '../../src/protocol/snapshot-api.js';
import type { CommitResult, SwapStatus } from '../../src/swap/controller.js';

/** A mirrored mount (file:// archive) whose archive can take snapshots (one target). */
export function withSwapMount(t: ExecutionContext, extraArgs: string[] = []): MirroredMount {
  const m = withMirroredMount(t, { extraArgs });
  const target = join(m.base, 'targetA');
  mkdirSync(target);
  const r = strata(['archive', 'targets', '--archive', m.archiveUrl, '--target', `A=${target}`]);
  if (r.status !== 0) throw new Error(`strata archive targets failed: ${r.stderr}${r.stdout}`);
  return m;
}

export function snapshotNow(m: MirroredMount): SnapshotInfo {
  const r = strata(['snapshot', 'create', m.mnt, '--wait', '--json']);
  if (r.status !== 0) throw new Error(`strata snapshot create failed: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as SnapshotInfo;
}

export function prepare(mnt: string, spare: string, from: string, extra: string[] = []): { status: number | null; out: string } {
  const r = strata(['swap', 'prepare', mnt, '--spare', spare, '--from', from, ...extra]);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

export function commit(mnt: string, extra: string[] = [], direction: 'commit' | 'back' = 'commit'): { status: number | null; result: CommitResult | null; out: string } {
  const r = strata(['swap', direction, mnt, '--json', ...extra]);
  let result: CommitResult | null = null;
  try { result = JSON.parse(r.stdout) as CommitResult; } catch { /* an error: stderr says why */ }
  return { status: r.status, result, out: `${r.stdout}${r.stderr}` };
}

export function swapStatus(mnt: string): SwapStatus {
  const r = strata(['status', '--json', mnt]);
  if (r.status !== 0) throw new Error(`strata status failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { swap: SwapStatus }).swap;
}

/** A manifest (test/helpers/recover.ts) without the lines of the names `skip` (top level). */
export function without(manifestText: string, skip: string[]): string {
  return manifestText.split('\n').filter((l) => !skip.some((s) => l.startsWith(`./${s}|`) || l.includes(`  ./${s}`) || l.startsWith(`# file: ${s}`) || l === ` ./${s}`)).join('\n');
}

export interface Hammer {
  stop(): Promise<{ reader: HammerReport; writer: HammerReport }>;
}

export interface HammerReport {
  code: number | null;
  iterations: number;
  errors: string[];
  /** Reads whose bytes were neither wholly the old nor wholly the new file. */
  mixed: string[];
  sawOld: number;
  sawNew: number;
}

const READER = `
const fs = require('fs'), crypto = require('crypto');
const [dir, allowedFile, stopFile, outFile] = process.argv.slice(1);
const allowed = JSON.parse(fs.readFileSync(allowedFile, 'utf8'));
const rep = { iterations: 0, errors: [], mixed: [], sawOld: 0, sawNew: 0 };
while (!fs.existsSync(stopFile)) {
  for (const [name, { old, now }] of Object.entries(allowed)) {
    try {
      const d = crypto.createHash('sha256').update(fs.readFileSync(dir + '/' + name)).digest('hex');
      if (d === old) rep.sawOld++; else if (d === now) rep.sawNew++; else rep.mixed.push(name);
    } catch (e) { rep.errors.push(name + ': ' + e.code); }
  }
  rep.iterations++;
}
fs.writeFileSync(outFile, JSON.stringify(rep));
`;

const WRITER = `
const fs = require('fs');
const [log, stopFile, outFile] = process.argv.slice(1);
const rep = { iterations: 0, errors: [], mixed: [], sawOld: 0, sawNew: 0 };
while (!fs.existsSync(stopFile)) {
  try { fs.appendFileSync(log, 'line ' + rep.iterations + '\\n'); } catch (e) { rep.errors.push(e.code); }
  rep.iterations++;
}
fs.writeFileSync(outFile, JSON.stringify(rep));
`;

function finished(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => { if (p.exitCode !== null) resolve(p.exitCode); else p.once('exit', (code) => resolve(code)); });
}

/**
 * Starts a reader that checksums `files` in a loop (each digest must be the
 * file's digest in the tree before or in the tree after: `allowed`) and a
 * writer that appends lines to `log`, as separate processes.
 */
export function hammer(base: string, mnt: string, allowed: Record<string, { old: string; now: string }>, log: string): Hammer {
  const dir = join(base, `hammer-${Date.now()}`);
  mkdirSync(dir);
  const allowedFile = join(dir, 'allowed.json');
  writeFileSync(allowedFile, JSON.stringify(allowed));
  const stopFile = join(dir, 'stop');
  const reader = spawn(process.execPath, ['-e', READER, mnt, allowedFile, stopFile, join(dir, 'reader.json')], { stdio: 'ignore' });
  const writer = spawn(process.execPath, ['-e', WRITER, log, stopFile, join(dir, 'writer.json')], { stdio: 'ignore' });
  return {
    async stop() {
      writeFileSync(stopFile, '');
      const [rc, wc] = await Promise.all([finished(reader), finished(writer)]);
      const read = (f: string, code: number | null): HammerReport => ({
        code, ...(existsSync(join(dir, f)) ? JSON.parse(readFileSync(join(dir, f), 'utf8')) as Omit<HammerReport, 'code'> : { iterations: 0, errors: ['no report'], mixed: [], sawOld: 0, sawNew: 0 }),
      });
      return { reader: read('reader.json', rc), writer: read('writer.json', wc) };
    },
  };
}

/**
 * The start of the swap model tests: a swap mount and a native model
 * directory holding the same random tree (from `rng`), mirrored to the
 * archive, with a snapshot and a checkpoint named `point` of that moment.
 */
export async function swapModelStart(t: ExecutionContext, rng: Rng): Promise<{ m: MirroredMount; model: string; snap: SnapshotInfo }> {
  const m = withSwapMount(t);
  const model = join(m.base, 'model');
  mkdirSync(model);
  const spec = randomTree(rng);
  await applyBuild(m.mnt, spec.steps);
  await applyBuild(model, spec.steps);
  syncMount(m);
  const snap = snapshotNow(m);
  createCheckpoint(m.mnt, 'point');
  return { m, model, snap };
}

/**
 * Stops `h` and asserts what every swap under load must give: no read or
 * append failed, every read was wholly the old or wholly the new tree, and
 * the reader saw both (so the swap happened while it read).
 */
export async function assertHammerClean(t: ExecutionContext, h: Hammer): Promise<void> {
  const { reader, writer } = await h.stop();
  t.is(reader.code, 0);
  t.deepEqual(reader.errors, [], 'no read failed');
  t.deepEqual(reader.mixed, [], 'every read was wholly old or wholly new');
  t.true(reader.sawOld > 0 && reader.sawNew > 0, `the reader saw both trees (${reader.sawOld} old, ${reader.sawNew} new)`);
  t.is(writer.code, 0);
  t.deepEqual(writer.errors, [], 'no append failed');
  t.true(writer.iterations > 0, 'the writer appended');
}

/** Runs `script` (node -e) in the background; its stdout once it exits. */
export function background(script: string, args: string[]): { done: Promise<string> } {
  const p = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (c: string) => { out += c; });
  return { done: new Promise((resolve) => p.once('close', () => resolve(out))) };
}

export function sleepMs(ms: number): void {
  spawnSync('sleep', [String(ms / 1000)]);
}
