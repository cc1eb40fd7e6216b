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
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <fcntl.h>
#include <unistd.h>

#define SN_XATTR_TRIES 8

/* Linux 6.13's *xattrat calls (the same numbers on every architecture);
 * glibc 2.36 has no wrappers. */
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#define SYS_getxattrat 464
#define SYS_listxattrat 465
#define SYS_removexattrat 466
#endif

/* struct xattr_args of <linux/xattr.h> (6.13). */
struct sn_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* Each call three ways (atpath.h): the *at call, the following call on a
 * /proc/self/fd path, or the l* call. */
static ssize_t x_get(const sn_at *a, const char *name, void *buf, size_t size) {
  if (a->how == SN_AT_SYSCALL) {
    struct sn_xattr_args args = {(uint64_t)(uintptr_t)buf, (uint32_t)size, 0};
    return syscall(SYS_getxattrat, a->dirfd, a->path, AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
  }
  return a->how == SN_AT_PROC ? getxattr(a->path, name, buf, size) : lgetxattr(a->path, name, buf, size);
}

static ssize_t x_list(const sn_at *a, char *buf, size_t size) {
  if (a->how == SN_AT_SYSCALL) return syscall(SYS_listxattrat, a->dirfd, a->path, AT_SYMLINK_NOFOLLOW, buf, size);
  return a->how == SN_AT_PROC ? listxattr(a->path, buf, size) : llistxattr(a->path, buf, size);
}

static int x_set(const sn_at *a, const char *name, const void *value, size_t len, int flags) {
  if (a->how == SN_AT_SYSCALL) {
    struct sn_xattr_args args = {(uint64_t)(uintptr_t)value, (uint32_t)len, (uint32_t)flags};
    return (int)syscall(SYS_setxattrat, a->dirfd, a->path, AT_SYMLINK_NOFOLLOW, name, &args, sizeof args);
  }
  return a->how == SN_AT_PROC ? setxattr(a->path, name, value, len, flags) : lsetxattr(a->path, name, value, len, flags);
}

static int x_remove(const sn_at *a, const char *name) {
  if (a->how == SN_AT_SYSCALL) return (int)syscall(SYS_removexattrat, a->dirfd, a->path, AT_SYMLINK_NOFOLLOW, name);
  return a->how == SN_AT_PROC ? removexattr(a->path, name) : lremovexattr(a->path, name);
}

/* An *at call the kernel does not have (ENOSYS): the O_PATH way from now on, and once more. */
static int retry_without_at(sn_at *at, int rc, sn_err *err) {
  return rc < 0 && at->how == SN_AT_SYSCALL && err->code == ENOSYS && sn_at_fall_back(at, err) == 0;
}

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
  if (retry_without_at(&at, rc, err)) rc = get_at(&at, name, out, len, err);
  sn_at_close(&at);
  return rc;
}

static int get_at(const sn_at *at, const char *name, char **out, size_t *len,
                  sn_err *err) {
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = x_get(at, name, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "lgetxattr");

    /* +1 so an empty value still gets a non-NULL buffer. */
    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = x_get(at, name, buf, (size_t)size);
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
  int rc = x_set(&at, name, value, len, flags) < 0 ? SN_FAIL(err, errno, "lsetxattr") : 0;
  if (retry_without_at(&at, rc, err)) rc = x_set(&at, name, value, len, flags) < 0 ? SN_FAIL(err, errno, "lsetxattr") : 0;
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
  if (retry_without_at(&at, rc, err)) rc = list_at(&at, out, len, err);
  sn_at_close(&at);
  return rc;
}

static int list_at(const sn_at *at, char **out, size_t *len, sn_err *err) {
  for (int attempt = 0; attempt < SN_XATTR_TRIES; attempt++) {
    ssize_t size = x_list(at, NULL, 0);
    if (size < 0) return SN_FAIL(err, errno, "llistxattr");

    char *buf = malloc((size_t)size + 1);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    if (size == 0) {
      *out = buf;
      return 0;
    }

    ssize_t n = x_list(at, buf, (size_t)size);
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
  int rc = x_remove(&at, name) < 0 ? SN_FAIL(err, errno, "lremovexattr") : 0;
  if (retry_without_at(&at, rc, err)) rc = x_remove(&at, name) < 0 ? SN_FAIL(err, errno, "lremovexattr") : 0;
  sn_at_close(&at);
  return rc;
}
