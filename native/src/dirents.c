/*
 * dirents.c - see dirents.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "dirents.h"
#include "atpath.h"

#include <dirent.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sn_next_dirent(DIR *dir, struct dirent **de, sn_err *err) {
  for (;;) {
    /* readdir returns NULL both at the end and on error; only errno tells
     * them apart, so clear it first. */
    errno = 0;
    struct dirent *d = readdir(dir);
    if (d == NULL) return errno != 0 ? SN_FAIL(err, errno, "readdir") : 0;
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    *de = d;
    return 1;
  }
}

int sn_grow(void **arr, size_t *cap, size_t n, size_t elem, sn_err *err) {
  if (n < *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : 32;
  void *grown = realloc(*arr, ncap * elem);
  if (grown == NULL) return SN_FAIL(err, ENOMEM, "realloc");
  *arr = grown;
  *cap = ncap;
  return 0;
}

void sn_dirents_free(sn_dirent *ents, size_t count) {
  if (ents == NULL) return;
  for (size_t i = 0; i < count; i++) free(ents[i].name);
  free(ents);
}

DIR *sn_opendir_at(int at, const char *path, int quiet, sn_err *err) {
  sn_long lp __attribute__((cleanup(sn_long_close))) = {-1};
  if (sn_long_open(&lp, &at, &path, err) < 0) return NULL;
  int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  int fd = openat(at, path, flags | (quiet ? O_NOATIME : 0));
  if (fd < 0 && quiet && errno == EPERM) fd = openat(at, path, flags);
  if (fd < 0) {
    (void)SN_FAIL(err, errno, "opendir");
    return NULL;
  }
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int saved = errno;
    close(fd);
    (void)SN_FAIL(err, saved, "fdopendir");
  }
  return dir;
}

int sn_readdir(int at, const char *path, sn_dirent **out, size_t *count, sn_err *err) {
  *out = NULL;
  *count = 0;

  DIR *dir = sn_opendir_at(at, path, 0, err);
  if (dir == NULL) return -1;

  sn_dirent *ents = NULL;
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
    char *name = strdup(de->d_name);
    if (name == NULL) {
      rc = SN_FAIL(err, ENOMEM, "strdup");
      break;
    }
    ents[n].name = name;
    ents[n].ino = (uint64_t)de->d_ino;
    ents[n].type = de->d_type;
    if (de->d_type == DT_UNKNOWN) {
      /* A file system that does not say (XFS with ftype=0, some network ones):
       * its lstat does. An entry gone meanwhile stays DT_UNKNOWN (the caller's
       * next call on it says ENOENT). */
      struct stat st;
      if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0) ents[n].type = IFTODT(st.st_mode);
    }
    n++;
  }

  closedir(dir); /* after errno was saved above */

  if (rc < 0) {
    sn_dirents_free(ents, n);
    return rc;
  }
  *out = ents;
  *count = n;
  return 0;
}
