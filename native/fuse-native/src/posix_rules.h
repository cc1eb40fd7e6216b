// posix_rules.h - the POSIX rules strata applies itself (the store's kernel
// cannot, because the daemon acts as root), written once for both native
// parts: the FUSE bridge's own answers (fastpath.c) and strata's addon
// (native/binding.cc), which hands them to the TypeScript core
// (src/core/filesystem.ts: setIdDrop, own). Plain C, header only.
#ifndef STRATA_POSIX_RULES_H
#define STRATA_POSIX_RULES_H

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

// The set-ID bits a change by a process without CAP_FSETID drops from a
// regular file of mode `mode` (a write, a truncation, an O_TRUNC open, a
// fallocate, where the kernel leaves it to the filesystem: handle_killpriv_v2,
// atomic O_TRUNC), as the kernel's setattr_should_drop_suidgid does (Linux
// 6.2 on): S_ISUID always; S_ISGID with group-execute, and without it too
// when the writer is not in the file's group (`in_group`: its fsgid or one of
// its supplementary groups is the file's gid). Nothing of anything else.
static inline mode_t sr_setid_drop (mode_t mode, int in_group) {
  if (!S_ISREG(mode)) return 0;
  mode_t drop = mode & S_ISUID;
  if ((mode & S_ISGID) && ((mode & S_IXGRP) || !in_group)) drop |= S_ISGID;
  return drop;
}

// Whether sr_setid_drop's answer depends on `in_group` (set-group-ID without
// group-execute): only then are the writer's groups worth reading.
static inline int sr_setid_needs_groups (mode_t mode) {
  return S_ISREG(mode) && (mode & S_ISGID) && !(mode & S_IXGRP);
}

// A new object, created by the daemon (uid, gid = daemon_*) for a caller,
// goes to the caller as ext4 would give it: owner the caller's uid; group the
// caller's gid, except under a set-group-ID parent, whose group the store's
// kernel already gave it (kept: -1).
//
// sr_owner_needs_parent: 0 when nothing is to change whatever the parent is
// (the caller is the daemon's own user and group), else 1: the parent's mode
// decides (sr_new_owner).
static inline int sr_owner_needs_parent (uid_t caller_uid, gid_t caller_gid, uid_t daemon_uid, gid_t daemon_gid) {
  return !(caller_uid == daemon_uid && caller_gid == daemon_gid);
}

// 1 with *uid, *gid to give the object (gid (gid_t) -1: keep), or 0 when it
// already has them.
static inline int sr_new_owner (uid_t caller_uid, gid_t caller_gid, mode_t parent_mode, uid_t daemon_uid, gid_t daemon_gid,
                                uid_t *uid, gid_t *gid) {
  if (!sr_owner_needs_parent(caller_uid, caller_gid, daemon_uid, daemon_gid)) return 0;
  gid_t g = (parent_mode & S_ISGID) ? (gid_t) -1 : caller_gid;
  if (caller_uid == daemon_uid && g == (gid_t) -1) return 0;
  *uid = caller_uid;
  *gid = g;
  return 1;
}

// The permission bits of an object a caller creates, from the mode it asked
// for, its umask, and whether the parent directory has a default ACL, as the
// kernel's posix_acl_create does on a file system with POSIX ACLs: the umask
// applies only without a default ACL (with one, the store's kernel makes the
// new object's ACL and mode from it and the mode asked for, the daemon's
// umask being 0). The file type bits stay.
static inline mode_t sr_creation_mode (mode_t mode, mode_t umask, int parent_default_acl) {
  return parent_default_acl ? mode : (mode & ~(umask & 0777));
}

// The flags of the store's own descriptor for a program's open: never
// O_APPEND. A program may clear (or set) O_APPEND with fcntl(F_SETFL) after
// its open, which the daemon's descriptor would not learn: its pwrite at the
// offset the program chose would still go to the end. Each write says whether
// it appends (the request carries the program's file flags as they are at
// that write), and an append is asked for then (sr_append).
static inline int sr_store_open_flags (int flags) {
  return flags & ~O_APPEND;
}

// A write of a program's O_APPEND file: `size` bytes of `buf` at the end of
// the file, atomically at the size it has at that moment whatever else
// changes it (a truncation through another handle, an O_TRUNC open), as the
// store's kernel does for an O_APPEND descriptor (RWF_APPEND, Linux 4.16).
// The offset the FUSE kernel sent is its own idea of the size, which such a
// change can leave stale: *landed is where the bytes really went, for the
// journal record and anything else that must say the same (the descriptor's
// file position after the write, less what was written; nothing else uses a
// store descriptor's position, and the FUSE kernel sends one write of an
// inode at a time). Returns the bytes written, or -1 with errno.
static inline ssize_t sr_append (int fd, const void *buf, size_t size, off_t *landed) {
  struct iovec iov = { (void *) buf, size };
  ssize_t n;
  do n = pwritev2(fd, &iov, 1, -1, RWF_APPEND); while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  off_t end = lseek(fd, 0, SEEK_CUR);
  if (end < 0) return -1;
  *landed = end - n;
  return n;
}

#endif
