// replies.c - JavaScript's answers to the kernel, and its notifications.
//
// Every reply* takes a request handle first. Its arguments are checked while
// the request is still pending (a bad argument throws a TypeError and leaves
// the request to be answered properly); then the request is taken out of the
// handle table and answered. A handle that no longer names a pending request
// (answered already, dropped by close(), or never issued) is refused with an
// Error whose code is ERR_FUSE_REQUEST_ANSWERED (requests.c): the kernel never
// gets two answers and nothing is read from freed memory.
#include "bridge.h"
#include "names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <pthread.h>

static int attr_from_array (napi_env env, napi_value arr, struct stat *st) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, arr, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < ATTR_LEN) {
    js_throw_type(env, "attributes must be a Float64Array of constants.attr.LEN");
    return 0;
  }
  double *a = (double *) data;
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t) ((uint64_t) a[ATTR_INO_LO] | ((uint64_t) a[ATTR_INO_HI] << 32));
  st->st_mode = (mode_t) a[ATTR_MODE];
  st->st_nlink = (nlink_t) a[ATTR_NLINK];
  st->st_uid = (uid_t) a[ATTR_UID];
  st->st_gid = (gid_t) a[ATTR_GID];
  st->st_rdev = (dev_t) a[ATTR_RDEV];
  st->st_size = (off_t) a[ATTR_SIZE];
  st->st_blksize = (blksize_t) a[ATTR_BLKSIZE];
  st->st_blocks = (blkcnt_t) a[ATTR_BLOCKS];
  st->st_atim.tv_sec = (time_t) a[ATTR_ATIME_S];
  st->st_atim.tv_nsec = (long) a[ATTR_ATIME_NS];
  st->st_mtim.tv_sec = (time_t) a[ATTR_MTIME_S];
  st->st_mtim.tv_nsec = (long) a[ATTR_MTIME_NS];
  st->st_ctim.tv_sec = (time_t) a[ATTR_CTIME_S];
  st->st_ctim.tv_nsec = (long) a[ATTR_CTIME_NS];
  return 1;
}

// A Float64Array argument of at least min_len numbers (it may be empty when
// min_len is 0): 1 and its data and length, or 0 after throwing a TypeError.
static int float64_arg (napi_env env, napi_value v, size_t min_len, double **out, size_t *len_out, const char *msg) {
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < min_len) {
    js_throw_type(env, msg);
    return 0;
  }
  *out = (double *) data;
  if (len_out != NULL) *len_out = length;
  return 1;
}

// replyErr(req, errno): 0 = success without data; negative or positive errno.
napi_value js_reply_err (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  int32_t err = 0;
  napi_get_value_int32(env, argv[1], &err);
  if (err < 0) err = -err;
  req_take(r);
  fuse_reply_err(r->req, err);
  req_done(r);
  return NULL;
}

// A descriptor for the node an entry reply names, when the FUSE thread did not
// resolve it (fastpath.c, fast_entry_fd): the object `name` names in the
// parent (link: the new name in the new parent), or -1.
static int entry_fd (bridge_session_t *s, const bridge_req_t *r, fuse_ino_t nodeid, const struct stat *st) {
  if (r->op == LL_LINK) return fast_entry_fd(s, r->node_gen, nodeid, r->ino2, r->name2, st);
  if (r->op == LL_LOOKUP || r->op == LL_CREATE || r->op == LL_MKNOD || r->op == LL_MKDIR || r->op == LL_SYMLINK) {
    return fast_entry_fd(s, r->node_gen, nodeid, r->ino, r->name, st);
  }
  return -1;
}

