/*
 * atpath.c - see atpath.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "atpath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Set to 0 at the first ENOSYS (a kernel before 6.13), or by a test; a
 * benign race: every thread that sees 1 at worst tries once more. */
static volatile int xattrat_on = 1;

void sn_xattrat_enable(int on) { xattrat_on = on; }
int sn_xattrat_enabled(void) { return xattrat_on; }

static int open_proc(sn_at *a, int dirfd, const char *path, sn_err *err) {
  a->fd = openat(dirfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (a->fd < 0) return SN_FAIL(err, errno, "openat");
  snprintf(a->proc, sizeof a->proc, "/proc/self/fd/%d", a->fd);
  a->path = a->proc;
  a->how = SN_AT_PROC;
  return 0;
}

int sn_at_open(sn_at *a, int dirfd, const char *path, sn_err *err) {
  a->fd = -1;
  if (sn_long_open(&a->lp, &dirfd, &path, err) < 0) return -1;
  a->dirfd = dirfd;
  a->path = path;
  if (path[0] == '\0' && dirfd >= 0) {
    /* The object of dirfd itself, whatever its kind (an open file). */
    snprintf(a->proc, sizeof a->proc, "/proc/self/fd/%d", dirfd);
    a->path = a->proc;
    a->how = SN_AT_PROC;
    return 0;
  }
  if (dirfd == AT_FDCWD || path[0] == '/') {
    a->how = SN_AT_LCALL;
    return 0;
  }
  if (xattrat_on) {
    a->how = SN_AT_SYSCALL;
    return 0;
  }
  if (open_proc(a, dirfd, path, err) < 0) {
    sn_long_close(&a->lp);
    return -1;
  }
  return 0;
}

int sn_at_fall_back(sn_at *a, sn_err *err) {
  xattrat_on = 0;
  err->code = 0;
  err->syscall = NULL;
  return open_proc(a, a->dirfd, a->path, err);
}

void sn_at_close(sn_at *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  sn_long_close(&a->lp);
}

int sn_long_open(sn_long *l, int *at, const char **path, sn_err *err) {
  l->fd = -1;
  const char *p = *path;
  if (p[0] == '/' || strlen(p) < PATH_MAX) return 0;
  const char *last = strrchr(p, '/');
  if (last == NULL) return 0; /* one name that long: the call says ENAMETOOLONG */
  char piece[PATH_MAX];
  int cur = *at;
  for (const char *s = p; s < last;) {
    /* As many whole names as fit below PATH_MAX, up to the last one. */
    const char *end = last;
    if ((size_t)(end - s) >= PATH_MAX) {
      end = s + PATH_MAX - 1;
      while (end > s && *end != '/') end--;
      if (end == s) {
        sn_long_close(l);
        return SN_FAIL(err, ENAMETOOLONG, "openat");
      }
    }
    memcpy(piece, s, (size_t)(end - s));
    piece[end - s] = '\0';
    int fd = openat(cur, piece, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    sn_long_close(l);
    if (fd < 0) return SN_FAIL(err, e, "openat");
    l->fd = cur = fd;
    s = end + 1;
  }
  *at = cur;
  *path = last + 1;
  return 0;
}

void sn_long_close(sn_long *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
}
