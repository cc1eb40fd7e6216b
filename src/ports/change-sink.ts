// Where the filesystem core reports the changes it applied to the local store
// (the mirror's journal). The core depends on this interface only; the
// mirror (src/mirror) implements it.
import type { NewRecord } from '../protocol/records.js';

export interface ChangeSink {
  /**
   * Called before a mutating op touches the store, with the bytes its record
   * will take: resolves when the journal has room, or throws (ENOSPC) when its
   * bound is reached and the policy says to fail writers. While the store's
   * disk has no room for the journal, only changes that take no room on the
   * store (`takesNoRoom`: removals, renames, attributes) are taken, so that a
   * full disk can be freed through the mount; the rest fail with ENOSPC
   * before they are made.
   */
  admit(bytes: number, takesNoRoom?: boolean): Promise<void>;
  /**
   * Records a change that has been applied; returns its sequence number. The
   * payload of a write or setxattr record is kept by reference, not copied:
   * its bytes must not change afterwards.
   */
  append(rec: NewRecord): number;
  /**
   * Called before the op answers the program: in `sync` mode it resolves once
   * the archive has acknowledged record `seq`; in `async` mode at once.
   */
  committed(seq: number): Promise<void>;
  /** fsync/fdatasync: resolves once every record so far is acknowledged. */
  barrier(): Promise<void>;
  /**
   * Throws EROFS when the store may not change any more (its volume was
   * fenced, or released): the core asks before an open for writing, which
   * records nothing itself. Every op that records something is refused by
   * `admit` too.
   */
  writable?(): void;
  /**
   * Journalled direct writes (docs/mirroring.md): reserves up to `maxBytes`
   * of the journal's room for changes applied outside the core, whose
   * records come later (the FUSE thread's credit); returns how much. 0 when
   * none may be made now: sync mode, a read-only store, a writer waiting for
   * room, or little room left (the journal-full policy then applies to those
   * writes in the core, as to every other change).
   */
  reserve?(maxBytes: number): number;
  /** Ops return before the archive has their records (async mode): only then may changes be applied outside the core. */
  readonly asyncMode?: boolean;
  /** Gives back reserved room (the record was appended, or the credit was taken back). */
  unreserve?(bytes: number): void;
  /**
   * A change found the store's disk full (ENOSPC from the store) while the
   * sink's own records may be what fills it (a journal whose records go once
   * the archive holds them): resolves true once some of their room came back
   * (the change is worth trying again), false when waiting cannot help (the
   * change fails with ENOSPC, as natively).
   */
  waitForRoom?(): Promise<boolean>;
}
