// fastpath.c - the requests the FUSE thread answers itself.
//
// Every request that reaches JavaScript costs two cross-thread wake-ups (about
// 100-150 us on a small VM), far more than the system call it stands for. So
// the FUSE thread answers the commonest requests itself (the model of
// libfuse's passthrough_hp):
//
// - Direct handles (any time JavaScript's replyOpen/replyCreate gave a
//   descriptor with LL_OPEN_DIRECT_READ/WRITE): read with splice, write with
//   pwrite, getattr with fstat, fsync, fallocate and flush of that descriptor.
// - LL_FAST_READ (any store that is not being restored), relative to the
//   node table's O_PATH descriptors (nodes.c): getattr from the node's
//   descriptor; lookup with openat(parent) + fstat, answering "no such name"
//   itself and handing a found name to JavaScript already resolved (no file
//   system call there, JavaScript only picks the node id). A node JavaScript
//   made (create, mkdir, ... on a journalled store) gets its descriptor when
//   JavaScript answers with its entry (fast_entry_fd).
// - LL_FAST_SETTLED (a store being restored, READ off): the same getattr and
//   "no such name" for nodes JavaScript vouched for as settled (settled.c).
// - LL_FAST_WRITE (additionally, a store nobody journals): setattr, create,
//   mkdir, open of an existing file, and the handles create and open make
//   here (JavaScript handle 0): release, fsync, fallocate; FLUSH answered
//   ENOSYS once, after which the kernel sends no more.
// - LL_FAST_JOURNAL (a journalled store in async mode): writes of handles
//   JavaScript opened with LL_OPEN_JOURNAL_WRITE, applied here and handed to
//   JavaScript as `written` notices ahead of the reply (journal.c).
// - LL_FAST_TRACK (checkpoints): a direct write only when the clearance
//   table (track.c) says every block it touches is saved; fallocate never.
//
// JavaScript stays the authority on names and node ids: node ids come from one
// counter (allocNodeid), and a node made here is announced to JavaScript
// (LL_NEWNODE) ahead of the next record it gets, so every later request about
// it that reaches JavaScript finds it known (one FIFO queue). Errors answered
// here are reported to JavaScript (LL_FAILED) and logged by its rules.
#include "bridge.h"
#include "posix_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

// ---- helpers -------------------------------------------------------------------------

// An error answered on this thread: JavaScript logs it by the same rules as its
// own (errno in mode, op in rdev). Errors are rare enough to wake it for.
static void report_failure (bridge_session_t *s, uint32_t op, fuse_ino_t ino, const char *name, int err) {
  bridge_req_t *r = req_new(s, NULL, LL_FAILED, ino);
  if (r == NULL) return;
  r->name = name == NULL ? NULL : strdup(name);
  r->mode = (uint32_t) err;
  r->rdev = op;
  req_notify(s, r);
}

// Names the FUSE thread never resolves itself: JavaScript rejects or hides them.
static int name_is_special (fuse_ino_t parent, const char *name) {
  if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) return 1;
  if (strchr(name, '/') != NULL) return 1;
  return parent == FUSE_ROOT_ID && strcmp(name, LL_RESERVED_NAME) == 0;
}

// The store root holds strata's private directory, which the mount never
// shows: its link count is one less than the store's (as the core answers).
static void hide_private_dir (fuse_ino_t ino, struct stat *st) {
  if (ino == FUSE_ROOT_ID && S_ISDIR(st->st_mode) && st->st_nlink > 2) st->st_nlink--;
}

static void proc_path (char *buf, size_t len, int fd) {
  snprintf(buf, len, "/proc/self/fd/%d", fd);
}

int fd_has_xattr (int fd, const char *name) {
  char proc[64];
  proc_path(proc, sizeof(proc), fd);
  return getxattr(proc, name, NULL, 0) > 0;
}

static int direct_fd (uint64_t fh) {
  return (int) ((fh >> 32) & LL_FH_FD_MASK) - 1;
}

static int fh_is_direct (const struct fuse_file_info *fi) {
  return fi != NULL && (fi->fh & (LL_FH_DIRECT_READ | LL_FH_DIRECT_WRITE)) != 0;
}