// replyEntry(req, nodeid, attrs, attrTimeout, entryTimeout); nodeid 0 caches a negative entry
napi_value js_reply_entry (napi_env env, napi_callback_info info) {
  JS_ARGS(5)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = (fuse_ino_t) js_dbl(env, argv[1]);
  if (e.ino != 0 && !attr_from_array(env, argv[2], &e.attr)) return NULL;
  e.attr_timeout = js_dbl(env, argv[3]);
  e.entry_timeout = js_dbl(env, argv[4]);
  bridge_session_t *s = r->s;
  req_take(r);
  // A descriptor taken before resetNodes belongs to the store that was swapped out.
  if (r->pre_fd >= 0 && r->node_gen != __atomic_load_n(&s->node_gen, __ATOMIC_SEQ_CST)) { close(r->pre_fd); r->pre_fd = -1; }
  // ... and one of another object than JavaScript answered with (the name
  // was replaced meanwhile, or a restore materialised it) is not this node's.
  if (r->pre_fd >= 0 && e.ino != 0 && e.attr.st_ino != r->pre_st.st_ino) { close(r->pre_fd); r->pre_fd = -1; }
  // The descriptor of a lookup resolved on the FUSE thread becomes the node's;
  // for a node JavaScript made or resolved itself, one opened now (entry_fd).
  if (e.ino != 0) {
    int fd = r->pre_fd >= 0 ? r->pre_fd : entry_fd(s, r, e.ino, &e.attr);
    node_learned(s, e.ino, fd, fd >= 0 && S_ISDIR(r->pre_fd >= 0 ? r->pre_st.st_mode : e.attr.st_mode));
  } else if (r->pre_fd >= 0) {
    close(r->pre_fd);
  }
  r->pre_fd = -1;
  if (fuse_reply_entry(r->req, &e) == -ENOENT && e.ino != 0) node_forget(s, e.ino, 1);
  req_done(r);
  return NULL;
}

// replyCreate(req, nodeid, attrs, attrTimeout, entryTimeout, handle, directFd, openFlags)
// -> false when the creating process went away (nobody will release the handle)
napi_value js_reply_create (napi_env env, napi_callback_info info) {
  JS_ARGS(8)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = (fuse_ino_t) js_dbl(env, argv[1]);
  if (!attr_from_array(env, argv[2], &e.attr)) return NULL;
  e.attr_timeout = js_dbl(env, argv[3]);
  e.entry_timeout = js_dbl(env, argv[4]);
  uint32_t handle = 0, flags = 0;
  int32_t direct_fd = -1;
  napi_get_value_uint32(env, argv[5], &handle);
  napi_get_value_int32(env, argv[6], &direct_fd);
  napi_get_value_uint32(env, argv[7], &flags);
  bridge_session_t *s = r->s;
  req_take(r);
  fill_open(&r->fi, handle, direct_fd, flags);
  node_learned(s, e.ino, entry_fd(s, r, e.ino, &e.attr), 0);
  // Counted for passthrough (passthrough.c); an existing file may join one, and with
  // the passthrough_writes option the creator's handle may pass through itself.
  int32_t backing = 0;
  int pt = pt_open_decide(s, e.ino, direct_fd, passthrough_eligible(s, r->fi.flags, r->fi.fh), &backing);
  int rc = pt != PT_NONE ? pt_reply_open(r->req, &e, &r->fi, pt, backing) : fuse_reply_create(r->req, &e, &r->fi);
  if (rc == -ENOENT) { pt_open_undo(s, e.ino, pt); node_forget(s, e.ino, 1); }
  req_done(r);
  return js_bool(env, rc != -ENOENT);
}

// replyOpen(req, handle, directFd, openFlags) -> false when the opener went away
napi_value js_reply_open (napi_env env, napi_callback_info info) {
  JS_ARGS(4)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  uint32_t handle = 0, flags = 0;
  int32_t direct_fd = -1;
  napi_get_value_uint32(env, argv[1], &handle);
  napi_get_value_int32(env, argv[2], &direct_fd);
  napi_get_value_uint32(env, argv[3], &flags);
  req_take(r);
  fill_open(&r->fi, handle, direct_fd, flags);
  int rc;
  if (r->op == LL_OPEN) {
    // Passthrough (passthrough.c): decided for every open of a file.
    int32_t backing = 0;
    int pt = pt_open_decide(r->s, r->ino, direct_fd, passthrough_eligible(r->s, r->fi.flags, r->fi.fh), &backing);
    rc = pt != PT_NONE ? pt_reply_open(r->req, NULL, &r->fi, pt, backing) : fuse_reply_open(r->req, &r->fi);
    if (rc == -ENOENT) pt_open_undo(r->s, r->ino, pt);
  } else {
    rc = r->op == LL_OPENDIR ? fuse_reply_open(r->req, &r->fi) : fuse_reply_err(r->req, EIO);
  }
  req_done(r);
  return js_bool(env, rc != -ENOENT);
}

