// session.c - a mount's life: mount, the FUSE loop thread, close; and the
// switches JavaScript sets on a live session (fastPaths, allocNodeid).
//
// mount() mounts and starts one loop thread: it answers the kernel's INIT
// (negotiate_init) and then runs worker threads that receive requests and let
// libfuse process them (its callbacks are intake.c). The loop ends when the kernel ends the
// connection (unmount, abort); the thread then queues LL_EXIT. The session is
// NOT freed there: requests JavaScript has not answered yet belong to it.
// JavaScript answers what is in flight and calls close(), which answers what
// is still pending with EIO, frees libfuse's session and the node table, and
// releases the queue; replies after that are refused (requests.c). The
// bridge_session_t itself stays allocated (a few hundred bytes per mount), so
// a late call with the session value finds `closed` instead of freed memory.
#include "bridge.h"
#include "kernel_abi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// libfuse 2's loop started a worker whenever all were busy; libfuse 3's stops
// at max_threads (default 10). A FUSE thread may sit in fsync or fallocate of
// a direct handle, so allow more.
#define LOOP_MAX_THREADS 64
#define LOOP_IDLE_THREADS 10

// ---- the receive loop ----------------------------------------------------------------
//
// The bridge runs libfuse's receive/process cycle itself instead of
// fuse_session_loop_mt (the same model: a worker that takes a request when no
// other is waiting starts another, up to LOOP_MAX_THREADS; more than
// LOOP_IDLE_THREADS waiting ones end), for two things libfuse 3.14 cannot do:
// - INIT (negotiate_init): the kernel's first request; libfuse answers it into
//   a pipe, and the bridge adds what libfuse does not know before the reply
//   goes to the kernel (handle_killpriv_v2; passthrough, with max_stack_depth);
// - the raw request (raw_request): while libfuse processes a request on a
//   worker, the worker's thread-local pointer names its bytes, so intake.c
//   can read the kill-set-ID flags libfuse drops.

static __thread const void *current_raw;

const void *raw_request (void) {
  return current_raw;
}

static void *worker (void *data);

int start_detached (void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  return rc;
}

static int start_worker (bridge_session_t *s) {
  return start_detached(worker, s) == 0;
}

// A worker leaves the pool (under loop_lock): the last one wakes the loop thread.
static void worker_gone_locked (bridge_session_t *s) {
  s->loop_threads--;
  if (s->loop_threads == 0) pthread_cond_broadcast(&s->loop_cond);
}

