// intake.c - the kernel's requests, as libfuse's low-level API hands them over.
//
// Each callback runs on a FUSE thread. It lets fastpath.c answer when it can,
// else copies the request into a record (bridge_req_t) and queues it for
// JavaScript (requests.c). Nothing here waits for JavaScript.
#include "bridge.h"
#include "kernel_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bridge_session_t *session_of (fuse_req_t req) {
  return (bridge_session_t *) fuse_req_userdata(req);
}

static char *dup_str (const char *s) {
  return s == NULL ? NULL : strdup(s);
}

static void set_fi (bridge_req_t *r, struct fuse_file_info *fi) {
  if (fi != NULL) {
    r->fi = *fi;
    r->has_fi = 1;
    // A handle this thread made (JavaScript handle 0) reaching JavaScript
    // (LL_FAST_TRACK): its descriptor + 1 in ino2, unused by ops with a handle.
    if ((fi->fh & LL_HANDLE_MASK) == 0 && ((fi->fh >> 32) & LL_FH_FD_MASK) != 0) r->ino2 = (fuse_ino_t) ((fi->fh >> 32) & LL_FH_FD_MASK);
  }
}

// A record for a request that needs nothing but its node (and handle).
static void queue_plain (fuse_req_t req, uint32_t op, fuse_ino_t ino, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, op, ino);
  if (r) set_fi(r, fi);
  req_submit(s, req, r);
}

// A record for a request about `name` in `parent`.
static void queue_named (fuse_req_t req, uint32_t op, fuse_ino_t parent, const char *name, uint32_t mode) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, op, parent);
  if (r) { r->name = dup_str(name); r->mode = mode; }
  req_submit(s, req, r);
}

// A copy of a payload (the request buffer is reused as soon as we return).
static int copy_data (bridge_req_t *r, const char *data, size_t size) {
  r->data = malloc(size > 0 ? size : 1);
  if (r->data == NULL) return 0;
  memcpy(r->data, data, size);
  r->data_len = size;
  return 1;
}

