// track.c - the checkpoints' clearance table: which blocks of which files the
// FUSE thread may overwrite itself while changes are tracked (LL_FAST_TRACK).
//
// While a checkpoint exists, the first change of a 64 KiB block must reach
// JavaScript, which saves the block's old contents durably in every
// checkpoint's copy store before the change applies (docs/checkpoints.md).
// After that, writes to the block need nothing but the pwrite. JavaScript
// publishes here, per store inode number (the st_ino of the backing file),
// the blocks that every checkpoint has saved durably (trackMark: a bitmap)
// and the block from which on every block is clear (past every checkpoint's
// T0 size, or 0 for a file created after every checkpoint). A direct write
// (fastpath.c) answers on the FUSE thread only when every block it touches is
// clear; otherwise it goes to JavaScript as before.
//
// Safety: a bit is only ever set after the save it stands for is durable, so
// a write answered here never overwrites a block whose old contents are not
// in the copy store. A new checkpoint clears the table (trackReset) before it
// starts, and JavaScript waits until no direct change that checked the old
// table is still running (directChanges: the count goes up before the check,
// the check and the reset are under track_lock), so none lands after T0
// unseen. Deleting a checkpoint keeps the table: what every checkpoint of a
// set saved, every checkpoint of a subset saved.
//
// Lock order: track_lock is a leaf. Nothing else is taken while it is held,
// and it is never held across a system call.
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TRACK_BUCKETS 4096
// Largest block index a mark may set (a file of 2^40 blocks would need more
// memory than anyone has; refuse it, the writes just keep going to JavaScript).
#define TRACK_MAX_BLOCKS (1ULL << 32)

typedef struct track_entry {
  uint64_t ino;
  uint64_t all_from;       // blocks >= all_from are clear; UINT64_MAX: none beyond the bitmap
  uint64_t nwords;         // bitmap words (64 blocks each)
  uint64_t *bits;
  struct track_entry *next;
} track_entry_t;

struct track_table {
  unsigned shift;          // log2 of the block size; 0: nothing is clear
  track_entry_t *buckets[TRACK_BUCKETS];
};

static size_t bucket_of (uint64_t ino) {
  return (size_t) ((ino * 0x9E3779B97F4A7C15ULL) >> 52) % TRACK_BUCKETS;
}

static void entry_free (track_entry_t *e) {
  free(e->bits);
  free(e);
}

static void table_clear (struct track_table *t) {
  for (size_t i = 0; i < TRACK_BUCKETS; i++) {
    track_entry_t *e = t->buckets[i];
    while (e != NULL) {
      track_entry_t *next = e->next;
      entry_free(e);
      e = next;
    }
    t->buckets[i] = NULL;
  }
}

int track_init (bridge_session_t *s) {
  pthread_mutex_init(&s->track_lock, NULL);
  s->track = calloc(1, sizeof(struct track_table));
  return s->track != NULL;
}

void track_free (bridge_session_t *s) {
  pthread_mutex_lock(&s->track_lock);
  if (s->track != NULL) {
    table_clear(s->track);
    free(s->track);
    s->track = NULL;
  }
  pthread_mutex_unlock(&s->track_lock);
}

static track_entry_t *find (struct track_table *t, uint64_t ino) {
  for (track_entry_t *e = t->buckets[bucket_of(ino)]; e != NULL; e = e->next) {
    if (e->ino == ino) return e;
  }
  return NULL;
}

int track_covers (bridge_session_t *s, uint64_t ino, uint64_t off, uint64_t size) {
  if (size == 0) return 0;
  int ok = 0;
  pthread_mutex_lock(&s->track_lock);
  struct track_table *t = s->track;
  track_entry_t *e = t != NULL && t->shift != 0 ? find(t, ino) : NULL;
  if (e != NULL) {
    uint64_t first = off >> t->shift;
    uint64_t last = (off + size - 1) >> t->shift;
    ok = 1;
    for (uint64_t b = first; b <= last && ok; b++) {
      if (b >= e->all_from) break;
      if (b / 64 >= e->nwords || (e->bits[b / 64] & (1ULL << (b % 64))) == 0) ok = 0;
    }
  }
  pthread_mutex_unlock(&s->track_lock);
  return ok;
}

static uint64_t ino_arg (napi_env env, napi_value lo, napi_value hi) {
  return (uint64_t) js_dbl(env, lo) | ((uint64_t) js_dbl(env, hi) << 32);
}

