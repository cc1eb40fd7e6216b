/*
 * atpath.c - see atpath.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "atpath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int sn_at_open(sn_at *a, int dirfd, const char *path, sn_err *err) {
  a->fd = -1;
  if (dirfd == AT_FDCWD || path[0] == '/') {
    a->path = path;
    a->follow = 0;
    return 0;
  }
  a->fd = openat(dirfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (a->fd < 0) return SN_FAIL(err, errno, "openat");
  snprintf(a->proc, sizeof a->proc, "/proc/self/fd/%d", a->fd);
  a->path = a->proc;
  a->follow = 1;
  return 0;
}

void sn_at_close(sn_at *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
}