// What the connection asks of the kernel. libfuse 3 turns on by default some
// capabilities libfuse 2 left off; those that would change what a program
// sees stay off until strata handles them:
// - HANDLE_KILLPRIV: the kernel would no longer clear set-user-ID/set-group-ID
//   bits on write, chown and truncate, leaving it to us (a direct write by the
//   FUSE thread runs as root, which keeps them);
// - AUTO_INVAL_DATA: the kernel would drop cached pages whenever a getattr
//   shows another mtime; strata is the only writer (keep_cache decides);
// - ASYNC_DIO: direct I/O stays serialised as before;
// - PARALLEL_DIROPS unless the parallel_dirops option asks for it: then the
//   kernel no longer serialises the lookups and readdirs of one directory
//   (they take the directory's lock shared). Nothing in strata relied on it:
//   the core's node table is the JS thread's, the FUSE thread's node table
//   has its own lock, and the restore materialises a pending directory's
//   entries under a lock per directory (docs/fuse-bridge.md).
static void ll_init (void *userdata, struct fuse_conn_info *conn) {
  bridge_session_t *s = (bridge_session_t *) userdata;
  conn->want &= ~(FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ASYNC_DIO);
  s->parallel_dirops_offered = (conn->capable & FUSE_CAP_PARALLEL_DIROPS) != 0;
  if (s->parallel_dirops_wanted && s->parallel_dirops_offered) {
    conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    s->parallel_dirops_on = 1;
  }
  // POSIX ACLs (the posix_acl option): the kernel enforces them (with
  // default_permissions, always on) and asks for them as the xattrs
  // system.posix_acl_access/default, which the store's own file system
  // keeps and applies (a chmod updates the ACL, an ACL the mode, a default
  // ACL is inherited by what the daemon creates). With them the kernel must
  // not apply the umask (FUSE_CAP_DONT_MASK): an object created in a
  // directory with a default ACL ignores it; strata applies it otherwise
  // (posix_rules.h: sr_creation_mode). Off: the kernel checks mode bits only.
  conn->want &= ~(FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK);
  s->posix_acl_offered = (conn->capable & FUSE_CAP_POSIX_ACL) != 0 && (conn->capable & FUSE_CAP_DONT_MASK) != 0;
  if (s->posix_acl_wanted && s->posix_acl_offered) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
    s->posix_acl_on = 1;
  }
  // O_TRUNC with the open (one request less), unless the no_atomic_o_trunc
  // option says the store is mirrored: the kernel then truncates with a
  // SETATTR under the inode's lock, which its writes hold too, so no write
  // of another handle reaches the store between the truncation and its
  // journal record (an O_TRUNC open holds no such lock: a write recorded
  // before the truncation's record but made after it would leave the
  // archive's copy untruncated; docs/mirroring.md).
  if (!s->atomic_o_trunc_off && (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  else conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  s->atomic_o_trunc_on = (conn->want & FUSE_CAP_ATOMIC_O_TRUNC) != 0;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
  // Locks stay local to this kernel (strata is the only writer of its store).
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  if (s->max_write != 0) conn->max_write = s->max_write;
  // The writeback cache (the writeback_cache option; see writeback_flags).
  if (s->writeback_wanted && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    __atomic_store_n(&s->writeback_on, 1, __ATOMIC_RELEASE);
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  s->readdirplus_on = (conn->want & FUSE_CAP_READDIRPLUS) != 0;
  // JavaScript hears of the init once the reply is out (intake_init_done):
  // session.c adds to it what libfuse does not know.
}

void intake_init_done (bridge_session_t *s) {
  req_notify(s, req_new(s, NULL, LL_INIT, 0));
}

// ---- handle_killpriv_v2 ----------------------------------------------------------------
//
// With FUSE_HANDLE_KILLPRIV_V2 the kernel no longer drops set-user-ID and
// set-group-ID bits itself on write, truncate and chown (nor asks for
// security.capability first): it flags the request and the filesystem drops
// them (S_ISUID always, S_ISGID with group-execute, as the kernel did for
// FUSE). libfuse 3.14 does not pass the flags on, so they are read from the
// raw request (session.c: raw_request). A chown needs nothing here: the
// store's own kernel drops the bits when the daemon chowns a regular file.

// The raw request, when it is a `opcode` request with at least `need` bytes of arguments.
static const void *raw_args (uint32_t opcode, size_t need) {
  const struct kfuse_in_header *in = (const struct kfuse_in_header *) raw_request();
  if (in == NULL || in->opcode != opcode || in->len < sizeof(*in) + need) return NULL;
  return in + 1;
}

// When the raw request is not at hand (libfuse read it through a pipe, which
// the bridge never asks for: no FUSE_CAP_SPLICE_READ), the caller's uid
// stands in for CAP_FSETID, as for a fallocate.
static int raw_missing_kills (fuse_req_t req) {
  return raw_request() == NULL && fuse_req_ctx(req)->uid != 0;
}

// A WRITE whose writer lacks CAP_FSETID (FUSE_WRITE_KILL_SUIDGID). Without
// handle_killpriv_v2 the kernel drops set-user-ID, and set-group-ID with
// group execute, itself (a SETATTR before the write), but keeps set-group-ID
// without group execute, which ext4 drops for a writer outside the file's
// group: strata applies its rule (posix_rules.h) after any write by a caller
// but root then, which finds only that case left. Not for the writeback
// cache's delayed writes: they do not come as the writer (the kernel dealt
// with the bits at write(2)).
static int write_kills (bridge_session_t *s, fuse_req_t req) {
  const struct kfuse_write_in *w = (const struct kfuse_write_in *) raw_args(KFUSE_WRITE, sizeof(struct kfuse_write_in));
  if (!s->killpriv_on) {
    int delayed = w != NULL ? (w->write_flags & KFUSE_WRITE_CACHE) != 0 : __atomic_load_n(&s->writeback_on, __ATOMIC_ACQUIRE);
    return !delayed && fuse_req_ctx(req)->uid != 0;
  }
  return w != NULL ? (w->write_flags & KFUSE_WRITE_KILL_SUIDGID) != 0 : raw_missing_kills(req);
}

// A SETATTR that must drop the bits after it (FATTR_KILL_SUIDGID): a
// truncation by a caller without CAP_FSETID (a chown's are dropped by the
// store's kernel). Without handle_killpriv_v2, by any caller but root, for
// what the kernel leaves (write_kills).
static int setattr_kills (bridge_session_t *s, fuse_req_t req) {
  if (!s->killpriv_on) return fuse_req_ctx(req)->uid != 0;
  const struct kfuse_setattr_in *a = (const struct kfuse_setattr_in *) raw_args(KFUSE_SETATTR, sizeof(struct kfuse_setattr_in));
  return a != NULL ? (a->valid & KFATTR_KILL_SUIDGID) != 0 : raw_missing_kills(req);
}

static void ll_lookup (fuse_req_t req, fuse_ino_t parent, const char *name) {
  bridge_session_t *s = session_of(req);
  int fd = -1;
  struct stat st;
  __atomic_add_fetch(&s->fast_busy, 1, __ATOMIC_SEQ_CST);
  uint64_t gen = __atomic_load_n(&s->node_gen, __ATOMIC_SEQ_CST);
  int done = fast_lookup(s, req, parent, name, &fd, &st);
  __atomic_sub_fetch(&s->fast_busy, 1, __ATOMIC_SEQ_CST);
  if (done) return;
  bridge_req_t *r = req_new(s, req, LL_LOOKUP, parent);
  if (r) {
    r->name = dup_str(name);
    r->node_gen = gen;
    if (fd >= 0) { r->pre_fd = fd; r->pre_st = st; r->has_pre = 1; }
  } else if (fd >= 0) {
    close(fd);
  }
  req_submit(s, req, r);
}

static void ll_forget (fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, NULL, LL_FORGET, ino);
  if (r) r->off = (double) nlookup;
  node_forget(s, ino, nlookup);
  fuse_reply_none(req);
  req_notify(s, r);
}

static void ll_forget_multi (fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  bridge_session_t *s = session_of(req);
  for (size_t i = 0; i < count; i++) {
    bridge_req_t *r = req_new(s, NULL, LL_FORGET, forgets[i].ino);
    if (r) r->off = (double) forgets[i].nlookup;
    node_forget(s, forgets[i].ino, forgets[i].nlookup);
    req_notify(s, r);
  }
  fuse_reply_none(req);
}

static void ll_getattr (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (FAST_COUNTED(session_of(req), fast_getattr(fs_, req, ino, fi))) return;
  queue_plain(req, LL_GETATTR, ino, fi);
}

static void ll_setattr (fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size > BRIDGE_MAX_FILE_BYTES) { fuse_reply_err(req, EFBIG); return; }
  if ((to_set & FUSE_SET_ATTR_SIZE) && setattr_kills(s, req)) to_set |= LL_SETATTR_KILL_SUIDGID;
  if (FAST_COUNTED(s, fast_setattr(fs_, req, ino, attr, to_set, fi))) return;
  bridge_req_t *r = req_new(s, req, LL_SETATTR, ino);
  if (r) {
    set_fi(r, fi);
    r->to_set = (uint32_t) to_set;
    r->mode = attr->st_mode;
    r->off = (double) attr->st_size;
    r->setattr_args[SETATTR_UID] = (double) attr->st_uid;
    r->setattr_args[SETATTR_GID] = (double) attr->st_gid;
    r->setattr_args[SETATTR_ATIME_S] = (double) attr->st_atim.tv_sec;
    r->setattr_args[SETATTR_ATIME_NS] = (double) attr->st_atim.tv_nsec;
    r->setattr_args[SETATTR_MTIME_S] = (double) attr->st_mtim.tv_sec;
    r->setattr_args[SETATTR_MTIME_NS] = (double) attr->st_mtim.tv_nsec;
  }
  req_submit(s, req, r);
}

