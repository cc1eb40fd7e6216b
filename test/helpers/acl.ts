// POSIX ACLs in the form the kernel takes as the xattrs system.posix_acl_access
// and system.posix_acl_default (include/uapi/linux/posix_acl_xattr.h): a
// version (2), then entries of tag (u16), permissions (u16) and id (u32),
// little-endian, in the order the kernel requires.

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

/** An ACL: the owner's, owning group's and others' permissions (0-7), named users and groups, and the mask. */
export interface AclSpec {
  user: number;
  group: number;
  other: number;
  /** [uid, perm] */
  users?: readonly (readonly [number, number])[];
  /** [gid, perm] */
  groups?: readonly (readonly [number, number])[];
  /** Required by the kernel when there are named entries. */
  mask?: number | null;
}

const TAG = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;
const UNDEFINED_ID = 0xffffffff;

/** The xattr value of `spec` (named entries sorted by id, duplicates kept: the kernel refuses them, EINVAL). */
export function aclXattr(spec: AclSpec): Buffer {
  const entries: [number, number, number][] = [[TAG.USER_OBJ, spec.user, UNDEFINED_ID]];
  for (const [id, perm] of [...(spec.users ?? [])].sort((a, b) => a[0] - b[0])) entries.push([TAG.USER, perm, id]);
  entries.push([TAG.GROUP_OBJ, spec.group, UNDEFINED_ID]);
  for (const [id, perm] of [...(spec.groups ?? [])].sort((a, b) => a[0] - b[0])) entries.push([TAG.GROUP, perm, id]);
  if (spec.mask !== undefined && spec.mask !== null) entries.push([TAG.MASK, spec.mask, UNDEFINED_ID]);
  entries.push([TAG.OTHER, spec.other, UNDEFINED_ID]);
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    out.writeUInt16LE(tag, 4 + 8 * i);
    out.writeUInt16LE(perm & 7, 6 + 8 * i);
    out.writeUInt32LE(id, 8 + 8 * i);
  });
  return out;
}
