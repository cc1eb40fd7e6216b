// Whether a daemon process still runs, from /proc (a zombie no longer holds
// its files or its mount: counted as gone).
import { readFileSync } from 'node:fs';

export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
