/*
 * blockcopy.h - copying blocks between files (plain C, no N-API).
 *
 *   sn_copy_range    copy_file_range(2) loop, optional pread/pwrite fallback
 *   sn_clone_file    FICLONE ioctl, optional hole-preserving copy fallback
 *   sn_list_extents  data extents of a file via lseek SEEK_DATA/SEEK_HOLE
 *   sn_read_file_quiet  a small file's extents and bytes in one call
 */
#ifndef STRATA_BLOCKCOPY_H
#define STRATA_BLOCKCOPY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sn_copy_method {
  SN_COPY_AUTO = 0,            /* copy_file_range, fall back to read/write */
  SN_COPY_COPY_FILE_RANGE = 1, /* copy_file_range only */
  SN_COPY_READWRITE = 2        /* pread/pwrite only */
} sn_copy_method;

typedef enum sn_clone_method {
  SN_CLONE_AUTO = 0,    /* FICLONE, fall back to a sparse copy */
  SN_CLONE_REFLINK = 1, /* FICLONE only */
  SN_CLONE_COPY = 2     /* sparse copy only */
} sn_clone_method;

typedef struct sn_extent {
  uint64_t offset;
  uint64_t length;
} sn_extent;

/*
 * Copy up to `len` bytes from fd_in at off_in to fd_out at off_out using
 * explicit offsets (the file positions of both fds are left alone).  Loops
 * until `len` bytes are copied or fd_in hits EOF; *copied gets the count.
 */
int sn_copy_range(int fd_in, uint64_t off_in, int fd_out, uint64_t off_out,
                  uint64_t len, sn_copy_method method, uint64_t *copied,
                  sn_err *err);

/*
 * Make fd_out's contents identical to fd_in's.  *reflinked is set to 1 when
 * FICLONE shared the blocks, 0 when the data was copied.
 */
int sn_clone_file(int fd_in, int fd_out, sn_clone_method method,
                  int *reflinked, sn_err *err);

/*
 * List the data extents of fd.  On success *out is a malloc'd array of
 * *count extents (NULL when count is 0) that the caller frees with free().
 */
int sn_list_extents(int fd, sn_extent **out, size_t *count, sn_err *err);

/*
 * Open `path` (relative to `at`, as for openat) read-only without following a final symlink and, where
 * allowed, without touching its atime (O_NOATIME; EPERM falls back to a plain
 * open), list its data extents (sn_list_extents), read up to `max` bytes from
 * offset 0 (fewer at EOF: *len says how many), and close it: what reading a
 * small file costs, in one call.  *ext and *data are malloc'd (free both,
 * also on failure; *data is NULL when max is 0).
 */
int sn_read_file_quiet(int at, const char *path, uint64_t max, sn_extent **ext,
                       size_t *count, char **data, size_t *len, sn_err *err);


/* What sn_clone_to found and did. */
typedef struct sn_clone_to_result {
  int found;     /* src was opened */
  int is_file;   /* ... and is a regular file (only then is dst created) */
  uint64_t ino;  /* its inode number (when found) */
  uint64_t size; /* dst's size after the copy */
  int reflinked; /* FICLONE shared the blocks */
} sn_clone_to_result;

/* Opens src (relative to `at`, as for openat; O_NOATIME where allowed,
 * O_NOFOLLOW); when it is a regular file, creates dst (relative to `dst_at`:
 * another store's root, e.g. a swap's spare; O_EXCL, permission bits `mode`)
 * and makes it a copy of src (sn_clone_file 'auto'). src that cannot be
 * opened is not an error (found = 0). */
int sn_clone_to(int at, const char *src, int dst_at, const char *dst, uint32_t mode,
                sn_clone_to_result *res, sn_err *err);


/* Finishes a regular file built under the temporary name `tmp` (relative to
 * `at`, as is `final`, as for openat): opens it
 * (created with O_EXCL, mode 0600, when `create`), sets its size (size >= 0),
 * writes the data_len bytes of `data` at offset 0, copies `nranges` ranges
 * (log offset, file offset, length triples) from log_fd, with drop_acls
 * removes its POSIX ACLs (as sn_prepare_object does), sets the n extended
 * attributes in order, owner (uid >= 0), mode (chmod_mode >= 0) and times,
 * closes it and renames it to `final` (NULL: no rename). Stops at the first
 * failure. A range the log cannot give in full fails with ENODATA. */
int sn_finish_file(int at, const char *tmp, int create, int64_t size, int log_fd,
                   const uint64_t *ranges, size_t nranges,
                   const char *const *names, const void *const *values,
                   const size_t *lens, size_t n, int64_t uid, int64_t gid,
                   int64_t chmod_mode, const struct timespec ts[2],
                   const char *final, const void *data, size_t data_len,
                   int drop_acls, uint64_t *log_bytes, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
