// The core's node table: one node id per object (not per name, so hard links
// share one node, as they share one inode on ext4), the names each object is
// known by, and how many lookups of it are outstanding. A node id stays valid
// until it is forgotten, even after its last name is gone (an
// unlinked-but-open file); node ids are never reused within a mount. The
// core's node-addressed API (nodes.ts) keeps it; the FUSE adapter maps the
// kernel's node ids onto it one to one.
import { FsError } from '../errors/errno.js';

/**
 * The root's node id: 1, as FUSE_ROOT_ID is in the kernel's FUSE ABI (the
 * adapter checks that the bridge's C says the same before it mounts).
 */
export const ROOT_NODEID = 1;

export interface NameLink {
  parent: Inode;
  name: string;
}

export class Inode {
  /** Names this object is known by (a directory has at most one). */
  readonly links: NameLink[] = [];
  /** Children looked up through this directory, by name. */
  readonly children = new Map<string, Inode>();
  /** Open file handles on this object. */
  readonly handles = new Set<number>();
  /** Open directory handles on this object (getattr and setattr of a directory with no name left go through one). */
  readonly dirHandles = new Set<number>();
  /**
   * The object's id, once a create or open through the core gave it on a
   * journalled store: the FUSE thread may then apply its setattrs and hand
   * over only their records (journalNode; docs/mirroring.md).
   */
  journalId: string | null = null;
  nlookup = 0;
  /** The table's store generation when this node was made (see InodeTable.detachAll). */
  private readonly born: number;

  constructor(readonly nodeid: number, public ino: bigint, private readonly generation: { current: number } = { current: 0 }) {
    this.born = generation.current;
  }

  /** Known before a swap (detachAll): it stands for an object of the old store; path-based requests get ESTALE. */
  get stale(): boolean {
    return this.nodeid !== ROOT_NODEID && this.born < this.generation.current;
  }

  get isNameless(): boolean {
    return this.links.length === 0 && this.nodeid !== ROOT_NODEID;
  }
}

function localNodeids(): () => number {
  let next = ROOT_NODEID + 1;
  return () => next++;
}

export class InodeTable {
  private readonly byNodeid = new Map<number, Inode>();
  private byIno = new Map<bigint, Inode>();
  /** Bumped by detachAll (a swap): nodes made before are stale. */
  private readonly generation = { current: 0 };
  readonly root: Inode;

  /**
   * `allocNodeid` hands out node ids; the FUSE bridge shares its counter (it
   * creates nodes itself and announces them through `adopt`).
   */
  /**
   * `dropped` is told of each node that leaves the table (collect: forgotten
   * and nothing open), so that what is kept per node can go with it.
   */
  constructor(rootIno: bigint, private readonly allocNodeid: () => number = localNodeids(), private readonly dropped: (inode: Inode) => void = () => {}) {
    this.root = new Inode(ROOT_NODEID, rootIno, this.generation);
    this.byNodeid.set(ROOT_NODEID, this.root);
    this.byIno.set(rootIno, this.root);
  }

  get size(): number {
    return this.byNodeid.size;
  }

  /** The node, or undefined when the kernel has forgotten it. */
  find(nodeid: number): Inode | undefined {
    return this.byNodeid.get(nodeid);
  }

  /** The node of the store object `ino`, if the kernel knows it. */
  findByIno(ino: bigint): Inode | undefined {
    return this.byIno.get(ino);
  }

  get(nodeid: number): Inode {
    const inode = this.byNodeid.get(nodeid);
    if (inode === undefined) throw new FsError('ESTALE', `unknown node id ${nodeid}`);
    return inode;
  }

  /**
   * Namespace path of an object, or null when it has no name left. A hard-linked
   * object may have several names; the first one that still leads to the root
   * is used.
   */
  pathOf(inode: Inode): string | null {
    if (inode === this.root) return '/';
    return this.linkOf(inode)?.path ?? null;
  }

