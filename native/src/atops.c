/*
 * atops.c - see atops.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "atops.h"
#include "atpath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int sn_stat_at(int at, const char *path, int follow, struct stat *st, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (fstatat(at, path, st, follow ? 0 : AT_SYMLINK_NOFOLLOW) < 0)
    return SN_FAIL(err, errno, follow ? "stat" : "lstat");
  return 0;
}

int sn_open_at(int at, const char *path, int flags, uint32_t mode, int *fd, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  int r;
  do {
    r = openat(at, path, flags | O_CLOEXEC, (mode_t)mode);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return SN_FAIL(err, errno, "open");
  *fd = r;
  return 0;
}

int sn_mkdir_at(int at, const char *path, uint32_t mode, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (mkdirat(at, path, (mode_t)mode) < 0) return SN_FAIL(err, errno, "mkdir");
  return 0;
}

int sn_symlink_at(const char *target, int at, const char *path, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (symlinkat(target, at, path) < 0) return SN_FAIL(err, errno, "symlink");
  return 0;
}

int sn_link_at(int at, const char *from, int to_at, const char *to, sn_err *err) {
  SN_LONG_PATH(lf, at, from, err);
  sn_long lt __attribute__((cleanup(sn_long_close))) = {-1};
  if (sn_long_open(&lt, &to_at, &to, err) < 0) {
    /* linkat looks the source up whole before the new name's directory: its error comes first. */
    struct stat st;
    if (fstatat(at, from, &st, AT_SYMLINK_NOFOLLOW) < 0) return SN_FAIL(err, errno, "link");
    return -1;
  }
  if (linkat(at, from, to_at, to, 0) < 0) return SN_FAIL(err, errno, "link");
  return 0;
}

/* renameat2 with `flags` (0, RENAME_NOREPLACE, RENAME_EXCHANGE): renameat when 0. */
static int rename2(int at, const char *from, int to_at, const char *to, unsigned flags, sn_err *err) {
  SN_LONG_PATH(lf, at, from, err);
  SN_LONG_PATH(lt, to_at, to, err);
  int r = flags == 0 ? renameat(at, from, to_at, to) : renameat2(at, from, to_at, to, flags);
  if (r < 0) return SN_FAIL(err, errno, "rename");
  return 0;
}

int sn_rename_at(int at, const char *from, int to_at, const char *to, sn_err *err) {
  return rename2(at, from, to_at, to, 0, err);
}

int sn_rename_noreplace_at(int at, const char *from, int to_at, const char *to, sn_err *err) {
  return rename2(at, from, to_at, to, RENAME_NOREPLACE, err);
}

int sn_rename_exchange_at(int at, const char *from, int to_at, const char *to, sn_err *err) {
  return rename2(at, from, to_at, to, RENAME_EXCHANGE, err);
}

int sn_unlink_at(int at, const char *path, int dir, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (unlinkat(at, path, dir ? AT_REMOVEDIR : 0) < 0)
    return SN_FAIL(err, errno, dir ? "rmdir" : "unlink");
  return 0;
}

int sn_readlink_at(int at, const char *path, char **out, size_t *len, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  *out = NULL;
  *len = 0;
  for (size_t cap = 256;; cap *= 2) {
    char *buf = malloc(cap);
    if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");
    ssize_t n = readlinkat(at, path, buf, cap);
    if (n < 0) {
      int e = errno;
      free(buf);
      return SN_FAIL(err, e, "readlink");
    }
    if ((size_t)n < cap) {
      *out = buf;
      *len = (size_t)n;
      return 0;
    }
    free(buf); /* may have been cut short: ask again with more room */
    if (cap >= (1u << 20)) return SN_FAIL(err, ENAMETOOLONG, "readlink");
  }
}

int sn_chmod_at(int at, const char *path, uint32_t mode, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (fchmodat(at, path, (mode_t)mode, 0) < 0) return SN_FAIL(err, errno, "chmod");
  return 0;
}

int sn_chown_at(int at, const char *path, int64_t uid, int64_t gid, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (fchownat(at, path, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) < 0)
    return SN_FAIL(err, errno, "lchown");
  return 0;
}

int sn_truncate_at(int at, const char *path, uint64_t size, sn_err *err) {
  int fd;
  if (sn_open_at(at, path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK, 0, &fd, err) < 0) {
    err->syscall = "truncate";
    return -1;
  }
  int rc = 0;
  if (ftruncate(fd, (off_t)size) < 0) rc = SN_FAIL(err, errno, "truncate");
  close(fd);
  return rc;
}

int sn_access_at(int at, const char *path, uint32_t mode, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (faccessat(at, path, (int)mode, 0) < 0) return SN_FAIL(err, errno, "access");
  return 0;
}

int sn_statfs_at(int at, const char *path, struct statfs *sf, sn_err *err) {
  int fd;
  if (sn_open_at(at, path, O_PATH, 0, &fd, err) < 0) return -1;
  int rc = 0;
  if (fstatfs(fd, sf) < 0) rc = SN_FAIL(err, errno, "statfs");
  close(fd);
  return rc;
}
