/*
 * atpath.h - a path relative to a directory descriptor, for the calls that
 * have no *at form (the xattr family).  Plain C, no N-API.
 *
 * dirfd == AT_FDCWD, or an absolute path: the path itself, used with the
 * l* calls (never following a final symlink).  Otherwise the object is
 * opened O_PATH | O_NOFOLLOW relative to dirfd and reached as
 * /proc/self/fd/N: a magic link, which the following calls resolve to the
 * object itself (a symlink included) and no further.  So a store-relative
 * path never grows by a prefix (PATH_MAX holds as for openat).
 */
#ifndef STRATA_ATPATH_H
#define STRATA_ATPATH_H

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_at {
  const char *path; /* what to pass to the path call */
  int follow;       /* 1: use the following call (getxattr), 0: the l* one */
  int fd;           /* the O_PATH descriptor, or -1 */
  char proc[40];
} sn_at;

/* 0, or -1 with err filled (the openat failed: e.g. ENOENT). */
int sn_at_open(sn_at *a, int dirfd, const char *path, sn_err *err);
void sn_at_close(sn_at *a);

#ifdef __cplusplus
}
#endif

#endif
