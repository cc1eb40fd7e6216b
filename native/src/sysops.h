/*
 * sysops.h - single syscalls Node's fs module lacks (plain C, no N-API).
 *
 * A path is relative to `at` (AT_FDCWD: the working directory), as for the
 * *at(2) calls.
 *
 *   sn_utimens    utimensat(at, path, ts, 0 | AT_SYMLINK_NOFOLLOW)
 *   sn_futimens   futimens(fd, ts)
 *   sn_mknod      mknodat(at, path, mode, dev)
 *   sn_fallocate  fallocate(fd, mode, offset, len)
 *   sn_prepare_object  create a directory or file (optional), then drop
 *                 its ACLs (optional), lsetxattr each attribute, lchown,
 *                 chmod: one call
 *
 * Timestamps are struct timespec pairs {atime, mtime}; tv_nsec may be
 * UTIME_NOW or UTIME_OMIT as in utimensat(2).
 */
#ifndef STRATA_SYSOPS_H
#define STRATA_SYSOPS_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

int sn_utimens(int at, const char *path, const struct timespec ts[2], int no_follow,
               sn_err *err);
int sn_futimens(int fd, const struct timespec ts[2], sn_err *err);
int sn_mknod(int at, const char *path, uint32_t mode, uint64_t dev, sn_err *err);
int sn_fallocate(int fd, int mode, uint64_t offset, uint64_t len, sn_err *err);

/* What sn_prepare_object creates first (SN_CREATE_NONE: the object exists). */
enum { SN_CREATE_NONE = 0, SN_CREATE_DIR = 1, SN_CREATE_FILE = 2 };

/*
 * In order, stopping at the first failure: mkdir(path, mode) or
 * open(path, O_CREAT|O_EXCL|O_NOFOLLOW, mode) + ftruncate(size) + close
 * (per `create`); with drop_acls, lremovexattr of system.posix_acl_access
 * and system.posix_acl_default (absent or unsupported is no failure: what an
 * object created in a directory with a default ACL inherits goes, and the
 * attributes that follow give it the ACLs it should have);
 * lsetxattr(path, names[i], values[i], lens[i], 0) for each i < n; lchown(path, uid, gid) when uid >= 0
 * and the object's owner or group differs; fchmodat(path, chmod_mode) when chmod_mode >= 0 and its
 * mode (after the chown) differs (follows a symlink: never ask for it on one). So the caller gives the
 * owner and mode it wants, and need not know what the directory gave a new object.
 */
int sn_prepare_object(int at, const char *path, int create, uint32_t mode,
                      uint64_t size, const char *const *names,
                      const void *const *values, const size_t *lens,
                      size_t n, int64_t uid, int64_t gid, int64_t chmod_mode,
                      int drop_acls, sn_err *err);

/* The two POSIX ACL attributes, for those who drop them. */
extern const char *const sn_acl_names[2];

#ifdef __cplusplus
}
#endif

#endif
