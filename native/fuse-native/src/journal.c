// journal.c - journalled direct writes (and setattrs): the FUSE thread applies a write to a
// journalled (mirrored) store itself and hands JavaScript only what the
// journal needs (docs/mirroring.md, "Journalled direct writes").
//
// On a mirrored mount every change must reach the journal, so before this
// every write was a request to JavaScript (a wake-up of its thread, a pwrite
// through libuv's pool, the append, the reply: 200-500 us the program waits
// for). Now, for a handle JavaScript opened with LL_OPEN_JOURNAL_WRITE while
// LL_FAST_JOURNAL is on (async mode, no restore, nothing tracked), the FUSE
// thread:
//   1. takes credit: journal bytes JavaScript granted from the journal's room
//      (the write's size + LL_JOURNAL_WRITE_OVERHEAD); none left: the write
//      goes to JavaScript as a request, where the journal-full policy applies;
//   2. pwrites the bytes to the store, as the unmirrored path does;
//   3. queues a `written` notice (node, JavaScript handle, offset, a copy of
//      the bytes, the credit taken) into the same queue that carries requests
//      to JavaScript;
//   4. replies to the kernel.
// JavaScript appends the write record when the notice comes out of the queue,
// before it looks at anything queued after it. Since the notice is queued
// before the reply, every request the program makes after the write returned
// (fsync, truncate, another write through JavaScript) is behind it: the
// journal's order is the order the program saw, and an fsync that returned
// has every such write's record acked (I1).
//
// What bounds the memory: the bytes of notices queued and not journalled yet
// are at most the credit JavaScript granted (I5).
//
// Unclean stop: the store's checkpoint (mirror.json) promises that every change
// with an older ctime has a durable record. A direct write has its ctime before
// its record exists, so the checkpoint waits for the writes that may have
// started before its time: every write counts itself in dj_active[phase]
// from before it takes credit (before its pwrite) until its notice is queued;
// journalFlip moves new writes to the other phase and journalActive(old)
// reaching 0 says every write counted there has queued its notice; a
// journalMark notice then comes out of the queue behind all of them.
//
// Every write that took credit queues exactly one notice (carrying the credit,
// with no bytes when the pwrite failed), so JavaScript's count of the credit
// it has out is exact.
#include "bridge.h"
#include "posix_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>

