// POSIX ACLs as the store keeps them: the extended attributes
// system.posix_acl_access (an object's ACL) and system.posix_acl_default (a
// directory's, inherited by what is created in it), kept and applied by the
// store's own file system. That file system also changes them unasked: a
// chmod rewrites the access ACL's mask, setting an access ACL rewrites the
// mode, and an object created in a directory with a default ACL gets ACLs of
// its own. Whoever records or rebuilds objects (the core's journal records,
// the restore) reads them back after such a change (docs/SEMANTICS.md).
import * as native from '../native/index.js';
import type { StoreDir } from './store-dir.js';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

/** Whether `name` is one of the two ACL attributes. */
export function isAclXattr(name: string): boolean {
  return name === ACL_ACCESS || name === ACL_DEFAULT;
}

/** The errors that mean "no such ACL": none set, or a store file system without ACLs. */
function absent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENODATA' || code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

/** ACL attribute `name` of the object at `rel` in `dir` (never following a final symlink), or null when it has none. */
export async function aclAt(dir: StoreDir, rel: string, name: string): Promise<Buffer | null> {
  try {
    return await dir.getxattr(rel, name);
  } catch (err) {
    if (absent(err)) return null;
    throw err;
  }
}

/** ACL attribute `name` of the object open on descriptor `fd`, or null when it has none. */
export async function aclOfFd(fd: number, name: string): Promise<Buffer | null> {
  try {
    return await native.getxattr('', name, fd);
  } catch (err) {
    if (absent(err)) return null;
    throw err;
  }
}

/**
 * The ACL attributes an object just created at `rel` got from its parent's
 * default ACL (a directory gets the default ACL too), in the order to set
 * them; empty for a symlink (ACLs do not apply to one).
 */
export async function inheritedAcls(dir: StoreDir, rel: string, isDir: boolean): Promise<[string, Buffer][]> {
  const names = isDir ? [ACL_ACCESS, ACL_DEFAULT] : [ACL_ACCESS];
  const values = await Promise.all(names.map((n) => aclAt(dir, rel, n)));
  const out: [string, Buffer][] = [];
  names.forEach((n, i) => { if (values[i] !== null) out.push([n, values[i]!]); });
  return out;
}
