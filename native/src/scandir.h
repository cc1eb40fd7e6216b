/*
 * scandir.h - one directory's entries with their lstat and extended
 * attributes, in one call (a tree walk's per-entry system calls in one
 * thread-pool job instead of several each).  Plain C, no N-API.
 */
#ifndef STRATA_SCANDIR_H
#define STRATA_SCANDIR_H

#include <stddef.h>
#include <sys/stat.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_scan_xattr {
  char *name;   /* malloc'd, NUL-ended */
  char *value;  /* malloc'd (never NULL) */
  size_t len;
} sn_scan_xattr;

typedef struct sn_scan_entry {
  char *name;          /* malloc'd, raw bytes from the directory, NUL-ended */
  struct stat st;      /* fstatat(AT_SYMLINK_NOFOLLOW) */
  sn_scan_xattr *xattrs;
  size_t nxattrs;
} sn_scan_entry;

/*
 * The entries of the directory `path` except "." and "..", in readdir
 * order, each with its lstat and (when `with_xattrs`) every extended
 * attribute (l*xattr: a symlink's own; none where the filesystem has no
 * support).  An entry that vanished between readdir and its stat, or an
 * attribute removed between its listing and its read, is left out.
 */
/* `path` relative to `at` (AT_FDCWD: the working directory), as for openat. */
int sn_scandir(int at, const char *path, int with_xattrs, sn_scan_entry **out, size_t *count, sn_err *err);

void sn_scan_free(sn_scan_entry *ents, size_t count);

#ifdef __cplusplus
}
#endif

#endif