// A handle the bridge owns (made by a create or open on this thread):
// JavaScript handle 0 with a direct descriptor.
static int fh_is_bridge_owned (uint64_t fh) {
  return (fh & LL_HANDLE_MASK) == 0 && ((fh >> 32) & LL_FH_FD_MASK) != 0;
}

void fill_open (struct fuse_file_info *fi, uint32_t handle, int32_t fd, uint32_t flags) {
  uint64_t fh = handle;
  if (fd >= 0) {
    fh |= ((uint64_t) (fd + 1) & LL_FH_FD_MASK) << 32;
    if (flags & LL_OPEN_DIRECT_READ) fh |= LL_FH_DIRECT_READ;
    if (flags & LL_OPEN_DIRECT_WRITE) fh |= LL_FH_DIRECT_WRITE;
    if (flags & LL_OPEN_JOURNAL_WRITE) fh |= LL_FH_JOURNAL_WRITE;
  }
  fi->fh = fh;
  fi->keep_cache = (flags & LL_OPEN_KEEP_CACHE) ? 1 : 0;
  fi->direct_io = (flags & LL_OPEN_DIRECT_IO) ? 1 : 0;
}

// ---- set-ID bits (handle_killpriv_v2) -------------------------------------------------------

// Whether the request's caller is in group `gid`: its fsgid, or one of its
// supplementary groups (libfuse reads them from /proc/PID/task/TID/status). A
// caller whose groups cannot be read counts as not in it (the bit goes: the
// safe side).
static int caller_in_group (fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return 1;
  gid_t small[64];
  gid_t *list = small;
  int n = fuse_req_getgroups(req, 64, small);
  if (n > 64) {
    list = malloc(sizeof(gid_t) * (size_t) n);
    if (list == NULL) return 0;
    n = fuse_req_getgroups(req, n, list);
  }
  int in = 0;
  for (int i = 0; i < n && !in; i++) in = list[i] == gid;
  if (list != small) free(list);
  return in;
}

// The set-ID bits a change by the request's caller (without CAP_FSETID)
// drops from `st` (posix_rules.h, the core's rule too).
static mode_t setid_drop (fuse_req_t req, const struct stat *st) {
  int in_group = sr_setid_needs_groups(st->st_mode) ? caller_in_group(req, st->st_gid) : 1;
  return sr_setid_drop(st->st_mode, in_group);
}

// Drops them from the file behind descriptor fd (a real one, not O_PATH) of
// node ino on this thread: 0 when done or nothing to drop, -1 when JavaScript
// must (only LL_FAST_WRITE lets this thread change attributes: nothing
// journals or tracks them then), else an errno. The kernel keeps the mode it
// has cached after such a write (it invalidates only size and times), so a
// drop also invalidates the node's attributes (offset -1: no page and no
// inode lock is taken, so this is safe while the writer holds the inode).
static int kill_suidgid (bridge_session_t *s, fuse_req_t req, int fd, fuse_ino_t ino) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  mode_t drop = setid_drop(req, &st);
  if (drop == 0) return 0;
  if (!fast_on(s, LL_FAST_WRITE)) return -1;
  if (fchmod(fd, st.st_mode & 07777 & ~drop) != 0) return errno;
  fuse_lowlevel_notify_inval_inode(s->se, ino, -1, 0);
  return 0;
}

// ---- security.capability ----------------------------------------------------------------

// The kernel asks for security.capability before every write(2) (to drop file
// capabilities). Objects JavaScript has seen answer ENODATA for it are noted
// here, so later asks are answered on the FUSE thread. Bounded: one slot per
// (node id mod size), a collision just forgets the older node. Node ids are
// never reused within a mount, so a slot can never vouch for another object.
// JavaScript clears a node's slot before any change of that attribute
// (setxattr, removexattr, or writing xattrs into the store behind the kernel).
#define NOCAPS_SLOTS 65536
static uint64_t nocaps[NOCAPS_SLOTS];

