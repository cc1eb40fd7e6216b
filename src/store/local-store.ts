// The local store: a real directory tree on local disk that mirrors the
// namespace. The daemon makes the store root its working directory and uses
// store-relative paths, so a path near PATH_MAX on the mount never overflows by
// a store prefix. The store's private state lives under RESERVED_NAME at the
// store root, which the mount never shows and never lets anyone create.
import { chmod, mkdir, stat } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { FsError } from '../errors/errno.js';

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

  /**
   * Makes the store root the process's working directory: every path the core
   * uses afterwards is relative to it. One store per process.
   */
  enter(): void {
    process.chdir(this.root);
  }

  /**
   * Another directory becomes the store (a swap, src/swap; or the live store
   * a swap record names, at start); call enter() to make it the working directory.
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
