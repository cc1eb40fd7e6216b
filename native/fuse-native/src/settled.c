// settled.c - what the FUSE thread answers during a restore (LL_FAST_SETTLED,
// with LL_FAST_READ off), for nodes JavaScript has vouched for as settled.
//
// While a store is being restored, JavaScript decides what a program sees of
// most objects: a pending directory's link count and times come from its
// mark, a hard-linked file's count adds the names still in the archive, the
// restore moves a file's times while it writes fetched bytes into it. But an
// object the restore has finished with (a restored directory, a local file
// with one name, no times record) is what fstat says. JavaScript vouches for
// such a node when it answers a lookup or getattr of it (settled(session,
// nodeid, true)), and revokes the vouch before anything could change that
// (nodes.c: an answer overlapping a revoke goes to JavaScript). Then:
//
// - getattr of a vouched node is an fstat of its descriptor;
// - lookup: openat(parent) + fstat in any parent with a descriptor; a found
//   name goes to JavaScript resolved (it picks the node id and decides the
//   attributes: the child may be anything), so that nodes get descriptors
//   during a restore; "no such name" is answered here when the parent is
//   vouched for (a restored directory: nothing but a program's request, which
//   the kernel orders against the lookup, changes its names), else it goes
//   to JavaScript (a pending directory's names come from the archive).
//
// Errors go to JavaScript, which answers them by its own rules.
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int fast_settled_getattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino) {
  if (!fast_on(s, LL_FAST_SETTLED)) return 0;
  int settled = 0;
  uint32_t seq = 0;
  bridge_node_t *n = node_acquire_vouched(s, ino, &settled, &seq);
  if (n == NULL) return 0;
  if (!settled) { node_release(s, n); return 0; }
  struct stat st;
  int ok = fstat(n->fd, &st) == 0;
  // Read before any revoke: the object as it was before the change that follows it.
  if (!node_release_vouched(s, n, seq) || !ok) return 0;
  fuse_reply_attr(req, &st, s->attr_timeout);
  fast_count(s, LL_GETATTR);
  return 1;
}

int fast_settled_lookup (bridge_session_t *s, fuse_req_t req, fuse_ino_t parent, const char *name, int *fd_out, struct stat *st) {
  *fd_out = -1;
  if (!fast_on(s, LL_FAST_SETTLED)) return 0;
  int settled = 0;
  uint32_t seq = 0;
  bridge_node_t *p = node_acquire_vouched(s, parent, &settled, &seq);
  if (p == NULL) return 0;
  int fd = openat(p->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  if (settled) settled = node_release_vouched(s, p, seq);
  else node_release(s, p);
  if (err == ENOENT) {
    if (!settled) return 0;
    fast_reply_negative(s, req);
    return 1;
  }
  if (fd >= 0 && fstat(fd, st) != 0) { close(fd); fd = -1; }
  *fd_out = fd;
  return 0;
}
