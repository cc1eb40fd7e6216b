// Structured logs: JSON lines (pino) to stderr or a file, level configurable.
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** File to append to; stderr when absent. */
  file?: string;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const destination = opts.file
    ? pino.destination({ dest: opts.file, mkdir: true, sync: false })
    : pino.destination({ fd: 2, sync: true });
  return pino({ name: opts.name ?? 'strata', level: opts.level ?? 'info', base: { pid: process.pid } }, destination);
}
