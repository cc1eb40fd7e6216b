// Open file and directory handles. FUSE hands a handle number back on every
// op of an open file; the FUSE bridge carries 32 bits of it to JavaScript, so the
// table hands out small integers and reuses freed ones.

import type { ChangeGuard } from '../ports/change-guard.js';

export interface OpenFile {
  readonly kind: 'file';
  /** Backing descriptor in the local store. */
  readonly fd: number;
  /** The open(2) flags the program used. */
  readonly flags: number;
  /** The object's id, when changes are mirrored (null: the object has none). */
  readonly id: string | null;
  /** Written since its attributes were last recorded (mirroring). */
  dirty: boolean;
  /** Some of its data may still be only in the archive (an unfinished restore). */
  remote: boolean;
  /**
   * Opened before a swap (src/swap): what guards its changes — the old
   * store's checkpoints, or nothing (null). Absent: the store's guard.
   */
  readonly guard?: ChangeGuard | null;
}

export interface OpenDir {
  readonly kind: 'dir';
  /**
   * A descriptor of the directory (O_RDONLY | O_DIRECTORY), taken at opendir:
   * fsyncdir, and getattr and setattr once it has no name left, act on it.
   */
  readonly fd: number;
}

export type OpenHandle = OpenFile | OpenDir;

export class HandleTable {
  private readonly entries = new Map<number, OpenHandle>();
  private readonly free: number[] = [];
  private next = 1;

  add(entry: OpenHandle): number {
    const id = this.free.pop() ?? this.next++;
    this.entries.set(id, entry);
    return id;
  }

  get(id: number): OpenHandle | undefined {
    return this.entries.get(id);
  }

  remove(id: number): OpenHandle | undefined {
    const entry = this.entries.get(id);
    if (entry !== undefined) {
      this.entries.delete(id);
      this.free.push(id);
    }
    return entry;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Replaces every open file's entry with `f(entry)` (the store was swapped: src/swap). */
  mapFiles(f: (entry: OpenFile) => OpenFile): void {
    for (const [id, e] of this.entries) if (e.kind === 'file') this.entries.set(id, f(e));
  }

  values(): IterableIterator<OpenHandle> {
    return this.entries.values();
  }
}