// trackReset(session, blockSize): nothing is clear any more (a checkpoint is
// being taken, or tracking ends); blocks are blockSize bytes (a power of two).
napi_value js_track_reset (napi_env env, napi_callback_info info) {
  JS_ARGS(2)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  double bs = argc >= 2 ? js_dbl(env, argv[1]) : 0;
  unsigned shift = 0;
  while (shift < 40 && (double) (1ULL << shift) < bs) shift++;
  if (bs < 512 || (double) (1ULL << shift) != bs) { js_throw_type(env, "trackReset(session, blockSize: a power of two >= 512)"); return NULL; }
  pthread_mutex_lock(&s->track_lock);
  if (s->track != NULL) {
    table_clear(s->track);
    s->track->shift = shift;
  }
  pthread_mutex_unlock(&s->track_lock);
  return NULL;
}

// trackMark(session, inoLo, inoHi, allFrom, first, count) -> boolean: blocks
// [first, first + count) of store inode inoHi:inoLo are saved by every
// checkpoint, and so is every block from allFrom on (-1: not known). False
// when nothing was recorded (no trackReset yet, session closed, no memory).
napi_value js_track_mark (napi_env env, napi_callback_info info) {
  JS_ARGS(6)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (argc < 6) { js_throw_type(env, "trackMark(session, inoLo, inoHi, allFrom, first, count)"); return NULL; }
  uint64_t ino = ino_arg(env, argv[1], argv[2]);
  double all_from = js_dbl(env, argv[3]);
  double first = js_dbl(env, argv[4]);
  double count = js_dbl(env, argv[5]);
  if (!(first >= 0) || !(count >= 0) || first + count > (double) TRACK_MAX_BLOCKS) return js_bool(env, 0);
  uint64_t from = all_from < 0 ? UINT64_MAX : (uint64_t) all_from;
  uint64_t b0 = (uint64_t) first, b1 = (uint64_t) first + (uint64_t) count;
  // Bits at or past from need no room: they are clear anyway.
  if (b1 > from) b1 = from;
  int ok = 0;
  pthread_mutex_lock(&s->track_lock);
  struct track_table *t = s->track;
  if (t != NULL && t->shift != 0 && !s->closed) {
    track_entry_t *e = find(t, ino);
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
      e->ino = ino;
      e->all_from = UINT64_MAX;
      size_t b = bucket_of(ino);
      e->next = t->buckets[b];
      t->buckets[b] = e;
    }
    if (e != NULL) {
      ok = 1;
      if (b1 > b0) {
        uint64_t need = (b1 + 63) / 64;
        if (need > e->nwords) {
          uint64_t *bits = realloc(e->bits, need * sizeof(uint64_t));
          if (bits == NULL) ok = 0;
          else {
            memset(bits + e->nwords, 0, (need - e->nwords) * sizeof(uint64_t));
            e->bits = bits;
            e->nwords = need;
          }
        }
        for (uint64_t b = b0; ok && b < b1; b++) e->bits[b / 64] |= 1ULL << (b % 64);
      }
      if (ok && from < e->all_from) e->all_from = from;
    }
  }
  pthread_mutex_unlock(&s->track_lock);
  return js_bool(env, ok);
}

// trackForget(session, inoLo, inoHi): nothing of store inode inoHi:inoLo is
// clear any more (its number now names another object of a checkpoint).
napi_value js_track_forget (napi_env env, napi_callback_info info) {
  JS_ARGS(3)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  if (argc < 3) { js_throw_type(env, "trackForget(session, inoLo, inoHi)"); return NULL; }
  uint64_t ino = ino_arg(env, argv[1], argv[2]);
  pthread_mutex_lock(&s->track_lock);
  struct track_table *t = s->track;
  if (t != NULL) {
    track_entry_t **pp = &t->buckets[bucket_of(ino)];
    while (*pp != NULL && (*pp)->ino != ino) pp = &(*pp)->next;
    if (*pp != NULL) {
      track_entry_t *e = *pp;
      *pp = e->next;
      entry_free(e);
    }
  }
  pthread_mutex_unlock(&s->track_lock);
  return NULL;
}

// trackCounts(session) -> [writes answered on the FUSE thread while tracked, writes tracking sent to JavaScript].
napi_value js_track_counts (napi_env env, napi_callback_info info) {
  JS_ARGS(1)
  bridge_session_t *s = js_session(env, argv[0]);
  if (s == NULL) return NULL;
  return js_counter_pair(env, &s->track_direct, &s->track_sent);
}