static void *worker (void *data) {
  bridge_session_t *s = (bridge_session_t *) data;
  struct fuse_buf fbuf;
  memset(&fbuf, 0, sizeof(fbuf));
  for (;;) {
    if (fuse_session_exited(s->se)) break;
    int res = fuse_session_receive_buf(s->se, &fbuf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {
      // 0: the connection ended (libfuse has marked the session exited);
      // < 0: a read error ends the loop as libfuse's own loop does.
      if (res < 0) s->loop_result = res;
      fuse_session_exit(s->se);
      break;
    }
    pthread_mutex_lock(&s->loop_lock);
    s->loop_idle--;
    int spawn = s->loop_idle == 0 && s->loop_threads < LOOP_MAX_THREADS;
    if (spawn) { s->loop_threads++; s->loop_idle++; }
    pthread_mutex_unlock(&s->loop_lock);
    if (spawn && !start_worker(s)) {
      pthread_mutex_lock(&s->loop_lock);
      s->loop_idle--;
      worker_gone_locked(s);
      pthread_mutex_unlock(&s->loop_lock);
    }
    current_raw = (fbuf.flags & FUSE_BUF_IS_FD) ? NULL : fbuf.mem;
    fuse_session_process_buf(s->se, &fbuf);
    current_raw = NULL;
    pthread_mutex_lock(&s->loop_lock);
    int leave = s->loop_idle >= LOOP_IDLE_THREADS;
    if (leave) worker_gone_locked(s);
    else s->loop_idle++;
    pthread_mutex_unlock(&s->loop_lock);
    if (leave) {
      free(fbuf.mem);
      return NULL;
    }
  }
  free(fbuf.mem);
  pthread_mutex_lock(&s->loop_lock);
  s->loop_idle--;
  worker_gone_locked(s);
  pthread_mutex_unlock(&s->loop_lock);
  return NULL;
}

// The kernel's INIT request (fbuf): libfuse answers it (ll_init sets what it
// knows) with its reply going into a pipe (the session's descriptor number
// points at the pipe meanwhile; no other thread uses it yet: the workers
// start after, and JavaScript hears of the init only once the reply is out);
// then the bridge adds the flags libfuse 3.14 does not know, when asked for
// and offered, and writes the reply to /dev/fuse itself.
// - FUSE_HANDLE_KILLPRIV_V2: the kernel stops asking for security.capability
//   before writes and leaves dropping set-ID bits to the filesystem, telling
//   it when (intake.c);
// - FUSE_PASSTHROUGH (flags2, with FUSE_INIT_EXT) and max_stack_depth 1 (the
//   backing files are on a file system that stacks on nothing, and the mount
//   may itself be stacked under overlayfs). The kernel refuses passthrough
//   together with the writeback cache (Linux 6.9+ process_init_reply), so it
//   is not asked for then.
// Returns 0, or -errno when the reply could not be sent.
static int negotiate_init (bridge_session_t *s, struct fuse_buf *fbuf, size_t len) {
  const struct kfuse_in_header *in = (const struct kfuse_in_header *) fbuf->mem;
  int fd = fuse_session_fd(s->se);
  int p[2] = { -1, -1 };
  int saved = -1;
  if ((fbuf->flags & FUSE_BUF_IS_FD) || len < sizeof(*in) + 16 || in->opcode != KFUSE_INIT ||
      (saved = dup(fd)) < 0 || pipe2(p, O_CLOEXEC) != 0 || dup2(p[1], fd) < 0) {
    // Not what a new connection starts with, or no pipe: libfuse answers alone.
    if (saved >= 0) close(saved);
    if (p[0] >= 0) { close(p[0]); close(p[1]); }
    fuse_session_process_buf(s->se, fbuf);
    return 0;
  }
  const struct kfuse_init_in *arg = (const struct kfuse_init_in *) (in + 1);
  uint64_t offered = arg->flags;
  if ((offered & KFUSE_INIT_EXT) && len >= sizeof(*in) + offsetof(struct kfuse_init_in, flags2) + 4) offered |= (uint64_t) arg->flags2 << 32;
  s->kernel_offered = offered;
  fuse_session_process_buf(s->se, fbuf);
  int err = dup2(saved, fd) < 0 ? errno : 0;
  close(saved);
  close(p[1]);
  char out[1024];
  ssize_t n = err == 0 ? read(p[0], out, sizeof(out)) : -1;
  close(p[0]);
  if (err != 0) return -err;
  if (n < (ssize_t) sizeof(struct kfuse_out_header)) return -EIO;
  struct kfuse_out_header *oh = (struct kfuse_out_header *) out;
  if (oh->error == 0 && (size_t) n >= sizeof(*oh) + sizeof(struct kfuse_init_out) && oh->len == (uint32_t) n) {
    struct kfuse_init_out *o = (struct kfuse_init_out *) (oh + 1);
    s->init_intercepted = 1;
    if (s->killpriv_wanted && (offered & KFUSE_HANDLE_KILLPRIV_V2)) {
      o->flags |= (uint32_t) KFUSE_HANDLE_KILLPRIV_V2;
      s->killpriv_on = 1;
    }
    if (s->passthrough_wanted && (offered & KFUSE_INIT_EXT) && (offered & KFUSE_PASSTHROUGH) &&
        !(o->flags & KFUSE_WRITEBACK_CACHE)) {
      o->flags |= (uint32_t) KFUSE_INIT_EXT;
      o->flags2 |= (uint32_t) (KFUSE_PASSTHROUGH >> 32);
      o->max_stack_depth = 1;
      s->passthrough_on = 1;
    }
  }
  ssize_t w;
  do { w = write(fd, out, (size_t) n); } while (w < 0 && errno == EINTR);
  if (w != n) {
    s->killpriv_on = s->passthrough_on = 0;
    return w < 0 ? -errno : -EIO;
  }
  return 0;
}

static void *loop_thread (void *data) {
  bridge_session_t *s = (bridge_session_t *) data;
  struct fuse_buf fbuf;
  memset(&fbuf, 0, sizeof(fbuf));
  int res;
  do { res = fuse_session_receive_buf(s->se, &fbuf); } while (res == -EINTR || res == -EAGAIN);
  if (res > 0) res = negotiate_init(s, &fbuf, (size_t) res);
  else if (res == 0) res = -ENODEV;
  free(fbuf.mem);
  if (res < 0) {
    s->loop_result = res;
    fuse_session_exit(s->se);
  } else {
    intake_init_done(s);
    pthread_mutex_lock(&s->loop_lock);
    s->loop_threads = 1;
    s->loop_idle = 1;
    pthread_mutex_unlock(&s->loop_lock);
    if (!start_worker(s)) {
      s->loop_result = -EAGAIN;
      fuse_session_exit(s->se);
      pthread_mutex_lock(&s->loop_lock);
      s->loop_threads = s->loop_idle = 0;
      pthread_mutex_unlock(&s->loop_lock);
    }
    pthread_mutex_lock(&s->loop_lock);
    while (s->loop_threads > 0) pthread_cond_wait(&s->loop_cond, &s->loop_lock);
    pthread_mutex_unlock(&s->loop_lock);
  }
  __atomic_store_n(&s->loop_done, 1, __ATOMIC_RELEASE);
  req_notify(s, req_new(s, NULL, LL_EXIT, 0));
  return NULL;
}

static void throw_code (napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
}

static void session_free_early (bridge_session_t *s) {
  track_free(s);
  pt_free(s);
  pthread_mutex_destroy(&s->loop_lock);
  pthread_cond_destroy(&s->loop_cond);
  pthread_mutex_destroy(&s->track_lock);
  pthread_mutex_destroy(&s->nodes_lock);
  free(s->mnt);
  free(s);
}

// Takes the bridge's own options out of a comma-separated "-o" list (in
// place): max_write=N and writeback_cache (libfuse 3 sets both in init, not
// as mount options), passthrough and handle_killpriv_v2 (the bridge adds them
// to the INIT reply: negotiate_init), parallel_dirops (asked for in ll_init). Returns 0 for a malformed max_write.
static int take_bridge_options (char *opts, bridge_session_t *s) {
  char *out = opts;
  char *p = opts;
  while (*p != 0) {
    char *end = strchr(p, ',');
    size_t n = end != NULL ? (size_t) (end - p) : strlen(p);
    if (n > 10 && strncmp(p, "max_write=", 10) == 0) {
      char num[32];
      size_t k = n - 10 < sizeof(num) - 1 ? n - 10 : sizeof(num) - 1;
      memcpy(num, p + 10, k);
      num[k] = 0;
      char *bad = NULL;
      unsigned long v = strtoul(num, &bad, 10);
      if (bad == num || *bad != 0 || v == 0 || v > (1UL << 30)) return 0;
      s->max_write = (unsigned) v;
    } else if (n == 15 && strncmp(p, "writeback_cache", 15) == 0) {
      s->writeback_wanted = 1;
    } else if (n == 11 && strncmp(p, "passthrough", 11) == 0) {
      s->passthrough_wanted = 1;
    } else if (n == 18 && strncmp(p, "passthrough_writes", 18) == 0) {
      s->passthrough_writes_wanted = 1;
    } else if (n == 18 && strncmp(p, "handle_killpriv_v2", 18) == 0) {
      s->killpriv_wanted = 1;
    } else if (n == 15 && strncmp(p, "parallel_dirops", 15) == 0) {
      s->parallel_dirops_wanted = 1;
    } else if (n == 17 && strncmp(p, "no_atomic_o_trunc", 17) == 0) {
      s->atomic_o_trunc_off = 1;
    } else if (n == 9 && strncmp(p, "posix_acl", 9) == 0) {
      s->posix_acl_wanted = 1;
    } else if (n > 0) {
      if (out != opts) *out++ = ',';
      memmove(out, p, n);
      out += n;
    }
    p += n;
    if (*p == ',') p++;
  }
  *out = 0;
  return 1;
}

// mount(mountpoint, options: string ("-o" list, comma separated), onRequest, attrTimeout) -> session
napi_value js_mount (napi_env env, napi_callback_info info) {
  JS_ARGS(4)
  char mnt[4096], opts[8192];
  size_t len;
  napi_valuetype cb_type = napi_undefined;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], mnt, sizeof(mnt), &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], opts, sizeof(opts), &len) != napi_ok ||
      napi_typeof(env, argv[2], &cb_type) != napi_ok || cb_type != napi_function) {
    js_throw_type(env, "mount(mountpoint: string, options: string, onRequest: function, attrTimeout)");
    return NULL;
  }

  bridge_session_t *s = calloc(1, sizeof(bridge_session_t));
  if (s == NULL) { throw_code(env, "ENOMEM", "out of memory"); return NULL; }
  s->mnt = strdup(mnt);
  s->next_nodeid = FUSE_ROOT_ID + 1;
  pthread_mutex_init(&s->nodes_lock, NULL);
  pthread_mutex_init(&s->loop_lock, NULL);
  pthread_cond_init(&s->loop_cond, NULL);
  if (!track_init(s) || !pt_init(s)) {
    session_free_early(s);
    throw_code(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (!take_bridge_options(opts, s)) {
    session_free_early(s);
    throw_code(env, "EINVAL", "bad max_write= option");
    return NULL;
  }
  char *fargv[] = { "strata", "-o", opts, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(opts[0] ? 3 : 1, fargv);
  if (argc >= 4) napi_get_value_double(env, argv[3], &s->attr_timeout);
  napi_value resource_name;
  napi_create_string_utf8(env, "strata-fuse-bridge", NAPI_AUTO_LENGTH, &resource_name);
  if (s->mnt == NULL ||
      napi_create_threadsafe_function(env, argv[2], NULL, resource_name, 0, 1, NULL, NULL, s, req_call_js, &s->tsfn) != napi_ok) {
    session_free_early(s);
    throw_code(env, "EIO", "cannot create the request queue");
    return NULL;
  }
  s->se = fuse_session_new(&args, &bridge_ll_ops, sizeof(bridge_ll_ops), s);
  fuse_opt_free_args(&args);
  if (s->se == NULL) {
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free_early(s);
    throw_code(env, "EINVAL", "fuse_session_new failed (bad mount options? libfuse says why on stderr)");
    return NULL;
  }
  errno = 0;
  if (fuse_session_mount(s->se, mnt) != 0) {
    int err = errno;
    fuse_session_destroy(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free_early(s);
    char msg[256];
    snprintf(msg, sizeof(msg), "fuse_session_mount failed (%s); is /dev/fuse usable?", err ? strerror(err) : "see stderr");
    throw_code(env, "EIO", msg);
    return NULL;
  }
  if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free_early(s);
    throw_code(env, "EAGAIN", "cannot start the FUSE thread");
    return NULL;
  }
  pthread_detach(s->thread);
  napi_value ext;
  napi_create_external(env, s, NULL, NULL, &ext);
  return ext;
}

// close(session) -> number of requests it answered with EIO: after the
// connection ended (LL_EXIT) and, normally, after the last reply. Frees the
// libfuse session, the node table and the request queue. Throws EBUSY while
// the connection still serves (unmount first). A second close does nothing.
napi_value js_close (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->closed) return js_num(env, 0);
  if (!__atomic_load_n(&s->loop_done, __ATOMIC_ACQUIRE)) {
    throw_code(env, "EBUSY", "the session still serves its mount: unmount first, close after the exit record");
    return NULL;
  }
  s->closed = 1;
  size_t dropped = req_drop_session(s);
  fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  nodes_free(s);
  track_free(s);
  pt_free(s);
  pthread_mutex_lock(&s->nodes_lock);
  bridge_req_t *nodes = s->announced_head;
  s->announced_head = s->announced_tail = NULL;
  s->announced = 0;
  pthread_mutex_unlock(&s->nodes_lock);
  while (nodes != NULL) {
    bridge_req_t *next = nodes->next;
    req_free(nodes);
    nodes = next;
  }
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  return js_num(env, (double) dropped);
}

// unref(session): the session no longer keeps the event loop alive.
napi_value js_unref (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL || s->closed) return NULL;
  napi_unref_threadsafe_function(env, s->tsfn);
  return NULL;
}

