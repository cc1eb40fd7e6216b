// nodes.c - the node table: node id -> O_PATH descriptor of the object in the
// store, the model of libfuse's passthrough_hp.
//
// A descriptor enters the table when the kernel learns a node id from a reply
// that carries one (a lookup resolved on the FUSE thread, a create or mkdir
// there, or an entry JavaScript answered: fastpath.c, fast_entry_fd) and
// leaves when the kernel forgets the node (lookup count 0). A node
// without a descriptor is simply served by JavaScript, so the table may drop
// entries at will: it holds at most max_nodes (half the descriptor limit) and,
// when full, lets go of the least recently used non-directory (a directory the
// kernel keeps cached is never looked up again, so once out of the table every
// create in it would go to JavaScript). Except a node with a handle the bridge
// made: JavaScript does not know that handle, so only this descriptor can
// answer getattr/setattr of the node once its last name is gone (fstat and
// fchmod send no handle); such an entry stays until the release. In-use
// entries are reference counted: a descriptor is closed only once nobody uses
// it.
//
// Lock order: nodes_lock is a leaf (no other lock, no system call under it
// except close() of a dead entry's descriptor).
#include "bridge.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

static void lru_remove_locked (bridge_session_t *s, bridge_node_t *n) {
  if (n->nodeid == FUSE_ROOT_ID) return;
  if (n->lru_prev != NULL) n->lru_prev->lru_next = n->lru_next;
  else if (s->lru_head == n) s->lru_head = n->lru_next;
  if (n->lru_next != NULL) n->lru_next->lru_prev = n->lru_prev;
  else if (s->lru_tail == n) s->lru_tail = n->lru_prev;
  n->lru_prev = n->lru_next = NULL;
}

static void lru_push_locked (bridge_session_t *s, bridge_node_t *n) {
  if (n->nodeid == FUSE_ROOT_ID) return;
  n->lru_prev = NULL;
  n->lru_next = s->lru_head;
  if (s->lru_head != NULL) s->lru_head->lru_prev = n;
  s->lru_head = n;
  if (s->lru_tail == NULL) s->lru_tail = n;
}

static size_t node_bucket (bridge_session_t *s, uint64_t nodeid) {
  return (size_t) ((nodeid * 0x9E3779B97F4A7C15ULL) >> 20) & (s->nbuckets - 1);
}

static bridge_node_t *node_find_locked (bridge_session_t *s, uint64_t nodeid) {
  if (s->buckets == NULL) return NULL;
  for (bridge_node_t *n = s->buckets[node_bucket(s, nodeid)]; n != NULL; n = n->next) {
    if (n->nodeid == nodeid) return n;
  }
  return NULL;
}

static void node_unlink_locked (bridge_session_t *s, bridge_node_t *n) {
  bridge_node_t **pp = &s->buckets[node_bucket(s, n->nodeid)];
  while (*pp != NULL && *pp != n) pp = &(*pp)->next;
  if (*pp == n) *pp = n->next;
  lru_remove_locked(s, n);
  s->nnodes--;
  n->dead = 1;
  n->settled = 0;
  n->settled_seq++;
  if (n->refs == 0) { close(n->fd); free(n); }
}

static void nodes_grow_locked (bridge_session_t *s) {
  size_t nb = s->nbuckets * 2;
  bridge_node_t **b = calloc(nb, sizeof(bridge_node_t *));
  if (b == NULL) return;
  bridge_node_t **old = s->buckets;
  size_t oldn = s->nbuckets;
  s->buckets = b;
  s->nbuckets = nb;
  for (size_t i = 0; i < oldn; i++) {
    bridge_node_t *n = old[i];
    while (n != NULL) {
      bridge_node_t *next = n->next;
      size_t k = node_bucket(s, n->nodeid);
      n->next = b[k];
      b[k] = n;
      n = next;
    }
  }
  free(old);
}

int nodes_ready (bridge_session_t *s) {
  pthread_mutex_lock(&s->nodes_lock);
  int ready = s->buckets != NULL;
  pthread_mutex_unlock(&s->nodes_lock);
  return ready;
}

