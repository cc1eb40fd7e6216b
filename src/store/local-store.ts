// The local store: a real directory tree on local disk that mirrors the
// namespace. Its objects are reached through the local-object layer
// (StoreDir: *at calls relative to the root's descriptor) by store-relative
// paths, so a path near PATH_MAX on the mount never overflows by a store
// prefix, and no process-wide working directory is involved. The store's
// private state lives under RESERVED_NAME at the store root, which the mount
// never shows and never lets anyone create.
import { chmod, mkdir, stat } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { FsError } from '../errors/errno.js';
import { StoreDir } from './store-dir.js';

export const RESERVED_NAME = '.strata';

export class LocalStore {
  /** Absolute path of the store root (moved only by a swap: moveTo). */
  root: string;
  /** Absolute path of the private directory (RESERVED_NAME under the root). */
  privateDir: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.privateDir = join(this.root, RESERVED_NAME);
  }

  /** Creates the store root and its private directory if missing. */
  async init(): Promise<void> {
    await mkdir(this.privateDir, { recursive: true, mode: 0o700 });
    await chmod(this.privateDir, 0o700);
    const st = await stat(this.root);
    if (!st.isDirectory()) throw new FsError('ENOTDIR', `store ${this.root} is not a directory`);
  }

  private opened: StoreDir | null = null;
  /** Descriptors of roots left by a swap (switchTo): closed with the store, never while an op may still use one. */
  private readonly retired: StoreDir[] = [];

  /** The local-object layer over the root (after open()). */
  get dir(): StoreDir {
    if (this.opened === null) throw new FsError('EIO', `store ${this.root} is not open`);
    return this.opened;
  }

  /**
   * Opens the root's descriptor: every store-relative path the core uses
   * afterwards is relative to it (store.dir). After a moveTo, the new root's;
   * the old one stays open until close() (an operation begun before the swap
   * may still be using it).
   */
  async open(): Promise<void> {
    this.adopt(await StoreDir.openRoot(this.root));
  }

  /**
   * A swap (src/swap): the store becomes `root`, opened first so that the
   * root's path and its descriptor change together.
   */
  async switchTo(root: string): Promise<void> {
    const dir = await StoreDir.openRoot(resolve(root));
    this.moveTo(root);
    this.adopt(dir);
  }

  private adopt(dir: StoreDir): void {
    if (this.opened !== null) this.retired.push(this.opened);
    this.opened = dir;
  }

  /** Closes the root's descriptors (on unmount). */
  close(): void {
    for (const dir of this.retired.splice(0)) dir.close();
    this.opened?.close();
    this.opened = null;
  }

  /**
   * Another directory becomes the store (a swap, src/swap; or the live store
   * a swap record names, at start, before open()).
   */
  moveTo(root: string): void {
    this.root = resolve(root);
    this.privateDir = join(this.root, RESERVED_NAME);
  }

  /** True when a namespace path ('/a/b') names the reserved entry or lies under it. */
  static isReserved(path: string): boolean {
    return path === `/${RESERVED_NAME}` || path.startsWith(`/${RESERVED_NAME}/`);
  }

  /**
   * Store-relative path for a namespace path. '/' is '.', '/a/b' is 'a/b'.
   * The reserved entry does not exist as far as the namespace is concerned.
   */
  static relative(path: string): string {
    if (path.length === 0 || path.charCodeAt(0) !== 47 /* '/' */) throw new FsError('ENOENT', 'not an absolute namespace path');
    if (path.length === 1) return '.';
    if (LocalStore.isReserved(path)) throw new FsError('ENOENT');
    return path.slice(1);
  }

  /** Store-relative path for a namespace path that is about to be created. */
  static relativeForCreate(path: string): string {
    if (LocalStore.isReserved(path)) throw new FsError('EPERM', `${RESERVED_NAME} is reserved by strata`);
    return LocalStore.relative(path);
  }
}
