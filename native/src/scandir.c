/*
 * scandir.c - see scandir.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "scandir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "dirents.h"
#include "xattr.h"

static void free_entry(sn_scan_entry *e) {
  free(e->name);
  for (size_t i = 0; i < e->nxattrs; i++) {
    free(e->xattrs[i].name);
    free(e->xattrs[i].value);
  }
  free(e->xattrs);
}

void sn_scan_free(sn_scan_entry *ents, size_t count) {
  if (ents == NULL) return;
  for (size_t i = 0; i < count; i++) free_entry(&ents[i]);
  free(ents);
}

/* Every attribute of dirfd/name into e (0, or -1 with err filled). */
static int read_xattrs(int dirfd, const char *path, sn_scan_entry *e, sn_err *err) {
  char *list = NULL;
  size_t len = 0;
  sn_err le = {0, NULL};
  if (sn_listxattr(dirfd, path, &list, &len, &le) < 0) {
    /* No support on this filesystem or object type: none.  Gone: none. */
    if (le.code == ENOTSUP || le.code == ENOENT) return 0;
    *err = le;
    return -1;
  }
  size_t n = 0;
  for (size_t i = 0; i < len; i++) if (list[i] == '\0') n++;
  if (n == 0) { free(list); return 0; }
  e->xattrs = calloc(n, sizeof *e->xattrs);
  if (e->xattrs == NULL) { free(list); return SN_FAIL(err, ENOMEM, "calloc"); }
  int rc = 0;
  size_t start = 0;
  for (size_t i = 0; i < len && rc == 0; i++) {
    if (list[i] != '\0') continue;
    const char *name = list + start;
    start = i + 1;
    if (*name == '\0') continue;
    char *val = NULL;
    size_t vlen = 0;
    sn_err ge = {0, NULL};
    if (sn_getxattr(dirfd, path, name, &val, &vlen, &ge) < 0) {
      if (ge.code == ENODATA || ge.code == ENOENT) continue;
      *err = ge;
      rc = -1;
      break;
    }
    char *copy = strdup(name);
    if (copy == NULL) { free(val); rc = SN_FAIL(err, ENOMEM, "strdup"); break; }
    e->xattrs[e->nxattrs].name = copy;
    e->xattrs[e->nxattrs].value = val;
    e->xattrs[e->nxattrs].len = vlen;
    e->nxattrs++;
  }
  free(list);
  return rc;
}

int sn_scandir(int at, const char *path, int with_xattrs, sn_scan_entry **out, size_t *count, sn_err *err) {
  *out = NULL;
  *count = 0;
  /* Quietly: a walk of the store leaves its directories' atimes alone. */
  DIR *dir = sn_opendir_at(at, path, 1, err);
  if (dir == NULL) return -1;
  int dfd = dirfd(dir);
  sn_scan_entry *ents = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (;;) {
    struct dirent *de;
    int got = sn_next_dirent(dir, &de, err);
    if (got <= 0) {
      rc = got;
      break;
    }
    if (sn_grow((void **)&ents, &cap, n, sizeof *ents, err) < 0) {
      rc = -1;
      break;
    }
    sn_scan_entry *e = &ents[n];
    memset(e, 0, sizeof *e);
    if (fstatat(dfd, de->d_name, &e->st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;
      rc = SN_FAIL(err, errno, "fstatat");
      break;
    }
    e->name = strdup(de->d_name);
    if (e->name == NULL) { rc = SN_FAIL(err, ENOMEM, "strdup"); break; }
    n++;
    if (!with_xattrs) continue;
    if (read_xattrs(dfd, de->d_name, e, err) < 0) { rc = -1; break; }
  }
  closedir(dir); /* errors were saved above */
  if (rc < 0) {
    sn_scan_free(ents, n);
    return rc;
  }
  *out = ents;
  *count = n;
  return 0;
}