static void ll_readlink (fuse_req_t req, fuse_ino_t ino) {
  queue_plain(req, LL_READLINK, ino, NULL);
}

static void ll_mknod (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_MKNOD, parent);
  if (r) { r->name = dup_str(name); r->mode = mode; r->rdev = (uint32_t) rdev; }
  req_submit(s, req, r);
}

static void ll_mkdir (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  if (FAST_COUNTED(session_of(req), fast_new(fs_, req, parent, name, S_IFDIR | mode, NULL))) return;
  queue_named(req, LL_MKDIR, parent, name, mode);
}

static void ll_unlink (fuse_req_t req, fuse_ino_t parent, const char *name) {
  queue_named(req, LL_UNLINK, parent, name, 0);
}

static void ll_rmdir (fuse_req_t req, fuse_ino_t parent, const char *name) {
  queue_named(req, LL_RMDIR, parent, name, 0);
}

static void ll_symlink (fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_SYMLINK, parent);
  if (r) { r->name = dup_str(name); r->name2 = dup_str(link); }
  req_submit(s, req, r);
}

static void ll_rename (fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  bridge_session_t *s = session_of(req);
  // renameat2 flags (in `mode`): RENAME_NOREPLACE (EEXIST when the target
  // exists) and RENAME_EXCHANGE (the two names swap objects), each done
  // atomically by renameat2 in the store. RENAME_WHITEOUT is not: EINVAL for
  // it alone (ENOSYS would make the kernel refuse every later flag too,
  // fc->no_rename2); so is NOREPLACE with EXCHANGE, as the kernel says itself.
  if ((flags & ~(unsigned int) (RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0 ||
      (flags & (RENAME_NOREPLACE | RENAME_EXCHANGE)) == (RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  bridge_req_t *r = req_new(s, req, LL_RENAME, parent);
  if (r) { r->name = dup_str(name); r->ino2 = newparent; r->name2 = dup_str(newname); r->mode = flags; }
  req_submit(s, req, r);
}

static void ll_link (fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_LINK, ino);
  if (r) { r->ino2 = newparent; r->name2 = dup_str(newname); }
  req_submit(s, req, r);
}

// With the writeback cache the kernel writes whole pages back later, through
// any writable handle of the file, and may read a page before writing part of
// it: a handle the program opened write-only must be readable. And it keeps
// the file's size itself and sends appends at the offsets it chose, so the
// store's descriptor must not append on its own (libfuse's passthrough_hp does
// the same). The program's open was checked by the kernel against what it
// asked for; these flags only shape the daemon's own descriptor.
static void writeback_flags (bridge_session_t *s, struct fuse_file_info *fi) {
  if (!__atomic_load_n(&s->writeback_on, __ATOMIC_ACQUIRE)) return;
  if ((fi->flags & O_ACCMODE) == O_WRONLY) fi->flags = (fi->flags & ~O_ACCMODE) | O_RDWR;
  fi->flags &= ~O_APPEND;
}

static void ll_open (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  writeback_flags(s, fi);
  if (FAST_COUNTED(s, fast_open(fs_, req, ino, fi))) return;
  bridge_req_t *r = req_new(s, req, LL_OPEN, ino);
  if (r) { set_fi(r, fi); r->mode = (uint32_t) fi->flags; }
  req_submit(s, req, r);
}

static void ll_read (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  // Past the largest file nothing is there (and JavaScript's doubles would not carry the offset exactly).
  if (off >= BRIDGE_MAX_FILE_BYTES) { fuse_reply_buf(req, NULL, 0); return; }
  if (fast_read(s, req, size, off, fi)) return;
  bridge_req_t *r = req_new(s, req, LL_READ, ino);
  if (r) { set_fi(r, fi); r->size = (double) size; r->off = (double) off; }
  req_submit(s, req, r);
}

static void ll_write (fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  // Past the largest file (BRIDGE_MAX_FILE_BYTES): EFBIG, as a store's own limit gives. (An O_APPEND
  // write's offset is the kernel's idea of the end; the store's append lands at its own.)
  if (off < 0 || (off_t) size > BRIDGE_MAX_FILE_BYTES - off) { fuse_reply_err(req, EFBIG); return; }
  int kill = write_kills(s, req);
  if (fast_write(s, req, ino, buf, size, off, fi, kill)) return;
  bridge_req_t *r = req_new(s, req, LL_WRITE, ino);
  if (r) {
    set_fi(r, fi);
    r->off = (double) off;
    r->mode = (kill ? LL_WRITE_KILL_SUIDGID : 0) | (write_appends(s, fi) ? LL_WRITE_APPEND : 0);
    if (!copy_data(r, buf, size)) { req_take(r); req_done(r); fuse_reply_err(req, ENOMEM); return; }
  }
  req_submit(s, req, r);
}

static void ll_flush (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (fast_flush(session_of(req), req, fi)) return;
  queue_plain(req, LL_FLUSH, ino, fi);
}

static void ll_release (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  // The kernel has left this file's io mode (page cache or passthrough) already.
  pt_release(session_of(req), ino, fi->fh);
  if (fast_release(session_of(req), req, ino, fi)) return;
  queue_plain(req, LL_RELEASE, ino, fi);
}

static void ll_opendir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  queue_plain(req, LL_OPENDIR, ino, fi);
}

static void ll_releasedir (fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  queue_plain(req, LL_RELEASEDIR, ino, fi);
}

static void ll_fsync (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  if (fast_fsync(s, req, ino, datasync, fi)) return;
  bridge_req_t *r = req_new(s, req, LL_FSYNC, ino);
  if (r) { set_fi(r, fi); r->mode = (uint32_t) datasync; }
  req_submit(s, req, r);
}

static void ll_fsyncdir (fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_FSYNCDIR, ino);
  if (r) { set_fi(r, fi); r->mode = (uint32_t) datasync; }
  req_submit(s, req, r);
}

static void ll_readdir (fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_READDIR, ino);
  if (r) { set_fi(r, fi); r->size = (double) size; r->off = (double) off; }
  req_submit(s, req, r);
}

