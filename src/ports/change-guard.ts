// What the filesystem core asks before it changes the store (src/checkpoint
// implements it: copy-on-first-write for checkpoints). Every mutating op
// awaits the guard before it touches the store, so whatever the guard saves
// is durable before the change it protects. The core depends on this
// interface only; a store without checkpoints has none (no cost per op).

/** The object an op changes: by store-relative path, or by an open descriptor. */
export type GuardTarget = { rel: string } | { fd: number };

export interface ChangeGuard {
  /** Before the attributes or extended attributes of an object change. */
  attrs(target: GuardTarget): Promise<void>;
  /** Before bytes [offset, offset + length) of a regular file change (and its attributes). */
  data(target: GuardTarget, offset: number, length: number): Promise<void>;
  /** Before a regular file's size is set to `size` (truncate, O_TRUNC). */
  size(target: GuardTarget, size: number): Promise<void>;
  /**
   * Before a name is added to, removed from or replaced in the directory at
   * `parentRel`. `removes`: the store-relative path of the entry the op
   * removes or replaces (it may lose its last name), if any.
   */
  names(parentRel: string, removes?: string): Promise<void>;
  /** After an op created the object at `rel` (it did not exist before). Never fails. */
  created(rel: string): Promise<void>;
  /** True while anything is tracked: every change must then come through the core. */
  readonly active: boolean;
}