void nocaps_set (uint64_t nodeid, int known) {
  uint64_t *slot = &nocaps[nodeid % NOCAPS_SLOTS];
  if (known) {
    __atomic_store_n(slot, nodeid, __ATOMIC_RELEASE);
  } else {
    uint64_t expected = nodeid;
    __atomic_compare_exchange_n(slot, &expected, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  }
}

// Size changes JavaScript is answering (writes, fallocates, truncations), per
// slot of node ids (node id mod size; a collision only sends more getattrs to
// JavaScript). The store has such a change before the kernel has its reply,
// and with it the new size; a getattr meanwhile would tell another program
// that size while the kernel's file still ends before it (FUSE keeps
// FUSE_I_SIZE_UNSTABLE out of the inode, not out of stat's answer): a program
// that maps the file with it gets SIGBUS past the kernel's end, and its
// stores past that end in the last page are cropped from the write-back. So
// while a slot counts one, getattr goes to JavaScript, which answers after
// that change's reply (adapter.ts, sizeChanges). The count drops just before
// the reply (so the writer's own next getattr stays here): a getattr in
// those microseconds is the window left.
#define SIZING_SLOTS 4096
static uint32_t sizing[SIZING_SLOTS];

void sizing_add (uint64_t nodeid, int delta) {
  __atomic_add_fetch(&sizing[nodeid % SIZING_SLOTS], (uint32_t) delta, __ATOMIC_ACQ_REL);
}

static int sizing_now (uint64_t nodeid) {
  return __atomic_load_n(&sizing[nodeid % SIZING_SLOTS], __ATOMIC_ACQUIRE) != 0;
}

// A POSIX ACL of a node (LL_FAST_READ): with FUSE_POSIX_ACL the kernel asks
// for it before it checks a permission of anyone but the owner, once per
// inode it loads, so a user reading other users' files cost one JavaScript
// round trip per file (twice the time of `cat` of 2,000 small files). Read
// here from the node's descriptor; a store without ACLs has none (ENODATA,
// as the core answers). Not a symlink's (none; left to JavaScript).
static int fast_acl (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (!fast_on(s, LL_FAST_READ)) return 0;
  bridge_node_t *n = node_acquire(s, ino);
  if (n == NULL) return 0;
  struct stat st;
  if (fstat(n->fd, &st) != 0 || S_ISLNK(st.st_mode)) {
    node_release(s, n);
    return 0;
  }
  char proc[64];
  proc_path(proc, sizeof(proc), n->fd);
  char *buf = size > 0 ? malloc(size) : NULL;
  if (size > 0 && buf == NULL) {
    node_release(s, n);
    return 0;
  }
  ssize_t len = getxattr(proc, name, buf, size);
  int err = len < 0 ? errno : 0;
  node_release(s, n);
  if (err == EOPNOTSUPP || err == ENOTSUP) err = ENODATA;
  if (err != 0) fuse_reply_err(req, err);
  else if (size == 0) fuse_reply_xattr(req, (size_t) len);
  else fuse_reply_buf(req, buf, (size_t) len);
  free(buf);
  fast_count(s, LL_GETXATTR);
  return 1;
}

int fast_getxattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (strcmp(name, "system.posix_acl_access") == 0 || strcmp(name, "system.posix_acl_default") == 0) {
    return fast_acl(s, req, ino, name, size);
  }
  if (strcmp(name, LL_CAPS_NAME) != 0 || __atomic_load_n(&nocaps[ino % NOCAPS_SLOTS], __ATOMIC_ACQUIRE) != (uint64_t) ino) return 0;
  fuse_reply_err(req, ENODATA);
  fast_count(s, LL_GETXATTR);
  return 1;
}

// ---- names and attributes --------------------------------------------------------------

// lookup: "no such name" is answered here (1); a found name comes back in
// *fd/*st for JavaScript to give a node id (0, *fd >= 0); else *fd is -1.
int fast_lookup (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, int *fd_out, struct stat *st) {
  *fd_out = -1;
  if (name_is_special(parent, name)) return 0;
  if (!fast_on(s, LL_FAST_READ)) return fast_settled_lookup(s, req, parent, name, fd_out, st);
  bridge_node_t *p = node_acquire(s, parent);
  if (p == NULL) return 0;
  int fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  node_release(s, p);
  if (err == ENOENT) {
    fast_reply_negative(s, req);
    return 1;
  }
  if (fd >= 0 && fstat(fd, st) != 0) { close(fd); fd = -1; }
  *fd_out = fd;
  return 0;
}

