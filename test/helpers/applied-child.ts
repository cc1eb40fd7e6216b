// A crash-test child that prints "applied SEQ" after each batch the archive
// applied (and other lines of its own): run it and kill -9 it at a seeded
// point, after a number of "applied" lines plus a few milliseconds.
import { spawn } from 'node:child_process';

/** The seeded kill point: after 1..maxLines "applied" lines, plus 0..maxExtraMs-1 ms. */
export function seededKillPoint(seed: number, maxLines: number, maxExtraMs: number): { killAfterLines: number; extraMs: number } {
  let x = seed * 7919;
  const killAfterLines = 1 + (x % maxLines);
  x = (x * 48271) % 2147483647;
  return { killAfterLines, extraMs: x % maxExtraMs };
}

export interface KilledChild {
  /** Everything it printed on stdout and stderr. */
  out: string;
  err: string;
  /** How many "applied" lines it printed. */
  lines: number;
  /** The last sequence number an "applied" line acknowledged (0: none). */
  acked: number;
}

/**
 * Runs `node script ...args` and kills it with SIGKILL `extraMs` after its
 * `killAfterLines`-th "applied" line (or lets it exit by itself first).
 * `onSpawn` gets the child, to kill it in a teardown should the test fail.
 */
export async function runKilledAfterApplied(script: string, args: string[], killAfterLines: number, extraMs: number, onSpawn?: (kill: () => void) => void): Promise<KilledChild> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  onSpawn?.(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let out = '';
  let err = '';
  let lines = 0;
  child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    lines = out.split('\n').filter((l) => l.startsWith('applied')).length;
    if (lines >= killAfterLines) setTimeout(() => child.kill('SIGKILL'), extraMs);
  });
  await exited;
  const acked = Math.max(0, ...out.split('\n').filter((l) => l.startsWith('applied')).map((l) => Number(l.split(' ')[1])));
  return { out, err, lines, acked };
}