// fastPaths(session, storeRoot, flags, entryTimeout, negativeTimeout[, maxNodes]):
// turns the FUSE thread's own answers on (LL_FAST_READ | LL_FAST_WRITE) or off
// (0). maxNodes bounds the node table below its default (tests use a tiny one).
napi_value js_fast_paths (napi_env env, napi_callback_info info) {
  JS_ARGS(6)
  char root[4096];
  size_t len = 0;
  uint32_t flags = 0;
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (argc < 5 || napi_get_value_string_utf8(env, argv[1], root, sizeof(root), &len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &flags) != napi_ok) {
    js_throw_type(env, "fastPaths(session, storeRoot, flags, entryTimeout, negativeTimeout[, maxNodes])");
    return NULL;
  }
  if (s->closed) return NULL;
  if (flags != 0) {
    if (!nodes_ready(s)) {
      int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) {
        throw_code(env, "EIO", "cannot open the store root");
        return NULL;
      }
      size_t cap = node_table_capacity();
      double max_nodes = argc >= 6 ? js_dbl(env, argv[5]) : 0;
      if (max_nodes >= 1 && (size_t) max_nodes < cap) cap = (size_t) max_nodes;
      if (!nodes_init(s, fd, cap)) {
        throw_code(env, "ENOMEM", "cannot make the node table");
        return NULL;
      }
    }
    s->entry_timeout = js_dbl(env, argv[3]);
    s->negative_timeout = js_dbl(env, argv[4]);
    s->daemon_uid = geteuid();
    s->daemon_gid = getegid();
  }
  // seq_cst, as the FUSE thread's count-then-check (direct_change_begin): a
  // release store could pass JavaScript's later read of directChanges().
  __atomic_store_n(&s->fast, (int) flags, __ATOMIC_SEQ_CST);
  return NULL;
}

