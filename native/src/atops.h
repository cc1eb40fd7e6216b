/*
 * atops.h - the local-object layer's syscalls, each relative to a directory
 * descriptor (the store root: src/store/store-dir.ts), never following a
 * final symlink unless said.  Plain C, no N-API; 0 or -1 with err filled.
 *
 *   sn_stat_at      fstatat(at, path, st, AT_SYMLINK_NOFOLLOW unless follow)
 *   sn_open_at      openat(at, path, flags, mode), retried on EINTR
 *   sn_mkdir_at     mkdirat
 *   sn_symlink_at   symlinkat(target, at, path)
 *   sn_link_at      linkat(at, from, to_at, to, 0)
 *   sn_rename_at    renameat(at, from, to_at, to)
 *   sn_rename_noreplace_at  renameat2(at, from, to_at, to, RENAME_NOREPLACE): EEXIST when `to` exists
 *   sn_rename_exchange_at   renameat2(at, from, to_at, to, RENAME_EXCHANGE): the two names swap objects, atomically
 *   sn_unlink_at    unlinkat(at, path, 0 | AT_REMOVEDIR)
 *   sn_readlink_at  readlinkat, into a malloc'd buffer of any length
 *   sn_chmod_at     fchmodat(at, path, mode, 0) (follows: never on a symlink)
 *   sn_chown_at     fchownat(at, path, uid, gid, AT_SYMLINK_NOFOLLOW)
 *   sn_truncate_at  openat(O_WRONLY | O_NOFOLLOW | O_NONBLOCK) + ftruncate
 *   sn_access_at    faccessat(at, path, mode, 0)
 *   sn_statfs_at    fstatfs of the object (opened O_PATH)
 */
#ifndef STRATA_ATOPS_H
#define STRATA_ATOPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "errinfo.h"

#ifdef __cplusplus
extern "C" {
#endif

int sn_stat_at(int at, const char *path, int follow, struct stat *st, sn_err *err);
int sn_open_at(int at, const char *path, int flags, uint32_t mode, int *fd, sn_err *err);
int sn_mkdir_at(int at, const char *path, uint32_t mode, sn_err *err);
int sn_symlink_at(const char *target, int at, const char *path, sn_err *err);
int sn_link_at(int at, const char *from, int to_at, const char *to, sn_err *err);
int sn_rename_at(int at, const char *from, int to_at, const char *to, sn_err *err);
int sn_rename_noreplace_at(int at, const char *from, int to_at, const char *to, sn_err *err);
int sn_rename_exchange_at(int at, const char *from, int to_at, const char *to, sn_err *err);
int sn_unlink_at(int at, const char *path, int dir, sn_err *err);
int sn_readlink_at(int at, const char *path, char **out, size_t *len, sn_err *err);
int sn_chmod_at(int at, const char *path, uint32_t mode, sn_err *err);
int sn_chown_at(int at, const char *path, int64_t uid, int64_t gid, sn_err *err);
int sn_truncate_at(int at, const char *path, uint64_t size, sn_err *err);
int sn_access_at(int at, const char *path, uint32_t mode, sn_err *err);
int sn_statfs_at(int at, const char *path, struct statfs *sf, sn_err *err);

#ifdef __cplusplus
}
#endif

#endif
