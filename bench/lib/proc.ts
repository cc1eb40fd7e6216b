// Running external programs for the benchmarks: always synchronously, always
// with a time limit (a hung FUSE daemon must not hang the harness), and with
// Ctrl-C turned into an exception so that `finally` blocks unmount and clean up.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';

export class Interrupted extends Error {
  constructor(signal: string) {
    super(`interrupted by ${signal}`);
    this.name = 'Interrupted';
  }
}

let interruptedBy: string | null = null;

/** Installs SIGINT/SIGTERM handlers that make the next checkpoint() throw. */
export function installInterruptHandlers(onSecondSignal: () => void): void {
  const handler = (signal: NodeJS.Signals): void => {
    if (interruptedBy !== null) {
      // A second signal while the harness is still cleaning up: do it now, synchronously.
      onSecondSignal();
      process.exit(130);
    }
    interruptedBy = signal;
    progress(`received ${signal}: stopping after the current step, then cleaning up (send it again to force)`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Lets pending signal handlers run, then throws if the user asked to stop. */
export async function checkpoint(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (interruptedBy !== null) throw new Interrupted(interruptedBy);
}

export function wasInterrupted(): boolean {
  return interruptedBy !== null;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  cwd?: string;
  timeoutMs?: number;
  /** Don't throw on a non-zero exit status. */
  allowFailure?: boolean;
  input?: string;
}

/** Runs a program and returns its output and wall time; throws on failure unless allowFailure. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): RunResult {
  const spawnOpts: SpawnSyncOptions = {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 300_000,
    maxBuffer: 64 * 1024 * 1024,
    killSignal: 'SIGKILL',
  };
  if (opts.cwd !== undefined) spawnOpts.cwd = opts.cwd;
  if (opts.input !== undefined) spawnOpts.input = opts.input;
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, spawnOpts);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM') {
    interruptedBy ??= r.signal;
    throw new Interrupted(r.signal);
  }
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    const why = code === 'ETIMEDOUT' ? `timed out after ${(opts.timeoutMs ?? 300_000) / 1000} s` : r.error.message;
    if (opts.allowFailure) return { status: -1, stdout, stderr: `${stderr}${why}`, seconds };
    throw new Error(`${cmd} ${args.join(' ')}: ${why}`);
  }
  const status = r.status ?? -1;
  if (status !== 0 && !opts.allowFailure) {
    const tail = (stderr || stdout).trim().split('\n').slice(-8).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.signal ?? status}: ${tail}`);
  }
  return { status, stdout, stderr, seconds };
}

const started = Date.now();

/** A progress line on stderr (stdout carries only the JSON document). */
export function progress(msg: string): void {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${msg}\n`);
}

/**
 * Removes a benchmark's work directory (rm -rf is several times faster than
 * fs.rmSync on the ~200,000 entries left behind); true when it is gone.
 */
export function removeWorkDir(workDir: string): boolean {
  if (run('rm', ['-rf', '--one-file-system', workDir], { allowFailure: true, timeoutMs: 600_000 }).status !== 0) {
    rmSync(workDir, { recursive: true, force: true });
  }
  return !existsSync(workDir);
}

/**
 * Runs the named parts of a benchmark: each result goes to `results[name]`;
 * an error is recorded in `errors[name]` and the next part still runs
 * (unless the run was interrupted), after `afterFailure` has put things
 * right for it (a mount left broken, say).
 */
export function partRunner<P extends string>(o: {
  wants: (name: P) => boolean;
  results: Record<string, unknown>;
  errors: Record<string, string>;
  afterFailure: () => void;
}): (name: P, body: () => Promise<unknown>) => Promise<void> {
  return async (name, body) => {
    if (!o.wants(name)) return;
    await checkpoint();
    try {
      o.results[name] = await body();
    } catch (err) {
      if (err instanceof Interrupted) throw err;
      // fio, tar and friends exit non-zero on Ctrl-C; give the signal handler a moment to run.
      await new Promise((r) => setTimeout(r, 100));
      await checkpoint();
      o.errors[name] = err instanceof Error ? err.message : String(err);
      progress(`${name}: FAILED: ${o.errors[name]}`);
      o.afterFailure();
    }
  };
}

export interface DocumentHead {
  schema: string;
  started_at: string;
  finished_at: string;
  duration_s: number;
  complete: boolean;
  interrupted: boolean;
  fatal_error: string | null;
  errors: Record<string, string>;
}

/** The fields every benchmark's JSON document starts with. */
export function documentHead(schema: string, startedAt: string, t0: number, complete: boolean, fatal: string | null, errors: Record<string, string>): DocumentHead {
  return {
    schema,
    started_at: startedAt,
    finished_at: new Date().toISOString(),
    duration_s: Math.round((Date.now() - t0) / 100) / 10,
    complete,
    interrupted: wasInterrupted(),
    fatal_error: fatal,
    errors,
  };
}

/**
 * Prints a benchmark's JSON document (and writes it to `output`), says how it
 * went, and gives the exit code: 130 interrupted, 1 incomplete, 3 a goal
 * missed under `strict`, else 0.
 */
export function finishDocument(doc: DocumentHead & { summary: { goals_met: number; goals_total: number; all_met: boolean } }, output: string | null, strict: boolean): number {
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  process.stdout.write(text);
  if (output !== null) writeFileSync(output, text);
  progress(`done in ${doc.duration_s} s: ${doc.summary.goals_met}/${doc.summary.goals_total} goals met${doc.complete ? '' : ' (INCOMPLETE run)'}`);
  if (wasInterrupted()) return 130;
  if (!doc.complete) return 1;
  if (strict && !doc.summary.all_met) return 3;
  return 0;
}