// Makes the table with the store root's descriptor as the root node's (taken
// over, also on failure). 0 when out of memory.
int nodes_init (bridge_session_t *s, int root_fd, size_t max_nodes) {
  pthread_mutex_lock(&s->nodes_lock);
  s->nbuckets = 1024;
  s->buckets = calloc(s->nbuckets, sizeof(bridge_node_t *));
  s->max_nodes = max_nodes;
  pthread_mutex_unlock(&s->nodes_lock);
  if (s->buckets == NULL) { close(root_fd); return 0; }
  return node_learned(s, FUSE_ROOT_ID, root_fd, 1);
}

void nodes_free (bridge_session_t *s) {
  pthread_mutex_lock(&s->nodes_lock);
  for (size_t i = 0; s->buckets != NULL && i < s->nbuckets; i++) {
    bridge_node_t *n = s->buckets[i];
    while (n != NULL) {
      bridge_node_t *next = n->next;
      close(n->fd);
      free(n);
      n = next;
    }
  }
  free(s->buckets);
  s->buckets = NULL;
  s->lru_head = s->lru_tail = NULL;
  s->nnodes = 0;
  pthread_mutex_unlock(&s->nodes_lock);
}

// Closes and frees a list of entries (linked through `next`) off the caller's
// thread: a swap empties a table of up to half the descriptor limit while
// requests are held, and 100k close() calls would hold them ~100 ms.
static void *nodes_closer (void *arg) {
  bridge_node_t *n = (bridge_node_t *) arg;
  while (n != NULL) {
    bridge_node_t *next = n->next;
    close(n->fd);
    free(n);
    n = next;
  }
  return NULL;
}

void nodes_reset (bridge_session_t *s, int root_fd) {
  bridge_node_t *unused = NULL;
  pthread_mutex_lock(&s->nodes_lock);
  for (size_t i = 0; s->buckets != NULL && i < s->nbuckets; i++) {
    bridge_node_t *n = s->buckets[i];
    while (n != NULL) {
      bridge_node_t *next = n->next;
      n->dead = 1;
      n->settled = 0;
      n->settled_seq++;
      n->lru_prev = n->lru_next = NULL;
      // In use: freed by the last node_release. Else: closed by the closer thread.
      if (n->refs == 0) { n->next = unused; unused = n; }
      n = next;
    }
    s->buckets[i] = NULL;
  }
  s->lru_head = s->lru_tail = NULL;
  s->nnodes = 0;
  bridge_req_t *announced = s->announced_head;
  s->announced_head = s->announced_tail = NULL;
  s->announced = 0;
  pthread_mutex_unlock(&s->nodes_lock);
  while (announced != NULL) {
    bridge_req_t *next = announced->next;
    req_free(announced);
    announced = next;
  }
  node_learned(s, FUSE_ROOT_ID, root_fd, 1);
  if (unused != NULL) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, nodes_closer, unused) != 0) nodes_closer(unused);
    pthread_attr_destroy(&attr);
  }
}

// Raises the descriptor limit as far as allowed (the node table holds one per
// node the kernel knows) and returns how many the table may hold.
size_t node_table_capacity (void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  struct rlimit want = rl;
  want.rlim_max = rl.rlim_max < (1U << 20) ? (1U << 20) : rl.rlim_max;
  want.rlim_cur = want.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
    want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) want = rl;
  }
  // Half for the table, the rest for open files, the journal, sockets.
  return (size_t) (want.rlim_cur / 2);
}

// The entry of `nodeid` with one more reference, moved to the front of the recency list; NULL when absent. Under nodes_lock.
static bridge_node_t *acquire_locked (bridge_session_t *s, uint64_t nodeid) {
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL) {
    n->refs++;
    if (n != s->lru_head) { lru_remove_locked(s, n); lru_push_locked(s, n); }
  }
  return n;
}

bridge_node_t *node_acquire (bridge_session_t *s, uint64_t nodeid) {
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = acquire_locked(s, nodeid);
  pthread_mutex_unlock(&s->nodes_lock);
  return n;
}

void node_release (bridge_session_t *s, bridge_node_t *n) {
  if (n == NULL) return;
  pthread_mutex_lock(&s->nodes_lock);
  if (--n->refs == 0 && n->dead) { close(n->fd); free(n); }
  pthread_mutex_unlock(&s->nodes_lock);
}