int fast_getattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (sizing_now(ino)) return 0;
  int fd = -1;
  bridge_node_t *n = NULL;
  if (fh_is_direct(fi)) {
    // Through a direct handle: fstat of the backing descriptor.
    fd = direct_fd(fi->fh);
  } else if (fast_on(s, LL_FAST_READ)) {
    // Through the node's own descriptor (it also serves an unlinked object).
    n = node_acquire(s, ino);
    if (n == NULL) return 0;
    fd = n->fd;
  } else {
    // During a restore: a node JavaScript vouched for (settled.c).
    return fast_settled_getattr(s, req, ino);
  }
  struct stat st;
  int err = fstat(fd, &st) == 0 ? 0 : errno;
  node_release(s, n);
  // A size change began meanwhile: the size read may be one the kernel does not have yet.
  if (sizing_now(ino)) return 0;
  hide_private_dir(ino, &st);
  if (err == 0) fuse_reply_attr(req, &st, s->attr_timeout);
  else { fuse_reply_err(req, err); report_failure(s, LL_GETATTR, ino, NULL, err); }
  fast_count(s, LL_GETATTR);
  return 1;
}

// setattr on this thread, in the core's order (mode, owner, size, times), each
// through the open descriptor when the kernel gave one, else through the node's
// O_PATH descriptor (/proc/self/fd/N for the calls that do not take one). A
// symbolic link goes to JavaScript.
int fast_setattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  // A journalled store: applied here and journalled by JavaScript (journal.c), or a request.
  if (!fast_on(s, LL_FAST_WRITE)) return journal_setattr(s, req, ino, attr, to_set);
  int fd = fh_is_direct(fi) ? direct_fd(fi->fh) : -1;
  bridge_node_t *n = fd < 0 ? node_acquire(s, ino) : NULL;
  if (fd < 0 && n == NULL) return 0;
  int pfd = n != NULL ? n->fd : -1;
  char proc[64];
  struct stat st;
  int err = 0;
  if (fd < 0) {
    if (fstat(pfd, &st) != 0) err = errno;
    else if (S_ISLNK(st.st_mode)) { node_release(s, n); return 0; }
    proc_path(proc, sizeof(proc), pfd);
  }
  if (err == 0 && (to_set & FUSE_SET_ATTR_MODE)) {
    mode_t m = attr->st_mode & 07777;
    if ((fd >= 0 ? fchmod(fd, m) : chmod(proc, m)) != 0) err = errno;
  }
  if (err == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t) -1;
    gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t) -1;
    if ((fd >= 0 ? fchown(fd, u, g) : fchownat(pfd, "", u, g, AT_EMPTY_PATH)) != 0) err = errno;
  }
  if (err == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
    if ((fd >= 0 ? ftruncate(fd, attr->st_size) : truncate(proc, attr->st_size)) != 0) err = errno;
  }
  if (err == 0 && (to_set & LL_SETATTR_KILL_SUIDGID)) {
    // A truncation by a caller without CAP_FSETID (handle_killpriv_v2).
    if (fstat(fd >= 0 ? fd : pfd, &st) != 0) err = errno;
    mode_t drop = err == 0 ? setid_drop(req, &st) : 0;
    if (drop != 0 && (fd >= 0 ? fchmod(fd, st.st_mode & 07777 & ~drop) : chmod(proc, st.st_mode & 07777 & ~drop)) != 0) err = errno;
  }
  struct timespec ts[2];
  if (err == 0 && setattr_times(attr, to_set, ts)) {
    if ((fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, proc, ts, 0)) != 0) err = errno;
  }
  if (err == 0 && fstat(fd >= 0 ? fd : pfd, &st) != 0) err = errno;
  node_release(s, n);
  if (err != 0) { fuse_reply_err(req, err); report_failure(s, LL_SETATTR, ino, NULL, err); }
  else { hide_private_dir(ino, &st); fuse_reply_attr(req, &st, s->attr_timeout); }
  fast_count(s, LL_SETATTR);
  return 1;
}