static int take_credit (bridge_session_t *s, int64_t cost) {
  int64_t have = __atomic_load_n(&s->dj_credit, __ATOMIC_SEQ_CST);
  while (have >= cost) {
    if (__atomic_compare_exchange_n(&s->dj_credit, &have, have - cost, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) return 1;
  }
  return 0;
}

// May the FUSE thread apply a journalled write now? (Read after the write is
// counted in direct_changes and fast_busy, with seq_cst: JavaScript turning
// the bit off, or tracking on, and then waiting for those counts to reach 0
// sees every write that did not see its change.)
static int journal_on (bridge_session_t *s) {
  int fast = __atomic_load_n(&s->fast, __ATOMIC_SEQ_CST);
  return (fast & LL_FAST_JOURNAL) != 0 && (fast & (LL_FAST_TRACK | LL_FAST_SETTLED)) == 0;
}

int journal_write (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi, int kill) {
  // A writer without CAP_FSETID (killpriv: set-ID bits to drop first), an
  // empty write, or the path off: a request to JavaScript, as before.
  // Without handle_killpriv_v2 every write by a caller but root comes
  // flagged (intake.c, write_kills), for the one case the kernel leaves:
  // only a set-group-ID file without group execute goes to JavaScript then.
  if (kill && !s->killpriv_on) {
    struct stat st;
    if (fstat((int) ((fi->fh >> 32) & LL_FH_FD_MASK) - 1, &st) == 0 && !sr_setid_needs_groups(st.st_mode)) kill = 0;
  }
  if (kill || size == 0 || s->closed || !journal_on(s)) goto to_js;
  bridge_req_t *r = req_new(s, NULL, LL_WRITTEN, ino);
  if (r == NULL) goto to_js;
  r->data = malloc(size);
  if (r->data == NULL) { req_free(r); goto to_js; }
  int64_t cost = (int64_t) size + LL_JOURNAL_WRITE_OVERHEAD;
  // Counted before anything is checked or written (see the header).
  __atomic_add_fetch(&s->fast_busy, 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
  uint32_t phase = __atomic_load_n(&s->dj_phase, __ATOMIC_SEQ_CST) & 1;
  __atomic_add_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
  if (!journal_on(s) || !take_credit(s, cost)) {
    __atomic_sub_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&s->fast_busy, 1, __ATOMIC_SEQ_CST);
    req_free(r);
    goto to_js;
  }
  int fd = (int) ((fi->fh >> 32) & LL_FH_FD_MASK) - 1;
  size_t done = 0;
  int err = 0;
  // Until the reply, a getattr of the node goes to JavaScript (fastpath.c, sizing).
  sizing_add(ino, 1);
  if (write_appends(s, fi)) {
    // Recorded where it landed, which the kernel's offset may not say (posix_rules.h).
    off_t landed;
    ssize_t n = sr_append(fd, buf, size, &landed);
    if (n < 0) err = errno;
    else {
      done = (size_t) n;
      off = landed;
    }
  } else {
    while (done < size) {
      ssize_t n = pwrite(fd, buf + done, size - done, off + done);
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      if (n == 0) break;
      done += (size_t) n;
    }
  }
  r->fi = *fi;
  r->has_fi = 1;
  r->off = (double) off;
  r->size = (double) cost;
  if (done > 0) {
    memcpy(r->data, buf, done);
    r->data_len = done;
  } else {
    free(r->data);
    r->data = NULL;
  }
  // Ahead of the reply: every later request is behind it in the queue.
  req_notify(s, r);
  __atomic_sub_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
  __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
  __atomic_sub_fetch(&s->fast_busy, 1, __ATOMIC_SEQ_CST);
  sizing_add(ino, -1);
  // A full disk: the journal's own records may be what fills it (they go
  // once the archive has them), which JavaScript can wait for; the write goes
  // there (its notice, queued above, gave the credit back).
  if (done == 0 && err == ENOSPC) goto to_js;
  if (done == 0 && err != 0) {
    fuse_reply_err(req, err);
    bridge_req_t *f = req_new(s, NULL, LL_FAILED, ino);
    if (f != NULL) { f->mode = (uint32_t) err; f->rdev = LL_WRITE; req_notify(s, f); }
  } else {
    fuse_reply_write(req, done);
    __atomic_fetch_add(&s->dj_direct, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->dj_bytes, done, __ATOMIC_RELAXED);
    fast_bytes(s, 1, done);
  }
  fast_count(s, LL_WRITE);
  return 1;
to_js:
  __atomic_fetch_add(&s->dj_sent, 1, __ATOMIC_RELAXED);
  return 0;
}

// Setattrs the same way (mode, owner, times; a size change goes to
// JavaScript, which may have to fetch or discard archive data and records
// it itself, as does a chmod of a file with an ACL): of a regular file whose object id JavaScript knows (it marked
// the node with journalNode when a create or open through it gave the id),
// applied here through the node's descriptor in the core's order (mode,
// owner, times), then an `applied` notice with the attributes after it (the
// setattr record's) goes ahead of the reply. Taken as a write: credit
// (LL_JOURNAL_SETATTR_BYTES), the phase count, one notice per credit taken.
int journal_setattr (bridge_session_t *s, fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set) {
  if ((to_set & (FUSE_SET_ATTR_SIZE | LL_SETATTR_KILL_SUIDGID)) != 0 || s->closed || !journal_on(s)) return 0;
  bridge_node_t *n = node_acquire(s, ino);
  if (n == NULL) return 0;
  struct stat st;
  if (!__atomic_load_n(&n->journal, __ATOMIC_ACQUIRE) || fstat(n->fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      // A chmod changes an access ACL too (its mask), which the core records (src/core/filesystem.ts: setattr).
      ((to_set & FUSE_SET_ATTR_MODE) && fd_has_xattr(n->fd, "system.posix_acl_access"))) {
    node_release(s, n);
    return 0;
  }
  bridge_req_t *r = req_new(s, NULL, LL_APPLIED, ino);
  if (r == NULL) { node_release(s, n); return 0; }
  int64_t cost = LL_JOURNAL_SETATTR_BYTES;
  __atomic_add_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
  uint32_t phase = __atomic_load_n(&s->dj_phase, __ATOMIC_SEQ_CST) & 1;
  __atomic_add_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
  if (!journal_on(s) || !take_credit(s, cost)) {
    __atomic_sub_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
    node_release(s, n);
    req_free(r);
    return 0;
  }
  int pfd = n->fd;
  char proc[64];
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
  int err = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (chmod(proc, attr->st_mode & 07777) != 0) err = errno;
  }
  if (err == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t) -1;
    gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t) -1;
    if (fchownat(pfd, "", u, g, AT_EMPTY_PATH) != 0) err = errno;
  }
  struct timespec ts[2];
  if (err == 0 && setattr_times(attr, to_set, ts)) {
    if (utimensat(AT_FDCWD, proc, ts, 0) != 0) err = errno;
  }
  // The attributes after it, whatever part applied: the record says what the store holds.
  int serr = fstat(pfd, &st) == 0 ? 0 : errno;
  node_release(s, n);
  r->size = (double) cost;
  if (serr == 0) { r->pre_st = st; r->has_pre = 1; }
  // Ahead of the reply: every later request is behind it in the queue.
  req_notify(s, r);
  __atomic_sub_fetch(&s->dj_active[phase], 1, __ATOMIC_SEQ_CST);
  __atomic_sub_fetch(&s->direct_changes, 1, __ATOMIC_SEQ_CST);
  if (err == 0) err = serr;
  if (err != 0) {
    fuse_reply_err(req, err);
    bridge_req_t *f = req_new(s, NULL, LL_FAILED, ino);
    if (f != NULL) { f->mode = (uint32_t) err; f->rdev = LL_SETATTR; req_notify(s, f); }
  } else {
    fuse_reply_attr(req, &st, s->attr_timeout);
    __atomic_fetch_add(&s->dj_setattrs, 1, __ATOMIC_RELAXED);
  }
  fast_count(s, LL_SETATTR);
  return 1;
}