// The kernel learned `nodeid` once more. With fd >= 0 and no entry yet, the
// descriptor becomes the node's (a directory when is_dir); otherwise fd is
// closed. Returns 1 when kept.
int node_learned (bridge_session_t *s, uint64_t nodeid, int fd, int is_dir) {
  int kept = 0;
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL) {
    n->nlookup++;
  } else if (fd >= 0 && s->buckets != NULL) {
    if (s->nnodes >= s->max_nodes) {
      // The least recently used that is neither pinned by a bridge handle nor
      // a directory, among the 64 least recent; else the least recent
      // unpinned one; a table full of pinned entries grows past max_nodes.
      bridge_node_t *victim = NULL, *fallback = NULL;
      bridge_node_t *c = s->lru_tail;
      for (int steps = 0; c != NULL && steps < 64; steps++, c = c->lru_prev) {
        if (c->opens > 0) continue;
        if (!c->is_dir) { victim = c; break; }
        if (fallback == NULL) fallback = c;
      }
      if (victim == NULL) victim = fallback;
      if (victim != NULL) node_unlink_locked(s, victim);
    }
    n = calloc(1, sizeof(bridge_node_t));
    if (n != NULL) {
      n->nodeid = nodeid;
      n->fd = fd;
      n->nlookup = 1;
      n->is_dir = is_dir;
      size_t k = node_bucket(s, nodeid);
      n->next = s->buckets[k];
      s->buckets[k] = n;
      lru_push_locked(s, n);
      if (++s->nnodes > s->nbuckets) nodes_grow_locked(s);
      kept = 1;
    }
  }
  pthread_mutex_unlock(&s->nodes_lock);
  if (!kept && fd >= 0) close(fd);
  return kept;
}

// A handle the bridge made on `nodeid` was opened (+1) or released (-1).
void node_pin (bridge_session_t *s, uint64_t nodeid, int delta) {
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL) n->opens += delta;
  pthread_mutex_unlock(&s->nodes_lock);
}

// The kernel forgot `count` lookups of `nodeid`. An entry whose count was not
// complete (the node was known before its descriptor came) just leaves early.
void node_forget (bridge_session_t *s, uint64_t nodeid, uint64_t count) {
  if (nodeid == FUSE_ROOT_ID) return;
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL && (n->nlookup -= (int64_t) count) <= 0) node_unlink_locked(s, n);
  pthread_mutex_unlock(&s->nodes_lock);
}

// ---- settled nodes (settled.c) ----------------------------------------------------------
//
// A vouch is a flag on the entry; a revoke clears it and bumps settled_seq.
// A FUSE thread answering from a vouch reads the flag and the sequence number
// when it takes the entry, makes its system call, and answers only if both are
// unchanged when it lets go of the entry (all under nodes_lock). JavaScript
// revokes before the restore changes the object, so an answer that passes saw
// the object before the change; one that overlaps the revoke goes to
// JavaScript. An entry that dies (forgotten, evicted, reset) loses its vouch
// the same way, so a thread holding it never answers from a vouch that a
// revoke could no longer find.

bridge_node_t *node_acquire_vouched (bridge_session_t *s, uint64_t nodeid, int *settled, uint32_t *seq) {
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = acquire_locked(s, nodeid);
  if (n != NULL) {
    *settled = n->settled;
    *seq = n->settled_seq;
  }
  pthread_mutex_unlock(&s->nodes_lock);
  return n;
}

int node_release_vouched (bridge_session_t *s, bridge_node_t *n, uint32_t seq) {
  pthread_mutex_lock(&s->nodes_lock);
  int holds = n->settled && !n->dead && n->settled_seq == seq;
  if (--n->refs == 0 && n->dead) { close(n->fd); free(n); }
  pthread_mutex_unlock(&s->nodes_lock);
  return holds;
}

int node_set_journal (bridge_session_t *s, uint64_t nodeid, int on) {
  if (nodeid == FUSE_ROOT_ID) return 0;
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL) __atomic_store_n(&n->journal, on ? 1 : 0, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&s->nodes_lock);
  return n != NULL;
}

int node_set_settled (bridge_session_t *s, uint64_t nodeid, int on) {
  // The root hides strata's private directory: JavaScript answers for it.
  if (nodeid == FUSE_ROOT_ID) return 0;
  pthread_mutex_lock(&s->nodes_lock);
  bridge_node_t *n = node_find_locked(s, nodeid);
  if (n != NULL) {
    if (on) {
      n->settled = 1;
    } else if (n->settled) {
      n->settled = 0;
      n->settled_seq++;
    }
  }
  pthread_mutex_unlock(&s->nodes_lock);
  return n != NULL;
}
