// requests.c - request records, their handles, and the queue to JavaScript.
//
// A kernel request that the FUSE thread does not answer itself becomes a
// record (bridge_req_t, bridge.h) and goes to JavaScript through a napi
// threadsafe function; the FUSE thread goes straight back to the kernel.
//
// Handles. JavaScript names a record by a handle, never by its address: a
// slot in one table of pending records plus the slot's generation, packed in
// a double (generation * 2^HANDLE_SLOT_BITS + slot, below 2^53). A reply first
// takes the record out of its slot (the generation moves on), so a second
// reply with the same handle, a reply after close() dropped the session's
// records, or a number that was never a handle finds no record and is refused
// with an error; nothing is read from freed memory and the kernel never gets
// two answers. The table grows on demand (FUSE threads add, the JavaScript
// thread takes); its lock is a leaf.
#include "bridge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HANDLE_SLOT_BITS 21
#define HANDLE_SLOTS_MAX (1U << HANDLE_SLOT_BITS)
#define HANDLE_GEN_MAX 0xFFFFFFFFU

typedef struct {
  bridge_req_t *req;   // NULL when free
  uint32_t gen;        // >= 1; moves on every time the slot is emptied
  uint32_t next_free;
} slot_t;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t *slots = NULL;
static uint32_t nslots = 0;
static uint32_t free_head = UINT32_MAX;
static size_t npending = 0;

static double handle_of (uint32_t slot, uint32_t gen) {
  return (double) (((uint64_t) gen << HANDLE_SLOT_BITS) | slot);
}

// Gives `r` a slot. 0 when the table cannot grow.
static int table_add (bridge_req_t *r) {
  pthread_mutex_lock(&table_lock);
  if (free_head == UINT32_MAX) {
    uint32_t n = nslots == 0 ? 1024 : nslots * 2;
    if (n > HANDLE_SLOTS_MAX) n = HANDLE_SLOTS_MAX;
    slot_t *grown = n > nslots ? realloc(slots, n * sizeof(slot_t)) : NULL;
    if (grown == NULL) {
      pthread_mutex_unlock(&table_lock);
      return 0;
    }
    for (uint32_t i = n; i > nslots; i--) {
      grown[i - 1].req = NULL;
      grown[i - 1].gen = 1;
      grown[i - 1].next_free = free_head;
      free_head = i - 1;
    }
    slots = grown;
    nslots = n;
  }
  uint32_t i = free_head;
  free_head = slots[i].next_free;
  slots[i].req = r;
  r->handle = handle_of(i, slots[i].gen);
  npending++;
  pthread_mutex_unlock(&table_lock);
  return 1;
}

static void slot_clear_locked (uint32_t i) {
  slots[i].req = NULL;
  slots[i].gen = slots[i].gen == HANDLE_GEN_MAX ? 1 : slots[i].gen + 1;
  slots[i].next_free = free_head;
  free_head = i;
  npending--;
}

// The pending record behind `handle`, or NULL.
static bridge_req_t *table_find_locked (double handle) {
  if (!(handle >= 1 && handle < 9007199254740992.0) || handle != (double) (uint64_t) handle) return NULL;
  uint64_t h = (uint64_t) handle;
  uint32_t i = (uint32_t) (h & (HANDLE_SLOTS_MAX - 1));
  uint64_t gen = h >> HANDLE_SLOT_BITS;
  if (i >= nslots || slots[i].req == NULL || slots[i].gen != gen) return NULL;
  return slots[i].req;
}

// Removes the record behind `handle` from the table, if it is still there.
static bridge_req_t *table_take (double handle) {
  pthread_mutex_lock(&table_lock);
  bridge_req_t *r = table_find_locked(handle);
  if (r != NULL) slot_clear_locked((uint32_t) ((uint64_t) handle & (HANDLE_SLOTS_MAX - 1)));
  pthread_mutex_unlock(&table_lock);
  return r;
}

size_t req_pending (void) {
  pthread_mutex_lock(&table_lock);
  size_t n = npending;
  pthread_mutex_unlock(&table_lock);
  return n;
}

// ---- records ------------------------------------------------------------------------

