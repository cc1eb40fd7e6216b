/*
 * blockcopy.c - see blockcopy.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "blockcopy.h"
#include "atpath.h"
#include "sysops.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h> /* FICLONE */
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* Buffer size for the pread/pwrite fallback. */
#define SN_RW_BUFSIZE ((size_t)1 << 20)
/* Largest request handed to one copy_file_range call (the kernel caps
 * requests itself, this just keeps size_t arithmetic obviously safe). */
#define SN_CFR_CHUNK ((uint64_t)1 << 30)

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/*
 * Errors from the *first* copy_file_range call that mean "this pair of
 * files can't do it", as opposed to a real I/O problem:
 *   EXDEV      different file systems (kernels before 5.3 and after 5.19)
 *   ENOSYS     kernel without the syscall
 *   EOPNOTSUPP file system doesn't support it (ENOTSUP is the same value)
 *   EINVAL     e.g. special files, or a file system refusing the request
 */
static int cfr_should_fall_back(int e) {
  return e == EXDEV || e == ENOSYS || e == EOPNOTSUPP || e == EINVAL;
}

/*
 * Errors from FICLONE after which 'auto' copies instead: the file system
 * can't share blocks (EOPNOTSUPP, ENOTTY, ENOSYS), the files are on
 * different file systems (EXDEV), or the request is not clonable (EINVAL,
 * e.g. same file or unaligned sizes on some file systems).
 */
static int clone_should_fall_back(int e) {
  return e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY ||
         e == ENOSYS;
}

/* pread/pwrite loop; adds the number of bytes copied to *copied. */
static int copy_readwrite(int fd_in, uint64_t off_in, int fd_out,
                          uint64_t off_out, uint64_t len, uint64_t *copied,
                          sn_err *err) {
  if (len == 0) return 0;

  size_t bufsize = (size_t)min_u64(len, SN_RW_BUFSIZE);
  char *buf = malloc(bufsize);
  if (buf == NULL) return SN_FAIL(err, ENOMEM, "malloc");

  uint64_t done = 0;
  while (done < len) {
    size_t want = (size_t)min_u64(len - done, bufsize);
    ssize_t n = pread(fd_in, buf, want, (off_t)(off_in + done));
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      free(buf);
      return SN_FAIL(err, e, "pread");
    }
    if (n == 0) break; /* EOF */

    /* Write everything we read; pwrite may be short. */
    size_t written = 0;
    while (written < (size_t)n) {
      ssize_t w = pwrite(fd_out, buf + written, (size_t)n - written,
                         (off_t)(off_out + done + written));
      if (w < 0) {
        int e = errno;
        if (e == EINTR) continue;
        free(buf);
        return SN_FAIL(err, e, "pwrite");
      }
      if (w == 0) { /* should not happen for files; avoid spinning */
        free(buf);
        return SN_FAIL(err, EIO, "pwrite");
      }
      written += (size_t)w;
    }
    done += (uint64_t)n;
    *copied += (uint64_t)n;
  }

  free(buf);
  return 0;
}

int sn_copy_range(int fd_in, uint64_t off_in, int fd_out, uint64_t off_out,
                  uint64_t len, sn_copy_method method, uint64_t *copied,
                  sn_err *err) {
  *copied = 0;
  if (method == SN_COPY_READWRITE)
    return copy_readwrite(fd_in, off_in, fd_out, off_out, len, copied, err);

  int first = 1;
  while (*copied < len) {
    loff_t in = (loff_t)(off_in + *copied);
    loff_t out = (loff_t)(off_out + *copied);
    size_t chunk = (size_t)min_u64(len - *copied, SN_CFR_CHUNK);
    ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, chunk, 0);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (method == SN_COPY_AUTO && first && cfr_should_fall_back(e))
        return copy_readwrite(fd_in, off_in, fd_out, off_out, len, copied,
                              err);
      return SN_FAIL(err, e, "copy_file_range");
    }
    if (n == 0) {
      /* Normally EOF.  Some pseudo file systems (procfs, sysfs) also answer
       * 0 on the first call though they have data; in 'auto' mode let
       * read/write decide (it costs one pread at a real EOF). */
      if (method == SN_COPY_AUTO && first)
        return copy_readwrite(fd_in, off_in, fd_out, off_out, len, copied,
                              err);
      break;
    }
    first = 0;
    *copied += (uint64_t)n;
  }
  return 0;
}