// replyAttr(req, attrs, timeout)
napi_value js_reply_attr (napi_env env, napi_callback_info info) {
  JS_ARGS(3)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  struct stat st;
  if (!attr_from_array(env, argv[1], &st)) return NULL;
  req_take(r);
  fuse_reply_attr(r->req, &st, js_dbl(env, argv[2]));
  req_done(r);
  return NULL;
}

// replyReadlink(req, target)
napi_value js_reply_readlink (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  size_t len = 0;
  char *target = NULL;
  napi_status st = sn_js_name_bytes(env, argv[1], &target, &len);
  if (st == napi_string_expected) { js_throw_type(env, "target must be a string"); return NULL; }
  req_take(r);
  if (st != napi_ok) { fuse_reply_err(r->req, ENOMEM); req_done(r); return NULL; }
  fuse_reply_readlink(r->req, target);
  free(target);
  req_done(r);
  return NULL;
}

// replyWrite(req, count)
napi_value js_reply_write (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  req_take(r);
  fuse_reply_write(r->req, (size_t) js_dbl(env, argv[1]));
  req_done(r);
  return NULL;
}

// replyBuf(req, buffer, length)
napi_value js_reply_buf (napi_env env, napi_callback_info info) {
  JS_ARGS(3)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) { js_throw_type(env, "buffer"); return NULL; }
  size_t n = (size_t) js_dbl(env, argv[2]);
  if (n > len) n = len;
  req_take(r);
  fuse_reply_buf(r->req, (const char *) data, n);
  req_done(r);
  return NULL;
}

// replyXattrSize(req, size)
napi_value js_reply_xattr_size (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  req_take(r);
  fuse_reply_xattr(r->req, (size_t) js_dbl(env, argv[1]));
  req_done(r);
  return NULL;
}

// replyStatfs(req, Float64Array laid out as constants.statfs)
napi_value js_reply_statfs (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  double *a = NULL;
  if (!float64_arg(env, argv[1], STATFS_LEN, &a, NULL, "statfs must be a Float64Array of constants.statfs.LEN")) return NULL;
  struct statvfs sv;
  memset(&sv, 0, sizeof(sv));
  sv.f_bsize = (unsigned long) a[STATFS_BSIZE];
  sv.f_frsize = (unsigned long) a[STATFS_FRSIZE];
  sv.f_blocks = (fsblkcnt_t) a[STATFS_BLOCKS];
  sv.f_bfree = (fsblkcnt_t) a[STATFS_BFREE];
  sv.f_bavail = (fsblkcnt_t) a[STATFS_BAVAIL];
  sv.f_files = (fsfilcnt_t) a[STATFS_FILES];
  sv.f_ffree = (fsfilcnt_t) a[STATFS_FFREE];
  sv.f_favail = (fsfilcnt_t) a[STATFS_FAVAIL];
  sv.f_namemax = (unsigned long) a[STATFS_NAMEMAX];
  req_take(r);
  fuse_reply_statfs(r->req, &sv);
  req_done(r);
  return NULL;
}

