// Splits a byte stream into lines as it arrives (NDJSON), without ever
// holding more than one unfinished line, and refusing lines past a bound.
import { ArchiveError } from '../protocol/archive-api.js';

export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;

  constructor(private readonly maxLineBytes: number) {}

  /** The complete lines ending in `chunk` (without their '\n'). */
  push(chunk: Buffer): Buffer[] {
    const lines: Buffer[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      if (this.partialBytes > 0) {
        this.partial.push(piece);
        lines.push(Buffer.concat(this.partial, this.partialBytes + piece.length));
        this.partial = [];
        this.partialBytes = 0;
      } else {
        lines.push(piece);
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partialBytes += rest.length;
      if (this.partialBytes > this.maxLineBytes) throw new ArchiveError('EARCHIVE', `a streamed line exceeds ${this.maxLineBytes} bytes`);
      this.partial.push(rest);
    }
    return lines;
  }

  /** True when bytes after the last '\n' are waiting (a stream cut mid-line). */
  get pending(): boolean {
    return this.partialBytes > 0;
  }
}