// allocNodeid(session): the next node id (one counter for JavaScript and the FUSE thread).
napi_value js_alloc_nodeid (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_num(env, (double) __atomic_fetch_add(&s->next_nodeid, 1, __ATOMIC_RELAXED));
}

// fastCounts(session) -> Float64Array: requests answered on the FUSE thread, per op.
napi_value js_fast_counts (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  napi_value ab, arr;
  void *data;
  napi_create_arraybuffer(env, LL_OP_COUNT * sizeof(double), &data, &ab);
  for (int i = 0; i < LL_OP_COUNT; i++) ((double *) data)[i] = (double) __atomic_load_n(&s->fast_counts[i], __ATOMIC_RELAXED);
  napi_create_typedarray(env, napi_float64_array, LL_OP_COUNT, ab, 0, &arr);
  return arr;
}

// writebackCache(session) -> the kernel caches writes (asked for and granted at init).
napi_value js_writeback_cache (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  napi_value v;
  napi_get_boolean(env, __atomic_load_n(&s->writeback_on, __ATOMIC_ACQUIRE) != 0, &v);
  return v;
}

static void set_bool (napi_env env, napi_value o, const char *name, int v) {
  napi_value b;
  napi_get_boolean(env, v != 0, &b);
  napi_set_named_property(env, o, name, b);
}