int sn_list_extents(int fd, sn_extent **out, size_t *count, sn_err *err) {
  *out = NULL;
  *count = 0;

  struct stat st;
  if (fstat(fd, &st) < 0) return SN_FAIL(err, errno, "fstat");
  if (st.st_size == 0) return 0;

  /* SEEK_DATA/SEEK_HOLE move the fd's file position, which is shared with
   * anyone else using the fd: remember it and put it back at the end. */
  off_t saved = lseek(fd, 0, SEEK_CUR);
  if (saved < 0) return SN_FAIL(err, errno, "lseek");

  sn_extent *ext = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  off_t pos = 0;

  while (pos < st.st_size) {
    off_t data, hole;

    data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      int e = errno;
      if (e == ENXIO) break; /* no data at or after pos */
      if (e == EINVAL && pos == 0) {
        /* No SEEK_DATA support: treat the whole file as data. */
        data = 0;
        hole = st.st_size;
      } else {
        rc = SN_FAIL(err, e, "lseek");
        break;
      }
    } else {
      if (data >= st.st_size) break; /* file grew under us; stop at size */
      hole = lseek(fd, data, SEEK_HOLE);
      if (hole < 0) {
        int e = errno;
        if (e == ENXIO) { /* file shrank between the two lseeks */
          hole = st.st_size;
        } else {
          rc = SN_FAIL(err, e, "lseek");
          break;
        }
      }
      if (hole > st.st_size) hole = st.st_size;
    }

    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      sn_extent *grown = realloc(ext, ncap * sizeof *ext);
      if (grown == NULL) {
        rc = SN_FAIL(err, ENOMEM, "realloc");
        break;
      }
      ext = grown;
      cap = ncap;
    }
    ext[n].offset = (uint64_t)data;
    ext[n].length = (uint64_t)(hole - data);
    n++;
    pos = hole;
  }

  (void)lseek(fd, saved, SEEK_SET); /* best effort: errors already saved */

  if (rc < 0) {
    free(ext);
    return rc;
  }
  *out = ext;
  *count = n;
  return 0;
}

/* Copy only the data extents of fd_in to the same offsets of fd_out, then
 * set fd_out's size, so holes stay holes. */
static int copy_sparse(int fd_in, int fd_out, sn_err *err) {
  struct stat si, so;
  if (fstat(fd_in, &si) < 0) return SN_FAIL(err, errno, "fstat");
  if (fstat(fd_out, &so) < 0) return SN_FAIL(err, errno, "fstat");
  /* Same file: truncating fd_out would destroy the source.  This is the
   * error copy_file_range gives for overlapping ranges in one file. */
  if (si.st_dev == so.st_dev && si.st_ino == so.st_ino)
    return SN_FAIL(err, EINVAL, "copy_file_range");

  /* Drop old contents so regions that are holes in the source don't keep
   * stale data in the destination. */
  if (ftruncate(fd_out, 0) < 0) return SN_FAIL(err, errno, "ftruncate");

  sn_extent *ext;
  size_t n;
  if (sn_list_extents(fd_in, &ext, &n, err) < 0) return -1;

  for (size_t i = 0; i < n; i++) {
    uint64_t copied;
    if (sn_copy_range(fd_in, ext[i].offset, fd_out, ext[i].offset,
                      ext[i].length, SN_COPY_AUTO, &copied, err) < 0) {
      free(ext);
      return -1;
    }
  }
  free(ext);

  if (ftruncate(fd_out, si.st_size) < 0)
    return SN_FAIL(err, errno, "ftruncate");
  return 0;
}

int sn_clone_file(int fd_in, int fd_out, sn_clone_method method,
                  int *reflinked, sn_err *err) {
  *reflinked = 0;
  if (method != SN_CLONE_COPY) {
    if (ioctl(fd_out, FICLONE, fd_in) == 0) {
      *reflinked = 1;
      return 0;
    }
    int e = errno;
    if (method == SN_CLONE_REFLINK || !clone_should_fall_back(e))
      return SN_FAIL(err, e, "ioctl");
  }
  return copy_sparse(fd_in, fd_out, err);
}

