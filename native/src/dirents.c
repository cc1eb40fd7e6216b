/*
 * dirents.c - see dirents.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "dirents.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sn_dirents_free(sn_dirent *ents, size_t count) {
  if (ents == NULL) return;
  for (size_t i = 0; i < count; i++) free(ents[i].name);
  free(ents);
}

int sn_readdir(const char *path, sn_dirent **out, size_t *count, sn_err *err) {
  *out = NULL;
  *count = 0;

  DIR *dir = opendir(path);
  if (dir == NULL) return SN_FAIL(err, errno, "opendir");

  sn_dirent *ents = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;

  for (;;) {
    /* readdir returns NULL both at the end and on error; only errno tells
     * them apart, so clear it first. */
    errno = 0;
    struct dirent *de = readdir(dir);
    if (de == NULL) {
      if (errno != 0) rc = SN_FAIL(err, errno, "readdir");
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;

    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      sn_dirent *grown = realloc(ents, ncap * sizeof *ents);
      if (grown == NULL) {
        rc = SN_FAIL(err, ENOMEM, "realloc");
        break;
      }
      ents = grown;
      cap = ncap;
    }
    char *name = strdup(de->d_name);
    if (name == NULL) {
      rc = SN_FAIL(err, ENOMEM, "strdup");
      break;
    }
    ents[n].name = name;
    ents[n].ino = (uint64_t)de->d_ino;
    ents[n].type = de->d_type;
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