// ---- entries JavaScript answered --------------------------------------------------------

// A descriptor for a node JavaScript answers with an entry (lookup, create,
// mknod, mkdir, symlink, link) that the FUSE thread did not resolve itself:
// without one every later getattr of the node, and every lookup in it when it
// is a directory, would go to JavaScript too (on a journalled store, where
// every create does, about a quarter of an untar's requests). Runs in the
// reply, on the JavaScript thread: openat(O_PATH) of a name just made and an
// fstat, both answered from the kernel's dentry and inode caches.
//
// It makes the node what a lookup resolved on the FUSE thread makes it, and
// nothing more (what the FUSE thread may answer from a descriptor is still
// decided by the fast-path bits and, during a restore, by JavaScript's
// vouches); and only when the descriptor is surely of the object JavaScript
// answered with:
// - the fast paths are on (off: no node table, or a swap holds requests);
// - no resetNodes since the request came in (`gen`: JavaScript's object was
//   made in the store of then; resetNodes runs on this thread too, so none
//   can come between this check and the filing);
// - the node has no descriptor yet, the parent has one, the name is one the
//   FUSE thread resolves;
// - the object found there has the store inode number and file type of
//   JavaScript's answer (inode numbers are unique among the live objects of
//   the store's file system; and the kernel holds the parent's lock across a
//   create, mkdir, mknod, symlink and link, so no program renamed the name
//   meanwhile).
// Returns the descriptor, or -1.
int fast_entry_fd (bridge_session_t *s, uint64_t gen, fuse_ino_t nodeid, fuse_ino_t parent, const char *name, const struct stat *st) {
  if (__atomic_load_n(&s->fast, __ATOMIC_SEQ_CST) == 0 || name == NULL || name_is_special(parent, name)) return -1;
  if (gen != __atomic_load_n(&s->node_gen, __ATOMIC_SEQ_CST)) return -1;
  bridge_node_t *known = node_acquire(s, nodeid);
  if (known != NULL) { node_release(s, known); return -1; }
  bridge_node_t *p = node_acquire(s, parent);
  if (p == NULL) return -1;
  int fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  node_release(s, p);
  if (fd < 0) return -1;
  struct stat found;
  if (fstat(fd, &found) != 0 || found.st_ino != st->st_ino || (found.st_mode & S_IFMT) != (st->st_mode & S_IFMT)) {
    close(fd);
    return -1;
  }
  return fd;
}

// ---- new objects ------------------------------------------------------------------------

// Ownership of a new object (posix_rules.h, the core's own() too): the
// caller's uid and gid, except that the group of a set-group-ID parent stays
// (the kernel gave it).
static int fast_own (bridge_session_t *s, const struct fuse_ctx *ctx, int parent_fd, int fd, int path_fd) {
  if (!sr_owner_needs_parent(ctx->uid, ctx->gid, s->daemon_uid, s->daemon_gid)) return 0;
  struct stat pst;
  if (fstat(parent_fd, &pst) != 0) return errno;
  uid_t uid;
  gid_t gid;
  if (!sr_new_owner(ctx->uid, ctx->gid, pst.st_mode, s->daemon_uid, s->daemon_gid, &uid, &gid)) return 0;
  int rc = fd >= 0 ? fchown(fd, uid, gid) : fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  return rc == 0 ? 0 : errno;
}

// Tells JavaScript of a node made on this thread. Waking the JavaScript thread
// for each would cost more than the create itself, so the node waits in a list
// that goes ahead of the next record JavaScript gets (req_call_js), with a
// nudge every ANNOUNCE_BATCH nodes so the list stays short.
#define ANNOUNCE_BATCH 256
static int announce_node (bridge_session_t *s, fuse_ino_t parent, const char *name, uint64_t nodeid, const struct stat *st) {
  bridge_req_t *r = req_new(s, NULL, LL_NEWNODE, parent);
  if (r == NULL) return 0;
  r->name = strdup(name);
  r->ino2 = nodeid;
  r->pre_st = *st;
  r->has_pre = 1;
  if (r->name == NULL) { req_free(r); return 0; }
  pthread_mutex_lock(&s->nodes_lock);
  if (s->announced_tail != NULL) s->announced_tail->next = r;
  else s->announced_head = r;
  s->announced_tail = r;
  size_t n = ++s->announced;
  pthread_mutex_unlock(&s->nodes_lock);
  if (n % ANNOUNCE_BATCH == 0) req_notify(s, req_new(s, NULL, LL_NEWNODE, 0));
  return 1;
}