bridge_req_t *req_new (bridge_session_t *s, fuse_req_t req, uint32_t op, fuse_ino_t ino) {
  bridge_req_t *r = calloc(1, sizeof(bridge_req_t));
  if (r == NULL) return NULL;
  r->req = req;
  r->s = s;
  r->op = op;
  r->ino = ino;
  r->pre_fd = -1;
  r->node_gen = __atomic_load_n(&s->node_gen, __ATOMIC_SEQ_CST);
  if (req != NULL) {
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    r->uid = ctx->uid;
    r->gid = ctx->gid;
    r->pid = ctx->pid;
    // Only create, mkdir and mknod carry one (libfuse leaves it 0 elsewhere).
    r->umask = s->posix_acl_on ? (uint32_t) (ctx->umask & 0777) : 0;
    if (!table_add(r)) { free(r); return NULL; }
  }
  return r;
}

void req_free (bridge_req_t *r) {
  if (r->pre_fd >= 0) close(r->pre_fd);
  free(r->name);
  free(r->name2);
  free(r->data);
  free(r);
}

void req_take (bridge_req_t *r) {
  if (r->handle != 0) table_take(r->handle);
}

void req_done (bridge_req_t *r) {
  r->req = NULL;
  req_free(r);
}

// Answers `r` with `err` when it is still due a reply, and frees it.
static void req_fail (bridge_req_t *r, int err) {
  if (r->req != NULL && (r->handle == 0 || table_take(r->handle) == r)) fuse_reply_err(r->req, err);
  req_done(r);
}

void req_submit (bridge_session_t *s, fuse_req_t req, bridge_req_t *r) {
  if (r == NULL) {
    if (req != NULL) fuse_reply_err(req, ENOMEM);
    return;
  }
  if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking) != napi_ok) req_fail(r, EIO);
}

void req_notify (bridge_session_t *s, bridge_req_t *r) {
  if (r == NULL) return;
  if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking) != napi_ok) req_free(r);
}

bridge_req_t *req_peek (napi_env env, napi_value v) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    js_throw_type(env, "bad request handle (not a number)");
    return NULL;
  }
  pthread_mutex_lock(&table_lock);
  bridge_req_t *r = table_find_locked(d);
  pthread_mutex_unlock(&table_lock);
  // A handle is JavaScript's only once the request has been delivered: one
  // still in the queue is not answerable yet (delivered is only touched on
  // this thread).
  if (r != NULL && !r->delivered) r = NULL;
  if (r == NULL) {
    napi_value code, msg, err;
    napi_create_string_utf8(env, "ERR_FUSE_REQUEST_ANSWERED", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "request already answered, or its session closed, or never issued", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &err);
    napi_throw(env, err);
  }
  return r;
}

size_t req_drop_session (bridge_session_t *s) {
  // Taken out under the lock, answered outside it (a reply is a system call).
  bridge_req_t *list = NULL;
  size_t n = 0;
  pthread_mutex_lock(&table_lock);
  for (uint32_t i = 0; i < nslots; i++) {
    bridge_req_t *r = slots[i].req;
    if (r != NULL && r->s == s) {
      slot_clear_locked(i);
      r->next = list;
      list = r;
      n++;
    }
  }
  pthread_mutex_unlock(&table_lock);
  while (list != NULL) {
    bridge_req_t *r = list;
    list = r->next;
    r->next = NULL;
    fuse_reply_err(r->req, EIO);
    r->req = NULL;
    // One still in the queue is freed when it comes out (req_call_js).
    if (r->delivered) req_free(r);
  }
  return n;
}

// ---- the call into JavaScript --------------------------------------------------------

static void free_data (napi_env env, void *data, void *hint) {
  (void) env; (void) hint;
  free(data);
}

static void attr_to_array (const struct stat *st, double *a) {
  a[ATTR_INO_LO] = (double) ((uint64_t) st->st_ino & 0xFFFFFFFFULL);
  a[ATTR_INO_HI] = (double) ((uint64_t) st->st_ino >> 32);
  a[ATTR_MODE] = (double) st->st_mode;
  a[ATTR_NLINK] = (double) st->st_nlink;
  a[ATTR_UID] = (double) st->st_uid;
  a[ATTR_GID] = (double) st->st_gid;
  a[ATTR_RDEV] = (double) st->st_rdev;
  a[ATTR_SIZE] = (double) st->st_size;
  a[ATTR_BLKSIZE] = (double) st->st_blksize;
  a[ATTR_BLOCKS] = (double) st->st_blocks;
  a[ATTR_ATIME_S] = (double) st->st_atim.tv_sec;
  a[ATTR_ATIME_NS] = (double) st->st_atim.tv_nsec;
  a[ATTR_MTIME_S] = (double) st->st_mtim.tv_sec;
  a[ATTR_MTIME_NS] = (double) st->st_mtim.tv_nsec;
  a[ATTR_CTIME_S] = (double) st->st_ctim.tv_sec;
  a[ATTR_CTIME_NS] = (double) st->st_ctim.tv_nsec;
}