int sn_read_file_quiet(int at, const char *path, uint64_t max, sn_extent **ext,
                       size_t *count, char **data, size_t *len, sn_err *err) {
  SN_LONG_PATH(lp, at, path, err);
  *ext = NULL;
  *count = 0;
  *data = NULL;
  *len = 0;
  int fd = openat(at, path, O_RDONLY | O_NOATIME | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EPERM) fd = openat(at, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return SN_FAIL(err, errno, "open");
  int rc = sn_list_extents(fd, ext, count, err);
  if (rc == 0 && max > 0) {
    char *buf = malloc((size_t)max);
    if (buf == NULL) {
      rc = SN_FAIL(err, ENOMEM, "malloc");
    } else {
      size_t got = 0;
      while (got < max) {
        ssize_t r = pread(fd, buf + got, (size_t)max - got, (off_t)got);
        if (r < 0) {
          if (errno == EINTR) continue;
          rc = SN_FAIL(err, errno, "pread");
          break;
        }
        if (r == 0) break; /* EOF: the file is shorter than its stat said */
        got += (size_t)r;
      }
      *data = buf;
      *len = got;
    }
  }
  close(fd);
  return rc;
}

/* Opens a live file quietly (O_NOATIME where allowed, never following a final
 * symlink); -1 with errno set. */
static int open_quiet(int at, const char *path) {
  int fd = openat(at, path, O_RDONLY | O_NOATIME | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EPERM)
    fd = openat(at, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  return fd;
}

int sn_clone_to(int at, const char *src, int dst_at, const char *dst, uint32_t mode,
                sn_clone_to_result *res, sn_err *err) {
  SN_LONG_PATH(ls, at, src, err);
  SN_LONG_PATH(ld, dst_at, dst, err);
  res->found = 0;
  res->is_file = 0;
  res->ino = 0;
  res->size = 0;
  res->reflinked = 0;
  int in = open_quiet(at, src);
  if (in < 0) return 0; /* gone or moved: the caller looks elsewhere */
  struct stat si;
  if (fstat(in, &si) < 0) {
    int e = errno;
    close(in);
    return SN_FAIL(err, e, "fstat");
  }
  res->found = 1;
  res->ino = (uint64_t)si.st_ino;
  if (!S_ISREG(si.st_mode)) {
    close(in);
    return 0;
  }
  res->is_file = 1;
  int out = openat(dst_at, dst, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   (mode_t)mode);
  if (out < 0) {
    int e = errno;
    close(in);
    return SN_FAIL(err, e, "open");
  }
  int rc = sn_clone_file(in, out, SN_CLONE_AUTO, &res->reflinked, err);
  struct stat so;
  if (rc == 0 && fstat(out, &so) < 0) rc = SN_FAIL(err, errno, "fstat");
  if (rc == 0) res->size = (uint64_t)so.st_size;
  close(in);
  if (close(out) < 0 && rc == 0) rc = SN_FAIL(err, errno, "close");
  return rc;
}

int sn_finish_file(int at, const char *tmp, int create, int64_t size, int log_fd,
                   const uint64_t *ranges, size_t nranges,
                   const char *const *names, const void *const *values,
                   const size_t *lens, size_t n, int64_t uid, int64_t gid,
                   int64_t chmod_mode, const struct timespec ts[2],
                   const char *final, const void *data, size_t data_len,
                   int drop_acls, uint64_t *log_bytes, sn_err *err) {
  *log_bytes = 0;
  int final_at = at;
  SN_LONG_PATH(lt, at, tmp, err);
  sn_long lf __attribute__((cleanup(sn_long_close))) = {-1};
  if (final != NULL && sn_long_open(&lf, &final_at, &final, err) < 0) return -1;
  int flags = O_RDWR | O_NOFOLLOW | O_CLOEXEC;
  if (create) flags |= O_CREAT | O_EXCL;
  int fd = openat(at, tmp, flags, 0600);
  if (fd < 0) return SN_FAIL(err, errno, "open");
  int rc = 0;
  if (size >= 0) {
    struct stat st;
    if (fstat(fd, &st) < 0)
      rc = SN_FAIL(err, errno, "fstat");
    else if (st.st_size != (off_t)size && ftruncate(fd, (off_t)size) < 0)
      rc = SN_FAIL(err, errno, "ftruncate");
  }
  for (size_t done = 0; rc == 0 && done < data_len;) {
    ssize_t w = pwrite(fd, (const char *)data + done, data_len - done, (off_t)done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) rc = SN_FAIL(err, w < 0 ? errno : EIO, "pwrite");
    else done += (size_t)w;
  }
  for (size_t i = 0; rc == 0 && i < nranges; i++) {
    uint64_t log_off = ranges[3 * i], off = ranges[3 * i + 1],
             len = ranges[3 * i + 2];
    uint64_t done = 0;
    while (rc == 0 && done < len) {
      uint64_t copied;
      rc = sn_copy_range(log_fd, log_off + done, fd, off + done, len - done,
                         SN_COPY_AUTO, &copied, err);
      if (rc == 0 && copied == 0) rc = SN_FAIL(err, ENODATA, "copy_file_range");
      done += copied;
    }
    *log_bytes += done;
  }
  for (int k = 0; rc == 0 && drop_acls && k < 2; k++) {
    if (fremovexattr(fd, sn_acl_names[k]) < 0 && errno != ENODATA && errno != EOPNOTSUPP)
      rc = SN_FAIL(err, errno, "fremovexattr");
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (fsetxattr(fd, names[i], values[i], lens[i], 0) < 0)
      rc = SN_FAIL(err, errno, "fsetxattr");
  }
  if (rc == 0 && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
    rc = SN_FAIL(err, errno, "fchown");
  if (rc == 0 && chmod_mode >= 0 && fchmod(fd, (mode_t)chmod_mode) < 0)
    rc = SN_FAIL(err, errno, "fchmod");
  if (rc == 0 && futimens(fd, ts) < 0) rc = SN_FAIL(err, errno, "futimens");
  if (close(fd) < 0 && rc == 0) rc = SN_FAIL(err, errno, "close");
  if (rc == 0 && final != NULL && renameat(at, tmp, final_at, final) < 0)
    rc = SN_FAIL(err, errno, "rename");
  return rc;
}