  /**
   * The name an object is reached by: the first of its links whose directory
   * still leads to the root (that directory's node, the name in it, and the
   * namespace path), or null when it has none left (and for the root).
   */
  linkOf(inode: Inode): { parent: Inode; name: string; path: string } | null {
    if (inode === this.root || inode.stale) return null;
    for (const link of inode.links) {
      const dir = this.dirPathOf(link.parent);
      if (dir !== null) return { parent: link.parent, name: link.name, path: dir === '/' ? `/${link.name}` : `${dir}/${link.name}` };
    }
    return null;
  }

  /** Path of a directory (a directory has at most one name). */
  private dirPathOf(dir: Inode): string | null {
    const parts: string[] = [];
    let cur: Inode = dir;
    for (let depth = 0; cur !== this.root; depth++) {
      const link = cur.links[0];
      if (link === undefined || depth > 4096 || cur.stale) return null;
      parts.push(link.name);
      cur = link.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  /** Path of an object that must still have a name. */
  requirePath(inode: Inode): string {
    const p = this.pathOf(inode);
    if (p === null && inode.stale) throw new FsError('ESTALE', 'the store was swapped since this object was looked up');
    if (p === null) throw new FsError('ENOENT', 'object has no name left');
    return p;
  }

  /** Path of `name` inside the directory `parent`. */
  childPath(parent: Inode, name: string): string {
    const p = this.requirePath(parent);
    return p === '/' ? `/${name}` : `${p}/${name}`;
  }

  /**
   * Records that the kernel now knows `parent/name` as the object with backing
   * inode number `ino`; increments its lookup count.
   */
  remember(parent: Inode, name: string, ino: bigint): Inode {
    let inode = this.byIno.get(ino);
    if (inode === undefined) {
      inode = new Inode(this.allocNodeid(), ino, this.generation);
      this.byNodeid.set(inode.nodeid, inode);
      this.byIno.set(ino, inode);
    }
    const previous = parent.children.get(name);
    if (previous !== undefined && previous !== inode) this.dropLink(previous, parent, name);
    if (!inode.links.some((l) => l.parent === parent && l.name === name)) {
      inode.links.push({ parent, name });
      parent.children.set(name, inode);
    }
    inode.nlookup++;
    return inode;
  }

  /**
   * Records a node the FUSE bridge created as `parent/name` (a new object with
   * backing inode number `ino`, already given to the kernel once as `nodeid`).
   */
  adopt(parent: Inode, name: string, ino: bigint, nodeid: number): Inode {
    const inode = new Inode(nodeid, ino, this.generation);
    this.byNodeid.set(nodeid, inode);
    // A new object: whatever this inode number stood for is gone.
    this.byIno.set(ino, inode);
    const previous = parent.children.get(name);
    if (previous !== undefined) this.dropLink(previous, parent, name);
    inode.links.push({ parent, name });
    parent.children.set(name, inode);
    inode.nlookup = 1;
    return inode;
  }

  /**
   * A name was removed (unlink, rmdir, replaced by rename). `survives`: the
   * object still has other names in the store (its link count was above one),
   * perhaps names the kernel has not looked up (again) yet; a lookup of one of
   * them must find this same node, so its backing inode number stays mapped.
   */
  forgetName(parent: Inode, name: string, survives = false): void {
    const inode = parent.children.get(name);
    if (inode !== undefined) this.dropLink(inode, parent, name, survives);
  }

  /**
   * A name moved (rename); whatever `newParent/newName` named before is gone
   * (`targetSurvives` as `survives` of forgetName, for that replaced object).
   */
  moveName(parent: Inode, name: string, newParent: Inode, newName: string, targetSurvives = false): void {
    // rename(a, a) changes nothing (forgetting the target would drop the only name).
    if (parent === newParent && name === newName) return;
    const inode = parent.children.get(name);
    this.forgetName(newParent, newName, targetSurvives);
    if (inode === undefined) return;
    const link = inode.links.find((l) => l.parent === parent && l.name === name);
    parent.children.delete(name);
    if (link) {
      link.parent = newParent;
      link.name = newName;
    }
    newParent.children.set(newName, inode);
  }

  /**
   * Two names swapped objects (renameat2's RENAME_EXCHANGE): what the kernel
   * knows through `parent/name` is now at `newParent/newName`, and the other
   * way round. Either side may be unknown to the table (not looked up).
   */
  exchangeNames(parent: Inode, name: string, newParent: Inode, newName: string): void {
    const a = parent.children.get(name);
    const b = newParent.children.get(newName);
    if (a === b) return;
    const relink = (inode: Inode | undefined, from: Inode, fromName: string, to: Inode, toName: string): void => {
      if (inode === undefined) return;
      const link = inode.links.find((l) => l.parent === from && l.name === fromName);
      if (link) {
        link.parent = to;
        link.name = toName;
      }
    };
    relink(a, parent, name, newParent, newName);
    relink(b, newParent, newName, parent, name);
    if (b === undefined) parent.children.delete(name);
    else parent.children.set(name, b);
    if (a === undefined) newParent.children.delete(newName);
    else newParent.children.set(newName, a);
  }

  /**
   * The store was swapped (src/swap): every object known so far was renamed
   * away. Each node keeps its id (the kernel may still name it: open handles,
   * a working directory) but has no name any more, and requests that need
   * its name get ESTALE (the kernel then looks the path up again, LOOKUP_REVAL,
   * and finds the new store's object); the root stands for the new store's
   * root, whose backing inode number is `rootIno`.
   */
  detachAll(rootIno: bigint): void {
    // O(1) in the number of known nodes (it runs while a swap holds requests):
    // old nodes keep their links among themselves, but are stale, so no path
    // leads through them; the new root starts with no children.
    this.generation.current++;
    this.root.children.clear();
    this.byIno = new Map([[rootIno, this.root]]);
    this.root.ino = rootIno;
  }

  /** The kernel dropped `count` lookups; the entry goes when nothing holds it. */
  forget(nodeid: number, count: number): void {
    const inode = this.byNodeid.get(nodeid);
    if (inode === undefined || inode === this.root) return;
    inode.nlookup -= count;
    this.collect(inode);
  }

  /** Drops an inode nobody references any more (no lookups, no open handles). */
  collect(inode: Inode): void {
    if (inode === this.root || inode.nlookup > 0 || inode.handles.size > 0 || inode.dirHandles.size > 0) return;
    if (!this.byNodeid.delete(inode.nodeid)) return;
    this.dropped(inode);
    if (this.byIno.get(inode.ino) === inode) this.byIno.delete(inode.ino);
    for (const link of inode.links) {
      if (link.parent.children.get(link.name) === inode) link.parent.children.delete(link.name);
    }
    inode.links.length = 0;
    // A forgotten directory has no child dentry left in the kernel, but a child
    // may live on through another name (a hard link elsewhere): its name in this
    // directory must not lead through the dropped node. The name still exists
    // in the store, so the child stays mapped by its backing inode number.
    for (const [name, child] of inode.children) {
      const i = child.links.findIndex((l) => l.parent === inode && l.name === name);
      if (i >= 0) child.links.splice(i, 1);
    }
    inode.children.clear();
  }

  private dropLink(inode: Inode, parent: Inode, name: string, survives = false): void {
    const i = inode.links.findIndex((l) => l.parent === parent && l.name === name);
    if (i >= 0) inode.links.splice(i, 1);
    if (parent.children.get(name) === inode) parent.children.delete(name);
    // With no name left, the backing inode number may be reused by a new file:
    // it must not resolve to this (still referenced) node. Unless the object
    // has other names in the store that the kernel has not looked up.
    if (!survives && inode.links.length === 0 && this.byIno.get(inode.ino) === inode) this.byIno.delete(inode.ino);
  }
}