// create (fi != NULL) or mkdir on this thread.
int fast_new (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  if (!fast_on(s, LL_FAST_WRITE) || name_is_special(parent, name)) return 0;
  bridge_node_t *p = node_acquire(s, parent);
  if (p == NULL) return 0;
  // POSIX ACLs on: the caller's umask is ours to apply (posix_rules.h).
  mode_t um = s->posix_acl_on ? (fuse_req_ctx(req)->umask & 0777) : 0;
  if (um != 0) mode = sr_creation_mode(mode, um, fd_has_xattr(p->fd, "system.posix_acl_default"));
  int fd = -1, path_fd = -1, err = 0;
  if (fi != NULL) {
    int flags = sr_store_open_flags(fi->flags & ~(O_NOCTTY | O_DIRECT)) | O_CREAT | O_NOFOLLOW | O_CLOEXEC;
    fd = openat(p->fd, name, flags, mode & 07777);
    if (fd < 0) err = errno;
  } else if (mkdirat(p->fd, name, mode & 07777) != 0) {
    err = errno;
  }
  if (err == 0) {
    path_fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (path_fd < 0) err = errno;
  }
  if (err == 0) err = fast_own(s, fuse_req_ctx(req), p->fd, fd, path_fd);
  node_release(s, p);
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  if (err == 0 && fstat(fd >= 0 ? fd : path_fd, &e.attr) != 0) err = errno;
  uint64_t nodeid = 0;
  if (err == 0) {
    nodeid = __atomic_fetch_add(&s->next_nodeid, 1, __ATOMIC_RELAXED);
    // JavaScript hears of the node before the kernel can name it.
    if (!announce_node(s, parent, name, nodeid, &e.attr)) err = EIO;
  }
  if (err != 0) {
    if (fd >= 0) close(fd);
    if (path_fd >= 0) close(path_fd);
    fuse_reply_err(req, err);
    report_failure(s, fi != NULL ? LL_CREATE : LL_MKDIR, parent, name, err);
    fast_count(s, fi != NULL ? LL_CREATE : LL_MKDIR);
    return 1;
  }
  node_learned(s, nodeid, path_fd, fi == NULL);
  if (fi != NULL) node_pin(s, nodeid, 1);
  // Just created: it has no security.capability.
  nocaps_set(nodeid, 1);
  e.ino = nodeid;
  e.attr_timeout = s->attr_timeout;
  e.entry_timeout = s->entry_timeout;
  if (fi == NULL) {
    if (fuse_reply_entry(req, &e) == -ENOENT) node_forget(s, nodeid, 1);
    fast_count(s, LL_MKDIR);
    return 1;
  }
  fill_open(fi, 0, fd, LL_OPEN_KEEP_CACHE | LL_OPEN_DIRECT_READ | LL_OPEN_DIRECT_WRITE);
  // A new file: it passes through only with the passthrough_writes option (passthrough.c); the open is counted either way.
  int32_t backing = 0;
  int pt = pt_open_decide(s, nodeid, fd, passthrough_eligible(s, fi->flags, fi->fh), &backing);
  if ((pt != PT_NONE ? pt_reply_open(req, &e, fi, pt, backing) : fuse_reply_create(req, &e, fi)) == -ENOENT) {
    // The creator was interrupted: nobody will release this handle.
    pt_open_undo(s, nodeid, pt);
    close(fd);
    node_pin(s, nodeid, -1);
    node_forget(s, nodeid, 1);
  }
  fast_count(s, LL_CREATE);
  return 1;
}

