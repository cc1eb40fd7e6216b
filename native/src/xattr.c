/*
 * xattr.c - see xattr.h.
 *
 * Reads use the usual two steps: ask for the size with a zero-length
 * buffer, allocate, read.  If the attribute grew in between, the read fails
 * with ERANGE and we start over (a bounded number of times).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "xattr.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/xattr.h>

#define SN_XATTR_TRIES 8

int sn_getxattr(const char *path, const char *name, char **out, size_t *len,
                sn_err *err) {
  *out = NULL;
  *len = 0;
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "lgetxattr");

    /* +1 so an empty value still gets a non-NULL buffer. */
    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = lgetxattr(path, name, buf, (size_t)size);
    if (n >= 0) {
      *out = buf;
      *len = (size_t)n;
      return 0;
    }
    int e = errno;
    free(buf);
    if (e != ERANGE) return SN_FAIL(err, e, "lgetxattr");
    /* ERANGE: value grew since the size probe; probe again. */
  }
  return SN_FAIL(err, ERANGE, "lgetxattr");
}

int sn_setxattr(const char *path, const char *name, const void *value,
                size_t len, int flags, sn_err *err) {
  if (lsetxattr(path, name, value, len, flags) < 0)
    return SN_FAIL(err, errno, "lsetxattr");
  return 0;
}

int sn_listxattr(const char *path, char **out, size_t *len, sn_err *err) {
  *out = NULL;
  *len = 0;
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "llistxattr");

    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = llistxattr(path, buf, (size_t)size);
    if (n >= 0) {
      *out = buf;
      *len = (size_t)n;
      return 0;
    }
    int e = errno;
    free(buf);
    if (e != ERANGE) return SN_FAIL(err, e, "llistxattr");
  }
  return SN_FAIL(err, ERANGE, "llistxattr");
}

int sn_removexattr(const char *path, const char *name, sn_err *err) {
  if (lremovexattr(path, name) < 0) return SN_FAIL(err, errno, "lremovexattr");
  return 0;
}