static void ll_statfs (fuse_req_t req, fuse_ino_t ino) {
  queue_plain(req, LL_STATFS, ino, NULL);
}

static void ll_setxattr (fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_SETXATTR, ino);
  if (r) {
    r->name = dup_str(name);
    r->mode = (uint32_t) flags;
    if (!copy_data(r, value, size)) { req_take(r); req_done(r); fuse_reply_err(req, ENOMEM); return; }
  }
  req_submit(s, req, r);
}

static void ll_getxattr (fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  bridge_session_t *s = session_of(req);
  if (fast_getxattr(s, req, ino, name, size)) return;
  bridge_req_t *r = req_new(s, req, LL_GETXATTR, ino);
  if (r) { r->name = dup_str(name); r->size = (double) size; }
  req_submit(s, req, r);
}

static void ll_listxattr (fuse_req_t req, fuse_ino_t ino, size_t size) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_LISTXATTR, ino);
  if (r) r->size = (double) size;
  req_submit(s, req, r);
}

static void ll_removexattr (fuse_req_t req, fuse_ino_t ino, const char *name) {
  queue_named(req, LL_REMOVEXATTR, ino, name, 0);
}

static void ll_access (fuse_req_t req, fuse_ino_t ino, int mask) {
  bridge_session_t *s = session_of(req);
  bridge_req_t *r = req_new(s, req, LL_ACCESS, ino);
  if (r) r->mode = (uint32_t) mask;
  req_submit(s, req, r);
}