// ---- open files ------------------------------------------------------------------------

// open of an existing file (LL_FAST_WRITE: nothing journals its writes,
// nothing is left to fetch): a new descriptor through the node's
// (/proc/self/fd/N), with the core's rules: an O_TRUNC open by anyone but root
// drops set-user-ID, and set-group-ID with group-execute; only a single-link
// regular file keeps its page cache.
int fast_open (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (!fast_on(s, LL_FAST_WRITE)) return 0;
  bridge_node_t *n = node_acquire(s, ino);
  if (n == NULL) return 0;
  char proc[64];
  proc_path(proc, sizeof(proc), n->fd);
  int fd = open(proc, sr_store_open_flags(fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOFOLLOW)) | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  struct stat st;
  if (err == 0 && fstat(fd, &st) != 0) err = errno;
  if (err == 0 && (fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY && fuse_req_ctx(req)->uid != 0) {
    mode_t drop = setid_drop(req, &st);
    if (drop != 0 && fchmod(fd, st.st_mode & 07777 & ~drop) != 0) err = errno;
  }
  if (err == 0) node_pin(s, ino, 1);
  node_release(s, n);
  if (err != 0) {
    if (fd >= 0) close(fd);
    fuse_reply_err(req, err);
    report_failure(s, LL_OPEN, ino, NULL, err);
    fast_count(s, LL_OPEN);
    return 1;
  }
  fill_open(fi, 0, fd, (S_ISREG(st.st_mode) && st.st_nlink == 1 ? LL_OPEN_KEEP_CACHE : 0) | LL_OPEN_DIRECT_READ | LL_OPEN_DIRECT_WRITE);
  int32_t backing = 0;
  int pt = pt_open_decide(s, ino, fd, S_ISREG(st.st_mode) ? passthrough_eligible(s, fi->flags, fi->fh) : 0, &backing);
  if ((pt != PT_NONE ? pt_reply_open(req, NULL, fi, pt, backing) : fuse_reply_open(req, fi)) == -ENOENT) {
    // The opener was interrupted: nobody will release this handle.
    pt_open_undo(s, ino, pt);
    close(fd);
    node_pin(s, ino, -1);
  }
  fast_count(s, LL_OPEN);
  return 1;
}

int fast_read (bridge_session_t *s, fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi) {
  if (!(fi->fh & LL_FH_DIRECT_READ)) return 0;
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = (enum fuse_buf_flags) (FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = direct_fd(fi->fh);
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
  fast_count(s, LL_READ);
  // The size asked for: splice does not say how much it moved (less at the end of a file).
  fast_bytes(s, 0, size);
  return 1;
}

// A direct change (write, fallocate) starts: 0 when it must reach JavaScript.
// The count goes up before the check, so once JavaScript has set
// LL_FAST_TRACK (or reset the clearance table) and then read
// directChanges() == 0, none can start unseen. While changes are tracked, a
// write (size > 0) goes on here only when every block it touches is clear
// (track.c): its old contents are durable in every checkpoint's copy store.
// A fallocate (size 0) always goes to JavaScript then.
static int direct_change_begin (bridge_session_t *s, int fd, off_t off, size_t size) {
  __atomic_add_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
  if (fast_on(s, LL_FAST_TRACK)) {
    struct stat st;
    if (size == 0 || off < 0 || fstat(fd, &st) != 0 || !track_covers(s, (uint64_t) st.st_ino, (uint64_t) off, (uint64_t) size)) {
      __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
      if (size != 0) __atomic_fetch_add(&s->track_sent, 1, __ATOMIC_RELAXED);
      return 0;
    }
    __atomic_fetch_add(&s->track_direct, 1, __ATOMIC_RELAXED);
  }
  return 1;
}

static void direct_change_end (bridge_session_t *s) {
  __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
}

int fast_write (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi, int kill) {
  // A handle of a journalled store: applied here and journalled by JavaScript (journal.c).
  if (!(fi->fh & LL_FH_DIRECT_WRITE)) return (fi->fh & LL_FH_JOURNAL_WRITE) ? journal_write(s, req, ino, buf, size, off, fi, kill) : 0;
  int fd = direct_fd(fi->fh);
  if (kill) {
    // The writer has no CAP_FSETID (handle_killpriv_v2): set-ID bits go first,
    // as the kernel drops them before a write.
    int err = kill_suidgid(s, req, fd, ino);
    if (err < 0) return 0;
    if (err > 0) {
      fuse_reply_err(req, err);
      report_failure(s, LL_WRITE, ino, NULL, err);
      return 1;
    }
  }
  int append = write_appends(s, fi);
  // Where an append lands is known after it: with checkpoints to keep, JavaScript saves first.
  if (append && fast_on(s, LL_FAST_TRACK)) return 0;
  if (!direct_change_begin(s, fd, off, size)) return 0;
  // Until the reply, a getattr of the node goes to JavaScript (sizing, above).
  sizing_add(ino, 1);
  size_t done = 0;
  while (done < size) {
    off_t landed; // nothing records it here
    ssize_t n = append ? sr_append(fd, buf + done, size - done, &landed) : pwrite(fd, buf + done, size - done, off + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      if (done == 0) {
        direct_change_end(s);
        sizing_add(ino, -1);
        fuse_reply_err(req, err);
        report_failure(s, LL_WRITE, ino, NULL, err);
        return 1;
      }
      break;
    }
    done += (size_t) n;
  }
  direct_change_end(s);
  // Just before the reply: the writer's next getattr stays on this thread.
  sizing_add(ino, -1);
  fuse_reply_write(req, done);
  fast_count(s, LL_WRITE);
  fast_bytes(s, 1, done);
  return 1;
}

int fast_flush (bridge_session_t *s, fuse_req_t req, struct fuse_file_info *fi) {
  // Nothing journals this store, so no close(2) has anything to flush: ENOSYS
  // tells the kernel to stop sending FLUSH on this connection (fc->no_flush),
  // one round trip less per close. Locks stay in the kernel, so none is lost.
  if (fast_on(s, LL_FAST_WRITE)) {
    fuse_reply_err(req, ENOSYS);
    fast_count(s, LL_FLUSH);
    return 1;
  }
  // A direct handle's writes are already in the backing file: nothing to flush.
  if (fi->fh & LL_FH_DIRECT_WRITE) {
    fuse_reply_err(req, 0);
    fast_count(s, LL_FLUSH);
    return 1;
  }
  return 0;
}

int fast_release (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  // A handle the bridge made: nobody else knows its descriptor.
  if (!fh_is_bridge_owned(fi->fh)) return 0;
  close(direct_fd(fi->fh));
  node_pin(s, ino, -1);
  fuse_reply_err(req, 0);
  fast_count(s, LL_RELEASE);
  return 1;
}

// Direct writes are only given when nothing journals them: fsync of the
// descriptor is all there is to do.
int fast_fsync (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  if (!(fi->fh & LL_FH_DIRECT_WRITE)) return 0;
  int fd = direct_fd(fi->fh);
  int err = (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno;
  fuse_reply_err(req, err);
  if (err != 0) report_failure(s, LL_FSYNC, ino, NULL, err);
  fast_count(s, LL_FSYNC);
  return 1;
}

// As fsync: a direct-write handle has nothing to journal.
int fast_fallocate (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi, int kill) {
  if (!(fi->fh & LL_FH_DIRECT_WRITE)) return 0;
  if (kill) {
    int err = kill_suidgid(s, req, direct_fd(fi->fh), ino);
    if (err < 0) return 0;
    if (err > 0) {
      fuse_reply_err(req, err);
      report_failure(s, LL_FALLOCATE, ino, NULL, err);
      return 1;
    }
  }
  if (!direct_change_begin(s, direct_fd(fi->fh), 0, 0)) return 0;
  sizing_add(ino, 1);
  int err = fallocate(direct_fd(fi->fh), mode, offset, length) == 0 ? 0 : errno;
  direct_change_end(s);
  sizing_add(ino, -1);
  fuse_reply_err(req, err);
  if (err != 0) report_failure(s, LL_FALLOCATE, ino, NULL, err);
  fast_count(s, LL_FALLOCATE);
  return 1;
}