static void set_num (napi_env env, napi_value o, const char *name, double v) {
  napi_set_named_property(env, o, name, js_num(env, v));
}

// features(session) -> what the connection negotiated at INIT, and the
// passthrough counters: { initSeen, writebackCache, passthrough,
// handleKillprivV2, offeredPassthrough, offeredKillprivV2, parallelDirops,
// offeredParallelDirops, readdirplus, posixAcl, offeredPosixAcl, atomicOTrunc, passthroughOpens,
// passthroughShared, passthroughRefused, backingFiles }.
napi_value js_features (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  napi_value o;
  napi_create_object(env, &o);
  set_bool(env, o, "initSeen", s->init_intercepted);
  set_bool(env, o, "writebackCache", __atomic_load_n(&s->writeback_on, __ATOMIC_ACQUIRE));
  set_bool(env, o, "passthrough", s->passthrough_on);
  set_bool(env, o, "handleKillprivV2", s->killpriv_on);
  set_bool(env, o, "offeredPassthrough", (s->kernel_offered & KFUSE_PASSTHROUGH) != 0 && (s->kernel_offered & KFUSE_INIT_EXT) != 0);
  set_bool(env, o, "offeredKillprivV2", (s->kernel_offered & KFUSE_HANDLE_KILLPRIV_V2) != 0);
  set_bool(env, o, "parallelDirops", s->parallel_dirops_on);
  set_bool(env, o, "offeredParallelDirops", s->parallel_dirops_offered);
  set_bool(env, o, "readdirplus", s->readdirplus_on);
  set_bool(env, o, "posixAcl", s->posix_acl_on);
  set_bool(env, o, "atomicOTrunc", s->atomic_o_trunc_on);
  set_bool(env, o, "offeredPosixAcl", s->posix_acl_offered);
  set_num(env, o, "passthroughOpens", (double) __atomic_load_n(&s->pt_opens, __ATOMIC_RELAXED));
  set_num(env, o, "passthroughShared", (double) __atomic_load_n(&s->pt_shared, __ATOMIC_RELAXED));
  set_num(env, o, "passthroughRefused", (double) __atomic_load_n(&s->pt_refused, __ATOMIC_RELAXED));
  set_num(env, o, "backingFiles", (double) __atomic_load_n(&s->pt_backing, __ATOMIC_RELAXED));
  set_bool(env, o, "passthroughWrites", s->passthrough_on && s->passthrough_writes_wanted);
  set_num(env, o, "passthroughWriteOpens", (double) __atomic_load_n(&s->pt_write_opens, __ATOMIC_RELAXED));
  set_num(env, o, "passthroughWriters", (double) __atomic_load_n(&s->pt_writers, __ATOMIC_SEQ_CST));
  return o;
}