static void ll_create (fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  writeback_flags(s, fi);
  if (FAST_COUNTED(s, fast_new(fs_, req, parent, name, mode, fi))) return;
  bridge_req_t *r = req_new(s, req, LL_CREATE, parent);
  if (r) { set_fi(r, fi); r->name = dup_str(name); r->mode = mode; r->rdev = (uint32_t) fi->flags; }
  req_submit(s, req, r);
}

// With handle_killpriv_v2 the kernel drops no set-ID bits for a fallocate
// either, and flags none: as file_modified() would for a caller without
// CAP_FSETID, they go for any caller but root (the request carries no
// capabilities). Without it, as for a write (write_kills).
static void ll_fallocate (fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  bridge_session_t *s = session_of(req);
  if (offset < 0 || length < 0 || length > BRIDGE_MAX_FILE_BYTES - offset) { fuse_reply_err(req, EFBIG); return; }
  int kill = fuse_req_ctx(req)->uid != 0;
  if (fast_fallocate(s, req, ino, mode, offset, length, fi, kill)) return;
  bridge_req_t *r = req_new(s, req, LL_FALLOCATE, ino);
  if (r) { set_fi(r, fi); r->mode = (uint32_t) mode; r->off = (double) offset; r->size = (double) length; r->rdev = kill ? LL_WRITE_KILL_SUIDGID : 0; }
  req_submit(s, req, r);
}

const struct fuse_lowlevel_ops bridge_ll_ops = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .flush = ll_flush,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .releasedir = ll_releasedir,
  .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .access = ll_access,
  .create = ll_create,
  .fallocate = ll_fallocate,
};
