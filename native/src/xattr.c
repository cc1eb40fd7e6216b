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
#include "atpath.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <fcntl.h>

#define SN_XATTR_TRIES 8

/* The l* call, or the following one on a /proc/self/fd path (atpath.h). */
#define XCALL(a, fn, ...) ((a)->follow ? fn(__VA_ARGS__) : l##fn(__VA_ARGS__))

static int get_at(const sn_at *at, const char *name, char **out, size_t *len,
                  sn_err *err);
static int list_at(const sn_at *at, char **out, size_t *len, sn_err *err);

int sn_getxattr(int dirfd, const char *path, const char *name, char **out,
                size_t *len, sn_err *err) {
  *out = NULL;
  *len = 0;
  sn_at at;
  if (sn_at_open(&at, dirfd, path, err) < 0) return -1;
  int rc = get_at(&at, name, out, len, err);
  sn_at_close(&at);
  return rc;
}

static int get_at(const sn_at *at, const char *name, char **out, size_t *len,
                  sn_err *err) {
  const char *path = at->path;
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = XCALL(at, getxattr, path, name, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "lgetxattr");

    /* +1 so an empty value still gets a non-NULL buffer. */
    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = XCALL(at, getxattr, path, name, buf, (size_t)size);
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

int sn_setxattr(int dirfd, const char *path, const char *name,
                const void *value, size_t len, int flags, sn_err *err) {
  sn_at at;
  if (sn_at_open(&at, dirfd, path, err) < 0) return -1;
  int rc = 0;
  if (XCALL(&at, setxattr, at.path, name, value, len, flags) < 0)
    rc = SN_FAIL(err, errno, "lsetxattr");
  sn_at_close(&at);
  return rc;
}

int sn_listxattr(int dirfd, const char *path, char **out, size_t *len,
                 sn_err *err) {
  *out = NULL;
  *len = 0;
  sn_at at;
  if (sn_at_open(&at, dirfd, path, err) < 0) return -1;
  int rc = list_at(&at, out, len, err);
  sn_at_close(&at);
  return rc;
}

static int list_at(const sn_at *at, char **out, size_t *len, sn_err *err) {
  const char *path = at->path;
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = XCALL(at, listxattr, path, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "llistxattr");

    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = XCALL(at, listxattr, path, buf, (size_t)size);
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

int sn_removexattr(int dirfd, const char *path, const char *name,
                   sn_err *err) {
  sn_at at;
  if (sn_at_open(&at, dirfd, path, err) < 0) return -1;
  int rc = 0;
  if (XCALL(&at, removexattr, at.path, name) < 0)
    rc = SN_FAIL(err, errno, "lremovexattr");
  sn_at_close(&at);
  return rc;
}
