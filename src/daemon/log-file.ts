// The daemon's log file (a pino destination). The default log lives on the
// store's own disk, so it must survive that disk filling up: pino's file
// destination does not. On ENOSPC it emits an 'error' nobody handles (the
// daemon dies: a stale mount), and its exit handler then retries flushSync
// forever (the daemon hangs with /dev/fuse open, and every program touching
// the mount hangs with it). Here each line is appended with one write(2); a
// line that cannot be written is dropped and counted, and the next line that
// can be written is preceded by a note of how many were lost.
import { mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export class DaemonLogFile {
  private readonly fd: number;
  private lost = 0;
  private lastError = '';
  private cut = false;

  /** Opens (creating it and its directory) `path` for appending; throws if it cannot. */
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a');
  }

  write(line: string): void {
    if (this.lost > 0) {
      const note = JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, name: 'strata', lost: this.lost, error: this.lastError, msg: 'log lines lost: the log file could not be written' }) + '\n';
      if (!this.append(note)) { this.lost++; return; }
      this.lost = 0;
    }
    if (!this.append(line)) this.lost++;
  }

  /** Writes all of `text`, or reports failure; a line cut short is ended before the next one. */
  private append(text: string): boolean {
    const buf = Buffer.from(this.cut ? `\n${text}` : text);
    let done = 0;
    try {
      while (done < buf.length) done += writeSync(this.fd, buf, done);
      this.cut = false;
      return true;
    } catch (err) {
      this.lastError = (err as NodeJS.ErrnoException).code ?? String(err);
      if (done > 0) this.cut = true;
      return false;
    }
  }
}
