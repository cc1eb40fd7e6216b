/*
 * sysops.c - see sysops.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "sysops.h"
#include "atpath.h"
#include "xattr.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

int sn_utimens(int at, const char *path, const struct timespec ts[2],
               int no_follow, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  int flags = no_follow ? AT_SYMLINK_NOFOLLOW : 0;
  if (utimensat(at, path, ts, flags) < 0)
    return SN_FAIL(err, errno, "utimensat");
  return 0;
}

int sn_futimens(int fd, const struct timespec ts[2], sn_err *err) {
  if (futimens(fd, ts) < 0) return SN_FAIL(err, errno, "futimens");
  return 0;
}

int sn_mknod(int at, const char *path, uint32_t mode, uint64_t dev,
             sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (mknodat(at, path, (mode_t)mode, (dev_t)dev) < 0)
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

const char *const sn_acl_names[2] = {"system.posix_acl_access", "system.posix_acl_default"};

int sn_prepare_object(int at, const char *path, int create, uint32_t mode,
                      uint64_t size, const char *const *names,
                      const void *const *values, const size_t *lens,
                      size_t n, int64_t uid, int64_t gid, int64_t chmod_mode,
                      int drop_acls, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  if (create == SN_CREATE_DIR) {
    if (mkdirat(at, path, (mode_t)mode) < 0) return SN_FAIL(err, errno, "mkdir");
  } else if (create == SN_CREATE_FILE) {
    int fd = openat(at, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    (mode_t)mode);
    if (fd < 0) return SN_FAIL(err, errno, "open");
    if (size > 0 && ftruncate(fd, (off_t)size) < 0) {
      int e = errno;
      close(fd);
      return SN_FAIL(err, e, "ftruncate");
    }
    if (close(fd) < 0) return SN_FAIL(err, errno, "close");
  }
  for (int k = 0; drop_acls && k < 2; k++) {
    sn_err e = {0, NULL};
    if (sn_removexattr(at, path, sn_acl_names[k], &e) < 0 && e.code != ENODATA && e.code != EOPNOTSUPP) {
      *err = e;
      return -1;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (sn_setxattr(at, path, names[i], values[i], lens[i], 0, err) < 0)
      return -1;
  }
  /* Only what differs: the object may have been given another group, set-ID
   * bits or permission bits by its directory (set-group-ID, a default ACL)
   * than whoever asked knew of when it asked. */
  struct stat st;
  if (uid < 0 && chmod_mode < 0) return 0;
  if (fstatat(at, path, &st, AT_SYMLINK_NOFOLLOW) < 0) return SN_FAIL(err, errno, "lstat");
  if (uid >= 0 && (st.st_uid != (uid_t)uid || st.st_gid != (gid_t)gid)) {
    if (fchownat(at, path, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) < 0)
      return SN_FAIL(err, errno, "lchown");
    /* chown drops set-ID bits: the mode to compare is the one it left. */
    if (chmod_mode >= 0 && fstatat(at, path, &st, AT_SYMLINK_NOFOLLOW) < 0) return SN_FAIL(err, errno, "lstat");
  }
  if (chmod_mode >= 0 && (st.st_mode & 07777) != ((mode_t)chmod_mode & 07777) &&
      fchmodat(at, path, (mode_t)chmod_mode, 0) < 0)
    return SN_FAIL(err, errno, "fchmodat");
  return 0;
}
