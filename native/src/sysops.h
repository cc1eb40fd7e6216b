/*
 * sysops.h - single syscalls Node's fs module lacks (plain C, no N-API).
 *
 *   sn_utimens    utimensat(AT_FDCWD, path, ts, 0 | AT_SYMLINK_NOFOLLOW)
 *   sn_futimens   futimens(fd, ts)
 *   sn_mknod      mknod(path, mode, dev)
 *   sn_fallocate  fallocate(fd, mode, offset, len)
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

int sn_utimens(const char *path, const struct timespec ts[2], int no_follow,
               sn_err *err);
int sn_futimens(int fd, const struct timespec ts[2], sn_err *err);
int sn_mknod(const char *path, uint32_t mode, uint64_t dev, sn_err *err);
int sn_fallocate(int fd, int mode, uint64_t offset, uint64_t len, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
