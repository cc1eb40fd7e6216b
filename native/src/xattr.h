/*
 * xattr.h - extended attributes of a path, never following a final
 * symlink (the l*xattr family).  Plain C, no N-API.
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
int sn_getxattr(const char *path, const char *name, char **out, size_t *len,
                sn_err *err);

/* flags: 0, XATTR_CREATE or XATTR_REPLACE. */
int sn_setxattr(const char *path, const char *name, const void *value,
                size_t len, int flags, sn_err *err);

/* The raw name list: names each followed by a NUL.  *out is malloc'd (never
 * NULL), *len its length; the caller frees *out. */
int sn_listxattr(const char *path, char **out, size_t *len, sn_err *err);

int sn_removexattr(const char *path, const char *name, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
