/*
 * dirents.h - directory listing with inode numbers and d_type
 * (opendir/readdir).  Plain C, no N-API.
 */
#ifndef STRATA_DIRENTS_H
#define STRATA_DIRENTS_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_dirent {
  char *name;         /* malloc'd, raw bytes from the directory, NUL-ended */
  uint64_t ino;       /* d_ino */
  unsigned char type; /* d_type: DT_REG, DT_DIR, ... or DT_UNKNOWN */
} sn_dirent;

/* All entries of `path` except "." and "..", in readdir order.  On success
 * *out has *count entries (NULL when empty); free with sn_dirents_free. */
/* `path` relative to `at` (AT_FDCWD: the working directory), as for openat. */
int sn_readdir(int at, const char *path, sn_dirent **out, size_t *count, sn_err *err);

void sn_dirents_free(sn_dirent *ents, size_t count);

/* Opens the directory `path` (relative to `at`, as for openat) as a stream:
 * with `quiet`, O_NOATIME where allowed (EPERM when the caller owns neither
 * the directory nor CAP_FOWNER: then without).  NULL with err filled. */
DIR *sn_opendir_at(int at, const char *path, int quiet, sn_err *err);

/* The next entry of `dir` other than "." and "..": 1 with *de set, 0 at the
 * end, -1 (err filled) when readdir fails. */
int sn_next_dirent(DIR *dir, struct dirent **de, sn_err *err);

/* Makes room for one more of `elem`-byte items in *arr (n used of *cap):
 * 0, or -1 with ENOMEM in err (*arr unchanged). */
int sn_grow(void **arr, size_t *cap, size_t n, size_t elem, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
