/*
 * dirents.h - directory listing with inode numbers and d_type
 * (opendir/readdir).  Plain C, no N-API.
 */
#ifndef STRATA_DIRENTS_H
#define STRATA_DIRENTS_H

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
int sn_readdir(const char *path, sn_dirent **out, size_t *count, sn_err *err);

void sn_dirents_free(sn_dirent *ents, size_t count);

#ifdef __cplusplus
}
#endif

#endif
