/*
 * xattr.h - extended attributes of a path, never following a final
 * symlink (the l*xattr family).  Plain C, no N-API.  A relative path is
 * relative to dirfd (AT_FDCWD: the working directory), as for openat(2);
 * see atpath.h.
 */
#ifndef STRATA_XATTR_H
#define STRATA_XATTR_H

#include <stddef.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Value of `name`.  On success *out is malloc'd (never NULL, even for an
 * empty value), *len its length; the caller frees *out. */
int sn_getxattr(int dirfd, const char *path, const char *name, char **out, size_t *len,
                sn_err *err);

/* flags: 0, XATTR_CREATE or XATTR_REPLACE. */
int sn_setxattr(int dirfd, const char *path, const char *name, const void *value,
                size_t len, int flags, sn_err *err);

/* The raw name list: names each followed by a NUL.  *out is malloc'd (never
 * NULL), *len its length; the caller frees *out. */
int sn_listxattr(int dirfd, const char *path, char **out, size_t *len, sn_err *err);

int sn_removexattr(int dirfd, const char *path, const char *name, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
