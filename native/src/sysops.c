/*
 * sysops.c - see sysops.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "sysops.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

int sn_utimens(const char *path, const struct timespec ts[2], int no_follow,
               sn_err *err) {
  int flags = no_follow ? AT_SYMLINK_NOFOLLOW : 0;
  if (utimensat(AT_FDCWD, path, ts, flags) < 0)
    return SN_FAIL(err, errno, "utimensat");
  return 0;
}

int sn_futimens(int fd, const struct timespec ts[2], sn_err *err) {
  if (futimens(fd, ts) < 0) return SN_FAIL(err, errno, "futimens");
  return 0;
}

int sn_mknod(const char *path, uint32_t mode, uint64_t dev, sn_err *err) {
  if (mknod(path, (mode_t)mode, (dev_t)dev) < 0)
    return SN_FAIL(err, errno, "mknod");
  return 0;
}

int sn_fallocate(int fd, int mode, uint64_t offset, uint64_t len,
                 sn_err *err) {
  int rc;
  do {
    rc = fallocate(fd, mode, (off_t)offset, (off_t)len);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return SN_FAIL(err, errno, "fallocate");
  return 0;
}