// fastBytes(session) -> [read, written]: bytes of the reads (the sizes the kernel
// asked for) and writes the FUSE thread answered.
napi_value js_fast_bytes (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_counter_pair(env, &s->fast_bytes[0], &s->fast_bytes[1]);
}

// directChanges(session) -> direct writes and fallocates running on FUSE threads now
// (after fastPaths(... TRACK ...) JavaScript waits for 0: none of them is untracked).
napi_value js_direct_changes (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_num(env, (double) __atomic_load_n(&s->direct_changes, __ATOMIC_SEQ_CST));
}

// fastBusy(session) -> FUSE threads inside an answer that uses the store right now.
napi_value js_fast_busy (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_num(env, (double) __atomic_load_n(&s->fast_busy, __ATOMIC_SEQ_CST));
}

// resetNodes(session, storeRoot): the store root moved (swap). Every node
// descriptor and every node not yet announced belongs to the old store: all
// go (closed once no request uses them), and storeRoot becomes the root's.
// Call with the fast paths off and fastBusy() at 0; a lookup resolved before
// it files no descriptor (node_gen).
napi_value js_reset_nodes (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  char root[4096];
  size_t len = 0;
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[1], root, sizeof(root), &len) != napi_ok) {
    js_throw_type(env, "resetNodes(session, storeRoot)");
    return NULL;
  }
  if (s->closed) return NULL;
  __atomic_add_fetch(&s->node_gen, 1, __ATOMIC_SEQ_CST);
  if (!nodes_ready(s)) return NULL;
  int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    throw_code(env, "EIO", "cannot open the new store root");
    return NULL;
  }
  nodes_reset(s, fd);
  return NULL;
}

// pendingRequests() -> requests handed to JavaScript and not answered yet (all sessions).
napi_value js_pending_requests (napi_env env, napi_callback_info info) {
  (void) info;
  return js_num(env, (double) req_pending());
}