static napi_value float64_array (napi_env env, const double *values, size_t n) {
  napi_value ab, arr;
  void *data;
  napi_create_arraybuffer(env, n * sizeof(double), &data, &ab);
  memcpy(data, values, n * sizeof(double));
  napi_create_typedarray(env, napi_float64_array, n, ab, 0, &arr);
  return arr;
}

// Calls onRequest(op, req, ino, ino2, name, name2, fh, off, size, mode, toSet,
// rdev, uid, gid, pid, data, attrs, fiFlags, umask) and frees a notice; a request
// with a reply due stays in the table for JavaScript's reply.
static void deliver (napi_env env, napi_value js_cb, bridge_req_t *r) {
  napi_value argv[19];
  napi_create_uint32(env, r->op, &argv[0]);
  argv[1] = js_num(env, r->req == NULL ? 0 : r->handle);
  argv[2] = js_num(env, (double) r->ino);
  argv[3] = js_num(env, (double) r->ino2);
  argv[4] = js_name_or_undefined(env, r->name);
  argv[5] = js_name_or_undefined(env, r->name2);
  argv[6] = js_num(env, r->has_fi ? (double) (uint32_t) (r->fi.fh & LL_HANDLE_MASK) : 0);
  argv[7] = js_num(env, r->off);
  argv[8] = js_num(env, r->size);
  napi_create_uint32(env, r->mode, &argv[9]);
  napi_create_uint32(env, r->to_set, &argv[10]);
  napi_create_uint32(env, r->rdev, &argv[11]);
  napi_create_uint32(env, r->uid, &argv[12]);
  napi_create_uint32(env, r->gid, &argv[13]);
  napi_create_uint32(env, r->pid, &argv[14]);
  if (r->data != NULL) {
    napi_create_external_buffer(env, r->data_len, r->data, free_data, NULL, &argv[15]);
    r->data = NULL; // now owned by the Buffer
  } else {
    napi_get_undefined(env, &argv[15]);
  }
  if (r->op == LL_SETATTR) {
    argv[16] = float64_array(env, r->setattr_args, SETATTR_LEN);
  } else if (r->has_pre) {
    // A lookup resolved on the FUSE thread, or a node it created: the attributes.
    double a[ATTR_LEN];
    attr_to_array(&r->pre_st, a);
    argv[16] = float64_array(env, a, ATTR_LEN);
  } else {
    napi_get_undefined(env, &argv[16]);
  }
  napi_create_uint32(env, r->has_fi ? (uint32_t) r->fi.flags : 0, &argv[17]);
  napi_create_uint32(env, r->umask, &argv[18]);

  // After the call `r` may be freed already (JavaScript replied): only its
  // handle is used from here on.
  int notice = r->req == NULL;
  double handle = r->handle;
  r->delivered = 1;
  napi_value global, result;
  napi_get_global(env, &global);
  napi_status st = napi_call_function(env, global, js_cb, 19, argv, &result);
  if (notice) {
    req_free(r);
  } else if (st != napi_ok) {
    // The handler threw: Node reports the exception; the kernel still needs an
    // answer, unless the handler gave one before it threw.
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
    bridge_req_t *left = table_take(handle);
    if (left != NULL) {
      fuse_reply_err(left->req, EIO);
      req_done(left);
    }
  }
}

// Runs on the JavaScript thread for every record: first the nodes the FUSE
// thread announced since the last record (so JavaScript knows every node id a
// request can name), then the record itself. A bare LL_NEWNODE is only a nudge.
// After close() JavaScript hears nothing more of the session.
void req_call_js (napi_env env, napi_value js_cb, void *context, void *data) {
  bridge_req_t *r = (bridge_req_t *) data;
  bridge_session_t *s = (bridge_session_t *) context;
  bridge_req_t *nodes = NULL;
  int live = env != NULL && js_cb != NULL && !s->closed;
  pthread_mutex_lock(&s->nodes_lock);
  nodes = s->announced_head;
  s->announced_head = s->announced_tail = NULL;
  s->announced = 0;
  pthread_mutex_unlock(&s->nodes_lock);
  while (nodes != NULL) {
    bridge_req_t *next = nodes->next;
    if (live) deliver(env, js_cb, nodes);
    else req_free(nodes);
    nodes = next;
  }
  if (r->op == LL_NEWNODE && !r->has_pre) { req_free(r); return; }
  if (!live) {
    req_fail(r, EIO); // a no-op for one close() has answered already
    return;
  }
  deliver(env, js_cb, r);
}
