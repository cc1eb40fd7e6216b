/*
 * atpath.h - a path relative to a directory descriptor, for the xattr
 * calls, which have an *at form only since Linux 6.13.  Plain C, no N-API.
 *
 * dirfd == AT_FDCWD, or an absolute path: the path itself, used with the
 * l* calls (never following a final symlink).  Otherwise, where the kernel
 * has them, the *at calls (getxattrat, setxattrat, listxattrat,
 * removexattrat with AT_SYMLINK_NOFOLLOW: SN_AT_SYSCALL).  Where it has not
 * (ENOSYS once, or sn_xattrat_enable(0)), the object is opened O_PATH |
 * O_NOFOLLOW relative to dirfd and reached as /proc/self/fd/N: a magic link,
 * which the following calls resolve to the object itself (a symlink
 * included) and no further.  An empty path names dirfd's own object (any
 * kind of descriptor), reached the /proc/self/fd way.  Either way a store-relative path never grows by
 * a prefix (PATH_MAX holds as for openat).
 */
#ifndef STRATA_ATPATH_H
#define STRATA_ATPATH_H

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SN_AT_LCALL = 0, SN_AT_PROC = 1, SN_AT_SYSCALL = 2 };

typedef struct sn_long {
  int fd; /* the directory part's descriptor, or -1 */
} sn_long;

typedef struct sn_at {
  int how;          /* SN_AT_LCALL: l* call on path; SN_AT_PROC: following call on proc; SN_AT_SYSCALL: *at call */
  int dirfd;        /* for SN_AT_SYSCALL */
  const char *path; /* what to pass to the call */
  int fd;           /* the O_PATH descriptor (SN_AT_PROC), or -1 */
  char proc[40];
  sn_long lp;       /* a path of PATH_MAX or more: its directory part (sn_long_open) */
} sn_at;

/* 0, or -1 with err filled (the openat failed: e.g. ENOENT). */
int sn_at_open(sn_at *a, int dirfd, const char *path, sn_err *err);
void sn_at_close(sn_at *a);

/* After an *at call failed with ENOSYS: never again in this process, and `a`
 * reopened the O_PATH way for a retry (0), or -1 with err filled. */
int sn_at_fall_back(sn_at *a, sn_err *err);

/* Whether the *at calls are tried (default 1; 0: the O_PATH way always). */
void sn_xattrat_enable(int on);
int sn_xattrat_enabled(void);

/*
 * A relative path of PATH_MAX bytes or more. A tree may be deeper than
 * PATH_MAX (natively a program reaches it through relative paths; the
 * kernel's FUSE hands strata one name at a time), but the store addresses an
 * object by its store-relative path, and one system call takes no more than
 * PATH_MAX. sn_long_open opens the path's directory part in pieces shorter
 * than PATH_MAX (O_PATH, each relative to the one before) and points *at and
 * *path at that descriptor and the last name; for a shorter path (or an
 * absolute one) it changes nothing. 0, or -1 with err filled. SN_LONG_PATH
 * declares the holder and closes its descriptor when the enclosing block
 * ends (GCC's cleanup attribute).
 */
int sn_long_open(sn_long *l, int *at, const char **path, sn_err *err);
void sn_long_close(sn_long *l);

#define SN_LONG_PATH(holder, at, path, err)                                    \
  sn_long holder __attribute__((cleanup(sn_long_close))) = {-1};               \
  if (sn_long_open(&holder, &(at), &(path), (err)) < 0) return -1

#ifdef __cplusplus
}
#endif

#endif
