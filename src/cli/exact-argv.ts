// Command-line arguments byte for byte. Node decodes argv as UTF-8 and puts
// U+FFFD for bytes that are not, so a name with such bytes (a Latin-1 name, a
// lone 0xff) could not be given on the command line. The kernel keeps the
// bytes in /proc/self/cmdline: an argument that Node shows with U+FFFD is
// taken from there, in strata's form of names (src/protocol/names.ts), which
// every layer below turns back into the same bytes.
import { readFileSync } from 'node:fs';
import { nameFromBytes } from '../protocol/names.js';

let cached: Buffer[] | null = null;

/** This process's arguments as the kernel holds them (empty when /proc cannot be read). */
function rawArgs(): Buffer[] {
  if (cached !== null) return cached;
  try {
    const all = readFileSync('/proc/self/cmdline');
    const out: Buffer[] = [];
    for (let start = 0; start < all.length;) {
      let end = all.indexOf(0, start);
      if (end < 0) end = all.length;
      out.push(all.subarray(start, end));
      start = end + 1;
    }
    cached = out;
  } catch {
    cached = [];
  }
  return cached;
}

/**
 * `value` (an argument as Node decoded it) with the bytes it was given:
 * unchanged when it decoded cleanly, else the first argument whose decoding
 * it is, in strata's name form.
 */
export function exactArg(value: string): string {
  if (!value.includes('\uFFFD')) return value;
  for (const b of rawArgs()) {
    if (b.toString('utf8') === value && !b.equals(Buffer.from(value, 'utf8'))) return nameFromBytes(b);
  }
  return value;
}