// replyDir(req, names: string[], entries: Float64Array (constants.dirent.LEN per name), firstOffset)
// Adds entries until the kernel's buffer is full; entry i gets offset firstOffset + i + 1.
napi_value js_reply_dir (napi_env env, napi_callback_info info) {
  JS_ARGS(4)
  bridge_req_t *r = req_peek(env, argv[0]);
  if (r == NULL) return NULL;
  uint32_t count = 0;
  if (napi_get_array_length(env, argv[1], &count) != napi_ok) { js_throw_type(env, "names must be an array"); return NULL; }
  size_t length = 0;
  double *a = NULL;
  if (!float64_arg(env, argv[2], 0, &a, &length, "entries must be a Float64Array of constants.dirent.LEN per name")) return NULL;
  if (length < (size_t) count * DIRENT_LEN) { js_throw_type(env, "entries must be a Float64Array of constants.dirent.LEN per name"); return NULL; }
  double first = js_dbl(env, argv[3]);
  size_t cap = (size_t) r->size;
  char *buf = malloc(cap > 0 ? cap : 1);
  req_take(r);
  if (buf == NULL) { fuse_reply_err(r->req, ENOMEM); req_done(r); return NULL; }
  size_t used = 0;
  char *name = NULL;
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    size_t nlen = 0;
    napi_get_element(env, argv[1], i, &v);
    free(name);
    name = NULL;
    if (sn_js_name_bytes(env, v, &name, &nlen) != napi_ok) continue;
    const double *d = a + (size_t) i * DIRENT_LEN;
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = (ino_t) ((uint64_t) d[DIRENT_INO_LO] | ((uint64_t) d[DIRENT_INO_HI] << 32));
    st.st_mode = (mode_t) d[DIRENT_MODE];
    size_t need = fuse_add_direntry(r->req, buf + used, cap - used, name, &st, (off_t) (first + i + 1));
    if (need > cap - used) break;
    used += need;
  }
  free(name);
  fuse_reply_buf(r->req, buf, used);
  free(buf);
  req_done(r);
  return NULL;
}

// noCapabilities(nodeid, known): note (true) or forget (false) that an object
// has no security.capability attribute (fastpath.c answers the kernel's probe).
napi_value js_no_capabilities (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  uint64_t ino = (uint64_t) js_dbl(env, argv[0]);
  bool known = false;
  napi_get_value_bool(env, argv[1], &known);
  nocaps_set(ino, known);
  return NULL;
}

// sizeChanging(nodeid, delta): JavaScript starts (+1) or has answered (-1) a
// size change of the node: getattr goes to JavaScript meanwhile (fastpath.c, sizing).
napi_value js_size_changing (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  uint64_t ino = (uint64_t) js_dbl(env, argv[0]);
  int32_t delta = 0;
  napi_get_value_int32(env, argv[1], &delta);
  sizing_add(ino, delta);
  return NULL;
}

// nodeDescriptor(session, nodeid) -> a descriptor of the node's object (a
// close-on-exec duplicate of the table's O_PATH one, the caller's to close), or
// -1 when the table holds none (evicted, or the fast paths are off). What an
// open through JavaScript of a node whose last name went reopens (through
// /proc/self/fd/N): the kernel looked it up before a rename over it or an
// unlink, and still holds it, as the table's descriptor keeps the store's.
napi_value js_node_descriptor (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed || !nodes_ready(s)) return js_num(env, -1);
  bridge_node_t *n = node_acquire(s, (uint64_t) js_dbl(env, argv[1]));
  if (n == NULL) return js_num(env, -1);
  int fd = fcntl(n->fd, F_DUPFD_CLOEXEC, 0);
  node_release(s, n);
  return js_num(env, fd);
}

// settled(session, nodeid, known) -> whether the node has a descriptor: JavaScript
// vouches (true) that fstat of the node's descriptor is what a program must
// see, so that the FUSE thread may answer it during a restore (settled.c), or
// revokes that (false) before anything changes it. A node without a
// descriptor keeps no vouch.
napi_value js_settled (napi_env env, napi_callback_info info) {
  return js_node_flag(env, info, node_set_settled);
}

// notifyInvalInode(session, nodeid, offset, length): drop the kernel's cached
// attributes (and data in the range; length 0 = none, -1 = all) of an inode.
napi_value js_notify_inval_inode (napi_env env, napi_callback_info info) {
  JS_ARGS(4)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed) return js_num(env, -ENOTCONN);
  int rc = fuse_lowlevel_notify_inval_inode(s->se, (fuse_ino_t) js_dbl(env, argv[1]), (off_t) js_dbl(env, argv[2]), (off_t) js_dbl(env, argv[3]));
  return js_num(env, rc);
}