// journalNode(session, nodeid, on) -> whether the node has an entry: JavaScript
// knows (on) the node's object id, so its setattrs may be applied on the FUSE
// thread and journalled from notices (journal_setattr), or no longer (off).
napi_value js_journal_node (napi_env env, napi_callback_info info) {
  return js_node_flag(env, info, node_set_journal);
}

// journalGrant(session, bytes): JavaScript reserved `bytes` of the journal's room for direct writes.
napi_value js_journal_grant (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  double b = argc >= 2 ? js_dbl(env, argv[1]) : 0;
  if (!(b >= 0 && b < 9007199254740992.0)) { js_throw_type(env, "journalGrant(session, bytes >= 0)"); return NULL; }
  __atomic_add_fetch(&s->dj_credit, (int64_t) b, __ATOMIC_SEQ_CST);
  return NULL;
}

// journalRevoke(session) -> the credit no write has taken (now 0).
napi_value js_journal_revoke (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_num(env, (double) __atomic_exchange_n(&s->dj_credit, 0, __ATOMIC_SEQ_CST));
}

// journalFlip(session) -> the phase writes counted in until now; new ones count in the other.
napi_value js_journal_flip (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  uint32_t old = __atomic_fetch_add(&s->dj_phase, 1, __ATOMIC_SEQ_CST) & 1;
  return js_num(env, (double) old);
}

// journalActive(session, phase) -> writes of that phase that have not queued their notice yet.
napi_value js_journal_active (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  int phase = argc >= 2 ? ((int) js_dbl(env, argv[1])) & 1 : 0;
  return js_num(env, (double) __atomic_load_n(&s->dj_active[phase], __ATOMIC_SEQ_CST));
}

// journalMark(session, token) -> false when the queue is closed: a `mark`
// notice (token in off) that JavaScript gets after every notice and request
// queued before this call.
napi_value js_journal_mark (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed) return js_bool(env, 0);
  bridge_req_t *r = req_new(s, NULL, LL_MARK, 0);
  if (r == NULL) return js_bool(env, 0);
  r->off = argc >= 2 ? js_dbl(env, argv[1]) : 0;
  int ok = napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking) == napi_ok;
  if (!ok) req_free(r);
  return js_bool(env, ok);
}

// journalCounts(session) -> [writes applied here and handed over as notices,
// their bytes, writes of journal-write handles sent to JavaScript as requests,
// credit left, setattrs applied here and handed over as notices].
napi_value js_journal_counts (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  napi_value ab, arr;
  void *data;
  napi_create_arraybuffer(env, 5 * sizeof(double), &data, &ab);
  double *d = (double *) data;
  d[0] = (double) __atomic_load_n(&s->dj_direct, __ATOMIC_RELAXED);
  d[1] = (double) __atomic_load_n(&s->dj_bytes, __ATOMIC_RELAXED);
  d[2] = (double) __atomic_load_n(&s->dj_sent, __ATOMIC_RELAXED);
  d[3] = (double) __atomic_load_n(&s->dj_credit, __ATOMIC_SEQ_CST);
  d[4] = (double) __atomic_load_n(&s->dj_setattrs, __ATOMIC_RELAXED);
  napi_create_typedarray(env, napi_float64_array, 5, ab, 0, &arr);
  return arr;
}