// The same notices sent from a thread of their own (notifyInvalLater): the
// kernel takes the inode's or the directory's lock for them, which a request
// waiting for JavaScript may hold, so JavaScript must never wait for them
// (changes made behind the kernel's back: rollback).
typedef struct {
  struct fuse_session *se;
  fuse_ino_t ino;
  off_t off, len;
  char *name;              // entry notice: the name; NULL for an inode notice
} later_notice_t;

static void *notice_thread (void *arg) {
  later_notice_t *n = arg;
  if (n->name != NULL) fuse_lowlevel_notify_inval_entry(n->se, n->ino, n->name, strlen(n->name));
  else fuse_lowlevel_notify_inval_inode(n->se, n->ino, n->off, n->len);
  free(n->name);
  free(n);
  return NULL;
}

// notifyInvalLater(session, nodeid, offset, length[, name]): as notifyInvalInode
// (or, with a name, notifyInvalEntry with nodeid the parent), from a detached
// thread; returns 0, or -errno when the thread could not start.
napi_value js_notify_inval_later (napi_env env, napi_callback_info info) {
  JS_ARGS(5)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed) return js_num(env, -ENOTCONN);
  later_notice_t *n = calloc(1, sizeof(*n));
  if (n == NULL) return js_num(env, -ENOMEM);
  n->se = s->se;
  n->ino = (fuse_ino_t) js_dbl(env, argv[1]);
  n->off = (off_t) js_dbl(env, argv[2]);
  n->len = (off_t) js_dbl(env, argv[3]);
  napi_valuetype t = napi_undefined;
  if (argc >= 5) napi_typeof(env, argv[4], &t);
  if (t == napi_string) {
    size_t len = 0;
    if (sn_js_name_bytes(env, argv[4], &n->name, &len) != napi_ok) n->name = NULL;
  }
  int rc = start_detached(notice_thread, n);
  if (rc != 0) { free(n->name); free(n); return js_num(env, -rc); }
  return js_num(env, 0);
}

// notifyInvalEntry(session, parentNodeid, name): drop a cached name.
napi_value js_notify_inval_entry (napi_env env, napi_callback_info info) {
  JS_ARGS(3)
  bridge_session_t *s = js_session(env, argv[0]);
  char *name = NULL;
  size_t len = 0;
  if (s == NULL) return NULL;
  if (sn_js_name_bytes(env, argv[2], &name, &len) != napi_ok) { js_throw_type(env, "name must be a string"); return NULL; }
  if (s->closed) { free(name); return js_num(env, -ENOTCONN); }
  int rc = fuse_lowlevel_notify_inval_entry(s->se, (fuse_ino_t) js_dbl(env, argv[1]), name, len);
  free(name);
  return js_num(env, rc);
}

// notifyIncEpoch(session) -> 0 or -errno: every name the kernel has cached for
// this mount (positive and negative) must be looked up again before its next
// use (FUSE_NOTIFY_INC_EPOCH, Linux 6.16+; -ENOSYS/-EINVAL on older kernels).
// Unlike notifyInvalEntry it takes no directory lock, so it cannot wait for a
// request the caller is holding (swap).
napi_value js_notify_inc_epoch (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed) return js_num(env, -ENOTCONN);
  struct { uint32_t len; int32_t error; uint64_t unique; } h; // struct fuse_out_header
  memset(&h, 0, sizeof(h));
  h.len = sizeof(h);
  h.error = 8; // FUSE_NOTIFY_INC_EPOCH (include/uapi/linux/fuse.h 7.44)
  h.unique = 0;
  ssize_t n = write(fuse_session_fd(s->se), &h, sizeof(h));
  return js_num(env, n == (ssize_t) sizeof(h) ? 0 : -errno);
}
